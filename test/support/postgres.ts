/**
 * A private PostgreSQL cluster for the fleet tests: initdb in a temporary folder, its own
 * port on 127.0.0.1 and its own socket folder, stopped and removed by `close()` (and, should
 * the test process exit first, stopped on exit).
 *
 * ```ts
 * const pg = await startPostgres();
 * env.TOKEND_DATABASE_URL = pg.url;        // postgresql://fleet@127.0.0.1:PORT/fleet
 * env.PGPASSWORD = pg.password;            // never in the URL the daemons log
 * await pg.stop(); await pg.start();       // an outage
 * const dump = await pg.dump();            // pg_dump of the fleet database
 * await pg.close();
 * ```
 *
 * The fleet files that never stop the server share one cluster per run instead, each with a
 * database of its own (`sharedPostgres()`, below): initdb is about 1.2 s of CPU, paid once.
 *
 * The server refuses to run as root, so when the tests run as root (CI) it runs as a system
 * user made for it (`tokendpg`) through `runuser`. The daemons connect over TCP as `fleet`,
 * a plain (non-superuser) role with a password (scram-sha-256); the harness itself talks to
 * the server over its socket as the superuser, with no password.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { run as exec } from './run.js';

export interface TestPostgres {
  /** The daemons' URL: no password in it (they get PGPASSWORD). */
  url: string;
  password: string;
  port: number;
  database: string;
  /** Stop the server (fast shutdown: sessions are cut); the data stays. */
  stop(): Promise<void>;
  /** Start it again on the same port. */
  start(): Promise<void>;
  /** Run SQL as the superuser in the fleet database (or `db`); returns psql's unaligned output. */
  sql(query: string, db?: string): Promise<string>;
  /** Another database owned by `fleet` in the same cluster (a second fleet); returns its URL. */
  createDatabase(name: string): Promise<string>;
  /** pg_dump of the fleet database (schema and data), as text. */
  dump(): Promise<string>;
  /** Stop the server and remove its folder. */
  close(): Promise<void>;
}

const SYSTEM_USER = 'tokendpg';
const SUPERUSER = 'postgres';

/** Where the server binaries are: PG_BIN, else Debian's newest /usr/lib/postgresql/N/bin, else PATH. */
function binDir(): string {
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root)
    ? fs
        .readdirSync(root)
        .filter((v) => /^\d+$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  for (const v of versions) if (fs.existsSync(path.join(root, v, 'bin', 'initdb'))) return path.join(root, v, 'bin');
  const found = spawnSync('sh', ['-c', 'command -v initdb'], { encoding: 'utf8' }).stdout.trim();
  if (found) return path.dirname(found);
  throw new Error('PostgreSQL is not installed (no initdb): apt-get install postgresql, or set PG_BIN');
}

/** As root: the server's own unprivileged user (created once); otherwise ourselves. */
function serverUser(): { uid: number; gid: number; wrap: (cmd: string, args: string[]) => [string, string[]] } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  if (spawnSync('id', ['-u', SYSTEM_USER]).status !== 0) {
    const r = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', SYSTEM_USER], { encoding: 'utf8' });
    // Another test file may have created it at the same moment.
    if (r.status !== 0 && spawnSync('id', ['-u', SYSTEM_USER]).status !== 0)
      throw new Error(`cannot create the user ${SYSTEM_USER}: ${r.stderr}`);
  }
  const uid = Number(execFileSync('id', ['-u', SYSTEM_USER], { encoding: 'utf8' }).trim());
  const gid = Number(execFileSync('id', ['-g', SYSTEM_USER], { encoding: 'utf8' }).trim());
  return { uid, gid, wrap: (cmd, args) => ['runuser', ['-u', SYSTEM_USER, '--', cmd, ...args]] };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** psql as the superuser over the cluster's socket: `psql(db, query)` returns its unaligned output. */
function psqlOn(sockets: string, port: number): (db: string, query: string) => Promise<string> {
  return async (db, query) => {
    const r = await exec(
      'psql',
      ['-h', sockets, '-p', String(port), '-U', SUPERUSER, '-d', db, '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-f', '-'],
      {
        env: process.env,
        stdin: query,
      },
    );
    if (r.code !== 0) throw new Error(`psql failed: ${r.stderr}`);
    return r.stdout;
  };
}

