// Shared plumbing for bench/run.mjs: child processes and temp dirs that are always cleaned
// up, small statistics, one-shot socket requests, daemon start/stop, the load generator.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const BENCH = path.join(ROOT, 'bench');
export const TOKEND_BIN = path.join(ROOT, 'bin', 'tokend');
export const GIT_HELPER_BIN = path.join(ROOT, 'bin', 'git-credential-tokend');

// ---------------------------------------------------------------- cleanup registry

const children = new Set();
const tempDirs = new Set();
const exitHooks = [];

/** spawn() whose child is killed when the bench exits, however it exits. */
export function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function spawnTracked(cmd, args, opts = {}) {
  return track(spawn(cmd, args, opts));
}

/** A short temp dir (Unix socket paths are limited to 107 bytes), removed at exit. */
export function tempDir(prefix = 'tkb-', base = os.tmpdir()) {
  const dir = fs.mkdtempSync(path.join(base, prefix));
  tempDirs.add(dir);
  return dir;
}

/** Run `fn` synchronously at exit (before temp dirs go), e.g. to stop a git credential-cache daemon. */
export function onExit(fn) {
  exitHooks.push(fn);
}

let cleaned = false;
/** Kill every child we started (by pid, nothing else), run exit hooks, remove temp dirs. Idempotent. */
export function cleanupSync() {
  if (cleaned) return;
  cleaned = true;
  for (const fn of exitHooks.splice(0)) {
    try {
      fn();
    } catch {
      /* best effort */
    }
  }
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  children.clear();
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}

/** Stop every tracked child gracefully (SIGTERM, then SIGKILL after `graceMs`). */
export async function stopAll(graceMs = 3000) {
  await Promise.all([...children].map((c) => stopChild(c, 'SIGTERM', graceMs)));
}

export function installSignalHandlers() {
  process.on('exit', cleanupSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(sig, () => {
      process.stderr.write(`\nbench: ${sig}, cleaning up\n`);
      cleanupSync();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

/** Signal a child and wait for it to exit (SIGKILL after `graceMs`). */
export function stopChild(child, signal = 'SIGTERM', graceMs = 3000) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child?.exitCode ?? null);
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
    child.kill(signal);
  });
}

// ---------------------------------------------------------------- statistics

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** The q-quantile (0..1) of a numeric array, nearest-rank on a sorted copy. */
export function quantile(values, q) {
  if (values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i];
}
export const median = (values) => quantile(values, 0.5);

// ---------------------------------------------------------------- HTTP over the Unix socket

/** One request over a Unix socket; resolves {status, text, json} (json undefined if not JSON). */
export function socketRequest(socket, method, urlPath, body, headers = {}) {
  const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        socketPath: socket,
        method,
        path: urlPath,
        agent: false,
        headers: {
          host: 'tokend',
          'user-agent': 'tokend-bench',
          ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}),
          ...headers,
        },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, text, json, headers: res.headers });
        });
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Resolve true once `GET /v1/health` on `socket` answers 200 (from `pid`, when given). */
export async function waitForHealth(socket, { pid, timeoutMs = 15_000, pollMs = 2, exited } = {}) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exited?.()) throw new Error('process exited before it answered /v1/health');
    if (fs.existsSync(socket)) {
      try {
        const r = await socketRequest(socket, 'GET', '/v1/health');
        if (r.status === 200 && (pid === undefined || r.json?.pid === pid)) return r.json;
      } catch {
        /* not yet */
      }
    }
    if (Date.now() > deadline) throw new Error(`nothing answered /v1/health on ${socket} within ${timeoutMs} ms`);
    await sleep(pollMs);
  }
}

// ---------------------------------------------------------------- the daemon

