/**
 * An account's `hosts` pattern, parsed: the grammar the daemon matches URLs with
 * (src/daemon/match.ts; docs/helpers.md, "Which account answers") and `tokend setup git`
 * reads to configure git. Zod-free: the client loads it.
 *
 * Forms: `github.com`, `*.example.com`, `git.example.com/org` (or `/org/*`), `host:port`,
 * and an explicit scheme `https://h`, `http://127.0.0.1:8080`.
 */
import { domainToASCII } from 'node:url';

/** A parsed `hosts` entry. */
export interface HostPattern {
  /** Lower-case scheme when the pattern names one. */
  scheme?: string;
  /** Lower-case ASCII host; for a wildcard, the part after `*.`. IPv6 in brackets. */
  host: string;
  wildcard: boolean;
  port?: number;
  /** Path prefix with a leading slash and no trailing one; absent = any path. */
  pathPrefix?: string;
}

/** Lower-case, no trailing dot, IDN as punycode, IPv6 canonical and bracketed; '' if unusable. */
export function normaliseHost(raw: string): string {
  let h = raw.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  if (h.includes(':')) {
    try {
      return new URL(`http://[${h}]/`).hostname; // canonical IPv6, e.g. [::1]
    } catch {
      return '';
    }
  }
  h = h.replace(/\.$/, '');
  if (h === '' || /[\s/@?#\\]/.test(h)) return '';
  // An internationalised name compares as punycode, as WHATWG URL spells it; '' when invalid.
  return /^[\x21-\x7e]+$/.test(h) ? h : domainToASCII(h);
}

/** Remove `.` and resolve `..` segments so `/org/../other` cannot pass as `/org`. */
export function normalisePath(raw: string): string {
  const out: string[] = [];
  for (const seg of raw.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') out.pop();
    else out.push(seg);
  }
  return `/${out.join('/')}`;
}

export function splitAuthority(authority: string): { host: string; port?: number } | undefined {
  let host = authority;
  let portText: string | undefined;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    if (end < 0) return undefined;
    host = authority.slice(0, end + 1);
    const rest = authority.slice(end + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) return undefined;
      portText = rest.slice(1);
    }
  } else {
    const first = authority.indexOf(':');
    if (first >= 0 && first === authority.lastIndexOf(':')) {
      host = authority.slice(0, first);
      portText = authority.slice(first + 1);
    }
  }
  if (portText === undefined) return { host };
  if (!/^\d{1,5}$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port < 1 || port > 65_535) return undefined;
  return { host, port };
}

/**
 * A URL a credential is asked for, as tools give it: a bare `host[:port][/path]` means https
 * (docker assumes so of a registry; `tokend token --url` and the helpers take the same).
 * Undefined unless it parses with a host.
 */
export function parseTargetUrl(text: string): URL | undefined {
  const withScheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(text) ? text : `https://${text}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    return undefined;
  }
  return url.hostname === '' ? undefined : url;
}

/** Parse one `hosts` entry; undefined when it is not a pattern we understand (it then matches nothing). */
export function parseHostPattern(pattern: string): HostPattern | undefined {
  let rest = pattern.trim();
  let scheme: string | undefined;
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(rest);
  if (m) {
    scheme = m[1]!.toLowerCase();
    rest = rest.slice(m[0].length);
  }
  const slash = rest.indexOf('/');
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  let path = slash < 0 ? '' : rest.slice(slash);
  if (authority.includes('@')) return undefined;
  const hp = splitAuthority(authority);
  if (!hp) return undefined;
  let wildcard = false;
  let hostText = hp.host;
  if (hostText.startsWith('*.')) {
    wildcard = true;
    hostText = hostText.slice(2);
  }
  if (hostText.includes('*')) return undefined;
  const host = normaliseHost(hostText);
  if (host === '') return undefined;
  // `org/*` and `org/` both mean the prefix `org`.
  path = path.replace(/\/\*$/, '').replace(/\/+$/, '');
  if (path.includes('*') || path.includes('?') || path.includes('#')) return undefined;
  const out: HostPattern = { host, wildcard };
  if (scheme) out.scheme = scheme;
  if (hp.port !== undefined) out.port = hp.port;
  if (path !== '') out.pathPrefix = normalisePath(path);
  return out;
}
