/**
 * The Hono app with every route group the daemon serves, and its node:http listener. entry.ts
 * loads this module only when the first request that needs it comes (every request but the
 * lanes'): Hono, @hono/node-server and node's own fetch classes (undici's, which
 * @hono/node-server reads at import) cost a daemon's start CPU that `GET /v1/health`, the
 * token and the proxy never need. The tests list the routes from here too.
 */
import { getRequestListener } from '@hono/node-server';
import type { Hono } from 'hono';
import type { KeyStore } from '../../protocol/api.js';
import type { TokendPaths } from '../../protocol/paths.js';
import { accessOf } from '../caller/access.js';
import type { Approvals } from '../caller/approvals.js';
import { type DpopProofs, dpopProofsOf } from '../dpop/proofs.js';
import type { Driver } from '../drivers/driver.js';
import type { LoginManager } from '../logins.js';
import type { MasterKey } from '../store/master-key.js';
import { type AppDeps, createApp } from './app.js';
import { mountApprovals } from './approvals-route.js';
import { mountAudit } from './audit-route.js';
import { mountDpop } from './dpop-route.js';
import { mountHelpers } from './helpers-route.js';
import { mountKey } from './key-route.js';
import { mountLogins } from './logins-route.js';

export interface EntryDeps extends Omit<AppDeps, 'resolveTarget' | 'extend'> {
  getDriver: (name: string) => Driver | undefined;
  logins: LoginManager;
  /** The master key this daemon holds; undefined for a fleet's (key-route.ts). */
  masterKey: MasterKey | undefined;
  paths: Pick<TokendPaths, 'dataDir' | 'keyFile'>;
  /** Record where the master key now lives (config.json). */
  saveKeyKind: (kind: KeyStore) => Promise<void>;
  /** After a key move: the disk watch follows the key. */
  keyMoved: () => void;
  /** The approvals of `ask` accounts (caller/approvals.ts); without them (tests) nothing waits. */
  approvals?: Approvals;
}

/** What the lanes share with the app, made by entry.ts at start (the proofs follow the events from then on). */
export interface Shared {
  helpers: ReturnType<typeof mountHelpers>;
  dpop: DpopProofs;
}

/** The Hono app with every route group the daemon serves; `shared` as entry.ts made it, else new (the tests). */
export function composeApp(given: EntryDeps, shared?: Shared): { app: Hono } & Shared {
  const deps = { ...given, access: accessOf(given) };
  const helpers = shared?.helpers ?? mountHelpers(deps);
  const dpop = shared?.dpop ?? dpopProofsOf(deps);
  const app = createApp({
    ...deps,
    resolveTarget: helpers.resolveTarget,
    extend: [
      helpers.extend,
      mountLogins({ logins: deps.logins }),
      mountKey({
        masterKey: deps.masterKey,
        paths: deps.paths,
        saveKind: deps.saveKeyKind,
        moved: deps.keyMoved,
        log: deps.log,
        audit: deps.audit,
      }),
      mountAudit({ audit: deps.audit, store: deps.store }),
      mountApprovals({ approvals: deps.approvals }),
      mountDpop({ broker: deps.broker, audit: deps.audit, dpop, config: deps.config, access: deps.access }),
    ],
  });
  return { app, helpers, dpop };
}

/** The app as a node:http handler. */
export function appListener(deps: EntryDeps, shared: Shared): ReturnType<typeof getRequestListener> {
  return getRequestListener(composeApp(deps, shared).app.fetch);
}
