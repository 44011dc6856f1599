/**
 * The loopback TCP listener (`tokend daemon --listen 127.0.0.1:PORT`): the same API, only
 * with the daemon key; web pages (Origin) and rebound names (Host) are refused; nothing but
 * a loopback address can be bound.
 */
import { once } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, TOKEND_BIN, tempHome, putConfAccount, postConfGrant } from './support/daemon.js';
import { byteSource } from './support/api-server.js';
import { startIdp, type TestIdp } from './support/idp.js';

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

let idp: TestIdp;
let d: DaemonProcess;
let home: string;
let cleanup: () => void;
let port: number;
let key: string;

/** A raw HTTP request to the listener, so Host and Origin are exactly what the test says. */
async function tcp(p: string, headers: Record<string, string>, method = 'GET', body?: string) {
  const res = await fetch(`http://127.0.0.1:${port}${p}`, { method, headers, body });
  return { status: res.status, json: (await res.json().catch(() => undefined)) as any };
}
function rawTcp(request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let data = '';
    s.on('data', (c) => (data += c));
    s.on('end', () => resolve(data));
    s.on('error', reject);
    s.write(request);
  });
}

beforeAll(async () => {
  idp = await startIdp();
  const h = tempHome();
  home = h.home;
  cleanup = h.cleanup;
  port = await freePort();
  d = new DaemonProcess(h.home, h.env);
  await d.start(['--listen', `127.0.0.1:${port}`]);
  await putConfAccount(d, idp.issuer, 'w');
  await postConfGrant(d, idp, 'w');
  key = fs.readFileSync(path.join(home, 'config', 'listen.key'), 'utf8').trim();
});
afterAll(async () => {
  await d.stop('SIGKILL');
  cleanup();
  await idp.close();
});

