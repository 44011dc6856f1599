/**
 * `tokend listen-key [--app NAME] [--rotate|--revoke]`: the keys of the loopback TCP listener
 * (`tokend daemon --listen 127.0.0.1:PORT`), which an app sends as `Authorization: Bearer KEY`:
 * the daemon key (the administrator's), or an app's own, whose name is then the caller's
 * identity in the audit log. The daemon re-reads both files when they change, so a rotation
 * or revocation takes effect at once.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ACCOUNT_NAME_RULE, isAccountName } from '../protocol/names.js';
import { parseOptions } from './args.js';
import { CommandError, EXIT, UsageError, type Command } from './io.js';

export const LISTEN_KEY_HELP = `usage: tokend listen-key [--app NAME] [--rotate | --revoke] [--json]

Prints the daemon key of the loopback TCP listener (tokend daemon --listen 127.0.0.1:PORT)
on stdout: apps that cannot open the Unix socket send it as \`Authorization: Bearer KEY\`.
The key lives in a 0600 file beside config.json; the daemon creates it on its first start
with --listen.

  --app NAME   the key of app NAME instead (created on first use, kept in listen-apps.json,
               0600): the listener serves it like the daemon key, and the audit log names
               the caller \`key NAME\`, where the Unix socket names the program
  --rotate     replace the key with a new random one (and print it); the old one stops
               working at once
  --revoke     with --app: remove the app's key; it stops working at once
  --json       print {"key", "file", "rotated"} (with --app: and "app") on stdout

Exit status: 0 printed, 1 there is no key yet (start the daemon with --listen, or --rotate),
2 bad usage.
`;

const newKey = () => randomBytes(32).toString('base64url');

/** Write `text` to `file` (0600) atomically: a temp file renamed over it. */
function writePrivate(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, text, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** `--app NAME`: print the app's key (made the first time), or rotate or revoke it. */
function appKey(file: string, app: string, action: 'print' | 'rotate' | 'revoke', json: boolean, io: Parameters<Command>[1]): number {
  if (!isAccountName(app)) throw new UsageError(`--app: app names follow the account name rule (${ACCOUNT_NAME_RULE})`, 'listen-key');
  let apps: Record<string, string> = {};
  try {
    apps = (JSON.parse(fs.readFileSync(file, 'utf8')) as { apps?: Record<string, string> }).apps ?? {};
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new CommandError('failed', `cannot read ${file}: ${(err as Error).message}`);
  }
  const save = () => writePrivate(file, `${JSON.stringify({ apps }, null, 2)}\n`);
  if (action === 'revoke') {
    if (apps[app] === undefined) throw new CommandError('not_found', `no listener key for app "${app}"`);
    delete apps[app];
    save();
    io.stderr(`tokend: the key of app "${app}" was revoked; it no longer works\n`);
    if (json) io.stdout(`${JSON.stringify({ app, file, revoked: true }, null, 2)}\n`);
    return EXIT.ok;
  }
  const rotated = action === 'rotate' && apps[app] !== undefined;
  if (action === 'rotate' || apps[app] === undefined) {
    apps[app] = newKey();
    save();
  }
  const key = apps[app]!;
  io.stdout(json ? `${JSON.stringify({ app, key, file, rotated }, null, 2)}\n` : `${key}\n`);
  if (rotated) io.stderr(`tokend: the key of app "${app}" was replaced; the old one no longer works\n`);
  return EXIT.ok;
}

export const listenKeyCommand: Command = async (args, io, client) => {
  const { values } = parseOptions(
    'listen-key',
    args,
    { rotate: { type: 'boolean' }, revoke: { type: 'boolean' }, app: { type: 'string' }, json: { type: 'boolean' } },
    0,
  );
  if (values.help) {
    io.stdout(LISTEN_KEY_HELP);
    return EXIT.ok;
  }
  if (values.rotate && values.revoke) throw new UsageError('--rotate and --revoke do not go together', 'listen-key');
  if (values.app !== undefined) {
    const action = values.revoke ? 'revoke' : values.rotate ? 'rotate' : 'print';
    return appKey(client().paths.listenAppKeysFile, values.app, action, values.json === true, io);
  }
  if (values.revoke) throw new UsageError('--revoke takes --app NAME (the daemon key can be rotated, not revoked)', 'listen-key');
  // Only the paths: no daemon is needed to read or replace a file of this user's.
  const file = client().paths.listenKeyFile;
  const print = (key: string) =>
    io.stdout(values.json ? `${JSON.stringify({ key, file, rotated: values.rotate === true }, null, 2)}\n` : `${key}\n`);
  if (values.rotate) {
    const key = newKey();
    writePrivate(file, `${key}\n`);
    print(key);
    io.stderr('tokend: the daemon key was replaced; the old one no longer works\n');
    return EXIT.ok;
  }
  let key: string;
  try {
    key = fs.readFileSync(file, 'utf8').trim();
  } catch {
    throw new CommandError(
      'not_found',
      `no daemon key yet (${file}); start the daemon with --listen 127.0.0.1:PORT, or run \`tokend listen-key --rotate\``,
    );
  }
  print(key);
  return EXIT.ok;
};
