import {
  normaliseHost,
  normalisePath,
  parseHostPattern,
  parseTargetUrl,
  splitAuthority,
  type HostPattern,
} from '../protocol/host-pattern.js';
import { isLoopbackHost } from '../protocol/rules.js';
import { E } from './errors.js';

/**
 * Which account serves a request for a URL: an account's `hosts` patterns matched
 * against protocol, host, port, path and username (docs/helpers.md, "Which account
 * answers", documents the same rules and their precedence for users).
 *
 * Pattern forms (src/protocol/host-pattern.ts parses them): `github.com`, `*.example.com`
 * (subdomains at any depth, not the apex), `git.example.com/org` or `git.example.com/org/*`
 * (path prefix on segment boundaries), `host:port`, and an explicit scheme `https://h`,
 * `http://127.0.0.1:8080`.
 *
 * Security rule: a token never goes to a remote host in clear. A pattern without a scheme
 * matches https, and http only for a loopback host; an explicit clear-text scheme
 * (`http://`, `grpc://`, `ws://`) is honoured for loopback hosts only, too.
 */

/** What is being asked for; `path` with or without its leading slash. */
export interface MatchTarget {
  protocol: string;
  host: string;
  port?: number;
  path?: string;
  username?: string;
}

export interface MatchableAccount {
  name: string;
  hosts: readonly string[];
  /** The account's configured username; a target with a different username skips it. */
  username?: string;
}

export type MatchResult<A = MatchableAccount> =
  | { kind: 'match'; account: A }
  | { kind: 'none' }
  | { kind: 'ambiguous'; accounts: [string, string] };

const SECURE_SCHEMES = new Set(['https', 'grpcs', 'wss']);
const DEFAULT_PORTS: Record<string, number> = { https: 443, http: 80, grpcs: 443, grpc: 80, wss: 443, ws: 80 };

/** True for hosts that can only be this machine: 127.0.0.0/8, ::1, localhost. */
export { isLoopbackHost };
/** The pattern grammar lives with the protocol: `tokend setup git` reads patterns too. */
export { parseHostPattern, type HostPattern };

/**
 * A URL as a match target. A scheme-less `host/path` is read as https. The URL's
 * password is dropped. Undefined when it is not a URL with a host.
 */
export function targetFromUrl(url: string): MatchTarget | undefined {
  const u = parseTargetUrl(url);
  if (!u) return undefined;
  const target: MatchTarget = { protocol: u.protocol.replace(/:$/, '').toLowerCase(), host: u.hostname };
  if (u.port !== '') target.port = Number(u.port);
  if (u.pathname !== '' && u.pathname !== '/') {
    try {
      target.path = decodeURIComponent(u.pathname);
    } catch {
      target.path = u.pathname;
    }
  }
  if (u.username !== '') {
    try {
      target.username = decodeURIComponent(u.username);
    } catch {
      target.username = u.username;
    }
  }
  return target;
}

interface NormalTarget {
  protocol: string;
  host: string;
  port: number | undefined;
  path: string | undefined;
  username: string | undefined;
  loopback: boolean;
}

function normaliseTarget(t: MatchTarget): NormalTarget | undefined {
  let hostText = t.host;
  let port = t.port;
  if (port === undefined) {
    // Tolerate git's raw `host=example.com:8443`.
    const hp = splitAuthority(hostText.trim());
    if (!hp) return undefined;
    hostText = hp.host;
    port = hp.port;
  }
  const host = normaliseHost(hostText);
  if (host === '') return undefined;
  const protocol = t.protocol.toLowerCase();
  return {
    protocol,
    host,
    port: port ?? DEFAULT_PORTS[protocol],
    path: t.path ? normalisePath(t.path) : undefined,
    username: t.username || undefined,
    loopback: isLoopbackHost(host),
  };
}

/** Specificity, compared left to right: exact host, host length, path depth, port, scheme, username. */
type Score = [number, number, number, number, number, number];

function compare(a: Score, b: Score): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return 0;
}

