// The bench's OpenID Provider: npm oidc-provider on 127.0.0.1 (random port), in memory,
// refresh token rotation on. A trimmed copy of test/support/idp.ts (one confidential client
// `conf`, device flow approved through the provider's model to mint refresh tokens).
// Runs as a child process of bench/run.mjs and is driven over IPC:
//   → {id, cmd: 'issue'}   ← {id, ok, tokens}   a fresh grant: refresh_token, access_token
//   → {id, cmd: 'stats'}   ← {id, ok, stats}    counters since the last reset
//   → {id, cmd: 'reset'}   ← {id, ok}
// It announces {ready: true, issuer} once listening. Counters come from the provider's own
// events (grant.success / grant.error); `tokenMs` is the server-side time of each outside
// POST /token (arrival → response finished).
import http from 'node:http';
import { once } from 'node:events';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import Provider from 'oidc-provider';

export const CLIENT_ID = 'conf';
export const CLIENT_SECRET = 'conf-secret';
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const SCOPE = 'openid offline_access api';
const ACCOUNT = 'bench-user';

const accessTokenTtl = Number(process.env.BENCH_IDP_AT_TTL ?? 3600);

const server = http.createServer();
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const issuer = `http://127.0.0.1:${server.address().port}`;
const internalKey = randomBytes(16).toString('hex');

const jwk = { ...generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' }), kid: 'bench', alg: 'RS256', use: 'sig' };

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: ['refresh_token', DEVICE_GRANT],
      response_types: [],
      redirect_uris: [],
    },
  ],
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
  },
  rotateRefreshToken: true,
  scopes: ['openid', 'offline_access', 'api'],
  ttl: {
    AccessToken: accessTokenTtl,
    RefreshToken: 24 * 3600,
    DeviceCode: 600,
    Grant: 14 * 24 * 3600,
    IdToken: 3600,
    Interaction: 600,
    Session: 14 * 24 * 3600,
  },
  jwks: { keys: [jwk] },
  adapter: memoryAdapter(),
  cookies: { keys: [randomBytes(16).toString('hex')] },
  findAccount: async (_ctx, sub) => ({ accountId: sub, claims: async () => ({ sub }) }),
  interactions: { url: (_ctx, i) => `/interaction/${i.uid}` },
});

const stats = { tokenRequests: 0, refreshes: 0, refreshErrors: 0, replays: 0, tokenMs: [] };
provider.on('grant.success', (ctx) => {
  if (ctx.oidc?.params?.grant_type === 'refresh_token') stats.refreshes++;
});
provider.on('grant.error', (ctx, err) => {
  if (err.error === 'invalid_grant' && /already (used|consumed)/.test(err.error_detail ?? '')) stats.replays++;
  if (ctx.oidc?.params?.grant_type === 'refresh_token') stats.refreshErrors++;
});

const handle = provider.callback();
server.on('request', (req, res) => {
  const path = (req.url ?? '').split('?')[0];
  if (req.method !== 'POST' || path !== '/token') return handle(req, res);
  if (req.headers['x-bench-internal'] === internalKey) {
    delete req.headers['x-bench-internal'];
    return handle(req, res);
  }
  stats.tokenRequests++;
  const t0 = process.hrtime.bigint();
  res.once('finish', () => stats.tokenMs.push(Number(process.hrtime.bigint() - t0) / 1e6));
  return handle(req, res);
});

const basic = `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`;
const post = (url, params) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: basic, 'x-bench-internal': internalKey },
    body: new URLSearchParams(params),
  });

/** A real grant through the device flow, approved through the model (not counted in stats). */
async function issue() {
  const da = await (await post(`${issuer}/device/auth`, { scope: SCOPE })).json();
  if (!da.device_code) throw new Error(`device authorization failed: ${JSON.stringify(da)}`);
  const dc = await provider.DeviceCode.findByUserCode(da.user_code.toUpperCase().replace(/[^A-Z0-9]/g, ''));
  const grant = new provider.Grant({ accountId: ACCOUNT, clientId: CLIENT_ID });
  grant.addOIDCScope(SCOPE);
  Object.assign(dc, { accountId: ACCOUNT, grantId: await grant.save(), scope: SCOPE, authTime: Math.floor(Date.now() / 1000) });
  await dc.save();
  const tokens = await (await post(`${issuer}/token`, { grant_type: DEVICE_GRANT, device_code: da.device_code })).json();
  if (!tokens.refresh_token) throw new Error(`device code exchange gave no refresh token: ${JSON.stringify(tokens)}`);
  return tokens;
}

process.on('message', async (m) => {
  try {
    if (m.cmd === 'issue') process.send({ id: m.id, ok: true, tokens: await issue() });
    else if (m.cmd === 'stats') process.send({ id: m.id, ok: true, stats });
    else if (m.cmd === 'reset') {
      Object.assign(stats, { tokenRequests: 0, refreshes: 0, refreshErrors: 0, replays: 0, tokenMs: [] });
      process.send({ id: m.id, ok: true });
    } else throw new Error(`unknown command ${m.cmd}`);
  } catch (err) {
    process.send({ id: m.id, ok: false, error: String(err?.stack ?? err) });
  }
});
process.on('disconnect', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
process.send({ ready: true, issuer });

/** In-memory storage with oidc-provider's adapter interface (the built-in one is a 1000-entry LRU). */
function memoryAdapter() {
  const store = new Map();
  const byUserCode = new Map();
  const byGrant = new Map();
  return class BenchAdapter {
    constructor(model) {
      this.model = model;
    }
    key(id) {
      return `${this.model}:${id}`;
    }
    async upsert(id, payload) {
      const key = this.key(id);
      store.set(key, payload);
      if (payload.grantId) {
        if (!byGrant.has(payload.grantId)) byGrant.set(payload.grantId, new Set());
        byGrant.get(payload.grantId).add(key);
      }
      if (payload.userCode) byUserCode.set(payload.userCode, key);
    }
    async find(id) {
      return store.get(this.key(id));
    }
    async findByUserCode(userCode) {
      const key = byUserCode.get(userCode);
      return key ? store.get(key) : undefined;
    }
    async findByUid() {
      return undefined;
    }
    async consume(id) {
      const p = store.get(this.key(id));
      if (p) p.consumed = Math.floor(Date.now() / 1000);
    }
    async destroy(id) {
      store.delete(this.key(id));
    }
    async revokeByGrantId(grantId) {
      for (const key of byGrant.get(grantId) ?? []) store.delete(key);
      byGrant.delete(grantId);
    }
  };
}
