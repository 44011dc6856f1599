/**
 * An API that checks DPoP as a resource server must (RFC 9449 §7.1, §4.3): the proof's
 * signature with the JWK of its header, `typ`, `alg`, `htm`, `htu` (no query or fragment),
 * `ath` of the presented token, `iat` within a window, `jti` seen once, and the token's
 * `cnf.jkt` (by introspection at the test IdP) equal to the JWK's thumbprint. With
 * `requireNonce`, a proof without the API's current nonce gets the §9 challenge.
 */
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import http from 'node:http';
import type { TestIdp } from './idp.js';
import { listenOnLoopback } from './loopback.js';

export interface DpopApi {
  url: string;
  /** Requests answered 200, and the refusals by reason, in order. */
  accepted: number;
  refused: string[];
  /** Proofs seen (their `jti`s): a second use is refused. */
  seenJti: Set<string>;
  /** The last proof header that came in (a test replays it). */
  lastProof?: string;
  requireNonce: boolean;
  /** The nonce a proof must carry while requireNonce is on; a new one makes old proofs stale. */
  nonce: string;
  close(): Promise<void>;
}

const IAT_WINDOW_S = 60;

function b64uJson(part: string): any {
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
}

/** RFC 7638 §3.2 for an EC key. */
function thumbprint(jwk: { crv: string; kty: string; x: string; y: string }): string {
  return createHash('sha256')
    .update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }))
    .digest('base64url');
}

export async function startDpopApi(idp: TestIdp, opts: { requireNonce?: boolean } = {}): Promise<DpopApi> {
  const api: DpopApi = {
    url: '',
    accepted: 0,
    refused: [],
    seenJti: new Set(),
    requireNonce: opts.requireNonce ?? false,
    nonce: randomBytes(12).toString('base64url'),
    close: async () => undefined,
  };

  async function check(req: http.IncomingMessage): Promise<string | undefined> {
    const auth = req.headers.authorization ?? '';
    const m = /^DPoP ([^\s]+)$/.exec(auth);
    if (!m) return 'no DPoP authorization';
    const token = m[1];
    const proof = req.headers.dpop;
    if (typeof proof !== 'string') return 'no DPoP proof';
    api.lastProof = proof;
    const [h, p, sig] = proof.split('.');
    if (!h || !p || !sig) return 'proof is not a JWS';
    const header = b64uJson(h);
    const claims = b64uJson(p);
    if (header.typ !== 'dpop+jwt' || header.alg !== 'ES256' || header.jwk?.kty !== 'EC') return 'bad proof header';
    if ('d' in header.jwk) return 'private key in the proof';
    const key = createPublicKey({ key: header.jwk, format: 'jwk' });
    if (!verify('sha256', Buffer.from(`${h}.${p}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url')))
      return 'bad signature';
    if (claims.htm !== req.method) return `htm ${claims.htm}`;
    const here = new URL(req.url ?? '/', api.url);
    if (claims.htu !== `${here.origin}${here.pathname}`) return `htu ${claims.htu}`;
    if (claims.ath !== createHash('sha256').update(token).digest('base64url')) return 'ath';
    if (typeof claims.iat !== 'number' || Math.abs(claims.iat - Date.now() / 1000) > IAT_WINDOW_S) return 'iat';
    if (typeof claims.jti !== 'string' || api.seenJti.has(claims.jti)) return 'jti replayed';
    api.seenJti.add(claims.jti);
    if (api.requireNonce && claims.nonce !== api.nonce) return 'use_dpop_nonce';
    const seen = await idp.introspect(token);
    if (!seen.active) return 'token inactive';
    if ((seen.cnf as { jkt?: string } | undefined)?.jkt !== thumbprint(header.jwk)) return 'cnf.jkt';
    return undefined;
  }

  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      check(req).then(
        (problem) => {
          if (!problem) {
            api.accepted++;
            res.writeHead(200, { 'content-type': 'application/json', ...(api.requireNonce ? { 'DPoP-Nonce': api.nonce } : {}) });
            res.end(JSON.stringify({ ok: true, path: req.url }));
            return;
          }
          api.refused.push(problem);
          const error = problem === 'use_dpop_nonce' ? 'use_dpop_nonce' : 'invalid_dpop_proof';
          res.writeHead(401, {
            'WWW-Authenticate': `DPoP error="${error}", algs="ES256"`,
            ...(error === 'use_dpop_nonce' ? { 'DPoP-Nonce': api.nonce } : {}),
          });
          res.end();
        },
        (err) => {
          res.writeHead(500);
          res.end(String(err));
        },
      );
    });
  });
  const { url, close } = await listenOnLoopback(server);
  api.url = url;
  api.close = close;
  return api;
}
