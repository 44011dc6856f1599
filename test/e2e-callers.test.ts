/**
 * The daemon knows who calls it (docs/security.md): real programs take a token over the
 * real socket, and each appears in `GET /v1/audit` with its executable, script and parents as
 * the kernel and /proc name them; a process of another uid is cut before it is read; the
 * daemon is non-dumpable; without the caller addon it runs as before and says so.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { addConfAccount, importConfGrant, ROOT, startTestDaemon, tempHome, type DaemonProcess, TOKEND_BIN } from './support/daemon.js';
import { tapEvents, waitFor } from './support/fake-as.js';
import { runProcess, useDaemon, useIdp } from './support/fixtures.js';

const NOBODY = 65534;
const NOBODY_ARGS = ['--reuid', String(NOBODY), '--regid', String(NOBODY), '--clear-groups'];
const asRoot = process.getuid?.() === 0;
const realpath = (cmd: string) => fs.realpathSync(execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim());
const addonBuilt = fs.existsSync(path.join(ROOT, 'build', 'tokend-peer.node'));

/** The newest token row of `account` whose caller's exe or script is `program`. */
async function tokenRowOf(d: DaemonProcess, account: string, program: string): Promise<any> {
  const { json } = await d.request('GET', `/v1/audit?account=${account}&action=token&limit=100`);
  return json.entries.find((e: any) => e.caller.exe === program || e.caller.script === program);
}

