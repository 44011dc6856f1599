/**
 * `tokend completion bash|zsh|fish`: a completion script for the shell, printed on stdout.
 * It completes commands, their options, the words after them (`setup git`, `service
 * install`) and option values (`--flow device|browser`) from dist/client/cli-spec.json,
 * which the build reads from the --help texts (src/client/cli-spec.ts); and account names,
 * asked at completion time from `tokend list --json` with autostart off, so a daemon that
 * is not running gives quietly nothing.
 */
import fs from 'node:fs';
import { parseOptions } from './args.js';
import type { CliSpec, CommandSpec } from './cli-spec.js';
import { EXIT, UsageError, type Command } from './io.js';

export const COMPLETION_HELP = `usage: tokend completion bash|zsh|fish

Prints a completion script for the shell on stdout: commands, their options, the
words after them (setup git, service install) and account names (from a running
daemon; nothing when it is not running: completing never starts it).

  bash   ~/.bashrc:                   source <(tokend completion bash)
  zsh    ~/.zshrc, after compinit:    source <(tokend completion zsh)
         or save it as _tokend in a folder of $fpath
  fish   tokend completion fish > ~/.config/fish/completions/tokend.fish

Exit status: 0 printed, 1 the install lacks dist/client/cli-spec.json (run npm run
build), 2 bad usage.
`;

const SHELLS = ['bash', 'zsh', 'fish'] as const;
type Shell = (typeof SHELLS)[number];

/**
 * The account names, as each script runs it: `tokend list --json` without autostart, its
 * stderr dropped; the names are the top-level "name" fields of its pretty-printed JSON
 * (six spaces in: account objects in `accounts`), which need no quoting (src/protocol/names.ts).
 */
const ACCOUNTS_CMD = `TOKEND_NO_AUTOSTART=1 command tokend list --json 2>/dev/null | sed -n 's/^      "name": "\\([A-Za-z0-9._-]*\\)",*$/\\1/p'`;

export const completionCommand: Command = async (args, io) => {
  const { values, positionals } = parseOptions('completion', args, {});
  if (values.help) {
    io.stdout(COMPLETION_HELP);
    return EXIT.ok;
  }
  const shell = positionals[0];
  if (shell === undefined) throw new UsageError('say which shell: bash, zsh or fish', 'completion');
  if (!(SHELLS as readonly string[]).includes(shell))
    throw new UsageError(`no completion for "${shell.slice(0, 20)}"; only bash, zsh or fish`, 'completion');
  let spec: CliSpec;
  try {
    spec = JSON.parse(fs.readFileSync(new URL('./cli-spec.json', import.meta.url), 'utf8')) as CliSpec;
  } catch (err) {
    io.stderr(`tokend completion: cannot read the command list (${(err as Error).message}); run \`npm run build\`\n`);
    return EXIT.error;
  }
  io.stdout(completionScript(shell as Shell, spec));
  return EXIT.ok;
};

/** The completion script for `shell`. */
export function completionScript(shell: Shell, spec: CliSpec): string {
  if (shell === 'bash') return bashScript(spec.commands);
  if (shell === 'zsh') return zshScript(spec.commands);
  return fishScript(spec.commands);
}

