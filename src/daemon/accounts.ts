import fs from 'node:fs';
import {
  AccountConfig,
  type AccountStatus,
  type AccountView,
  type Labels,
  type LoginView,
  type PatchAccountRequest,
  type PutAccountRequest,
} from '../protocol/api.js';
import { isLoopbackHost } from '../protocol/rules.js';
import type { Broker } from './broker.js';
import type { ConfigStore } from './config.js';
import { describeIssues } from '../protocol/issues.js';
import { asDriverError } from './driver-errors.js';
import { driverContext } from './driver-context.js';
import type { Driver, DriverContext, TokenSet } from './drivers/driver.js';
import { E, ApiError, unknownAccount } from './errors.js';
import {
  bindingKey,
  boundJkt,
  describeIdentity,
  identityChanges,
  identityKey,
  identityOf,
  isBoundTo,
  parseIdentity,
} from './grant-identity.js';
import { parseHostPattern } from './match.js';
import { applyPreset, withoutDerived } from './presets.js';
import { DPOP_KEY_SECRET, generateDpopKey, loadDpopKey, storedJkt } from './dpop/key.js';
import { dpopKeyMismatch } from './dpop/binding.js';
import { isStoreUnavailable } from './store/errors.js';
import type { Store } from './store/types.js';

/** What account writes need of the login manager. */
export interface AccountLogins {
  pendingFor(account: string): LoginView | undefined;
  lastFinished(account: string): Promise<LoginView | undefined>;
  cancelFor(account: string, why: string): void;
}

export interface AccountDeps {
  config: ConfigStore;
  store: Store;
  broker: Broker;
  getDriver: (name: string) => Driver | undefined;
  logins?: AccountLogins;
  now?: () => number;
}

/** The flags of `PUT`/`PATCH /v1/accounts/:name` (see ACCOUNT_WRITE_FLAGS). */
export interface WriteFlags {
  /** The change may move the account to another provider or client: revoke and drop its grant. */
  replaceGrant?: boolean;
  /** Contact the provider to check the account (default true). */
  check?: boolean;
}

