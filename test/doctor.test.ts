/**
 * `tokend doctor` and the daemon's logs, against real daemon processes, the real CLI and the
 * real oidc-provider IdP. HOME (and XDG_CONFIG_HOME) point at a folder of the test, so the
 * git, docker and kubectl checks read files the test writes, never the developer's own.
 */
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AccountView } from '../src/protocol/api.js';
import { accountCheck } from '../src/client/doctor/accounts.js';
import { lastErrorLine } from '../src/client/doctor/log.js';
import { DaemonProcess, ROOT, TOKEND_BIN, runCli, sleep, putConfAccount, postConfGrant } from './support/daemon.js';
import { useDaemon, useIdp } from './support/fixtures.js';
import type { TestIdp } from './support/idp.js';

interface Check {
  id: string;
  status: 'ok' | 'info' | 'warn' | 'fail';
  message: string;
  fix?: string;
}
interface Report {
  ok: boolean;
  checks: Check[];
}

const BIN_DIR = path.join(ROOT, 'bin');
const PATH_WITHOUT_BIN = (process.env.PATH ?? '')
  .split(path.delimiter)
  .filter((d) => path.resolve(d) !== BIN_DIR)
  .join(path.delimiter);

/** The daemon's env plus a private HOME, so git / docker / kubectl read only the test's files. */
function userEnv(base: NodeJS.ProcessEnv, userHome: string, binOnPath = false): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...base,
    HOME: userHome,
    XDG_CONFIG_HOME: path.join(userHome, '.config'),
    PATH: binOnPath ? `${BIN_DIR}${path.delimiter}${PATH_WITHOUT_BIN}` : PATH_WITHOUT_BIN,
    GIT_CONFIG_NOSYSTEM: '1',
  };
  for (const k of ['KUBECONFIG', 'DOCKER_CONFIG', 'GIT_CONFIG_GLOBAL', 'GIT_CONFIG_SYSTEM', 'XDG_RUNTIME_DIR']) delete env[k];
  return env;
}

