/**
 * A fake Blockstream AMP API (amp.blockstream.com cannot be reached from here), following
 * the AMP API Specification (host amp.blockstream.com, basePath /api) and docs.liquid.net:
 *
 * - `POST /api/user/obtain_token` JSON `{username, password}` → `{"token"}`; wrong
 *   credentials get a 400 (the answer's body is not documented; this fake sends Django REST
 *   framework's `{"non_field_errors": […]}`);
 * - every other endpoint takes `Authorization: token <token>` (the scheme is the word
 *   `token`; anything else gets 401);
 * - `POST /api/user/refresh_token` with `Authorization: token <current>` → `{"token"}` exists
 *   only in the third-party amp-rust client, not in the spec: off by default (404), on with
 *   `refreshEndpoint`.
 *
 * The token is a JWT whose `exp` says when it dies (its lifetime is not documented either;
 * `tokenTtl` sets it).
 */
import { Faults, answer, credentialOf, fakeJwt, jsonOf, startFakeServer, type FakeAnswer } from './fake-http.js';

export const AMP_USER = 'issuer-ops';
export const AMP_PASSWORD = 'correct horse battery staple';

export type AmpEndpoint = 'obtain_token' | 'refresh_token' | 'api';

export interface FakeAmp {
  /** `http://127.0.0.1:PORT/api`: what `--base-url` names. */
  url: string;
  /** Seconds a token lives (its JWT `exp` − `iat`). */
  tokenTtl: number;
  /** Does `POST /api/user/refresh_token` exist? */
  refreshEndpoint: boolean;
  faults: Faults;
  stats: {
    obtains: number;
    /** obtain_token requests refused for their credentials. */
    obtainRefused: number;
    /** Every obtain_token request, answered or not. */
    obtainCalls: number;
    refreshCalls: number;
    refreshes: number;
    apiCalls: number;
    /** API requests refused (no token, a dead one, or another scheme). */
    apiRefused: number;
    /** The Authorization headers the API saw. */
    authorizations: string[];
  };
  issued: string[];
  /** The user's password changes at AMP. */
  setPassword(password: string): void;
  isLive(token: string): boolean;
  close(): Promise<void>;
}

export async function startFakeAmp(): Promise<FakeAmp> {
  const issued: string[] = [];
  let password = AMP_PASSWORD;
  const tokens = new Map<string, number>(); // token → expiry (ms)

  const amp: FakeAmp = {
    url: '',
    tokenTtl: 24 * 3600,
    refreshEndpoint: false,
    faults: new Faults(),
    stats: { obtains: 0, obtainRefused: 0, obtainCalls: 0, refreshCalls: 0, refreshes: 0, apiCalls: 0, apiRefused: 0, authorizations: [] },
    issued,
    setPassword(p) {
      password = p;
    },
    isLive: (token) => (tokens.get(token) ?? 0) > Date.now(),
    close: async () => undefined,
  };

  const newToken = (): FakeAnswer => {
    const iat = Math.floor(Date.now() / 1000);
    const token = fakeJwt({ user_id: 7, username: AMP_USER, iat, exp: iat + amp.tokenTtl }, issued);
    tokens.set(token, (iat + amp.tokenTtl) * 1000);
    return { status: 200, body: { token } };
  };
  const unauthorized: FakeAnswer = { status: 401, body: { detail: 'Invalid token.' }, headers: { 'www-authenticate': 'Token' } };

  const server = await startFakeServer((req, res) => {
    const endpoint: AmpEndpoint | undefined =
      req.path === '/api/user/obtain_token'
        ? 'obtain_token'
        : req.path === '/api/user/refresh_token'
          ? 'refresh_token'
          : req.path.startsWith('/api/')
            ? 'api'
            : undefined;
    if (!endpoint) return answer(res, { status: 404, body: { detail: 'Not found.' } });
    if (endpoint === 'obtain_token') amp.stats.obtainCalls++;
    if (endpoint === 'refresh_token') amp.stats.refreshCalls++;
    const fault = amp.faults.take(endpoint);
    if (fault) return answer(res, fault);
    const presented = credentialOf(req.headers, 'token');
    switch (endpoint) {
      case 'obtain_token': {
        const body = jsonOf(req.body);
        if (req.method !== 'POST') return answer(res, { status: 405, body: { detail: `Method "${req.method}" not allowed.` } });
        if (body?.username !== AMP_USER || body?.password !== password) {
          amp.stats.obtainRefused++;
          return answer(res, { status: 400, body: { non_field_errors: ['Unable to log in with provided credentials.'] } });
        }
        amp.stats.obtains++;
        return answer(res, newToken());
      }
      case 'refresh_token':
        if (!amp.refreshEndpoint) return answer(res, { status: 404, body: { detail: 'Not found.' } });
        if (!presented || !amp.isLive(presented)) return answer(res, unauthorized);
        amp.stats.refreshes++;
        return answer(res, newToken());
      case 'api':
        amp.stats.apiCalls++;
        amp.stats.authorizations.push(req.headers.authorization ?? '');
        if (!presented || !amp.isLive(presented)) {
          amp.stats.apiRefused++;
          return answer(res, unauthorized);
        }
        return answer(res, { status: 200, body: [{ asset_uuid: 'a1b2', name: 'Fake Asset', ticker: 'FAKE' }] });
    }
  });
  amp.url = `${server.url}/api`;
  amp.close = server.close;
  return amp;
}
