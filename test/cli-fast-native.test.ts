/**
 * build/tokend: the native client run as the `tokend` command (`tokend setup cli` links it),
 * so `tokend token NAME` is one process, not sh and then the native client. It must answer
 * exactly as bin/tokend's sh part and the node client do, hand every other command to
 * bin/tokend, and every fallback (no daemon, a daemon that does not answer) to node. Real
 * daemon, real IdP, real processes.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, importConfGrant, runCli } from './support/daemon.js';
import { useDaemon, useIdp } from './support/fixtures.js';
import { run } from './support/run.js';

const NATIVE = path.join(ROOT, 'build', 'tokend');
const SCRIPT = path.join(ROOT, 'bin', 'tokend');

describe('build/tokend, the tokend command without the shell', () => {
  const idp = useIdp();
  const { d, t: h } = useDaemon({ account: { idp } });

  it('answers token and kubectl-credential NAME as bin/tokend and the node client do: the token, exit 1, exit 3', async () => {
    // npm run build makes it wherever a C compiler is (scripts/build-native.mjs), as for the helpers.
    expect(fs.existsSync(NATIVE)).toBe(true);
    const native = (args: string[], env = h.env) => run(NATIVE, args, { env });
    const sh = (args: string[]) => run(SCRIPT, args, { env: h.env });

    const noGrant = await native(['token', 'work']);
    expect(noGrant.code).toBe(3);
    expect(noGrant.stderr).toContain('tokend login work');
    expect(noGrant).toEqual(await sh(['token', 'work']));

    const unknown = await native(['token', 'nobody']);
    expect([unknown.code, unknown.stdout]).toEqual([1, '']);
    expect(unknown.stderr).toContain('no account named "nobody"');
    expect(unknown).toEqual(await sh(['token', 'nobody']));

    await importConfGrant(d, idp);
    const fast = await native(['token', 'work']);
    expect([fast.code, fast.stderr]).toEqual([0, '']);
    expect(fast.stdout).toMatch(/^\S+\n$/);
    expect(fast.stdout).toBe((await d.cli(['token', 'work'])).stdout);

    const info = JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', spec: { interactive: false } });
    const kEnv = { ...h.env, KUBERNETES_EXEC_INFO: info };
    const kFast = await native(['kubectl-credential', 'work'], kEnv);
    expect([kFast.code, kFast.stderr]).toEqual([0, '']);
    expect(JSON.parse(kFast.stdout)).toEqual(JSON.parse((await runCli(['kubectl-credential', 'work'], { env: kEnv })).stdout));
    expect(JSON.parse(kFast.stdout).status.token).toBe(fast.stdout.trim());

    // The daemon saw the native client itself as the caller, started straight by this test
    // (node), with no sh in between: what bin/tokend's path would show as its parent.
    const audit = JSON.parse((await d.cli(['audit', 'work', '--json'])).stdout) as {
      entries: { action: string; caller: { exe?: string; parents?: string[] } }[];
    };
    const callers = audit.entries.filter((e) => e.action === 'token' && e.caller.exe?.endsWith('/build/tokend-fast'));
    if (fs.existsSync(path.join(ROOT, 'build', 'tokend-peer.node'))) {
      expect(callers.length).toBeGreaterThan(0);
      expect(callers.some((e) => e.caller.parents?.[0] === fs.realpathSync(process.execPath))).toBe(true);
    }
  });

  it('hands every other command, an option or a name the sh part would not take, to bin/tokend: same output, same status', async () => {
    for (const args of [
      ['version'],
      ['token'],
      ['token', 'work', '--min-ttl', '1'],
      ['token', '-h'],
      ['token', 'a/b'],
      ['status', '--json'],
    ]) {
      const a = await run(NATIVE, args, { env: h.env });
      const b = await runCli(args, { env: h.env });
      // status --json differs in uptime: compare its shape only.
      if (args[0] === 'status') expect([a.code, Object.keys(JSON.parse(a.stdout))]).toEqual([b.code, Object.keys(JSON.parse(b.stdout))]);
      else expect({ args, ...a }).toEqual({ args, code: b.code, stdout: b.stdout, stderr: b.stderr });
    }
  });

  it('a socket nobody answers on (its daemon SIGKILLed) goes to node, which says so as it would have; no daemon is started', async () => {
    const sock = path.join(h.home, 'dead.sock');
    // A listener in its own process, killed: its socket file stays, and connecting is refused.
    const child = spawn(
      process.execPath,
      ['-e', `require('node:net').createServer().listen(${JSON.stringify(sock)}, () => console.log('up'))`],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    await new Promise((resolve) => child.stdout!.once('data', resolve));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    expect(fs.statSync(sock).isSocket()).toBe(true);
    const env = { ...h.env, TOKEND_SOCKET: sock, TOKEND_NO_AUTOSTART: '1' };
    const a = await run(NATIVE, ['token', 'work'], { env });
    const b = await runCli(['token', 'work'], { env });
    expect(a.code).not.toBe(0);
    expect(a).toEqual({ code: b.code, stdout: b.stdout, stderr: b.stderr });
    expect(a.stderr).toContain(sock);
  });

  it('a socket in a folder others can write: exit 1 with the reason, nothing sent, node never asked', async () => {
    const dir = path.join(h.home, 'open');
    fs.mkdirSync(dir);
    fs.chmodSync(dir, 0o777);
    const sock = path.join(dir, 'tokend.sock');
    let connections = 0;
    const server = net.createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const r = await run(NATIVE, ['token', 'work'], { env: { ...h.env, TOKEND_SOCKET: sock } });
      expect(r.code).toBe(1);
      expect(r.stdout).toBe('');
      expect(r.stderr).toMatch(/^tokend: the socket's folder .* can be written by others \(mode 777\).*nothing was sent to it\n$/);
      expect(connections).toBe(0);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('tokend setup cli points the tokend on PATH at build/tokend, --undo back at bin/tokend; a tokend on PATH not of this install is left alone', async () => {
    const bin = path.join(h.home, 'pbin');
    fs.mkdirSync(bin);
    const link = path.join(bin, 'tokend');
    fs.symlinkSync(SCRIPT, link);
    const env = { ...h.env, PATH: `${bin}${path.delimiter}${process.env.PATH}` };
    const tokend = (args: string[]) => run('tokend', args, { env });

    const dry = await tokend(['setup', 'cli', '--dry-run']);
    expect([dry.code, dry.stdout]).toEqual([0, `ln -sf ${NATIVE} ${link}\n`]);
    expect(fs.readlinkSync(link)).toBe(SCRIPT);

    const set = await tokend(['setup', 'cli', '--json']);
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout)).toEqual({ link, target: NATIVE, changed: true, dry_run: false });
    expect(fs.readlinkSync(link)).toBe(NATIVE);
    const token = await tokend(['token', 'work']);
    expect([token.code, token.stdout]).toEqual([0, (await d.cli(['token', 'work'])).stdout]);
    expect((await tokend(['version'])).code).toBe(0);
    expect(JSON.parse((await tokend(['setup', 'cli', '--json'])).stdout).changed).toBe(false);

    const undo = await tokend(['setup', 'cli', '--undo']);
    expect([undo.code, undo.stdout]).toEqual([0, `${link} -> ${SCRIPT}\n`]);
    expect(fs.readlinkSync(link)).toBe(SCRIPT);

    // Another program named tokend first on PATH: not ours to change.
    fs.rmSync(link);
    fs.writeFileSync(link, '#!/bin/sh\necho other\n', { mode: 0o755 });
    const other = await runCli(['setup', 'cli'], { env });
    expect(other.code).toBe(1);
    expect(other.stderr).toContain(`the first tokend on PATH, ${link}, is not a link to this install`);
    expect(fs.readFileSync(link, 'utf8')).toContain('echo other');
  });
});
