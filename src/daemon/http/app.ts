import { Hono, type Context } from 'hono';
import type { z } from 'zod';
import {
  ACCOUNT_WRITE_FLAGS,
  ImportRequest,
  PatchAccountRequest,
  PutAccountRequest,
  RejectRequest,
  type RecoverResponse,
} from '../../protocol/api.js';
import type { Access, AccountOwner } from '../../protocol/access.js';
import { ACCOUNT_LABEL_QUERY, matchesLabels, parseLabelSelector } from '../../protocol/labels.js';
import { ACCOUNT_NAME_RULE, isAccountName } from '../../protocol/names.js';
import { recordedCaller } from '../../protocol/caller.js';
import { CLIENT_HEADER, ROUTE_PATTERNS } from '../../protocol/routes.js';
import { patchAccount, putAccount, removeAccount, viewAccount, type AccountDeps, type WriteFlags } from '../accounts.js';
import { audited, type AuditLog } from '../audit.js';
import { accessOf, type AccessControl } from '../caller/access.js';
import { checkManage, resolveAccessWrite } from '../caller/access-writes.js';
import type { Broker } from '../broker.js';
import { E, unknownAccount } from '../errors.js';
import type { EventBus } from '../events.js';
import type { Logger } from '../log.js';
import { serveEvents } from './events-route.js';
import { healthBody } from './health-route.js';
import { callerOfContext, header, readBody, who } from './raw-request.js';
import { createRefreshHandler, isoOrNull } from './refresh-route.js';
import { createTokenHandler } from './token-route.js';
import { errorResponse, parseJsonBody } from './wire.js';

export interface AppDeps extends AccountDeps {
  broker: Broker;
  events: EventBus;
  audit: AuditLog;
  /** Who may take each account's token (caller/access.ts), with the approval gate of `ask` accounts (main.ts's; tests get `accessOf`'s). */
  access?: AccessControl;
  log: Logger;
  version: string;
  startedAt: number;
  /** Resolve a url/host to an account name (helpers, `--url`); undefined when none matches. */
  resolveTarget?: (req: { url?: string; host?: string; username?: string }) => string | undefined;
  /** What is wrong while the daemon runs (disk-watch.ts), for `GET /v1/health`. */
  warnings?: () => string[];
  /** Aborted on shutdown, so long-lived SSE streams end and the server can close. */
  shutdown: AbortSignal;
  /** Extra route groups (helper protocols, logins), each mounting its routes on the app. */
  extend?: Array<(app: Hono) => void>;
}

/** Read and validate a JSON body against a protocol schema: 400 with the field named, never a raw ZodError. */
export async function readJson<S extends z.ZodType>(c: Context, schema: S): Promise<z.infer<S>> {
  return parseJsonBody(await readBody(c), schema as never) as z.infer<S>;
}

export function accountParam(c: Context): string {
  const name = c.req.param('name') ?? '';
  if (!isAccountName(name)) {
    throw E.invalidRequest(ACCOUNT_NAME_RULE);
  }
  return name;
}

/** `?replace_grant=true`, `?check=false` on an account write; anything else is the default. */
function writeFlags(c: Context): WriteFlags {
  const flag = (name: string) => {
    const v = c.req.query(name);
    if (v === undefined) return undefined;
    if (v === 'true' || v === '1' || v === '') return true;
    if (v === 'false' || v === '0') return false;
    throw E.invalidRequest(`${name}: expected true or false`);
  };
  return { replaceGrant: flag(ACCOUNT_WRITE_FLAGS.replaceGrant), check: flag(ACCOUNT_WRITE_FLAGS.check) };
}

/** `?label=user=123&label=task=t-1`: the labels an account must all carry; 400 naming the rule a word breaks. */
function labelSelector(words: string[]): Record<string, string> {
  try {
    return parseLabelSelector(words);
  } catch (err) {
    throw E.invalidRequest(`${ACCOUNT_LABEL_QUERY}: ${(err as Error).message}`);
  }
}