describe('loopback listener', () => {
  it('keeps the daemon key in a 0600 file', () => {
    expect(fs.statSync(path.join(home, 'config', 'listen.key')).mode & 0o777).toBe(0o600);
    expect(key.length).toBeGreaterThanOrEqual(32);
  });

  it('refuses a missing or wrong key with 401', async () => {
    expect((await tcp('/v1/health', {})).status).toBe(401);
    const wrong = await tcp('/v1/health', { authorization: `Bearer ${key.slice(0, -1)}x` });
    expect(wrong.status).toBe(401);
    expect(wrong.json.error.code).toBe('unauthorized');
  });

  it('refuses any request with an Origin header, even with the right key', async () => {
    const r = await tcp(
      '/v1/token',
      { authorization: `Bearer ${key}`, origin: 'https://evil.example', 'content-type': 'application/json' },
      'POST',
      '{"account":"w"}',
    );
    expect(r.status).toBe(403);
    expect(r.json.error.code).toBe('forbidden');
  });

  it('an upload refused for its key before it is all sent: the caller reads the 401, not EPIPE', async () => {
    // The keep-alive rule (lingering close) holds for every answer, the guard's refusals too.
    const size = 64 * 1024 * 1024;
    const r = await new Promise<{ status?: number; text: string; error?: string }>((resolve) => {
      const out: { status?: number; text: string; error?: string } = { text: '' };
      let answered: Promise<unknown> = Promise.resolve();
      const req = http.request(
        { host: '127.0.0.1', port, method: 'POST', path: '/v1/token', agent: false, headers: { 'content-length': size } },
        (res) => {
          out.status = res.statusCode;
          res.on('data', (c) => (out.text += c));
          answered = once(res, 'close');
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => (out.error = e.code));
      req.on('close', () => void answered.then(() => resolve(out)));
      byteSource(size).pipe(req);
    });
    expect([r.error, r.status]).toEqual([undefined, 401]);
    expect(JSON.parse(r.text).error.code).toBe('unauthorized');
  });

  it('serves an app with its own key (tokend listen-key --app), names it in the audit, and stops it on rotate and revoke', async () => {
    const made = await d.cli(['listen-key', '--app', 'ci-runner', '--json']);
    expect(made.code, made.stderr).toBe(0);
    const first = JSON.parse(made.stdout);
    expect(first).toMatchObject({ app: 'ci-runner', rotated: false });
    expect(fs.statSync(first.file).mode & 0o777).toBe(0o600);
    // The same key again until it is rotated.
    expect((await d.cli(['listen-key', '--app', 'ci-runner'])).stdout.trim()).toBe(first.key);
    const token = (k: string) =>
      tcp(
        '/v1/token',
        { authorization: `Bearer ${k}`, 'content-type': 'application/json', 'user-agent': 'ci/2' },
        'POST',
        '{"account":"w"}',
      );
    expect((await token(first.key)).status).toBe(200);
    const { json } = await d.request('GET', '/v1/audit?account=w&action=token&limit=20');
    expect(json.entries.find((e: any) => e.caller.key === 'ci-runner')?.caller).toEqual({
      key: 'ci-runner',
      parents: [],
      user_agent: 'ci/2',
    });
    // The daemon key names no app: its rows carry no key.
    const admin = await tcp(
      '/v1/token',
      { authorization: `Bearer ${key}`, 'content-type': 'application/json', 'user-agent': 'admin/1' },
      'POST',
      '{"account":"w"}',
    );
    expect(admin.status).toBe(200);
    const after = (await d.request('GET', '/v1/audit?account=w&action=token&limit=20')).json;
    expect(after.entries.find((e: any) => e.caller.user_agent === 'admin/1')?.caller).toEqual({ user_agent: 'admin/1' });

    const rotated = JSON.parse((await d.cli(['listen-key', '--app', 'ci-runner', '--rotate', '--json'])).stdout);
    expect(rotated.rotated).toBe(true);
    expect((await token(first.key)).status).toBe(401);
    expect((await token(rotated.key)).status).toBe(200);
    expect((await d.cli(['listen-key', '--app', 'ci-runner', '--revoke'])).code).toBe(0);
    expect((await token(rotated.key)).status).toBe(401);
    expect((await d.cli(['listen-key', '--app', 'ci-runner', '--revoke'])).code).toBe(1);
    expect((await d.cli(['listen-key', '--app', 'not a name'])).code).toBe(2);
  });

  it('refuses a Host that is not a loopback name with this port (DNS rebinding)', async () => {
    for (const host of ['evil.example', `evil.example:${port}`, '127.0.0.1:1', `attacker.127.0.0.1.nip.io:${port}`]) {
      const raw = await rawTcp(`GET /v1/health HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${key}\r\nConnection: close\r\n\r\n`);
      expect([host, raw.split('\r\n')[0]]).toEqual([host, 'HTTP/1.1 403 Forbidden']);
    }
  });

  it('serves every route with the right key: health, accounts, token, events', async () => {
    const auth = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    expect((await tcp('/v1/health', auth)).json.status).toBe('ok');
    expect((await tcp('/v1/accounts', auth)).json.accounts[0].name).toBe('w');
    const tok = await tcp('/v1/token', auth, 'POST', '{"account":"w"}');
    expect(tok.status).toBe(200);
    expect((await idp.introspect(tok.json.access_token)).active).toBe(true);
    const localhost = await rawTcp(
      `GET /v1/health HTTP/1.1\r\nHost: localhost:${port}\r\nAuthorization: Bearer ${key}\r\nConnection: close\r\n\r\n`,
    );
    expect(localhost.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    const ev = await fetch(`http://127.0.0.1:${port}/v1/events`, { headers: auth });
    const first = await ev.body!.getReader().read();
    expect(Buffer.from(first.value!).toString()).toContain('event: ready');
    await ev.body!.cancel().catch(() => undefined);
  });

  it('takes a rotated key at once', async () => {
    const file = path.join(home, 'config', 'listen.key');
    const next = 'r'.repeat(43);
    fs.writeFileSync(`${file}.tmp`, next + '\n', { mode: 0o600 });
    fs.renameSync(`${file}.tmp`, file);
    expect((await tcp('/v1/health', { authorization: `Bearer ${key}` })).status).toBe(401);
    expect((await tcp('/v1/health', { authorization: `Bearer ${next}` })).status).toBe(200);
  });

  it('refuses to bind anything but a loopback address, saying why', async () => {
    for (const addr of ['0.0.0.0:8765', '[::]:8765', '10.1.2.3:8765', 'example.com:8765', 'nonsense']) {
      const h = tempHome();
      try {
        const child = spawn(process.execPath, [TOKEND_BIN, 'daemon', '--listen', addr], { env: h.env, stdio: ['ignore', 'pipe', 'pipe'] });
        let err = '';
        child.stderr.on('data', (c) => (err += c));
        const code = await new Promise<number | null>((r) => child.on('exit', r));
        expect([addr, code]).toEqual([addr, 2]);
        expect(err).toMatch(/loopback|ADDRESS:PORT/);
        expect(fs.existsSync(path.join(h.home, 'run', 'tokend.sock'))).toBe(false);
      } finally {
        h.cleanup();
      }
    }
  });
});
