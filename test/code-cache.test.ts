/**
 * How bin/tokend starts: the daemon's CommonJS bundle through the V8 code cache the build
 * made (bin/code-cache.cjs), the CLI's bundle; and every fallback when one of them is
 * missing, stale, cut short or altered: a plain load, never an error. Real processes: V8
 * aborts the whole process on altered cache data, which only a process of its own shows.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT, runCli, tempHome, waitForHealth } from './support/daemon.js';

const LOADER = path.join(ROOT, 'bin', 'code-cache.cjs');

/** Load `bundle` with `cache` in a node process of its own; what became of the cache and what the bundle exported. */
function loadInChild(bundle: string, cache: string): { cache: string; exports: string[] } {
  const out = execFileSync(
    process.execPath,
    [
      '-e',
      `const r = require(${JSON.stringify(LOADER)}).loadBundle(process.argv[1], process.argv[2]); console.log(JSON.stringify({ cache: r.cache, exports: Object.keys(r.exports) }))`,
      bundle,
      cache,
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return JSON.parse(out) as { cache: string; exports: string[] };
}

describe('the code cache the build makes for the daemon', () => {
  it('is used: V8 takes it for dist/daemon/main.bundle.cjs', () => {
    const bundle = path.join(ROOT, 'dist', 'daemon', 'main.bundle.cjs');
    expect(loadInChild(bundle, bundle.replace(/\.cjs$/, '.cache'))).toEqual({ cache: 'used', exports: ['main'] });
  });
});

describe('a code cache that does not fit its bundle is ignored', () => {
  let dir: string;
  let bundle: string;
  let cache: string;
  let good: Buffer;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tokend-cc-'));
    bundle = path.join(dir, 'b.cjs');
    cache = path.join(dir, 'b.cache');
    // Enough functions for V8 to keep some in the cache; module.exports as a bundle's.
    const fns = Array.from({ length: 200 }, (_, i) => `function f${i}(x) { return x * ${i} + ${i}; }`).join('\n');
    fs.writeFileSync(
      bundle,
      `${fns}\nconst total = [${Array.from({ length: 200 }, (_, i) => `f${i}(1)`).join(', ')}].reduce((a, b) => a + b, 0);\nmodule.exports = { total };\n`,
    );
    execFileSync(process.execPath, [
      '-e',
      `require(${JSON.stringify(LOADER)}).writeCache(process.argv[1], process.argv[2])`,
      bundle,
      cache,
    ]);
    good = fs.readFileSync(cache);
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const withCache = (bytes: Buffer, mode = 0o644) => {
    fs.writeFileSync(cache, bytes);
    fs.chmodSync(cache, mode);
    return loadInChild(bundle, cache);
  };

  it('a whole one is used', () => {
    expect(withCache(good)).toEqual({ cache: 'used', exports: ['total'] });
  });

  it('altered data (every byte of its second half flipped): ignored, the bundle loads as without it', () => {
    const bad = Buffer.from(good);
    for (let i = bad.length >> 1; i < bad.length; i++) bad[i] = bad[i]! ^ 0xff;
    expect(withCache(bad)).toEqual({ cache: 'corrupt', exports: ['total'] });
  });

  it('cut short, or not a cache at all: ignored', () => {
    expect(withCache(good.subarray(0, good.length - 64))).toEqual({ cache: 'corrupt', exports: ['total'] });
    expect(withCache(Buffer.from('garbage\n\x00\x01\x02'))).toEqual({ cache: 'corrupt', exports: ['total'] });
  });

  it("another build's (the bundle's id differs): ignored", () => {
    const nl = good.indexOf(10);
    const head = good.subarray(0, nl).toString('latin1').split(' ');
    head[2] = '0'.repeat(64);
    expect(withCache(Buffer.concat([Buffer.from(head.join(' '), 'latin1'), good.subarray(nl)]))).toEqual({
      cache: 'stale',
      exports: ['total'],
    });
  });

  it('writable by others: not trusted, ignored', () => {
    expect(withCache(good, 0o666)).toEqual({ cache: 'untrusted', exports: ['total'] });
  });

  it('none: a plain load', () => {
    fs.rmSync(cache);
    expect(loadInChild(bundle, cache)).toEqual({ cache: 'missing', exports: ['total'] });
  });
});

/**
 * A copy of the built tree (bin/, build/, dist/, package.json; node_modules linked) to take pieces
 * away from without touching the one other tests run.
 */
function copyTree(): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tokend-tree-'));
  for (const f of ['bin', 'build', 'dist', 'package.json']) fs.cpSync(path.join(ROOT, f), path.join(root, f), { recursive: true });
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(root, 'node_modules'));
  return root;
}

/** Start `tokend daemon` from `root`; resolves its stderr once /v1/health answers, then stops it. */
async function daemonStarts(root: string): Promise<string> {
  const { home, env, cleanup } = tempHome();
  const child = spawn(process.execPath, [path.join(root, 'bin', 'tokend'), 'daemon'], { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  let exited = false;
  child.once('exit', () => (exited = true));
  try {
    const health = await waitForHealth(path.join(home, 'run', 'tokend.sock'), { pid: child.pid, timeoutMs: 30_000, exited: () => exited });
    expect(health.pid).toBe(child.pid);
    return stderr;
  } finally {
    child.kill('SIGKILL');
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
    cleanup();
  }
}

describe('bin/tokend falls back to a plain load', () => {
  let root: string;
  beforeAll(() => {
    root = copyTree();
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
  const daemonDir = () => path.join(root, 'dist', 'daemon');

  it('the daemon with an altered code cache: starts, and says nothing of it', async () => {
    const cacheFile = path.join(daemonDir(), 'main.bundle.cache');
    const bytes = fs.readFileSync(cacheFile);
    for (let i = bytes.length >> 1; i < bytes.length; i += 7) bytes[i] = bytes[i]! ^ 0x5a;
    fs.writeFileSync(cacheFile, bytes);
    const stderr = await daemonStarts(root);
    expect(stderr).not.toMatch(/code.?cache|V8_Fatal|Fatal error|SyntaxError/i);
  });

  it('the daemon without its CommonJS bundle: the ES module bundle; without both: tsc output', async () => {
    fs.rmSync(path.join(daemonDir(), 'main.bundle.cjs'));
    await daemonStarts(root);
    fs.rmSync(path.join(daemonDir(), 'main.bundle.js'));
    await daemonStarts(root);
  });

  it('the CLI without its bundle: tsc output', async () => {
    const { env, cleanup } = tempHome();
    try {
      const withBundle = await runCli(['version'], { env, bin: path.join(root, 'bin', 'tokend') });
      fs.rmSync(path.join(root, 'dist', 'client', 'cli.bundle.cjs'));
      const without = await runCli(['version'], { env, bin: path.join(root, 'bin', 'tokend') });
      expect(without).toEqual(withBundle);
      expect(without.code).toBe(0);
      expect(without.stdout).toMatch(/^\d+\.\d+\.\d+/);
    } finally {
      cleanup();
    }
  });
});

describe('the CLI bundle (dist/client/cli.bundle.cjs)', () => {
  it('loads no package at start-up: zod and pg only when a rare command imports them', () => {
    const out = execFileSync(
      process.execPath,
      [
        '-e',
        `require(process.argv[1]); console.log(JSON.stringify(Object.keys(require('node:module')._cache).filter((f) => f.includes('node_modules'))))`,
        path.join(ROOT, 'dist', 'client', 'cli.bundle.cjs'),
      ],
      { encoding: 'utf8' },
    );
    expect(JSON.parse(out)).toEqual([]);
  });
});