/** The socket API (docs/api.md) as a Hono app; `app.request()` tests it without a socket. */
export function createApp(given: AppDeps): Hono {
  const deps = { ...given, access: accessOf(given) };
  const app = new Hono();

  // The daemon answers it on its own lane (health-route.ts); the same body here.
  app.get(ROUTE_PATTERNS.health, (c) => c.json(healthBody(deps)));

  // Generated from the protocol's schemas on first use (as `npm run build` writes dist/openapi.json).
  let openapi: Record<string, unknown> | undefined;
  app.get(ROUTE_PATTERNS.openapi, async (c) => {
    openapi ??= (await import('../../protocol/openapi.js')).buildOpenApi(deps.version);
    return c.json(openapi);
  });

  app.get(ROUTE_PATTERNS.accounts, async (c) => {
    const selector = labelSelector(c.req.queries(ACCOUNT_LABEL_QUERY) ?? []);
    const chosen = deps.config.listAccounts().filter(([, cfg]) => matchesLabels(cfg.labels, selector));
    return c.json({ accounts: await Promise.all(chosen.map(([name]) => viewAccount(deps, name))) });
  });
  app.get(ROUTE_PATTERNS.account, async (c) => c.json(await viewAccount(deps, accountParam(c))));
  /** An account write's access (access-writes.ts): who may write it, and `owner: "self"` resolved to the writer's rule. */
  const writtenAccess = <B extends { access?: Access | null; owner?: AccountOwner }>(
    c: Context,
    name: string,
    body: B,
  ): Omit<B, 'owner'> => {
    const before = deps.config.getAccount(name);
    const who = callerOfContext(c);
    if (before) checkManage(name, before, who);
    const { owner, access: given, ...rest } = body;
    const access = resolveAccessWrite({ name, before, access: given, owner, who, verified: deps.access.verified });
    return (access === undefined ? rest : { ...rest, access }) as Omit<B, 'owner'>;
  };
  /** A request that manages an existing account: not another app's (access-writes.ts). */
  const manage = (c: Context): string => {
    const name = accountParam(c);
    checkManage(name, deps.config.getAccount(name), callerOfContext(c));
    return name;
  };

  app.put(ROUTE_PATTERNS.account, async (c) => {
    const name = accountParam(c);
    // A PUT replaces the account's config but not its access unless it gives one (`access` or
    // `owner`): re-adding an account never opens it (`tokend access NAME open` does).
    const kept = deps.config.getAccount(name)?.access;
    const { access, ...fields } = writtenAccess(c, name, await readJson(c, PutAccountRequest));
    const held = access === undefined ? kept : access;
    const body = held ? { ...fields, access: held } : fields;
    const existed = deps.config.getAccount(name) !== undefined;
    const row = { account: name, action: existed ? 'account_changed' : 'account_added', ...who(c) };
    const view = await audited(deps.audit, { ...row, detail: { fields: Object.keys(body).sort() } }, () =>
      putAccount(deps, name, body, writeFlags(c)),
    );
    deps.log.info(existed ? 'account replaced' : 'account added', { account: name, driver: view.driver });
    const by = recordedCaller(row.caller, row.by);
    if (existed) deps.events.emit('account.changed', name, { fields: Object.keys(body), ...by });
    else deps.events.emit('account.added', name, by);
    return c.json(view, existed ? 200 : 201);
  });
  app.patch(ROUTE_PATTERNS.account, async (c) => {
    const name = accountParam(c);
    const body = writtenAccess(c, name, await readJson(c, PatchAccountRequest));
    // Field names only: which fields changed, never a value (a client secret's name is no secret).
    const row = {
      account: name,
      action: 'account_changed',
      ...who(c),
      detail: { fields: Object.keys(body).sort() },
    };
    const view = await audited(deps.audit, row, () => patchAccount(deps, name, body, writeFlags(c)));
    deps.log.info('account changed', { account: name, fields: Object.keys(body).filter((k) => k !== 'client_secret') });
    deps.events.emit('account.changed', name, { fields: Object.keys(body), ...recordedCaller(row.caller, row.by) });
    return c.json(view);
  });
  app.delete(ROUTE_PATTERNS.account, async (c) => {
    const name = manage(c);
    const row = { account: name, action: 'account_removed', ...who(c) };
    const res = await audited(deps.audit, row, () => removeAccount(deps, name));
    deps.log.info('account removed', { account: name, revoked: res.revoked });
    deps.events.emit('account.removed', name, { revoked: res.revoked, ...recordedCaller(row.caller, row.by) });
    return c.json({ ok: true, ...res });
  });
  app.post(ROUTE_PATTERNS.accountImport, async (c) => {
    const name = manage(c);
    const body = await readJson(c, ImportRequest);
    if (!deps.config.getAccount(name)) throw unknownAccount(name);
    const expiresAt = typeof body.expires_at === 'string' ? Date.parse(body.expires_at) : body.expires_at;
    await audited(deps.audit, { account: name, action: 'import', ...who(c) }, () =>
      deps.broker.importTokens(name, { ...body, expires_at: expiresAt }),
    );
    return c.json(await viewAccount(deps, name));
  });
  // http/entry.ts serves it in front of Hono (refresh-route.ts) with the same handler.
  const refresh = createRefreshHandler(deps);
  app.post(ROUTE_PATTERNS.accountRefresh, async (c) => {
    const by = callerOfContext(c);
    const call = { name: accountParam(c), body: () => readBody(c), client: header(c, CLIENT_HEADER), keyed: by, caller: () => by };
    return c.json(await refresh(call));
  });
  app.post(ROUTE_PATTERNS.accountRecover, async (c) => {
    const name = manage(c);
    const g = await audited(deps.audit, { account: name, action: 'recover', ...who(c) }, () => deps.broker.recover(name));
    const body: RecoverResponse = { account: name, expires_at: isoOrNull(g.expires_at), generation: g.generation };
    return c.json(body);
  });
  app.post(ROUTE_PATTERNS.accountLogout, async (c) => {
    const name = manage(c);
    const res = await audited(deps.audit, { account: name, action: 'logout', ...who(c) }, () => deps.broker.logout(name));
    deps.log.info('logged out', { account: name, revoked: res.revoked });
    return c.json({ ok: true, ...res });
  });

  // The hot path (rule 2). http/entry.ts serves it in front of Hono with the same handler.
  const token = createTokenHandler(deps);
  app.post(ROUTE_PATTERNS.token, async (c) => c.json(await token(await readBody(c), header(c, CLIENT_HEADER), callerOfContext(c))));

  app.post(ROUTE_PATTERNS.credentialReject, async (c) => {
    const req = await readJson(c, RejectRequest);
    const account = req.account ?? deps.resolveTarget?.({ url: req.url, host: req.host });
    if (!account) throw E.notFound('no account matches that credential');
    if (!deps.config.getAccount(account)) throw unknownAccount(account);
    const dropped = deps.broker.reject(account, req.access_token);
    deps.audit.record(account, header(c, CLIENT_HEADER), 'reject', callerOfContext(c));
    return c.json({ ok: true, dropped });
  });

  app.get(ROUTE_PATTERNS.events, (c) => serveEvents(c, deps.events, deps.shutdown, deps.log));

  for (const mount of deps.extend ?? []) mount(app);

  // One writer for every error on the wire, unknown routes included.
  const writeError = (err: unknown, c: Context) => {
    const r = errorResponse(err, deps.log, c.req.path);
    return c.json(r.body, r.status as 400, r.headers);
  };
  app.notFound((c) => writeError(E.notFound(`no route ${c.req.method} ${c.req.path}`), c));
  app.onError(writeError);

  return app;
}
