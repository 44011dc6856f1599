/**
 * The pieces of a browser login (RFC 6749 §4.1 with RFC 7636 PKCE, RFC 8252 loopback
 * redirect): the one-shot listener on 127.0.0.1, the PKCE pair and state, the page the
 * browser sees.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** The path of the redirect URI on the loopback listener. */
export const CALLBACK_PATH = '/callback';

/** A PKCE pair (RFC 7636 §4.1–4.2) and a state (RFC 6749 §10.12); all three stay in memory. */
export interface BrowserSecrets {
  code_verifier: string;
  code_challenge: string;
  state: string;
}

/** 32 random bytes each, base64url: a 43-character verifier, as §4.1 recommends; S256 challenge. */
export function browserSecrets(): BrowserSecrets {
  const code_verifier = randomBytes(32).toString('base64url');
  return {
    code_verifier,
    code_challenge: createHash('sha256').update(code_verifier, 'ascii').digest('base64url'),
    state: randomBytes(32).toString('base64url'),
  };
}

/** Compares a callback's state with ours in constant time. */
export function stateMatches(got: string | null, expected: string): boolean {
  if (got === null) return false;
  const a = Buffer.from(got);
  const b = Buffer.from(expected);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** What the listener answers to one callback request. `last`: close the listener once it is sent. */
export interface CallbackAnswer {
  status: number;
  html: string;
  last: boolean;
}

export interface Loopback {
  /** `http://127.0.0.1:PORT/callback`. */
  redirectUri: string;
  /** Stop listening; a response being written is finished first. Idempotent. */
  close(): void;
}

/**
 * Listen on 127.0.0.1, a free port (RFC 8252 §7.3: the loopback IP literal, not `localhost`,
 * §8.3), or `port` again for a login taken up after a restart (its redirect URI names it),
 * for GET /callback. Everything else is 404. The listener lives until `close()` or until an
 * answer says it was the last. Rejects with the listen error (EADDRINUSE: the port is taken).
 */
export async function openLoopback(onCallback: (url: URL) => Promise<CallbackAnswer>, port = 0): Promise<Loopback> {
  let closed = false;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (req.method !== 'GET' || url.pathname !== CALLBACK_PATH || closed) {
      send(res, 404, page('Not found', 'This address only receives the answer to a tokend sign-in.'));
      return;
    }
    onCallback(url).then(
      (answer) => {
        send(res, answer.status, answer.html);
        if (answer.last) res.once('finish', close);
      },
      () => send(res, 500, page('Sign-in failed', 'tokend could not handle this answer; see its log.')),
    );
  });
  // A browser may keep connections open; nothing here needs them.
  server.keepAliveTimeout = 1000;
  server.listen(port, '127.0.0.1');
  await once(server, 'listening');
  const bound = (server.address() as AddressInfo).port;

  function close(): void {
    if (closed) return;
    closed = true;
    server.close();
    server.closeIdleConnections();
    // A response still being written gets a moment; then every connection goes.
    setTimeout(() => server.closeAllConnections(), 2000).unref();
  }
  return { redirectUri: `http://127.0.0.1:${bound}${CALLBACK_PATH}`, close };
}

function send(res: http.ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'cache-control': 'no-store',
    // The URL holds the authorization code: never pass it on, never render anything active.
    'referrer-policy': 'no-referrer',
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
    'x-content-type-options': 'nosniff',
    connection: 'close',
  });
  res.end(html);
}

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (ch) => ESCAPES[ch]!);
}

/** A short page for a person: a title and one paragraph, both escaped. */
export function page(title: string, text: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>tokend: ${escapeHtml(title)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;line-height:1.5}</style>
</head><body><h1>${escapeHtml(title)}</h1><p>${escapeHtml(text)}</p></body></html>
`;
}
