import fs from 'node:fs';
import type { Server as NetServer } from 'node:net';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { NO_CALLER_ADDON_WARNING } from '../protocol/local-trust.js';
import { resolvePaths, type TokendPaths } from '../protocol/paths.js';
import { describeMistake } from '../protocol/usage.js';
import { AuditLog, auditRefreshEpisodes } from './audit.js';
import { AccessControl } from './caller/access.js';
import { accountsNeedingCallers } from './caller/access-writes.js';
import { addonWarning, loadAddon } from './caller/addon.js';
import { Approvals } from './caller/approvals.js';
import { connectionOf, guardConnections } from './caller/connection.js';
import { CallerCache } from './caller/identity-cache.js';
import { DesktopNotifier } from './caller/notify.js';
import { coreLimitWarning, readCoreLimit } from './core-limit.js';
import { Broker } from './broker.js';
import { ConfigError, ConfigStore } from './config.js';
import { getDriver } from './drivers/registry.js';
import { describeIdentity, identityKey, identityOf } from './grant-identity.js';
import { EventBus, eventWindowFromEnv } from './events.js';
import { checkFoldersAbove, checkPrivateFile, ensurePrivateDir, UnsafePathError } from './fs-safety.js';
import { createEntry } from './http/entry.js';
import { closeServers, listenAll, type Listening } from './http/listen.js';
import { acquireDaemonLock, LockHeldError } from './lock.js';
import { createLogger, parseLogLevel, stderrIsJournal, type Logger } from './log.js';
import { capLogFile } from './log-rotation.js';
import { inheritedListenFd } from './socket-activation.js';
import type { MasterKey } from './store/master-key.js';
import { openConfiguredStore } from './store/open.js';
import { watchDisk } from './disk-watch.js';
import type { Store } from './store/types.js';
import { holdYoungGeneration, loadingDone } from './start-up-heap.js';
import { parseListenAddress, type ListenAddress } from './http/loopback-listener.js';
import { LoginManager } from './logins.js';

/** How often the daemon looks at its files and disk (http/app.ts's health looks at once too). */
const DISK_CHECK_MS = 30_000;
/** How long requests in flight may take to finish when the daemon stops. */
const SHUTDOWN_GRACE_MS = 3000;

const USAGE = `usage: tokend daemon [--socket PATH] [--listen 127.0.0.1:PORT]

Runs the tokend daemon in the foreground (systemd and launchd supervise it; clients
start it on demand otherwise). One per user: a second one exits, naming the first.

  --socket PATH                listen here instead of the default socket (\`tokend status\` shows it)
  --listen 127.0.0.1:PORT      also serve the API on a loopback TCP port, only to requests with
                               \`Authorization: Bearer <daemon key>\` (\`tokend listen-key\` prints it);
                               non-loopback addresses are refused (also settings.listen in config.json)

Paths come from TOKEND_HOME, TOKEND_CONFIG_DIR, TOKEND_DATA_DIR, TOKEND_KEY_FILE,
TOKEND_SOCKET (see README). TOKEND_DATABASE_URL (or settings.database_url) shares
grants with a fleet of daemons through PostgreSQL (docs/fleet.md). Logs are JSON lines on stderr; TOKEND_LOG_LEVEL sets
the level (debug, info, warn, error). SIGTERM/SIGINT stop it; SIGHUP reloads config.json.

Exit status: 0 stopped by SIGTERM/SIGINT, 1 could not start (another daemon runs,
a folder or file others can read, a folder above them another user could write, an
invalid config.json), 2 bad usage.

Start it through \`tokend daemon\` (run as a program), the service or a client's
autostart: each gives it a core size limit of 0, since a core file would hold every
token and the master key. Any other limit is reported in /v1/health and tokend doctor.
`;

function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** README, Files and places: 0700 folders, 0600 files, all ours, no folder above them another user could write; refuse to start otherwise, naming the path. */
function checkPlaces(paths: TokendPaths): void {
  const dirs = new Set([paths.configDir, paths.dataDir, paths.stateDir, paths.socketDir]);
  for (const dir of new Set([...dirs, path.dirname(paths.keyFile)])) checkFoldersAbove(dir);
  for (const dir of dirs) ensurePrivateDir(dir);
  for (const f of [
    paths.configFile,
    paths.keyFile,
    paths.dbFile,
    `${paths.dbFile}-wal`,
    `${paths.dbFile}-shm`,
    paths.logFile,
    paths.listenKeyFile,
    paths.listenAppKeysFile,
  ]) {
    checkPrivateFile(f);
  }
}

