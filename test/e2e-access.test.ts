/**
 * Each account says who may take its token (docs/security.md, access): real programs over the
 * real socket against a real daemon. An allowed executable gets its token; curl, a python3
 * one-liner and a node one-liner are refused with caller_not_allowed, naming themselves and
 * the command that would allow them; a script rule tells two scripts of one node apart, and
 * one process apart from what it execs under the same pid; git's
 * helper passes through `tokend setup git`'s ancestor rule; a tty rule lets a pty through;
 * an app creates its own account with `owner: "self"`; listener app keys; and a daemon
 * without the caller addon refuses both to start with such an account and to write one.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT, startTestDaemon, TOKEND_BIN, tempHome, writeSettings } from './support/daemon.js';
import { tapEvents, waitFor } from './support/fake-as.js';
import { runProcess, useDaemon, useIdp } from './support/fixtures.js';

const realpath = (cmd: string) => fs.realpathSync(execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim());
const addonBuilt = fs.existsSync(path.join(ROOT, 'build', 'tokend-peer.node'));
const NODE = fs.realpathSync(process.execPath);
const FAST = path.join(ROOT, 'build', 'tokend-fast');
const hasScript = (() => {
  try {
    execFileSync('sh', ['-c', 'command -v script'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** A folder of scripts for this file's programs, removed at the end. */
const scripts = fs.mkdtempSync(path.join(os.tmpdir(), 'tkn-access-'));
afterAll(() => fs.rmSync(scripts, { recursive: true, force: true }));

/** A node script that asks for `account`'s token over the socket (raw node:http), printing the status and the body. */
function tokenScript(name: string): string {
  const file = path.join(scripts, name);
  fs.writeFileSync(
    file,
    `const http = require('node:http');
const [socketPath, account] = process.argv.slice(2);
const req = http.request({ socketPath, path: '/v1/token', method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
  let b = ''; res.on('data', (c) => (b += c)); res.on('end', () => console.log(res.statusCode + ' ' + b));
});
req.end(JSON.stringify({ account }));
`,
  );
  return file;
}

/** The status and error of a `curl` token request. */
async function curlToken(socket: string, env: NodeJS.ProcessEnv, account = 'work') {
  const r = await runProcess(
    'curl',
    [
      '-sS',
      '--unix-socket',
      socket,
      '-w',
      '\\n%{http_code}',
      '-H',
      'content-type: application/json',
      '-d',
      `{"account":"${account}"}`,
      'http://tokend/v1/token',
    ],
    { env },
  );
  const [body, status] = [r.stdout.slice(0, r.stdout.lastIndexOf('\n')), r.stdout.slice(r.stdout.lastIndexOf('\n') + 1)];
  return { status: Number(status), body: JSON.parse(body) };
}

