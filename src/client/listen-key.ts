/**
 * `tokend listen-key [--rotate]`: the daemon key of the loopback TCP listener (`tokend
 * daemon --listen 127.0.0.1:PORT`), which an app sends as `Authorization: Bearer KEY`. The
 * daemon re-reads the file when it changes, so a rotation takes effect at once.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { parseOptions } from './args.js';
import { CommandError, EXIT, type Command } from './io.js';

export const LISTEN_KEY_HELP = `usage: tokend listen-key [--rotate] [--json]

Prints the daemon key of the loopback TCP listener (tokend daemon --listen 127.0.0.1:PORT)
on stdout: apps that cannot open the Unix socket send it as \`Authorization: Bearer KEY\`.
The key lives in a 0600 file beside config.json; the daemon creates it on its first start
with --listen.

  --rotate     replace the key with a new random one (and print it); the old one stops
               working at once
  --json       print {"key", "file", "rotated"} on stdout

Exit status: 0 printed, 1 there is no key yet (start the daemon with --listen, or --rotate),
2 bad usage.
`;

export const listenKeyCommand: Command = async (args, io, client) => {
  const { values } = parseOptions('listen-key', args, { rotate: { type: 'boolean' }, json: { type: 'boolean' } }, 0);
  if (values.help) {
    io.stdout(LISTEN_KEY_HELP);
    return EXIT.ok;
  }
  // Only the paths: no daemon is needed to read or replace a file of this user's.
  const file = client().paths.listenKeyFile;
  const print = (key: string) =>
    io.stdout(values.json ? `${JSON.stringify({ key, file, rotated: values.rotate === true }, null, 2)}\n` : `${key}\n`);
  if (values.rotate) {
    const key = randomBytes(32).toString('base64url');
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${key}\n`, { mode: 0o600 });
    fs.renameSync(tmp, file);
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
