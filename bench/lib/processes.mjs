// Every child process and temporary folder the bench makes is registered here and removed
// when the bench exits, however it exits (processes by pid, nothing else); plus timing a
// process from outside and reading its memory.
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nowMs } from './stats.mjs';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const BENCH = path.join(ROOT, 'bench');
export const TOKEND_BIN = path.join(ROOT, 'bin', 'tokend');
export const GIT_SHIM_BIN = path.join(ROOT, 'bin', 'git-credential-tokend');
/** What `tokend setup git --native` names: the native helper when it was built here, else the sh shim (plain `setup git`'s). */
export const GIT_HELPER_BIN = fs.existsSync(path.join(ROOT, 'build', 'git-credential-tokend'))
  ? path.join(ROOT, 'build', 'git-credential-tokend')
  : GIT_SHIM_BIN;
export const NATIVE_BIN = path.join(ROOT, 'build', 'tokend-fast');
/** What `tokend setup cli` links the `tokend` command to: the native client run as `tokend`, when it was built here, else bin/tokend. */
export const TOKEND_CLI_BIN = fs.existsSync(path.join(ROOT, 'build', 'tokend')) ? path.join(ROOT, 'build', 'tokend') : TOKEND_BIN;

const children = new Set();
const tempDirs = new Set();
const exitHooks = [];

/** Register a child so it is killed when the bench exits, however it exits. */
export function track(child) {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

export function spawnTracked(cmd, args, opts = {}) {
  return track(spawn(cmd, args, opts));
}

/** A short temp dir (Unix socket paths are limited to 107 bytes), removed at exit. */
/** A free TCP port on 127.0.0.1 (the bench's API servers listen there). */
export function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

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

/**
 * How long a daemon is left alone after it answers before its idle RSS is read: once it
 * answers, it reads the stored access tokens ahead (100 000 take ~2 s here), then collects
 * what start-up left behind, and the kernel gets the freed pages back a moment later. What
 * a user sees in `ps` a few seconds after start.
 */
export const IDLE_SETTLE_MS = 5000;

/** The VmRSS and VmHWM of a daemon left idle for IDLE_SETTLE_MS. */
export async function idleMemoryOf(pid) {
  await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
  return memoryOf(pid);
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

/**
 * CPU time (user + system, ms) a process has used so far, from /proc/PID/stat (in clock
 * ticks of 10 ms: read it over many requests). Divided by the work done in between, it is
 * what one request costs that process, far steadier on a busy machine than wall time.
 */
export function cpuMsOf(pid) {
  return statCpuMs(`/proc/${pid}/stat`);
}

/**
 * The same for the process's main thread alone (its event loop): without V8's and libuv's
 * helper threads (collector, compiler, thread pool), which on a crowded machine can spend as
 * much again per request while they wait for a core.
 */
export function mainThreadCpuMsOf(pid) {
  return statCpuMs(`/proc/${pid}/task/${pid}/stat`);
}

function statCpuMs(file) {
  try {
    const fields = fs.readFileSync(file, 'utf8').split(') ')[1].split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10; // utime, stime (fields 14, 15)
  } catch {
    return NaN;
  }
}

/** Wall time (ms) of one synchronous run; throws when the exit status is not `expectCode`. */
export function timeSync(cmd, args, { env, input = '', expectCode = 0, check, cwd } = {}) {
  const t0 = nowMs();
  const r = spawnSync(cmd, args, { env, input, cwd, encoding: 'utf8', timeout: 30_000 });
  const ms = nowMs() - t0;
  if (r.error) throw r.error;
  if (r.status !== expectCode) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(0, 500)}`);
  if (check && !check(r.stdout))
    throw new Error(`${cmd} ${args.join(' ')} printed something unexpected: ${JSON.stringify(r.stdout.slice(0, 200))}`);
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