describe.skipIf(!addonBuilt)('access: callers', () => {
  const idp = useIdp();
  const { d, t } = useDaemon({ account: { idp, args: ['--host', 'git.example.test'], grant: true } });

  it('serves an allowed executable and refuses curl, python3 -c and node -e with caller_not_allowed, audited and evented', async () => {
    // The CLI's `tokend token` runs build/tokend-fast (bin/tokend's sh part execs it).
    const set = await d.cli(['access', 'work', 'callers', '--exe', FAST]);
    expect(set.code, set.stderr).toBe(0);
    expect(set.stdout).toContain(`--exe ${FAST}`);
    const tap = await tapEvents(d.socket);
    try {
      const cli = await runProcess(TOKEND_BIN, ['token', 'work'], { env: t.env });
      expect(cli.code, cli.stderr).toBe(0);
      expect(cli.stdout).toMatch(/\S/);

      const curl = await curlToken(d.socket, t.env);
      expect(curl.status).toBe(403);
      expect(curl.body.error.code).toBe('caller_not_allowed');
      expect(curl.body.error.message).toContain(`${realpath('curl')} (pid `);
      expect(curl.body.error.message).toContain(`tokend access work callers --add --exe ${realpath('curl')}`);

      const py = `import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); b=b'{"account":"work"}'; s.sendall(b'POST /v1/token HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\nConnection: close\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(b) + b); print(s.recv(65536).decode())`;
      const python = await runProcess('python3', ['-c', py, d.socket], { env: t.env });
      expect(python.stdout, python.stderr).toMatch(/^HTTP\/1.1 403/);
      expect(python.stdout).toContain('"caller_not_allowed"');

      const nodeE = `require('node:http').request({socketPath: process.argv[1], path: '/v1/token', method: 'POST'}, (r) => { let b=''; r.on('data', (c) => b += c); r.on('end', () => console.log(r.statusCode + ' ' + b)); }).end('{"account":"work"}')`;
      const node = await runProcess(process.execPath, ['-e', nodeE, d.socket], { env: t.env });
      expect(node.stdout, node.stderr).toMatch(/^403 /);
      expect(JSON.parse(node.stdout.slice(4)).error.message).toContain(`${NODE} (pid`);
      // node -e has no script: the rule it is offered is its executable.
      expect(node.stdout).toContain(`--add --exe ${NODE}`);

      const denied = await waitFor(() => tap.events.find((e) => e.type === 'access.denied'), 'access.denied');
      expect(denied).toMatchObject({ account: 'work', mode: 'callers', caller: { exe: realpath('curl') } });
      const { json } = await d.request('GET', '/v1/audit?account=work&action=denied&limit=50');
      const programs = json.entries.map((e: any) => e.caller.exe);
      expect(programs).toEqual(expect.arrayContaining([realpath('curl'), NODE]));
    } finally {
      tap.close();
    }
    // Managing it stays open to the user's CLI: status shows the access, and `access open` opens it.
    const status = await d.cli(['status', 'work']);
    expect(status.stdout).toContain(`access:     callers: --exe ${FAST}`);
    expect((await d.cli(['access', 'work', 'open'])).code).toBe(0);
    expect((await curlToken(d.socket, t.env)).status).toBe(200);
  });

  it('a script rule: node running that script gets the token, the same node running another is refused', async () => {
    const ok = tokenScript('allowed.js');
    const other = tokenScript('other.js');
    const set = await d.cli(['access', 'work', 'callers', '--script', ok, '--exe', process.execPath]);
    expect(set.code, set.stderr).toBe(0);
    const allowed = await runProcess(process.execPath, [ok, d.socket, 'work'], { env: t.env });
    expect(allowed.stdout, allowed.stderr).toMatch(/^200 /);
    const refused = await runProcess(process.execPath, [other, d.socket, 'work'], { env: t.env });
    expect(refused.stdout).toMatch(/^403 /);
    const message = JSON.parse(refused.stdout.slice(4)).error.message;
    expect(message).toContain(`running ${other}`);
    expect(message).toContain(`tokend access work callers --add --script ${other} --exe ${NODE}`);
    // --add keeps the rule there and adds the one named.
    expect((await d.cli(['access', 'work', '--add', '--script', other, '--exe', NODE])).code).toBe(0);
    expect((await runProcess(process.execPath, [other, d.socket, 'work'], { env: t.env })).stdout).toMatch(/^200 /);
    expect((await runProcess(process.execPath, [ok, d.socket, 'work'], { env: t.env })).stdout).toMatch(/^200 /);
    const shown = JSON.parse((await d.cli(['access', 'work', '--json'])).stdout);
    expect(shown.access.callers).toHaveLength(2);
    await d.cli(['access', 'work', 'open']);
  });

  it('one process, one pid and start time: after an exec into another script, then into curl, it is refused', async () => {
    // Each step asks over a new connection, says its pid and the status, and execs the next:
    // allowed.py (twice: the second connection is the kept read), then other.py, then curl.
    const py = (next: string) => `import os, socket, sys
def ask():
    s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); b = b'{"account":"work"}'
    s.sendall(b'POST /v1/token HTTP/1.1\\r\\nHost: x\\r\\nContent-Type: application/json\\r\\nConnection: close\\r\\nContent-Length: %d\\r\\n\\r\\n' % len(b) + b)
    out = b''
    while True:
        c = s.recv(65536)
        if not c: return out.decode().split(' ')[1]
        out += c
print(os.getpid(), ask(), ask(), flush=True)
${next}
`;
    const allowed = path.join(scripts, 'allowed.py');
    const other = path.join(scripts, 'other.py');
    fs.writeFileSync(allowed, py(`os.execv(sys.executable, [sys.executable, ${JSON.stringify(other)}, sys.argv[1]])`));
    fs.writeFileSync(
      other,
      py(
        `os.execvp('curl', ['curl', '-sS', '-o', '/dev/null', '-w', str(os.getpid()) + ' %{http_code}\\n', '--unix-socket', sys.argv[1], '-H', 'content-type: application/json', '-d', '{"account":"work"}', 'http://tokend/v1/token'])`,
      ),
    );
    const r = await d.request('PATCH', '/v1/accounts/work', { access: { mode: 'callers', callers: [{ script: allowed }] } });
    expect(r.status, r.text).toBe(200);
    try {
      const run = await runProcess('python3', [allowed, d.socket], { env: t.env });
      const lines = run.stdout.trim().split('\n');
      expect(lines, run.stderr).toHaveLength(3);
      const pid = lines[0]!.split(' ')[0];
      expect(lines).toEqual([`${pid} 200 200`, `${pid} 403 403`, `${pid} 403`]);
      // The refusal's audit row names the script it execs into (rows of one program in a minute are one row).
      const row = await waitFor(async () => {
        const { json } = await d.request('GET', '/v1/audit?account=work&action=denied&limit=50');
        return json.entries.find((e: any) => e.caller?.script === other);
      }, 'the audit row of other.py');
      expect(String(row.caller.pid)).toBe(pid);
    } finally {
      await d.cli(['access', 'work', 'open']);
    }
  });

  it("git's helper through real git: refused until `tokend setup git` adds git as an ancestor rule", async () => {
    const gitHome = fs.mkdtempSync(path.join(os.tmpdir(), 'tkn-git-'));
    const env = { ...t.env, HOME: gitHome, XDG_CONFIG_HOME: path.join(gitHome, '.config'), GIT_CONFIG_NOSYSTEM: '1' };
    try {
      const r = await d.request('PATCH', '/v1/accounts/work', { access: { mode: 'callers', callers: [{ exe: '/usr/bin/true' }] } });
      expect(r.status, r.text).toBe(200);
      const setup = await runProcess(TOKEND_BIN, ['setup', 'git', '--global'], { env });
      expect(setup.code, setup.stderr).toBe(0);
      expect(setup.stderr).toContain(`account "work" (access callers) now also serves git's helper: added --ancestor ${realpath('git')}`);
      const fill = await runProcess('git', ['credential', 'fill'], { env, stdin: 'protocol=https\nhost=git.example.test\n\n' });
      expect(fill.stdout, fill.stderr).toContain('password=');
      // Run again: nothing more to add.
      const again = await runProcess(TOKEND_BIN, ['setup', 'git', '--global'], { env });
      expect(again.stderr).not.toContain('now also serves');
      // Without the rule, the same git gets nothing from tokend.
      await d.request('PATCH', '/v1/accounts/work', { access: { mode: 'callers', callers: [{ exe: '/usr/bin/true' }] } });
      const refused = await runProcess('git', ['credential', 'fill'], {
        env: { ...env, GIT_TERMINAL_PROMPT: '0' },
        stdin: 'protocol=https\nhost=git.example.test\n\n',
      });
      expect(refused.stdout).not.toContain('password=');
    } finally {
      await d.cli(['access', 'work', 'open']);
      fs.rmSync(gitHome, { recursive: true, force: true });
    }
  });

  it.skipIf(!hasScript)('a tty rule: the CLI on a pty (script -qc) gets the token, the same CLI without one does not', async () => {
    expect((await d.cli(['access', 'work', 'callers', '--tty'])).code).toBe(0);
    try {
      const onPty = await runProcess('script', ['-qec', `'${TOKEND_BIN}' token work`, '/dev/null'], { env: t.env });
      expect(onPty.code, onPty.stdout + onPty.stderr).toBe(0);
      const piped = await runProcess(TOKEND_BIN, ['token', 'work'], { env: t.env });
      expect(piped.code).toBe(1);
      expect(piped.stderr).toContain('tokend access work callers --add --exe');
    } finally {
      await d.cli(['access', 'work', 'open']);
    }
  });

  it('the routes that answer with a token besides /v1/token refuse too: the coalesced refresh and the DPoP proof oracle', async () => {
    const set = await d.cli(['access', 'work', 'callers', '--exe', '/usr/bin/true']);
    expect(set.code, set.stderr).toBe(0);
    try {
      const curl = (route: string, body: string) =>
        runProcess(
          'curl',
          ['-sS', '--unix-socket', d.socket, '-H', 'content-type: application/json', '-d', body, `http://tokend${route}`],
          {
            env: t.env,
          },
        );
      // With if_token the answer carries the account's token: the access decides.
      const coalesced = JSON.parse((await curl('/v1/accounts/work/refresh', '{"if_token":"seen-refused"}')).stdout);
      expect(coalesced.error?.code).toBe('caller_not_allowed');
      expect(coalesced.access_token).toBeUndefined();
      // Without it, a refresh is account management (no token in the answer), open to the user's programs.
      const plain = JSON.parse((await curl('/v1/accounts/work/refresh', '{}')).stdout);
      expect(plain).toMatchObject({ account: 'work' });
      expect(plain.access_token).toBeUndefined();
      const proof = JSON.parse((await curl('/v1/dpop/proof', '{"account":"work","htm":"GET","htu":"https://api.example.test/x"}')).stdout);
      expect(proof.error?.code).toBe('caller_not_allowed');
    } finally {
      await d.cli(['access', 'work', 'open']);
    }
  });

  it('the API proxy refuses the caller too; ask keeps the rules and its timeout, callers drops the timeout', async () => {
    const set = await d.cli(['access', 'work', 'ask', '--exe', '/usr/bin/true', '--ask-timeout', '5', '--json']);
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout).access).toEqual({ mode: 'ask', callers: [{ exe: fs.realpathSync('/usr/bin/true') }], ask_timeout_s: 5 });
    try {
      // Nobody approves: ask refuses when its timeout (5 s) passes, naming both ways to allow it.
      // The proxy checks before anything else (this account has no api_base).
      const r = await runProcess('curl', ['-sS', '-i', '--unix-socket', d.socket, 'http://tokend/v1/proxy/work/anything'], { env: t.env });
      expect(r.stdout).toMatch(/^HTTP\/1.1 403/);
      expect(r.stdout).toMatch(/x-tokend-error: caller_not_allowed/i);
      expect(r.stdout).toContain('timed out waiting for approval');
      expect(r.stdout).toMatch(/tokend approvals allow \S+/);
      expect(r.stdout).toContain('tokend access work ask --add --exe');
      const callers = JSON.parse((await d.cli(['access', 'work', 'callers', '--json'])).stdout).access;
      expect(callers).toEqual({ mode: 'callers', callers: [{ exe: fs.realpathSync('/usr/bin/true') }] });
    } finally {
      await d.cli(['access', 'work', 'open']);
    }
  });

  it('refuses a bad access with a 400 naming the field, and an unknown mode at the CLI', async () => {
    const bad = await d.request('PATCH', '/v1/accounts/work', { access: { mode: 'callers', callers: [{ exe: 'curl' }] } });
    expect(bad.status).toBe(400);
    expect(bad.json.error.message).toMatch(/access.*absolute path/);
    const empty = await d.request('PATCH', '/v1/accounts/work', { access: { mode: 'callers', callers: [] } });
    expect(empty.json.error.message).toMatch(/at least one rule/);
    const cli = await d.cli(['access', 'work', 'closed']);
    expect(cli.code).toBe(2);
    expect((await d.cli(['access', 'work', 'callers', '--exe', 'no-such-program-here'])).code).toBe(2);
  });
});