/** Single-quoted for sh, bash, zsh and fish alike (no command word or option holds a quote; this keeps it so). */
function q(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function bashScript(commands: CommandSpec[]): string {
  const cases = commands
    .map((c) => {
      const vals = Object.entries(c.values).map(
        ([opt, v]) => `        ${opt}) COMPREPLY=($(compgen -W ${q(v.join(' '))} -- "$cur")); return ;;`,
      );
      return [
        `    ${c.name})`,
        `      opts=${q(c.options.join(' '))}; words=${q(c.words.join(' '))}; account=${c.account ? 1 : 0}`,
        ...(vals.length ? ['      case $prev in', ...vals, '      esac'] : []),
        '      ;;',
      ].join('\n');
    })
    .join('\n');
  return `# tokend completion for bash (tokend completion bash): commands, options, account names.
# ~/.bashrc:  source <(tokend completion bash)
_tokend_accounts() {
  ${ACCOUNTS_CMD}
}

_tokend() {
  local cur prev cmd opts words account i first
  COMPREPLY=()
  cur=\${COMP_WORDS[COMP_CWORD]}
  prev=\${COMP_WORDS[COMP_CWORD-1]}
  if [ "$COMP_CWORD" -eq 1 ]; then
    COMPREPLY=($(compgen -W ${q([...commands.map((c) => c.name), 'help', '--help', '--version'].join(' '))} -- "$cur"))
    return
  fi
  cmd=\${COMP_WORDS[1]}
  opts=--help; words=; account=0
  case $cmd in
    help) [ "$COMP_CWORD" -eq 2 ] && COMPREPLY=($(compgen -W ${q(commands.map((c) => c.name).join(' '))} -- "$cur")); return ;;
${cases}
    *) return ;;
  esac
  if [[ $cur == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    return
  fi
  # Only the first argument after the command is a word or an account name.
  first=1
  for ((i = 2; i < COMP_CWORD; i++)); do
    [[ \${COMP_WORDS[i]} == -* ]] || first=0
  done
  [ "$first" -eq 1 ] || return
  if [ -n "$words" ]; then
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
  elif [ "$account" -eq 1 ]; then
    COMPREPLY=($(compgen -W "$(_tokend_accounts)" -- "$cur"))
  fi
}
complete -F _tokend tokend
`;
}

function zshScript(commands: CommandSpec[]): string {
  // _describe's "word:description" entries; a colon in the word part would need escaping, and none has one.
  const described = commands.map((c) => q(`${c.name}:${c.summary}`)).join('\n    ');
  const cases = commands
    .map((c) => {
      const lines = [`    ${c.name})`, `      opts=(${c.options.map(q).join(' ')})`];
      if (c.words.length) lines.push(`      subwords=(${c.words.map(q).join(' ')})`);
      if (c.account) lines.push('      account=1');
      for (const [opt, v] of Object.entries(c.values)) {
        lines.push(`      [[ \${words[CURRENT-1]} == ${opt} ]] && { compadd -- ${v.map(q).join(' ')}; return }`);
      }
      lines.push('      ;;');
      return lines.join('\n');
    })
    .join('\n');
  return `#compdef tokend
# tokend completion for zsh (tokend completion zsh): commands, options, account names.
# ~/.zshrc, after compinit:  source <(tokend completion zsh)   (or save it as _tokend in a folder of $fpath)
compdef _tokend tokend

_tokend_accounts() {
  local -a names
  names=(\${(f)"$(${ACCOUNTS_CMD})"})
  (( \${#names} )) && compadd -a names
}

_tokend() {
  local -a cmds opts subwords
  local cmd account=0 first=1 i
  cmds=(
    ${described}
  )
  if (( CURRENT == 2 )); then
    _describe -t commands 'tokend command' cmds
    return
  fi
  cmd=\${words[2]}
  case $cmd in
    help)
      (( CURRENT == 3 )) && _describe -t commands 'tokend command' cmds
      return
      ;;
${cases}
    *) return 1 ;;
  esac
  if [[ \${words[CURRENT]} == -* ]]; then
    compadd -- \${opts[@]}
    return
  fi
  # Only the first argument after the command is a word or an account name.
  for (( i = 3; i < CURRENT; i++ )); do
    [[ \${words[i]} == -* ]] || first=0
  done
  (( first )) || return 1
  if (( \${#subwords} )); then
    compadd -a subwords
  elif (( account )); then
    _tokend_accounts
  fi
}

# Autoloaded from $fpath, this file is _tokend's body: complete now. Sourced: compdef above did it.
if [[ \${funcstack[1]} == _tokend ]]; then
  _tokend "$@"
fi
`;
}

function fishScript(commands: CommandSpec[]): string {
  const names = commands.map((c) => c.name).join(' ');
  const lines: string[] = [
    '# tokend completion for fish (tokend completion fish): commands, options, account names.',
    '# tokend completion fish > ~/.config/fish/completions/tokend.fish',
    'function __tokend_accounts',
    `    ${ACCOUNTS_CMD.replace('TOKEND_NO_AUTOSTART=1 command tokend', 'env TOKEND_NO_AUTOSTART=1 tokend')}`,
    'end',
    '',
    '# The first argument after COMMAND, not yet given (options do not count).',
    'function __tokend_first_arg',
    '    set -l args (commandline -opc)',
    '    set -e args[1..2]',
    '    for a in $args',
    "        string match -q -- '-*' $a; or return 1",
    '    end',
    '    return 0',
    'end',
    '',
    'complete -c tokend -f',
    ...commands.map(
      (c) => `complete -c tokend -n ${q(`not __fish_seen_subcommand_from ${names} help`)} -a ${q(c.name)} -d ${q(c.summary)}`,
    ),
    `complete -c tokend -n ${q('__fish_seen_subcommand_from help')} -a ${q(names)}`,
  ];
  for (const c of commands) {
    const when = `__fish_seen_subcommand_from ${c.name}`;
    for (const o of c.options) {
      const v = c.values[o];
      lines.push(`complete -c tokend -n ${q(when)} -l ${o.slice(2)}${v ? ` -x -a ${q(v.join(' '))}` : ''}`);
    }
    if (c.words.length) lines.push(`complete -c tokend -n ${q(`${when}; and __tokend_first_arg`)} -a ${q(c.words.join(' '))}`);
    if (c.account) lines.push(`complete -c tokend -n ${q(`${when}; and __tokend_first_arg`)} -a ${q('(__tokend_accounts)')}`);
  }
  return lines.join('\n') + '\n';
}
