import fs from 'node:fs';
import { Low } from 'lowdb';
import { JSONFile } from 'lowdb/node';
import { z } from 'zod';
import { AccountConfig, AccountName } from '../protocol/api.js';

/** Daemon-wide settings in config.json (`settings`); every field has a default. */
export const Settings = z
  .object({
    /** Timeout of one request to a provider. */
    http_timeout_ms: z.number().int().min(100).max(120_000).default(10_000),
    /** Refresh grants before they expire (DESIGN.md rule 4). */
    proactive_refresh: z.boolean().default(true),
    /** Upper bound on refresh attempts per account per minute: no refresh loop is possible (rule 6). */
    max_refreshes_per_minute: z.number().int().min(1).max(100_000).default(30),
    backoff_initial_ms: z.number().int().min(10).max(600_000).default(1_000),
    backoff_max_ms: z.number().int().min(10).max(3_600_000).default(300_000),
    /** `min_ttl` when a request gives none (rule 1). */
    default_min_ttl: z.number().int().min(0).max(86_400).default(30),
    /**
     * How long one second of a device-flow polling interval lasts, in ms (RFC 8628 §3.5:
     * default 5 s, `slow_down` +5 s). 1000 everywhere but in tests, which shrink it so a
     * poll does not take 5 real seconds. Login lifetimes (`expires_in`) are never scaled.
     */
    device_poll_unit_ms: z.number().int().min(1).max(1000).default(1000),
    /** The loopback TCP listener, `127.0.0.1:PORT` (as `tokend daemon --listen`); off when absent. */
    listen: z.string().min(1).max(64).optional(),
    /** Finished logins are forgotten this long after they ended (checked while the daemon runs). */
    login_retention_hours: z.number().int().min(1).max(24 * 365).default(24 * 7),
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

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Turn zod issues into one line per field, e.g. `accounts.work.client_id: expected string`. */
export function describeIssues(err: z.ZodError, prefix = ''): string {
  return err.issues
    .map((i) => {
      const where = [prefix, ...i.path.map(String)].filter(Boolean).join('.');
      return `${where || '(top level)'}: ${i.message}`;
    })
    .join('; ');
}

/** Parse config.json's text, or throw a ConfigError naming the file and each bad field. */
export function parseConfig(text: string, file: string): ConfigFile {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  const parsed = ConfigFile.safeParse(raw);
  if (!parsed.success) throw new ConfigError(`${file} is invalid: ${describeIssues(parsed.error)}`);
  return parsed.data;
}

/**
 * config.json through lowdb: accounts and settings, never a secret. The daemon is the
 * only writer (clients go through the socket API), so writes need no lock.
 */
export class ConfigStore {
  private readonly db: Low<ConfigFile>;
  private constructor(
    readonly file: string,
    data: ConfigFile,
  ) {
    this.db = new Low<ConfigFile>(new JSONFile<ConfigFile>(file), data);
  }

  /** Load (or create with defaults) the config file; throws ConfigError when it is invalid. */
  static async open(file: string): Promise<ConfigStore> {
    const data = ConfigStore.read(file);
    const store = new ConfigStore(file, data ?? ConfigFile.parse({}));
    if (!data) await store.db.write();
    return store;
  }

  private static read(file: string): ConfigFile | undefined {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return parseConfig(text, file);
  }

  /** Re-read the file (SIGHUP). On error the old config stays in force and the error is thrown. */
  reload(): ConfigFile {
    const data = ConfigStore.read(this.file) ?? ConfigFile.parse({});
    this.db.data = data;
    return data;
  }

  get settings(): Settings {
    return this.db.data.settings;
  }
  getAccount(name: string): AccountConfig | undefined {
    return Object.hasOwn(this.db.data.accounts, name) ? this.db.data.accounts[name] : undefined;
  }
  listAccounts(): Array<[string, AccountConfig]> {
    return Object.entries(this.db.data.accounts);
  }
  async putAccount(name: string, cfg: AccountConfig): Promise<void> {
    this.db.data.accounts[name] = cfg;
    await this.db.write();
  }
  async deleteAccount(name: string): Promise<void> {
    delete this.db.data.accounts[name];
    await this.db.write();
  }
}