describe.skipIf(!addonBuilt)('access: owner self', () => {
  const idp = useIdp();
  const { d, t } = useDaemon();

  it('an app that creates its account with owner "self" (the SDK) is the only program that gets its token', async () => {
    const app = path.join(scripts, 'owner-app.mjs');
    fs.writeFileSync(
      app,
      `import { Tokend } from ${JSON.stringify(path.join(ROOT, 'dist', 'sdk', 'index.js'))};
const [socket, action, issuer] = process.argv.slice(2);
const t = new Tokend({ socket });
try {
  if (action === 'add') {
    const v = await t.addAccount('mine', { issuer, client_id: 'conf', client_secret: 'conf-secret', scopes: ['openid', 'offline_access', 'api'], owner: 'self' });
    console.log(JSON.stringify(v.access));
  } else {
    console.log('token ' + ((await t.token('mine')).access_token ? 'ok' : 'none'));
  }
} catch (e) { console.log('error ' + e.code + ' ' + e.message); }
`,
    );
    const added = await runProcess(process.execPath, [app, d.socket, 'add', idp.issuer], { env: t.env });
    expect(JSON.parse(added.stdout), added.stderr).toEqual({ mode: 'callers', callers: [{ script: app, exe: NODE }] });
    // The user's CLI still manages it: a grant imported.
    const issued = await idp.issueRefreshToken('conf');
    expect((await d.cli(['import', 'mine', '--refresh-token-stdin'], issued.refresh_token)).code).toBe(0);
    expect((await runProcess(process.execPath, [app, d.socket, 'token'], { env: t.env })).stdout.trim()).toBe('token ok');
    // Another process is refused; the CLI too.
    expect((await curlToken(d.socket, t.env, 'mine')).body.error.code).toBe('caller_not_allowed');
    const cli = await d.cli(['token', 'mine']);
    expect(cli.code).toBe(1);
    expect(cli.stderr).toContain('does not allow');
    // Adding it again, as an app does at each start, keeps it its own.
    expect(JSON.parse((await runProcess(process.execPath, [app, d.socket, 'add', idp.issuer], { env: t.env })).stdout)).toEqual({
      mode: 'callers',
      callers: [{ script: app, exe: NODE }],
    });
    // Another program cannot claim it.
    const other = path.join(scripts, 'claimer.mjs');
    fs.copyFileSync(app, other);
    const claimed = await runProcess(process.execPath, [other, d.socket, 'add', idp.issuer], { env: t.env });
    expect(claimed.stdout).toMatch(/^error caller_not_allowed .*cannot claim it/);
    // A plain `tokend add` over it keeps the access (re-adding never opens it).
    const readd = await d.cli(
      ['add', 'mine', '--issuer', idp.issuer, '--client-id', 'conf', '--client-secret-stdin', '--scope', 'openid offline_access api'],
      'conf-secret\n',
    );
    expect(readd.code, readd.stderr).toBe(0);
    expect((await curlToken(d.socket, t.env, 'mine')).status).toBe(403);
    // Removing it stays open to the CLI.
    expect((await d.cli(['remove', 'mine'])).code).toBe(0);
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

describe.skipIf(!addonBuilt)('access: listener app keys', () => {
  const idp = useIdp();
  const fx = useDaemon({ lifetime: 'manual', account: { idp, grant: true } });

  it('a {key} rule serves that app; another app, the daemon key and the socket are refused; an app key writes no access and manages only its own', async () => {
    const port = await freePort();
    const { d, env } = await fx.start({ settings: { listen: `127.0.0.1:${port}` } });
    const keyOf = async (app?: string) => (await d.cli(['listen-key', ...(app ? ['--app', app] : [])])).stdout.trim();
    const ci = await keyOf('ci-runner');
    const other = await keyOf('other-app');
    const daemonKey = await keyOf();
    const tcp = async (key: string, method: string, p: string, body?: unknown) => {
      const r = await fetch(`http://127.0.0.1:${port}${p}`, {
        method,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: r.status, json: (await r.json()) as any };
    };
    expect((await d.cli(['access', 'work', 'callers', '--key', 'ci-runner'])).code).toBe(0);
    expect((await tcp(ci, 'POST', '/v1/token', { account: 'work' })).status).toBe(200);
    const refused = await tcp(other, 'POST', '/v1/token', { account: 'work' });
    expect(refused.status).toBe(403);
    expect(refused.json.error.code).toBe('caller_not_allowed');
    expect(refused.json.error.message).toContain('tokend access work callers --add --key other-app');
    expect((await tcp(daemonKey, 'POST', '/v1/token', { account: 'work' })).json.error.code).toBe('caller_not_allowed');
    expect((await curlToken(d.socket, env)).status).toBe(403);

    // An app key never writes access, even on its own account, and manages no other app's.
    const opened = await tcp(ci, 'PATCH', '/v1/accounts/work', { access: { mode: 'open' } });
    expect(opened.status).toBe(403);
    expect(opened.json.error.message).toContain("cannot change an account's access");
    expect((await tcp(ci, 'POST', '/v1/accounts/work/refresh')).status).toBe(200); // its own
    const removed = await tcp(other, 'DELETE', '/v1/accounts/work');
    expect(removed.status).toBe(403);
    expect(removed.json.error.message).toContain('may manage only the accounts it owns');
    // It creates its own with owner "self": the rule is its key; and removes it.
    const made = await tcp(other, 'PUT', '/v1/accounts/mine', {
      issuer: idp.issuer,
      client_id: 'conf',
      client_secret: 'conf-secret',
      scopes: ['openid', 'offline_access', 'api'],
      owner: 'self',
    });
    expect(made.status, JSON.stringify(made.json)).toBe(201);
    expect(made.json.access).toEqual({ mode: 'callers', callers: [{ key: 'other-app' }] });
    expect((await tcp(other, 'DELETE', '/v1/accounts/mine')).status).toBe(200);
  });
});

describe('access without the caller addon', () => {
  const idp = useIdp();

  it('the daemon refuses to start with an account that is not open, naming it and the fix', async () => {
    const h = tempHome();
    try {
      writeSettings(
        h.home,
        {},
        {
          gh: { issuer: idp.issuer, client_id: 'conf', access: { mode: 'callers', callers: [{ exe: '/usr/bin/git' }] } },
          open1: { issuer: idp.issuer, client_id: 'conf' },
        },
      );
      const r = await runProcess(process.execPath, [TOKEND_BIN, 'daemon'], { env: { ...h.env, TOKEND_TEST_NO_PEER_ADDON: '1' } });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('cannot start without the caller addon');
      expect(r.stderr).toContain('account gh allow only some callers');
      expect(r.stderr).not.toContain('open1');
      expect(r.stderr).toContain('removing their \\"access\\"');
    } finally {
      h.cleanup();
    }
  });

  it('a daemon without it refuses to write rules (never a silent downgrade), and writes open', async () => {
    const t = await startTestDaemon(undefined, { TOKEND_TEST_NO_PEER_ADDON: '1' });
    try {
      const add = await t.d.cli(['add', 'work', '--issuer', idp.issuer, '--client-id', 'pub', '--scope', 'openid', '--no-check']);
      expect(add.code, add.stderr).toBe(0);
      const r = await t.d.cli(['access', 'work', 'callers', '--exe', '/usr/bin/git']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('without its caller addon');
      const api = await t.d.request('PUT', '/v1/accounts/other?check=false', { issuer: idp.issuer, client_id: 'pub', owner: 'self' });
      expect(api.status).toBe(400);
      expect((await t.d.cli(['access', 'work', 'open'])).code).toBe(0);
      expect(JSON.parse((await t.d.cli(['access', 'work', '--json'])).stdout).access.mode).toBe('open');
    } finally {
      await t.cleanup();
    }
  });
});
