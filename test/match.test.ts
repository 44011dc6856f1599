/**
 * Account matching by `hosts` patterns (issue 4): table tests, one row per rule.
 */
import { describe, expect, it } from 'vitest';
import {
  ambiguousMessage,
  isLoopbackHost,
  matchAccount,
  parseHostPattern,
  resolveTarget,
  targetFromUrl,
  type MatchableAccount,
  type MatchResult,
} from '../src/daemon/match.js';

function acct(name: string, hosts: string[], username?: string): MatchableAccount {
  return username === undefined ? { name, hosts } : { name, hosts, username };
}

/** The winner's name, 'none', or 'ambiguous:a,b'. */
function outcome(r: MatchResult): string {
  if (r.kind === 'match') return r.account.name;
  if (r.kind === 'ambiguous') return `ambiguous:${r.accounts.join(',')}`;
  return 'none';
}

function matchUrl(accounts: MatchableAccount[], url: string, usernames?: Record<string, string>): string {
  const t = targetFromUrl(url);
  if (!t) throw new Error(`not a URL: ${url}`);
  return outcome(matchAccount(accounts, t, usernames));
}

describe('one pattern against one URL', () => {
  const rows: Array<[pattern: string, url: string, matches: boolean]> = [
    // plain host
    ['github.com', 'https://github.com/org/repo.git', true],
    ['github.com', 'https://GitHub.COM/org/repo.git', true],
    ['GitHub.com', 'https://github.com/', true],
    ['github.com', 'https://github.com./x', true],
    ['github.com', 'https://gist.github.com/x', false],
    ['github.com', 'https://github.com.evil.test/x', false],
    ['github.com', 'https://notgithub.com/x', false],
    // wildcard: subdomains at any depth, never the apex
    ['*.example.com', 'https://git.example.com/x', true],
    ['*.example.com', 'https://a.b.example.com/x', true],
    ['*.example.com', 'https://example.com/x', false],
    ['*.example.com', 'https://badexample.com/x', false],
    ['*.example.com', 'https://example.com.evil.test/x', false],
    // path prefix on segment boundaries
    ['git.example.com/org', 'https://git.example.com/org/x.git', true],
    ['git.example.com/org', 'https://git.example.com/org', true],
    ['git.example.com/org', 'https://git.example.com/orgx/x.git', false],
    ['git.example.com/org', 'https://git.example.com/other/x.git', false],
    ['git.example.com/org', 'https://git.example.com/', false],
    ['git.example.com/org/*', 'https://git.example.com/org/x.git', true],
    ['git.example.com/org/*', 'https://git.example.com/orgx/x.git', false],
    ['git.example.com/org/', 'https://git.example.com/org/sub/x.git', true],
    ['git.example.com/org', 'https://git.example.com/org/../other/x.git', false],
    ['git.example.com/Org', 'https://git.example.com/org/x.git', false],
    // ports
    ['example.com:8443', 'https://example.com:8443/x', true],
    ['example.com:8443', 'https://example.com/x', false],
    ['example.com:443', 'https://example.com/x', true],
    ['example.com', 'https://example.com:8443/x', true],
    // scheme: none means https, plus http to loopback only
    ['example.com', 'http://example.com/x', false],
    ['example.com', 'ssh://example.com/x', false],
    ['https://example.com', 'https://example.com/x', true],
    ['https://example.com', 'http://example.com/x', false],
    ['http://example.com', 'http://example.com/x', false],
    ['http://example.com', 'https://example.com/x', false],
    ['127.0.0.1', 'http://127.0.0.1:8080/x', true],
    ['127.0.0.1', 'https://127.0.0.1/x', true],
    ['localhost', 'http://localhost:3000/x', true],
    ['localhost', 'http://LOCALHOST/x', true],
    ['[::1]', 'http://[::1]:8080/x', true],
    ['::1', 'http://[::1]:8080/x', true],
    ['[::1]:8080', 'http://[::1]:8080/x', true],
    ['[::1]:8080', 'http://[::1]:9090/x', false],
    ['http://127.0.0.1:8080', 'http://127.0.0.1:8080/repo.git', true],
    ['http://127.0.0.1:8080', 'http://127.0.0.1:9090/repo.git', false],
    ['http://127.0.0.1:8080', 'https://127.0.0.1:8080/repo.git', false],
    ['*.example.com', 'http://git.example.com/x', false],
    // internationalised names compare as punycode
    ['bücher.example', 'https://xn--bcher-kva.example/x', true],
    ['xn--bcher-kva.example', 'https://bücher.example/x', true],
  ];
  it.each(rows)('%s vs %s → %s', (pattern, url, matches) => {
    expect(matchUrl([acct('a', [pattern])], url)).toBe(matches ? 'a' : 'none');
  });
});