const OPTIONS = { socket: { type: 'string' }, listen: { type: 'string' }, help: { type: 'boolean', short: 'h' } } as const;

/** `tokend daemon`'s options; a mistake is one line naming it (protocol/usage.ts) and exit 2, `--help` the usage and exit 0. */
function parseDaemonArgs(argv: string[]) {
  let args: ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; allowPositionals: true }>>;
  try {
    args = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true });
  } catch {
    usageMistake(describeMistake(argv, OPTIONS));
  }
  if (args.values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  if (args.positionals.length > 0) usageMistake('takes no arguments, only options');
  return args;
}

function usageMistake(what: string): never {
  process.stderr.write(`tokend daemon: ${what} (see \`tokend daemon --help\`)\n`);
  process.exit(2);
}

/** Why the daemon could not start, and exit: at a terminal a sentence, under a supervisor one JSON log line like any other. */
function failure(log: Logger) {
  return (msg: string, code = 1, hint?: string): never => {
    if (process.stderr.isTTY) process.stderr.write(`tokend daemon: ${msg}${hint ? `\n${hint}` : ''}\n`);
    else log.error(msg);
    process.exit(code);
  };
}

/** The one-daemon-per-user lock, or exit naming the daemon that holds it; `compromised` stops this one. */
async function lock(
  paths: TokendPaths,
  log: Logger,
  fail: ReturnType<typeof failure>,
  compromised: () => void,
): Promise<() => Promise<void>> {
  try {
    return await acquireDaemonLock(paths, {
      onCompromised: (err) => {
        log.error('the daemon lock was taken from us; stopping', { error: err });
        compromised();
      },
      isAlive: (pid) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch (e) {
          return (e as NodeJS.ErrnoException).code === 'EPERM';
        }
      },
    });
  } catch (err) {
    if (err instanceof LockHeldError) {
      fail(
        err.message,
        1,
        err.pid
          ? `It already serves your tokens (\`tokend status\` shows it). To restart it, stop it first: kill ${err.pid} (or \`systemctl --user stop tokend\` when it runs as a service).`
          : undefined,
      );
    }
    return fail(`cannot lock ${paths.dataDir}: ${(err as Error).message}`);
  }
}

/**
 * The composition root: config → store → broker → http → listen →
 * signals. The only module that exits the process.
 */
