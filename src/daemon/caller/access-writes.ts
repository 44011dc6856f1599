/**
 * Who may write an account's `access` and manage an account (issue 23 part 3, docs/security.md):
 *
 * - The user's own processes on the Unix socket manage every account and its access (`tokend
 *   access`, `tokend remove` stay open to the user's CLI); the access rules guard the token.
 * - A loopback listener's app key is one app, not the user: it may create accounts (with
 *   `owner: "self"`) and manage the ones whose access names its key, and never writes access.
 * - Without the caller addon the daemon cannot tell callers apart: only `open` is written
 *   (never a rule it could not enforce).
 * - `owner: "self"` on a write makes the account `callers` with the writing caller as its rule.
 */
import type { Access, AccessRule, AccountOwner } from '../../protocol/access.js';
import type { AccountConfig } from '../../protocol/api.js';
import { E } from '../errors.js';
import { decide, describeCaller } from './access.js';
import type { CallerIdentity } from './proc.js';

/** What the daemon answers when it has no caller addon and a write asks for rules. */
export const NO_ADDON_ACCESS =
  'the daemon runs without its caller addon (build/tokend-peer.node), so it cannot tell callers apart and would refuse ' +
  'every caller of such an account: only access open is allowed. Install a C compiler (cc), run `npm rebuild tokend` ' +
  '(or `node scripts/build-native.mjs` in its folder), restart the daemon, and try again';

/** The listener app key a request came with, if any. */
const appKeyOf = (who: CallerIdentity | undefined) => who?.caller.key;

/** Does `access` name app key `app` in one of its rules? */
const namesKey = (access: Access | undefined, app: string) => Boolean(access?.callers.some((r) => 'key' in r && r.key === app));

/**
 * A request that manages an existing account (replace, change, remove, import, refresh,
 * logout): refused (403) for a listener app key the account's access does not name.
 */
export function checkManage(name: string, cfg: AccountConfig | undefined, who: CallerIdentity | undefined): void {
  const app = appKeyOf(who);
  if (app === undefined || !cfg || namesKey(cfg.access, app)) return;
  throw E.forbidden(
    `the app key "${app}" may manage only the accounts it owns (access naming key ${app}); account "${name}" is not one of them`,
    { account: name },
  );
}

/** The rule that names the writing caller for `owner: "self"`: its key, its service, else its script with its interpreter, else its executable. */
export function ownerRule(who: CallerIdentity | undefined): AccessRule {
  const c = who?.caller;
  if (!c) {
    throw E.invalidRequest(
      'owner: "self" needs a caller the daemon can verify (the Unix socket with the caller addon, or a listener app key); this one is not',
    );
  }
  if (c.key !== undefined) return { key: c.key };
  // A service is a deliberate identity; a scope (a login session, a terminal tab) holds whatever the user runs there.
  if (c.unit?.endsWith('.service') && !/^user@\d+\.service$/.test(c.unit)) return { unit: c.unit };
  if (c.exe?.startsWith('/')) return c.script !== undefined ? { script: c.script, exe: c.exe } : { exe: c.exe };
  throw E.invalidRequest(`owner: "self": the daemon could not read the executable of ${describeCaller(who)}`);
}

export interface AccessWrite {
  name: string;
  before: AccountConfig | undefined;
  /** The write's `access`: absent (unchanged), null (a patch clearing it: open) or the new one. */
  access: Access | null | undefined;
  owner: AccountOwner | undefined;
  who: CallerIdentity | undefined;
  /** The caller addon is loaded. */
  verified: boolean;
}

/**
 * The access an account write leaves (undefined: unchanged, null: open), or a refusal:
 * an app key writing access, `owner` beside `access`, rules without the addon, and
 * `owner: "self"` over an account the writer is not allowed by.
 */
export function resolveAccessWrite(w: AccessWrite): Access | null | undefined {
  if (w.owner !== undefined && w.access !== undefined) throw E.invalidRequest('give either owner or access, not both');
  const app = appKeyOf(w.who);
  if (app !== undefined && w.access !== undefined) {
    throw E.forbidden(`the app key "${app}" cannot change an account's access: only the user can (\`tokend access ${w.name} …\`)`, {
      account: w.name,
    });
  }
  const wantsRules = (w.access && w.access.mode !== 'open') || w.owner !== undefined;
  if (wantsRules && !w.verified) throw E.invalidRequest(`access: ${NO_ADDON_ACCESS}`, { account: w.name });
  // Open is written as no access at all (today's config, untouched).
  if (w.owner === undefined) return w.access?.mode === 'open' ? null : w.access;
  const held = w.before?.access;
  if (held && held.mode !== 'open') {
    // Already owned: the owner writes it again as it is; any other program is refused.
    if (decide(held, w.who) !== 'allow') {
      throw E.callerNotAllowed(
        `account "${w.name}" is owned by other callers (access ${held.mode}); ${describeCaller(w.who)} cannot claim it`,
        { account: w.name },
      );
    }
    return undefined;
  }
  return { mode: 'callers', callers: [ownerRule(w.who)] };
}

/** The accounts whose access a daemon without the caller addon cannot enforce (it refuses to start with them). */
export function accountsNeedingCallers(accounts: Array<[string, AccountConfig]>): string[] {
  return accounts.filter(([, cfg]) => cfg.access && cfg.access.mode !== 'open').map(([name]) => name);
}