describe('most specific wins', () => {
  const rows: Array<[why: string, accounts: MatchableAccount[], url: string, expected: string]> = [
    [
      'exact host beats wildcard',
      [acct('wild', ['*.example.com']), acct('exact', ['git.example.com'])],
      'https://git.example.com/x',
      'exact',
    ],
    [
      'exact host beats wildcard, in either order',
      [acct('exact', ['git.example.com']), acct('wild', ['*.example.com'])],
      'https://git.example.com/x',
      'exact',
    ],
    [
      'a longer wildcard suffix beats a shorter one',
      [acct('short', ['*.example.com']), acct('long', ['*.corp.example.com'])],
      'https://git.corp.example.com/x',
      'long',
    ],
    [
      'the wildcard still serves other subdomains',
      [acct('wild', ['*.example.com']), acct('exact', ['git.example.com'])],
      'https://ci.example.com/x',
      'wild',
    ],
    [
      'a path prefix beats the bare host',
      [acct('host', ['git.example.com']), acct('org', ['git.example.com/org'])],
      'https://git.example.com/org/x.git',
      'org',
    ],
    [
      'the bare host serves other paths',
      [acct('host', ['git.example.com']), acct('org', ['git.example.com/org'])],
      'https://git.example.com/team/x.git',
      'host',
    ],
    [
      'a longer path prefix beats a shorter one',
      [acct('org', ['git.example.com/org/*']), acct('team', ['git.example.com/org/team'])],
      'https://git.example.com/org/team/x.git',
      'team',
    ],
    [
      'an explicit port beats none',
      [acct('any', ['example.com']), acct('port', ['example.com:8443'])],
      'https://example.com:8443/x',
      'port',
    ],
    ['an explicit scheme beats none', [acct('plain', ['127.0.0.1']), acct('http', ['http://127.0.0.1'])], 'http://127.0.0.1/x', 'http'],
    [
      'exact host beats a wildcard with a path',
      [acct('wildpath', ['*.example.com/org']), acct('exact', ['git.example.com'])],
      'https://git.example.com/org/x',
      'exact',
    ],
    [
      'an account uses its best pattern',
      [acct('a', ['*.example.com', 'git.example.com/org']), acct('b', ['git.example.com'])],
      'https://git.example.com/org/x',
      'a',
    ],
    ['a tie names both accounts', [acct('one', ['github.com']), acct('two', ['github.com'])], 'https://github.com/x', 'ambiguous:one,two'],
    [
      'a tie on wildcards names both',
      [acct('one', ['*.example.com']), acct('two', ['*.example.com'])],
      'https://a.example.com/x',
      'ambiguous:one,two',
    ],
    [
      'a tie names the first two of three',
      [acct('one', ['a.test']), acct('two', ['a.test']), acct('three', ['a.test'])],
      'https://a.test/',
      'ambiguous:one,two',
    ],
    [
      'a more specific third breaks the tie',
      [acct('one', ['a.test']), acct('two', ['a.test']), acct('three', ['a.test/x'])],
      'https://a.test/x/y',
      'three',
    ],
    ['no account matches', [acct('one', ['github.com'])], 'https://gitlab.com/x', 'none'],
    [
      'an invalid pattern matches nothing',
      [acct('bad', ['*', 'a*.example.com', 'user@example.com', 'example.com:99999'])],
      'https://a.example.com/',
      'none',
    ],
  ];
  it.each(rows)('%s', (_why, accounts, url, expected) => {
    expect(matchUrl(accounts, url)).toBe(expected);
  });
});

