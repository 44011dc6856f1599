import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { streamSSE } from 'hono/streaming';
import type { z } from 'zod';
import {
  ImportRequest,
  PutAccountRequest,
  RejectRequest,
  TokenRequest,
  type Health,
  type TokenResponse,
} from '../../protocol/api.js';
import { ACCOUNT_NAME_RULE, isAccountName } from '../../protocol/names.js';
import { CLIENT_HEADER, MAX_BODY_BYTES } from '../../protocol/routes.js';
import { putAccount, removeAccount, viewAccount, type AccountDeps } from '../accounts.js';
import type { AuditLog } from '../audit.js';
import type { Broker, CachedToken } from '../broker.js';
import { describeIssues } from '../config.js';
import { E, TokendError, unknownAccount } from '../errors.js';
import type { EventBus } from '../events.js';
import type { Logger } from '../log.js';

export interface AppDeps extends AccountDeps {
  broker: Broker;
  events: EventBus;
  audit: AuditLog;
  log: Logger;
  version: string;
  startedAt: number;
  /** Resolve a url/host to an account name (helpers, `--url`); undefined when none matches. */
  resolveTarget?: (req: { url?: string; host?: string; username?: string }) => string | undefined;
  /** Aborted on shutdown, so long-lived SSE streams end and the server can close. */
  shutdown: AbortSignal;
  /** Extra route groups (helper protocols, logins), each mounting its routes on the app. */
  extend?: Array<(app: Hono) => void>;
}

/** Read and validate a JSON body against a protocol schema: 400 with the field named, never a raw ZodError. */
export async function readJson<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  const text = await c.req.text();
  let raw: unknown;
  try {
    raw = text === '' ? {} : JSON.parse(text);
  } catch {
    throw E.invalidRequest('the request body is not valid JSON');
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw E.invalidRequest(describeIssues(parsed.error));
  return parsed.data;
}

export function accountParam(c: Context): string {
  const name = c.req.param('name') ?? '';
  if (!isAccountName(name)) {
    throw E.invalidRequest(ACCOUNT_NAME_RULE);
  }
  return name;
}

export function tokenBody(tok: CachedToken, now: number): TokenResponse {
  return {
    account: tok.account,
    access_token: tok.access_token,
    token_type: tok.token_type,
    expires_at: tok.expires_at === null ? null : new Date(tok.expires_at).toISOString(),
    expires_in: tok.expires_at === null ? null : Math.max(0, Math.floor((tok.expires_at - now) / 1000)),
    scope: tok.scope,
  };
}

