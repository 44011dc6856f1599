/**
 * `tokend daemon` started by hand while one already runs: at a terminal the person reads a
 * sentence naming the running daemon and how to restart it; under a supervisor (no TTY) the
 * same failure is one JSON log line, like every other line the daemon writes.
 */
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, TOKEND_BIN, tempHome } from './support/daemon.js';

const HAS_SCRIPT = spawnSync('sh', ['-c', 'command -v script']).status === 0;
if (!HAS_SCRIPT) console.warn('daemon-terminal.test.ts: script(1) (util-linux) is missing; the terminal case is skipped');

let d: DaemonProcess;
let cleanup: () => void;
beforeAll(async () => {
  const h = tempHome();
  cleanup = h.cleanup;
  d = new DaemonProcess(h.home, h.env);
  await d.start();
});
afterAll(async () => {
  await d.stop('SIGKILL');
  cleanup();
});

describe('a second daemon', () => {
  it.runIf(HAS_SCRIPT)('at a terminal: a sentence with the running pid and how to restart it, exit 1', () => {
    // script(1) gives the command a pseudo-terminal and copies what it prints to stdout.
    const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(TOKEND_BIN)} daemon`;
    const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { env: d.env, encoding: 'utf8', timeout: 30_000 });
    expect(r.status).toBe(1);
    const out = r.stdout.replace(/\r/g, '');
    expect(out).toContain(`tokend daemon: another tokend daemon is running (pid ${d.pid}, socket ${d.socket})`);
    expect(out).toContain(`stop it first: kill ${d.pid}`);
    expect(out).not.toMatch(/^\{/m); // no JSON log line at a terminal
  });

  it('without a terminal: one JSON log line, exit 1', () => {
    const r = spawnSync(process.execPath, [TOKEND_BIN, 'daemon'], {
      env: d.env,
      encoding: 'utf8',
      timeout: 30_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(r.status).toBe(1);
    const line = JSON.parse(r.stderr.trim().split('\n').at(-1)!);
    expect(line).toMatchObject({ level: 'error', msg: `another tokend daemon is running (pid ${d.pid}, socket ${d.socket})` });
  });
});
