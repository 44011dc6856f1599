/**
 * A fake Real-Debrid (api.real-debrid.com cannot be reached from here), following the
 * "Real-Debrid API Documentation": the "Workflow for opensource apps" and the "Workflow for
 * mobile apps" under `/oauth/v2/`, and a little of the REST API under `/rest/1.0/`.
 *
 * - `GET /oauth/v2/device/code?client_id=X245A4XAIBGVM&new_credentials=yes` →
 *   `{device_code, user_code, interval, expires_in, verification_url}`;
 * - `GET /oauth/v2/device/code?client_id=APP` (an app's own registered client, `registerApp`,
 *   without `new_credentials`: the mobile apps' workflow) → the same; then `POST
 *   /oauth/v2/token` with the app's client id and secret and the device code answers an error
 *   (`pending`, as the credentials endpoint does) until the user approves, then the tokens.
 *   The open-source client id has no secret, so it is refused there without `new_credentials`;
 * - `GET /oauth/v2/device/credentials?client_id=…&code=DEVICE_CODE` → an error until the
 *   user approves (`approve(user_code)`), then `{client_id, client_secret}` bound to the user.
 *   The doc does not say which error; by default this fake answers what the service is seen
 *   to answer, a 403 (`pending` changes it);
 * - `POST /oauth/v2/token` (form) `client_id, client_secret, code, grant_type=http://oauth.net/grant_type/device/1.0`
 *   with the device code, then with a refresh token in `code` → `{access_token, expires_in,
 *   token_type: "Bearer", refresh_token}`. Whether the service rotates refresh tokens is not
 *   documented: `rotate` picks (a rotated-away token is refused, and counted as a replay);
 * - errors are `{"error": "…", "error_code": N}` (8 bad token, 9 permission denied, 5 slow
 *   down, 34 too many requests);
 * - `GET /rest/1.0/user` and `/rest/1.0/disable_access_token` take `Authorization: Bearer`;
 *   `GET /rest/1.0/time` needs nothing.
 */
import { randomBytes } from 'node:crypto';
import { Faults, answer, credentialOf, mint, startFakeServer, type FakeAnswer } from './fake-http.js';

export const RD_OPEN_SOURCE_CLIENT = 'X245A4XAIBGVM';
export const RD_DEVICE_GRANT = 'http://oauth.net/grant_type/device/1.0';

/** The endpoints, as `faults.add` names them. */
export type RdEndpoint = 'device/code' | 'device/credentials' | 'token' | 'time' | 'user' | 'disable_access_token';

export const rdError = (status: number, error: string, error_code: number, headers?: Record<string, string>): FakeAnswer => ({
  status,
  body: { error, error_code },
  headers,
});

export interface FakeRealDebrid {
  /** The service root: what `--base-url` names. */
  url: string;
  /** Seconds an access token lives (`expires_in`). */
  accessTtl: number;
  /** The `interval` the device code endpoint answers. */
  interval: number;
  /** Does a refresh issue a new refresh token and refuse the old one? */
  rotate: boolean;
  /** What the credentials endpoint answers while a code is not approved. */
  pending: FakeAnswer;
  faults: Faults;
  stats: {
    deviceCodes: number;
    /** Device codes asked for with `new_credentials=yes`. */
    newCredentials: number;
    credentialPolls: number;
    /** When each credentials poll arrived (Date.now()). */
    pollTimes: number[];
    /** Credential polls answered with `pending`. */
    pendingAnswers: number;
    /** Token requests with a device code that got tokens. */
    exchanges: number;
    /** Token requests with a refresh token that got tokens. */
    refreshes: number;
    /** Token requests refused (bad client, bad code). */
    refused: number;
    /** Refresh tokens presented after they were rotated away. */
    replays: number;
    /** Every token request, answered or not. */
    tokenRequests: number;
    time: number;
    apiCalls: number;
    disabled: number;
    /** The Authorization headers the REST API saw. */
    authorizations: string[];
  };
  /** Every secret handed out: device codes, per-user credentials, tokens. */
  issued: string[];
  /** An app registers its own client with Real-Debrid: a client id and secret of its own. */
  registerApp(): { client_id: string; client_secret: string };
  /** The user enters the code at verification_url and allows the app. */
  approve(userCode: string): void;
  /** The user revokes the app's rights: its per-user client and every token of it stop working. */
  revokeApp(): void;
  /** Is this access token one the REST API accepts now? */
  isLive(accessToken: string): boolean;
  /** The per-user client ids minted so far. */
  clients(): string[];
  close(): Promise<void>;
}

