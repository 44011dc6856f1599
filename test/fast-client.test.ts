/**
 * build/tokend-fast (native/tokend-fast.c) against a real daemon: an input larger than
 * the daemon reads must be refused at once, not stall until a server timeout.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_BODY_BYTES } from '../src/protocol/routes.js';
import { DaemonProcess, ROOT, tempHome } from './support/daemon.js';

const FAST = path.join(ROOT, 'build', 'tokend-fast');
const GIT_HELPER = path.join(ROOT, 'bin', 'git-credential-tokend');
/** Well under the daemon's own wait for a body (minutes), well over a normal answer (ms). */
const PROMPT_MS = 10_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
  killed: boolean;
}

/** Run a program with `stdin`, killing it (and its children) after PROMPT_MS so a stall fails the test instead of hanging it. */
function run(cmd: string, args: string[], stdin: Buffer, env: NodeJS.ProcessEnv): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    // Its own process group, so a stalled shim is killed together with the tokend-fast it runs.
    const child = spawn(cmd, args, { env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      process.kill(-child.pid!, 'SIGKILL');
    }, PROMPT_MS);
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: Date.now() - started, killed });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(stdin);
  });
}

/** git credential input padded with an attribute git would never send, to `size` bytes. */
function gitInput(size: number): Buffer {
  const head = 'protocol=https\nhost=github.com\nx=';
  return Buffer.concat([Buffer.from(head), Buffer.alloc(size - head.length - 1, 'a'), Buffer.from('\n')]);
}

describe.skipIf(!fs.existsSync(FAST))('build/tokend-fast with a real daemon', () => {
  let h: ReturnType<typeof tempHome>;
  let d: DaemonProcess;

  beforeAll(async () => {
    h = tempHome();
    d = new DaemonProcess(h.home, h.env);
    await d.start();
  });
  afterAll(async () => {
    await d?.stop('SIGKILL');
    h?.cleanup();
  });

  // The C client stops reading stdin past its own limit (1 MiB); what it declares in
  // Content-Length must be exactly what it sends, or the daemon waits for bytes that never come.
  it.each([
    ['just over the daemon limit', MAX_BODY_BYTES + 1],
    ['at the client limit', 1024 * 1024],
    ['over the client limit', 1024 * 1024 + 1],
    ['far over the client limit', 3 * 1024 * 1024],
  ])('an input %s is refused at once, printing nothing', async (_why, size) => {
    const r = await run(FAST, [d.socket, '/v1/helpers/git/get'], gitInput(size), h.env);
    expect({ killed: r.killed, code: r.code, stdout: r.stdout }).toEqual({ killed: false, code: 112, stdout: '' });
    expect(r.ms).toBeLessThan(PROMPT_MS);
  });

  it('git-credential-tokend with an oversized input answers git at once; the daemon keeps serving', async () => {
    const r = await run(GIT_HELPER, ['get'], gitInput(2 * 1024 * 1024), { ...h.env, TOKEND_SOCKET: d.socket });
    expect(r.killed).toBe(false);
    // git's rule for a helper that cannot answer: nothing on stdout, exit 0 (git moves on).
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: '' });
    expect(r.stderr).toMatch(/^tokend: /);
    expect((await d.request('GET', '/v1/health')).status).toBe(200);
  });

  it('an input within the limit still gets its answer (a miss: nothing, exit 0)', async () => {
    const r = await run(FAST, [d.socket, '/v1/helpers/git/get'], Buffer.from('protocol=https\nhost=github.com\n\n'), h.env);
    expect({ killed: r.killed, code: r.code, stdout: r.stdout }).toEqual({ killed: false, code: 0, stdout: '' });
  });

  it('the C client reads at least as much stdin as the daemon accepts, so it never cuts a valid input', () => {
    const src = fs.readFileSync(path.join(ROOT, 'native', 'tokend-fast.c'), 'utf8');
    const m = /#define MAX_BODY \((\d+) \* (\d+)\)/.exec(src);
    expect(m).not.toBeNull();
    expect(Number(m![1]) * Number(m![2])).toBeGreaterThanOrEqual(MAX_BODY_BYTES);
  });
});