/** The specificity with which `p` matches `t`, or undefined when it does not. */
function scorePattern(p: HostPattern, t: NormalTarget, usernameMatches: boolean): Score | undefined {
  // Scheme: never clear text to a remote host, even when a pattern asks for it.
  if (!SECURE_SCHEMES.has(t.protocol) && !t.loopback) return undefined;
  if (p.scheme !== undefined) {
    if (p.scheme !== t.protocol) return undefined;
  } else if (t.protocol !== 'https' && !(t.protocol === 'http' && t.loopback)) {
    return undefined;
  }
  // Host: `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
  if (p.wildcard) {
    if (!t.host.endsWith(`.${p.host}`)) return undefined;
  } else if (t.host !== p.host) {
    return undefined;
  }
  // Port: a pattern without one matches any port of that host.
  if (p.port !== undefined && p.port !== t.port) return undefined;
  // Path: a prefix on segment boundaries (`/org` matches `/org/x.git`, not `/orgx`);
  // git sends `path` only with credential.useHttpPath=true (gitcredentials(7)).
  let depth = 0;
  if (p.pathPrefix !== undefined && p.pathPrefix !== '/') {
    if (t.path === undefined) return undefined;
    if (t.path !== p.pathPrefix && !t.path.startsWith(`${p.pathPrefix}/`)) return undefined;
    depth = p.pathPrefix.split('/').length - 1;
  }
  return [
    p.wildcard ? 0 : 1,
    p.host.split('.').length,
    depth,
    p.port !== undefined ? 1 : 0,
    p.scheme !== undefined ? 1 : 0,
    usernameMatches ? 1 : 0,
  ];
}

/**
 * Pick the account for `target`: the most specific match wins (exact host over
 * wildcard, longer wildcard suffix, deeper path prefix, explicit port, explicit
 * scheme, matching configured username, in that order); two accounts tied at the top
 * are `ambiguous`, naming both. An account whose configured username differs from the
 * target's username does not match. Usernames come from `account.username`, or from
 * `accountUsernames[name]` when the account objects do not carry one.
 */
export function matchAccount<A extends MatchableAccount>(
  accounts: readonly A[],
  target: MatchTarget,
  accountUsernames?: Readonly<Record<string, string | undefined>>,
): MatchResult<A> {
  const t = normaliseTarget(target);
  if (!t) return { kind: 'none' };
  let best: Score | undefined;
  let winners: A[] = [];
  for (const account of accounts) {
    const configured = account.username ?? accountUsernames?.[account.name];
    if (t.username !== undefined && configured !== undefined && configured !== t.username) continue;
    const usernameMatches = t.username !== undefined && configured === t.username;
    let accountBest: Score | undefined;
    for (const raw of account.hosts) {
      const p = parseHostPattern(raw);
      if (!p) continue;
      const s = scorePattern(p, t, usernameMatches);
      if (s && (!accountBest || compare(s, accountBest) > 0)) accountBest = s;
    }
    if (!accountBest) continue;
    const c = best ? compare(accountBest, best) : 1;
    if (c > 0) {
      best = accountBest;
      winners = [account];
    } else if (c === 0) {
      winners.push(account);
    }
  }
  if (winners.length === 0) return { kind: 'none' };
  if (winners.length > 1) return { kind: 'ambiguous', accounts: [winners[0]!.name, winners[1]!.name] };
  return { kind: 'match', account: winners[0]! };
}

/** A target as messages name it: scheme, host and port, never a path or username. */
export function describeTarget(t: MatchTarget): string {
  const port = t.port !== undefined ? `:${t.port}` : '';
  return `${t.protocol}://${t.host}${port}`;
}

/** The one message for two accounts tied on a target, whoever asked (a helper, `tokend token --url`). */
export function ambiguousMessage(accounts: [string, string], t: MatchTarget): string {
  return (
    `accounts "${accounts[0]}" and "${accounts[1]}" both match ${describeTarget(t)}; ` +
    'make one of their hosts patterns more specific, or configure a username'
  );
}

/** A request naming a URL (or a bare host, read as https) instead of an account: `POST /v1/token`, `credential/reject`. */
export interface TargetRequest {
  url?: string;
  host?: string;
  username?: string;
}

/**
 * The account that serves `req.url` (or `https://req.host`), or undefined when none does.
 * Throws `invalid_request` when it is not a URL, or when two accounts tie on it.
 */
export function resolveTarget(accounts: readonly MatchableAccount[], req: TargetRequest): string | undefined {
  const url = req.url ?? (req.host ? `https://${req.host}` : undefined);
  const target = url ? targetFromUrl(url) : undefined;
  if (!target) throw E.invalidRequest(`url: "${(req.url ?? req.host ?? '').slice(0, 200)}" is not a URL tokend can match`);
  if (req.username !== undefined) target.username = req.username;
  const m = matchAccount(accounts, target);
  if (m.kind === 'ambiguous') throw E.invalidRequest(ambiguousMessage(m.accounts, target));
  return m.kind === 'match' ? m.account.name : undefined;
}
