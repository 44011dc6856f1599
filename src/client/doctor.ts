import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { AccountList, AccountView, Health } from '../protocol/api.js';
import { isAccountName } from '../protocol/names.js';
import type { TokendPaths } from '../protocol/paths.js';
import { ROUTES } from '../protocol/routes.js';
import { LAUNCHD_LABEL, packageRoot, runService, type Runner } from './service.js';
import { ApiError, TokendClient } from './socket-client.js';

// `tokend doctor [--json]`: what is wrong and how to fix it. Every check is one line with
// a status and, when something needs doing, the command that does it. It never starts
// the daemon (autostart off; with systemd socket activation the probe is a first client
// like any other) and never sends a secret anywhere: the clock check asks each provider's
// public discovery document for its Date header.

export type CheckStatus = 'ok' | 'info' | 'warn' | 'fail';

export interface Check {
  id: string;
  status: CheckStatus;
  message: string;
  /** A command to run (or, for docker, the config to add). */
  fix?: string;
}

export interface DoctorReport {
  /** No check failed. Warnings and infos do not make it false. */
  ok: boolean;
  checks: Check[];
}

export interface DoctorIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
  /** Runs git, systemctl, launchctl; tests may pass a fake. Default: execFile with `env`. */
  run?: Runner;
  /** Default: the global fetch. */
  fetch?: typeof fetch;
}

/** How long the daemon gets to answer one request. */
const DAEMON_TIMEOUT_MS = 5000;
/** How long each provider gets to answer the clock probe. */
const PROVIDER_TIMEOUT_MS = 3000;
/** Clock skew thresholds. */
const SKEW_WARN_MS = 30_000;
const SKEW_FAIL_MS = 5 * 60_000;
/** "expires soon" for an account that has nothing to refresh with. */
const EXPIRES_SOON_MS = 5 * 60_000;

const HELP = `usage: tokend doctor [--json]

Checks that tokend can work and says how to fix what is wrong:
  - the daemon answers on its socket (its pid and version), and the systemd / launchd
    service, when installed (doctor never starts the daemon itself)
  - folders are 0700 and files 0600 and yours (config, data and socket folders;
    config.json, key, tokend.db, tokend.log)
  - config.json is valid, the key is there and 32 bytes
  - every account: active, expiring with nothing to refresh it, needing a login
  - whether git, docker and kubectl are set up to use tokend (optional)
  - each provider's clock against ours (30 s: warning, 5 min: failure)

Each line is ok, info, warn or fail; a fix follows as a command to run.
  --json   print {"ok", "checks": [{"id", "status", "message", "fix"}]} on stdout
Exit status: 0 when nothing failed, 1 otherwise, 2 bad usage.
`;

/** `tokend doctor [--json]`. Exit 0 when no check failed, 1 otherwise, 2 bad usage. */
export async function runDoctor(args: string[], io: DoctorIo): Promise<number> {
  let json = false;
  try {
    const parsed = parseArgs({ args, options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } }, strict: true });
    if (parsed.values.help) {
      io.stdout(HELP);
      return 0;
    }
    json = parsed.values.json === true;
  } catch (err) {
    io.stderr(`tokend doctor: ${(err as Error).message}\n(see tokend doctor --help)\n`);
    return 2;
  }
  const report = await diagnose(io);
  if (json) io.stdout(JSON.stringify(report, null, 2) + '\n');
  else io.stdout(formatReport(report));
  return report.ok ? 0 : 1;
}

/** Run every check; never throws for what it finds, only reports it. */
export async function diagnose(io: DoctorIo): Promise<DoctorReport> {
  const env = io.env;
  const platform = io.platform ?? process.platform;
  const run = io.run ?? defaultRunner(env);
  const fetchFn = io.fetch ?? fetch;
  const client = new TokendClient({ env, autostart: false, userAgent: 'tokend-cli/doctor' });
  const paths = client.paths;
  const home = path.resolve(env.HOME || os.homedir());

  // Independent of the daemon: start them now, in parallel with the probe.
  const serviceP = serviceState(env, platform, run);
  const integrationsP = Promise.all([checkGit(env, run), checkDocker(env, home), checkKubectl(env, home)]);

  const probe = await probeDaemon(paths.socket);
  let accounts: AccountView[] | undefined;
  let accountsError: string | undefined;
  if (probe.up) {
    try {
      accounts = (await withTimeout(client.json<AccountList>('GET', ROUTES.accounts), DAEMON_TIMEOUT_MS, 'GET /v1/accounts')).accounts;
    } catch (err) {
      accountsError = err instanceof ApiError ? `${err.message} (${err.code})` : (err as Error).message;
    }
  }
  const service = await serviceP;

  const checks: Check[] = [];
  checks.push(...daemonChecks(probe, service, paths, platform));
  checks.push(serviceCheck(service, paths));
  if (!probe.up) checks.push(...lastErrorChecks(paths, service, platform, home));
  checks.push(...permissionChecks(paths, probe.up));
  const config = readConfig(paths.configFile);
  checks.push(configCheck(config, paths.configFile, probe.up ? { pid: probe.health.pid, accounts } : undefined));
  checks.push(keyCheck(paths, probe.up));
  checks.push(...accountChecks(accounts, accountsError, probe.up));
  checks.push(...(await clockChecks(clockTargets(accounts, config), fetchFn, platform)));
  checks.push(...(await integrationsP).flat());
  return { ok: !checks.some((c) => c.status === 'fail'), checks };
}

// ---------------------------------------------------------------- output