/**
 * The precedence docs/helpers.md states, one step at a time: each rule outranks every rule
 * after it, so the account with the earlier advantage wins even when the other has all the
 * later ones. Order: exact host, longer wildcard suffix, deeper path, port, scheme, username.
 */
describe('the documented precedence, in order', () => {
  const rows: Array<[why: string, accounts: MatchableAccount[], url: string, expected: string]> = [
    [
      'an exact host outranks a wildcard with path, port and scheme',
      [acct('wild', ['https://*.example.com:443/org']), acct('exact', ['git.example.com'])],
      'https://git.example.com/org/x',
      'exact',
    ],
    [
      'a longer wildcard suffix outranks a shorter one with path, port and scheme',
      [acct('short', ['https://*.example.com:443/org']), acct('long', ['*.corp.example.com'])],
      'https://git.corp.example.com/org/x',
      'long',
    ],
    [
      'a deeper path outranks port and scheme',
      [acct('portscheme', ['https://git.example.com:443']), acct('path', ['git.example.com/org'])],
      'https://git.example.com/org/x',
      'path',
    ],
    [
      'a port outranks a scheme',
      [acct('scheme', ['https://example.com']), acct('port', ['example.com:443'])],
      'https://example.com/x',
      'port',
    ],
    [
      'a scheme outranks a matching username',
      [acct('user', ['example.com'], 'bob'), acct('scheme', ['https://example.com'])],
      'https://bob@example.com/x',
      'scheme',
    ],
    // The case users trip over: both name the same host, the one spelling out https:// wins.
    [
      'a scheme beats the same host without one',
      [acct('plain', ['git.example.com']), acct('https', ['https://git.example.com'])],
      'https://git.example.com/x',
      'https',
    ],
    [
      'a matching username beats none',
      [acct('any', ['example.com']), acct('bob', ['example.com'], 'bob')],
      'https://bob@example.com/x',
      'bob',
    ],
    [
      'equal on every rule: a tie',
      [acct('one', ['https://example.com']), acct('two', ['https://example.com'])],
      'https://example.com/x',
      'ambiguous:one,two',
    ],
  ];
  it.each(rows)('%s', (_why, accounts, url, expected) => {
    expect(matchUrl(accounts, url)).toBe(expected);
    expect(matchUrl([...accounts].reverse(), url)).toBe(expected.replace('one,two', 'two,one'));
  });
});

describe('resolveTarget: a url or host instead of an account', () => {
  const accounts = [acct('gh', ['github.com']), acct('dup1', ['dup.example.com']), acct('dup2', ['dup.example.com'])];

  it('reads a bare host as https and a URL as it is', () => {
    expect(resolveTarget(accounts, { host: 'github.com' })).toBe('gh');
    expect(resolveTarget(accounts, { url: 'https://github.com/org/repo' })).toBe('gh');
    expect(resolveTarget(accounts, { url: 'http://github.com/org/repo' })).toBeUndefined();
    expect(resolveTarget(accounts, { host: 'gitlab.com' })).toBeUndefined();
  });

  it('a tie is an invalid request with the same message the helpers print', () => {
    const target = targetFromUrl('https://dup.example.com:8443/x')!;
    expect(() => resolveTarget(accounts, { url: 'https://dup.example.com:8443/x' })).toThrow(ambiguousMessage(['dup1', 'dup2'], target));
    expect(ambiguousMessage(['dup1', 'dup2'], target)).toBe(
      'accounts "dup1" and "dup2" both match https://dup.example.com:8443; make one of their hosts patterns more specific, or configure a username',
    );
  });

  it('something that is not a URL is an invalid request naming it', () => {
    expect(() => resolveTarget(accounts, { url: 'not a url' })).toThrow(/url: "not a url" is not a URL tokend can match/);
  });
});