/** Environment for a daemon or CLI under `home`; nothing of the user's own tokend leaks in. */
export function tokendEnv(home, extra = {}) {
  const env = { ...process.env, TOKEND_HOME: home, TOKEND_NO_AUTOSTART: '1', TOKEND_LOG_LEVEL: 'info', ...extra };
  for (const k of ['TOKEND_SOCKET', 'TOKEND_CONFIG_DIR', 'TOKEND_DATA_DIR', 'TOKEND_KEY_FILE', 'NODE_OPTIONS']) delete env[k];
  return env;
}

/** Write config.json before the daemon starts. */
export function writeConfig(home, settings, accounts = {}) {
  const dir = path.join(home, 'config');
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ version: 1, settings, accounts }), { mode: 0o600 });
}

/**
 * Spawn `node [nodeArgs] bin/tokend daemon` under `home` and wait for /v1/health.
 * Returns { child, pid, socket, readyMs, logFile, stop() }. stderr goes to a log file in `home`.
 */
export async function startDaemon(home, { nodeArgs = [], env = {}, timeoutMs = 20_000 } = {}) {
  const socket = path.join(home, 'run', 'tokend.sock');
  const logFile = path.join(home, `daemon-${Date.now()}.log`);
  const logFd = fs.openSync(logFile, 'a', 0o600);
  const t0 = nowMs();
  const child = spawnTracked(process.execPath, [...nodeArgs, TOKEND_BIN, 'daemon'], {
    env: tokendEnv(home, env),
    stdio: ['ignore', logFd, logFd],
  });
  fs.closeSync(logFd);
  let exitedEarly = false;
  child.once('exit', () => (exitedEarly = true));
  try {
    await waitForHealth(socket, { pid: child.pid, timeoutMs, exited: () => exitedEarly });
  } catch (err) {
    const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-3000) : '';
    child.kill('SIGKILL');
    throw new Error(`${err.message}\n--- daemon log (tail) ---\n${log}`);
  }
  const readyMs = nowMs() - t0;
  return {
    child,
    pid: child.pid,
    socket,
    home,
    readyMs,
    logFile,
    stop: (signal = 'SIGTERM') => stopChild(child, signal, 5000),
    request: (method, p, body, headers) => socketRequest(socket, method, p, body, headers),
  };
}

/** VmRSS and VmHWM of a process in MB (Linux /proc). */
export function memoryOf(pid) {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
    return { rssMb: kb('VmRSS') / 1024, hwmMb: kb('VmHWM') / 1024 };
  } catch {
    return { rssMb: NaN, hwmMb: NaN };
  }
}

// ---------------------------------------------------------------- processes timed from outside

/** Wall time (ms) of one synchronous run; throws when the exit status is not `expectCode`. */
export function timeSync(cmd, args, { env, input = '', expectCode = 0, check, cwd } = {}) {
  const t0 = nowMs();
  const r = spawnSync(cmd, args, { env, input, cwd, encoding: 'utf8', timeout: 30_000 });
  const ms = nowMs() - t0;
  if (r.error) throw r.error;
  if (r.status !== expectCode) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(0, 500)}`);
  if (check && !check(r.stdout)) throw new Error(`${cmd} ${args.join(' ')} printed something unexpected: ${JSON.stringify(r.stdout.slice(0, 200))}`);
  return ms;
}

/** Wall time (ms) of one asynchronous run (when this process must keep serving, e.g. the git server). */
export function timeAsync(cmd, args, { env, input = '', expectCode = 0 } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = nowMs();
    const child = spawnTracked(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (err += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = nowMs() - t0;
      clearTimeout(timer);
      if (code !== expectCode) reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.slice(0, 500)}`));
      else resolve({ ms, stdout: out, stderr: err });
    });
    child.stdin.end(input);
  });
}

// ---------------------------------------------------------------- load generator

/**
 * Run bench/loadgen.mjs in its own process (so it has a core of its own and this process's
 * event loop does not skew it) and return its JSON result. See loadgen.mjs for `spec`.
 */
export function runLoad(spec) {
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

/** Does something accept connections on this Unix socket? */
export function socketAccepts(socket) {
  return new Promise((resolve) => {
    const c = net.connect(socket);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}