function formatReport(report: DoctorReport): string {
  const lines = ['tokend doctor'];
  for (const c of report.checks) {
    lines.push(`${c.status.padEnd(5)} ${c.id}: ${c.message}`);
    if (c.fix) lines.push(`      fix: ${c.fix.split('\n').join('\n           ')}`);
  }
  const fails = report.checks.filter((c) => c.status === 'fail').length;
  const warns = report.checks.filter((c) => c.status === 'warn').length;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  lines.push(
    fails
      ? `\n${plural(fails, 'problem')}${warns ? `, ${plural(warns, 'warning')}` : ''}: run the fixes above, then tokend doctor again`
      : warns
        ? `\nno problems, ${plural(warns, 'warning')}`
        : '\nall is well',
  );
  return lines.join('\n') + '\n';
}

// ---------------------------------------------------------------- daemon

type Probe =
  | { up: true; health: Health }
  | { up: false; reason: 'no_socket' | 'refused' | 'timeout' | 'error'; detail: string };

/**
 * GET /v1/health with a deadline: a daemon that accepts but never answers (stopped,
 * wedged) must not hang the doctor, so this is a plain request we can destroy.
 */
function probeDaemon(socket: string): Promise<Probe> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (p: Probe) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(p);
    };
    const req = http.request(
      { socketPath: socket, method: 'GET', path: ROUTES.health, headers: { host: 'tokend', 'user-agent': 'tokend-cli/doctor' }, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => finish({ up: false, reason: 'error', detail: err.message }));
        res.on('end', () => {
          let body: Partial<Health> | undefined;
          try {
            body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Partial<Health>;
          } catch {
            body = undefined;
          }
          if (res.statusCode === 200 && body && typeof body.pid === 'number') finish({ up: true, health: body as Health });
          else finish({ up: false, reason: 'error', detail: `GET /v1/health answered ${res.statusCode} without the expected body: is this a tokend socket?` });
        });
      },
    );
    const timer = setTimeout(() => {
      finish({ up: false, reason: 'timeout', detail: `no answer on ${socket} within ${DAEMON_TIMEOUT_MS / 1000} s` });
      req.destroy();
    }, DAEMON_TIMEOUT_MS);
    req.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') finish({ up: false, reason: 'no_socket', detail: `there is no socket at ${socket}` });
      else if (err.code === 'ECONNREFUSED') finish({ up: false, reason: 'refused', detail: `nothing listens on ${socket} (a stale socket file)` });
      else finish({ up: false, reason: 'error', detail: `cannot talk to ${socket}: ${err.message}` });
    });
    req.end();
  });
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function clientVersion(): string | undefined {
  try {
    return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

/** The daemon's lock owner file (lock.ts): which pid holds the data folder, and its socket. */
function lockOwner(paths: TokendPaths): { pid: number; socket?: string; alive: boolean } | undefined {
  try {
    const o = JSON.parse(fs.readFileSync(path.join(paths.dataDir, 'daemon.pid'), 'utf8')) as { pid?: unknown; socket?: unknown };
    if (typeof o.pid !== 'number' || !Number.isInteger(o.pid) || o.pid <= 0) return undefined;
    let alive = false;
    try {
      process.kill(o.pid, 0);
      alive = true;
    } catch (err) {
      alive = (err as NodeJS.ErrnoException).code === 'EPERM';
    }
    return { pid: o.pid, socket: typeof o.socket === 'string' ? o.socket : undefined, alive };
  } catch {
    return undefined;
  }
}

function daemonChecks(probe: Probe, service: ServiceState, paths: TokendPaths, platform: NodeJS.Platform): Check[] {
  if (probe.up) {
    const h = probe.health;
    const checks: Check[] = [
      { id: 'daemon', status: 'ok', message: `running: pid ${h.pid}, version ${h.version}, up ${h.uptime_s} s, socket ${paths.socket}` },
    ];
    const mine = clientVersion();
    if (mine && h.version !== mine) {
      checks.push({
        id: 'version',
        status: 'warn',
        message: `the daemon runs tokend ${h.version}, this command is ${mine}: restart the daemon to run the installed version`,
        fix: serviceRunsHere(service, paths) ? restartCommand(service, platform) : `kill ${h.pid}   # clients start the new version on demand`,
      });
    }
    return checks;
  }
  const owner = lockOwner(paths);
  const live = owner?.alive ? owner : undefined;
  const installed = service.kind === 'report' && serviceRunsHere(service, paths);
  const kind = service.kind === 'report' ? service.manager : undefined;
  const units = kind === 'systemd' ? 'the systemd user units are' : 'the launchd agent is';
  let message: string;
  let fix: string;
  if (probe.reason === 'timeout') {
    message = `tokend does not answer: ${probe.detail}${live ? ` (pid ${live.pid} holds its data folder: stopped or wedged)` : ''}`;
    fix = installed ? restartCommand(service, platform) : live ? `kill ${live.pid}; tokend daemon` : 'tokend daemon';
  } else if (live && live.socket && path.resolve(live.socket) !== path.resolve(paths.socket)) {
    message = `tokend runs (pid ${live.pid}) but listens on ${live.socket}, not on ${paths.socket} where clients here look (started with --socket or another TOKEND_SOCKET?)`;
    fix = `export TOKEND_SOCKET='${shq(live.socket)}'   # or restart it: kill ${live.pid}; tokend daemon`;
  } else {
    message = `tokend is ${probe.reason === 'error' ? 'not reachable' : 'not running'}: ${probe.detail}`;
    if (installed) {
      fix = kind === 'systemd' ? 'systemctl --user start tokend.socket' : `launchctl kickstart gui/${uid()}/${LAUNCHD_LABEL}`;
    } else if (service.kind === 'report' && service.managerAvailable) {
      fix = 'tokend service install   # or, in the foreground: tokend daemon';
    } else {
      fix = 'tokend daemon';
    }
  }
  if (service.kind !== 'report') message += `; no service files for this platform`;
  else if (installed) message += `; ${units} installed`;
  else if (service.managerAvailable) message += `; ${units} not installed`;
  else message += `; ${service.manager === 'systemd' ? 'no systemd user manager' : 'no launchd session'} here to run it as a service`;
  return [{ id: 'daemon', status: 'fail', message, fix }];
}

function uid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : 0;
}

function restartCommand(service: ServiceState, platform: NodeJS.Platform): string {
  if (service.kind === 'report' && service.manager === 'launchd') return `launchctl kickstart -k gui/${uid()}/${LAUNCHD_LABEL}`;
  if (service.kind === 'report' && service.manager === 'systemd') return 'systemctl --user restart tokend.service';
  return platform === 'darwin' ? `launchctl kickstart -k gui/${uid()}/${LAUNCHD_LABEL}` : 'systemctl --user restart tokend.service';
}

// ---------------------------------------------------------------- service

type ServiceState =
  | {
      kind: 'report';
      manager: 'systemd' | 'launchd';
      installed: boolean;
      partial: boolean;
      upToDate: boolean;
      managerAvailable: boolean;
      socket: string;
      running?: boolean;
      detail: string;
    }
  | { kind: 'none'; reason: string };

/** `tokend service status --json`, reused as is: the unit paths and systemctl/launchctl logic live there. */
async function serviceState(env: NodeJS.ProcessEnv, platform: NodeJS.Platform, run: Runner): Promise<ServiceState> {
  let out = '';
  let err = '';
  try {
    await runService(['status', '--json'], { stdout: (s) => (out += s), stderr: (s) => (err += s), env, platform, run });
    const r = JSON.parse(out) as {
      ok?: boolean;
      error?: string;
      manager?: 'systemd' | 'launchd';
      installed?: boolean;
      up_to_date?: boolean;
      files?: { path: string; state: string }[];
      manager_available?: boolean;
      socket?: string;
      running?: boolean;
      loaded?: boolean;
      pid?: number;
      units?: Record<string, { enabled: string; active: string }>;
    };
    if (!r.ok || !r.manager) return { kind: 'none', reason: r.error ?? (err.trim() || 'no service files for this platform') };
    const files = r.files ?? [];
    let detail: string;
    if (r.units) detail = Object.entries(r.units).map(([u, s]) => `${u} ${s.enabled}, ${s.active}`).join('; ');
    else if (r.manager === 'launchd') detail = r.loaded ? `${LAUNCHD_LABEL} loaded${r.running ? `, running${r.pid ? ` (pid ${r.pid})` : ''}` : ''}` : `${LAUNCHD_LABEL} not loaded`;
    else detail = '';
    return {
      kind: 'report',
      manager: r.manager,
      installed: r.installed === true,
      partial: r.installed !== true && files.some((f) => f.state !== 'missing'),
      upToDate: r.up_to_date === true,
      managerAvailable: r.manager_available === true,
      socket: r.socket ?? '',
      running: r.running,
      detail,
    };
  } catch (e) {
    return { kind: 'none', reason: (e as Error).message };
  }
}

function serviceRunsHere(service: ServiceState, paths: TokendPaths): boolean {
  return service.kind === 'report' && service.installed && path.resolve(service.socket) === path.resolve(paths.socket);
}

function serviceCheck(service: ServiceState, paths: TokendPaths): Check {
  if (service.kind === 'none') return { id: 'service', status: 'info', message: `not available: ${service.reason}` };
  const what = service.manager === 'systemd' ? 'systemd user units (tokend.socket, tokend.service)' : `launchd agent ${LAUNCHD_LABEL}`;
  if (!service.installed && !service.partial) {
    if (!service.managerAvailable) {
      const none = service.manager === 'systemd' ? 'no systemd user manager here (systemctl --user)' : 'no launchd GUI session here';
      return { id: 'service', status: 'info', message: `not installed: ${none}; run \`tokend daemon\` under your own supervisor, or let clients start it on demand` };
    }
    return {
      id: 'service',
      status: 'info',
      message: `the ${what} are not installed (optional: clients start the daemon on demand)`,
      fix: 'tokend service install',
    };
  }
  if (service.partial || !service.upToDate) {
    return {
      id: 'service',
      status: 'warn',
      message: `the ${what} are ${service.partial ? 'partly installed' : 'installed but differ from this install (other node or tokend path)'}`,
      fix: 'tokend service install',
    };
  }
  if (path.resolve(service.socket) !== path.resolve(paths.socket)) {
    return {
      id: 'service',
      status: 'warn',
      message: `the service listens on ${service.socket}, but clients here look for the daemon at ${paths.socket} (TOKEND_HOME or TOKEND_SOCKET is set)`,
      fix: 'unset TOKEND_HOME TOKEND_SOCKET',
    };
  }
  if (service.managerAvailable && service.manager === 'systemd' && !/tokend\.socket enabled, active/.test(service.detail)) {
    return { id: 'service', status: 'warn', message: `the ${what} are installed but the socket is not listening: ${service.detail}`, fix: 'tokend service install' };
  }
  return { id: 'service', status: 'ok', message: `the ${what} are installed${service.detail ? `: ${service.detail}` : ''}` };
}

// ---------------------------------------------------------------- log

/** The daemon is down: its last error line says why, when it logged to a file we can read. */
function lastErrorChecks(paths: TokendPaths, service: ServiceState, platform: NodeJS.Platform, home: string): Check[] {
  const files = [paths.logFile];
  if (platform === 'darwin') files.push(path.join(home, 'Library', 'Logs', 'tokend', 'tokend.log'));
  const journal = service.kind === 'report' && service.manager === 'systemd' && service.installed;
  for (const file of files) {
    const line = lastErrorLine(file);
    if (line) {
      return [
        {
          id: 'log',
          status: 'info',
          message: `the last error in ${file}: ${line}`,
          fix: journal ? 'journalctl --user -u tokend -n 50' : `tail -n 50 '${shq(file)}'`,
        },
      ];
    }
  }
  if (journal) return [{ id: 'log', status: 'info', message: 'the service logs to the journal', fix: 'journalctl --user -u tokend -n 50' }];
  return [];
}

/** The newest error in a JSON-lines log (or a plain `tokend daemon: …` line), from its last 64 KiB. */
export function lastErrorLine(file: string): string | undefined {
  let text: string;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, 64 * 1024);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      text = buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
  const lines = text.split('\n').filter((l) => l.trim());
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i].trim();
    if (l.startsWith('{')) {
      try {
        const rec = JSON.parse(l) as { time?: string; level?: string; msg?: string; error?: unknown };
        if (rec.level === 'error' && rec.msg) {
          const extra = typeof rec.error === 'string' && !rec.msg.includes(rec.error) ? `: ${rec.error}` : '';
          return `${rec.time ? `${rec.time} ` : ''}${rec.msg}${extra}`.slice(0, 500);
        }
      } catch {
        /* a torn line */
      }
    } else if (l.startsWith('tokend daemon:') || l.startsWith('tokend:')) {
      // The daemon's start-up failures print this line after the same message as JSON:
      // prefer the JSON one, which has the time.
      const prev = i > 0 ? lines[i - 1].trim() : '';
      if (prev.startsWith('{') && prev.includes('"level":"error"')) continue;
      return l.slice(0, 500);
    }
  }
  return undefined;
}

