/**
 * The socket API's routes through `app.request()`: no socket, no process; a real config
 * file, the in-memory store, a fake driver. Bad input gets a 4xx with the wire error
 * shape, never a 500; every error has one shape.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../src/daemon/audit.js';
import { Broker } from '../src/daemon/broker.js';
import { ConfigStore } from '../src/daemon/config.js';
import type { Driver } from '../src/daemon/drivers/driver.js';
import { EventBus } from '../src/daemon/events.js';
import { createApp } from '../src/daemon/http/app.js';
import type { Logger } from '../src/daemon/log.js';
import { MemoryStore } from './support/memory-store.js';

const quiet: Logger = { debug() {}, info() {}, warn() {}, error() {} };
let dir: string;
let app: ReturnType<typeof createApp>;

const driver: Driver = {
  name: 'oauth2',
  async refresh() {
    return { access_token: 'at-fresh', token_type: 'Bearer', expires_in: 600, refresh_token: 'rt-2' };
  },
  async check() {
    return [];
  },
};

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-app-'));
  const config = await ConfigStore.open(path.join(dir, 'config.json'));
  const store = new MemoryStore();
  const events = new EventBus();
  const getDriver = (n: string) => (n === 'oauth2' ? driver : undefined);
  const broker = new Broker({ store, config, getDriver, events, log: quiet });
  await broker.start();
  app = createApp({
    config,
    store,
    broker,
    getDriver,
    events,
    audit: new AuditLog(store, quiet),
    log: quiet,
    version: '0.0.0-test',
    startedAt: Date.now(),
    shutdown: new AbortController().signal,
  });
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const json = (method: string, p: string, body?: unknown) =>
  app.request(p, {
    method,
    headers: { 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });

describe('socket API routes (app.request)', () => {
  it('answers health', async () => {
    const r = await app.request('/v1/health');
    expect(r.status).toBe(200);
    expect(await r.json()).toMatchObject({ status: 'ok', version: '0.0.0-test', accounts: 0 });
  });

  it('writes every error in one shape, unknown routes included', async () => {
    for (const [method, p, body, status, code] of [
      ['GET', '/v1/nope', undefined, 404, 'not_found'],
      ['GET', '/v1/accounts/ghost', undefined, 404, 'not_found'],
      ['GET', '/v1/accounts/..%2Fx', undefined, 400, 'invalid_request'],
      ['PUT', '/v1/accounts/w', '{not json', 400, 'invalid_request'],
      ['PUT', '/v1/accounts/w', { client_id: 5 }, 400, 'invalid_request'],
      ['PUT', '/v1/accounts/w?check=maybe', { client_id: 'c', token_endpoint: 'https://a.example/token' }, 400, 'invalid_request'],
      ['PATCH', '/v1/accounts/ghost', { hosts: [] }, 404, 'not_found'],
      ['POST', '/v1/token', { account: 'ghost' }, 404, 'not_found'],
      ['POST', '/v1/token', {}, 400, 'invalid_request'],
    ] as const) {
      const r = await json(method, p, body);
      expect([method, p, r.status]).toEqual([method, p, status]);
      const b = (await r.json()) as { error: { code: string; message: string } };
      expect(b.error.code).toBe(code);
      expect(typeof b.error.message).toBe('string');
    }
  });

  it('adds, patches and serves an account, then imports and refreshes', async () => {
    const put = await json('PUT', '/v1/accounts/w', { client_id: 'c', token_endpoint: 'https://a.example/token', hosts: ['a.example'] });
    expect(put.status).toBe(201);
    const patch = await json('PATCH', '/v1/accounts/w', { scopes: ['read'] });
    expect(await patch.json()).toMatchObject({ name: 'w', scopes: ['read'], hosts: ['a.example'], status: 'no_grant' });
    const noGrant = await json('POST', '/v1/token', { account: 'w' });
    expect(noGrant.status).toBe(409);
    const imp = await json('POST', '/v1/accounts/w/import', { refresh_token: 'rt-1' });
    expect(imp.status).toBe(200);
    const tok = await json('POST', '/v1/token', { account: 'w' });
    expect(await tok.json()).toMatchObject({ account: 'w', access_token: 'at-fresh', token_type: 'Bearer' });
    const moved = await json('PATCH', '/v1/accounts/w', { client_id: 'other' });
    expect(moved.status).toBe(409);
    expect(((await moved.json()) as { error: { code: string } }).error.code).toBe('conflict');
  });
});