interface DeviceCode {
  userCode: string;
  /** The app's own client that asked for it (the mobile apps' workflow); absent for new credentials. */
  app?: string;
  expiresAt: number;
  client?: { id: string; secret: string };
  used: boolean;
}

export async function startFakeRealDebrid(): Promise<FakeRealDebrid> {
  const issued: string[] = [];
  const devices = new Map<string, DeviceCode>();
  /** per-user client id → its secret, while the user has not revoked it. */
  const clients = new Map<string, string>();
  /** Apps' own registered clients (the mobile apps' workflow). */
  const apps = new Set<string>();
  const refreshTokens = new Map<string, { client: string }>();
  const rotatedAway = new Set<string>();
  const accessTokens = new Map<string, { client: string; expiresAt: number; disabled: boolean }>();

  const rd: FakeRealDebrid = {
    url: '',
    accessTtl: 3600,
    interval: 5,
    rotate: true,
    pending: { status: 403, body: {} },
    faults: new Faults(),
    stats: {
      deviceCodes: 0,
      newCredentials: 0,
      credentialPolls: 0,
      pollTimes: [],
      pendingAnswers: 0,
      exchanges: 0,
      refreshes: 0,
      refused: 0,
      replays: 0,
      tokenRequests: 0,
      time: 0,
      apiCalls: 0,
      disabled: 0,
      authorizations: [],
    },
    issued,
    registerApp() {
      const client_id = mint('rdapp', issued);
      const client_secret = mint('rdappsecret', issued);
      clients.set(client_id, client_secret);
      apps.add(client_id);
      return { client_id, client_secret };
    },
    approve(userCode) {
      const d = [...devices.values()].find((x) => x.userCode === userCode);
      if (!d) throw new Error(`no device code with user code ${userCode}`);
      if (d.app) {
        d.client = { id: d.app, secret: clients.get(d.app)! };
        return;
      }
      const id = mint('rdclient', issued);
      const secret = mint('rdsecret', issued);
      clients.set(id, secret);
      d.client = { id, secret };
    },
    revokeApp() {
      clients.clear();
      refreshTokens.clear();
      accessTokens.clear();
    },
    isLive(token) {
      const t = accessTokens.get(token);
      return Boolean(t && !t.disabled && t.expiresAt > Date.now() && clients.has(t.client));
    },
    clients: () => [...clients.keys()],
    close: async () => undefined,
  };

  const tokensFor = (client: string): FakeAnswer => {
    const access_token = mint('rdat', issued);
    accessTokens.set(access_token, { client, expiresAt: Date.now() + rd.accessTtl * 1000, disabled: false });
    const refresh_token = mint('rdrt', issued);
    refreshTokens.set(refresh_token, { client });
    return { status: 200, body: { access_token, expires_in: rd.accessTtl, token_type: 'Bearer', refresh_token } };
  };

  const token = (form: URLSearchParams): FakeAnswer => {
    rd.stats.tokenRequests++;
    if (form.get('grant_type') !== RD_DEVICE_GRANT) return rdError(400, 'bad_parameter', 2);
    const client = form.get('client_id') ?? '';
    const code = form.get('code') ?? '';
    if (clients.get(client) !== form.get('client_secret')) {
      rd.stats.refused++;
      return rdError(403, 'permission_denied', 9);
    }
    const device = devices.get(code);
    if (device && device.app === client && !device.client && !device.used) {
      rd.stats.pendingAnswers++; // the mobile apps' workflow: an error until the user approves
      return rd.pending;
    }
    if (device && device.client?.id === client && !device.used) {
      device.used = true; // the device code is spent
      rd.stats.exchanges++;
      return tokensFor(client);
    }
    const refresh = refreshTokens.get(code);
    if (refresh && refresh.client === client) {
      rd.stats.refreshes++;
      if (!rd.rotate) {
        const access_token = mint('rdat', issued);
        accessTokens.set(access_token, { client, expiresAt: Date.now() + rd.accessTtl * 1000, disabled: false });
        return { status: 200, body: { access_token, expires_in: rd.accessTtl, token_type: 'Bearer', refresh_token: code } };
      }
      refreshTokens.delete(code);
      rotatedAway.add(code);
      return tokensFor(client);
    }
    if (rotatedAway.has(code)) rd.stats.replays++;
    rd.stats.refused++;
    return rdError(401, 'bad_token', 8);
  };

  const rest = (path: string, authorization: string | undefined): FakeAnswer => {
    rd.stats.authorizations.push(authorization ?? '');
    const bearer = credentialOf({ authorization }, 'Bearer');
    if (!bearer || !rd.isLive(bearer)) return rdError(401, 'bad_token', 8);
    if (path === 'disable_access_token') {
      accessTokens.get(bearer)!.disabled = true;
      rd.stats.disabled++;
      return { status: 204 };
    }
    return { status: 200, body: { id: 4242, username: 'fake-user', email: 'user@example.com', type: 'premium' } };
  };

  const server = await startFakeServer((req, res) => {
    const oauth = /^\/oauth\/v2\/(device\/code|device\/credentials|token)$/.exec(req.path)?.[1];
    const restPath = /^\/rest\/1\.0\/(time|user|disable_access_token)$/.exec(req.path)?.[1];
    const endpoint = (oauth ?? restPath) as RdEndpoint | undefined;
    if (!endpoint) return answer(res, rdError(404, 'unknown_ressource', 7));
    if (endpoint === 'device/credentials') rd.stats.pollTimes.push(Date.now());
    const fault = rd.faults.take(endpoint);
    if (fault) {
      if (endpoint === 'device/credentials') rd.stats.credentialPolls++;
      if (endpoint === 'token') rd.stats.tokenRequests++;
      return answer(res, fault);
    }
    switch (endpoint) {
      case 'device/code': {
        if (req.method !== 'GET') return answer(res, rdError(405, 'method_not_allowed', 4));
        const asker = req.query.get('client_id') ?? '';
        const fresh = req.query.get('new_credentials') === 'yes';
        // New credentials for any known client; without them, only an app's own client (it has a secret to poll with).
        if (!(fresh ? asker === RD_OPEN_SOURCE_CLIENT || apps.has(asker) : apps.has(asker))) {
          return answer(res, rdError(400, 'bad_parameter', 2));
        }
        rd.stats.deviceCodes++;
        if (fresh) rd.stats.newCredentials++;
        const device_code = mint('rddc', issued);
        const user_code = randomBytes(4).toString('hex').toUpperCase();
        devices.set(device_code, { userCode: user_code, expiresAt: Date.now() + 1800_000, used: false, ...(fresh ? {} : { app: asker }) });
        return answer(res, {
          status: 200,
          body: { device_code, user_code, interval: rd.interval, expires_in: 1800, verification_url: `${rd.url}/device` },
        });
      }
      case 'device/credentials': {
        rd.stats.credentialPolls++;
        const d = devices.get(req.query.get('code') ?? '');
        if (d?.app || (req.query.get('client_id') !== RD_OPEN_SOURCE_CLIENT && !apps.has(req.query.get('client_id') ?? ''))) {
          return answer(res, rdError(400, 'bad_parameter', 2));
        }
        if (!d?.client || d.used || d.expiresAt < Date.now()) {
          rd.stats.pendingAnswers++;
          return answer(res, rd.pending);
        }
        return answer(res, { status: 200, body: { client_id: d.client.id, client_secret: d.client.secret } });
      }
      case 'token':
        if (req.method !== 'POST') return answer(res, rdError(405, 'method_not_allowed', 4));
        return answer(res, token(new URLSearchParams(req.body)));
      case 'time':
        rd.stats.time++;
        return answer(res, { status: 200, body: new Date().toISOString().replace('T', ' ').slice(0, 19) });
      default:
        rd.stats.apiCalls++;
        return answer(res, rest(endpoint, req.headers.authorization));
    }
  });
  rd.url = server.url;
  rd.close = server.close;
  return rd;
}
