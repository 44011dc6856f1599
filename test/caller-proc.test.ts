/**
 * What the daemon reads of a caller from /proc (src/daemon/caller/proc.ts), against real
 * processes: the script an interpreter runs, the unit from a cgroup line, and a pid that is
 * never trusted for a process that started after the connection it is named for; and the cache
 * of callers (identity-cache.ts), whose kept reads give way to an exec, another script or
 * folder, an exec'd or exited parent.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CallerCache } from '../src/daemon/caller/identity-cache.js';
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

/** Until `check()` holds (a real process changing under the test: an exec, an exit), polling /proc. */
async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

const exeOfPid = (pid: number) => {
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
};

describe.skipIf(!linux)('CallerCache: the connections of one process share its first read, checked again each time', () => {
  const dirs: string[] = [];
  const tmp = () => {
    const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-cache-')));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  });

  it('a second connection of an unchanged process is the same caller, from the kept read', async () => {
    const child = spawn('sleep', ['30']);
    try {
      await until(() => exeOfPid(child.pid!)?.endsWith('sleep') ?? false, 'sleep to run');
      const cache = new CallerCache();
      const first = cache.identify(child.pid!, Number.POSITIVE_INFINITY);
      const second = cache.identify(child.pid!, Number.POSITIVE_INFINITY);
      expect(first?.caller.exe).toBe(exeOfPid(child.pid!));
      expect(second?.caller).toBe(first?.caller);
      // One identity per connection (an approval waits on its own connection), one read of the process.
      expect(second).not.toBe(first);
      expect(cache.counts).toEqual({ hits: 1, reads: 1 });
      expect(second).toEqual(identify(child.pid!, Number.POSITIVE_INFINITY));
    } finally {
      child.kill();
      await once(child, 'exit');
    }
  });

  it('a process that execs another program under the same pid and start time is read as that program', async () => {
    const child = spawn('sh', ['-c', 'read line; exec sleep 30'], { stdio: ['pipe', 'ignore', 'ignore'] });
    try {
      await until(() => exeOfPid(child.pid!) !== undefined && !exeOfPid(child.pid!)!.endsWith('/node'), 'sh to run');
      const cache = new CallerCache();
      const before = cache.identify(child.pid!, Number.POSITIVE_INFINITY)!;
      expect(before.caller.exe).toBe(fs.realpathSync(execFileSync('sh', ['-c', 'command -v sh'], { encoding: 'utf8' }).trim()));
      child.stdin!.write('go\n');
      await until(() => exeOfPid(child.pid!)?.endsWith('/sleep') ?? false, 'the exec');
      const after = cache.identify(child.pid!, Number.POSITIVE_INFINITY)!;
      expect(after.start).toBe(before.start);
      expect(after.caller.exe).toBe(exeOfPid(child.pid!));
      expect(after.program).not.toBe(before.program);
      expect(cache.counts.hits).toBe(0);
    } finally {
      child.kill();
      await once(child, 'exit');
    }
  });

  it('the same interpreter running another script, and the same command line in another folder, are other scripts', async () => {
    const one = tmp();
    const two = tmp();
    // run.sh in `one` execs `sh run.sh` again from `two`: the same command line, another script.
    fs.writeFileSync(path.join(one, 'run.sh'), 'read line\ncd ../' + path.basename(two) + '\nexec sh run.sh\n');
    fs.writeFileSync(path.join(two, 'run.sh'), 'read line\nexec sh other.sh\n');
    fs.writeFileSync(path.join(two, 'other.sh'), 'read line\n');
    const child = spawn('sh', ['run.sh'], { cwd: one, stdio: ['pipe', 'ignore', 'ignore'] });
    const cache = new CallerCache();
    const scriptNow = () => cache.identify(child.pid!, Number.POSITIVE_INFINITY)?.caller.script;
    try {
      await until(() => scriptNow() === path.join(one, 'run.sh'), 'run.sh in the first folder');
      expect(scriptNow()).toBe(path.join(one, 'run.sh'));
      const hits = cache.counts.hits;
      expect(hits).toBeGreaterThan(0);
      child.stdin!.write('go\n');
      await until(() => scriptNow() === path.join(two, 'run.sh'), 'run.sh in the second folder');
      child.stdin!.write('go\n');
      await until(() => scriptNow() === path.join(two, 'other.sh'), 'other.sh');
      expect(cache.identify(child.pid!, Number.POSITIVE_INFINITY)).toEqual(identify(child.pid!, Number.POSITIVE_INFINITY));
    } finally {
      child.kill();
      await once(child, 'exit');
    }
  });

  it('a reparented process and a parent that execs are read with their new chain', async () => {
    // sh starts a sleep in the background, says its pid, then waits: first it execs (the sleep's
    // parent becomes another program), then it exits (the sleep is reparented).
    const parent = spawn('sh', ['-c', 'sleep 30 & echo $!; read line; exec head -n 1'], { stdio: ['pipe', 'pipe', 'ignore'] });
    const [out] = (await once(parent.stdout!, 'data')) as [Buffer];
    const pid = Number(out.toString().trim());
    const cache = new CallerCache();
    const chain = () => cache.identify(pid, Number.POSITIVE_INFINITY)?.caller.parents;
    try {
      const first = chain()!;
      expect(first[0]).toBe(exeOfPid(parent.pid!));
      expect(first[1]).toBe(fs.realpathSync(process.execPath));
      expect(chain()).toEqual(first);
      expect(cache.counts.hits).toBe(1);
      // The parent execs head: the same process, another program.
      parent.stdin!.write('go\n');
      await until(() => exeOfPid(parent.pid!)?.endsWith('/head') ?? false, 'the exec');
      expect(chain()![0]).toBe(exeOfPid(parent.pid!));
      expect(chain()).toEqual(identify(pid, Number.POSITIVE_INFINITY)!.caller.parents);
      // head reads its line and exits: the sleep goes to a subreaper or init, and its chain says so.
      parent.stdin!.end('go\n');
      await once(parent, 'exit');
      await until(() => readStat(pid)?.ppid !== parent.pid, 'the reparenting');
      const now = chain()!;
      expect(now).toEqual(identify(pid, Number.POSITIVE_INFINITY)!.caller.parents);
      expect(now[0]).not.toMatch(/\/head$/);
      expect(now.slice(0, 2)).not.toEqual(first.slice(0, 2));
    } finally {
      process.kill(pid);
    }
  });

  it('keeps at most its limit of processes, the least recently used going first', async () => {
    const kids = [0, 1, 2].map(() => spawn('sleep', ['30']));
    try {
      for (const k of kids) await until(() => exeOfPid(k.pid!)?.endsWith('sleep') ?? false, 'sleep to run');
      const cache = new CallerCache('/proc', 2);
      const [a, b, c] = kids.map((k) => k.pid!);
      for (const pid of [a, b, a, c]) cache.identify(pid!, Number.POSITIVE_INFINITY);
      expect(cache.counts).toEqual({ hits: 1, reads: 3 });
      // c pushed b out (a was used after it): a is kept, b is read again.
      cache.identify(a!, Number.POSITIVE_INFINITY);
      cache.identify(b!, Number.POSITIVE_INFINITY);
      expect(cache.counts).toEqual({ hits: 2, reads: 4 });
    } finally {
      for (const k of kids) k.kill();
      await Promise.all(kids.map((k) => once(k, 'exit')));
    }
  });

  it('trusts nothing of a pid whose process started after the connection, even when kept', async () => {
    const child = spawn('sleep', ['30']);
    try {
      await until(() => exeOfPid(child.pid!)?.endsWith('sleep') ?? false, 'sleep to run');
      const cache = new CallerCache();
      const start = readStat(child.pid!)!.start;
      expect(cache.identify(child.pid!, start)?.caller.pid).toBe(child.pid);
      expect(cache.identify(child.pid!, start - 1)).toBeUndefined();
      expect(cache.identify(child.pid!, start)?.caller.pid).toBe(child.pid);
    } finally {
      child.kill();
      await once(child, 'exit');
    }
    expect(new CallerCache().identify(child.pid!, Number.POSITIVE_INFINITY)).toBeUndefined();
  });
});
