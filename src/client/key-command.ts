/**
 * `tokend key [where]`, `tokend key move --to keyring|file`: where the master key lives (the
 * 0600 key file, or the OS keyring), and moving it. The daemon does the move: it holds the
 * key and is config.json's only writer, so the client never touches the key itself.
 */
import type { KeyView } from '../protocol/api.js';
import { ROUTES } from '../protocol/routes.js';
import { parseOptions } from './args.js';
import { EXIT, UsageError, type Command } from './io.js';

export const KEY_HELP = `usage: tokend key [where] [--json]
       tokend key move --to keyring|file [--json]

The master key seals every stored secret. It lives in a 0600 file beside the database
(settings.key_store "file", the default) or in the OS keyring: the macOS Keychain, or on
Linux the Secret Service (gnome-keyring, KWallet, KeePassXC) of your session
(settings.key_store "keyring"). The daemon reads it once, at start.

  where        say where the key is (the default)
  move         put the key in the other place, then remove it from the old one, and set
               settings.key_store in config.json; the daemon keeps running with it
  --to P       keyring | file
  --json       print {"key_store", "where", "moved"} on stdout

On Linux the keyring must be the Secret Service: tokend refuses the kernel keyring, which
forgets everything at reboot. A fleet's daemons share one key file; it cannot move.

Exit status: 0 done (or already there), 1 error (no keyring answers, another key is already
at the destination), 2 bad usage.
`;

export const keyCommand: Command = async (args, io, client) => {
  const { values, positionals } = parseOptions('key', args, { to: { type: 'string' }, json: { type: 'boolean' } }, 1);
  if (values.help) {
    io.stdout(KEY_HELP);
    return EXIT.ok;
  }
  const action = positionals[0] ?? 'where';
  if (action !== 'where' && action !== 'move') throw new UsageError(`unknown action "${action.slice(0, 40)}"; say where or move`, 'key');
  if (action === 'where' && values.to !== undefined) throw new UsageError('--to goes with move', 'key');
  if (action === 'move' && values.to !== 'keyring' && values.to !== 'file')
    throw new UsageError('say where to: --to keyring or --to file', 'key');
  const view =
    action === 'move'
      ? await client().json<KeyView>('POST', ROUTES.keyMove, { to: values.to })
      : await client().json<KeyView>('GET', ROUTES.key);
  if (values.json) io.stdout(`${JSON.stringify(view, null, 2)}\n`);
  else if (action === 'where') io.stdout(`${view.where}\n`);
  else if (view.moved) io.stderr(`tokend: the master key is now in ${view.where}; settings.key_store is "${view.key_store}"\n`);
  else io.stderr(`tokend: the master key is already in ${view.where}\n`);
  return EXIT.ok;
};
