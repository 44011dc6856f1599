/**
 * The master key in the OS keyring (settings.key_store "keyring"), against a real Secret
 * Service: gnome-keyring on a private D-Bus session bus (test/support/secret-service.ts).
 * The daemon keeps no key file, its sealed grants open after a restart, `tokend key move`
 * moves the key both ways while it runs, and without a keyring it says so and what to do
 * instead of falling back to the kernel keyring.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, tempHome, writeSettings, putConfAccount, postConfGrant } from './support/daemon.js';
import { startIdp, type TestIdp } from './support/idp.js';
import { startSecretService, type SecretService } from './support/secret-service.js';

let idp: TestIdp;
let ss: SecretService;
beforeAll(async () => {
  [idp, ss] = await Promise.all([startIdp(), startSecretService()]);
});
afterAll(async () => {
  await Promise.all([idp?.close(), ss?.close()]);
});

/** A daemon under its own home whose environment sees `bus` (or no session bus at all). */
function daemonWith(settings: Record<string, unknown>, bus: { DBUS_SESSION_BUS_ADDRESS: string } | null) {
  const h = tempHome();
  writeSettings(h.home, settings);
  const env = { ...h.env, ...(bus ?? {}) };
  if (!bus) delete env.DBUS_SESSION_BUS_ADDRESS;
  const d = new DaemonProcess(h.home, env);
  const dataDir = path.join(h.home, 'data');
  return { h, d, dataDir, config: () => JSON.parse(fs.readFileSync(path.join(h.home, 'config', 'config.json'), 'utf8')) };
}

async function tokenWorks(d: DaemonProcess): Promise<void> {
  const r = await d.cli(['token', 'work']);
  expect(r.code, r.stderr).toBe(0);
  expect(idp.issuedAccessTokens()).toContain(r.stdout.trim());
}

