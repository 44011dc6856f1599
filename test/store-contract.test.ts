/**
 * The Store contract (src/daemon/store/types.ts), run against every store: the SQLite store
 * on real files, a fleet's PostgreSQL store on the private cluster the fleet tests start (one
 * database per store), and the memory store the broker's unit tests use. What only SQLite
 * does (files, modes, migrations, the WAL) is in store.test.ts.
 *
 * Where the stores must differ, the test says so (`lone` / `fleet` below), and so does a
 * comment in the store.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../src/daemon/log.js';
import { loadOrCreateKey } from '../src/daemon/store/crypto.js';
import { GenerationMismatchError, StoreError } from '../src/daemon/store/errors.js';
import { openPostgresStore } from '../src/daemon/store/postgres-store.js';
import { openStore } from '../src/daemon/store/sqlite-store.js';
import type { GrantRecord, LoginRecord, Store, TokenUpdate } from '../src/daemon/store/types.js';
import { MemoryStore } from './support/memory-store.js';
import { sharedPostgres, type TestPostgres } from './support/postgres.js';

let clock = 1_700_000_000_000;
const now = () => clock;
let dir: string;
let pg: TestPostgres | undefined;
let databases = 0;
let ready: string[] = [];

/**
 * A new database of the cluster for one PostgreSQL store (its URL, with the password):
 * made a dozen at a time, because psql's start and CREATE DATABASE's checkpoint cost most of
 * a test when made one by one.
 */
async function newDatabase(): Promise<string> {
  if (ready.length === 0) {
    const names = Array.from({ length: 12 }, () => `${pg!.database}_contract_${++databases}`);
    await pg!.sql(names.map((n) => `CREATE DATABASE ${n} OWNER fleet;`).join('\n'), 'postgres');
    ready = names;
  }
  const url = new URL(pg!.url);
  url.password = pg!.password;
  url.pathname = `/${ready.shift()!}`;
  return url.href;
}

/** One store, and a second one on the same data (the daemon restarted, or another daemon of the fleet). */
interface Opened {
  store: Store;
  reopen(): Promise<Store>;
  /** A fleet's: a daemon on another host sharing the database. */
  another?(): Promise<Store>;
  /** The real stores': run SQL on the stored rows behind the store's back (tables unqualified). */
  tamper?(sql: string): Promise<void>;
}

interface Kind {
  name: string;
  /** A fleet's store: several daemons share it, its marks name the daemon, its lock spans daemons. */
  fleet: boolean;
  open(): Promise<Opened>;
}

const KINDS: Kind[] = [
  {
    name: 'sqlite',
    fleet: false,
    async open() {
      const file = path.join(dir, 'data', 'tokend.db');
      const key = loadOrCreateKey(path.join(dir, 'config', 'key'));
      const tamper = async (sql: string) => {
        const raw = new Database(file);
        try {
          raw.exec(sql);
        } finally {
          raw.close();
        }
      };
      return { store: openStore({ file, key, now }), reopen: async () => openStore({ file, key, now }), tamper };
    },
  },
  {
    name: 'postgres',
    fleet: true,
    async open() {
      const url = await newDatabase();
      const keyFile = path.join(dir, 'config', 'key');
      const open = (node = 'contract-host:/data') =>
        openPostgresStore({
          url,
          keyFile,
          node,
          log: createLogger('error', () => undefined),
          lockTimeouts: () => ({ waitMs: 10_000, holdMs: 30_000 }),
          now,
        });
      const tamper = async (sql: string) => void (await pg!.sql(`SET search_path = tokend; ${sql}`, new URL(url).pathname.slice(1)));
      return { store: await open(), reopen: () => open(), another: () => open('other-host:/data'), tamper };
    },
  },
  {
    name: 'memory',
    fleet: false,
    async open() {
      const store = new MemoryStore(now);
      // Nothing outlives the object: the same data is the same store.
      return { store, reopen: async () => store };
    },
  },
];

beforeAll(async () => {
  pg = await sharedPostgres();
});
afterAll(async () => {
  await pg?.close();
});

function tokens(over: Partial<TokenUpdate> = {}): TokenUpdate {
  return { access_token: 'at-1', token_type: 'Bearer', expires_at: clock + 3_600_000, obtained_at: clock, scope: 'read write', ...over };
}

