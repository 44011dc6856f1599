import { PROXY_PREFIX } from '../protocol/routes.js';
import { isLoopbackHost } from '../protocol/rules.js';

/**
 * Where a proxied request goes: the account's `api_base` plus the caller's path and query,
 * and never anywhere else. The caller's path is checked as it arrived (still
 * percent-encoded), because a URL parser would resolve `..` or `%2e%2e` before we could
 * see them, and a decoded `%2f` would change which segments the upstream sees.
 */

/** Why a proxy path was refused; the message is safe to show (it never holds a token). */
export class ProxyPathError extends Error {
  override name = 'ProxyPathError';
}

/**
 * Split `/v1/proxy/NAME/REST?QUERY` (the raw request target) into the account name and the
 * rest. Returns undefined when the target is not a proxy path at all.
 */
export function splitProxyTarget(target: string): { name: string; rest: string; query: string } | undefined {
  if (!target.startsWith(PROXY_PREFIX)) return undefined;
  const q = target.indexOf('?');
  const pathPart = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  const afterPrefix = pathPart.slice(PROXY_PREFIX.length);
  const slash = afterPrefix.indexOf('/');
  const name = slash < 0 ? afterPrefix : afterPrefix.slice(0, slash);
  const rest = slash < 0 ? '' : afterPrefix.slice(slash + 1);
  return { name: safeDecode(name), rest, query };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

// Characters a path segment may hold as they are (RFC 3986 §3.3 pchar, without '%', which
// is checked as an escape): anything else (space, quotes, backslash, CR/LF, `#`…) is refused.
const PCHAR = /^[A-Za-z0-9\-._~!$&'()*+,;=:@]$/;
// Escapes that would change the path's structure where an upstream decodes them, or smuggle
// a control character (CR/LF into a request line): an encoded '/' or '\', C0 controls, DEL.
const STRUCTURAL_ESCAPE = /^%(2f|5c|[01][0-9a-f]|7f)$/i;

/**
 * Check the caller's path (below the account name, still encoded) and query, and resolve
 * them under `apiBase`. Refuses dot segments (`.`, `..`, in any encoding), empty segments
 * (`//host` would name another host), encoded slashes and backslashes, control characters
 * and anything a URL parser would rewrite. The query passes through as sent, minus CR/LF.
 */
export function resolveProxyUrl(apiBase: string, rest: string, query: string): URL {
  return resolveProxyTarget(apiBase, rest, query).url;
}

/** A checked proxy target, with what an upstream request needs of it read off once. */
export interface ProxyTarget {
  readonly url: URL;
  /** `url.origin` and `url.pathname + url.search`: URL's getters build a new string on every read. */
  readonly origin: string;
  readonly path: string;
  /** `url.protocol`, and whether `url.hostname` is a loopback host (where plain http may go): checked per request. */
  readonly protocol: string;
  readonly loopback: boolean;
}

/** `resolveProxyUrl`, with an app's few paths checked and parsed once each (shared: never change one). */
export function resolveProxyTarget(apiBase: string, rest: string, query: string): ProxyTarget {
  let under = resolved.get(apiBase);
  const key = `${rest}${query}`;
  let target = under?.get(key);
  if (!target) {
    const url = checkAndResolve(apiBase, rest, query);
    target = {
      url,
      origin: url.origin,
      path: `${url.pathname}${url.search}`,
      protocol: url.protocol,
      loopback: isLoopbackHost(url.hostname),
    };
    if (!under || under.size >= MAX_RESOLVED) {
      if (resolved.size >= MAX_BASES) resolved.clear();
      resolved.set(apiBase, (under = new Map()));
    }
    under.set(key, target);
  }
  return target;
}

/** Targets that passed the checks, by api_base; refusals are not kept. Bounded: a caller walking many paths only clears them. */
const resolved = new Map<string, Map<string, ProxyTarget>>();
const MAX_RESOLVED = 1000;

function checkAndResolve(apiBase: string, rest: string, query: string): URL {
  const base = parseBase(apiBase);
  if (base.search || base.hash) throw new ProxyPathError('the account api_base has a query or fragment');
  const segments = rest === '' ? [] : rest.split('/');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i];
    // A trailing '/' (an empty last segment) is a path like any other; an empty one inside is not.
    if (seg === '' && i !== segments.length - 1) throw new ProxyPathError('the path has an empty segment (//)');
    const dots = seg.replace(/%2e/gi, '.');
    if (dots === '.' || dots === '..') throw new ProxyPathError('the path has a dot segment (., .., or encoded as %2e)');
    for (let j = 0; j < seg.length; j++) {
      const ch = seg[j];
      if (ch === '%') {
        const esc = seg.slice(j, j + 3);
        if (!/^%[0-9a-f]{2}$/i.test(esc)) throw new ProxyPathError('the path has a malformed percent-escape');
        if (STRUCTURAL_ESCAPE.test(esc)) throw new ProxyPathError(`the path has an encoded ${describeEscape(esc)}`);
        j += 2;
      } else if (!PCHAR.test(ch)) {
        throw new ProxyPathError(`the path has a character that must be percent-encoded (code ${ch.charCodeAt(0)})`);
      }
    }
  }
  if (/[\r\n\u0000-\u001f\u007f#]/.test(query)) throw new ProxyPathError('the query has a control character or a fragment');
  const basePath = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
  const target = new URL(`${base.origin}${basePath}${rest}${query}`);
  // Belt and braces: whatever the checks above missed, the result must still be under api_base.
  if (target.origin !== base.origin || !target.pathname.startsWith(basePath)) {
    throw new ProxyPathError('the path leaves the account api_base');
  }
  return target;
}

/** Each api_base parsed once: read for every proxied request, it changes only with an account's config. */
const bases = new Map<string, URL>();

/** The parsed api_base (shared: read it, never change it). */
function parseBase(apiBase: string): URL {
  let base = bases.get(apiBase);
  if (!base) {
    base = new URL(apiBase);
    if (bases.size >= MAX_BASES) bases.clear();
    bases.set(apiBase, base);
  }
  return base;
}
const MAX_BASES = 1000;

function describeEscape(esc: string): string {
  switch (esc.toLowerCase()) {
    case '%2f':
      return "'/' (%2f)";
    case '%5c':
      return "'\\' (%5c)";
    default:
      return 'control character';
  }
}

/**
 * A `Location` an upstream answered with, as the caller should see it: a URL under
 * `apiBase` becomes the proxy path (so following it goes through the proxy again, with the
 * token); any other URL passes as it is (and the caller follows it without a token).
 */
export function rewriteLocation(location: string, upstreamUrl: URL, apiBase: string, account: string): string {
  let resolved: URL;
  try {
    resolved = new URL(location, upstreamUrl);
  } catch {
    return location;
  }
  const base = parseBase(apiBase);
  const basePath = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
  if (resolved.origin !== base.origin || !resolved.pathname.startsWith(basePath)) return resolved.href;
  return `${PROXY_PREFIX}${encodeURIComponent(account)}/${resolved.pathname.slice(basePath.length)}${resolved.search}`;
}
