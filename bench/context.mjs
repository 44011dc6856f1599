// What the scenarios share. Each part starts on first use, so a run of a few scenarios
// (--only) starts only what they need, and everything stops when the bench exits:
//   ctx.idp()             the OpenID Provider (test/support/idp.ts in its own process, bench/idp.mjs)
//   ctx.git()             the git HTTP server (test/support/git-server.ts), repo `demo`
//   ctx.main()            the main daemon: `work` (hot token, CLI, helpers; serves the git
//                         server's host) and `rot` (forced refresh), both with real grants
//   ctx.credentialCache() a warm `git credential-cache` daemon, the C helper baseline
//   ctx.startDaemon()     another daemon (test/support/daemon.ts) under a home of its own
//   ctx.seedHome()        write a home's config and grants without a daemon
//   ctx.runLoad()         the load generator (bench/loadgen.mjs) in its own process
//   ctx.startSideServer() a baseline server of bench/ on a Unix socket
//   ctx.figures           what one scenario measured that another compares with
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BENCH, ROOT, onExit, spawnTracked, tempDir, timeSync, track } from './lib/processes.mjs';
import { DaemonProcess, isolatedGitEnv, startGitServer, tokendEnv, waitForHealth, writeSettings } from './lib/support.mjs';

export const CLIENT_ID = 'conf';
export const CLIENT_SECRET = 'conf-secret';
export const SCOPES = ['openid', 'offline_access', 'api'];

/** `start()` once, on the first call; `.started()` says whether anyone asked yet. */
function lazy(start) {
  let started;
  const get = () => (started ??= start());
  get.started = () => started !== undefined;
  return get;
}

/** An account of the IdP's confidential client, as config.json holds it. */
export const accountConfig = (issuer, extra = {}) => ({
  driver: 'oauth2',
  issuer,
  client_id: CLIENT_ID,
  scopes: SCOPES,
  hosts: [],
  ...extra,
});

/** 43 characters, like oidc-provider's opaque tokens. */
export const randomToken = () => randomBytes(32).toString('base64url');

/** A grant with made-up tokens, as the store holds one (valid a month unless told otherwise). */
export function randomGrant({ expiresAt = Date.now() + 30 * 86_400_000, obtainedAt = Date.now(), scope = SCOPES.join(' ') } = {}) {
  return {
    refresh_token: randomToken(),
    access_token: randomToken(),
    token_type: 'Bearer',
    expires_at: expiresAt,
    obtained_at: obtainedAt,
    scope,
  };
}

/** Environment for a daemon or the CLI under `home`: info logs, none of the bench's own node options. */
export function benchEnv(home, extra = {}) {
  const env = tokendEnv(home, { TOKEND_LOG_LEVEL: 'info', ...extra });
  delete env.NODE_OPTIONS;
  return env;
}

/** A daemon that has not stopped 5 s after SIGTERM is killed, so one stuck daemon cannot hang the bench. */
class BenchDaemon extends DaemonProcess {
  stop(signal = 'SIGTERM', killAfterMs = 5000) {
    return super.stop(signal, killAfterMs);
  }
}

/**
 * `bin/tokend daemon` under `home`, resolved once /v1/health answers (polled every 2 ms, so
 * `readyMs` can time a cold start). Its log goes to a file in `home`, not through a pipe this
 * process would have to drain while it measures.
 */
async function startDaemon(home, { nodeArgs = [], env = {}, timeoutMs = 20_000 } = {}) {
  const d = new BenchDaemon(home, benchEnv(home, env));
  const started = d.start([], { nodeArgs, timeoutMs, pollMs: 2, logFile: path.join(home, `daemon-${Date.now()}.log`) });
  track(d.child); // start() spawns before its first await: killed at exit even if it never comes up
  await started;
  return d;
}

/**
 * Run bench/loadgen.mjs in its own process (so it has a core of its own and this process's
 * event loop does not skew it) and return its JSON result. See loadgen.mjs for `spec`.
 */
