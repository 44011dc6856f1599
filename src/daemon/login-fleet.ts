/**
 * Logins in a fleet (docs/fleet.md): what every daemon tells its event subscribers about a
 * login, whichever daemon wrote it, and which stored logins another daemon may take up.
 */
import type { LoginView } from '../protocol/api.js';
import type { RecordedCaller } from '../protocol/caller.js';
import type { EventBus } from './events.js';
import type { Resumption } from './login-resume.js';
import type { Logger } from './log.js';
import type { LoginLease, LoginRecord, LoginStatusValue, Store } from './store/types.js';

/** How often a daemon of a fleet looks for device logins nobody polls (their daemon died). */
export const TAKEOVER_EVERY_MS = 2_000;

/** The event of a login's status (login.pending, login.succeeded, login.failed); the same on every daemon. */
export function announceLogin(events: EventBus, v: LoginView, startedBy: { caller?: RecordedCaller } = {}): void {
  const { id: login_id, account, flow } = v;
  const task = v.task ?? null;
  switch (v.status) {
    case 'pending':
      events.emit('login.pending', account, {
        ...startedBy,
        login_id,
        flow,
        task,
        status: 'pending',
        user_code: v.user_code,
        verification_uri: v.verification_uri,
        verification_uri_complete: v.verification_uri_complete,
        authorization_url: v.authorization_url,
        expires_at: v.expires_at,
      });
      return;
    case 'active':
      events.emit('login.succeeded', account, { login_id, flow, task, status: 'active' });
      return;
    default:
      events.emit('login.failed', account, { login_id, flow, task, status: v.status, error: v.error?.code, message: v.error?.message });
  }
}

/**
 * Which (login, status) pairs were announced already: a pending login's writes (a slower
 * polling interval) are announced by the database each time, but subscribers hear of each
 * status once. Bounded: the oldest are forgotten first.
 */
export class Announced {
  private readonly seen = new Map<string, string>();
  constructor(private readonly max = 1000) {}

  /** True the first time a login is seen with this status. */
  first(id: string, status: string): boolean {
    if (this.seen.get(id) === status) return false;
    this.seen.delete(id);
    this.seen.set(id, status);
    if (this.seen.size > this.max) this.seen.delete(this.seen.keys().next().value!);
    return true;
  }
}

/** How long after its time a pending login another daemon may be running is ended by any daemon (its own ends it first). */
const END_GRACE_MS = 30_000;

/** A pending login whose daemon may be gone: a device login (polling to take up), or one whose time passed (to end). */
export function mayTakeUp(rec: LoginRecord, now: number): boolean {
  const expiresAt = rec.data.expires_at;
  return rec.status === 'pending' && (rec.flow === 'device' || (typeof expiresAt === 'number' && expiresAt + END_GRACE_MS <= now));
}

/** What the fleet's watch needs of the login manager. */
export interface FleetLoginHost {
  store: Store;
  log: Logger;
  now(): number;
  stopped(): boolean;
  /** Whether this daemon runs the login, or another of the account. */
  runs(rec: LoginRecord): boolean;
  plan(rec: LoginRecord): Resumption;
  /** Poll a stored device login here, holding `lease`. */
  takeUp(plan: Extract<Resumption, { kind: 'device' }>, lease: LoginLease): Promise<unknown>;
  /** End a stored login whose time passed. */
  end(rec: LoginRecord, plan: Extract<Resumption, { kind: 'end' }>): Promise<void>;
  /** Another daemon wrote this login. */
  heard(id: string, status: LoginStatusValue): Promise<void>;
}

/**
 * In a fleet: hear of the logins other daemons write, and every few seconds take up the
 * device logins nobody polls (their daemon died: its lease ended with its connection) and
 * end the pending logins whose time passed. Returns the timer (cleared at shutdown).
 */
export function watchFleetLogins(h: FleetLoginHost): NodeJS.Timeout | undefined {
  const fleet = h.store.fleet;
  if (!fleet) return undefined;
  fleet.watchLogins((id, status) => {
    h.heard(id, status).catch((err) => h.log.warn('could not read a login another daemon wrote', { login_id: id, error: err as Error }));
  });
  let running = false;
  const timer = setInterval(() => {
    if (running || h.stopped()) return;
    running = true;
    takeOver(h)
      .catch((err) => h.log.warn('could not look for logins to take up', { error: (err as Error).message }))
      .finally(() => (running = false));
  }, TAKEOVER_EVERY_MS);
  timer.unref();
  return timer;
}

/** See watchFleetLogins: one lease per login, so one daemon takes each up. */
async function takeOver(h: FleetLoginHost): Promise<void> {
  for (const rec of await h.store.listLogins({ status: 'pending' })) {
    if (!mayTakeUp(rec, h.now()) || h.runs(rec) || h.stopped()) continue;
    const lease = await h.store.holdLogin(rec.id);
    if (!lease) continue;
    // Read again under the lease: it may have ended meanwhile.
    const cur = await h.store.getLogin(rec.id).catch(async (err) => {
      await lease.release();
      throw err;
    });
    const plan = cur?.status === 'pending' ? h.plan(cur) : undefined;
    if (plan?.kind === 'device' && !h.runs(rec)) {
      h.log.info('taking up a device login nobody polls (its daemon stopped)', { account: rec.account, login_id: rec.id });
      try {
        await h.takeUp(plan, lease);
      } catch (err) {
        // Left for the next look (or another daemon): the lease must not outlive the attempt.
        await lease.release();
        throw err;
      }
      continue;
    }
    if (cur && plan?.kind === 'end' && plan.status === 'expired') await h.end(cur, plan);
    await lease.release();
  }
}
