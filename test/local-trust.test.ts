/**
 * Another user on the same machine: a folder they can write above tokend's, a socket of
 * theirs where the CLI, the SDK or a credential helper looks for the daemon. The daemon
 * refuses such folders at start (StrictModes); every client refuses such a socket before it
 * sends a byte. The tests run as root, who owns everything it makes, so "another user" is
 * uid 65534 (nobody) through chown, or a process started as that uid.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { Tokend } from '../src/sdk/index.js';
import { DaemonProcess, ROOT, TOKEND_BIN, runCli, tokendEnv } from './support/daemon.js';

const OTHER = 65534; // nobody
const asRoot = process.getuid?.() === 0 && process.platform === 'linux';
const FAST = path.join(ROOT, 'build', 'tokend-fast');

const temps: string[] = [];
/** A folder under /tmp that uid 65534 may pass through (0755, root's: StrictModes accepts it). */
function base(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkt-'));
  fs.chmodSync(dir, 0o755);
  temps.push(dir);
  return dir;
}
afterAll(() => {
  for (const d of temps) fs.rmSync(d, { recursive: true, force: true });
});

/** A plain server on a Unix socket that answers nothing and keeps every byte it is sent. */
async function recorder(socket: string): Promise<{ received: () => string; connections: () => number; close: () => void }> {
  let received = '';
  let connections = 0;
  const server = net.createServer((c) => {
    connections++;
    c.on('data', (d) => (received += d.toString('latin1')));
    c.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(socket, resolve));
  return { received: () => received, connections: () => connections, close: () => server.close() };
}

/** `sh FILE ARGS` / a program with stdin, its output and status. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, stdin = ''): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { env, input: stdin, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!asRoot)('the daemon refuses folders another user could write (StrictModes)', () => {
  it('refuses to start under a 0777 folder without the sticky bit, naming it, with a fix that never closes a shared folder', async () => {
    const shared = path.join(base(), 'shared');
    fs.mkdirSync(shared);
    fs.chmodSync(shared, 0o777);
    const home = path.join(shared, 'home');
    const d = new DaemonProcess(home, tokendEnv(home));
    await expect(d.start()).rejects.toThrow(/exited with 1/);
    expect(d.logs).toContain(`folder ${shared} (on the way to ${home}`);
    expect(d.logs).toContain('mode 777, not sticky');
    expect(d.logs).toContain('export TOKEND_HOME=');
    expect(d.logs).not.toMatch(/chmod [0-7]*7[0-7]{2}|chmod 700/);
    // Checked before anything is made there: no home for the other user to take over later.
    expect(fs.existsSync(home)).toBe(false);

    const doctor = await runCli(['doctor', '--json'], { env: tokendEnv(home) });
    const report = JSON.parse(doctor.stdout);
    expect(report.checks.find((c: { id: string }) => c.id === `permissions:${shared}`)).toMatchObject({
      status: 'fail',
      message: expect.stringContaining('not sticky'),
      fix: expect.stringContaining('TOKEND_HOME'),
    });
  });

  it('a client does not autostart a daemon there: it says why and makes nothing', async () => {
    const shared = path.join(base(), 'shared');
    fs.mkdirSync(shared);
    fs.chmodSync(shared, 0o777);
    const home = path.join(shared, 'home');
    const env = tokendEnv(home);
    delete env.TOKEND_NO_AUTOSTART;
    const r = await runCli(['list'], { env });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`tokend cannot start: folder ${shared} (on the way to`);
    expect(r.stderr).toContain('Fix: keep tokend');
    expect(fs.readdirSync(shared)).toEqual([]);
  });

  it('refuses a folder above its own that belongs to another user', async () => {
    const theirs = path.join(base(), 'theirs');
    fs.mkdirSync(theirs, { mode: 0o755 });
    fs.chownSync(theirs, OTHER, OTHER);
    const home = path.join(theirs, 'home');
    fs.mkdirSync(home, { mode: 0o700 }); // made for us by them: still theirs to swap
    const d = new DaemonProcess(home, tokendEnv(home));
    await expect(d.start()).rejects.toThrow(/exited with 1/);
    expect(d.logs).toContain(`folder ${theirs} (on the way to`);
    expect(d.logs).toContain(`belongs to uid ${OTHER}`);
  });

  it('starts under a sticky world-writable folder, as under /tmp', async () => {
    const sticky = path.join(base(), 'sticky');
    fs.mkdirSync(sticky);
    fs.chmodSync(sticky, 0o1777);
    const home = path.join(sticky, 'home');
    const d = new DaemonProcess(home, tokendEnv(home));
    await d.start();
    expect((await d.request('GET', '/v1/health')).json.pid).toBe(d.pid);
    await d.stop('SIGTERM');
  });
});

/**
 * Where another user may be listening. Each returns the victim's TOKEND_HOME and the
 * socket a client there uses, with a recorder listening on it.
 */
const PLANTED: Record<string, (home: string) => void> = {
  "the socket's folder belongs to another user": (home) => {
    fs.chownSync(path.join(home, 'run'), OTHER, OTHER);
    fs.chownSync(path.join(home, 'run', 'tokend.sock'), OTHER, OTHER);
  },
  "the socket's folder is ours but writable by others": (home) => fs.chmodSync(path.join(home, 'run'), 0o777),
  'the socket belongs to another user': (home) => fs.chownSync(path.join(home, 'run', 'tokend.sock'), OTHER, OTHER),
};

describe.skipIf(!asRoot).each(Object.keys(PLANTED))('a socket planted by another user: %s', (how) => {
  let home: string;
  let rec: Awaited<ReturnType<typeof recorder>>;
  let env: NodeJS.ProcessEnv;
  const setUp = async () => {
    home = path.join(base(), 'h');
    fs.mkdirSync(path.join(home, 'run'), { recursive: true, mode: 0o700 });
    rec = await recorder(path.join(home, 'run', 'tokend.sock'));
    PLANTED[how]!(home);
    env = tokendEnv(home);
    delete env.TOKEND_NO_AUTOSTART; // a refusal must not start a daemon elsewhere either
  };
  afterEach(() => rec?.close());

  it('the CLI sends it neither a client secret nor a refresh token, and says why', async () => {
    await setUp();
    const add = await runCli(['add', 'work', '--issuer', 'https://idp.example', '--client-id', 'c', '--client-secret-stdin'], {
      env,
      stdin: 'the-client-secret\n',
    });
    expect(add.code).toBe(1);
    expect(add.stderr).toMatch(/another user (is|may be) listening there; nothing was sent to it/);
    expect(add.stderr).toContain(path.join(home, 'run'));
    const imp = await runCli(['import', 'work', '--refresh-token-stdin'], { env, stdin: 'the-refresh-token\n' });
    expect(imp.code).toBe(1);
    expect(imp.stderr).toMatch(/nothing was sent to it/);
    expect({ received: rec.received(), connections: rec.connections() }).toEqual({ received: '', connections: 0 });
    expect(fs.existsSync(path.join(home, 'data'))).toBe(false); // no daemon was started instead
  });

  it('the SDK sends it nothing: a TokendError says why', async () => {
    await setUp();
    const tokend = new Tokend({ env });
    const err = await tokend
      .addAccount('work', { issuer: 'https://idp.example', client_id: 'c', client_secret: 'the-client-secret' } as never)
      .then(
        () => undefined,
        (e: unknown) => e as Error & { code?: string },
      );
    expect(err).toMatchObject({ code: 'daemon_unreachable' });
    expect(err!.message).toMatch(/another user (is|may be) listening there; nothing was sent to it/);
    expect(rec.connections()).toBe(0);
  });

  it.skipIf(!fs.existsSync(FAST))('the C client and the shims send it nothing, and never fall back to another way', async () => {
    await setUp();
    const token = run(TOKEND_BIN, ['token', 'work'], env);
    expect(token.code).toBe(1);
    expect(token.stderr).toMatch(/^tokend: .*nothing was sent to it\n$/);
    const shim = run(path.join(ROOT, 'bin', 'git-credential-tokend'), ['get'], env, 'protocol=https\nhost=github.com\n');
    expect(shim).toMatchObject({ code: 0, stdout: '' });
    expect(shim.stderr).toMatch(/nothing was sent to it\ntokend: refused to talk to that socket/);
    const native = run(path.join(ROOT, 'build', 'git-credential-tokend'), ['get'], env, 'protocol=https\nhost=github.com\n');
    expect(native).toMatchObject({ code: 0, stdout: '' });
    expect(native.stderr).toMatch(/nothing was sent to it\ntokend: refused to talk to that socket/);
    const docker = run(path.join(ROOT, 'build', 'docker-credential-tokend'), ['get'], env, 'registry.example\n');
    expect(docker.code).toBe(1);
    expect(docker.stdout).toMatch(/refused to talk to that socket/);
    expect({ received: rec.received(), connections: rec.connections() }).toEqual({ received: '', connections: 0 });
  });

  it('the shim without the C client (curl, then node) sends it nothing', async () => {
    await setUp();
    // An install without build/tokend-fast: the shim's curl path, then node.
    const copy = path.join(base(), 'pkg');
    fs.mkdirSync(path.join(copy, 'bin'), { recursive: true });
    for (const f of ['git-credential-tokend', 'tokend-sh-lib']) fs.copyFileSync(path.join(ROOT, 'bin', f), path.join(copy, 'bin', f));
    fs.chmodSync(path.join(copy, 'bin', 'git-credential-tokend'), 0o755);
    fs.symlinkSync(path.join(ROOT, 'dist'), path.join(copy, 'dist'));
    fs.symlinkSync(path.join(ROOT, 'package.json'), path.join(copy, 'package.json'));
    const shim = run(path.join(copy, 'bin', 'git-credential-tokend'), ['get'], env, 'protocol=https\nhost=github.com\n');
    expect(shim.stdout).toBe('');
    expect(shim.stderr).toMatch(/nothing was sent to it/);
    expect({ received: rec.received(), connections: rec.connections() }).toEqual({ received: '', connections: 0 });
  });
});

describe.skipIf(!asRoot || !fs.existsSync(FAST))('a daemon of another uid behind a socket file that looks like ours', () => {
  let server: ChildProcess | undefined;
  afterEach(() => server?.kill('SIGKILL'));

  it('the C client asks the kernel (SO_PEERCRED), refuses it and sends nothing', async () => {
    const b = base();
    const theirs = path.join(b, 'theirs');
    fs.mkdirSync(theirs, { mode: 0o700 });
    fs.chownSync(theirs, OTHER, OTHER);
    const bound = path.join(theirs, 's.sock');
    // A plain node server running as uid 65534 that reports every byte it receives.
    const script = `const net=require('net');net.createServer(c=>{process.stdout.write('C\\n');c.on('data',d=>process.stdout.write('D'+d.length+'\\n'));c.on('close',()=>process.stdout.write('E\\n'))}).listen(${JSON.stringify(bound)},()=>process.stdout.write('L\\n'))`;
    server = spawn(process.execPath, ['-e', script], { uid: OTHER, gid: OTHER, cwd: '/', stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    server.stdout!.on('data', (d) => (out += d));
    for (let i = 0; i < 200 && !out.includes('L'); i++) await new Promise((r) => setTimeout(r, 25));
    expect(out).toContain('L');
    // The victim's home, its run folder ours and 0700, the socket file moved in and made ours:
    // every file check passes; only the kernel knows who listens.
    const home = path.join(b, 'h');
    fs.mkdirSync(path.join(home, 'run'), { recursive: true, mode: 0o700 });
    const socket = path.join(home, 'run', 'tokend.sock');
    fs.renameSync(bound, socket);
    fs.chownSync(socket, 0, 0);
    const env = tokendEnv(home);
    const token = run(TOKEND_BIN, ['token', 'work'], env);
    expect(token.code).toBe(1);
    expect(token.stderr).toBe(
      `tokend: the daemon on ${socket} runs as uid ${OTHER}, not as you (uid 0): another user is listening there; nothing was sent to it\n`,
    );
    const native = run(
      path.join(ROOT, 'build', 'git-credential-tokend'),
      ['get'],
      env,
      'protocol=https\nhost=github.com\nusername=the-user\n',
    );
    expect(native).toMatchObject({ code: 0, stdout: '' });
    expect(native.stderr).toContain(`runs as uid ${OTHER}`);
    // Both connected (that is how the kernel can tell) and hung up; what they sent came before.
    for (let i = 0; i < 200 && out.split('\n').filter((l) => l === 'E').length < 2; i++) await new Promise((r) => setTimeout(r, 25));
    expect(out.split('\n').filter((l) => l === 'C' || l === 'E')).toEqual(['C', 'E', 'C', 'E']);
    expect(out.split('\n').filter((l) => l.startsWith('D'))).toEqual([]);
  });
});
