/**
 * The SDK's pure parts: reading Server-Sent Events, mapping a fetch URL onto the proxy,
 * and turning the daemon's answers into TokendErrors.
 */
import { describe, expect, it } from 'vitest';
import { errorFromAnswer, loginError, TokendError } from '../src/sdk/errors.js';
import { pathUnderApiBase } from '../src/sdk/proxy-fetch.js';
import { readSse, SseParser, type SseMessage } from '../src/sdk/sse.js';

describe('reading Server-Sent Events', () => {
  const feedAll = (...chunks: string[]) => {
    const p = new SseParser();
    return chunks.flatMap((c) => p.feed(c));
  };

  it('dispatches on a blank line, with the event name and the data', () => {
    expect(feedAll('event: ready\ndata: {"at":"x"}\n\nevent: token.refreshed\ndata: {"a":1}\n\n')).toEqual([
      { event: 'ready', data: '{"at":"x"}' },
      { event: 'token.refreshed', data: '{"a":1}' },
    ]);
  });

  it('takes LF, CRLF and CR line ends, even a CRLF split between two chunks', () => {
    expect(feedAll('event: a\r\ndata: 1\r', '\n\r', '\nevent: b\rdata: 2\r\r')).toEqual([
      { event: 'a', data: '1' },
      { event: 'b', data: '2' },
    ]);
  });

  it('joins data lines, drops one space after the colon, skips comments, and sends nothing for an event without data', () => {
    expect(feedAll(': keep-alive\n\nevent: empty\n\ndata:  two spaces\ndata:x\nevent\n\n')).toEqual([
      { event: 'message', data: ' two spaces\nx' },
    ]);
  });

  it('waits for the rest of a line cut between chunks', () => {
    expect(feedAll('event: log', 'in.pending\nda', 'ta: {"login_id"', ':"1"}\n', '\n')).toEqual([
      { event: 'login.pending', data: '{"login_id":"1"}' },
    ]);
  });

  it('gives each message the last event id, which carries over to later messages; an id with a NUL is ignored', () => {
    expect(feedAll('data: a\n\nid: r1-1\ndata: b\n\ndata: c\n\nid: r1-2\nid: x\0y\nevent: e\ndata: d\n\n')).toEqual([
      { event: 'message', data: 'a' },
      { event: 'message', data: 'b', id: 'r1-1' },
      { event: 'message', data: 'c', id: 'r1-1' },
      { event: 'e', data: 'd', id: 'r1-2' },
    ]);
  });

  it('decodes UTF-8 split inside a character, and drops a leading BOM', async () => {
    const bytes = new TextEncoder().encode('\uFEFFdata: é✓\n\n');
    const chunks = [bytes.slice(0, 2), bytes.slice(2, 11), bytes.slice(11)];
    const out: SseMessage[] = [];
    for await (const m of readSse(
      (async function* () {
        yield* chunks;
      })(),
    ))
      out.push(m);
    expect(out).toEqual([{ event: 'message', data: 'é✓' }]);
  });
});

