/**
 * What the daemon reads of a caller from /proc (src/daemon/caller/proc.ts), against real
 * processes: the script an interpreter runs, the unit from a cgroup line, and a pid that is
 * never trusted for a process that started after the connection it is named for.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { identify, readStat, scriptOf, unitOf } from '../src/daemon/caller/proc.js';

const linux = process.platform === 'linux';

describe('scriptOf', () => {
  it('takes the first argument that is not an option, resolved against the working folder', () => {
    expect(scriptOf('/usr/bin/python3.12', ['python3', '-u', 'tool.py', '--x'], '/home/u/p')).toBe('/home/u/p/tool.py');
    expect(scriptOf('/usr/bin/node', ['node', '--require', 'x.js', '/opt/app/main.js'], '/')).toBe('/opt/app/main.js');
    expect(scriptOf('/usr/bin/dash', ['/bin/sh', '/usr/bin/tokend', 'token', 'gh'], '/')).toBe('/usr/bin/tokend');
  });
  it('has none for inline code, a module, or a program that is not an interpreter', () => {
    expect(scriptOf('/usr/bin/python3', ['python3', '-c', 'print(1)', 'a.py'], '/')).toBeUndefined();
    expect(scriptOf('/usr/bin/python3', ['python3', '-m', 'http.server'], '/')).toBeUndefined();
    expect(scriptOf('/usr/bin/bash', ['bash', '-ec', 'echo hi'], '/')).toBeUndefined();
    expect(scriptOf('/usr/bin/node', ['node', '-e', '1'], '/')).toBeUndefined();
    expect(scriptOf('/usr/bin/git', ['git', 'credential-x', 'get'], '/')).toBeUndefined();
  });
});

describe('unitOf', () => {
  it('is the deepest service or scope of the unified hierarchy (or name=systemd)', () => {
    expect(unitOf('0::/user.slice/user-1000.slice/user@1000.service/app.slice/backup.service\n')).toBe('backup.service');
    expect(unitOf('0::/user.slice/user-1000.slice/session-3.scope\n')).toBe('session-3.scope');
    expect(unitOf('12:cpu:/x\n1:name=systemd:/system.slice/cron.service\n')).toBe('cron.service');
    expect(unitOf('0::/\n')).toBeUndefined();
  });
});

describe.skipIf(!linux)('identify', () => {
  it('names a running python3 script with its folder-resolved path, and its parent', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-proc-'));
    fs.writeFileSync(path.join(dir, 'wait.py'), 'import sys; sys.stdin.read()\n');
    const child = spawn('python3', ['wait.py'], { cwd: dir, stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      // The pyenv shim (if any) execs the real python: wait until the script runs.
      let id = identify(child.pid!, Number.POSITIVE_INFINITY);
      for (let i = 0; i < 100 && !path.basename(id?.caller.exe ?? '').startsWith('python'); i++) {
        await new Promise((r) => setTimeout(r, 20));
        id = identify(child.pid!, Number.POSITIVE_INFINITY);
      }
      expect(id?.caller).toMatchObject({ pid: child.pid, script: path.join(fs.realpathSync(dir), 'wait.py') });
      expect(path.basename(id!.caller.exe!)).toMatch(/^python/);
      expect(id!.caller.parents[0]).toBe(fs.realpathSync(process.execPath));
    } finally {
      child.stdin!.end();
      await once(child, 'exit');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('trusts nothing of a pid whose process started after the peer was read (a reused pid)', async () => {
    const child = spawn('sleep', ['30']);
    try {
      const start = readStat(child.pid!)!.start;
      expect(identify(child.pid!, start)?.caller.pid).toBe(child.pid);
      // The kernel named this pid one tick before this process existed: it was another process's.
      expect(identify(child.pid!, start - 1)).toBeUndefined();
    } finally {
      child.kill();
      await once(child, 'exit');
    }
  });

  it('trusts nothing of a process that is gone', async () => {
    const child = spawn('true');
    await once(child, 'exit');
    expect(identify(child.pid!, Number.POSITIVE_INFINITY)).toBeUndefined();
  });
});
