import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolvePaths } from '../protocol/paths.js';
import { parseOptions } from './args.js';
import { asksJson, EXIT, reportUsage, UsageError, type Io } from './io.js';

// `tokend service install|uninstall|status`: run tokend as a systemd user service (with
// socket activation) or a launchd agent. The templates live in service-files/; this file
// fills in absolute paths, writes them, and drives systemctl / launchctl.

/** Result of one external command. `code` is 127 when the program is missing. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}
export type Runner = (cmd: string, args: string[]) => Promise<RunResult>;

export interface ServiceIo extends Pick<Io, 'stdout' | 'stderr' | 'env'> {
  platform?: NodeJS.Platform;
  /** Runs systemctl / launchctl; tests pass a fake. Default: execFile with `env`. */
  run?: Runner;
  /** The bin/tokend the units start; default: this install's. */
  tokendBin?: string;
}

export type ServicePlatform = 'linux' | 'darwin';

/** Absolute paths filled into the templates. */
export interface ServiceValues {
  /** Absolute path of node (process.execPath). */
  node: string;
  /** Absolute path of this install's bin/tokend. */
  tokend: string;
  /** launchd only: the log folder, ~/Library/Logs/tokend. */
  logDir?: string;
}

/** One rendered service file: its file name and full text. */
export interface RenderedFile {
  name: string;
  contents: string;
}

export const LAUNCHD_LABEL = 'com.tokend.daemon';
export const SYSTEMD_UNITS = ['tokend.socket', 'tokend.service'] as const;

const TEMPLATES: Record<ServicePlatform, { name: string; syntax: Syntax }[]> = {
  linux: [
    { name: 'tokend.socket', syntax: 'systemd' },
    { name: 'tokend.service', syntax: 'systemd' },
  ],
  darwin: [{ name: `${LAUNCHD_LABEL}.plist`, syntax: 'plist' }],
};

type Syntax = 'systemd' | 'plist';

/** The package root: this file is dist/client/service.js (or src/client/service.ts). */
export function packageRoot(): string {
  return fileURLToPath(new URL('../../', import.meta.url));
}

/** The folder holding the unit and plist templates. */
export function templateDir(): string {
  return path.join(packageRoot(), 'service-files');
}

/**
 * Fill `@NAME@` placeholders in one template. Each value is an absolute path, escaped
 * for the file's syntax: systemd (specifier `%`, variable `$`, quoting for blanks) or
 * plist XML. Throws on a relative path, an unknown placeholder or one left unfilled.
 */