export async function main(argv: string[]): Promise<void> {
  const args = parseDaemonArgs(argv);

  process.umask(0o077);
  const log = createLogger(parseLogLevel(process.env.TOKEND_LOG_LEVEL), undefined, { journald: stderrIsJournal(process.env) });
  const paths = resolvePaths(process.env, args.values.socket);
  // The caller addon: non-dumpable from here on (no ptrace, no /proc/PID/mem for the user's
  // other processes), and the socket's peers checked (docs/security.md). Without it, a warning.
  const peers = loadAddon();
  const addonMissing = 'missing' in peers ? addonWarning(peers.missing, NO_CALLER_ADDON_WARNING) : undefined;
  if (addonMissing) log.warn(addonMissing);
  else if ('addon' in peers && !peers.addon.nonDumpable()) log.warn('could not make the daemon non-dumpable (prctl PR_SET_DUMPABLE)');
  // Read while the daemon starts (a shell's `ulimit -c` off Linux); `warnings` reports it from the first answer on.
  let coreWarning: string | undefined;
  void readCoreLimit().then((limit) => {
    coreWarning = coreLimitWarning(limit);
    if (coreWarning) log.warn(coreWarning);
  });
  const fail = failure(log);

  let activatedFd: number | undefined;
  try {
    activatedFd = inheritedListenFd();
    checkPlaces(paths);
  } catch (err) {
    if (err instanceof UnsafePathError || err instanceof Error) fail(err.message);
  }

  const releaseLock = await lock(paths, log, fail, () => void shutdown(1));

  let config: ConfigStore;
  holdYoungGeneration(); // until the stored tokens are read (loadingDone below)
  try {
    config = await ConfigStore.open(paths.configFile);
  } catch (err) {
    await releaseLock!();
    fail(err instanceof ConfigError ? err.message : `cannot read ${paths.configFile}: ${(err as Error).message}`);
  }
  // Without the addon no caller can be told apart: an account only some callers may use is
  // never served as open (issue 23: no silent downgrade), and the daemon does not start.
  const closed = 'missing' in peers ? accountsNeedingCallers(config!.listAccounts()) : [];
  if (closed.length > 0) {
    await releaseLock!();
    fail(
      `cannot start without the caller addon (${(peers as { missing: string }).missing}): ` +
        `${closed.length === 1 ? 'account' : 'accounts'} ${closed.join(', ')} allow only some callers, and without the addon ` +
        'the daemon cannot tell callers apart. Install a C compiler (cc) and run `npm rebuild tokend` (or ' +
        '`node scripts/build-native.mjs` in its folder), or open those accounts to every caller by removing their "access" ' +
        `from ${paths.configFile}`,
    );
  }
  // The loopback TCP listener: refused at start unless it is a loopback address.
  const listenSpec = args.values.listen ?? config!.settings.listen;
  let listenAt: ListenAddress | undefined;
  if (listenSpec) {
    try {
      listenAt = parseListenAddress(listenSpec);
    } catch (err) {
      await releaseLock!();
      fail((err as Error).message, 2);
    }
  }
  let store: Store;
  let masterKey: MasterKey | undefined;
  try {
    ({ store, masterKey } = await openConfiguredStore({ paths, env: process.env, config: config!, log }));
  } catch (err) {
    await releaseLock!();
    fail((err as Error).message);
  }

  const disk = watchDisk({ dbFile: paths.dbFile, keyFile: paths.keyFile, log, everyMs: DISK_CHECK_MS, fleet: Boolean(store!.fleet) });
  capLogFile(paths.logFile, config!.settings.log_max_bytes, { onRotate: () => log.info('log file rotated', { file: paths.logFile }) });
  const events = new EventBus({ window: eventWindowFromEnv(process.env) });
  const audit = new AuditLog(store!, log, undefined, () => config!.settings);
  auditRefreshEpisodes(events, audit);
  const broker = new Broker({
    store: store!,
    config: config!,
    getDriver,
    events,
    log,
    pendingLogin: (account) => logins.pendingFor(account),
    // `on_reauth: "login"`: a refused grant starts its interactive login at once, so an
    // app's UI only has to show the code (the login.pending event carries it).
    onReauthRequired: (account) => {
      if (config!.getAccount(account)?.on_reauth !== 'login') return;
      logins
        .start(account)
        .catch((err) => log.warn('could not start the login on_reauth asks for', { account, error: (err as Error).message }));
    },
  });
  const logins: LoginManager = new LoginManager({ store: store!, config: config!, broker, events, log, getDriver, audit });
  try {
    // The grants are read after the daemon answers (readStoredTokens below); an account asked
    // for before that is read on its own first (Broker, GrantLoad).
    await logins.resumeStored();
  } catch (err) {
    await store!.close().catch(() => undefined);
    await releaseLock!();
    fail(`cannot read the store: ${(err as Error).message}`);
  }
  const notifier = new DesktopNotifier({ log });
  const approvals: Approvals = new Approvals({
    events,
    audit,
    log,
    notifier,
    // `--always`: through the access check's own function (declared below; called only later).
    addRule: (account, rule) => access.addRule(account, rule),
    connectionOf,
  });
  const shutdownController = new AbortController();
  const version = packageVersion();
  // `ask` accounts put a caller no rule allows to the user through the approvals.
  const access: AccessControl = new AccessControl({ config: config!, audit, events, gate: approvals, verified: 'addon' in peers });
  const entry = createEntry({
    config: config!,
    store: store!,
    broker,
    getDriver,
    events,
    audit,
    access,
    log,
    logins,
    version,
    startedAt: Date.now(),
    shutdown: shutdownController.signal,
    warnings: () => [coreWarning, addonMissing, ...disk.warnings()].filter((w): w is string => w !== undefined),
    masterKey,
    paths,
    saveKeyKind: (kind) => config!.setKeyStore(kind),
    keyMoved: () => disk.keyMoved(),
    approvals,
  });
  let listening: Listening;
  try {
    const loopback = listenAt
      ? { address: listenAt, spec: listenSpec!, keyFile: paths.listenKeyFile, appKeysFile: paths.listenAppKeysFile }
      : undefined;
    // One cache of callers for every socket the daemon listens on: a process is one caller wherever it connects.
    const callers = new CallerCache();
    const guard = 'addon' in peers ? (s: NetServer) => guardConnections(s, peers.addon, log, callers) : undefined;
    listening = await listenAll(entry, { fd: activatedFd, socket: paths.socket, loopback }, guard);
  } catch (err) {
    await releaseLock!();
    fail((err as Error).message);
  }
  const { server, tcp, boundSocket } = listening!;
  log.info('tokend started', {
    version,
    pid: process.pid,
    socket: activatedFd !== undefined ? `fd ${activatedFd} (socket activation)` : paths.socket,
    ...(listenAt ? { listen: listenSpec } : {}),
    accounts: config!.accountCount(),
  });
  // The grants and their stored access tokens are read after the daemon answers; then what start-up left behind is collected.
  const accounts = config!.accountCount();
  void broker.readStoredTokens().finally(() => loadingDone({ accounts }));

  let stopping = false;
  async function shutdown(code: number): Promise<void> {
    if (stopping) return;
    stopping = true;
    log.info('tokend stopping');
    shutdownController.abort(); // SSE streams end
    broker.stopTimers(); // no new proactive refreshes
    disk.stop();
    logins.close();
    approvals.close();
    notifier.close();
    // Requests in flight (a refresh a client waits for) get up to 3 s to finish, and only
    // then are provider requests aborted and connections cut.
    await closeServers([server, tcp], SHUTDOWN_GRACE_MS);
    broker.close();
    await audit.close();
    await store!.close().catch((err) => log.warn('could not close the store cleanly', { error: (err as Error).message }));
    if (boundSocket) fs.rmSync(boundSocket, { force: true });
    await releaseLock!().catch(() => undefined);
    log.info('tokend stopped');
    process.exit(code);
  }
  process.on('SIGTERM', () => void shutdown(0));
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGHUP', () => {
    reload(config!, broker, logins, log, Boolean(store!.fleet));
    // Never served as open: without the addon such an account refuses every caller until fixed.
    const unverifiable = 'missing' in peers ? accountsNeedingCallers(config!.listAccounts()) : [];
    if (unverifiable.length) log.error('without the caller addon these accounts refuse every caller', { accounts: unverifiable });
  });
}