/** Refuse configs that could send a secret in clear or that no driver can serve. */
function checkAccountConfig(cfg: AccountConfig, getDriver: AccountDeps['getDriver']): void {
  const driver = getDriver(cfg.driver);
  if (!driver) throw E.invalidRequest(`driver: unknown driver "${cfg.driver}"`);
  const problem = driver.validate?.(cfg);
  if (problem) throw E.invalidRequest(problem);
  if (cfg.ca_file) {
    let pem = '';
    try {
      pem = fs.readFileSync(cfg.ca_file, 'utf8');
    } catch (err) {
      throw E.invalidRequest(`ca_file: cannot read ${cfg.ca_file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw E.invalidRequest(`ca_file: ${cfg.ca_file} holds no PEM certificate`);
  }
  for (const h of cfg.hosts) {
    if (!parseHostPattern(h))
      throw E.invalidRequest(`hosts: "${h.slice(0, 200)}" is not a host pattern (e.g. github.com, *.example.com, git.example.com/org)`);
  }
  for (const field of [
    'issuer',
    'token_endpoint',
    'authorization_endpoint',
    'device_authorization_endpoint',
    'revocation_endpoint',
    'api_base',
    'base_url',
  ] as const) {
    const v = cfg[field];
    if (!v) continue;
    const u = new URL(v);
    if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) {
      throw E.invalidRequest(`${field}: plain http is allowed only for loopback hosts (127.0.0.1, ::1, localhost); use https`);
    }
    // A password in a URL would sit in config.json, and fetch refuses such URLs anyway.
    if (u.username || u.password)
      throw E.invalidRequest(`${field}: a URL with a user or password (user:pass@) is not allowed; give secrets on stdin`);
    // The proxy puts each request's own path and query under api_base, and refuses one with its own.
    if (field === 'api_base' && (u.search || u.hash)) {
      throw E.invalidRequest(
        'api_base: a URL with a query (?…) or fragment (#…) is not allowed; give the API root, e.g. https://api.example.com/v1',
      );
    }
  }
}

/** Create or replace an account (`tokend add`); its secrets go to the encrypted store, never to config.json. */
export async function putAccount(deps: AccountDeps, name: string, body: PutAccountRequest, flags: WriteFlags = {}): Promise<AccountView> {
  const { client_secret, password, ...rest } = body;
  return writeAccount(deps, name, rest, { client_secret, password }, flags);
}

/** Change only the given fields of an account (`tokend set`). */
export async function patchAccount(
  deps: AccountDeps,
  name: string,
  body: PatchAccountRequest,
  flags: WriteFlags = {},
): Promise<AccountView> {
  const before = deps.config.getAccount(name);
  if (!before) throw unknownAccount(name);
  const { client_secret, password, ...rest } = body;
  const input: Record<string, unknown> = { ...withoutDerived(before), ...rest };
  if (rest.labels) input.labels = mergeLabels(before.labels, rest.labels);
  for (const [k, v] of Object.entries(input)) if (v === null) delete input[k]; // null clears a field
  return writeAccount(deps, name, input, { client_secret, password }, flags);
}

/**
 * A patch's labels merged into the account's (RFC 7396, as the patch's other fields): a key
 * set to null goes, the others keep their value; no label left is no `labels` at all.
 */
function mergeLabels(before: Labels | undefined, patch: Record<string, string | null>): Labels | null {
  const out: Labels = { ...before };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = v;
  }
  return Object.keys(out).length ? out : null;
}

/** True when `a` and `b` differ in their labels or access and in nothing else (an identical write still checks, as before). */
function onlyLabelsDiffer(a: AccountConfig, b: AccountConfig): boolean {
  const same = (k: string) => JSON.stringify(a[k as keyof AccountConfig]) === JSON.stringify(b[k as keyof AccountConfig]);
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  keys.delete('labels');
  keys.delete('access');
  return !(same('labels') && same('access')) && [...keys].every(same);
}

/** The secrets an account write may carry; each goes to the encrypted store, never to config.json. */
type GivenSecrets = { client_secret?: string; password?: string };

/**
 * The one way an account's config changes. Rule 8 (docs/architecture.md): when the change moves the
 * account to another provider or client (its grant identity), the grant must not follow:
 * without `replaceGrant` the change is refused (409 `conflict`) while a grant exists; with
 * it, the grant is revoked at the provider that issued it and dropped, a pending login is
 * cancelled, and the old client's secrets are dropped (never sent to the new provider).
 */
async function writeAccount(
  deps: AccountDeps,
  name: string,
  input: Record<string, unknown>,
  given: GivenSecrets,
  flags: WriteFlags,
): Promise<AccountView> {
  const parsed = AccountConfig.safeParse(applyPreset(input as never));
  if (!parsed.success) throw E.invalidRequest(describeIssues(parsed.error));
  const cfg = parsed.data;
  checkAccountConfig(cfg, deps.getDriver);

  const before = deps.config.getAccount(name);
  if (before && !flags.replaceGrant && given.client_secret === undefined && given.password === undefined && onlyLabelsDiffer(before, cfg)) {
    // Labels are the app's own notes, access the daemon's own rule: the provider sees none of them, so nothing is checked
    // there and the grant and its cached token stay as they are (no refresh for a relabel).
    await deps.config.putAccount(name, cfg);
    return viewAccount(deps, name);
  }
  const grant = await deps.store.getGrant(name);
  // The grant moves when the identity that holds it is not the new config's: the old
  // config's identity, or in a fleet the one the fleet's grant records (this host's config
  // may have disagreed with it: a change that makes it agree moves nothing).
  const heldBy = deps.store.fleet && grant?.bound_to ? grant.bound_to : before && identityKey(before);
  const moved = heldBy !== undefined && !isBoundTo(heldBy, cfg);
  const holder = heldBy === undefined ? {} : (parseIdentity(heldBy) ?? {});
  const fields = () => identityChanges(holder, identityOf(cfg)).join(', ');
  if (moved && grant && !flags.replaceGrant) {
    throw E.conflict(
      `account "${name}" holds a grant issued by ${describeIdentity(holder)}; this change (${fields()}) would move it to ${describeIdentity(identityOf(cfg))}, ` +
        `and a grant never goes to a provider or client that did not issue it. Re-run with --replace-grant to revoke that grant and drop it (then log in again), or correct the change`,
      { account: name },
    );
  }
  const stored = await deps.store.getSecrets(name);
  if (moved && !flags.replaceGrant) refuseToMoveSecrets(name, stored, given, fields());
  // The secrets the account will hold: the given ones, else (same identity) the stored ones.
  const secretOf = (n: keyof GivenSecrets): string | undefined => given[n] ?? (moved ? undefined : stored.get(n));
  if (cfg.flow === 'client-credentials' && !secretOf('client_secret') && cfg.token_endpoint_auth_method !== 'none') {
    throw E.invalidRequest(
      `account "${name}" uses the client-credentials flow, which needs the client secret: pass it on stdin with --client-secret-stdin`,
      { account: name },
    );
  }
  // RFC 9449: a DPoP account's key, made now so the check's first grant is bound to it; a
  // move drops the old one with the other secrets (turning dpop on again makes a new key).
  const dpopKey = cfg.dpop ? ((moved ? undefined : stored.get(DPOP_KEY_SECRET)) ?? (await generateDpopKey())) : undefined;
  const notices: string[] = [];
  const secretsForCheck = (n: string) =>
    n === DPOP_KEY_SECRET ? dpopKey : n === 'client_secret' || n === 'password' ? secretOf(n) : undefined;
  const obtained = flags.check === false ? undefined : await checkWithProvider(deps, name, cfg, secretsForCheck, notices, !before);

  const retired = await deps.broker.reconfigure(
    name,
    { retire: moved, why: 'the account was moved to another provider or client' },
    async () => {
      if (moved) {
        deps.logins?.cancelFor(name, 'the account was changed to another provider or client');
        // Secrets of the old client belong to the old provider: never send them to the new one.
        const old = await deps.store.getSecrets(name);
        if (given.client_secret === undefined && old.has('client_secret')) {
          notices.push(`the client secret of the old client was dropped; give the new client's with --client-secret-stdin`);
        }
        if (given.password === undefined && old.has('password')) {
          notices.push('the stored password was dropped (it was for the old provider); give it again with --password-stdin');
        }
        await deps.store.deleteSecrets(name);
      }
      for (const [k, v] of Object.entries(given)) if (v !== undefined) await deps.store.putSecret(name, k, v);
      if (dpopKey && (moved || stored.get(DPOP_KEY_SECRET) !== dpopKey)) await deps.store.putSecret(name, DPOP_KEY_SECRET, dpopKey);
      await deps.config.putAccount(name, cfg);
    },
  );
  if (retired.hadGrant) {
    notices.unshift(
      `the grant issued by ${describeIdentity(holder)} was ${retired.revoked ? 'revoked there and ' : ''}dropped${retired.revoked ? '' : ' (the provider could not revoke it)'}; log in again`,
    );
  }
  if (obtained) await deps.broker.installLogin(name, obtained, bindingKey(cfg, storedJkt(dpopKey)));
  return { ...(await viewAccount(deps, name)), ...(notices.length ? { notices } : {}) };
}