/** The rejection of `p`, which must reject. */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe.each(KINDS)('the $name store', (kind) => {
  let opened: Opened;
  let s: Store;
  const others: Store[] = [];
  /** Another store on the same data, closed after the test. */
  const reopen = async () => {
    const o = await opened.reopen();
    if (o !== s) others.push(o);
    return o;
  };
  /** What only a fleet's grant rows carry: who holds the in-flight mark. */
  const by = (holder: string | null = null): Partial<GrantRecord> => (kind.fleet ? { in_flight_by: holder } : {});
  /** A grant just written whole or committed: active, no mark, no error. */
  const settled = () => ({ status: 'active', in_flight_since: null, in_flight_for: null, ...by(), last_error: null });

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), `tokend-contract-${kind.name}-`));
    clock = 1_700_000_000_000;
    opened = await kind.open();
    s = opened.store;
  });
  afterEach(async () => {
    for (const o of others.splice(0)) await o.close();
    await s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  describe('grants', () => {
    it('round-trips a grant with every field, also through another store on the same data', async () => {
      expect(await s.getGrant('work')).toBeUndefined();
      const boundTo = '{"driver":"oauth2","issuer":"https://idp.example","client_id":"cli"}';
      const written = await s.replaceGrant('work', {
        refresh_token: 'rt-1',
        bound_to: boundTo,
        ...tokens(),
        refresh_expires_at: clock + 9_000_000,
      });
      const expected = {
        account: 'work',
        refresh_token: 'rt-1',
        access_token: 'at-1',
        token_type: 'Bearer',
        expires_at: clock + 3_600_000,
        obtained_at: clock,
        scope: 'read write',
        generation: 1,
        ...settled(),
        updated_at: clock,
        bound_to: boundTo,
        refresh_expires_at: clock + 9_000_000,
        granted_at: clock,
        refreshed_at: null,
      };
      expect(written).toStrictEqual(expected);
      expect(await s.getGrant('work')).toStrictEqual(expected);
      expect(await (await reopen()).getGrant('work')).toStrictEqual(expected);
    });

    it('stores a grant that has only a refresh token (an import)', async () => {
      const g = await s.replaceGrant('imp', { refresh_token: 'rt-imported', bound_to: 'id' });
      expect(g).toMatchObject({
        refresh_token: 'rt-imported',
        access_token: null,
        token_type: null,
        expires_at: null,
        obtained_at: null,
        scope: null,
        generation: 1,
      });
    });

    it('keeps counting generations across logins and refreshes, so a refresh from before a login cannot commit over it', async () => {
      expect((await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id' })).generation).toBe(1);
      expect((await s.commitRefresh('work', 1, tokens({ refresh_token: 'rt-2' }))).generation).toBe(2);
      expect((await s.commitRefresh('work', 2, tokens({ refresh_token: 'rt-3' }))).generation).toBe(3);
      expect((await s.replaceGrant('work', { refresh_token: 'rt-login', bound_to: 'id' })).generation).toBe(4);
      expect(await rejection(s.commitRefresh('work', 3, tokens({ refresh_token: 'rt-late' })))).toBeInstanceOf(GenerationMismatchError);
      expect((await s.getGrant('work'))!.refresh_token).toBe('rt-login');
    });

    it('records when a grant was obtained (written whole) and last refreshed: refreshes keep the first, a new grant resets both', async () => {
      const start = clock;
      expect(await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id', ...tokens() })).toMatchObject({
        granted_at: start,
        refreshed_at: null,
      });
      clock += 1000;
      expect(await s.commitRefresh('work', 1, tokens({ refresh_token: 'rt-2' }))).toMatchObject({ granted_at: start, refreshed_at: clock });
      clock += 1000;
      await s.commitRefresh('work', 2, tokens({ refresh_token: 'rt-3' }));
      expect(await (await reopen()).getGrant('work')).toMatchObject({ granted_at: start, refreshed_at: clock });
      expect((await s.listGrants())[0]).toMatchObject({ granted_at: start, refreshed_at: clock });
      clock += 1000;
      expect(await s.replaceGrant('work', { refresh_token: 'rt-login', bound_to: 'id' })).toMatchObject({
        granted_at: clock,
        refreshed_at: null,
      });
    });

    it('replaces a grant and the secrets that came with it in one commit, and ends any in-flight mark', async () => {
      await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id' }, { rd_client_id: 'c1', rd_client_secret: 's1' });
      await s.markInFlight('work', clock);
      clock += 1000;
      const g = await s.replaceGrant('work', { refresh_token: 'rt-2', bound_to: 'id-2' }, { rd_client_id: 'c2', rd_client_secret: 's2' });
      expect(g).toMatchObject({
        refresh_token: 'rt-2',
        bound_to: 'id-2',
        generation: 2,
        status: 'active',
        in_flight_since: null,
        in_flight_for: null,
        ...by(),
        updated_at: clock,
      });
      expect(await s.getSecrets('work')).toEqual(
        new Map([
          ['rd_client_id', 'c2'],
          ['rd_client_secret', 's2'],
        ]),
      );
    });

    it('lists every grant in account order without decrypting a token: whether each exists, and the times', async () => {
      await s.replaceGrant('b', { refresh_token: 'rt-b', bound_to: 'id' });
      await s.replaceGrant('a', { refresh_token: 'rt-a', bound_to: 'id', ...tokens({ access_token: 'at-a' }) });
      await s.replaceGrant('c', { refresh_token: null, bound_to: 'id', ...tokens({ access_token: 'at-c' }) });
      const listed = await s.listGrants();
      expect(listed.map((g) => [g.account, g.has_refresh_token, g.has_access_token, g.generation, g.expires_at])).toEqual([
        ['a', true, true, 1, clock + 3_600_000],
        ['b', true, false, 1, null],
        ['c', false, true, 1, clock + 3_600_000],
      ]);
      for (const g of listed) expect(g).not.toHaveProperty('refresh_token');
      for (const g of listed) expect(g).not.toHaveProperty('access_token');
      expect(JSON.stringify(listed)).not.toMatch(/rt-|at-/);
    });

    it("reads one grant's access token without its refresh token", async () => {
      await s.replaceGrant('a', { refresh_token: 'rt-a', bound_to: 'id', ...tokens({ access_token: 'at-a' }) });
      const t = await s.getAccessToken('a');
      expect(t).toMatchObject({ account: 'a', access_token: 'at-a', generation: 1, status: 'active', bound_to: 'id' });
      expect(t).not.toHaveProperty('refresh_token');
      expect(await s.getAccessToken('nobody')).toBeUndefined();
    });

    it('pages through the access tokens of active grants in account order, without their refresh tokens', async () => {
      for (const a of ['d', 'b', 'a', 'c', 'e', 'g'])
        await s.replaceGrant(a, { refresh_token: `rt-${a}`, bound_to: 'id', ...tokens({ access_token: `at-${a}` }) });
      await s.replaceGrant('f', { refresh_token: 'rt-f', bound_to: 'id' }); // no access token
      await s.setStatus('c', 'reauth_required', 'refused'); // not servable
      const pages: string[][] = [];
      let after: string | undefined;
      for (;;) {
        const page = await s.listAccessTokens(after, 2);
        if (page.length === 0) break;
        expect(page.length).toBeLessThanOrEqual(2);
        expect(JSON.stringify(page)).not.toContain('rt-');
        pages.push(page.map((t) => `${t.account}=${t.access_token}`));
        after = page.at(-1)!.account;
      }
      expect(pages).toEqual([['a=at-a', 'b=at-b'], ['d=at-d', 'e=at-e'], ['g=at-g']]);
    });

    it('pages through every grant in account order, whatever its status, nothing decrypted', async () => {
      for (const a of ['d', 'b', 'a', 'c', 'e'])
        await s.replaceGrant(a, { refresh_token: `rt-${a}`, bound_to: 'id', ...tokens({ access_token: `at-${a}` }) });
      await s.setStatus('c', 'reauth_required', 'refused');
      const pages: string[][] = [];
      let after: string | undefined;
      for (;;) {
        const page = await s.listGrants({ after, limit: 2 });
        if (page.length === 0) break;
        expect(JSON.stringify(page)).not.toMatch(/[ar]t-/);
        pages.push(page.map((g) => `${g.account}:${g.status}`));
        after = page.at(-1)!.account;
      }
      expect(pages).toEqual([['a:active', 'b:active'], ['c:reauth_required', 'd:active'], ['e:active']]);
      expect((await s.listGrants()).map((g) => g.account)).toEqual(['a', 'b', 'c', 'd', 'e']);
    });

    it('records which provider and client issued grants, many in one call, and creates none', async () => {
      await s.replaceGrant('a', { refresh_token: 'rt-a', bound_to: 'old' });
      await s.replaceGrant('b', { refresh_token: 'rt-b', bound_to: 'old' });
      clock += 1000;
      await s.setBindings([
        { account: 'a', boundTo: 'new-a' },
        { account: 'b', boundTo: 'new-b' },
        { account: 'nobody', boundTo: 'new' },
      ]);
      await s.setBindings([]);
      expect(await s.getGrant('a')).toMatchObject({ bound_to: 'new-a', generation: 1, refresh_token: 'rt-a', updated_at: clock });
      expect((await s.getGrant('b'))!.bound_to).toBe('new-b');
      expect(await s.getGrant('nobody')).toBeUndefined();
      expect((await s.listGrants()).map((g) => g.bound_to)).toEqual(['new-a', 'new-b']);
    });

    it('deletes one grant and leaves other accounts, and its secrets until deleteSecrets', async () => {
      await s.replaceGrant('a', { refresh_token: 'rt-a', bound_to: 'id' }, { client_secret: 'cs-a' });
      await s.replaceGrant('b', { refresh_token: 'rt-b', bound_to: 'id' });
      await s.deleteGrant('a');
      await s.deleteGrant('nobody');
      expect(await s.getGrant('a')).toBeUndefined();
      expect((await s.getGrant('b'))!.refresh_token).toBe('rt-b');
      expect(await s.getSecret('a', 'client_secret')).toBe('cs-a');
    });
  });

  describe('rotation commits', () => {
    it('commit new tokens and end the in-flight mark, the refusal and its error, and return what a read returns', async () => {
      await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id', ...tokens() });
      await s.markInFlight('work', clock);
      await s.setStatus('work', 'reauth_required', 'invalid_grant');
      clock += 1000;
      const g = await s.commitRefresh(
        'work',
        1,
        tokens({ access_token: 'at-2', refresh_token: 'rt-2', scope: null, expires_at: null, refresh_expires_at: clock + 5000 }),
      );
      expect(g).toMatchObject({
        refresh_token: 'rt-2',
        access_token: 'at-2',
        scope: null,
        expires_at: null,
        obtained_at: clock,
        refresh_expires_at: clock + 5000,
        generation: 2,
        ...settled(),
        updated_at: clock,
        bound_to: 'id',
      });
      // What the commit returns is the stored grant, field for field, in every store.
      expect(g).toStrictEqual(await s.getGrant('work'));
    });

    it('keep the old refresh token and its expiry when the provider did not rotate it (RFC 6749 §6)', async () => {
      await s.replaceGrant('work', { refresh_token: 'rt-keep', bound_to: 'id', ...tokens(), refresh_expires_at: clock + 9000 });
      const g = await s.commitRefresh('work', 1, tokens({ access_token: 'at-2' }));
      expect(g).toMatchObject({ refresh_token: 'rt-keep', access_token: 'at-2', refresh_expires_at: clock + 9000 });
      expect(g).toStrictEqual(await (await reopen()).getGrant('work'));
      // A new expiry without a new token is the old token's new expiry.
      expect(await s.commitRefresh('work', 2, tokens({ access_token: 'at-3', refresh_expires_at: clock + 20_000 }))).toMatchObject({
        refresh_token: 'rt-keep',
        refresh_expires_at: clock + 20_000,
      });
      // A rotated token without an expiry has none, whatever the old one had.
      expect(await s.commitRefresh('work', 3, tokens({ access_token: 'at-4', refresh_token: 'rt-new' }))).toMatchObject({
        refresh_token: 'rt-new',
        refresh_expires_at: null,
      });
    });

    it('refuse a stale generation and leave the grant alone', async () => {
      await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id', ...tokens() });
      await s.commitRefresh('work', 1, tokens({ refresh_token: 'rt-2', access_token: 'at-2' }));
      const err = await rejection(s.commitRefresh('work', 1, tokens({ refresh_token: 'rt-stale', access_token: 'at-stale' })));
      expect(err).toBeInstanceOf(GenerationMismatchError);
      expect(err).toMatchObject({ message: 'generation mismatch', code: 'generation_mismatch', expected: 1, stored: 2 });
      expect(await s.getGrant('work')).toMatchObject({ refresh_token: 'rt-2', access_token: 'at-2', generation: 2 });
    });

    it('refuse a commit for a grant deleted meanwhile', async () => {
      await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id' });
      await s.deleteGrant('work');
      expect(await rejection(s.commitRefresh('work', 1, tokens()))).toMatchObject({
        code: 'generation_mismatch',
        expected: 1,
        stored: null,
      });
      expect(await s.getGrant('work')).toBeUndefined();
    });

    it('racing on one generation: exactly one commit wins, the others are refused, and the winner is stored', async () => {
      await s.replaceGrant('work', { refresh_token: 'rt-0', bound_to: 'id', ...tokens() });
      const second = await reopen();
      // Half through this store, half through another on the same data (another daemon of a
      // fleet; the SQLite file's second connection): all sent before any has answered.
      const racers = Array.from({ length: 8 }, (_, i) =>
        (i % 2 ? second : s).commitRefresh('work', 1, tokens({ refresh_token: `rt-${i}`, access_token: `at-${i}` })),
      );
      const settled = await Promise.allSettled(racers);
      const won = settled.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      expect(won).toHaveLength(1);
      for (const r of settled)
        if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'generation_mismatch', expected: 1, stored: 2 });
      const winner = won[0]!;
      expect(await s.getGrant('work')).toMatchObject({ generation: 2, refresh_token: `rt-${winner}`, access_token: `at-${winner}` });
    });
  });

  describe('in-flight marks', () => {
    it('mark a refresh in flight durably, naming the daemon in a fleet, and clear it', async () => {
      await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id' });
      clock += 1000;
      await s.markInFlight('work', clock - 5);
      const holder = s.fleet?.instance ?? null;
      expect(await (await reopen()).getGrant('work')).toMatchObject({
        in_flight_since: clock - 5,
        in_flight_for: null,
        ...by(holder),
        updated_at: clock,
        refresh_token: 'rt-1',
      });
      // The listings say the same: a starting daemon reads its marks there, and a fleet's
      // mark of another daemon is not this one's interrupted refresh (Broker.start).
      const listed = (await (await reopen()).listGrants()).find((g) => g.account === 'work');
      expect(listed).toMatchObject({ in_flight_since: clock - 5, in_flight_for: null, ...by(holder) });
      clock += 1000;
      await s.clearInFlight('work');
      expect(await s.getGrant('work')).toMatchObject({ in_flight_since: null, in_flight_for: null, ...by(), updated_at: clock });
      await s.clearInFlight('nobody');
      expect(await s.getGrant('nobody')).toBeUndefined();
    });

    it('refuse to mark a refresh in flight for an account without a grant', async () => {
      const err = await rejection(s.markInFlight('nobody', clock));
      expect(err).toBeInstanceOf(StoreError);
      expect(err).toMatchObject({ code: 'no_grant' });
      expect(await s.getGrant('nobody')).toBeUndefined();
    });

    it(
      kind.fleet
        ? 'abandoned: the mark stays as the witness, and names no daemon to wait for'
        : 'abandoned: the mark stays as the witness (a lone daemon has no name to drop)',
      async () => {
        await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id' });
        await s.markInFlight('work', clock);
        await s.abandonInFlight('work');
        await s.abandonInFlight('nobody');
        expect(await s.getGrant('work')).toMatchObject({ in_flight_since: clock, ...by(null) });
      },
    );

    it('set a status and its error and end the mark in one commit, keeping tokens and secrets', async () => {
      await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id', ...tokens() }, { client_secret: 'cs-1' });
      await s.markInFlight('work', clock);
      clock += 1000;
      await s.setStatus('work', 'reauth_required', 'the refresh token was revoked');
      const g = await (await reopen()).getGrant('work');
      expect(g).toMatchObject({
        status: 'reauth_required',
        last_error: 'the refresh token was revoked',
        in_flight_since: null,
        in_flight_for: null,
        ...by(),
        refresh_token: 'rt-1',
        access_token: 'at-1',
        generation: 1,
        updated_at: clock,
      });
      expect(await s.getSecret('work', 'client_secret')).toBe('cs-1');
      await s.setStatus('work', 'active', null);
      expect(await s.getGrant('work')).toMatchObject({ status: 'active', last_error: null });
      await s.setStatus('nobody', 'reauth_required', 'x');
      expect(await s.getGrant('nobody')).toBeUndefined();
    });

    it('mark an import on the grant, which keeps its tokens; ending the import leaves the grant as it was', async () => {
      const before = await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id', ...tokens() });
      await s.markImport('work', clock + 5, { boundTo: 'other', lastError: 'unused: there is a grant' });
      expect(await (await reopen()).getGrant('work')).toStrictEqual({
        ...before,
        in_flight_since: clock + 5,
        in_flight_for: 'import',
        ...by(s.fleet?.instance),
      });
      await s.endImport('work');
      expect(await s.getGrant('work')).toStrictEqual(before);
    });

    it('hold an import mark on a placeholder where there is no grant; ending the import leaves no grant', async () => {
      await s.markImport('work', clock + 5, { boundTo: 'id', lastError: 'an import was interrupted' });
      expect(await s.getGrant('work')).toMatchObject({
        generation: 0,
        status: 'reauth_required',
        refresh_token: null,
        access_token: null,
        in_flight_since: clock + 5,
        in_flight_for: 'import',
        ...by(s.fleet?.instance),
        last_error: 'an import was interrupted',
        bound_to: 'id',
      });
      expect((await s.listGrants()).map((g) => [g.account, g.generation, g.has_refresh_token])).toEqual([['work', 0, false]]);
      await s.endImport('work');
      expect(await s.getGrant('work')).toBeUndefined();
      // A proven import replaces the placeholder: its first generation, the mark gone.
      await s.markImport('work', clock + 6, { boundTo: 'id', lastError: 'x' });
      expect(await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id', ...tokens() })).toMatchObject({
        generation: 1,
        status: 'active',
        in_flight_since: null,
        in_flight_for: null,
        last_error: null,
      });
    });

    it("are told apart: ending an import leaves a refresh's mark, and a refresh's mark replaces an import's", async () => {
      await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id' });
      await s.markInFlight('work', clock);
      await s.endImport('work');
      expect(await s.getGrant('work')).toMatchObject({ in_flight_since: clock, in_flight_for: null });
      await s.markImport('work', clock + 1, { boundTo: 'id', lastError: 'x' });
      await s.markInFlight('work', clock + 2);
      expect(await s.getGrant('work')).toMatchObject({ in_flight_since: clock + 2, in_flight_for: null });
      await s.endImport('nobody');
    });
  });

  describe('secrets', () => {
    it('round-trip, overwrite and delete per account', async () => {
      expect(await s.getSecret('work', 'client_secret')).toBeUndefined();
      expect(await s.getSecrets('work')).toEqual(new Map());
      await s.putSecret('work', 'client_secret', 'cs-1');
      await s.putSecret('work', 'password', 'pw-1');
      await s.putSecret('home', 'client_secret', 'cs-home');
      await s.putSecret('work', 'client_secret', 'cs-2');
      expect(await s.getSecret('work', 'client_secret')).toBe('cs-2');
      expect(await (await reopen()).getSecrets('work')).toEqual(
        new Map([
          ['client_secret', 'cs-2'],
          ['password', 'pw-1'],
        ]),
      );
      await s.deleteSecrets('work');
      expect(await s.getSecret('work', 'client_secret')).toBeUndefined();
      expect(await s.getSecrets('work')).toEqual(new Map());
      expect(await s.getSecret('home', 'client_secret')).toBe('cs-home');
    });

    it('putSecretIfAbsent stores only the first value and answers the one stored (two makers, one key)', async () => {
      const [a, b] = await Promise.all([
        s.putSecretIfAbsent('work', 'dpop_key', 'key-a'),
        s.putSecretIfAbsent('work', 'dpop_key', 'key-b'),
      ]);
      expect(a).toBe(b);
      expect(['key-a', 'key-b']).toContain(a);
      expect(await s.putSecretIfAbsent('work', 'dpop_key', 'key-c')).toBe(a);
      expect(await (await reopen()).getSecret('work', 'dpop_key')).toBe(a);
      expect(await s.putSecretIfAbsent('home', 'dpop_key', 'key-h')).toBe('key-h');
    });

    it('round-trip non-ASCII and empty values', async () => {
      await s.putSecret('work', 'password', 'pässwörd 🔑');
      await s.putSecret('work', 'empty', '');
      expect(await s.getSecret('work', 'password')).toBe('pässwörd 🔑');
      expect(await s.getSecret('work', 'empty')).toBe('');
    });
  });

  describe('sealing', () => {
    // The memory store seals nothing: it never writes anything down.
    it.runIf(kind.name !== 'memory')(
      'binds each sealed value to its row and column: moved elsewhere, it does not open, and the error holds no value',
      async () => {
        await s.replaceGrant(
          'alice',
          { refresh_token: 'rt-alice', bound_to: 'id', ...tokens({ access_token: 'at-alice' }) },
          { client_secret: 'cs-alice' },
        );
        await s.replaceGrant(
          'bob',
          { refresh_token: 'rt-bob', bound_to: 'id', ...tokens({ access_token: 'at-bob' }) },
          { client_secret: 'cs-bob' },
        );
        await s.putLogin({
          id: 'l-a',
          account: 'alice',
          flow: 'browser',
          status: 'pending',
          data: {},
          created_at: clock,
          updated_at: clock,
          secrets: { state: 'st-a' },
        });
        await s.putLogin({
          id: 'l-b',
          account: 'bob',
          flow: 'browser',
          status: 'pending',
          data: {},
          created_at: clock,
          updated_at: clock,
          secrets: { state: 'st-b' },
        });
        await opened.tamper!(`
        UPDATE grants SET refresh_token = (SELECT refresh_token FROM grants WHERE account = 'alice') WHERE account = 'bob';
        UPDATE grants SET access_token = refresh_token WHERE account = 'alice';
        UPDATE secrets SET value = (SELECT value FROM secrets WHERE account = 'alice') WHERE account = 'bob';
        UPDATE login_secrets SET secrets = (SELECT secrets FROM login_secrets WHERE login_id = 'l-a') WHERE login_id = 'l-b';`);
        const failures = [
          [await rejection(s.getGrant('bob')), 'grant:bob:refresh_token'],
          [await rejection(s.getAccessToken('alice')), 'grant:alice:access_token'],
          [await rejection(s.getSecret('bob', 'client_secret')), 'secret:bob:client_secret'],
          [await rejection(s.getLogin('l-b')), 'login:l-b:secrets'],
        ] as const;
        for (const [err, where] of failures) {
          expect(err).toBeInstanceOf(StoreError);
          expect(err).toMatchObject({ code: 'decrypt_failed' });
          expect((err as Error).message).toContain(where);
          expect((err as Error).message).not.toMatch(/rt-|at-|cs-|st-/);
        }
        // The rows nobody touched still open.
        expect(await s.getSecret('alice', 'client_secret')).toBe('cs-alice');
        expect((await s.getLogin('l-a'))!.secrets).toEqual({ state: 'st-a' });
      },
    );
  });

  describe('logins', () => {
    const login = (over: Partial<LoginRecord> = {}): LoginRecord => ({
      id: 'login-1',
      account: 'work',
      flow: 'browser',
      status: 'pending',
      data: { expires_at: clock + 600_000, error: null, user_code: 'ABCD' },
      created_at: clock,
      updated_at: clock,
      ...over,
    });
    const secrets = { state: 'st-1', code_verifier: 'cv-1', authorization_url: 'https://id.example/auth?state=st-1' };

    it('round-trip and update by id', async () => {
      expect(await s.getLogin('login-1')).toBeUndefined();
      await s.putLogin(login());
      expect(await s.getLogin('login-1')).toStrictEqual(login());
      await s.putLogin(login({ status: 'failed', data: { error: 'access_denied' }, updated_at: clock + 1 }));
      expect(await (await reopen()).getLogin('login-1')).toStrictEqual(
        login({ status: 'failed', data: { error: 'access_denied' }, updated_at: clock + 1 }),
      );
    });

    it('land in the order they were written, unawaited', async () => {
      const writes = [
        s.putLogin(login()),
        s.putLogin(login({ status: 'active', updated_at: clock + 1 })),
        s.putLogin(login({ status: 'expired', updated_at: clock + 2 })),
      ];
      await Promise.all(writes);
      expect((await s.getLogin('login-1'))!.status).toBe('expired');
    });

    it('list newest first, by status when asked', async () => {
      await s.putLogin(login({ id: 'l-old', created_at: clock - 2, status: 'active' }));
      await s.putLogin(login({ id: 'l-new', created_at: clock }));
      await s.putLogin(login({ id: 'l-mid', created_at: clock - 1 }));
      expect((await s.listLogins()).map((l) => l.id)).toEqual(['l-new', 'l-mid', 'l-old']);
      expect((await s.listLogins({ status: 'pending' })).map((l) => l.id)).toEqual(['l-new', 'l-mid']);
      expect(await s.listLogins({ status: 'expired' })).toEqual([]);
      // Its own: every login when one daemon has the store; those this daemon started in a fleet (these).
      expect((await s.listLogins({ own: true, status: 'pending' })).map((l) => l.id)).toEqual(['l-new', 'l-mid']);
    });

    it("name an account's most recent finished login", async () => {
      await s.putLogin(login({ id: 'a', status: 'failed', updated_at: clock + 1 }));
      await s.putLogin(login({ id: 'b', status: 'active', updated_at: clock + 2 }));
      await s.putLogin(login({ id: 'c', status: 'pending', updated_at: clock + 3 }));
      await s.putLogin(login({ id: 'd', account: 'home', status: 'active', updated_at: clock + 4 }));
      expect((await s.lastFinishedLogin('work'))!.id).toBe('b');
      expect(await s.lastFinishedLogin('nobody')).toBeUndefined();
    });

    it('prune finished logins older than a time, never pending ones, and say how many', async () => {
      await s.putLogin(login({ id: 'old-done', status: 'active', updated_at: clock - 10 }));
      await s.putLogin(login({ id: 'old-pending', updated_at: clock - 10, secrets }));
      await s.putLogin(login({ id: 'new-done', status: 'expired', updated_at: clock }));
      expect(await s.pruneLogins(clock)).toBe(1);
      expect((await s.listLogins()).map((l) => l.id).sort()).toEqual(['new-done', 'old-pending']);
      expect((await s.getLogin('old-pending'))!.secrets).toEqual(secrets);
      expect(await s.pruneLogins(clock)).toBe(0);
    });

    it('find a login by the state of its callback, through a put without secrets, and after it ends', async () => {
      expect(await s.findLoginByState('st-1')).toBeUndefined();
      await s.putLogin(login({ secrets }));
      await s.putLogin(login({ id: 'login-2', secrets: { ...secrets, state: 'st-2' } }));
      await s.putLogin(login({ id: 'device', flow: 'device', secrets: { device_code: 'dc' } }));
      expect(await s.findLoginByState('st-1')).toStrictEqual(login({ secrets }));
      expect((await s.findLoginByState('st-2'))!.id).toBe('login-2');
      await s.putLogin(login({ updated_at: clock + 1 }));
      expect((await (await reopen()).findLoginByState('st-1'))!.secrets).toEqual(secrets);
      await s.putLogin(login({ status: 'active', updated_at: clock + 2 }));
      // Ended: still found (a repeated callback is told the login is over), its secrets gone.
      expect(await s.findLoginByState('st-1')).toStrictEqual(login({ status: 'active', updated_at: clock + 2 }));
      expect(await s.findLoginByState('st-')).toBeUndefined();
      expect(await s.findLoginByState('dc')).toBeUndefined();
    });

    it("keep a pending login's sealed secrets, also through a put without them, and drop them when it ends", async () => {
      await s.putLogin(login({ secrets }));
      expect((await s.getLogin('login-1'))!.secrets).toEqual(secrets);
      await s.putLogin(login({ updated_at: clock + 1 }));
      expect((await (await reopen()).listLogins({ status: 'pending' }))[0]!.secrets).toEqual(secrets);
      await s.putLogin(login({ secrets: { device_code: 'dc-2' }, updated_at: clock + 2 }));
      expect((await s.getLogin('login-1'))!.secrets).toEqual({ device_code: 'dc-2' });
      // A finished login has none, even if the put carried them.
      await s.putLogin(login({ status: 'active', updated_at: clock + 3, secrets }));
      const done = (await s.getLogin('login-1'))!;
      expect(done.status).toBe('active');
      expect(done).not.toHaveProperty('secrets');
      expect(await s.lastFinishedLogin('work')).not.toHaveProperty('secrets');
      // And a finished login put back to pending does not find old ones.
      await s.putLogin(login({ updated_at: clock + 4 }));
      expect(await s.getLogin('login-1')).not.toHaveProperty('secrets');
    });
  });

  describe('audit rows', () => {
    it('append in batches and list newest first, per account and limited, the client cut to its bound', async () => {
      await s.appendAudit([
        { at: 1, account: 'a', client: 'git/2.39', action: 'token' },
        { at: 3, account: 'b', client: 'curl', action: 'token' },
        { at: 2, account: 'a', client: 'x'.repeat(500), action: 'refresh' },
      ]);
      await s.appendAudit([]);
      await s.appendAudit([{ at: 3, account: 'a', client: 'later', action: 'token' }]);
      expect((await s.listAudit()).map((e) => `${e.at}${e.account}`)).toEqual(['3a', '3b', '2a', '1a']);
      expect((await s.listAudit({ account: 'a' })).map((e) => e.at)).toEqual([3, 2, 1]);
      expect((await s.listAudit({ limit: 1 })).map(({ id: _id, ...e }) => e)).toStrictEqual([
        { at: 3, account: 'a', client: 'later', action: 'token', outcome: 'ok', code: null, task: null, detail: null },
      ]);
      expect((await s.listAudit({ account: 'a', limit: 2 }))[1]!.client).toBe('x'.repeat(200));
      expect(await s.listAudit({ account: 'nobody' })).toEqual([]);
    });

    it('refuse a limit that is not a positive integer', async () => {
      for (const limit of [0, -1, 1.5]) expect(await rejection(s.listAudit({ limit }))).toBeInstanceOf(RangeError);
    });

    it("keep each row's outcome, code, task and detail, and read them back as written", async () => {
      await s.appendAudit([
        {
          at: 5,
          account: 'work',
          client: '',
          action: 'login_failed',
          outcome: 'failed',
          code: 'access_denied',
          task: 't-1',
          detail: { login_id: 'l-1', flow: 'device' },
        },
        { at: 6, account: 'work', client: 'vault/1', action: 'account_changed', detail: { fields: ['scopes', 'client_secret'] } },
        { at: 7, account: 'work', client: 'vault/1', action: 'import', outcome: 'refused', code: 'conflict' },
        // A detail past its bound is left out, not cut into something that is not JSON.
        { at: 8, account: 'work', client: 'x', action: 'account_changed', detail: { fields: ['f'.repeat(3000)] } },
      ]);
      const rows = (await s.listAudit()).map(({ id: _id, ...e }) => e);
      expect(rows).toStrictEqual([
        { at: 8, account: 'work', client: 'x', action: 'account_changed', outcome: 'ok', code: null, task: null, detail: null },
        { at: 7, account: 'work', client: 'vault/1', action: 'import', outcome: 'refused', code: 'conflict', task: null, detail: null },
        {
          at: 6,
          account: 'work',
          client: 'vault/1',
          action: 'account_changed',
          outcome: 'ok',
          code: null,
          task: null,
          detail: { fields: ['scopes', 'client_secret'] },
        },
        {
          at: 5,
          account: 'work',
          client: '',
          action: 'login_failed',
          outcome: 'failed',
          code: 'access_denied',
          task: 't-1',
          detail: { login_id: 'l-1', flow: 'device' },
        },
      ]);
    });

    it('list by action and time (since inclusive, until exclusive), and page after a row without missing or repeating one', async () => {
      // Three rows at the same time: a page must end between two of them and go on.
      const at = [10, 20, 20, 20, 30, 40];
      await s.appendAudit(at.map((t, i) => ({ at: t, account: i % 2 ? 'a' : 'b', client: 'c', action: i === 5 ? 'logout' : 'token' })));
      expect((await s.listAudit({ action: 'logout' })).map((e) => e.at)).toEqual([40]);
      expect((await s.listAudit({ since: 20, until: 40 })).map((e) => e.at)).toEqual([30, 20, 20, 20]);
      expect((await s.listAudit({ account: 'a', since: 20 })).map((e) => e.at)).toEqual([40, 20, 20]);
      const seen: number[] = [];
      let after: { at: number; id: number } | undefined;
      for (let page = 0; page < 10; page++) {
        const rows = await s.listAudit({ limit: 2, after });
        if (rows.length === 0) break;
        seen.push(...rows.map((r) => r.id));
        after = { at: rows.at(-1)!.at, id: rows.at(-1)!.id };
      }
      const all = (await s.listAudit()).map((r) => r.id);
      expect(seen).toEqual(all);
      expect(new Set(seen).size).toBe(at.length);
    });

    it("find an account's rows among many accounts' (a burst of first reads, in small batches), by time, action and page, before and after the store has turns to spare, a prune and a reopen", async () => {
      const accounts = Array.from({ length: 300 }, (_, i) => `acct${i}`);
      let written = 0;
      /** `n` rows, 16 a batch as the audit log writes a burst, the accounts in a scrambled order, three rows a millisecond. */
      const burst = async (n: number) => {
        for (let i = 0; i < n; i += 16) {
          const batch = [];
          for (let k = i; k < Math.min(n, i + 16); k++, written++) {
            batch.push({
              at: 1_000 + Math.floor(written / 3),
              account: accounts[(written * 7919) % accounts.length]!,
              client: 'loadgen',
              action: written % 13 === 0 ? 'refresh' : 'token',
            });
          }
          await s.appendAudit(batch);
        }
      };
      const spare = () => new Promise((r) => setTimeout(r, 20));
      /** Every way of asking for an account's rows answers what the listing of all rows says of it. */
      const agrees = async (store: Store) => {
        const all = await store.listAudit({ limit: 100_000 });
        for (const account of ['acct0', 'acct17', 'acct299']) {
          const mine = all.filter((r) => r.account === account);
          expect(mine.length).toBeGreaterThan(0);
          expect((await store.listAudit({ account, limit: 100_000 })).map((r) => r.id)).toEqual(mine.map((r) => r.id));
          const some = mine.filter((r) => r.action === 'refresh' && r.at >= 1_500 && r.at < 3_000).map((r) => r.id);
          const asked = await store.listAudit({ account, action: 'refresh', since: 1_500, until: 3_000, limit: 100_000 });
          expect(asked.map((r) => r.id)).toEqual(some);
          const paged: number[] = [];
          let after: { at: number; id: number } | undefined;
          for (;;) {
            const rows = await store.listAudit({ account, limit: 7, after });
            if (rows.length === 0) break;
            paged.push(...rows.map((r) => r.id));
            after = { at: rows.at(-1)!.at, id: rows.at(-1)!.id };
          }
          expect(paged).toEqual(mine.map((r) => r.id));
        }
      };
      await burst(6_000);
      await agrees(s);
      await spare();
      await burst(3_000);
      await agrees(s);
      await spare();
      await agrees(s);
      expect(await s.pruneAudit({ before: 2_000, keep: 1_000_000 })).toBe(3_000);
      await agrees(s);
      // Everything pruned, then new rows: numbered again from where the store now stands.
      expect(await s.pruneAudit({ before: 1_000_000, keep: 1_000_000 })).toBe(6_000);
      await burst(1_000);
      await agrees(s);
      await agrees(await reopen());
    });

    it('prune rows older than the retention, then the oldest written past the bound, and say how many went', async () => {
      await s.appendAudit([10, 20, 30, 40, 50].map((t) => ({ at: t, account: 'work', client: 'c', action: 'token' })));
      expect(await s.pruneAudit({ before: 25, keep: 1000 })).toBe(2);
      expect((await s.listAudit()).map((e) => e.at)).toEqual([50, 40, 30]);
      // The bound keeps the newest written, even one written with an older time.
      await s.appendAudit([{ at: 35, account: 'work', client: 'c', action: 'logout' }]);
      expect(await s.pruneAudit({ before: 0, keep: 2 })).toBe(2);
      expect((await s.listAudit()).map((e) => `${e.at}${e.action}`)).toEqual(['50token', '35logout']);
      expect(await s.pruneAudit({ before: 0, keep: 2 })).toBe(0);
      expect(await s.pruneAudit({ before: 100, keep: 2 })).toBe(2);
      expect(await s.listAudit()).toEqual([]);
      expect(await rejection(s.pruneAudit({ before: 0, keep: -1 }))).toBeInstanceOf(RangeError);
    });
  });

  describe('the grant lock', () => {
    it('returns what it ran, and passes its failure on', async () => {
      expect(await s.withGrantLock('work', async () => 42)).toBe(42);
      const boom = new Error('boom');
      expect(await rejection(s.withGrantLock('work', async () => Promise.reject(boom)))).toBe(boom);
      // Released after a failure: the next holder gets it.
      expect(await s.withGrantLock('work', async () => 'again')).toBe('again');
    });

    it(
      kind.fleet
        ? 'holds one refresh of a grant at a time across daemons, and lets other grants through'
        : 'runs at once: one daemon per data folder (lock.ts) and its per-account queue already hold one refresh at a time',
      async () => {
        const second = await reopen();
        const events: string[] = [];
        let release!: () => void;
        const held = new Promise<void>((r) => (release = r));
        let entered!: () => void;
        const inside = new Promise<void>((r) => (entered = r));
        const first = s.withGrantLock('work', async () => {
          events.push('first in');
          entered();
          await held;
          events.push('first out');
        });
        await inside;
        const same = second.withGrantLock('work', async () => void events.push('same account in'));
        await second.withGrantLock('home', async () => void events.push('other account in'));
        if (kind.fleet) {
          // The other grant went through while this one is held; the same grant waits.
          expect(events).toEqual(['first in', 'other account in']);
          release();
          await Promise.all([first, same]);
          expect(events).toEqual(['first in', 'other account in', 'first out', 'same account in']);
        } else {
          await same;
          expect(events).toEqual(['first in', 'same account in', 'other account in']);
          release();
          await first;
        }
      },
    );
  });

  describe('the login lease', () => {
    it(
      kind.fleet
        ? 'is held by one daemon of the fleet at a time, per login, until released or its holder is gone'
        : 'is always granted: one daemon per data folder',
      async () => {
        const lease = await s.holdLogin('login-1');
        expect(lease).toBeDefined();
        expect(lease!.lost.aborted).toBe(false);
        if (!kind.fleet) {
          await lease!.release();
          expect(await s.holdLogin('login-1')).toBeDefined();
          return;
        }
        const other = await opened.another!();
        expect(await other.holdLogin('login-1')).toBeUndefined();
        const second = await other.holdLogin('login-2');
        expect(second).toBeDefined();
        await lease!.release();
        expect(lease!.lost.aborted).toBe(false);
        const taken = await other.holdLogin('login-1');
        expect(taken).toBeDefined();
        expect(await s.holdLogin('login-1')).toBeUndefined();
        // Its holder gone (its connections ended), the lease is free at once.
        await other.close();
        const back = await s.holdLogin('login-1');
        expect(back).toBeDefined();
        expect(await s.holdLogin('login-2')).toBeDefined();
        await back!.release();
      },
    );
  });

  describe('the fleet link', () => {
    it(
      kind.fleet ? 'is there, naming this daemon and the database without its password' : 'is absent: no other daemon shares this store',
      async () => {
        if (!kind.fleet) {
          expect(s.fleet).toBeUndefined();
          return;
        }
        const fleet = s.fleet!;
        expect(fleet.instance).toMatch(/^contract-host:\/data:\d+:[0-9a-f]{4}$/);
        expect(fleet.where).not.toContain(pg!.password);
        await s.replaceGrant('a', { refresh_token: 'rt-a', bound_to: 'id' });
        await s.replaceGrant('b', { refresh_token: 'rt-b', bound_to: 'id' });
        await s.commitRefresh('b', 1, tokens());
        await s.setStatus('a', 'reauth_required', 'refused');
        expect(await fleet.generations()).toEqual(
          new Map([
            ['a', { generation: 1, status: 'reauth_required' }],
            ['b', { generation: 2, status: 'active' }],
          ]),
        );
        // This daemon's marks are live while it is connected (no listener yet: counted live).
        expect(await fleet.holderAlive(fleet.instance)).toBe(true);
      },
    );

    it.runIf(kind.fleet)(
      "shares every daemon's logins (own: the ones it started), announces their writes, and keeps one audit log",
      async () => {
        const other = await opened.another!();
        others.push(other);
        expect(other.fleet!.instance).not.toBe(s.fleet!.instance);
        const heard: string[] = [];
        let listening!: () => void;
        const up = new Promise<void>((r) => (listening = r));
        other.fleet!.watch({ grantChanged: () => undefined, resync: () => listening() });
        other.fleet!.watchLogins((id, status) => heard.push(`${status}:${id}`));
        await up;
        const mine: LoginRecord = {
          id: 'l-1',
          account: 'work',
          flow: 'device',
          status: 'pending',
          data: {},
          created_at: clock,
          updated_at: clock,
          secrets: { device_code: 'dc' },
        };
        await s.putLogin(mine);
        await s.putLogin({ ...mine, id: 'l-2', status: 'failed', created_at: clock - 1 });
        expect((await other.getLogin('l-1'))!.secrets).toEqual({ device_code: 'dc' });
        expect((await other.listLogins()).map((l) => l.id)).toEqual(['l-1', 'l-2']);
        expect((await other.listLogins({ status: 'pending' })).map((l) => l.id)).toEqual(['l-1']);
        expect(await other.listLogins({ own: true })).toEqual([]);
        expect((await s.listLogins({ own: true, status: 'pending' })).map((l) => l.id)).toEqual(['l-1']);
        expect((await other.lastFinishedLogin('work'))!.id).toBe('l-2');
        // Every write is announced to the other daemons (status and id, nothing else); never to its writer.
        for (let i = 0; i < 200 && heard.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
        expect(heard).toEqual(['pending:l-1', 'failed:l-2']);
        // Any daemon prunes the fleet's finished logins.
        expect(await other.pruneLogins(clock + 1)).toBe(1);
        expect((await s.listLogins()).map((l) => l.id)).toEqual(['l-1']);
        // The grants and the audit log are the fleet's.
        await s.replaceGrant('work', { refresh_token: 'rt-1', bound_to: 'id' });
        await other.appendAudit([{ at: 1, account: 'work', client: 'git', action: 'token' }]);
        expect((await other.getGrant('work'))!.refresh_token).toBe('rt-1');
        expect(await s.listAudit()).toMatchObject([{ at: 1, account: 'work', client: 'git', action: 'token' }]);
        // One table: a prune by any daemon is the fleet's.
        expect(await other.pruneAudit({ before: 2, keep: 1000 })).toBe(1);
        expect(await s.listAudit()).toEqual([]);
      },
    );
  });
});
