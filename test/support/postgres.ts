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

/** Start a private cluster with a `fleet` role and database; see the module comment. */
export async function startPostgres(): Promise<TestPostgres> {
  const bin = binDir();
  const user = serverUser();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-pg-'));
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
  const psql = async (db: string, query: string) => {
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

  let running = false;
  const onExit = () => {
    // The test process is going away without close(): do not leave a server behind.
    if (!running) return;
    const [c, a] = asServer('pg_ctl', ['-D', data, '-m', 'immediate', 'stop']);
    spawnSync(c, a, { stdio: 'ignore' });
    fs.rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', onExit);

  try {
    await start();
    running = true;
    await psql('postgres', `CREATE ROLE fleet LOGIN PASSWORD '${password}'; CREATE DATABASE fleet OWNER fleet;`);
  } catch (err) {
    onExit();
    process.off('exit', onExit);
    fs.rmSync(dir, { recursive: true, force: true });
    throw new Error(`${(err as Error).message}\n${fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8') : ''}`);
  }

  let closed: Promise<void> | undefined;
  return {
    url: `postgresql://fleet@127.0.0.1:${port}/fleet`,
    password,
    port,
    database: 'fleet',
    async stop() {
      await stop();
      running = false;
    },
    async start() {
      await start();
      running = true;
    },
    sql: (query, db = 'fleet') => psql(db, query),
    async createDatabase(name) {
      await psql('postgres', `CREATE DATABASE ${name} OWNER fleet;`);
      return `postgresql://fleet@127.0.0.1:${port}/${name}`;
    },
    async dump() {
      const r = await exec('pg_dump', ['-h', sockets, '-p', String(port), '-U', SUPERUSER, '--no-owner', 'fleet'], { env: process.env });
      if (r.code !== 0) throw new Error(`pg_dump failed: ${r.stderr}`);
      return r.stdout;
    },
    close() {
      closed ??= (async () => {
        try {
          if (running) await stop();
        } finally {
          running = false;
          process.off('exit', onExit);
          fs.rmSync(dir, { recursive: true, force: true });
        }
      })();
      return closed;
    },
  };
}