describe('the path under api_base a fetch goes to', () => {
  const base = 'https://api.example.com/rest/1.0';

  it('takes paths with or without a leading slash, with their query', () => {
    expect(pathUnderApiBase('rd', '/user')).toBe('user');
    expect(pathUnderApiBase('rd', 'torrents/info?id=1&x=a%20b')).toBe('torrents/info?id=1&x=a%20b');
    expect(pathUnderApiBase('rd', '')).toBe('');
    expect(pathUnderApiBase('rd', 'a b/é')).toBe('a%20b/%C3%A9');
  });

  it('resolves dot segments (plain or percent-encoded) so a path cannot climb out of api_base', () => {
    expect(pathUnderApiBase('rd', '../../v1/token')).toBe('v1/token');
    expect(pathUnderApiBase('rd', '/a/%2e%2e/%2E%2E/b')).toBe('b');
  });

  it('refuses a reference to another host', () => {
    for (const p of ['//evil.example/x', '/\\evil.example/x', '\\\\evil.example\\x']) {
      expect(() => pathUnderApiBase('rd', p)).toThrow(TokendError);
    }
  });

  it('maps an absolute URL under api_base to its path, and refuses any other', () => {
    expect(pathUnderApiBase('rd', 'https://api.example.com/rest/1.0/user?x=1', base)).toBe('user?x=1');
    expect(pathUnderApiBase('rd', new URL('https://API.example.com:443/rest/1.0'), base)).toBe('');
    expect(pathUnderApiBase('rd', 'https://api.example.com/rest/1.0/', base)).toBe('');
    for (const url of [
      'https://api.example.com/rest/1.00/user', // a sibling sharing the prefix
      'https://api.example.com/rest/1.0/../admin',
      'http://api.example.com/rest/1.0/user',
      'https://api.example.com:8443/rest/1.0/user',
      'https://evil.example/rest/1.0/user',
      'https://me:pw@api.example.com/rest/1.0/user',
    ]) {
      const err = (() => {
        try {
          pathUnderApiBase('rd', url, base);
        } catch (e) {
          return e;
        }
      })();
      expect(err, url).toMatchObject({ code: 'invalid_request', status: 0 });
    }
  });

  it('says so when the account has no api_base, and never repeats a query (it may hold a secret)', () => {
    expect(() => pathUnderApiBase('rd', 'https://api.example.com/user?key=s3cret')).toThrow(/account "rd" has no api_base/);
    const err = (() => {
      try {
        pathUnderApiBase('rd', 'https://other.example/x?key=s3cret', base);
      } catch (e) {
        return e as Error;
      }
    })();
    expect(err?.message).toContain('https://other.example/x');
    expect(err?.message).not.toContain('s3cret');
  });
});

describe('TokendError from the daemon', () => {
  it('carries the wire code, message, status, account, retry_after and the pending login', () => {
    const body = { error: { code: 'login_pending', message: 'finish the login', account: 'rd', login: { id: 'L1', user_code: 'ABCD' } } };
    const err = errorFromAnswer(409, JSON.stringify(body));
    expect(err).toBeInstanceOf(TokendError);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({
      name: 'TokendError',
      code: 'login_pending',
      message: 'finish the login',
      status: 409,
      account: 'rd',
      login: { id: 'L1' },
    });
    expect(
      errorFromAnswer(503, JSON.stringify({ error: { code: 'upstream_unavailable', message: 'down', retry_after: 7 } })).retryAfter,
    ).toBe(7);
  });

  it('makes do with what a body that is not the wire shape gives: the status, and Retry-After', () => {
    expect(errorFromAnswer(502, '<html>bad gateway</html>', '12')).toMatchObject({ code: 'internal', status: 502, retryAfter: 12 });
    expect(errorFromAnswer(404, '')).toMatchObject({ code: 'invalid_request', status: 404 });
    expect(errorFromAnswer(503, '{}', 'Wed, 21 Oct 2015 07:28:00 GMT').retryAfter).toBeUndefined();
  });

  it('says which codes a later try of the same call may cure (retryable)', () => {
    const of = (code: string, status: number) => errorFromAnswer(status, JSON.stringify({ error: { code, message: code } }));
    for (const [code, status] of [
      ['upstream_unavailable', 503],
      ['upstream_timeout', 504],
      ['upstream_failed', 502],
      ['rate_limited', 429],
    ] as const) {
      expect(of(code, status).retryable, code).toBe(true);
    }
    for (const [code, status] of [
      ['provider_rejected', 502],
      ['reauth_required', 409],
      ['not_found', 404],
      ['invalid_request', 400],
      ['internal', 500],
    ] as const) {
      expect(of(code, status).retryable, code).toBe(false);
    }
  });

  it('turns a failed login into its own code, the login attached', () => {
    const login = {
      id: 'L2',
      account: 'rd',
      flow: 'device' as const,
      status: 'expired' as const,
      user_code: 'X',
      verification_uri: null,
      verification_uri_complete: null,
      authorization_url: null,
      created_at: '',
      updated_at: '',
      expires_at: '',
      error: { code: 'expired_token', message: 'the code expired' },
    };
    expect(loginError(login)).toMatchObject({
      code: 'expired_token',
      account: 'rd',
      login: { id: 'L2' },
      message: expect.stringContaining('the code expired'),
    });
    expect(loginError({ ...login, status: 'failed', error: null })).toMatchObject({ code: 'login_failed' });
  });
});