describe('master key in the OS keyring', () => {
  it('keeps it in the Secret Service, never in a file; sealed grants open after a restart; `tokend key move` moves it both ways while the daemon runs', async () => {
    const t = daemonWith({ key_store: 'keyring' }, ss.env);
    try {
      await t.d.start();
      const entry = { service: 'tokend', username: t.dataDir };
      const stored = ss.lookup(entry);
      expect(stored).not.toBeNull();
      expect(Buffer.from(stored!, 'base64')).toHaveLength(32);
      const keyFile = path.join(t.h.home, 'config', 'key');
      expect(fs.existsSync(keyFile)).toBe(false);
      const where = await t.d.cli(['key']);
      expect(where.code, where.stderr).toBe(0);
      expect(where.stdout).toContain(`the OS keyring (service "tokend", account "${t.dataDir}")`);
      const doctor = JSON.parse((await t.d.cli(['doctor', '--json'])).stdout);
      expect(doctor.checks.find((c: { id: string }) => c.id === 'key')).toMatchObject({
        status: 'info',
        message: expect.stringContaining('OS keyring'),
      });

      // A client secret and a refresh token, sealed with the keyring's key.
      await putConfAccount(t.d, idp.issuer);
      await postConfGrant(t.d, idp);
      await t.d.stop();
      await t.d.start();
      const refreshed = await t.d.cli(['refresh', 'work']);
      expect(refreshed.code, refreshed.stderr).toBe(0);

      // A different key where the move would go is never overwritten: 409, nothing changes.
      fs.writeFileSync(keyFile, Buffer.alloc(32, 7), { mode: 0o600 });
      const blocked = await t.d.cli(['key', 'move', '--to', 'file']);
      expect(blocked.code).toBe(1);
      expect(blocked.stderr).toContain('already holds a different tokend key');
      expect(fs.readFileSync(keyFile).equals(Buffer.alloc(32, 7))).toBe(true);
      expect(ss.lookup(entry)).toBe(stored);
      expect(t.config().settings.key_store).toBe('keyring');
      fs.rmSync(keyFile);

      // To a file, while the daemon runs: the file holds the very key, the entry is gone.
      const toFile = await t.d.cli(['key', 'move', '--to', 'file', '--json']);
      expect(toFile.code, toFile.stderr).toBe(0);
      const view = JSON.parse(toFile.stdout);
      expect(view).toMatchObject({ key_store: 'file', moved: true });
      expect(view.where).toBe(keyFile);
      expect(fs.readFileSync(keyFile).toString('base64')).toBe(stored);
      expect(fs.statSync(keyFile).mode & 0o777).toBe(0o600);
      expect(ss.lookup(entry)).toBeNull();
      expect(t.config().settings.key_store).toBe('file');
      expect((await t.d.request('GET', '/v1/health')).json.warnings).toEqual([]);
      const again = await t.d.cli(['key', 'move', '--to', 'file']);
      expect([again.code, again.stderr]).toEqual([0, `tokend: the master key is already in ${keyFile}\n`]);
      await t.d.stop();
      await t.d.start();
      expect((await t.d.cli(['refresh', 'work'])).code).toBe(0);

      // And back: the entry holds it again, the file is gone, and a restart reads the keyring.
      const toKeyring = await t.d.cli(['key', 'move', '--to', 'keyring']);
      expect(toKeyring.code, toKeyring.stderr).toBe(0);
      expect(toKeyring.stderr).toContain('the master key is now in the OS keyring');
      expect(ss.lookup(entry)).toBe(stored);
      expect(fs.existsSync(keyFile)).toBe(false);
      expect(t.config().settings.key_store).toBe('keyring');
      expect((await t.d.request('GET', '/v1/health')).json.warnings).toEqual([]);
      await t.d.stop();
      await t.d.start();
      expect((await t.d.cli(['refresh', 'work'])).code).toBe(0);
      await tokenWorks(t.d);
      expect(t.d.logs).not.toContain(stored!);
    } finally {
      await t.d.stop('SIGKILL');
      t.h.cleanup();
    }
  });

  it('without a Secret Service, the daemon does not start, says what to do, and keeps no key anywhere (no kernel-keyring fallback)', async () => {
    for (const bus of [null, await startSecretService({ keyring: false })]) {
      const t = daemonWith({ key_store: 'keyring' }, bus ? bus.env : null);
      try {
        const failed = await t.d.start().then(
          () => 'started',
          (err: Error) => err.message,
        );
        expect(failed).toContain('no OS keyring answers');
        expect(failed).toContain('start a Secret Service in this session');
        expect(failed).toMatch(/settings\.key_store \\?"file\\?"/); // JSON-escaped in the log line
        expect(fs.existsSync(path.join(t.dataDir, 'tokend.db'))).toBe(false);
        expect(ss.lookup({ service: 'tokend', username: t.dataDir })).toBeNull();
      } finally {
        await t.d.stop('SIGKILL');
        t.h.cleanup();
        await bus?.close();
      }
    }
  });

  it('a daemon on a key file: `key move --to keyring` without a keyring fails, and the key stays in its file', async () => {
    const t = daemonWith({}, null);
    try {
      await t.d.start();
      const where = (await t.d.cli(['key'])).stdout.trim();
      const before = fs.readFileSync(where);
      const r = await t.d.cli(['key', 'move', '--to', 'keyring']);
      expect(r.code).toBe(1);
      expect(r.stderr).toContain('no OS keyring answers');
      expect(fs.readFileSync(where).equals(before)).toBe(true);
      expect(t.config().settings.key_store ?? 'file').toBe('file');
      const usage = await t.d.cli(['key', 'move']);
      expect([usage.code, usage.stderr]).toEqual([2, expect.stringContaining('--to keyring or --to file')]);
    } finally {
      await t.d.stop('SIGKILL');
      t.h.cleanup();
    }
  });

  it('will not invent a keyring key beside a database sealed with the key file: it names `tokend key move`', async () => {
    const t = daemonWith({}, ss.env);
    try {
      await t.d.start();
      await putConfAccount(t.d, idp.issuer);
      await t.d.stop();
      writeSettings(t.h.home, { key_store: 'keyring' }, t.config().accounts);
      const failed = await t.d.start().then(
        () => 'started',
        (err: Error) => err.message,
      );
      expect(failed).toContain('holds no tokend key while');
      expect(failed).toContain('tokend key move --to keyring');
      expect(ss.lookup({ service: 'tokend', username: t.dataDir })).toBeNull();
    } finally {
      await t.d.stop('SIGKILL');
      t.h.cleanup();
    }
  });
});
