// Writes, from the CLI's own --help texts (the built CLI, run as a user runs it):
//   man/tokend.1               the man page (package.json "man"; `man tokend` after a global install)
//   dist/client/cli-spec.json  commands, options and arguments, for `tokend completion`
// The last step of `npm run build`, after tsc: a help text changed is a man page and a
// completion changed.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bin = path.join(root, 'bin', 'tokend');
const { commandSpec, overviewCommands } = await import(path.join(root, 'dist', 'client', 'cli-spec.js'));
const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

const run = promisify(execFile);
/** `tokend ARGS` as a program; a private TOKEND_HOME so no help text depends on this machine's accounts. */
const env = { ...process.env, TOKEND_HOME: path.join(root, 'build', 'cli-docs-home'), TOKEND_NO_AUTOSTART: '1', NO_COLOR: '1' };
const help = async (args) => (await run(process.execPath, [bin, ...args, '--help'], { env, maxBuffer: 1 << 20 })).stdout;

const overview = await help([]);
const listed = overviewCommands(overview);
// Four at a time: each is a node start.
const texts = new Map();
for (let i = 0; i < listed.length; i += 4) {
  await Promise.all(listed.slice(i, i + 4).map(async (c) => texts.set(c.name, await help([c.name]))));
}
// `setup` has subcommands, with their own options: completion offers them after `setup git` / `setup cli`.
const setupGit = texts.has('setup') ? await help(['setup', 'git']) : '';
const setupCli = texts.has('setup') ? await help(['setup', 'cli']) : '';

const spec = {
  commands: listed.map((c) =>
    commandSpec(c.name, c.name === 'setup' ? `${texts.get(c.name)}\n${setupGit}\n${setupCli}` : texts.get(c.name), c.summary),
  ),
};
fs.writeFileSync(path.join(root, 'dist', 'client', 'cli-spec.json'), JSON.stringify(spec, null, 2) + '\n');

/**
 * Text for roff: no escapes, no control lines, hyphens as the minus signs they are (copy-paste
 * of options), and any character past ASCII as groff's named Unicode escape (troff reads its
 * input as Latin-1: a raw "…" is "invalid input character").
 */
function roff(text) {
  return text
    .replace(/\\/g, '\\e')
    .replace(/-/g, '\\-')
    .replace(/[^\x00-\x7f]/gu, (c) => `\\[u${c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}]`)
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');
}

/** A help text as it prints: verbatim, unfilled. */
const verbatim = (text) => `.nf\n${roff(text.replace(/\n+$/, ''))}\n.fi`;

const [title, ...rest] = overview.split('\n\n');
const sections = [
  `.TH TOKEND 1 "" "tokend ${version}" "User Commands"`,
  '.SH NAME',
  `tokend \\- ${roff(title.replace(/^tokend:\s*/, ''))}`,
  '.SH SYNOPSIS',
  '.B tokend',
  '.I COMMAND',
  '[\\fIoptions\\fR]',
  '.br',
  '.B git\\-credential\\-tokend',
  '.RI [ \\-\\-socket=PATH ] " get" | store | erase',
  '.br',
  '.B docker\\-credential\\-tokend',
  '.I get|store|erase|list|version',
  '.br',
  '.B bazel\\-credential\\-tokend',
  '.I get',
  '.SH DESCRIPTION',
  'A per\\-user daemon that owns your OAuth 2.0 / OpenID Connect credentials and hands a valid',
  'bearer token to any local program that asks, over a Unix socket. Clients start the daemon',
  "on demand; the credential helpers speak git's, docker's, kubectl's and Bazel's own protocols.",
  '.PP',
  verbatim(rest.join('\n\n')),
  '.SH COMMANDS',
  'Each command prints the text below with \\fBtokend\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR.',
  ...listed.flatMap((c) => [
    `.SS "tokend ${roff(c.name)}"`,
    verbatim(texts.get(c.name)),
    ...(c.name === 'setup' ? ['.SS "tokend setup git"', verbatim(setupGit), '.SS "tokend setup cli"', verbatim(setupCli)] : []),
  ]),
  '.SH "EXIT STATUS"',
  "0 ok, 1 error, 2 bad usage (one line naming the mistake and the command's \\fB\\-\\-help\\fR),",
  '3 the account needs a login. The credential helpers exit as their tool expects.',
  '.SH ENVIRONMENT',
  '.TP',
  '.B TOKEND_HOME',
  'one folder for everything (\\fIconfig/\\fR, \\fIdata/\\fR, \\fIrun/\\fR below it)',
  '.TP',
  '.B TOKEND_SOCKET',
  "the daemon's socket",
  '.TP',
  '.B TOKEND_NO_AUTOSTART=1',
  'clients do not start the daemon',
  '.TP',
  '.B TOKEND_LOG_LEVEL',
  'debug, info, warn or error',
  '.TP',
  '.B BROWSER',
  'the command that opens a login URL',
  '.SH FILES',
  '.TP',
  '.I ~/.config/tokend/config.json',
  'accounts and settings (no secrets)',
  '.TP',
  '.I ~/.local/share/tokend/tokend.db',
  'grants and secrets, encrypted',
  '.TP',
  '.I $XDG_RUNTIME_DIR/tokend/tokend.sock',
  "the daemon's socket",
  '.SH "SEE ALSO"',
  '.BR gitcredentials (7),',
  '.BR git\\-credential (1),',
  '.BR systemctl (1);',
  'README.md and docs/ in the package.',
];
fs.mkdirSync(path.join(root, 'man'), { recursive: true });
fs.writeFileSync(path.join(root, 'man', 'tokend.1'), sections.join('\n') + '\n');
