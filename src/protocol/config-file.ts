/**
 * config.json (accounts and settings, never a secret): its schema, and the one parser the
 * daemon and `tokend doctor` both use, so the doctor calls a file invalid exactly when
 * the daemon would refuse it. The client imports this only lazily: zod stays off its fast path.
 */
import { z } from 'zod';
import { AccountConfig, AccountName, KeyStore } from './api.js';
import { ACCOUNT_NAME_RE, ACCOUNT_NAME_RULE } from './names.js';
import { isPostgresUrl } from './fleet.js';
import { describeIssues } from './issues.js';

/** Daemon-wide settings in config.json (`settings`); every field has a default. */
export const Settings = z
  .object({
    /** Timeout of one request to a provider. */
    http_timeout_ms: z.number().int().min(100).max(120_000).default(10_000),
    /** Refresh grants before they expire (before less than min(5 min, ¼ of the lifetime) remains). */
    proactive_refresh: z.boolean().default(true),
    /** Upper bound on refresh attempts per account per minute: no refresh loop is possible. */
    max_refreshes_per_minute: z.number().int().min(1).max(100_000).default(30),
    backoff_initial_ms: z.number().int().min(10).max(600_000).default(1_000),
    backoff_max_ms: z.number().int().min(10).max(3_600_000).default(300_000),
    /** `min_ttl` when a token request gives none. */
    default_min_ttl: z.number().int().min(0).max(86_400).default(30),
    /**
     * How long one second of a device-flow polling interval lasts, in ms (RFC 8628 §3.5:
     * default 5 s, `slow_down` +5 s). 1000 everywhere but in tests, which shrink it so a
     * poll does not take 5 real seconds. Login lifetimes (`expires_in`) are never scaled.
     */
    device_poll_unit_ms: z.number().int().min(1).max(1000).default(1000),
    /** The loopback TCP listener, `127.0.0.1:PORT` (as `tokend daemon --listen`); off when absent. */
    listen: z.string().min(1).max(64).optional(),
    /** The log file (an autostarted or launchd daemon's stderr) is cut back past this size; the previous one is kept as `.1`. */
    log_max_bytes: z
      .number()
      .int()
      .min(64 * 1024)
      .max(1024 * 1024 * 1024)
      .default(10 * 1024 * 1024),
    /** How often the wall clock is compared with the monotonic one (a suspend or a clock change re-arms the timers). */
    clock_check_ms: z.number().int().min(50).max(3_600_000).default(30_000),
    /** The longest a login may wait (`ttl_s`, an account's `login_ttl_s`), in seconds; default 7 days. */
    login_ttl_max_s: z
      .number()
      .int()
      .min(60)
      .max(365 * 86400)
      .default(7 * 86400),
    /** Finished logins are forgotten this long after they ended (checked while the daemon runs). */
    login_retention_hours: z
      .number()
      .int()
      .min(1)
      .max(24 * 365)
      .default(24 * 7),
    /** Audit rows are forgotten this long after they were written (pruned while the daemon runs). */
    audit_retention_days: z.number().int().min(1).max(3650).default(90),
    /** The audit log's bound: past this many rows, the oldest go at the next prune. */
    audit_max_rows: z.number().int().min(1000).max(100_000_000).default(1_000_000),
    /**
     * Where the master key lives: "file" (the 0600 key file, the default) or "keyring" (the
     * macOS Keychain or the Linux Secret Service). Read once at start; `tokend key move`
     * moves the key and sets this. A fleet's daemons share one key file.
     */
    key_store: KeyStore.default('file'),
    /**
     * A fleet's PostgreSQL (`postgresql://user@host:port/db`), shared with other daemons
     * (docs/fleet.md); `TOKEND_DATABASE_URL` wins. Prefer the password in PGPASSWORD or a
     * passfile: config.json is 0600, but a URL is easily copied around.
     */
    database_url: z.string().max(2048).refine(isPostgresUrl, 'must be a postgres:// or postgresql:// URL').optional(),
  })
  .strict();
export type Settings = z.infer<typeof Settings>;

export const ConfigFile = z
  .object({
    version: z.literal(1).default(1),
    settings: Settings.prefault({}),
    accounts: z.record(AccountName, AccountConfig).default({}),
  })
  .strict();
export type ConfigFile = z.infer<typeof ConfigFile>;

/** The file's outer shape; the accounts are checked apart (parseAccounts). */
const ConfigShell = ConfigFile.extend({ accounts: z.unknown().optional() });

/**
 * config.json's text as a ConfigFile, or why it is not one, worded to follow the file's
 * name: `is not valid JSON: …`, or `is invalid: ` and one `field: problem` per issue.
 */
export function parseConfigFile(text: string): { ok: true; config: ConfigFile } | { ok: false; error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, error: `is not valid JSON: ${(err as Error).message}` };
  }
  const shell = ConfigShell.safeParse(raw);
  if (!shell.success) return { ok: false, error: `is invalid: ${describeIssues(shell.error)}` };
  const given = shell.data.accounts === undefined ? {} : shell.data.accounts;
  if (typeof given !== 'object' || given === null || Array.isArray(given))
    return { ok: false, error: 'is invalid: accounts: must be an object of accounts by name' };
  const accounts = parseAccounts(given as Record<string, unknown>);
  if (!accounts.ok) return { ok: false, error: `is invalid: ${accounts.error}` };
  return { ok: true, config: { ...shell.data, accounts: accounts.accounts } };
}

/**
 * Every account checked against AccountConfig, where accounts written the same way share one
 * checked, frozen config. A vault of tokens keyed by task holds thousands of accounts that
 * differ only in their names: checking each with zod took 16 µs (160 ms for 10 000 at
 * start-up), and each parsed copy kept its own strings. Frozen, because one
 * object serves many accounts: a change to an account replaces its object, never edits it.
 */
function parseAccounts(raw: Record<string, unknown>): { ok: true; accounts: Record<string, AccountConfig> } | { ok: false; error: string } {
  const checked = new Map<string, AccountConfig>();
  const problems: string[] = [];
  // The last account checked, as written: the next is most often written the same way, and
  // comparing two small objects costs less than writing one out as JSON to look it up.
  let last: { value: unknown; cfg: AccountConfig } | undefined;
  // In place: JSON.parse's own object already holds every name (a new one of 100 000 names
  // cost as much again). Names are checked first: "__proto__" is not one.
  for (const name in raw) {
    if (!ACCOUNT_NAME_RE.test(name)) {
      problems.push(`accounts.${name.slice(0, 80)}: ${ACCOUNT_NAME_RULE}`);
      continue;
    }
    const value = raw[name];
    let cfg = last && sameJson(last.value, value) ? last.cfg : undefined;
    if (!cfg) {
      const text = JSON.stringify(value);
      cfg = checked.get(text);
      if (!cfg) {
        const r = AccountConfig.safeParse(value);
        if (!r.success) {
          problems.push(describeIssues(r.error, `accounts.${name}`));
          continue;
        }
        checked.set(text, (cfg = deepFreeze(r.data)));
      }
      last = { value, cfg };
    }
    raw[name] = cfg;
  }
  return problems.length ? { ok: false, error: problems.join('; ') } : { ok: true, accounts: raw as Record<string, AccountConfig> };
}

/** Are two values parsed from JSON the same JSON (keys in the same order)? */
function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    if (ka[i] !== kb[i] || !sameJson((a as Record<string, unknown>)[ka[i]!], (b as Record<string, unknown>)[kb[i]!])) return false;
  }
  return true;
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    for (const inner of Object.values(v)) deepFreeze(inner);
    Object.freeze(v);
  }
  return v;
}
