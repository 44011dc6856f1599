/**
 * A fake Cal.com API v2 for Platform managed users (api.cal.com cannot be reached from here),
 * following cal.com/docs "Refresh managed user tokens" and "Force refresh tokens" and the
 * behaviour of calcom/cal.com's apps/api/v2 (oauth-flow.service.ts, tokens.repository.ts):
 *
 * - `POST /v2/oauth/{clientId}/refresh`, header `x-cal-secret-key`, JSON `{refreshToken}` →
 *   `{"status":"success","data":{accessToken, accessTokenExpiresAt, refreshToken,
 *   refreshTokenExpiresAt}}` (epoch ms). Rotation: the old refresh token's row is deleted, so
 *   a replay gets 400 "Invalid refresh token", and nothing else is revoked (the new pair and
 *   the old access token stay valid); a wrong secret gets 400 "Invalid OAuthClient credentials.";
 * - `POST /v2/oauth-clients/{clientId}/users/{userId}/force-refresh` with `x-cal-secret-key`
 *   and `x-cal-client-id` → the same shape, after deleting every token of that user;
 * - `GET /v2/oauth-clients/{clientId}/users/{userId}` with the same headers → the user;
 * - `GET /v2/me` with `Authorization: Bearer` → the user; 498 for an expired access token;
 * - errors are `{"status":"error","timestamp","path","error":{"code","message"}}`.
 *
 * Tokens are JWTs with `clientId`, `ownerId`, `iat` and `expiresAt`, as the platform's are.
 */
import { Faults, answer, credentialOf, fakeJwt, jsonOf, startFakeServer, type FakeAnswer, type FakeRequest } from './fake-http.js';

export const CAL_CLIENT_ID = 'clxyz0fakeclient';
export const CAL_CLIENT_SECRET = 'cal-client-secret-0123456789';
export const CAL_USER_ID = 417;

/** `tokend add` of a managed user's account `cal` at the fake (the client secret, when given, on stdin). */
export function addCalArgs(baseUrl: string, user = CAL_USER_ID): string[] {
  return ['add', 'cal', '--preset', 'cal-com', '--base-url', baseUrl, '--client-id', CAL_CLIENT_ID, '--managed-user-id', String(user)];
}

export type CalEndpoint = 'refresh' | 'force-refresh' | 'user' | 'me';

/** Cal.com's error body (HttpExceptionFilter). */
export const calError = (status: number, code: string, message: string, path = '/', headers?: Record<string, string>): FakeAnswer => ({
  status,
  body: { status: 'error', timestamp: new Date().toISOString(), path, error: { code, message } },
  headers,
});

export interface CalTokens {
  accessToken: string;
  accessTokenExpiresAt: number;
  refreshToken: string;
  refreshTokenExpiresAt: number;
}

export interface FakeCalCom {
  /** The service root: what `--base-url` names. */
  url: string;
  /** How long access tokens live, in ms (60 minutes at Cal.com). */
  accessTtlMs: number;
  /** How long a force-refresh takes to answer (a test that needs calls to overlap). */
  forceRefreshDelayMs: number;
  faults: Faults;
  stats: {
    userLookups: number;
    refreshes: number;
    /** Refresh requests refused (unknown refresh token, wrong secret). */
    refreshRefused: number;
    /** Refresh tokens presented after they were rotated away or deleted. */
    replays: number;
    forceRefreshes: number;
    me: number;
    me498: number;
    /** Every request to the refresh and force-refresh endpoints, answered or not. */
    tokenCalls: number;
  };
  issued: string[];
  /** What the platform got when it created the managed user (POST /v2/oauth-clients/{id}/users). */
  createUserTokens(userId?: number): CalTokens;
  /** Is this access token accepted by the API now? */
  isLive(accessToken: string): boolean;
  /** Cal.com's clock says this access token has expired (tokend's may not yet). */
  expire(accessToken: string): void;
  /** Delete every token of the user (what a force-refresh from elsewhere does). */
  dropUserTokens(userId?: number): void;
  close(): Promise<void>;
}