/** A running cluster in `dir`: what connects to it and what controls it. */
interface Cluster {
  port: number;
  password: string;
  sockets: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Stop it if it runs and remove `dir`. */
  close(): Promise<void>;
  psql(db: string, query: string): Promise<string>;
}

/** initdb and start a cluster with a `fleet` role and database in `dir` (made by the caller). */
async function startCluster(dir: string, opts: { exitHook: boolean }): Promise<Cluster> {
  const bin = binDir();
  const user = serverUser();
  const data = path.join(dir, 'data');
  const sockets = path.join(dir, 'sock');
  fs.mkdirSync(sockets);
  if (user) {
    fs.chownSync(dir, user.uid, user.gid);
    fs.chownSync(sockets, user.uid, user.gid);
  }
  // The socket folder must be reachable by the harness (psql, pg_dump) when it is root or the owner.
  fs.chmodSync(sockets, 0o755);
  const asServer = (cmd: string, args: string[]) =>
    user ? user.wrap(path.join(bin, cmd), args) : ([path.join(bin, cmd), args] as [string, string[]]);
  const run = async (cmd: string, args: string[]) => {
    const [c, a] = asServer(cmd, args);
    const r = await exec(c, a, { env: { ...process.env, LC_ALL: 'C' } });
    if (r.code !== 0) throw new Error(`${cmd} failed (${r.code}): ${r.stderr || r.stdout}`);
    return r.stdout;
  };

  const port = await freePort();
  const password = randomBytes(12).toString('hex');
  await run('initdb', ['-D', data, '-U', SUPERUSER, '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--no-sync']);
  // Tests need no durability of the server itself (it is always stopped cleanly or thrown
  // away); fsync off spares the shared disk. Everything else is the stock configuration.
  fs.appendFileSync(
    path.join(data, 'postgresql.conf'),
    [
      `port = ${port}`,
      `listen_addresses = '127.0.0.1'`,
      `unix_socket_directories = '${sockets}'`,
      'fsync = off',
      'full_page_writes = off',
      'max_connections = 200',
      "log_min_messages = 'warning'",
      '',
    ].join('\n'),
  );
  const logFile = path.join(dir, 'server.log');
  const start = async () => {
    await run('pg_ctl', ['-D', data, '-l', logFile, '-w', '-t', '30', 'start']);
  };
  const stop = async () => {
    await run('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop']);
  };
  const psql = psqlOn(sockets, port);

  let running = false;
  // The test process is going away without close(): do not leave a server behind.
  const onExit = () => {
    if (running) {
      const [c, a] = asServer('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']);
      spawnSync(c, a, { stdio: 'ignore' });
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  if (opts.exitHook) process.once('exit', onExit);

  try {
    await start();
    running = true;
    await psql('postgres', `CREATE ROLE fleet LOGIN PASSWORD '${password}'; CREATE DATABASE fleet OWNER fleet;`);
  } catch (err) {
    onExit();
    process.off('exit', onExit);
    throw new Error(`${(err as Error).message}\n${fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''}`);
  }
  return {
    port,
    password,
    sockets,
    async start() {
      await start();
      running = true;
    },
    async stop() {
      await stop();
      running = false;
    },
    async close() {
      try {
        if (running) await stop();
      } finally {
        running = false;
        process.off('exit', onExit);
        fs.rmSync(dir, { recursive: true, force: true });
      }
    },
    psql,
  };
}

/** The harness's view of database `database` in `cluster`; `stop`, `start` and `close` as given. */
function testPostgres(
  cluster: Pick<Cluster, 'port' | 'password' | 'sockets' | 'psql'>,
  database: string,
  control: Pick<TestPostgres, 'stop' | 'start' | 'close'>,
): TestPostgres {
  const { port, sockets, psql } = cluster;
  return {
    url: `postgresql://fleet@127.0.0.1:${port}/${database}`,
    password: cluster.password,
    port,
    database,
    ...control,
    sql: (query, db = database) => psql(db, query),
    async createDatabase(name) {
      await psql('postgres', `CREATE DATABASE ${name} OWNER fleet;`);
      return `postgresql://fleet@127.0.0.1:${port}/${name}`;
    },
    async dump() {
      const r = await exec('pg_dump', ['-h', sockets, '-p', String(port), '-U', SUPERUSER, '--no-owner', database], { env: process.env });
      if (r.code !== 0) throw new Error(`pg_dump failed: ${r.stderr}`);
      return r.stdout;
    },
  };
}