export function renderTemplate(template: string, values: Record<string, string | undefined>, syntax: Syntax): string {
  return template.replace(/@([A-Z][A-Z_]*)@/g, (_match, key: string, offset: number) => {
    const value = values[key];
    if (value === undefined) throw new Error(`service template: no value for @${key}@`);
    if (!path.isAbsolute(value)) throw new Error(`service template: @${key}@ must be an absolute path, got ${value}`);
    if (/[\0\n\r]/.test(value)) throw new Error(`service template: @${key}@ contains a control character`);
    if (syntax === 'plist') return xmlText(value);
    const lineSoFar = template.slice(template.lastIndexOf('\n', offset - 1) + 1, offset);
    const isProgram = /^Exec[A-Za-z]+=[-@:+!|]*$/.test(lineSoFar);
    // systemd refuses a program path with quotes or backslashes ("Executable name
    // contains special characters"); arguments may hold them.
    if (isProgram && /["'\\]/.test(value)) {
      throw new Error(`service template: systemd cannot start a program whose path has quotes or backslashes: ${value}`);
    }
    return systemdWord(value, isProgram);
  });
}

/** Render every service file of `platform` from the templates in `dir`. */
export function renderServiceFiles(platform: ServicePlatform, values: ServiceValues, dir: string = templateDir()): RenderedFile[] {
  const fill = { NODE: values.node, TOKEND: values.tokend, LOG_DIR: values.logDir };
  return TEMPLATES[platform].map(({ name, syntax }) => ({
    name,
    contents: renderTemplate(fs.readFileSync(path.join(dir, name), 'utf8'), fill, syntax),
  }));
}

// systemd.service(5), "Command lines": specifiers are resolved first (% → %%), the line
// is split on blanks honouring "double quotes" with C-style \ escapes, and $VAR is
// expanded in the arguments ($ → $$) but not in the program path (systemd keeps "$$"
// there literally, as `systemd-analyze verify` shows).
function systemdWord(value: string, isProgram: boolean): string {
  let escaped = value.replace(/%/g, '%%');
  if (!isProgram) escaped = escaped.replace(/\$/g, '$$$$');
  if (!/[\s"'\\]/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

function xmlText(value: string): string {
  return value.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

const HELP = `usage: tokend service install|uninstall|status [--json] [--dry-run] [--platform linux|darwin]

Runs tokend as a per-user service, started at login and restarted on failure.

  install     write the units with the absolute paths of this node and this
              install, then enable and start them:
                Linux: ~/.config/systemd/user/tokend.socket + tokend.service,
                       systemctl --user daemon-reload; enable --now (the socket
                       starts the daemon on the first connection)
                macOS: ~/Library/LaunchAgents/${LAUNCHD_LABEL}.plist,
                       launchctl bootstrap gui/$UID (logs in ~/Library/Logs/tokend)
              Running it again with nothing changed does nothing.
  uninstall   stop and disable the service and remove its files
  status      whether the files are installed and up to date, and whether the
              service is enabled and running

  --dry-run   print the files and commands instead of writing or running them
  --json      print one JSON object on stdout
  --platform  linux | darwin: which service manager to render for (default: this
              machine's)

Where neither systemd (systemctl --user) nor launchd is available, install says so
and shows how to run \`tokend daemon\` by hand.

Exit status: 0 ok, 1 error (including: no service manager here), 2 bad usage.
`;

interface Options {
  json: boolean;
  dryRun: boolean;
  platform: NodeJS.Platform;
}

/** One file the service consists of, where it goes, and whether it is there already. */
interface PlannedFile {
  path: string;
  contents: string;
  state: 'missing' | 'same' | 'different';
}

/** Everything install / uninstall / status need to know about this machine. */
interface Plan {
  platform: ServicePlatform;
  manager: 'systemd' | 'launchd';
  node: string;
  tokend: string;
  /** Where the service's daemon listens. */
  socket: string;
  files: PlannedFile[];
  /** Folders the daemon writes, created 0700 at install (the sandbox cannot create them). */
  privateDirs: string[];
  uid: number;
  home: string;
}

/**
 * `tokend service install|uninstall|status [--json] [--dry-run] [--platform P]`.
 * Exit 0 ok, 1 error (including: no service manager here), 2 bad usage.
 */
export async function runService(args: string[], io: ServiceIo): Promise<number> {
  let sub: string;
  let opts: Options;
  try {
    const parsed = parseOptions(
      'service',
      args,
      { json: { type: 'boolean' }, 'dry-run': { type: 'boolean' }, platform: { type: 'string' } },
      Number.POSITIVE_INFINITY,
    );
    if (parsed.values.help) {
      io.stdout(HELP);
      return EXIT.ok;
    }
    if (parsed.positionals.length !== 1) throw new UsageError('say one of: install, uninstall, status');
    sub = parsed.positionals[0];
    if (!['install', 'uninstall', 'status'].includes(sub)) throw new UsageError(`unknown subcommand "${sub.slice(0, 40)}"`);
    if (parsed.values['dry-run'] && sub === 'status') throw new UsageError('--dry-run applies to install and uninstall');
    const platform = parsed.values.platform;
    if (platform !== undefined && platform !== 'linux' && platform !== 'darwin') {
      throw new UsageError(`--platform must be linux or darwin, not "${platform.slice(0, 40)}"`);
    }
    opts = {
      json: parsed.values.json === true,
      dryRun: parsed.values['dry-run'] === true,
      platform: platform ?? io.platform ?? process.platform,
    };
  } catch (err) {
    if (err instanceof UsageError) return reportUsage(io, 'service', err.message, asksJson(args));
    throw err;
  }

  const run = io.run ?? commandRunner(io.env, 30_000);
  const tokend = io.tokendBin ?? path.join(packageRoot(), 'bin', 'tokend');
  const out = new Reporter(io, opts.json, sub);
  try {
    if (opts.platform !== 'linux' && opts.platform !== 'darwin') {
      return out.fail(`there are no service files for ${opts.platform}\n${manualInstructions(io.env, tokend)}`, {
        platform: opts.platform,
      });
    }
    const plan = makePlan(opts.platform, io.env, tokend);
    if (sub === 'install') return await install(plan, opts, run, out, io.env);
    if (sub === 'uninstall') return await uninstall(plan, opts, run, out);
    return await status(plan, run, out);
  } catch (err) {
    return out.fail((err as Error).message);
  }
}

function makePlan(platform: ServicePlatform, env: NodeJS.ProcessEnv, tokend: string): Plan {
  const home = path.resolve(env.HOME || os.homedir());
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  const node = process.execPath;
  if (platform === 'linux') {
    // systemd.unit(5): user units in $XDG_CONFIG_HOME/systemd/user (default ~/.config).
    const configHome = absoluteOr(env.XDG_CONFIG_HOME, path.join(home, '.config'));
    const unitDir = path.join(configHome, 'systemd', 'user');
    const rendered = renderServiceFiles('linux', { node, tokend });
    return {
      platform,
      manager: 'systemd',
      node,
      tokend,
      // tokend.socket: ListenStream=%t/tokend/tokend.sock; %t is $XDG_RUNTIME_DIR,
      // /run/user/$UID under pam_systemd.
      socket: path.join(absoluteOr(env.XDG_RUNTIME_DIR, `/run/user/${uid}`), 'tokend', 'tokend.sock'),
      files: rendered.map((f) => planFile(path.join(unitDir, f.name), f.contents)),
      // tokend.service: TOKEND_CONFIG_DIR=%E/tokend, TOKEND_DATA_DIR=%h/.local/share/tokend.
      privateDirs: [path.join(configHome, 'tokend'), path.join(home, '.local', 'share', 'tokend')],
      uid,
      home,
    };
  }
  const logDir = path.join(home, 'Library', 'Logs', 'tokend');
  const rendered = renderServiceFiles('darwin', { node, tokend, logDir });
  return {
    platform,
    manager: 'launchd',
    node,
    tokend,
    // A launchd agent has no XDG_RUNTIME_DIR: resolvePaths() puts the socket under the
    // platform data folder, ~/Library/Application Support/tokend.
    socket: path.join(home, 'Library', 'Application Support', 'tokend', 'run', 'tokend.sock'),
    files: rendered.map((f) => planFile(path.join(home, 'Library', 'LaunchAgents', f.name), f.contents)),
    privateDirs: [logDir],
    uid,
    home,
  };
}

function absoluteOr(value: string | undefined, fallback: string): string {
  return value && path.isAbsolute(value) ? value : fallback;
}

function planFile(file: string, contents: string): PlannedFile {
  let existing: string | undefined;
  try {
    existing = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return { path: file, contents, state: existing === undefined ? 'missing' : existing === contents ? 'same' : 'different' };
}

// ---------------------------------------------------------------- install

async function install(plan: Plan, opts: Options, run: Runner, out: Reporter, env: NodeJS.ProcessEnv): Promise<number> {
  const warnings = installWarnings(plan, env, opts.platform === (process.platform as string));
  const base = { platform: plan.platform, manager: plan.manager, node: plan.node, tokend: plan.tokend, socket: plan.socket };

  if (opts.dryRun) {
    const commands = plan.manager === 'systemd' ? systemdInstallCommands('fresh') : launchdInstallCommands(plan, false);
    if (out.json) {
      out.data({
        ...base,
        ok: true,
        dry_run: true,
        files: plan.files.map((f) => ({ path: f.path, contents: f.contents })),
        commands,
        warnings,
      });
    } else {
      let text = `# tokend service install --dry-run: ${plan.manager} (${plan.platform})\n`;
      text += `# node:   ${plan.node}\n# tokend: ${plan.tokend}\n# socket: ${plan.socket}\n`;
      for (const f of plan.files) text += `\n# ---- ${f.path}\n${f.contents}${f.contents.endsWith('\n') ? '' : '\n'}`;
      text += '\n';
      for (const d of plan.privateDirs) text += `# would create (0700, if missing): ${d}\n`;
      for (const c of commands) text += `# would run: ${c.join(' ')}\n`;
      out.stdout(text);
      for (const w of warnings) out.message(`warning: ${w}`);
    }
    return 0;
  }

  if (!fs.existsSync(plan.tokend)) {
    return out.fail(`cannot find ${plan.tokend}: the service would have nothing to start`, base);
  }
  const available = await managerAvailable(plan, run);
  if (!available.ok) {
    return out.fail(`${available.reason}\n${manualInstructions(env, plan.tokend, plan.node)}`, { ...base, available: false });
  }
  for (const w of warnings) out.message(`warning: ${w}`);

  const changed = plan.files.filter((f) => f.state !== 'same');
  const running = plan.manager === 'systemd' ? await systemdRunning(run) : await launchdLoaded(plan, run);
  if (changed.length === 0 && running) {
    out.message(`already installed: ${plan.files.map((f) => f.path).join(', ')} unchanged, ${plan.manager} has it running`);
    out.data({ ...base, ok: true, result: 'already_installed', files: filesReport(plan.files), commands: [] });
    return 0;
  }

  for (const dir of plan.privateDirs) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  for (const f of changed) {
    writeFileAtomic(f.path, f.contents);
    out.message(`${f.state === 'missing' ? 'wrote' : 'updated'} ${f.path}`);
  }

  let commands: string[][];
  if (plan.manager === 'systemd') {
    const anyExisted = plan.files.some((f) => f.state !== 'missing');
    commands = systemdInstallCommands(changed.length === 0 ? 'enable' : anyExisted ? 'update' : 'fresh');
  } else {
    commands = launchdInstallCommands(plan, running);
  }
  for (const cmd of commands) {
    const ok = await runStep(cmd, run, out);
    if (!ok) return out.fail(`${cmd.join(' ')} failed`, { ...base, files: filesReport(plan.files), commands });
  }

  const result = changed.length === 0 ? 'started' : plan.files.some((f) => f.state !== 'missing') ? 'updated' : 'installed';
  out.message(
    plan.manager === 'systemd'
      ? `tokend runs as a systemd user service; socket ${plan.socket}; logs: journalctl --user -u tokend`
      : `tokend runs as the launchd agent ${LAUNCHD_LABEL}; socket ${plan.socket}; logs: ${path.join(plan.home, 'Library', 'Logs', 'tokend', 'tokend.log')}`,
  );
  out.data({ ...base, ok: true, result, files: filesReport(plan.files), commands });
  return 0;
}

function systemdInstallCommands(kind: 'fresh' | 'update' | 'enable'): string[][] {
  const units = [...SYSTEMD_UNITS];
  if (kind === 'enable') return [['systemctl', '--user', 'enable', '--now', ...units]];
  if (kind === 'fresh')
    return [
      ['systemctl', '--user', 'daemon-reload'],
      ['systemctl', '--user', 'enable', '--now', ...units],
    ];
  // Changed units take effect on a restart; `enable --now` leaves a running one alone.
  return [
    ['systemctl', '--user', 'daemon-reload'],
    ['systemctl', '--user', 'enable', ...units],
    ['systemctl', '--user', 'restart', ...units],
  ];
}

function launchdInstallCommands(plan: Plan, loaded: boolean): string[][] {
  const domain = `gui/${plan.uid}`;
  const cmds: string[][] = [];
  // launchctl(1): bootstrap fails on a loaded service, so take the old one out first.
  if (loaded) cmds.push(['launchctl', 'bootout', `${domain}/${LAUNCHD_LABEL}`]);
  // A service once disabled (launchctl disable) refuses to bootstrap until enabled.
  cmds.push(['launchctl', 'enable', `${domain}/${LAUNCHD_LABEL}`]);
  cmds.push(['launchctl', 'bootstrap', domain, plan.files[0].path]);
  return cmds;
}

/** Run one step, say so, and report its error output if it fails. */
async function runStep(cmd: string[], run: Runner, out: Reporter): Promise<boolean> {
  let res = await run(cmd[0], cmd.slice(1));
  // bootout returns before the old instance is gone; bootstrap then fails for a moment
  // ("Bootstrap failed: 5: Input/output error"), so retry it briefly.
  for (let i = 0; res.code !== 0 && cmd[0] === 'launchctl' && cmd[1] === 'bootstrap' && i < 10; i++) {
    await new Promise((r) => setTimeout(r, 300));
    res = await run(cmd[0], cmd.slice(1));
  }
  if (res.code !== 0) {
    out.message(`ran: ${cmd.join(' ')}: failed (exit ${res.code})${res.stderr.trim() ? `: ${res.stderr.trim()}` : ''}`);
    return false;
  }
  out.message(`ran: ${cmd.join(' ')}`);
  return true;
}

function installWarnings(plan: Plan, env: NodeJS.ProcessEnv, onThisPlatform: boolean): string[] {
  const warnings: string[] = [];
  if (!fs.existsSync(plan.tokend)) warnings.push(`${plan.tokend} does not exist (yet): the service would have nothing to start`);
  const lines = readHead(plan.tokend)?.split('\n');
  if (lines?.[0].startsWith('#!') && !nodeCanRun(lines)) {
    warnings.push(
      `${plan.tokend} starts with "${lines[0]}", not a node script; the service runs it as: ${plan.node} ${plan.tokend} daemon`,
    );
  }
  if (onThisPlatform) {
    // Clients find the daemon with resolvePaths(); the service's daemon listens where the
    // unit says. TOKEND_HOME / TOKEND_SOCKET in this shell point clients elsewhere.
    const clientSocket = resolvePaths(env).socket;
    if (clientSocket !== plan.socket) {
      warnings.push(
        `clients in this environment look for the daemon at ${clientSocket}, the service listens at ${plan.socket}` +
          (env.TOKEND_HOME || env.TOKEND_SOCKET ? ' (TOKEND_HOME or TOKEND_SOCKET is set)' : ''),
      );
    }
  }
  return warnings;
}

/**
 * Does `node FILE` run this script (the service starts bin/tokend that way)? Yes when its
 * #! line names node, or when it is a sh / ES-module polyglot like bin/tokend: a second
 * line \`':' /*\` is a no-op to sh and, to node (which skips the #! line), a string and
 * the start of a comment that hides the shell part.
 */
function nodeCanRun(lines: string[]): boolean {
  return /\bnode\b/.test(lines[0]) || /^':' \/\*/.test(lines[1] ?? '');
}

/** The first 200 bytes of `file`, or undefined when it cannot be read. */
function readHead(file: string): string | undefined {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const buf = Buffer.alloc(200);
      const n = fs.readSync(fd, buf, 0, buf.length, 0);
      return buf.subarray(0, n).toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

function writeFileAtomic(file: string, contents: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, contents, { mode: 0o644 });
  fs.renameSync(tmp, file);
}

// ---------------------------------------------------------------- uninstall

async function uninstall(plan: Plan, opts: Options, run: Runner, out: Reporter): Promise<number> {
  const base = { platform: plan.platform, manager: plan.manager };
  const present = plan.files.filter((f) => f.state !== 'missing');
  const stopCommands =
    plan.manager === 'systemd'
      ? [['systemctl', '--user', 'disable', '--now', ...SYSTEMD_UNITS]]
      : [['launchctl', 'bootout', `gui/${plan.uid}/${LAUNCHD_LABEL}`]];
  const reload = plan.manager === 'systemd' ? [['systemctl', '--user', 'daemon-reload']] : [];

  if (opts.dryRun) {
    const commands = [...stopCommands, ...reload];
    if (out.json) {
      out.data({ ...base, ok: true, dry_run: true, remove: present.map((f) => f.path), commands });
    } else {
      let text = '';
      if (present.length === 0) text += `# not installed: no ${plan.files.map((f) => f.path).join(', ')}\n`;
      else {
        for (const c of stopCommands) text += `# would run: ${c.join(' ')}\n`;
        for (const f of present) text += `# would remove: ${f.path}\n`;
        for (const c of reload) text += `# would run: ${c.join(' ')}\n`;
      }
      out.stdout(text);
    }
    return 0;
  }

  const available = await managerAvailable(plan, run);
  const loaded = available.ok && (plan.manager === 'systemd' ? present.length > 0 : await launchdLoaded(plan, run));
  if (present.length === 0 && !loaded) {
    out.message(`not installed: no ${plan.files.map((f) => f.path).join(', ')}`);
    out.data({ ...base, ok: true, result: 'not_installed', removed: [], commands: [] });
    return 0;
  }

  const ran: string[][] = [];
  if (loaded) {
    for (const cmd of stopCommands) {
      ran.push(cmd);
      if (!(await runStep(cmd, run, out))) return out.fail(`${cmd.join(' ')} failed; nothing removed`, { ...base, commands: ran });
    }
  } else if (!available.ok) {
    out.message(`warning: ${available.reason}; removing the files without stopping anything`);
  }
  for (const f of present) {
    fs.rmSync(f.path, { force: true });
    out.message(`removed ${f.path}`);
  }
  if (available.ok) {
    for (const cmd of reload) {
      ran.push(cmd);
      if (!(await runStep(cmd, run, out))) return out.fail(`${cmd.join(' ')} failed`, { ...base, commands: ran });
    }
  }
  out.message(
    plan.manager === 'launchd'
      ? `uninstalled; logs are kept in ${path.join(plan.home, 'Library', 'Logs', 'tokend')}`
      : 'uninstalled; accounts and tokens are kept (they belong to tokend, not to the service)',
  );
  out.data({ ...base, ok: true, result: 'uninstalled', removed: present.map((f) => f.path), commands: ran });
  return 0;
}

// ---------------------------------------------------------------- status

async function status(plan: Plan, run: Runner, out: Reporter): Promise<number> {
  const files = plan.files.map((f) => ({
    path: f.path,
    state: f.state === 'missing' ? 'missing' : f.state === 'same' ? 'installed' : 'outdated',
  }));
  const installed = plan.files.every((f) => f.state !== 'missing');
  const upToDate = plan.files.every((f) => f.state === 'same');
  const available = await managerAvailable(plan, run);
  const report: Record<string, unknown> = {
    ok: true,
    platform: plan.platform,
    manager: plan.manager,
    installed,
    up_to_date: upToDate,
    files,
    socket: plan.socket,
    manager_available: available.ok,
  };
  const lines = [`tokend service (${plan.manager === 'systemd' ? 'systemd user units' : 'launchd agent'})`];
  for (const f of files) {
    const hint = f.state === 'outdated' ? ' (differs from this install: run tokend service install)' : '';
    lines.push(`  ${f.path}: ${f.state}${hint}`);
  }
  if (!available.ok) {
    lines.push(`  ${available.reason}`);
  } else if (plan.manager === 'systemd') {
    const units: Record<string, { enabled: string; active: string }> = {};
    for (const unit of SYSTEMD_UNITS) {
      // is-enabled / is-active print the state on stdout and exit non-zero unless
      // enabled / active; the text is what we want either way.
      const enabled = (await run('systemctl', ['--user', 'is-enabled', unit])).stdout.trim() || 'unknown';
      const active = (await run('systemctl', ['--user', 'is-active', unit])).stdout.trim() || 'unknown';
      units[unit] = { enabled, active };
      const note = unit === 'tokend.service' && active === 'inactive' ? ' (starts on the first connection)' : '';
      lines.push(`  ${unit}: ${enabled}, ${active}${note}`);
    }
    report.units = units;
    report.running = units['tokend.service'].active === 'active';
  } else {
    const res = await run('launchctl', ['print', `gui/${plan.uid}/${LAUNCHD_LABEL}`]);
    const loaded = res.code === 0;
    const state = /^\s*state = (.+)$/m.exec(res.stdout)?.[1]?.trim();
    const pid = /^\s*pid = (\d+)$/m.exec(res.stdout)?.[1];
    report.loaded = loaded;
    report.running = state === 'running';
    if (pid) report.pid = Number(pid);
    lines.push(`  ${LAUNCHD_LABEL}: ${loaded ? `loaded, ${state ?? 'state unknown'}${pid ? `, pid ${pid}` : ''}` : 'not loaded'}`);
  }
  lines.push(`  socket: ${plan.socket}`);
  if (out.json) out.data(report);
  else out.stdout(`${lines.join('\n')}\n`);
  return 0;
}

// ---------------------------------------------------------------- service managers

async function managerAvailable(plan: Plan, run: Runner): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (plan.manager === 'systemd') {
    // Succeeds only when a user manager runs for us and its bus is reachable.
    const res = await run('systemctl', ['--user', 'show-environment']);
    if (res.code === 0) return { ok: true };
    const why = res.code === 127 ? 'systemctl is not installed' : firstLine(res.stderr) || `exit ${res.code}`;
    return { ok: false, reason: `no systemd user manager here (systemctl --user show-environment: ${why})` };
  }
  const res = await run('launchctl', ['print', `gui/${plan.uid}`]);
  if (res.code === 0) return { ok: true };
  const why = res.code === 127 ? 'launchctl is not installed' : firstLine(res.stderr) || `exit ${res.code}`;
  return { ok: false, reason: `no launchd GUI session for uid ${plan.uid} here (launchctl print gui/${plan.uid}: ${why})` };
}

/** The socket is enabled and listening, and the service enabled: nothing to start. */
async function systemdRunning(run: Runner): Promise<boolean> {
  const enabled = await run('systemctl', ['--user', 'is-enabled', '--quiet', ...SYSTEMD_UNITS]);
  if (enabled.code !== 0) return false;
  const active = await run('systemctl', ['--user', 'is-active', '--quiet', 'tokend.socket']);
  return active.code === 0;
}

async function launchdLoaded(plan: Plan, run: Runner): Promise<boolean> {
  return (await run('launchctl', ['print', `gui/${plan.uid}/${LAUNCHD_LABEL}`])).code === 0;
}

function manualInstructions(env: NodeJS.ProcessEnv, tokend: string, node = process.execPath): string {
  const log = resolvePaths(env).logFile;
  return [
    'Neither a systemd user manager (systemctl --user) nor launchd is available, so tokend cannot run as a service here.',
    'Run the daemon by hand instead, in the foreground:',
    `  ${shellQuote(node)} ${shellQuote(tokend)} daemon`,
    'or in the background, logging to a file:',
    `  nohup ${shellQuote(node)} ${shellQuote(tokend)} daemon >>${shellQuote(log)} 2>&1 &`,
    'Clients also start it on demand when nothing answers on the socket (unless TOKEND_NO_AUTOSTART=1).',
  ].join('\n');
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

function filesReport(files: PlannedFile[]): { path: string; changed: boolean }[] {
  return files.map((f) => ({ path: f.path, changed: f.state !== 'same' }));
}

/**
 * Runs programs with `env`, each stopped after `timeoutMs`; a missing program is exit 127, as
 * in a shell. `tokend service` runs systemctl and launchctl with it, `tokend doctor` its checks.
 */
export function commandRunner(env: NodeJS.ProcessEnv, timeoutMs: number): Runner {
  return (cmd, args) =>
    new Promise((resolve) => {
      // execFile looks `cmd` up in env.PATH (child_process: "options.env.PATH").
      execFile(cmd, args, { env, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: number | string };
        if (e.code === 'ENOENT') return resolve({ code: 127, stdout: '', stderr: `${cmd}: not found` });
        resolve({ code: typeof e.code === 'number' ? e.code : 1, stdout: stdout ?? '', stderr: stderr || e.message });
      });
    });
}

/** Messages to stderr; with --json one object to stdout at the end. */
class Reporter {
  constructor(
    private readonly io: ServiceIo,
    readonly json: boolean,
    private readonly command: string,
  ) {}

  message(s: string): void {
    this.io.stderr(`tokend service ${this.command}: ${s}\n`);
  }

  stdout(s: string): void {
    this.io.stdout(s);
  }

  data(obj: Record<string, unknown>): void {
    if (this.json) this.io.stdout(`${JSON.stringify({ command: this.command, ...obj }, null, 2)}\n`);
  }

  fail(message: string, extra: Record<string, unknown> = {}): number {
    this.message(message);
    if (this.json) this.data({ ...extra, ok: false, error: { code: 'failed', message } });
    return 1;
  }
}
