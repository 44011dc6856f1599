/**
 * `tokend access NAME [open|callers|ask] [rules] [--add]`: who may take an account's token
 * (docs/security.md). Alone, it prints the account's access. A mode with rules replaces the
 * rules (or, with --add, adds to them); a mode alone keeps the rules it has.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Access, AccessRule } from '../protocol/access.js';
import { ACCESS_MODES, type AccessMode, ruleFlags } from '../protocol/access-rules.js';
import type { AccountView } from '../protocol/api.js';
import { ROUTES } from '../protocol/routes.js';
import { parseOptions, requireName, wholeSeconds } from './args.js';
import { EXIT, UsageError, type Command, type Io } from './io.js';

export const ACCESS_HELP = `usage: tokend access NAME [open | callers | ask] [--exe P]... [--script P [--exe P]]
         [--unit U]... [--ancestor P]... [--key APP]... [--tty] [--add] [--ask-timeout S] [--json]

Who may take account NAME's token. Alone, prints its access. The daemon knows each
caller as the kernel and /proc name it (its executable, the script an interpreter runs,
its systemd unit, its parents), or by its loopback listener app key.

  open        any program of yours (the default)
  callers     only a caller one of the rules allows; any other gets 403
              caller_not_allowed, naming it and the command that would allow it
  ask         as callers, but a caller no rule allows waits while you decide
              (\`tokend approvals\`, where approvals are installed); unanswered: refused

Rules (repeatable; given with a mode, they replace the account's rules):
  --exe P        that executable (a name is looked up in PATH; symlinks resolved)
  --script P     an interpreter (node, python3, sh…) running the script file P; with one
                 --exe beside it, only that interpreter
  --unit U       a process of systemd unit U (e.g. backup.service)
  --ancestor P   P anywhere among the caller's parents (/usr/bin/git: git's helper)
  --key APP      the loopback listener's app key APP (tokend listen-key --app APP)
  --tty          a program run from a terminal (the CLI by hand)
  --add          add the rules to those the account has instead of replacing them
  --ask-timeout S  with ask: how long a caller waits for your answer (default 30 s)
  --json         print {"account", "access"} on stdout

The rules guard the token (tokend token, the helpers, POST /v1/token, the API proxy);
listing, status and removing the account stay open to your CLI.

Exit status: 0 ok, 1 the daemon refused it (no such account, no caller addon for rules),
2 bad usage.
`;

/** Where `name` runs from: a path made absolute, or the first match in PATH; symlinks resolved (as /proc/PID/exe names it). */
export function resolveExecutable(name: string, env: NodeJS.ProcessEnv, option: string, command: string): string {
  const candidates = name.includes('/')
    ? [path.resolve(name)]
    : (env.PATH ?? '')
        .split(path.delimiter)
        .filter(Boolean)
        .map((dir) => path.join(dir, name));
  for (const c of candidates) {
    try {
      fs.accessSync(c, fs.constants.X_OK);
      if (fs.statSync(c).isFile()) return fs.realpathSync(c);
    } catch {
      // not this one
    }
  }
  throw new UsageError(`${option} ${name}: no such executable${name.includes('/') ? '' : ' in PATH'}`, command);
}

const OPTIONS = {
  exe: { type: 'string', multiple: true },
  script: { type: 'string', multiple: true },
  unit: { type: 'string', multiple: true },
  ancestor: { type: 'string', multiple: true },
  key: { type: 'string', multiple: true },
  tty: { type: 'boolean' },
  add: { type: 'boolean' },
  'ask-timeout': { type: 'string' },
  json: { type: 'boolean' },
} as const;

type Values = ReturnType<typeof parseOptions<typeof OPTIONS>>['values'];