// ---------------------------------------------------------------- permissions

function shq(p: string): string {
  return p.replace(/'/g, `'\\''`);
}

/** Like the daemon's own start-up check (fs-safety.ts), but naming every offender, not the first. */
function permissionChecks(paths: TokendPaths, daemonUp: boolean): Check[] {
  const me = uid();
  const problems: Check[] = [];
  let dirs = 0;
  let files = 0;
  const bad = (p: string, message: string, fix?: string) => problems.push({ id: `permissions:${p}`, status: 'fail', message, ...(fix ? { fix } : {}) });

  for (const dir of new Set([paths.configDir, paths.dataDir, paths.socketDir])) {
    let st: fs.Stats;
    try {
      st = fs.statSync(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        if (daemonUp) {
          problems.push({
            id: `permissions:${dir}`,
            status: 'warn',
            message: `folder ${dir} does not exist although the daemon runs: it uses other folders than this shell (TOKEND_HOME, TOKEND_CONFIG_DIR, TOKEND_DATA_DIR?)`,
          });
        }
        continue;
      }
      bad(dir, `cannot inspect folder ${dir}: ${(err as Error).message}`);
      continue;
    }
    dirs++;
    if (!st.isDirectory()) {
      bad(dir, `${dir} is not a folder; tokend keeps its files there`);
      continue;
    }
    if (st.uid !== me) {
      const shared = (st.mode & 0o1000) !== 0;
      bad(
        dir,
        `folder ${dir} is owned by uid ${st.uid}, not by you (uid ${me}); tokend will not use it` +
          (shared ? ': it is a shared folder, so point TOKEND_SOCKET / TOKEND_HOME at a folder of your own' : ''),
        shared ? undefined : `sudo chown "$(id -u)" '${shq(dir)}'`,
      );
      continue;
    }
    const mode = st.mode & 0o777;
    if (mode & 0o077) {
      bad(dir, `folder ${dir} is open to group or others (mode ${mode.toString(8).padStart(3, '0')}); it must be 0700`, `chmod 700 '${shq(dir)}'`);
    }
  }

  const wanted = [paths.configFile, paths.keyFile, paths.dbFile, `${paths.dbFile}-wal`, `${paths.dbFile}-shm`, paths.logFile];
  for (const file of wanted) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') bad(file, `cannot inspect ${file}: ${(err as Error).message}`);
      continue;
    }
    files++;
    if (st.isSymbolicLink()) {
      bad(file, `${file} is a symbolic link; tokend wants the file itself there (the daemon refuses a link)`);
      continue;
    }
    if (!st.isFile()) {
      bad(file, `${file} is not a regular file`);
      continue;
    }
    if (st.uid !== me) {
      bad(file, `file ${file} is owned by uid ${st.uid}, not by you (uid ${me}); tokend will not use it`, `sudo chown "$(id -u)" '${shq(file)}'`);
      continue;
    }
    const mode = st.mode & 0o777;
    if (mode & 0o077) {
      bad(file, `file ${file} is readable or writable by group or others (mode ${mode.toString(8).padStart(3, '0')}); it must be 0600`, `chmod 600 '${shq(file)}'`);
    }
  }

  // The socket: systemd makes it 0600 (SocketMode), the daemon chmods its own to 0600.
  try {
    const st = fs.lstatSync(paths.socket);
    if (!st.isSocket()) {
      problems.push({
        id: `permissions:${paths.socket}`,
        status: daemonUp ? 'warn' : 'fail',
        message: `${paths.socket} is not a socket; the daemon cannot listen there`,
        fix: `rm '${shq(paths.socket)}'`,
      });
    } else if (st.uid !== me || (st.mode & 0o077) !== 0) {
      bad(
        paths.socket,
        `the socket ${paths.socket} is ${st.uid !== me ? `owned by uid ${st.uid}` : `open to group or others (mode ${(st.mode & 0o777).toString(8)})`}`,
        st.uid === me ? `chmod 600 '${shq(paths.socket)}'` : undefined,
      );
    }
  } catch {
    /* no socket: the daemon check says so */
  }

  if (problems.length) return problems;
  return [
    {
      id: 'permissions',
      status: 'ok',
      message:
        dirs + files === 0
          ? 'no tokend folders yet (the daemon creates them, 0700, at first start)'
          : `${dirs} folder${dirs === 1 ? '' : 's'} 0700 and ${files} file${files === 1 ? '' : 's'} 0600, all yours`,
    },
  ];
}

// ---------------------------------------------------------------- config and key

interface ConfigRead {
  state: 'missing' | 'unreadable' | 'invalid' | 'ok';
  error?: string;
  /** Account name → the fields the doctor uses. */
  accounts: Map<string, { issuer?: string; token_endpoint?: string }>;
}

const URL_FIELDS = ['issuer', 'token_endpoint', 'authorization_endpoint', 'device_authorization_endpoint', 'revocation_endpoint', 'api_base'];

/** Parse config.json and check its top-level shape cheaply (the daemon's zod schema stays out of the client). */
function readConfig(file: string): ConfigRead {
  const accounts = new Map<string, { issuer?: string; token_endpoint?: string }>();
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { state: code === 'ENOENT' ? 'missing' : 'unreadable', error: (err as Error).message, accounts };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { state: 'invalid', error: `not valid JSON: ${(err as Error).message}`, accounts };
  }
  const issues: string[] = [];
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(raw)) return { state: 'invalid', error: 'the top level is not a JSON object', accounts };
  for (const k of Object.keys(raw)) if (!['version', 'settings', 'accounts'].includes(k)) issues.push(`${k}: unknown key`);
  if (raw.version !== undefined && raw.version !== 1) issues.push('version: must be 1');
  if (raw.settings !== undefined) {
    if (!isObj(raw.settings)) issues.push('settings: must be an object');
    else {
      for (const [k, v] of Object.entries(raw.settings)) {
        if (typeof v !== 'number' && typeof v !== 'boolean') issues.push(`settings.${k}: must be a number or true/false`);
      }
    }
  }
  if (raw.accounts !== undefined && !isObj(raw.accounts)) issues.push('accounts: must be an object');
  else if (raw.accounts !== undefined) {
    for (const [name, acct] of Object.entries(raw.accounts as Record<string, unknown>)) {
      const at = `accounts.${name}`;
      if (!isAccountName(name)) issues.push(`${at}: not a valid account name`);
      if (!isObj(acct)) {
        issues.push(`${at}: must be an object`);
        continue;
      }
      if (typeof acct.client_id !== 'string' || acct.client_id === '') issues.push(`${at}.client_id: required`);
      if (acct.driver !== undefined && typeof acct.driver !== 'string') issues.push(`${at}.driver: must be a string`);
      for (const f of URL_FIELDS) {
        const v = acct[f];
        if (v === undefined) continue;
        if (typeof v !== 'string' || !/^https?:\/\//.test(v) || !URL.canParse(v)) issues.push(`${at}.${f}: must be an http(s) URL`);
      }
      if ((acct.driver ?? 'oauth2') === 'oauth2' && acct.issuer === undefined && acct.token_endpoint === undefined) {
        issues.push(`${at}: needs an issuer or a token_endpoint`);
      }
      for (const f of ['scopes', 'hosts']) {
        const v = acct[f];
        if (v !== undefined && (!Array.isArray(v) || v.some((s) => typeof s !== 'string'))) issues.push(`${at}.${f}: must be a list of strings`);
      }
      accounts.set(name, {
        issuer: typeof acct.issuer === 'string' ? acct.issuer : undefined,
        token_endpoint: typeof acct.token_endpoint === 'string' ? acct.token_endpoint : undefined,
      });
    }
  }
  if (issues.length) {
    const shown = issues.slice(0, 5).join('; ') + (issues.length > 5 ? `; and ${issues.length - 5} more` : '');
    return { state: 'invalid', error: shown, accounts };
  }
  return { state: 'ok', accounts };
}

function configCheck(config: ConfigRead, file: string, daemon: { pid: number; accounts?: AccountView[] } | undefined): Check {
  const edit = `\${EDITOR:-vi} '${shq(file)}'`;
  switch (config.state) {
    case 'missing':
      return daemon
        ? {
            id: 'config',
            status: 'warn',
            message: `${file} does not exist although the daemon runs: it reads another folder than this shell (TOKEND_HOME, TOKEND_CONFIG_DIR?), or the file was deleted (the daemon writes it again on the next change)`,
          }
        : { id: 'config', status: 'info', message: `no ${file} yet (the daemon creates it at first start)` };
    case 'unreadable':
      return { id: 'config', status: 'fail', message: `cannot read ${file}: ${config.error}` };
    case 'invalid':
      return {
        id: 'config',
        status: 'fail',
        message: `${file} is invalid: ${config.error}${daemon ? '; the running daemon keeps the config it loaded, but will not start again with this file' : ''}`,
        fix: edit,
      };
    case 'ok': {
      const n = config.accounts.size;
      if (daemon?.accounts) {
        const inFile = [...config.accounts.keys()].sort().join(',');
        const inDaemon = daemon.accounts.map((a) => a.name).sort().join(',');
        if (inFile !== inDaemon) {
          return {
            id: 'config',
            status: 'warn',
            message: `${file} is valid but lists other accounts than the daemon serves (edited by hand since it started?): reload it`,
            fix: `kill -HUP ${daemon.pid}`,
          };
        }
      }
      return { id: 'config', status: 'ok', message: `${file} is valid (${n} account${n === 1 ? '' : 's'})` };
    }
  }
}

const KEY_BYTES = 32;

function keyCheck(paths: TokendPaths, daemonUp: boolean): Check {
  let st: fs.Stats;
  try {
    st = fs.statSync(paths.keyFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      return { id: 'key', status: 'fail', message: `cannot inspect the key ${paths.keyFile}: ${(err as Error).message}` };
    }
    let dbSize = 0;
    try {
      dbSize = fs.statSync(paths.dbFile).size;
    } catch {
      /* no database either */
    }
    if (dbSize > 0) {
      return {
        id: 'key',
        status: 'fail',
        message: `the key ${paths.keyFile} is missing but ${paths.dbFile} exists: its secrets cannot be decrypted without it; restore the key from a backup (the daemon would create a new one and fail to read the old secrets)`,
      };
    }
    return daemonUp
      ? { id: 'key', status: 'warn', message: `no key at ${paths.keyFile} although the daemon runs: it uses other folders than this shell (TOKEND_HOME, TOKEND_KEY_FILE?)` }
      : { id: 'key', status: 'info', message: `no key at ${paths.keyFile} yet (the daemon creates it, 32 random bytes, at first start)` };
  }
  if (!st.isFile()) return { id: 'key', status: 'fail', message: `the key ${paths.keyFile} is not a regular file` };
  if (st.size !== KEY_BYTES) {
    return {
      id: 'key',
      status: 'fail',
      message: `the key ${paths.keyFile} is ${st.size} bytes, expected ${KEY_BYTES}: it is damaged or not a tokend key; restore it from a backup`,
    };
  }
  return { id: 'key', status: 'ok', message: `the key ${paths.keyFile} is present (${KEY_BYTES} bytes)` };
}

// ---------------------------------------------------------------- accounts

function inSeconds(ms: number): string {
  const s = Math.round(ms / 1000);
  if (Math.abs(s) < 120) return `${s} s`;
  if (Math.abs(s) < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}

function accountChecks(accounts: AccountView[] | undefined, error: string | undefined, daemonUp: boolean): Check[] {
  if (!daemonUp) return [{ id: 'accounts', status: 'info', message: 'not checked: the daemon is not running' }];
  if (!accounts) return [{ id: 'accounts', status: 'fail', message: `cannot list the accounts: ${error ?? 'no answer'}` }];
  if (accounts.length === 0) {
    return [{ id: 'accounts', status: 'info', message: 'no accounts yet', fix: 'tokend add NAME --issuer URL --client-id ID' }];
  }
  return accounts.map((a) => accountCheck(a, Date.now()));
}

export function accountCheck(a: AccountView, now: number): Check {
  const id = `account:${a.name}`;
  const login = `tokend login ${a.name}`;
  const orImport = `${login}   # or: tokend import ${a.name} --refresh-token-stdin < FILE`;
  const err = a.last_error ? `: ${a.last_error}` : '';
  const clientCredentials = a.flow === 'client-credentials';
  switch (a.status) {
    case 'reauth_required':
      return { id, status: 'fail', message: `needs a new login${err}`, fix: login };
    case 'login_pending':
      return { id, status: 'warn', message: 'a login was started and waits for you to finish it in the browser or on the device page', fix: login };
    case 'no_grant':
      if (clientCredentials) return { id, status: 'ok', message: 'client credentials: a token is fetched on first use' };
      return { id, status: 'fail', message: 'has no grant yet: log in once (or import a refresh token)', fix: orImport };
    case 'expired':
      return { id, status: 'fail', message: `its token expired${a.expires_at ? ` at ${a.expires_at}` : ''} and there is no refresh token to renew it`, fix: orImport };
    case 'active': {
      const left = a.expires_at ? Date.parse(a.expires_at) - now : undefined;
      if (left !== undefined && left < EXPIRES_SOON_MS && !a.has_refresh_token && !clientCredentials) {
        return {
          id,
          status: 'warn',
          message: `active, but its token expires ${left > 0 ? `in ${inSeconds(left)}` : 'now'} and there is no refresh token to renew it`,
          fix: login,
        };
      }
      if (a.last_error) {
        return { id, status: 'warn', message: `active, but the last refresh failed${err}`, fix: `tokend refresh ${a.name}` };
      }
      const exp = left === undefined ? 'no expiry' : left > 0 ? `token valid for ${inSeconds(left)}` : 'token renewed on next use';
      return { id, status: 'ok', message: `active (${exp}${a.has_refresh_token ? ', refresh token stored' : ''})` };
    }
    default:
      return { id, status: 'warn', message: `status ${String(a.status)}${err}`, fix: `tokend status ${a.name}` };
  }
}

// ---------------------------------------------------------------- clock

interface ClockTarget {
  origin: string;
  url: string;
  accounts: string[];
}

/** One probe per provider origin: its discovery document (public), else its token endpoint. */
function clockTargets(accounts: AccountView[] | undefined, config: ConfigRead): ClockTarget[] {
  const byOrigin = new Map<string, ClockTarget>();
  const add = (name: string, issuer: string | undefined, tokenEndpoint: string | undefined) => {
    let url: string | undefined;
    if (issuer && URL.canParse(issuer)) url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
    else if (tokenEndpoint && URL.canParse(tokenEndpoint)) url = tokenEndpoint;
    if (!url) return;
    const u = new URL(url);
    if (u.protocol !== 'https:' && u.protocol !== 'http:') return;
    const t = byOrigin.get(u.origin) ?? { origin: u.origin, url, accounts: [] };
    if (!t.accounts.includes(name)) t.accounts.push(name);
    byOrigin.set(u.origin, t);
  };
  const names = new Set<string>([...(accounts ?? []).map((a) => a.name), ...config.accounts.keys()]);
  for (const name of names) {
    const view = accounts?.find((a) => a.name === name);
    const cfg = config.accounts.get(name);
    add(name, view?.issuer ?? cfg?.issuer, cfg?.token_endpoint);
  }
  return [...byOrigin.values()];
}

async function clockChecks(targets: ClockTarget[], fetchFn: typeof fetch, platform: NodeJS.Platform): Promise<Check[]> {
  const sync = platform === 'darwin' ? 'sudo sntp -sS time.apple.com' : 'timedatectl status   # "System clock synchronized: no"? then: sudo timedatectl set-ntp true';
  return Promise.all(
    targets.map(async (t): Promise<Check> => {
      const id = `clock:${t.origin}`;
      const who = `(account${t.accounts.length === 1 ? '' : 's'} ${t.accounts.join(', ')})`;
      const t0 = Date.now();
      let date: string | null;
      try {
        const res = await fetchFn(t.url, {
          method: 'GET',
          redirect: 'manual',
          headers: { accept: 'application/json', 'user-agent': 'tokend-doctor' },
          signal: AbortSignal.timeout(PROVIDER_TIMEOUT_MS),
        });
        date = res.headers.get('date');
        await res.body?.cancel().catch(() => undefined);
      } catch (err) {
        const e = err as Error & { cause?: { code?: string; message?: string } };
        const why = e.name === 'TimeoutError' || e.name === 'AbortError' ? `no answer within ${PROVIDER_TIMEOUT_MS / 1000} s` : e.cause?.code ?? e.cause?.message ?? e.message;
        return { id, status: 'warn', message: `cannot reach ${t.url} ${who} to compare clocks: ${why}`, fix: `curl -sSI '${shq(t.url)}'` };
      }
      const t1 = Date.now();
      const theirs = date ? Date.parse(date) : NaN;
      if (Number.isNaN(theirs)) return { id, status: 'info', message: `${t.origin} ${who} sent no usable Date header; clock not compared` };
      // Date has whole seconds: their clock is in [theirs, theirs + 1 s); ours is the middle of the round trip.
      const skew = theirs + 500 - (t0 + t1) / 2;
      const abs = Math.abs(skew);
      const sense = `${inSeconds(abs)} ${skew > 0 ? 'ahead of' : 'behind'} ours`;
      if (abs > SKEW_FAIL_MS || abs > SKEW_WARN_MS) {
        return {
          id,
          status: abs > SKEW_FAIL_MS ? 'fail' : 'warn',
          message: `the clock of ${t.origin} ${who} is ${sense} (skew ${Math.round(skew / 1000)} s): expiry times and token validation go wrong; if our clock is right, the provider's is off`,
          fix: sync,
        };
      }
      return { id, status: 'ok', message: `the clock of ${t.origin} ${who} agrees with ours (within ${Math.max(1, Math.round(abs / 1000))} s)` };
    }),
  );
}

// ---------------------------------------------------------------- git, docker, kubectl

/** Is `name` an executable in one of PATH's folders? */
function onPath(name: string, env: NodeJS.ProcessEnv): boolean {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

function helperBin(name: string): string {
  return path.join(packageRoot(), 'bin', name);
}

async function checkGit(env: NodeJS.ProcessEnv, run: Runner): Promise<Check[]> {
  // --get-regexp covers credential.helper and every credential.<url>.helper.
  const res = await run('git', ['config', '--global', '--get-regexp', '^credential\\..*helper$']);
  if (res.code === 127) return [{ id: 'git', status: 'info', message: 'git is not installed' }];
  if (res.code !== 0 && res.code !== 1) {
    return [{ id: 'git', status: 'warn', message: `git config --global failed (exit ${res.code}): ${res.stderr.trim().split('\n')[0] ?? ''}` }];
  }
  // gitcredentials(7): an empty value resets the list of helpers of that key.
  const byKey = new Map<string, string[]>();
  for (const line of res.stdout.split('\n')) {
    if (!line.trim()) continue;
    const sp = line.indexOf(' ');
    const key = sp < 0 ? line : line.slice(0, sp);
    const value = sp < 0 ? '' : line.slice(sp + 1);
    if (value === '') byKey.set(key, []);
    else byKey.set(key, [...(byKey.get(key) ?? []), value]);
  }
  const uses: { key: string; value: string }[] = [];
  for (const [key, values] of byKey) for (const value of values) if (/tokend/.test(value)) uses.push({ key, value });
  if (uses.length === 0) {
    return [{ id: 'git', status: 'info', message: 'git is not set up to use tokend (optional)', fix: 'tokend setup git --global' }];
  }
  const shown = uses.map((u) => `${u.key}=${u.value}`).join(', ');
  // git asks the helpers in order and stops at the first that answers: one before
  // tokend (store, cache, a keychain) serves its own, possibly stale, credentials.
  const plain = byKey.get('credential.helper') ?? [];
  const at = plain.findIndex((v) => /tokend/.test(v));
  const before = at > 0 ? plain.slice(0, at) : [];
  for (const u of uses) {
    // A bare name runs git-credential-NAME from PATH; an absolute path must exist.
    const first = u.value.trim().split(/\s+/)[0];
    if (u.value.startsWith('!')) continue;
    if (path.isAbsolute(first)) {
      if (!fs.existsSync(first)) {
        return [{ id: 'git', status: 'warn', message: `git runs ${first} (${u.key}), which does not exist`, fix: `git config --global --replace-all ${u.key} '${shq(helperBin('git-credential-tokend'))}'` }];
      }
    } else if (!onPath(`git-credential-${first}`, env)) {
      return [
        {
          id: 'git',
          status: 'warn',
          message: `git is set up to use tokend (${u.key}=${u.value}) but git-credential-${first} is not on PATH, so git cannot run it`,
          fix: `git config --global --replace-all ${u.key} '${shq(helperBin('git-credential-tokend'))}'   # or put ${path.join(packageRoot(), 'bin')} on PATH (npm link)`,
        },
      ];
    }
  }
  if (before.length) {
    return [
      {
        id: 'git',
        status: 'warn',
        message: `git uses tokend (${shown}) but asks ${before.join(', ')} first, which may answer with other credentials`,
        fix: 'tokend setup git --global',
      },
    ];
  }
  return [{ id: 'git', status: 'ok', message: `git uses tokend: ${shown}` }];
}

async function checkDocker(env: NodeJS.ProcessEnv, home: string): Promise<Check[]> {
  const file = path.join(env.DOCKER_CONFIG ? path.resolve(env.DOCKER_CONFIG) : path.join(home, '.docker'), 'config.json');
  const snippet = `add to ${file}: {"credHelpers": {"REGISTRY-HOST": "tokend"}}   # or {"credsStore": "tokend"} for every registry`;
  let cfg: { credsStore?: unknown; credHelpers?: unknown };
  try {
    cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof cfg;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return [{ id: 'docker', status: 'info', message: `docker is not set up to use tokend (no ${file}; optional)`, fix: snippet }];
    }
    return [{ id: 'docker', status: 'warn', message: `cannot read ${file}: ${(err as Error).message}` }];
  }
  const registries: string[] = [];
  if (cfg && typeof cfg.credHelpers === 'object' && cfg.credHelpers !== null) {
    for (const [reg, helper] of Object.entries(cfg.credHelpers as Record<string, unknown>)) if (helper === 'tokend') registries.push(reg);
  }
  const store = cfg?.credsStore === 'tokend';
  if (!store && registries.length === 0) {
    return [{ id: 'docker', status: 'info', message: `docker is not set up to use tokend (${file}; optional)`, fix: snippet }];
  }
  const what = store ? 'every registry (credsStore)' : `${registries.join(', ')} (credHelpers)`;
  if (!onPath('docker-credential-tokend', env)) {
    return [
      {
        id: 'docker',
        status: 'warn',
        message: `docker is set up to use tokend for ${what}, but docker-credential-tokend is not on PATH, so docker cannot run it`,
        fix: `export PATH="${path.join(packageRoot(), 'bin')}:$PATH"   # or: npm link (in ${packageRoot()})`,
      },
    ];
  }
  return [{ id: 'docker', status: 'ok', message: `docker uses tokend for ${what}` }];
}

async function checkKubectl(env: NodeJS.ProcessEnv, home: string): Promise<Check[]> {
  const files = env.KUBECONFIG ? env.KUBECONFIG.split(path.delimiter).filter(Boolean) : [path.join(home, '.kube', 'config')];
  const fix =
    'kubectl config set-credentials tokend-NAME --exec-api-version=client.authentication.k8s.io/v1 --exec-command=tokend --exec-arg=kubectl-credential --exec-arg=NAME --exec-interactive-mode=Never';
  const found: { file: string; user?: string; command: string }[] = [];
  let any = false;
  for (const file of files) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    any = true;
    // A kubeconfig is YAML (or JSON); no parser in the client, so look for exec `command:`
    // lines that run tokend and name the user entry above each.
    const lines = text.split('\n');
    lines.forEach((line, i) => {
      const m = /^\s*"?command"?\s*:\s*["']?([^"'#,\n]*?)["']?\s*,?\s*(#.*)?$/.exec(line);
      if (!m || !/tokend/.test(m[1])) return;
      let user: string | undefined;
      for (let j = i - 1; j >= 0; j--) {
        const n = /^\s*-\s*"?name"?\s*:\s*["']?([^"'\n,]+)["']?/.exec(lines[j]);
        if (n) {
          user = n[1].trim();
          break;
        }
      }
      found.push({ file, user, command: m[1].trim() });
    });
  }
  if (found.length === 0) {
    return [
      {
        id: 'kubectl',
        status: 'info',
        message: any ? `no kubeconfig user runs tokend (${files.join(', ')}; optional)` : `kubectl is not set up to use tokend (no ${files.join(', ')}; optional)`,
        fix,
      },
    ];
  }
  const shown = found.map((f) => `${f.user ? `user ${f.user}` : 'a user'} in ${f.file}`).join(', ');
  for (const f of found) {
    const bin = f.command.split(/\s+/)[0];
    if (path.isAbsolute(bin) ? !fs.existsSync(bin) : !onPath(bin, env)) {
      return [
        {
          id: 'kubectl',
          status: 'warn',
          message: `kubectl runs "${f.command}" for ${f.user ? `user ${f.user}` : 'a user'} in ${f.file}, but ${bin} is not ${path.isAbsolute(bin) ? 'there' : 'on PATH'}`,
          fix: `export PATH="${path.join(packageRoot(), 'bin')}:$PATH"   # or: npm link (in ${packageRoot()})`,
        },
      ];
    }
  }
  return [{ id: 'kubectl', status: 'ok', message: `kubectl uses tokend: ${shown}` }];
}

function defaultRunner(env: NodeJS.ProcessEnv): Runner {
  return (cmd, args) =>
    new Promise((resolve) => {
      execFile(cmd, args, { env, timeout: 10_000, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (!err) return resolve({ code: 0, stdout, stderr });
        const e = err as NodeJS.ErrnoException & { code?: number | string };
        if (e.code === 'ENOENT') return resolve({ code: 127, stdout: '', stderr: `${cmd}: not found` });
        resolve({ code: typeof e.code === 'number' ? e.code : 1, stdout: stdout ?? '', stderr: stderr || e.message });
      });
    });
}