describe('username selects among accounts', () => {
  const both = [acct('alice', ['github.com'], 'alice'), acct('bob', ['github.com'], 'bob')];
  it.each([
    ['https://alice@github.com/x', 'alice'],
    ['https://bob@github.com/x', 'bob'],
    ['https://carol@github.com/x', 'none'],
    ['https://github.com/x', 'ambiguous:alice,bob'],
  ])('%s → %s', (url, expected) => {
    expect(matchUrl(both, url)).toBe(expected);
  });

  it('an account without a username accepts any username', () => {
    expect(matchUrl([acct('any', ['github.com'])], 'https://zed@github.com/x')).toBe('any');
  });

  it('an account whose username matches beats one without a username', () => {
    const accounts = [acct('generic', ['github.com']), acct('alice', ['github.com'], 'alice')];
    expect(matchUrl(accounts, 'https://alice@github.com/x')).toBe('alice');
    expect(matchUrl(accounts, 'https://zed@github.com/x')).toBe('generic');
    // Without a username in the URL neither is more specific: the user must say which.
    expect(matchUrl(accounts, 'https://github.com/x')).toBe('ambiguous:generic,alice');
  });

  it('takes usernames from the third argument too', () => {
    const accounts = [acct('alice', ['github.com']), acct('bob', ['github.com'])];
    expect(matchUrl(accounts, 'https://bob@github.com/x', { alice: 'alice', bob: 'bob' })).toBe('bob');
  });
});

describe('targets from git and docker', () => {
  it('accepts git-style paths without a leading slash and host:port in host', () => {
    const accounts = [acct('org', ['git.example.com:8443/org'])];
    const r = matchAccount(accounts, { protocol: 'https', host: 'git.example.com:8443', path: 'org/repo.git' });
    expect(outcome(r)).toBe('org');
  });

  it('a path pattern needs a path (git sends one only with credential.useHttpPath)', () => {
    const r = matchAccount([acct('org', ['git.example.com/org'])], { protocol: 'https', host: 'git.example.com' });
    expect(outcome(r)).toBe('none');
  });

  it('returns the account object it was given', () => {
    const a = { name: 'x', hosts: ['x.test'], extra: 42 };
    const r = matchAccount([a], { protocol: 'https', host: 'x.test' });
    expect(r.kind === 'match' && r.account).toBe(a);
  });
});

describe('targetFromUrl', () => {
  it.each([
    ['https://github.com/org/repo.git', { protocol: 'https', host: 'github.com', path: '/org/repo.git' }],
    ['https://user:secret@example.com:8443/a%20b', { protocol: 'https', host: 'example.com', port: 8443, path: '/a b', username: 'user' }],
    ['https://example.com:443/', { protocol: 'https', host: 'example.com' }],
    ['http://[::1]:8080/x', { protocol: 'http', host: '[::1]', port: 8080, path: '/x' }],
    ['registry.example.com/v2/', { protocol: 'https', host: 'registry.example.com', path: '/v2/' }],
    ['HTTPS://EXAMPLE.COM', { protocol: 'https', host: 'example.com' }],
  ])('%s', (url, expected) => {
    expect(targetFromUrl(url)).toEqual(expected);
  });

  it('never keeps a password', () => {
    expect(JSON.stringify(targetFromUrl('https://u:hunter2@example.com/'))).not.toContain('hunter2');
  });

  it.each(['', 'https://', 'not a url', 'https://exa mple.com/'])('rejects %j', (url) => {
    expect(targetFromUrl(url)).toBeUndefined();
  });
});

describe('parseHostPattern and isLoopbackHost', () => {
  it.each([
    ['github.com', { host: 'github.com', wildcard: false }],
    ['*.Example.COM', { host: 'example.com', wildcard: true }],
    ['https://git.example.com:8443/org/*', { scheme: 'https', host: 'git.example.com', wildcard: false, port: 8443, pathPrefix: '/org' }],
    ['[::1]:8080', { host: '[::1]', wildcard: false, port: 8080 }],
    ['example.com/', { host: 'example.com', wildcard: false }],
  ])('%s', (p, expected) => {
    expect(parseHostPattern(p)).toEqual(expected);
  });

  it.each(['', '*', '*.', 'a.*.com', 'x.com/a*b', 'u@x.com', 'x.com:0', 'x.com:abc', '[::1'])('refuses %j', (p) => {
    expect(parseHostPattern(p)).toBeUndefined();
  });

  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['[::1]', true],
    ['localhost', true],
    ['LOCALHOST.', true],
    ['128.0.0.1', false],
    ['localhost.example.com', false],
    ['127.0.0.1.example.com', false],
    ['0.0.0.0', false],
  ])('%s loopback: %s', (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});