/** Start a private cluster with a `fleet` role and database; see the module comment. */
export async function startPostgres(): Promise<TestPostgres> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-pg-'));
  let cluster: Cluster;
  try {
    cluster = await startCluster(dir, { exitHook: true });
  } catch (err) {
    fs.rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  let closed: Promise<void> | undefined;
  return testPostgres(cluster, 'fleet', {
    stop: () => cluster.stop(),
    start: () => cluster.start(),
    close() {
      closed ??= cluster.close();
      return closed;
    },
  });
}

/** What a test process needs to reach the run's shared cluster (written by the one that started it). */
interface SharedCluster {
  port: number;
  password: string;
  sockets: string;
  data: string;
}

let shared: Promise<SharedCluster> | undefined;

/**
 * The run's shared cluster, started by the first test file that asks (a lock folder in the
 * run's folder, which test/support/global-setup.ts makes and removes): the others wait for
 * the description it writes. Only the run's teardown stops it, not the test process that
 * started it: that process may finish its files while another still uses the cluster.
 */
function sharedCluster(root: string): Promise<SharedCluster> {
  const info = path.join(root, 'cluster.json');
  const failed = path.join(root, 'failed');
  const dir = path.join(root, 'cluster');
  const mine = (() => {
    try {
      fs.mkdirSync(dir);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      return false;
    }
  })();
  if (mine)
    return (async () => {
      try {
        const c = await startCluster(dir, { exitHook: false });
        const described: SharedCluster = { port: c.port, password: c.password, sockets: c.sockets, data: path.join(dir, 'data') };
        fs.writeFileSync(`${info}.tmp`, JSON.stringify(described), { mode: 0o600 });
        fs.renameSync(`${info}.tmp`, info);
        return described;
      } catch (err) {
        fs.writeFileSync(failed, (err as Error).message);
        throw err;
      }
    })();
  return (async () => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (fs.existsSync(info)) return JSON.parse(fs.readFileSync(info, 'utf8')) as SharedCluster;
      if (fs.existsSync(failed)) throw new Error(`the shared PostgreSQL cluster did not start: ${fs.readFileSync(failed, 'utf8')}`);
      if (Date.now() > deadline) throw new Error(`the shared PostgreSQL cluster in ${dir} did not start within 60 s`);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
}

/**
 * A database of its own (\`fleet_…\`, owned by \`fleet\`) in the run's shared cluster, for a
 * file that never stops the server; \`stop()\` and \`start()\` refuse (an outage needs
 * \`startPostgres()\`), and \`close()\` leaves the database to the run's teardown.
 */
export async function sharedPostgres(): Promise<TestPostgres> {
  const { inject } = await import('vitest');
  const root = inject('sharedPostgresRoot');
  shared ??= sharedCluster(root);
  const c = await shared;
  const psql = psqlOn(c.sockets, c.port);
  const database = `fleet_${randomBytes(6).toString('hex')}`;
  await psql('postgres', `CREATE DATABASE ${database} OWNER fleet;`);
  const refuse = async () => {
    throw new Error('the shared PostgreSQL cluster is never stopped by a test: use startPostgres() for an outage');
  };
  return testPostgres({ ...c, psql }, database, { stop: refuse, start: refuse, close: async () => undefined });
}

/** The run's teardown: stop the shared cluster, if a test file started one, and remove the run's folder. */
export function stopSharedPostgres(root: string): void {
  const info = path.join(root, 'cluster.json');
  if (fs.existsSync(info)) {
    const { data } = JSON.parse(fs.readFileSync(info, 'utf8')) as SharedCluster;
    const user = serverUser();
    const pgCtl = path.join(binDir(), 'pg_ctl');
    const [c, a] = user ? user.wrap(pgCtl, ['-D', data, '-m', 'fast', '-w', 'stop']) : [pgCtl, ['-D', data, '-m', 'fast', '-w', 'stop']];
    spawnSync(c, a, { stdio: 'ignore' });
  }
  fs.rmSync(root, { recursive: true, force: true });
}

declare module 'vitest' {
  export interface ProvidedContext {
    /** The run's folder for its shared PostgreSQL cluster (test/support/global-setup.ts). */
    sharedPostgresRoot: string;
  }
}
