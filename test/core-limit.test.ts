/**
 * A core file of the daemon holds its memory: every token, refresh token, client secret and
 * the master key. Each way the daemon starts gives it a core size limit of 0, even from a
 * shell with `ulimit -c unlimited`; a daemon started otherwise says so in /v1/health and
 * `tokend doctor`. The limit is read from /proc/PID/limits of the running daemon.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ROOT, TOKEND_BIN, processAlive, runCli, socketRequest, tempHome, waitForHealth } from './support/daemon.js';
import { waitFor } from './support/fake-as.js';

const linux = process.platform === 'linux';

/** The soft core size limit of a running process, as /proc/PID/limits words it. */
function coreLimitOf(pid: number): string {
  const line = fs
    .readFileSync(`/proc/${pid}/limits`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Max core file size'))!;
  return line.slice('Max core file size'.length).trim().split(/\s+/)[0]!;
}

/** `sh -c 'ulimit -c unlimited; exec ARGV'`: what a developer's shell with core dumps on runs. */
function underUnlimited(argv: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn('/bin/sh', ['-c', 'ulimit -c unlimited && exec "$@"', 'sh', ...argv], { env, stdio: ['ignore', 'pipe', 'pipe'] });
}

function output(child: ChildProcess): Promise<{ code: number | null; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d) => (stdout += d));
  child.stderr?.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
}

describe.skipIf(!linux)('the daemon runs with a core size limit of 0', () => {
  const homes: { cleanup: () => void }[] = [];
  const pids: number[] = [];
  afterEach(async () => {
    for (const pid of pids.splice(0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
      await waitFor(() => !processAlive(pid), 'the daemon to stop');
    }
    for (const h of homes.splice(0)) h.cleanup();
  });
  const home = () => {
    const h = tempHome();
    homes.push(h);
    return h;
  };

  it('the parent shell does allow core files (the check below can fail)', async () => {
    const r = await output(underUnlimited(['/bin/sh', '-c', 'ulimit -c'], process.env));
    expect(r.stdout.trim()).toBe('unlimited');
  });

  it('bin/tokend daemon, run as a program', async () => {
    const h = home();
    const child = underUnlimited([TOKEND_BIN, 'daemon'], h.env);
    pids.push(child.pid!);
    const health = await waitForHealth(path.join(h.home, 'run', 'tokend.sock'), { pid: child.pid });
    expect(coreLimitOf(child.pid!)).toBe('0');
    expect(health.warnings).toEqual([]);
  });

  it('the CLI autostart', async () => {
    const h = home();
    const env = { ...h.env };
    delete env.TOKEND_NO_AUTOSTART;
    const r = await output(underUnlimited([process.execPath, TOKEND_BIN, 'list'], env));
    expect(r.code, r.stderr).toBe(0);
    const health = (await socketRequest(path.join(h.home, 'run', 'tokend.sock'), 'GET', '/v1/health')).json;
    pids.push(health.pid);
    expect(coreLimitOf(health.pid)).toBe('0');
    expect(health.warnings).toEqual([]);
  });

  it('the SDK autostart', async () => {
    const h = home();
    const env = { ...h.env };
    delete env.TOKEND_NO_AUTOSTART;
    const sdk = path.join(ROOT, 'dist', 'sdk', 'index.js');
    const script = `const { Tokend } = await import(${JSON.stringify(sdk)}); process.stdout.write(String((await new Tokend().health()).pid));`;
    const r = await output(underUnlimited([process.execPath, '--input-type=module', '-e', script], env));
    expect(r.code, r.stderr).toBe(0);
    const pid = Number(r.stdout);
    pids.push(pid);
    expect(coreLimitOf(pid)).toBe('0');
  });

  it('started some other way with core files on: /v1/health warns and tokend doctor fails, with the fix', async () => {
    const h = home();
    const child = underUnlimited([process.execPath, TOKEND_BIN, 'daemon'], h.env);
    pids.push(child.pid!);
    const health = await waitForHealth(path.join(h.home, 'run', 'tokend.sock'), { pid: child.pid });
    expect(coreLimitOf(child.pid!)).toBe('unlimited');
    expect(health.warnings).toEqual([expect.stringMatching(/^core dumps are allowed \(core file size limit unlimited\): .*master key/)]);
    const doctor = await runCli(['doctor', '--json'], { env: h.env });
    expect(doctor.code).toBe(1);
    const check = JSON.parse(doctor.stdout).checks.find((c: { id: string }) => c.id === 'core-limit');
    expect(check).toMatchObject({
      status: 'fail',
      message: health.warnings[0],
      fix: `kill ${child.pid}   # clients start it again on demand`,
    });
  });
});
