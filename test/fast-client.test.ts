/**
 * build/tokend-fast (native/tokend-fast.c) against a real daemon: an input larger than
 * the daemon reads must be refused at once, not stall until a server timeout.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { MAX_BODY_BYTES } from '../src/protocol/routes.js';
import { ROOT } from './support/daemon.js';
import { daemonForSuite, runProcess } from './support/fixtures.js';

const FAST = path.join(ROOT, 'build', 'tokend-fast');
const GIT_HELPER = path.join(ROOT, 'bin', 'git-credential-tokend');
/** Well under the daemon's own wait for a body (minutes), well over a normal answer (ms). */
const PROMPT_MS = 10_000;

/** git credential input padded with an attribute git would never send, to `size` bytes. */
function gitInput(size: number): Buffer {
  const head = 'protocol=https\nhost=github.com\nx=';
  return Buffer.concat([Buffer.from(head), Buffer.alloc(size - head.length - 1, 'a'), Buffer.from('\n')]);
}

describe.skipIf(!fs.existsSync(FAST))('build/tokend-fast with a real daemon', () => {
  const suite = daemonForSuite();
  const fast = (stdin: Buffer) =>
    runProcess(FAST, [suite.daemon.socket, '/v1/helpers/git/get'], { env: suite.env, stdin, timeoutMs: PROMPT_MS });

  // The C client stops reading stdin past its own limit (1 MiB); what it declares in
  // Content-Length must be exactly what it sends, or the daemon waits for bytes that never come.
  it.each([
    ['just over the daemon limit', MAX_BODY_BYTES + 1],
    ['at the client limit', 1024 * 1024],
    ['over the client limit', 1024 * 1024 + 1],
    ['far over the client limit', 3 * 1024 * 1024],
  ])('an input %s is refused at once, printing nothing', async (_why, size) => {
    const r = await fast(gitInput(size));
    // 112: "no usable answer" (here the daemon's 413), nothing printed.
    expect({ killed: r.killed, code: r.code, stdout: r.stdout }).toEqual({ killed: false, code: 112, stdout: '' });
  });

  it('git-credential-tokend with an oversized input answers git at once; the daemon keeps serving', async () => {
    const env = { ...suite.env, TOKEND_SOCKET: suite.daemon.socket };
    const r = await runProcess(GIT_HELPER, ['get'], { env, stdin: gitInput(2 * 1024 * 1024), timeoutMs: PROMPT_MS });
    expect(r.killed).toBe(false);
    // git's rule for a helper that cannot answer: nothing on stdout, exit 0 (git moves on).
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: '' });
    expect(r.stderr).toMatch(/^tokend: /);
    expect((await suite.daemon.request('GET', '/v1/health')).status).toBe(200);
  });

  it('an input within the limit still gets its answer (a miss: nothing, exit 0)', async () => {
    const r = await fast(Buffer.from('protocol=https\nhost=github.com\n\n'));
    expect({ killed: r.killed, code: r.code, stdout: r.stdout }).toEqual({ killed: false, code: 0, stdout: '' });
  });

  it('the C client reads at least as much stdin as the daemon accepts, so it never cuts a valid input', () => {
    const src = fs.readFileSync(path.join(ROOT, 'native', 'tokend-fast.c'), 'utf8');
    const m = /#define MAX_BODY \((\d+) \* (\d+)\)/.exec(src);
    expect(m).not.toBeNull();
    expect(Number(m![1]) * Number(m![2])).toBeGreaterThanOrEqual(MAX_BODY_BYTES);
  });
});