/** The rules the flags name, in the order of the help text. */
function rulesOf(v: Values, env: NodeJS.ProcessEnv): AccessRule[] {
  const exe = (p: string, o: string) => resolveExecutable(p, env, o, 'access');
  const scripts = v.script ?? [];
  let exes = v.exe ?? [];
  const rules: AccessRule[] = [];
  if (scripts.length > 0 && exes.length > 0) {
    if (scripts.length !== 1 || exes.length !== 1)
      throw new UsageError('--exe beside --script names its interpreter: give one of each (add more with --add)', 'access');
    rules.push({ script: path.resolve(scripts[0]!), exe: exe(exes[0]!, '--exe') });
    exes = [];
  } else {
    for (const s of scripts) rules.push({ script: path.resolve(s) });
  }
  for (const e of exes) rules.push({ exe: exe(e, '--exe') });
  for (const u of v.unit ?? []) rules.push({ unit: u });
  for (const a of v.ancestor ?? []) rules.push({ ancestor: exe(a, '--ancestor') });
  for (const k of v.key ?? []) rules.push({ key: k });
  if (v.tty) rules.push({ tty: true });
  return rules;
}

/** The access a mode and rules leave, from the account's `current` one. */
function nextAccess(current: Access | undefined, mode: AccessMode | undefined, rules: AccessRule[], v: Values): Access {
  const held = current?.mode === 'open' ? [] : (current?.callers ?? []);
  const m = mode ?? (current && current.mode !== 'open' ? current.mode : undefined);
  if (!m) throw new UsageError('account is open: say which mode the rules are for (callers or ask)', 'access');
  const seen = new Set<string>();
  const callers = (v.add || rules.length === 0 ? [...held, ...rules] : rules).filter((r) => {
    const k = JSON.stringify(r);
    return !seen.has(k) && Boolean(seen.add(k));
  });
  const timeout = wholeSeconds(v['ask-timeout'], '--ask-timeout', 'access');
  if (timeout !== undefined && m !== 'ask') throw new UsageError('--ask-timeout is for mode ask', 'access');
  const keptTimeout = m === 'ask' && current?.mode === 'ask' ? current.ask_timeout_s : undefined;
  const ask_timeout_s = timeout ?? keptTimeout;
  return { mode: m, callers, ...(ask_timeout_s !== undefined ? { ask_timeout_s } : {}) };
}

/** The access as lines: the mode, then one rule a line as the flags that add it. */
export function accessLines(name: string, access: Access | undefined): string {
  const a = access ?? { mode: 'open', callers: [] };
  const head = `account:    ${name}\naccess:     ${a.mode}${a.mode === 'ask' ? ` (waits ${a.ask_timeout_s ?? 30} s)` : ''}`;
  return [head, ...a.callers.map((r) => `  ${ruleFlags(r)}`)].join('\n');
}

function show(io: Io, json: boolean | undefined, name: string, access: Access | undefined): void {
  if (json) io.stdout(`${JSON.stringify({ account: name, access: access ?? { mode: 'open', callers: [] } }, null, 2)}\n`);
  else io.stdout(`${accessLines(name, access)}\n`);
}

export const accessCommand: Command = async (args, io, client) => {
  const { values, positionals } = parseOptions('access', args, OPTIONS, 2);
  if (values.help) {
    io.stdout(ACCESS_HELP);
    return EXIT.ok;
  }
  const name = requireName(positionals[0], 'access');
  const word = positionals[1];
  if (word !== undefined && !(ACCESS_MODES as readonly string[]).includes(word))
    throw new UsageError(`"${word.slice(0, 40)}" is not a mode: open, callers or ask`, 'access');
  const mode = word as AccessMode | undefined;
  const rules = rulesOf(values, io.env);
  const c = client();
  const view = await c.json<AccountView>('GET', ROUTES.account(name));
  if (mode === undefined && rules.length === 0 && values['ask-timeout'] === undefined) {
    show(io, values.json, name, view.access);
    return EXIT.ok;
  }
  if (mode === 'open' && rules.length > 0) throw new UsageError('open allows every caller: it takes no rules', 'access');
  const access = mode === 'open' ? null : nextAccess(view.access, mode, rules, values);
  const after = await c.json<AccountView>('PATCH', ROUTES.account(name), { access });
  show(io, values.json, name, after.access);
  io.stderr(
    after.access
      ? `tokend: account "${name}" now serves its token only to ${after.access.callers.length === 1 ? 'the caller its rule allows' : `callers its ${after.access.callers.length} rules allow`}${after.access.mode === 'ask' ? ', and asks you about any other' : ''}\n`
      : `tokend: account "${name}" is open: any program of yours may take its token\n`,
  );
  return EXIT.ok;
};
