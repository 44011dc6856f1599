/**
 * Disk faults under a running daemon: its database file deleted, its key file changed, the
 * disk holding its data full. Each time the daemon must keep serving the token it holds,
 * send no refresh whose rotated refresh token it could not keep, say what is wrong in
 * `GET /v1/health` and `tokend doctor`, and lose no grant once the fault is gone.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DaemonProcess, sleep, tempHome, putConfAccount, postConfGrant } from './support/daemon.js';
import { startIdp, type TestIdp } from './support/idp.js';

let idp: TestIdp;
beforeAll(async () => {
  idp = await startIdp();
});
afterAll(async () => {
  await idp.close();
});

/** A daemon with account `w` holding a real grant, its first access token already served. */
async function daemonWithGrant(env: NodeJS.ProcessEnv = {}) {
  const h = tempHome();
  const d = new DaemonProcess(h.home, { ...h.env, ...env });
  await d.start();
  await putConfAccount(d, idp.issuer, 'w');
  await postConfGrant(d, idp, 'w');
  const first = await d.request('POST', '/v1/token', { account: 'w' });
  expect(first.status).toBe(200);
  return { h, d, token: first.json.access_token as string };
}

describe('disk faults', () => {
  it('the database file deleted while the daemon runs: no refresh is sent, the held token is served, health and doctor say what to do', async () => {
    const { h, d, token } = await daemonWithGrant();
    try {
      const db = path.join(h.home, 'data', 'tokend.db');
      for (const f of [db, `${db}-wal`, `${db}-shm`]) fs.rmSync(f, { force: true });
      idp.resetStats();

      const forced = await d.request('POST', '/v1/accounts/w/refresh');
      expect(forced.status).toBe(503);
      expect(forced.json.error.message).toMatch(/deleted while tokend runs/);
      // The provider was not asked: its rotated refresh token would have been written to a
      // file nobody opens again, and lost at the next start.
      expect(idp.stats.tokenRequests).toBe(0);

      const served = await d.request('POST', '/v1/token', { account: 'w' });
      expect(served.status).toBe(200);
      expect(served.json.access_token).toBe(token);

      const health = await d.request('GET', '/v1/health');
      expect(health.json.warnings).toEqual([
        expect.stringMatching(/tokend\.db was deleted while tokend runs.*restore the file, or restart tokend/),
      ]);
      const doctor = await d.cli(['doctor']);
      expect(doctor.code).not.toBe(0);
      expect(doctor.stdout + doctor.stderr).toMatch(/tokend\.db was deleted while tokend runs/);
    } finally {
      await d.stop('SIGKILL');
      h.cleanup();
    }
  });

  it('the database file replaced by another while the daemon runs: nothing is written to either', async () => {
    const { h, d } = await daemonWithGrant();
    try {
      const db = path.join(h.home, 'data', 'tokend.db');
      fs.copyFileSync(db, `${db}.copy`);
      fs.renameSync(`${db}.copy`, db); // a restore from a backup, say, under a running daemon
      const before = fs.readFileSync(db);
      idp.resetStats();
      const forced = await d.request('POST', '/v1/accounts/w/refresh');
      expect(forced.status).toBe(503);
      expect(forced.json.error.message).toMatch(/replaced while tokend runs/);
      expect(idp.stats.tokenRequests).toBe(0);
      expect(fs.readFileSync(db).equals(before)).toBe(true);
      expect((await d.request('GET', '/v1/health')).json.warnings).toEqual([expect.stringMatching(/was replaced/)]);

      // A restart takes the file that is there now, and refreshes again.
      await d.stop('SIGTERM');
      await d.start();
      expect((await d.request('GET', '/v1/health')).json.warnings).toEqual([]);
      expect((await d.request('POST', '/v1/accounts/w/refresh')).status).toBe(200);
      expect(idp.stats.replays).toBe(0);
    } finally {
      await d.stop('SIGKILL');
      h.cleanup();
    }
  });

  it('the key file changed or removed while the daemon runs: it keeps serving, and health and doctor say the next start would fail', async () => {
    const { h, d, token } = await daemonWithGrant();
    try {
      const keyFile = path.join(h.home, 'config', 'key');
      const key = fs.readFileSync(keyFile);
      fs.writeFileSync(keyFile, Buffer.alloc(key.length, 7));
      expect((await d.request('GET', '/v1/health')).json.warnings).toEqual([
        expect.stringMatching(/key file .* was changed .* put the original key back/),
      ]);
      expect((await d.request('POST', '/v1/token', { account: 'w' })).json.access_token).toBe(token);
      const doctor = await d.cli(['doctor']);
      expect(doctor.code).not.toBe(0);
      expect(doctor.stdout + doctor.stderr).toMatch(/key file .* was changed/);

      fs.rmSync(keyFile);
      expect((await d.request('GET', '/v1/health')).json.warnings).toEqual([expect.stringMatching(/was removed/)]);
      fs.writeFileSync(keyFile, key, { mode: 0o600 });
      expect((await d.request('GET', '/v1/health')).json.warnings).toEqual([]);
    } finally {
      await d.stop('SIGKILL');
      h.cleanup();
    }
  });
});