export async function startFakeCalCom(): Promise<FakeCalCom> {
  const issued: string[] = [];
  const users = new Set([CAL_USER_ID]);
  const access = new Map<string, { userId: number; expiresAt: number }>();
  const refresh = new Map<string, { userId: number; expiresAt: number }>();
  const deleted = new Set<string>();

  const cal: FakeCalCom = {
    url: '',
    accessTtlMs: 60 * 60_000,
    forceRefreshDelayMs: 0,
    faults: new Faults(),
    stats: { userLookups: 0, refreshes: 0, refreshRefused: 0, replays: 0, forceRefreshes: 0, me: 0, me498: 0, tokenCalls: 0 },
    issued,
    createUserTokens: (userId = CAL_USER_ID) => createTokens(userId),
    isLive(token) {
      const t = access.get(token);
      return Boolean(t && t.expiresAt > Date.now());
    },
    expire(token) {
      const t = access.get(token);
      if (t) t.expiresAt = Date.now() - 1;
    },
    dropUserTokens(userId = CAL_USER_ID) {
      for (const m of [access, refresh]) {
        for (const [k, v] of m) {
          if (v.userId !== userId) continue;
          m.delete(k);
          deleted.add(k);
        }
      }
    },
    close: async () => undefined,
  };

  function createTokens(userId: number): CalTokens {
    const now = Date.now();
    const accessTokenExpiresAt = now + cal.accessTtlMs;
    const refreshTokenExpiresAt = now + 365 * 24 * 3_600_000;
    const accessToken = fakeJwt(
      { clientId: CAL_CLIENT_ID, ownerId: userId, iat: Math.floor(now / 1000), expiresAt: accessTokenExpiresAt },
      issued,
    );
    const refreshToken = fakeJwt(
      { clientId: CAL_CLIENT_ID, ownerId: userId, iat: Math.floor(now / 1000), expiresAt: refreshTokenExpiresAt },
      issued,
    );
    access.set(accessToken, { userId, expiresAt: accessTokenExpiresAt });
    refresh.set(refreshToken, { userId, expiresAt: refreshTokenExpiresAt });
    return { accessToken, accessTokenExpiresAt, refreshToken, refreshTokenExpiresAt };
  }

  const success = (data: unknown): FakeAnswer => ({ status: 200, body: { status: 'success', data } });

  /** The OAuth client guard of the managed-users endpoints: both headers must name our client. */
  const clientRefused = (req: FakeRequest, clientId: string): FakeAnswer | undefined =>
    clientId === CAL_CLIENT_ID && req.headers['x-cal-secret-key'] === CAL_CLIENT_SECRET && req.headers['x-cal-client-id'] === CAL_CLIENT_ID
      ? undefined
      : calError(401, 'UnauthorizedException', 'Invalid OAuth client credentials', req.path);

  const userOf = (req: FakeRequest, userId: number): FakeAnswer | undefined =>
    users.has(userId)
      ? undefined
      : calError(404, 'NotFoundException', `User with ID ${userId} is not part of this OAuth client.`, req.path);

  function refreshTokens(req: FakeRequest, clientId: string): FakeAnswer {
    if (clientId !== CAL_CLIENT_ID || req.headers['x-cal-secret-key'] !== CAL_CLIENT_SECRET) {
      cal.stats.refreshRefused++;
      return calError(400, 'BadRequestException', 'Invalid OAuthClient credentials.', req.path);
    }
    const presented = jsonOf(req.body)?.refreshToken;
    const row = typeof presented === 'string' ? refresh.get(presented) : undefined;
    if (!row || row.expiresAt < Date.now()) {
      if (typeof presented === 'string' && deleted.has(presented)) cal.stats.replays++;
      cal.stats.refreshRefused++;
      return calError(400, 'BadRequestException', 'Invalid refresh token', req.path);
    }
    // Rotation (tokens.repository.ts refreshOAuthTokens): the old row goes, nothing else does.
    refresh.delete(presented);
    deleted.add(presented);
    cal.stats.refreshes++;
    return success(createTokens(row.userId));
  }

  const server = await startFakeServer((req, res) => {
    const refreshPath = /^\/v2\/oauth\/([^/]+)\/refresh$/.exec(req.path);
    const userPath = /^\/v2\/oauth-clients\/([^/]+)\/users\/(\d+)(\/force-refresh)?$/.exec(req.path);
    const endpoint: CalEndpoint | undefined = refreshPath
      ? 'refresh'
      : userPath
        ? userPath[3]
          ? 'force-refresh'
          : 'user'
        : req.path === '/v2/me'
          ? 'me'
          : undefined;
    if (!endpoint) return answer(res, calError(404, 'NotFoundException', `Cannot ${req.method} ${req.path}`, req.path));
    if (endpoint === 'refresh' || endpoint === 'force-refresh') cal.stats.tokenCalls++;
    const fault = cal.faults.take(endpoint);
    if (fault) return answer(res, fault);
    switch (endpoint) {
      case 'refresh':
        if (req.method !== 'POST') break;
        return answer(res, refreshTokens(req, decodeURIComponent(refreshPath![1])));
      case 'force-refresh':
      case 'user': {
        const [clientId, userId] = [decodeURIComponent(userPath![1]), Number(userPath![2])];
        const refused = clientRefused(req, clientId) ?? userOf(req, userId);
        if (refused) return answer(res, refused);
        if (endpoint === 'user') {
          if (req.method !== 'GET') break;
          cal.stats.userLookups++;
          return answer(res, success({ id: userId, email: `managed-${userId}@example.com`, timeZone: 'Europe/Rome' }));
        }
        if (req.method !== 'POST') break;
        cal.stats.forceRefreshes++;
        const forceRefresh = () => {
          cal.dropUserTokens(userId);
          answer(res, success(createTokens(userId)));
        };
        if (cal.forceRefreshDelayMs > 0) return void setTimeout(forceRefresh, cal.forceRefreshDelayMs);
        return forceRefresh();
      }
      case 'me': {
        cal.stats.me++;
        const bearer = credentialOf(req.headers, 'Bearer');
        const t = bearer ? access.get(bearer) : undefined;
        if (!t) return answer(res, calError(401, 'UnauthorizedException', 'Invalid Access Token', req.path));
        if (t.expiresAt <= Date.now()) {
          cal.stats.me498++;
          return answer(res, calError(498, 'TokenExpiredException', 'ACCESS_TOKEN_IS_EXPIRED', req.path));
        }
        return answer(res, success({ id: t.userId, email: `managed-${t.userId}@example.com` }));
      }
    }
    answer(res, calError(404, 'NotFoundException', `Cannot ${req.method} ${req.path}`, req.path));
  });
  cal.url = server.url;
  cal.close = server.close;
  return cal;
}