describe.skipIf(!addonBuilt)('callers as the daemon sees them', () => {
  const idp = useIdp();
  const { d, t } = useDaemon({ account: { idp, args: ['--host', 'git.example.test'], grant: true } });

  it('names the CLI, curl, a python3 one-liner and git through its helper, each with its parents', async () => {
    const sh = realpath('sh');
    // `tokend token work` from a shell: bin/tokend (sh) runs build/tokend-fast.
    const cli = await runProcess('sh', ['-c', `'${TOKEND_BIN}' token work; true`], { env: t.env });
    expect(cli.stdout).toMatch(/\S/);
    const curl = await runProcess(
      'curl',
      ['-sS', '--unix-socket', d.socket, '-H', 'content-type: application/json', '-d', '{"account":"work"}', 'http://tokend/v1/token'],
      { env: t.env },
    );
    expect(JSON.parse(curl.stdout).access_token).toBeTruthy();
    const py = `import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); b=b'{"account":"work"}'; s.sendall(b'POST /v1/token HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\nConnection: close\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(b) + b); print(s.recv(65536).split(b' ')[1].decode())`;
    const python = await runProcess('python3', ['-c', py, d.socket], { env: t.env });
    expect(python.stdout.trim(), python.stderr).toBe('200');
    const git = await runProcess(
      'git',
      ['-c', 'credential.helper=', '-c', `credential.helper=${path.join(ROOT, 'bin', 'git-credential-tokend')}`, 'credential', 'fill'],
      { env: t.env, stdin: 'protocol=https\nhost=git.example.test\n\n' },
    );
    expect(git.stdout, git.stderr).toContain('password=');

    const fast = await tokenRowOf(d, 'work', path.join(ROOT, 'build', 'tokend-fast'));
    expect(fast.caller.parents[0]).toBe(sh); // bin/tokend's sh part
    expect(fast.caller.pid).toBeGreaterThan(0);
    const curlRow = await tokenRowOf(d, 'work', realpath('curl'));
    expect(curlRow.caller).toMatchObject({ user_agent: expect.stringMatching(/^curl\//) });
    expect(curlRow.caller.script).toBeUndefined();
    // python3 -c: the interpreter, no script (the code is inline).
    // (python3 may be a shim that execs the real one: ask it which it is.)
    const pythonExe = execFileSync('python3', ['-c', 'import os,sys; print(os.path.realpath(sys.executable))'], {
      encoding: 'utf8',
    }).trim();
    const pyRow = await tokenRowOf(d, 'work', pythonExe);
    expect(pyRow.caller.script).toBeUndefined();
    expect(pyRow.caller.parents.length).toBeGreaterThan(0);
    // git → its helper: the sh shim (bin/git-credential-tokend) runs tokend-fast or node; git is a parent either way.
    const { json } = await d.request('GET', '/v1/audit?account=work&action=token&limit=100');
    const gitRow = json.entries.find((e: any) => (e.caller.parents ?? []).includes(realpath('git')));
    expect(gitRow, JSON.stringify(json.entries.map((e: any) => e.caller))).toBeDefined();

    // `tokend audit work` names each program by its chain.
    const table = await d.cli(['audit', 'work', '--action', 'token']);
    expect(table.stdout).toMatch(/^TIME +ACCOUNT +ACTION +OUTCOME +PROGRAM +USER-AGENT +DETAIL$/m);
    expect(table.stdout).toMatch(/tokend-fast ← (sh|dash|bash) /);
    expect(table.stdout).toMatch(/ ← git[ ←]/);
  });

  it("writes a program's first token read of the minute at once: a daemon killed right after the answer still has the row", async () => {
    // Its own daemon: this test kills it.
    const own = await startTestDaemon();
    try {
      await addConfAccount(own.d, idp.issuer, 'work');
      await importConfGrant(own.d, idp, 'work');
      const marker = `probe-${process.pid}`;
      const r = await runProcess(
        'curl',
        ['-sS', '--unix-socket', own.d.socket, '-A', marker, '-d', '{"account":"work"}', 'http://tokend/v1/token'],
        { env: own.env },
      );
      expect(JSON.parse(r.stdout).access_token).toBeTruthy();
      // No GET /v1/audit (it flushes first) and no clean stop (it flushes too): SIGKILL, then read the file.
      await own.d.stop('SIGKILL');
      const Database = (await import('better-sqlite3')).default;
      const db = new Database(path.join(own.home, 'data', 'tokend.db'), { readonly: true });
      const row = db.prepare('SELECT detail FROM audit WHERE client = ?').get(marker) as { detail: string } | undefined;
      db.close();
      expect(row, 'the token read was not written before the daemon was killed').toBeDefined();
      expect(JSON.parse(row!.detail).caller.exe).toBe(realpath('curl'));
    } finally {
      await own.cleanup();
    }
  });

  it('events and rows say who added, changed and removed an account', async () => {
    const tap = await tapEvents(d.socket);
    try {
      const r = await d.cli(['add', 'other', '--issuer', idp.issuer, '--client-id', 'pub', '--scope', 'openid']);
      expect(r.code, r.stderr).toBe(0);
      expect((await d.cli(['remove', 'other'])).code).toBe(0);
      const byCli = {
        user_agent: expect.stringMatching(/^tokend-cli/),
        exe: process.execPath,
        script: expect.stringMatching(/bin\/tokend$/),
      };
      await waitFor(() => tap.events.find((e) => e.type === 'account.removed'), 'account.removed');
      const added = tap.events.find((e) => e.type === 'account.added' && e.account === 'other');
      expect(added?.caller).toMatchObject(byCli);
      // The CLI ran under this test's process: its parents name it.
      expect((added!.caller as { parents: string[] }).parents).toContain(process.execPath);
      expect(tap.events.find((e) => e.type === 'account.removed')?.caller).toMatchObject(byCli);
      const { json } = await d.request('GET', '/v1/audit?account=other');
      for (const e of json.entries) expect(e.caller).toMatchObject(byCli);
      // A login started over the socket: login.pending names this test's process.
      const login = await d.request('POST', '/v1/accounts/work/login', { flow: 'device' }, { 'user-agent': 'starter/1' });
      expect(login.status, login.text).toBe(202);
      const pending = await waitFor(() => tap.events.find((e) => e.type === 'login.pending'), 'login.pending');
      expect(pending.caller).toMatchObject({ user_agent: 'starter/1', pid: process.pid, exe: process.execPath });
      await d.request('POST', `/v1/logins/${login.json.id}/cancel`);
    } finally {
      tap.close();
    }
  });
});

describe.skipIf(!addonBuilt || !asRoot)('another uid', () => {
  // setpriv runs a program as nobody; the daemon runs as root (this test's uid).
  const asNobody = (args: string[]) => runProcess('setpriv', [...NOBODY_ARGS, ...args], { env: process.env });

  /** A daemon whose socket (and the folders to it) another user may open: mode 0666 under 0711 folders. */
  async function openDaemon(env: NodeJS.ProcessEnv = {}) {
    const t = await startTestDaemon(undefined, env);
    for (let dir = path.dirname(t.d.socket); dir !== path.dirname(t.home); dir = path.dirname(dir)) fs.chmodSync(dir, 0o711);
    fs.chmodSync(t.d.socket, 0o666);
    return t;
  }
  const health = (socket: string) => asNobody(['curl', '-sS', '--unix-socket', socket, 'http://tokend/v1/health']);

  it('is refused before anything is read, whatever the socket file allows', async () => {
    const t = await openDaemon();
    try {
      const r = await health(t.d.socket);
      expect(r.stdout).toBe('');
      expect(r.code).not.toBe(0);
      // The daemon's log line may still be in the pipe when curl has given up (a loaded machine).
      const line = await waitFor(
        () => t.d.logs.split('\n').find((l) => l.includes('refused a connection from another user')),
        'the refusal in the log',
      );
      expect(line).toContain(`"uid":${NOBODY}`);
      // The owner is served as ever.
      expect((await t.d.request('GET', '/v1/health')).status).toBe(200);
    } finally {
      await t.cleanup();
    }
  });

  it('(control) without the addon the same connection is served: the file mode was all that stood in the way', async () => {
    const t = await openDaemon({ TOKEND_TEST_NO_PEER_ADDON: '1' });
    try {
      expect(JSON.parse((await health(t.d.socket)).stdout).status).toBe('ok');
    } finally {
      await t.cleanup();
    }
  });
});

/**
 * The daemon below runs as nobody from this checkout: a checkout under a folder only root can
 * enter (`mktemp -d` makes one 0700) cannot be run by nobody, and those tests would say nothing.
 */
const nobodyRunsCheckout =
  asRoot && spawnSync('setpriv', [...NOBODY_ARGS, 'test', '-r', path.join(ROOT, 'bin', 'tokend')], { stdio: 'ignore' }).status === 0;

describe.skipIf(!addonBuilt || !nobodyRunsCheckout)('a non-dumpable daemon', () => {
  /** A daemon running as nobody, and whether another process of nobody can read its environment. */
  async function environReadableByItsUser(env: NodeJS.ProcessEnv = {}): Promise<boolean> {
    const home = fs.mkdtempSync(path.join(os.tmpdir(), 'tkn-'));
    fs.chownSync(home, NOBODY, NOBODY);
    const h = tempHome();
    h.cleanup();
    // The daemon itself as nobody (setpriv execs node, so the child's pid is the daemon's).
    // This test (root) cannot ask it /v1/health: the daemon refuses another uid. Its socket says it is up.
    const daemon = spawn('setpriv', [...NOBODY_ARGS, process.execPath, TOKEND_BIN, 'daemon'], {
      env: { ...h.env, TOKEND_HOME: home, HOME: home, ...env },
      stdio: 'ignore',
    });
    try {
      const socket = path.join(home, 'run', 'tokend.sock');
      const deadline = Date.now() + 15_000;
      while (!fs.existsSync(socket) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      expect(fs.existsSync(socket)).toBe(true);
      const r = await runProcess('setpriv', [...NOBODY_ARGS, 'cat', `/proc/${daemon.pid}/environ`], { env: process.env });
      return r.code === 0 && r.stdout.includes('TOKEND_HOME=');
    } finally {
      daemon.kill('SIGKILL');
      fs.rmSync(home, { recursive: true, force: true });
    }
  }

  it('keeps its environment (and memory) from other processes of its own user', async () => {
    expect(await environReadableByItsUser()).toBe(false);
  });
  it('(control) without the addon, the same read succeeds', async () => {
    expect(await environReadableByItsUser({ TOKEND_TEST_NO_PEER_ADDON: '1' })).toBe(true);
  });
});

describe('without the caller addon', () => {
  const { d } = useDaemon({ env: { TOKEND_TEST_NO_PEER_ADDON: '1' } });

  it('runs as before, and says what is lost in /v1/health and tokend doctor', async () => {
    const health = await d.request('GET', '/v1/health');
    expect(health.status).toBe(200);
    expect(health.json.warnings.join('\n')).toMatch(/^callers are not verified: .*TOKEND_TEST_NO_PEER_ADDON=1/m);
    const doctor = await d.cli(['doctor', '--json']);
    const checks = JSON.parse(doctor.stdout).checks as Array<{ id: string; status: string; message: string }>;
    // A warning, not a failure: the daemon works, only blind to its callers.
    expect(checks.find((c) => c.id === 'caller-addon')).toMatchObject({
      status: 'warn',
      message: expect.stringContaining('callers are not verified'),
    });
    expect(checks.filter((c) => c.status === 'fail')).toEqual([]);
  });
});