/**
 * SIGHUP: re-read config.json. An account whose provider or client changed in the file
 * (rule 8, docs/architecture.md) loses its grant: revoked at the provider that issued it, dropped, its
 * pending login cancelled; the log says so. Any other change only forgets cached tokens.
 */
function reload(config: ConfigStore, broker: Broker, logins: LoginManager, log: Logger, fleet: boolean): void {
  const before = new Map(config.listAccounts());
  const databaseUrl = config.settings.database_url;
  try {
    config.reload();
  } catch (err) {
    log.error('config reload failed; the old config stays in force', { error: (err as Error).message });
    return;
  }
  for (const [name, old] of before) {
    const now = config.getAccount(name);
    if (now && JSON.stringify(now) === JSON.stringify(old)) continue;
    if (now && identityKey(now) !== identityKey(old)) {
      const what = fleet
        ? 'an account now names another provider or client: this daemon stops using the fleet grant (other daemons keep it)'
        : 'an account now names another provider or client: its grant is revoked where it came from and dropped; log in again';
      log.warn(what, {
        account: name,
        was: describeIdentity(identityOf(old)),
        now: describeIdentity(identityOf(now)),
      });
      logins.cancelFor(name, 'the account was changed to another provider or client');
      broker
        .identityChanged(name, 'config.json names another provider or client')
        .catch((err) => log.warn('could not act on the changed account', { account: name, error: (err as Error).message }));
    } else {
      broker.forget(name);
    }
  }
  if (config.settings.database_url !== databaseUrl) log.warn('settings.database_url changed: the daemon keeps its store until it restarts');
  log.info('config reloaded', { accounts: config.accountCount() });
}
