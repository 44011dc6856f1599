/**
 * A fleet for tests: N real daemons (each its own TOKEND_HOME, so its own config.json, socket
 * and data folder) sharing one PostgreSQL database and one key file, as docs/fleet.md deploys
 * them. The database password reaches them in PGPASSWORD, never in the URL or argv.
 *
 * ```ts
 * const pg = await startPostgres();
 * const fleet = await startFleet(pg, 3, { proactive_refresh: false });
 * await fleet.addAccount(idp.issuer);              // account `work` on every daemon (PUT /v1/accounts/work)
 * await importConfGrant(fleet.daemons[0], idp);     // one grant, for all of them
 * await fleet.tokensAgree();                        // every daemon serves the same token
 * await fleet.cleanup();
 * ```
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { DaemonProcess, postConfGrant, putConfAccount, sleep, socketRequest, tempHome, writeSettings, type HttpResult } from './daemon.js';
import { startIdp, type IdpOptions, type TestIdp } from './idp.js';
import type { TestPostgres } from './postgres.js';

export interface TestFleet {
  daemons: DaemonProcess[];
  /** The key file every daemon uses (TOKEND_KEY_FILE). */
  keyFile: string;
  /** The environment of daemon `i` (for a restart, or a CLI run against it). */
  env(i: number): NodeJS.ProcessEnv;
  /** Account `work` for the IdP's client `conf` on every daemon (each host's own config.json), as `tokend add` writes it, through the socket API. */
  addAccount(issuer: string, name?: string): Promise<void>;
  /** Each daemon's current token for `account`, from `POST /v1/token`. */
  tokens(account?: string): Promise<string[]>;
  /** Wait until every daemon serves the same token (and return it). */
  tokensAgree(account?: string, timeoutMs?: number): Promise<string>;
  /** Everything every daemon logged so far. */
  logs(): string;
  cleanup(): Promise<void>;
}

/** Start `n` daemons on `pg`, with the same settings in each config.json; see the module comment. */
export async function startFleet(
  pg: TestPostgres,
  n: number,
  settings: Record<string, unknown> = {},
  /** `together`: start every daemon at once (on a new database, they race to create the schema). */
  opts: { url?: string; together?: boolean } = {},
): Promise<TestFleet> {
  const keyDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-key-'));
  const keyFile = path.join(keyDir, 'fleet.key');
  const homes = Array.from({ length: n }, () => tempHome());
  const daemons = homes.map((h) => {
    writeSettings(h.home, settings);
    h.env.TOKEND_DATABASE_URL = opts.url ?? pg.url;
    h.env.PGPASSWORD = pg.password;
    h.env.TOKEND_KEY_FILE = keyFile;
    return new DaemonProcess(h.home, h.env);
  });
  const cleanup = async () => {
    await Promise.all(daemons.map((d) => d.stop('SIGKILL')));
    for (const h of homes) h.cleanup();
    fs.rmSync(keyDir, { recursive: true, force: true });
  };
  try {
    // The first daemon creates the schema and the key; the others join it.
    if (!opts.together) await daemons[0]!.start();
    await Promise.all(daemons.slice(opts.together ? 0 : 1).map((d) => d.start()));
  } catch (err) {
    await cleanup();
    throw err;
  }
  const tokens = async (account = 'work') =>
    Promise.all(daemons.map(async (d) => String((await d.request('POST', '/v1/token', { account })).json?.access_token)));
  return {
    daemons,
    keyFile,
    env: (i) => homes[i]!.env,
    async addAccount(issuer, name = 'work') {
      // One after the other: each writes the client secret to the shared database.
      for (const d of daemons) await putConfAccount(d, issuer, name);
    },
    tokens,
    async tokensAgree(account = 'work', timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const seen = await tokens(account);
        if (seen.every((t) => t === seen[0]) && seen[0] !== 'undefined') return seen[0]!;
        if (Date.now() > deadline) throw new Error(`the daemons do not agree on a token: ${seen.map((t) => t.slice(0, 8)).join(', ')}`);
        await sleep(20);
      }
    },
    logs: () => daemons.map((d, i) => `--- daemon ${i}\n${d.logs}`).join('\n'),
    cleanup,
  };
}

/**
 * The hooks of a `describe` that runs against one fleet: an IdP, `n` daemons on `db()`
 * (or on a database of their own, `database`), account `work` on each, one imported grant
 * that every daemon serves; all stopped and removed after.
 */
export function useFleet(opts: {
  db: () => TestPostgres;
  n: number;
  idp?: IdpOptions;
  settings?: Record<string, unknown>;
  database?: string;
}): { readonly idp: TestIdp; readonly fleet: TestFleet } {
  const ctx = {} as { idp: TestIdp; fleet: TestFleet };
  beforeAll(async () => {
    const db = opts.db();
    ctx.idp = await startIdp(opts.idp);
    const url = opts.database ? await db.createDatabase(opts.database) : undefined;
    ctx.fleet = await startFleet(db, opts.n, { proactive_refresh: false, max_refreshes_per_minute: 1000, ...opts.settings }, { url });
    await ctx.fleet.addAccount(ctx.idp.issuer);
    await postConfGrant(ctx.fleet.daemons[0]!, ctx.idp);
    await ctx.fleet.tokensAgree();
  });
  afterAll(async () => {
    await ctx.fleet?.cleanup();
    await ctx.idp?.close();
  });
  return ctx;
}

/** `n` token requests for `account` at once, spread over `sockets` in turn, each on its own connection. */
export async function burst(sockets: string[], n: number, account = 'work'): Promise<HttpResult[]> {
  const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
  try {
    return await Promise.all(
      Array.from({ length: n }, (_, i) => socketRequest(sockets[i % sockets.length]!, 'POST', '/v1/token', { account }, {}, agent)),
    );
  } finally {
    agent.destroy();
  }
}
