import fs from 'node:fs';
import { Low } from 'lowdb';
import { JSONFile } from 'lowdb/node';
import type { AccountConfig } from '../protocol/api.js';
import { ConfigFile, parseConfigFile, type Settings } from '../protocol/config-file.js';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Parse config.json's text, or throw a ConfigError naming the file and each bad field. */
function parseConfig(text: string, file: string): ConfigFile {
  const r = parseConfigFile(text);
  if (!r.ok) throw new ConfigError(`${file} ${r.error}`);
  return r.config;
}

/**
 * config.json through lowdb: accounts and settings, never a secret. The daemon is the
 * only writer (clients go through the socket API), so writes need no lock.
 */
export class ConfigStore {
  private readonly db: Low<ConfigFile>;
  private count: number | undefined;
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
    this.count = undefined;
    return data;
  }

  get settings(): Settings {
    return this.db.data.settings;
  }
  getAccount(name: string): AccountConfig | undefined {
    return Object.hasOwn(this.db.data.accounts, name) ? this.db.data.accounts[name] : undefined;
  }
  /** How many accounts (what /v1/health says: counted once per change, not per call, for 10 000 accounts polled). */
  accountCount(): number {
    return (this.count ??= Object.keys(this.db.data.accounts).length);
  }
  listAccounts(): Array<[string, AccountConfig]> {
    return Object.entries(this.db.data.accounts);
  }
  async putAccount(name: string, cfg: AccountConfig): Promise<void> {
    this.db.data.accounts[name] = cfg;
    this.count = undefined;
    await this.db.write();
  }
  /** Where the master key lives now (`tokend key move`). */
  async setKeyStore(kind: Settings['key_store']): Promise<void> {
    this.db.data.settings.key_store = kind;
    await this.db.write();
  }
  async deleteAccount(name: string): Promise<void> {
    delete this.db.data.accounts[name];
    this.count = undefined;
    await this.db.write();
  }
}