/** A small tmpfs needs root (CI runs as root); elsewhere the case is skipped, and says so. */
function canMountTmpfs(): boolean {
  if (process.getuid?.() !== 0) return false;
  const dir = fs.mkdtempSync('/tmp/tokend-mnt-probe-');
  const ok = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]).status === 0;
  if (ok) spawnSync('umount', [dir]);
  fs.rmdirSync(dir);
  return ok;
}
const TMPFS = canMountTmpfs();
if (!TMPFS) console.warn('e2e-disk-faults.test.ts: cannot mount a tmpfs (needs root); the full-disk case is skipped');

describe.runIf(TMPFS)('a full disk', () => {
  it('refreshes on a full disk lose no rotated refresh token: each is stored, or held and stored once space is back, or not sent', async () => {
    const mnt = fs.mkdtempSync('/tmp/tokend-full-');
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=2m,mode=0700', 'tmpfs', mnt]).status).toBe(0);
    const { h, d, token } = await daemonWithGrant({ TOKEND_DATA_DIR: mnt });
    try {
      const filler = path.join(mnt, 'filler');
      /** Fill the disk to the last byte. */
      const fill = () => {
        const fd = fs.openSync(filler, 'a');
        try {
          for (const size of [64 * 1024, 4096, 512, 1]) {
            const chunk = Buffer.alloc(size);
            try {
              for (;;) fs.writeSync(fd, chunk);
            } catch (err) {
              expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
            }
          }
        } finally {
          fs.closeSync(fd);
        }
      };

      // Full before the refresh: the daemon cannot mark it in flight, so it does not send it.
      fill();
      expect((await d.request('GET', '/v1/health')).json.warnings).toEqual([expect.stringMatching(/nearly full .* free some space/)]);
      idp.resetStats();
      for (let i = 0; i < 5; i++) {
        const r = await d.request('POST', '/v1/accounts/w/refresh');
        expect(r.status).toBe(503);
        expect(r.json.error.message).toMatch(/disk .* is full/);
      }
      expect(idp.stats.tokenRequests).toBe(0);
      expect((await d.request('POST', '/v1/token', { account: 'w' })).status).toBe(200);
      fs.rmSync(filler);
      await sleep(2100); // the back-off the last 503 announced (retry_after)

      // Full while the provider answers: the rotation it sends back is held in memory (and
      // served), then stored by itself once space is back.
      idp.setFault({ kind: 'delay', ms: 700, times: 1 });
      const during = d.request('POST', '/v1/accounts/w/refresh');
      for (let i = 0; i < 100 && idp.stats.tokenRequests === 0; i++) await sleep(10);
      fill();
      const answered = await during;
      expect(answered.status).toBe(200);
      expect(idp.stats.refreshes).toBe(1);
      expect(d.logs).toContain('the rotated grant could not be committed');
      const held = await d.request('POST', '/v1/token', { account: 'w' });
      expect(held.status).toBe(200);
      expect(held.json.access_token).not.toBe(token); // the new one, from memory
      fs.rmSync(filler);
      for (let i = 0; i < 200 && !d.logs.includes('the rotated grant held in memory is committed'); i++) await sleep(50);
      expect(d.logs).toContain('the rotated grant held in memory is committed');

      // Killed with no warning and started again: the stored refresh token is the latest one.
      await d.stop('SIGKILL');
      await d.start();
      expect((await d.request('POST', '/v1/accounts/w/refresh')).status).toBe(200);
      expect(idp.stats.replays).toBe(0);
      expect(idp.stats.refreshErrors).toEqual([]);
    } finally {
      await d.stop('SIGKILL');
      spawnSync('umount', ['-l', mnt]);
      fs.rmSync(mnt, { recursive: true, force: true });
      h.cleanup();
    }
  });
});