async function doctor(env: NodeJS.ProcessEnv): Promise<{ code: number | null; report: Report; stderr: string }> {
  const r = await runCli(['doctor', '--json'], { env });
  let report: Report;
  try {
    report = JSON.parse(r.stdout) as Report;
  } catch {
    throw new Error(`doctor --json printed no JSON (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  return { code: r.code, report, stderr: r.stderr };
}

function check(report: Report, id: string): Check {
  const c = report.checks.find((x) => x.id === id);
  if (!c) throw new Error(`no check "${id}" in:\n${JSON.stringify(report, null, 2)}`);
  return c;
}

function problems(report: Report): Check[] {
  return report.checks.filter((c) => c.status === 'fail' || c.status === 'warn');
}

async function importFor(d: DaemonProcess, idp: TestIdp, name = 'work'): Promise<void> {
  const issued = await idp.issueRefreshToken('conf');
  const r = await d.cli(['import', name, '--refresh-token-stdin'], issued.refresh_token);
  if (r.code !== 0) throw new Error(`import failed: ${r.stderr}`);
}

/**
 * Add an account as it is, broken on purpose: `check=false` keeps a daemon that checks new
 * accounts against their provider from refusing it (and from contacting the provider).
 */
function putUnchecked(d: DaemonProcess, name: string, body: object) {
  return d.request('PUT', `/v1/accounts/${name}?check=false`, body);
}

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('tokend doctor', () => {
  const idp = useIdp({ accessTokenTtl: 600 });
  beforeEach(() => idp.setFault(null));
  const { d, t: home } = useDaemon({ lifetime: 'test' });
  let userHome: string;
  let env: NodeJS.ProcessEnv;
  beforeEach(() => {
    userHome = path.join(home.home, 'user');
    fs.mkdirSync(userHome, { mode: 0o700 });
    env = userEnv(home.env, userHome);
  });

  it('a healthy daemon with an active account: exit 0, every check ok or info', async () => {
    await putConfAccount(d, idp.issuer);
    await importFor(d, idp);
    const { code, report } = await doctor(env);
    expect(problems(report)).toEqual([]);
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    for (const c of report.checks) {
      expect(Object.keys(c).every((k) => ['id', 'status', 'message', 'fix'].includes(k))).toBe(true);
      expect(typeof c.message).toBe('string');
    }
    const daemon = check(report, 'daemon');
    expect(daemon.status).toBe('ok');
    expect(daemon.message).toContain(`pid ${d.child!.pid}`);
    expect(daemon.message).toMatch(/version \d+\.\d+\.\d+/);
    expect(check(report, 'account:work')).toMatchObject({ status: 'ok' });
    expect(check(report, 'account:work').message).toMatch(/^active/);
    expect(check(report, 'permissions').status).toBe('ok');
    expect(check(report, 'config')).toMatchObject({ status: 'ok', message: expect.stringContaining('1 account') });
    expect(check(report, 'key')).toMatchObject({ status: 'ok', message: expect.stringContaining('32 bytes') });
    expect(check(report, `clock:${idp.issuer}`).status).toBe('ok');
    // Nothing set up in the test's HOME: optional, so info with the setup command.
    expect(check(report, 'git')).toMatchObject({ status: 'info', fix: 'tokend setup git --global' });
    expect(check(report, 'docker')).toMatchObject({ status: 'info', fix: expect.stringContaining('"credHelpers"') });
    expect(check(report, 'kubectl')).toMatchObject({ status: 'info', fix: expect.stringContaining('--exec-command=tokend') });

    const text = await runCli(['doctor'], { env });
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^ok {4}daemon: running: pid \d+/m);
    expect(text.stdout).toMatch(/^ok {4}account:work: active/m);
    expect(text.stdout).toContain('all is well');
  });

  it('a stopped daemon: exit 1, says so and names the command that starts it', async () => {
    await putConfAccount(d, idp.issuer);
    await d.stop('SIGTERM');
    const { code, report } = await doctor(env);
    expect(code).toBe(1);
    expect(report.ok).toBe(false);
    const daemon = check(report, 'daemon');
    expect(daemon.status).toBe('fail');
    expect(daemon.message).toContain('not running');
    expect(daemon.message).toContain(d.socket);
    expect(daemon.message).toMatch(/systemd user|launchd|service/);
    expect(daemon.fix).toMatch(/^tokend (daemon|service install)/);
    expect(check(report, 'accounts')).toMatchObject({ status: 'info', message: expect.stringContaining('not running') });
    // The files are still checked without the daemon.
    expect(check(report, 'config').status).toBe('ok');
    expect(check(report, 'key').status).toBe('ok');

    const text = await runCli(['doctor'], { env });
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^fail {2}daemon: tokend is not running/m);
    expect(text.stdout).toMatch(/^ {6}fix: tokend (daemon|service install)/m);

    // Killed: a stale socket file stays behind; still "not running", same fix.
    const again = new DaemonProcess(home.home, home.env);
    await again.start();
    await again.stop('SIGKILL');
    expect(fs.existsSync(d.socket)).toBe(true);
    const killed = await doctor(env);
    expect(killed.code).toBe(1);
    expect(check(killed.report, 'daemon')).toMatchObject({ status: 'fail', message: expect.stringContaining('stale socket') });
  });

  it('a daemon that refused to start: the config is named invalid and its last log error is shown', async () => {
    await d.stop('SIGTERM');
    const cfg = path.join(home.home, 'config', 'config.json');
    fs.writeFileSync(cfg, JSON.stringify({ version: 1, accounts: { work: { issuer: 'https://sso.example.com', client_id: 5 } } }), {
      mode: 0o600,
    });
    // Start it the way a client's autostart does: stderr appended to state/tokend.log.
    const logFile = path.join(home.home, 'state', 'tokend.log');
    const fd = fs.openSync(logFile, 'a', 0o600);
    const child = spawn(process.execPath, [TOKEND_BIN, 'daemon'], { env: home.env, stdio: ['ignore', 'ignore', fd] });
    fs.closeSync(fd);
    const [exitCode] = (await once(child, 'exit')) as [number];
    expect(exitCode).toBe(1);

    const { code, report } = await doctor(env);
    expect(code).toBe(1);
    expect(check(report, 'daemon').status).toBe('fail');
    const config = check(report, 'config');
    expect(config.status).toBe('fail');
    expect(config.message.startsWith(`${cfg} is invalid: accounts.work.client_id: `), config.message).toBe(true);
    expect(config.fix).toContain(cfg);
    const log = check(report, 'log');
    expect(log.message).toContain(logFile);
    // The doctor reads the file with the daemon's own schema: it names the problem in the daemon's words.
    expect(log.message).toContain(config.message);
  });

  it('an account needing a login: exit 1 with `tokend login NAME`; one never logged in: login or import', async () => {
    await putConfAccount(d, idp.issuer);
    await importFor(d, idp);
    idp.setFault({ kind: 'invalid_grant', times: 1 });
    expect((await d.cli(['refresh', 'work'])).code).toBe(3);
    await putConfAccount(d, idp.issuer, 'fresh');

    const { code, report } = await doctor(env);
    expect(code).toBe(1);
    expect(check(report, 'account:work')).toMatchObject({ status: 'fail', fix: 'tokend login work' });
    expect(check(report, 'account:work').message).toContain('needs a new login');
    expect(check(report, 'account:fresh')).toMatchObject({ status: 'fail', message: expect.stringContaining('no grant') });
    expect(check(report, 'account:fresh').fix).toContain('tokend login fresh');
    expect(check(report, 'account:fresh').fix).toContain('tokend import fresh --refresh-token-stdin');
    expect(check(report, 'daemon').status).toBe('ok');

    const text = await runCli(['doctor'], { env });
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/^fail {2}account:work: needs a new login/m);
    expect(text.stdout).toContain('fix: tokend login work');
  });

  it('accounts a login cannot fix get the fix they need: a missing or refused client secret, an issuer whose discovery fails', async () => {
    // `svc` is the IdP's client-credentials client (secret svc-secret): no interactive login exists for it.
    const addService = (name: string, issuer: string, secret?: string) =>
      putUnchecked(d, name, {
        issuer,
        client_id: 'svc',
        flow: 'client-credentials',
        scopes: ['api'],
        ...(secret ? { client_secret: secret } : {}),
      });
    expect((await addService('wrongsecret', idp.issuer, 'not-the-secret')).status).toBe(201);
    expect((await addService('badissuer', `${idp.issuer}/wrong`, 'svc-secret')).status).toBe(201);
    expect((await addService('fine', idp.issuer, 'svc-secret')).status).toBe(201);
    // The daemon may refuse to save a client-credentials account without its secret, but
    // config.json can be edited by hand: reloaded (SIGHUP), it serves such an account.
    const cfgFile = path.join(home.home, 'config', 'config.json');
    const cfg = JSON.parse(fs.readFileSync(cfgFile, 'utf8'));
    cfg.accounts.nosecret = { issuer: idp.issuer, client_id: 'svc', flow: 'client-credentials', scopes: ['api'] };
    fs.writeFileSync(cfgFile, JSON.stringify(cfg, null, 2));
    d.child!.kill('SIGHUP');
    for (let i = 0; (await d.request('GET', '/v1/accounts/nosecret')).status !== 200; i++) {
      if (i > 100) throw new Error('the daemon did not reload config.json');
      await sleep(50);
    }
    // The first use fails and leaves its reason on the account.
    expect((await d.cli(['token', 'wrongsecret'])).code).not.toBe(0);
    expect((await d.cli(['token', 'badissuer'])).code).not.toBe(0);
    expect((await d.cli(['token', 'fine'])).code).toBe(0);

    const { code, report } = await doctor(env);
    expect(code).toBe(1);
    const setSecret = (name: string) => `printf %s "$SECRET" | tokend set ${name} --client-secret-stdin`;
    expect(check(report, 'account:nosecret')).toMatchObject({
      status: 'fail',
      message: expect.stringContaining('no client secret'),
      fix: setSecret('nosecret'),
    });
    expect(check(report, 'account:wrongsecret')).toMatchObject({
      status: 'fail',
      message: expect.stringContaining('invalid_client'),
      fix: setSecret('wrongsecret'),
    });
    expect(check(report, 'account:badissuer')).toMatchObject({ status: 'fail', message: expect.stringContaining(`${idp.issuer}/wrong`) });
    expect(check(report, 'account:badissuer').fix).toMatch(/^tokend set badissuer --issuer URL/);
    expect(check(report, 'account:fine').status).toBe('ok');
    for (const name of ['nosecret', 'wrongsecret', 'badissuer']) expect(check(report, `account:${name}`).fix).not.toContain('tokend login');
  });

  it('a loosened permission while the daemon runs: exit 1, each path named with its chmod', async () => {
    await putConfAccount(d, idp.issuer);
    const cfg = path.join(home.home, 'config', 'config.json');
    const dataDir = path.join(home.home, 'data');
    fs.chmodSync(cfg, 0o644);
    fs.chmodSync(dataDir, 0o750);
    const { code, report } = await doctor(env);
    expect(code).toBe(1);
    expect(check(report, `permissions:${cfg}`)).toMatchObject({ status: 'fail', fix: `chmod 600 '${cfg}'` });
    expect(check(report, `permissions:${cfg}`).message).toContain('644');
    expect(check(report, `permissions:${dataDir}`)).toMatchObject({ status: 'fail', fix: `chmod 700 '${dataDir}'` });
    expect(check(report, 'daemon').status).toBe('ok');

    const text = await runCli(['doctor'], { env });
    expect(text.stdout).toContain(`fix: chmod 600 '${cfg}'`);

    // Running the fixes makes the doctor happy again.
    execFileSync('sh', ['-c', `chmod 600 '${cfg}' && chmod 700 '${dataDir}'`]);
    await importFor(d, idp);
    const fixed = await doctor(env);
    expect(problems(fixed.report)).toEqual([]);
    expect(fixed.code).toBe(0);
  });

  it('git, docker and kubectl set up to use tokend are shown as ok; a helper not on PATH is a warning', async () => {
    const withBin = userEnv(home.env, userHome, true);
    execFileSync('git', ['config', '--global', 'credential.helper', 'tokend'], { env: withBin });
    execFileSync('git', ['config', '--global', 'credential.https://git.example.com.helper', '!tokend git-credential'], { env: withBin });
    fs.mkdirSync(path.join(userHome, '.docker'));
    fs.writeFileSync(
      path.join(userHome, '.docker', 'config.json'),
      JSON.stringify({ auths: {}, credHelpers: { 'registry.example.com': 'tokend', 'ghcr.io': 'desktop' } }),
    );
    fs.mkdirSync(path.join(userHome, '.kube'));
    fs.writeFileSync(
      path.join(userHome, '.kube', 'config'),
      [
        'apiVersion: v1',
        'kind: Config',
        'users:',
        '- name: other',
        '  user:',
        '    token: not-ours',
        '- name: tokend-work',
        '  user:',
        '    exec:',
        '      apiVersion: client.authentication.k8s.io/v1',
        '      args:',
        '      - kubectl-credential',
        '      - work',
        '      command: tokend',
        '      interactiveMode: Never',
        '',
      ].join('\n'),
    );

    const { report } = await doctor(withBin);
    expect(check(report, 'git').status).toBe('ok');
    expect(check(report, 'git').message).toContain('credential.helper=tokend');
    expect(check(report, 'git').message).toContain('credential.https://git.example.com.helper=!tokend git-credential');
    expect(check(report, 'docker')).toMatchObject({ status: 'ok', message: expect.stringContaining('registry.example.com') });
    expect(check(report, 'docker').message).not.toContain('ghcr.io');
    expect(check(report, 'kubectl')).toMatchObject({ status: 'ok', message: expect.stringContaining('user tokend-work') });

    // The same config, but git cannot find git-credential-tokend: a warning, not a failure.
    const noBin = await doctor(env);
    expect(check(noBin.report, 'git')).toMatchObject({
      status: 'warn',
      message: expect.stringContaining('git-credential-tokend is not on PATH'),
    });
    expect(check(noBin.report, 'git').fix).toContain(path.join(BIN_DIR, 'git-credential-tokend'));
    expect(check(noBin.report, 'docker').status).toBe('warn');

    // Another helper asked before tokend may answer first: a warning with the setup command.
    execFileSync('git', ['config', '--global', '--unset-all', 'credential.helper'], { env: withBin });
    execFileSync('git', ['config', '--global', '--add', 'credential.helper', 'store'], { env: withBin });
    execFileSync('git', ['config', '--global', '--add', 'credential.helper', path.join(BIN_DIR, 'git-credential-tokend')], {
      env: withBin,
    });
    const order = await doctor(withBin);
    expect(check(order.report, 'git')).toMatchObject({
      status: 'warn',
      message: expect.stringContaining('asks store first'),
      fix: 'tokend setup git --global',
    });

    // An empty value resets git's helper list: tokend is no longer used.
    execFileSync('git', ['config', '--global', '--add', 'credential.helper', ''], { env: withBin });
    execFileSync('git', ['config', '--global', '--unset-all', 'credential.https://git.example.com.helper'], { env: withBin });
    const reset = await doctor(withBin);
    expect(check(reset.report, 'git')).toMatchObject({ status: 'info', fix: 'tokend setup git --global' });
  });

  it("a provider's clock 10 minutes off fails, naming the skew; an unreachable provider is a warning", async () => {
    const seen: { url?: string; method?: string; authorization?: string }[] = [];
    const skewed = http.createServer((req, res) => {
      seen.push({ url: req.url, method: req.method, authorization: req.headers.authorization });
      res.sendDate = false;
      res.writeHead(404, { date: new Date(Date.now() + 10 * 60_000).toUTCString(), 'content-type': 'text/plain' });
      res.end('no');
    });
    skewed.listen(0, '127.0.0.1');
    await once(skewed, 'listening');
    const port = (skewed.address() as AddressInfo).port;
    const origin = `http://127.0.0.1:${port}`;
    const gone = `http://127.0.0.1:${await closedPort()}`;
    try {
      expect((await putUnchecked(d, 'skewed', { issuer: origin, token_endpoint: `${origin}/token`, client_id: 'x' })).status).toBe(201);
      expect((await putUnchecked(d, 'gone', { issuer: gone, client_id: 'y' })).status).toBe(201);
      expect(seen).toEqual([]); // adding does not contact the provider

      const { code, report } = await doctor(env);
      expect(code).toBe(1);
      const c = check(report, `clock:${origin}`);
      expect(c.status).toBe('fail');
      expect(c.message).toContain('10 min ahead of ours');
      expect(c.message).toMatch(/skew (599|600|601) s/);
      expect(c.message).toContain('account skewed');
      expect(c.fix).toBeTruthy();
      expect(check(report, `clock:${gone}`)).toMatchObject({ status: 'warn', message: expect.stringContaining('ECONNREFUSED') });
      expect(seen).toEqual([{ url: '/.well-known/openid-configuration', method: 'GET', authorization: undefined }]);
    } finally {
      await new Promise<void>((r) => skewed.close(() => r()));
    }
  });

  it('a daemon that accepts but never answers: fails after the timeout instead of hanging', async () => {
    await d.stop('SIGTERM');
    const held: net.Socket[] = [];
    const mute = net.createServer((s) => held.push(s));
    mute.listen(d.socket);
    await once(mute, 'listening');
    try {
      const started = Date.now();
      // The daemon's 5 s limit, shortened: what is tested is that it ends, not how long it waits.
      const { code, report } = await doctor({ ...env, TOKEND_TEST_DOCTOR_TIMEOUT_MS: '1000' });
      expect(code).toBe(1);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(check(report, 'daemon')).toMatchObject({ status: 'fail', message: expect.stringContaining('does not answer') });
    } finally {
      for (const s of held) s.destroy();
      await new Promise<void>((r) => mute.close(() => r()));
    }
  });

  it('--help and bad usage', async () => {
    const help = await runCli(['doctor', '--help'], { env });
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('usage: tokend doctor [--json]');
    const bad = await runCli(['doctor', '--frobnicate'], { env });
    expect(bad.code).toBe(2);
    expect((await runCli(['--help'], { env })).stdout).toContain('doctor [--json]');
  });
});

