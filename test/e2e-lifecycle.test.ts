/**
 * The daemon's life around the token: started on demand by a client, config reloaded on
 * SIGHUP, a bad config refused with the field named, logout and remove revoking at the IdP.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  DaemonProcess,
  TOKEND_BIN,
  putConfAccount,
  postConfGrant,
  processAlive,
  runCli,
  sleep,
  socketRequest,
  tempHome,
  writeSettings,
} from './support/daemon.js';
import { useDaemon, useIdp } from './support/fixtures.js';

const idp = useIdp({ accessTokenTtl: 60 });

function daemonPid(home: string): number | undefined {
  try {
    return JSON.parse(fs.readFileSync(path.join(home, 'data', 'daemon.pid'), 'utf8')).pid;
  } catch {
    return undefined;
  }
}

describe('daemon lifecycle', () => {
  // A test that needs a daemon starts it; it is stopped and its home removed after the test.
  const { d, t, start } = useDaemon({ lifetime: 'manual' });
  afterEach(() => idp.setFault(null));

  it('is started by the first client when nothing listens, and only once', async () => {
    const h = tempHome();
    const env = { ...h.env, TOKEND_NO_AUTOSTART: undefined };
    try {
      const [a, b] = await Promise.all([runCli(['list', '--json'], { env }), runCli(['list', '--json'], { env })]);
      expect([a.code, b.code, a.stderr, b.stderr]).toEqual([0, 0, '', '']);
      expect(JSON.parse(a.stdout)).toEqual({ accounts: [] });
      const pid = daemonPid(h.home);
      expect(pid).toBeGreaterThan(0);
      const health = await socketRequest(path.join(h.home, 'run', 'tokend.sock'), 'GET', '/v1/health');
      expect(health.json.pid).toBe(pid);
      // Its log went to the data dir, 0600.
      const log = path.join(h.home, 'state', 'tokend.log');
      expect(fs.readFileSync(log, 'utf8')).toContain('tokend started');
      expect(fs.statSync(log).mode & 0o777).toBe(0o600);
      process.kill(pid!, 'SIGTERM');
      // Until the process is gone, not just its pid file: it may still be writing its files.
      for (let i = 0; i < 200 && processAlive(pid!); i++) await sleep(50);
    } finally {
      const pid = daemonPid(h.home);
      if (pid && processAlive(pid)) {
        process.kill(pid, 'SIGKILL');
        for (let i = 0; i < 100 && processAlive(pid); i++) await sleep(50);
      }
      h.cleanup();
    }
  });

  it('says so instead of starting one when TOKEND_NO_AUTOSTART=1', async () => {
    const h = tempHome();
    try {
      const r = await runCli(['list'], { env: h.env });
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('not running');
      expect(r.stderr).toContain('tokend daemon');
    } finally {
      h.cleanup();
    }
  });

  it('reloads config.json on SIGHUP, and keeps the old config when the new one is invalid', async () => {
    await start();
    await putConfAccount(d, idp.issuer, 'work');
    const file = path.join(t.home, 'config', 'config.json');
    const cfg = JSON.parse(fs.readFileSync(file, 'utf8'));
    cfg.accounts.other = { ...cfg.accounts.work, hosts: ['other.example.com'] };
    fs.writeFileSync(file, JSON.stringify(cfg));
    d.child!.kill('SIGHUP');
    await sleep(300);
    expect((await d.request('GET', '/v1/accounts/other')).status).toBe(200);

    fs.writeFileSync(file, JSON.stringify({ ...cfg, accounts: { bad: { client_id: 5 } } }));
    d.child!.kill('SIGHUP');
    await sleep(300);
    expect(d.logs).toContain('config reload failed');
    expect(d.logs).toContain('accounts.bad.client_id');
    expect((await d.request('GET', '/v1/accounts/other')).status).toBe(200); // old config in force
    expect((await d.request('GET', '/v1/health')).status).toBe(200);
  });

  it('refuses to start with an invalid config.json, naming the field', async () => {
    const h = tempHome();
    try {
      fs.mkdirSync(path.join(h.home, 'config'), { recursive: true, mode: 0o700 });
      fs.writeFileSync(
        path.join(h.home, 'config', 'config.json'),
        JSON.stringify({ version: 1, accounts: { work: { client_id: 'x', issuer: 'not a url' } } }),
        { mode: 0o600 },
      );
      const d = new DaemonProcess(h.home, h.env);
      await expect(d.start()).rejects.toThrow(/exited with 1/);
      expect(d.logs).toContain('accounts.work.issuer');
    } finally {
      h.cleanup();
    }
  });

  it('on SIGTERM finishes a refresh a client is waiting for, commits it, then exits 0', async () => {
    await start();
    await putConfAccount(d, idp.issuer, 'work');
    await postConfGrant(d, idp);
    idp.resetStats();
    idp.setFault({ kind: 'delay', ms: 1000, times: 1 });
    const pending = d.request('POST', '/v1/accounts/work/refresh');
    await sleep(300); // the refresh is at the (slow) IdP now
    const exit = d.stop('SIGTERM');
    const res = await pending;
    expect(res.status).toBe(200);
    expect(await exit).toBe(0);
    expect(idp.stats.refreshes).toBe(1);

    await d.start(); // the rotation was committed: the next refresh uses the new token
    expect((await d.cli(['refresh', 'work'])).code).toBe(0);
    expect(idp.stats.replays).toBe(0);
  });

  it('logout revokes the grant at the IdP and keeps the account; remove deletes it', async () => {
    await start();
    await putConfAccount(d, idp.issuer, 'work');
    await postConfGrant(d, idp);
    const token = (await d.cli(['token', 'work'])).stdout.trim();
    expect((await idp.introspect(token)).active).toBe(true);

    const out = await d.cli(['logout', 'work']);
    expect(out.code).toBe(0);
    expect(out.stderr).toContain('revoked');
    expect((await idp.introspect(token)).active).toBe(false); // the whole grant is gone at the IdP
    const status = JSON.parse((await d.cli(['status', 'work', '--json'])).stdout);
    expect(status).toMatchObject({ status: 'no_grant', has_refresh_token: false, has_client_secret: true });
    expect((await d.cli(['token', 'work'])).code).toBe(3);

    expect((await d.cli(['remove', 'work'])).code).toBe(0);
    expect((await d.request('GET', '/v1/accounts/work')).status).toBe(404);
    expect(JSON.parse(fs.readFileSync(path.join(t.home, 'config', 'config.json'), 'utf8')).accounts).toEqual({});
  });
});

describe('logs', () => {
  function spawnWithStderrTo(file: string, env: NodeJS.ProcessEnv) {
    const fd = fs.openSync(file, 'a', 0o600);
    const child = spawn(process.execPath, [TOKEND_BIN, 'daemon'], { env, stdio: ['ignore', 'ignore', fd] });
    fs.closeSync(fd);
    return child;
  }
  async function waitForLine(file: string, text: string): Promise<string> {
    for (let i = 0; i < 200; i++) {
      const content = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
      if (content.includes(text)) return content;
      await sleep(50);
    }
    throw new Error(`no "${text}" in ${file}`);
  }

  it('prefixes each line with its syslog priority when stderr is the journal (JOURNAL_STREAM), and only then', async () => {
    const h = tempHome();
    try {
      const file = path.join(h.home, 'journal.log');
      fs.writeFileSync(file, '', { mode: 0o600 });
      const st = fs.statSync(file, { bigint: true });
      const child = spawnWithStderrTo(file, { ...h.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` });
      const text = await waitForLine(file, 'tokend started');
      child.kill('SIGTERM');
      await once(child, 'exit');
      expect(text.split('\n').find((l) => l.includes('tokend started'))).toMatch(/^<6>\{/);
      // A JOURNAL_STREAM naming another stream (inherited, not ours) changes nothing.
      const other = path.join(h.home, 'other.log');
      const child2 = spawnWithStderrTo(other, { ...h.env, JOURNAL_STREAM: `${st.dev}:${st.ino}` });
      const text2 = await waitForLine(other, 'tokend started');
      child2.kill('SIGTERM');
      await once(child2, 'exit');
      expect(text2.split('\n').find((l) => l.includes('tokend started'))).toMatch(/^\{/);
    } finally {
      h.cleanup();
    }
  });

  it('caps the log file: past log_max_bytes it keeps the old one as tokend.log.1 and starts afresh', async () => {
    const h = tempHome();
    try {
      writeSettings(h.home, { log_max_bytes: 65536 });
      const file = path.join(h.home, 'state', 'tokend.log');
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      fs.writeFileSync(file, 'x'.repeat(100_000) + '\n', { mode: 0o600 });
      const child = spawnWithStderrTo(file, h.env);
      const text = await waitForLine(file, 'tokend started');
      child.kill('SIGTERM');
      await once(child, 'exit');
      expect(text).not.toContain('xxxx');
      expect(fs.statSync(file).size).toBeLessThan(65536);
      expect(fs.readFileSync(`${file}.1`, 'utf8').startsWith('x'.repeat(1000))).toBe(true);
      expect(fs.statSync(`${file}.1`).mode & 0o777).toBe(0o600);
    } finally {
      h.cleanup();
    }
  });
});