/**
 * Rule 8 for the stored secrets: a client secret or password was given for the endpoints the
 * account had, and goes nowhere else unless the write that moves the account gives it again
 * (then it is the user's word for the new endpoints) or `replace_grant` drops it. 409 otherwise.
 */
function refuseToMoveSecrets(name: string, stored: ReadonlyMap<string, string>, given: GivenSecrets, fields: string): void {
  const held = (['client_secret', 'password'] as const).filter((n) => stored.has(n) && given[n] === undefined);
  if (held.length === 0) return;
  const what = held.map((n) => (n === 'client_secret' ? 'client secret' : 'password')).join(' and ');
  const again = held.map((n) => (n === 'client_secret' ? '--client-secret-stdin' : '--password-stdin')).join(' and ');
  throw E.conflict(
    `account "${name}" holds a ${what} given for its current endpoints; this change (${fields}) would send it elsewhere. ` +
      `Give it again in the same change (${again}) if it is meant for the new endpoints, or re-run with --replace-grant to drop it`,
    { account: name },
  );
}

/**
 * `tokend add`'s check (skipped with `--no-check`): discovery and the endpoints the flow
 * needs; for a client-credentials account, a first token (which proves the secret and is
 * kept). Refuses what cannot work, naming the fix.
 */
async function checkWithProvider(
  deps: AccountDeps,
  name: string,
  cfg: AccountConfig,
  secretOf: (n: string) => string | undefined,
  notices: string[],
  adding = false,
): Promise<TokenSet | undefined> {
  const driver = deps.getDriver(cfg.driver)!;
  const timeout = deps.config.settings.http_timeout_ms;
  const ctx = (): DriverContext =>
    driverContext({
      account: name,
      config: cfg,
      secrets: secretOf,
      signal: AbortSignal.timeout(timeout),
    });
  try {
    if (driver.check) notices.push(...(await driver.check(ctx(), { adding })));
    // An account that needs no user (client credentials, a stored password): its first
    // grant proves the secrets, and is kept; unless the driver's recover step reaches
    // beyond this account (Cal.com's force-refresh).
    if (driver.recover && driver.recoverOnAdd !== false && driver.canRecover?.(ctx())) return await driver.recover(ctx(), {});
  } catch (err) {
    if (err instanceof ApiError) throw err;
    const de = asDriverError(err);
    const offline = 'or save it without checking with --no-check';
    if (de.kind === 'transient') {
      throw E.upstreamUnavailable(`cannot check account "${name}": ${de.message}; try again when the provider is reachable, ${offline}`, {
        account: name,
      });
    }
    const fix =
      de.oauthError === 'invalid_client'
        ? 'check --client-id and the client secret'
        : de.oauthError === 'invalid_grant'
          ? 'check --username and the password'
          : cfg.base_url
            ? 'check --base-url'
            : 'check --issuer and the endpoint options';
    throw E.invalidRequest(`account "${name}" was not saved: ${de.message}; ${fix}, ${offline}`, { account: name });
  }
  return undefined;
}