/** The socket API (DESIGN.md, Socket API) as a Hono app; `app.request()` tests it without a socket. */
export function createApp(deps: AppDeps): Hono {
  const app = new Hono();

  app.use(
    '*',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw E.payloadTooLarge(`the request body is larger than ${MAX_BODY_BYTES} bytes`);
      },
    }),
  );

  app.get('/v1/health', (c) => {
    const body: Health = {
      status: 'ok',
      version: deps.version,
      pid: process.pid,
      uptime_s: Math.round((Date.now() - deps.startedAt) / 1000),
      accounts: deps.config.listAccounts().length,
    };
    return c.json(body);
  });

  app.get('/v1/accounts', (c) => c.json({ accounts: deps.config.listAccounts().map(([name]) => viewAccount(deps, name)) }));
  app.get('/v1/accounts/:name', (c) => c.json(viewAccount(deps, accountParam(c))));
  app.put('/v1/accounts/:name', async (c) => {
    const name = accountParam(c);
    const body = await readJson(c, PutAccountRequest);
    const existed = deps.config.getAccount(name) !== undefined;
    const view = await putAccount(deps, name, body);
    deps.log.info(existed ? 'account replaced' : 'account added', { account: name, driver: view.driver });
    return c.json(view, existed ? 200 : 201);
  });
  app.delete('/v1/accounts/:name', async (c) => {
    const name = accountParam(c);
    const res = await removeAccount(deps, name);
    deps.log.info('account removed', { account: name, revoked: res.revoked });
    return c.json({ ok: true, ...res });
  });
  app.post('/v1/accounts/:name/import', async (c) => {
    const name = accountParam(c);
    const body = await readJson(c, ImportRequest);
    if (!deps.config.getAccount(name)) throw unknownAccount(name);
    deps.audit.record(name, c.req.header(CLIENT_HEADER), 'import');
    await deps.broker.importRefreshToken(name, body.refresh_token);
    return c.json(viewAccount(deps, name));
  });
  app.post('/v1/accounts/:name/refresh', async (c) => {
    const name = accountParam(c);
    deps.audit.record(name, c.req.header(CLIENT_HEADER), 'refresh');
    const g = await deps.broker.forceRefresh(name);
    return c.json({ account: name, expires_at: g.expires_at ? new Date(g.expires_at).toISOString() : null, generation: g.generation });
  });
  app.post('/v1/accounts/:name/logout', async (c) => {
    const name = accountParam(c);
    deps.audit.record(name, c.req.header(CLIENT_HEADER), 'logout');
    const res = await deps.broker.logout(name);
    deps.log.info('logged out', { account: name, revoked: res.revoked });
    return c.json({ ok: true, ...res });
  });

  // The hot path (rule 2): parse, look up memory, answer. No disk, no network, no log line.
  app.post('/v1/token', async (c) => {
    const req = await readJson(c, TokenRequest);
    let account = req.account;
    if (!account) {
      account = deps.resolveTarget?.({ url: req.url, host: req.host, username: req.username });
      if (!account) throw E.notFound(`no account serves ${req.url ?? req.host}`);
    }
    const tok = await deps.broker.getToken({ account, min_ttl: req.min_ttl, scope: req.scope, audience: req.audience });
    deps.audit.record(account, c.req.header(CLIENT_HEADER), 'token');
    return c.json(tokenBody(tok, Date.now()));
  });

  app.post('/v1/credential/reject', async (c) => {
    const req = await readJson(c, RejectRequest);
    const account = req.account ?? deps.resolveTarget?.({ url: req.url, host: req.host });
    if (!account) throw E.notFound('no account matches that credential');
    if (!deps.config.getAccount(account)) throw unknownAccount(account);
    const dropped = deps.broker.reject(account, req.access_token);
    deps.audit.record(account, c.req.header(CLIENT_HEADER), 'reject');
    return c.json({ ok: true, dropped });
  });

  app.get('/v1/events', (c) =>
    streamSSE(c, async (stream) => {
      let wake: () => void = () => {};
      const done = new Promise<void>((resolve) => (wake = resolve));
      const unsubscribe = deps.events.subscribe((ev) => {
        void stream.writeSSE({ event: ev.type, data: JSON.stringify(ev) });
      });
      const onShutdown = () => wake();
      deps.shutdown.addEventListener('abort', onShutdown);
      stream.onAbort(() => wake());
      await stream.writeSSE({ event: 'ready', data: JSON.stringify({ at: new Date().toISOString() }) });
      await done;
      unsubscribe();
      deps.shutdown.removeEventListener('abort', onShutdown);
    }),
  );

  for (const mount of deps.extend ?? []) mount(app);

  app.notFound((c) => c.json({ error: { code: 'not_found', message: `no route ${c.req.method} ${c.req.path}` } }, 404));

  // One place writes error bodies (STYLE.md rule 5): our codes as they are, anything
  // else as a plain `internal` with no detail on the wire.
  app.onError((err, c) => {
    if (err instanceof TokendError) {
      const body: Record<string, unknown> = { code: err.code, message: err.message };
      if (err.account) body.account = err.account;
      if (err.retryAfter !== undefined) {
        body.retry_after = err.retryAfter;
        c.header('Retry-After', String(err.retryAfter));
      }
      if (err.login) body.login = err.login;
      return c.json({ error: body }, err.status as 400);
    }
    if (err instanceof HTTPException && err.status < 500) {
      return c.json({ error: { code: 'invalid_request', message: err.message || 'bad request' } }, err.status);
    }
    deps.log.error('internal error', { error: err.message, route: c.req.path });
    return c.json({ error: { code: 'internal', message: 'internal error (see the daemon log)' } }, 500);
  });

  return app;
}