describe('daemon logs', () => {
  const idp = useIdp({ accessTokenTtl: 600 });
  const { d, start } = useDaemon({ lifetime: 'manual', settings: { backoff_initial_ms: 10, backoff_max_ms: 50 } });
  afterEach(() => idp.setFault(null));

  function parseLines(logs: string): { time: string; level: string; msg: string; [k: string]: unknown }[] {
    const lines = logs.split('\n').filter((l) => l !== '');
    return lines.map((line) => {
      let rec: unknown;
      try {
        rec = JSON.parse(line);
      } catch {
        throw new Error(`a log line is not JSON: ${line}`);
      }
      expect(rec).toMatchObject({
        time: expect.any(String),
        level: expect.stringMatching(/^(debug|info|warn|error)$/),
        msg: expect.any(String),
      });
      const r = rec as { time: string; level: string; msg: string };
      expect(new Date(r.time).toISOString()).toBe(r.time);
      return r;
    });
  }

  async function waitLogin(d: DaemonProcess, id: string): Promise<string> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const r = await d.request('GET', `/v1/logins/${encodeURIComponent(id)}`);
      if (r.json?.status && r.json.status !== 'pending') return r.json.status as string;
      if (Date.now() > deadline) throw new Error(`login ${id} still pending: ${r.text}`);
      await sleep(50);
    }
  }

  it('one JSON object per line with time, level, msg: start, refresh, failure, login, reauth, stop; never a secret', async () => {
    await start({ settings: { device_poll_unit_ms: 10 } }); // TOKEND_LOG_LEVEL=debug
    await putConfAccount(d, idp.issuer);
    const issued = await postConfGrant(d, idp);
    const served = new Set<string>();
    served.add((await d.cli(['token', 'work'])).stdout.trim());
    expect((await d.cli(['refresh', 'work'])).code).toBe(0);

    // A failed refresh (the provider answers 500), then a good one once the backoff passed.
    idp.setFault({ kind: '500', times: 1 });
    expect((await d.cli(['refresh', 'work'])).code).toBe(1);
    await sleep(200);
    expect((await d.cli(['refresh', 'work'])).code).toBe(0);
    served.add((await d.cli(['token', 'work'])).stdout.trim());

    // A device login, approved at the IdP.
    const started = await d.request('POST', '/v1/accounts/work/login', { flow: 'device' });
    expect(started.status).toBeLessThan(300);
    await idp.approveDevice(started.json.user_code);
    expect(await waitLogin(d, started.json.id)).toBe('active');
    served.add((await d.cli(['token', 'work', '--min-ttl', '0'])).stdout.trim());

    // The provider refuses the grant: the account needs a login.
    idp.setFault({ kind: 'invalid_grant', times: 1 });
    expect((await d.cli(['refresh', 'work'])).code).toBe(3);
    expect(await d.stop('SIGTERM')).toBe(0);

    const recs = parseLines(d.logs);
    const msgs = recs.map((r) => r.msg);
    for (const m of [
      'tokend started',
      'account added',
      'token refreshed',
      'refresh failed',
      'login started',
      'login succeeded',
      'account needs a new login',
      'tokend stopping',
      'tokend stopped',
    ]) {
      expect(msgs).toContain(m);
    }
    expect(recs.filter((r) => r.msg === 'token refreshed').length).toBeGreaterThanOrEqual(3);
    expect(recs.every((r) => r.msg !== 'refresh failed' || r.level === 'warn')).toBe(true);
    expect(recs.find((r) => r.msg === 'tokend started')).toMatchObject({ level: 'info', pid: d.child?.pid ?? expect.any(Number) });

    const secrets = [
      'conf-secret',
      issued.refresh_token,
      issued.access_token,
      ...served,
      ...idp.issuedRefreshTokens(),
      ...idp.issuedAccessTokens(),
    ].filter((s) => s.length >= 8);
    expect(idp.issuedRefreshTokens().length).toBeGreaterThanOrEqual(4);
    for (const s of secrets)
      expect({ secret: s.slice(0, 6), leaked: d.logs.includes(s) }).toEqual({ secret: s.slice(0, 6), leaked: false });
  });

  it('TOKEND_LOG_LEVEL=warn keeps warnings and errors and drops info lines', async () => {
    await start({ env: { TOKEND_LOG_LEVEL: 'warn' } });
    await putConfAccount(d, idp.issuer);
    await postConfGrant(d, idp);
    expect((await d.cli(['refresh', 'work'])).code).toBe(0);
    idp.setFault({ kind: '500', times: 1 });
    expect((await d.cli(['refresh', 'work'])).code).toBe(1);
    expect(await d.stop('SIGTERM')).toBe(0);

    const recs = parseLines(d.logs);
    expect(recs.map((r) => r.msg)).toContain('refresh failed');
    expect(recs.filter((r) => r.level !== 'warn' && r.level !== 'error')).toEqual([]);
    expect(d.logs).not.toContain('tokend started');
    expect(d.logs).not.toContain('token refreshed');
  });
});