function runLoad(spec) {
  return new Promise((resolve, reject) => {
    const child = spawnTracked(process.execPath, [path.join(BENCH, 'loadgen.mjs')], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) return reject(new Error(`loadgen exited ${code}: ${err.slice(0, 2000)}`));
      try {
        resolve(JSON.parse(out));
      } catch {
        reject(new Error(`loadgen printed no JSON: ${out.slice(0, 500)} ${err.slice(0, 500)}`));
      }
    });
    child.stdin.end(JSON.stringify(spec));
  });
}

/** Start a server script of bench/ on a Unix socket in its own process, answering `tokens`; resolves {socket, child}. */
async function startSideServer(script, args, tokens) {
  const socket = path.join(tempDir('tkb-srv-'), 's.sock');
  const child = spawnTracked(process.execPath, [path.join(BENCH, script), socket, ...args], {
    cwd: ROOT,
    stdio: 'ignore',
    env: { ...process.env, BENCH_TOKENS: JSON.stringify(tokens.map((t) => ({ ...t, expires_at: Date.parse(t.expires_at) }))) },
  });
  await waitForHealth(socket, { pid: child.pid, pollMs: 2 });
  return { socket, child };
}

let distModules;
/** tokend's own store and path modules from dist/, to write homes as the daemon would. */
export async function dist() {
  distModules ??= {
    store: await import(path.join(ROOT, 'dist/daemon/store/sqlite-store.js')),
    crypto: await import(path.join(ROOT, 'dist/daemon/store/crypto.js')),
    paths: await import(path.join(ROOT, 'dist/protocol/paths.js')),
  };
  return distModules;
}

/**
 * Write config.json and the encrypted store of `home` directly (grants through the store
 * module, as the daemon would hold them). With `fast`, the store is built on /dev/shm
 * (no fsync cost per row) and copied into place: 10 000 FULL-sync commits would take ~15 s.
 * accounts: [{name, config, secret?, grant?}]
 */
async function seedHome(home, settings, accounts, { fast = false } = {}) {
  const { store: S, crypto: C, paths: P } = await dist();
  const paths = P.resolvePaths({ TOKEND_HOME: home });
  for (const d of [paths.configDir, paths.dataDir]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
  writeSettings(home, settings, Object.fromEntries(accounts.map((a) => [a.name, a.config])));
  const key = C.loadOrCreateKey(paths.keyFile);
  const shm = fast && fs.existsSync('/dev/shm') ? tempDir('tkb-seed-', '/dev/shm') : undefined;
  const file = shm ? path.join(shm, 'tokend.db') : paths.dbFile;
  const store = S.openStore({ file, key });
  try {
    for (const a of accounts) {
      if (a.secret) await store.putSecret(a.name, 'client_secret', a.secret);
      if (a.grant) await store.replaceGrant(a.name, a.grant);
    }
  } finally {
    await store.close();
  }
  if (shm) {
    fs.copyFileSync(file, paths.dbFile);
    fs.chmodSync(paths.dbFile, 0o600);
    fs.rmSync(shm, { recursive: true, force: true });
  }
}

const basicAuth = `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`;

/** One bare refresh at the IdP's token endpoint, as any OAuth client would do it; resolves the rotated refresh token. */
export async function bareRefresh(issuer, refreshToken) {
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', authorization: basicAuth },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken }),
  });
  const body = await res.json();
  if (!res.ok || !body.refresh_token) throw new Error(`bare refresh failed: ${res.status} ${JSON.stringify(body)}`);
  return body.refresh_token;
}

