import fs from 'node:fs';

/** config.json as the doctor sees it: whether the daemon would accept it, and the fields the checks use. */
export interface ConfigRead {
  state: 'missing' | 'unreadable' | 'invalid' | 'ok';
  /** Why it is unreadable or invalid; for `invalid`, worded to follow the file's name, as the daemon words it. */
  error?: string;
  /** Account name → the fields the doctor uses. */
  accounts: Map<string, { issuer?: string; token_endpoint?: string }>;
  /** `settings.database_url`, when the file names a fleet's database. */
  databaseUrl?: string;
  /** `settings.key_store`: where the master key lives. */
  keyStore?: 'file' | 'keyring';
}

/** Read config.json with the daemon's own parser: the doctor calls it invalid exactly when the daemon would. */
export async function readConfig(file: string): Promise<ConfigRead> {
  const accounts: ConfigRead['accounts'] = new Map();
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { state: code === 'ENOENT' ? 'missing' : 'unreadable', error: (err as Error).message, accounts };
  }
  // Loaded here, not at the top: the schema brings zod, which no other command should pay for.
  const { parseConfigFile } = await import('../../protocol/config-file.js');
  const parsed = parseConfigFile(text);
  if (!parsed.ok) return { state: 'invalid', error: parsed.error, accounts };
  for (const [name, cfg] of Object.entries(parsed.config.accounts)) {
    accounts.set(name, { issuer: cfg.issuer, token_endpoint: cfg.token_endpoint });
  }
  return { state: 'ok', accounts, databaseUrl: parsed.config.settings.database_url, keyStore: parsed.config.settings.key_store };
}