describe('doctor verdicts (unit)', () => {
  const base: AccountView = {
    name: 'work',
    driver: 'oauth2',
    status: 'active',
    expires_at: null,
    scopes: [],
    hosts: [],
    client_id: 'c',
    has_client_secret: false,
    has_refresh_token: true,
    last_error: null,
    generation: 1,
  };
  const now = Date.parse('2030-01-01T00:00:00Z');
  const at = (ms: number) => new Date(now + ms).toISOString();
  const SET_SECRET = 'printf %s "$SECRET" | tokend set work --client-secret-stdin';
  const FIX_ISSUER = expect.stringMatching(/^tokend set work --issuer URL/);
  const INVALID_CLIENT = 'the token endpoint at https://sso.example.com/token answered invalid_client (client authentication failed)';
  const NO_DISCOVERY =
    'no usable authorization server metadata for issuer https://sso.example.com/wrong (OpenID Connect discovery: the discovery endpoint at https://sso.example.com/wrong/.well-known/openid-configuration answered HTTP 404 without an OAuth error)';

  it.each([
    ['active with a refresh token', { expires_at: at(60_000) }, 'ok', undefined],
    ['active, no refresh token, 10 min left', { expires_at: at(600_000), has_refresh_token: false }, 'ok', undefined],
    ['expires soon with nothing to renew it', { expires_at: at(120_000), has_refresh_token: false }, 'warn', 'tokend login work'],
    [
      'client credentials expiring soon',
      { expires_at: at(60_000), has_refresh_token: false, flow: 'client-credentials' as const, has_client_secret: true },
      'ok',
      undefined,
    ],
    ['active but the last refresh failed', { expires_at: at(600_000), last_error: 'provider down' }, 'warn', 'tokend refresh work'],
    ['reauth_required', { status: 'reauth_required' as const, last_error: 'invalid_grant' }, 'fail', 'tokend login work'],
    ['login_pending', { status: 'login_pending' as const }, 'warn', 'tokend login work'],
    [
      'expired',
      { status: 'expired' as const, has_refresh_token: false },
      'fail',
      expect.stringContaining('tokend import work --refresh-token-stdin'),
    ],
    ['no_grant', { status: 'no_grant' as const, has_refresh_token: false }, 'fail', expect.stringMatching(/^tokend login work/)],
    [
      'refresh_failing: no token now, a login would not help',
      { status: 'refresh_failing' as const, expires_at: at(-60_000), last_error: 'provider down' },
      'fail',
      'tokend refresh work   # once the cause is fixed',
    ],
    [
      'no_grant, client credentials',
      { status: 'no_grant' as const, has_refresh_token: false, flow: 'client-credentials' as const, has_client_secret: true },
      'ok',
      undefined,
    ],
    // Where a login cannot help, the fix changes the account instead.
    [
      'client credentials without a secret',
      { status: 'no_grant' as const, has_refresh_token: false, flow: 'client-credentials' as const },
      'fail',
      SET_SECRET,
    ],
    [
      'client credentials refused by the provider',
      {
        status: 'no_grant' as const,
        has_refresh_token: false,
        flow: 'client-credentials' as const,
        has_client_secret: true,
        last_error: INVALID_CLIENT,
      },
      'fail',
      SET_SECRET,
    ],
    [
      'client credentials failing for another reason: try again',
      {
        status: 'no_grant' as const,
        has_refresh_token: false,
        flow: 'client-credentials' as const,
        has_client_secret: true,
        last_error: 'could not reach the token endpoint at https://sso.example.com/token: ECONNREFUSED',
      },
      'warn',
      'tokend refresh work',
    ],
    [
      'client credentials whose grant was refused',
      { status: 'reauth_required' as const, flow: 'client-credentials' as const, has_client_secret: true, last_error: 'invalid_grant' },
      'fail',
      'tokend logout work',
    ],
    [
      'a refresh refused as invalid_client while the token still serves',
      { expires_at: at(600_000), last_error: INVALID_CLIENT },
      'warn',
      SET_SECRET,
    ],
    [
      'issuer discovery failing while the token still serves',
      { expires_at: at(600_000), issuer: 'https://sso.example.com/wrong', last_error: NO_DISCOVERY },
      'warn',
      FIX_ISSUER,
    ],
    [
      'issuer discovery failing with nothing to serve',
      {
        status: 'no_grant' as const,
        has_refresh_token: false,
        flow: 'client-credentials' as const,
        has_client_secret: true,
        last_error: NO_DISCOVERY,
      },
      'fail',
      FIX_ISSUER,
    ],
    [
      'never logged in because the login hit a broken issuer',
      {
        status: 'no_grant' as const,
        has_refresh_token: false,
        last_login: {
          id: 'l1',
          flow: 'device' as const,
          status: 'failed' as const,
          updated_at: at(-60_000),
          error: { code: 'discovery', message: NO_DISCOVERY },
        },
      },
      'fail',
      FIX_ISSUER,
    ],
  ])('%s', (_name, patch, status, fix) => {
    const c = accountCheck({ ...base, ...patch }, now);
    expect(c).toMatchObject({ id: 'account:work', status });
    expect(c.fix).toEqual(fix);
  });

  it('finds the last error line of a log, JSON or plain, and nothing in a clean log', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-log-'));
    try {
      const f = path.join(dir, 'tokend.log');
      const line = (level: string, msg: string, extra: object = {}) =>
        JSON.stringify({ time: '2030-01-01T00:00:00.000Z', level, msg, ...extra });
      fs.writeFileSync(f, [line('info', 'tokend started'), line('error', 'old trouble'), line('warn', 'refresh failed'), ''].join('\n'));
      expect(lastErrorLine(f)).toBe('2030-01-01T00:00:00.000Z old trouble');
      fs.appendFileSync(
        f,
        [line('error', 'could not write the audit log', { error: 'disk full' }), 'tokend daemon: cannot listen', ''].join('\n'),
      );
      expect(lastErrorLine(f)).toBe('2030-01-01T00:00:00.000Z could not write the audit log: disk full');
      fs.appendFileSync(f, 'tokend daemon: another daemon answers\n');
      expect(lastErrorLine(f)).toBe('tokend daemon: another daemon answers');
      fs.writeFileSync(f, line('info', 'tokend started') + '\n{torn');
      expect(lastErrorLine(f)).toBeUndefined();
      expect(lastErrorLine(path.join(dir, 'missing.log'))).toBeUndefined();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