/** bench/idp.mjs as a child process; resolves {issuer, issue(), stats(), reset()}. */
async function startIdpProcess() {
  const child = spawnTracked(process.execPath, [path.join(BENCH, 'idp.mjs')], {
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, BENCH_IDP_AT_TTL: '3600' },
  });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr = (stderr + c).slice(-4000)));
  const pending = new Map();
  let seq = 0;
  const issuer = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the IdP did not start:\n${stderr}`)), 20_000);
    child.once('exit', (code) => reject(new Error(`the IdP exited ${code}:\n${stderr}`)));
    child.on('message', (m) => {
      if (m.ready) {
        clearTimeout(t);
        resolve(m.issuer);
      } else if (pending.has(m.id)) {
        const { ok, fail } = pending.get(m.id);
        pending.delete(m.id);
        m.ok ? ok(m) : fail(new Error(m.error));
      }
    });
  });
  const call = (cmd) =>
    new Promise((ok, fail) => {
      const id = ++seq;
      pending.set(id, { ok, fail });
      child.send({ id, cmd });
    });
  return {
    issuer,
    issue: async () => (await call('issue')).tokens,
    stats: async () => (await call('stats')).stats,
    reset: () => call('reset'),
  };
}

/** A `git credential-cache` daemon holding one credential, warm; `get()` times one lookup (ms). */
function startCredentialCache() {
  const dir = tempDir('tkb-cc-');
  const socket = path.join(dir, 'cc', 'sock'); // git makes the 0700 folder itself
  const env = isolatedGitEnv({ HOME: dir });
  const store = spawnSync('git', ['credential-cache', '--timeout', '900', '--socket', socket, 'store'], {
    input: 'protocol=https\nhost=x\nusername=u\npassword=cc-secret\n\n',
    env,
    stdio: ['pipe', 'pipe', 'ignore'],
    timeout: 10_000,
  });
  if (store.status !== 0) throw new Error(`git credential-cache store exited ${store.status}`);
  onExit(() => spawnSync('git', ['credential-cache', '--socket', socket, 'exit'], { env, stdio: 'ignore', timeout: 5000 }));
  const get = () =>
    timeSync('git', ['credential-cache', '--socket', socket, 'get'], {
      env,
      input: 'protocol=https\nhost=x\n\n',
      check: (o) => o.includes('password=cc-secret'),
    });
  get(); // warm: the daemon is up and answers
  return { get };
}

/** The context every scenario's run(ctx) gets; `rounds` are the round counts of this run (--quick or full). */
export function createContext({ rounds, log }) {
  const passwords = new Set(); // what the git server accepts: the main daemon's token

  const idp = lazy(startIdpProcess);

  const git = lazy(async () => {
    const server = await startGitServer({ root: tempDir('tkb-git-'), authorize: async (_user, pass) => passwords.has(pass) });
    await server.createRepo('demo');
    return server;
  });

  const main = lazy(async () => {
    const { issuer, issue } = await idp();
    const { url } = await git(); // `work` serves the git server's host
    const home = tempDir('tkb-a-');
    writeSettings(home, { max_refreshes_per_minute: 100_000 });
    const daemon = await startDaemon(home);
    for (const [name, hosts] of [
      ['work', [url]],
      ['rot', []],
    ]) {
      const put = await daemon.request('PUT', `/v1/accounts/${name}`, {
        ...accountConfig(issuer, { hosts }),
        client_secret: CLIENT_SECRET,
      });
      if (put.status !== 201) throw new Error(`PUT /v1/accounts/${name} answered ${put.status}: ${put.text}`);
      const imp = await daemon.request('POST', `/v1/accounts/${name}/import`, { refresh_token: (await issue()).refresh_token });
      if (imp.status !== 200) throw new Error(`import ${name} answered ${imp.status}: ${imp.text}`);
    }
    const res = await daemon.request('POST', '/v1/token', { account: 'work' });
    if (res.status !== 200) throw new Error(`POST /v1/token answered ${res.status}: ${res.text}`);
    passwords.add(res.json.access_token);
    return { daemon, home, token: res.json };
  });

  return {
    rounds,
    log,
    figures: {},
    idp,
    git,
    main,
    credentialCache: lazy(async () => startCredentialCache()),
    startDaemon,
    seedHome,
    runLoad,
    startSideServer,
    /** Close what needs more than a kill: the git server's connections and repos. */
    async close() {
      if (git.started()) await (await git()).close();
    },
  };
}