/** Revoke where possible, then delete grant, secrets and config. */
export async function removeAccount(deps: AccountDeps, name: string): Promise<{ revoked: boolean }> {
  if (!deps.config.getAccount(name)) throw unknownAccount(name);
  deps.logins?.cancelFor(name, 'the account was removed');
  const { revoked } = await deps.broker.reconfigure(name, { retire: true, why: 'logout' }, async () => {
    await deps.store.deleteSecrets(name);
    await deps.config.deleteAccount(name);
  });
  return { revoked };
}

/** What the API shows of one account: never a secret. */
export async function viewAccount(deps: AccountDeps, name: string): Promise<AccountView> {
  const cfg = deps.config.getAccount(name);
  if (!cfg) throw unknownAccount(name);
  const now = (deps.now ?? Date.now)();
  const { grant, token, lastError, failing, retryAt } = await deps.broker.grantState(name);
  const pending = deps.logins?.pendingFor(name);
  const secrets = await unlessDown(deps.store.getSecrets(name), new Map<string, string>());
  // An account whose driver obtains grants without the user (client credentials, a stored
  // password, a provider's force-refresh) can always serve: it is active, grant or not.
  const driver = deps.getDriver(cfg.driver);
  const recoverable = Boolean(
    driver?.recover && driver.canRecover?.(driverContext({ account: name, config: cfg, secrets, signal: AbortSignal.abort() })),
  );
  const validNow = Boolean(token && (token.expires_at === null || token.expires_at > now));
  let status: AccountStatus;
  if (!grant && !token) status = recoverable ? 'active' : 'no_grant';
  else if (grant?.status === 'reauth_required') status = recoverable ? 'active' : 'reauth_required';
  else if (validNow) status = 'active';
  else if (grant?.has_refresh_token || recoverable) status = 'active';
  else status = 'expired';
  // `active` promises a token now, or one to be had without anyone: not while every attempt
  // to get one fails (a refused password, a provider down, a refused client secret).
  if (status === 'active' && !validNow && failing) status = 'refresh_failing';
  // A DPoP grant bound to another key than the account's is not used (dpop/binding.ts): say so.
  const keyJkt = cfg.dpop ? await dpopThumbprint(secrets.get(DPOP_KEY_SECRET)) : null;
  const wrongKey = cfg.dpop ? dpopKeyMismatch(name, grant?.bound_to, keyJkt ?? undefined) : undefined;
  if (wrongKey && !recoverable) status = 'reauth_required';
  if (status !== 'active' && pending) status = 'login_pending';
  const expiresAt = token?.expires_at ?? grant?.expires_at ?? null;
  const last = deps.logins && (await unlessDown(deps.logins.lastFinished(name), undefined));
  return {
    name,
    driver: cfg.driver,
    preset: cfg.preset,
    status,
    expires_at: expiresAt ? new Date(expiresAt).toISOString() : null,
    scopes: cfg.scopes,
    hosts: cfg.hosts,
    issuer: cfg.issuer,
    client_id: cfg.client_id,
    has_client_secret: secrets.has('client_secret'),
    has_password: secrets.has('password'),
    refresh_expires_at: grant?.refresh_expires_at ? new Date(grant.refresh_expires_at).toISOString() : null,
    has_refresh_token: Boolean(grant?.has_refresh_token),
    flow: cfg.flow,
    audience: cfg.audience,
    username: cfg.username,
    api_base: cfg.api_base,
    ...(cfg.dpop ? { dpop: { jkt: keyJkt, ...(wrongKey ? { grant_jkt: boundJkt(grant?.bound_to) } : {}) } } : {}),
    labels: cfg.labels ?? {},
    ...(cfg.access ? { access: cfg.access } : {}),
    last_error: lastError ?? wrongKey?.message ?? null,
    retry_at: retryAt === null ? null : new Date(retryAt).toISOString(),
    generation: grant?.generation ?? 0,
    expires_in: expiresAt ? Math.max(0, Math.floor((expiresAt - now) / 1000)) : null,
    obtained_at: iso(grant?.granted_at),
    refreshed_at: iso(grant?.refreshed_at),
    login: pending ?? null,
    last_login: last ? { id: last.id, flow: last.flow, status: last.status, updated_at: last.updated_at, error: last.error } : null,
  };
}

const iso = (ms: number | null | undefined) => (ms ? new Date(ms).toISOString() : null);

/**
 * What a view reads from the store, or `fallback` while a fleet's database is down: the view
 * still shows what memory holds (the grant, the token), and `tokend list` keeps working.
 */
async function unlessDown<T>(read: Promise<T>, fallback: T): Promise<T> {
  try {
    return await read;
  } catch (err) {
    if (isStoreUnavailable(err)) return fallback;
    throw err;
  }
}

/** The thumbprint of a stored DPoP key (RFC 7638), what `cnf.jkt` of its tokens says; null without a usable key. */
async function dpopThumbprint(secret: string | undefined): Promise<string | null> {
  if (!secret) return null;
  try {
    return (await loadDpopKey(secret)).jkt;
  } catch {
    return null;
  }
}
