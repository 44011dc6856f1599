/**
 * The optional loopback TCP listener (`tokend daemon --listen 127.0.0.1:PORT`), for apps
 * that cannot open a Unix socket (a container, a JVM). It serves the same API, but every
 * request must carry `Authorization: Bearer <daemon key>` (a random key in a 0600 file,
 * compared in constant time), because any local user and any web page can reach a TCP port:
 *
 * - any `Origin` header is refused (a browser sends one on cross-site fetches; no app
 *   through this listener is a web page);
 * - a `Host` that is not a loopback name with our port is refused (DNS rebinding: a page
 *   whose name resolves to 127.0.0.1 would send its own name);
 * - only loopback addresses can be bound at all.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { setKeyCaller } from '../caller/connection.js';
import { E, type ApiError } from '../errors.js';
import { errorBody, sendJson } from './wire.js';

export interface ListenAddress {
  host: string;
  port: number;
}

/** Parse `127.0.0.1:PORT` or `[::1]:PORT`; anything that is not a loopback address is refused with the reason. */
export function parseListenAddress(value: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value.trim());
  if (!m) throw new Error(`--listen takes ADDRESS:PORT, e.g. 127.0.0.1:8765 (got "${value.slice(0, 80)}")`);
  const host = (m[1] ?? m[2]).toLowerCase();
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`--listen: port ${port} is out of range (1-65535)`);
  const loopback = host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
  if (!loopback) {
    throw new Error(
      `--listen ${value}: tokend binds only loopback addresses (127.0.0.1 or [::1]); ${host} would expose the daemon to ` +
        (host === '0.0.0.0' || host === '::' ? 'every network this machine is on' : 'other machines') +
        '. For a container, publish the loopback port or mount the Unix socket instead',
    );
  }
  return { host, port };
}

/** Read the daemon key (32 random bytes, base64url, in a 0600 file), creating it the first time. */
export function loadOrCreateListenKey(file: string): string {
  try {
    return readKey(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  writeListenKey(file, randomBytes(32).toString('base64url'));
  return readKey(file);
}

/** Replace the daemon key atomically (write a 0600 temp file, rename over). */
export function writeListenKey(file: string, key: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${key}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

function readKey(file: string): string {
  const key = fs.readFileSync(file, 'utf8').trim();
  if (key.length < 32) throw new Error(`the daemon key in ${file} is too short; replace it with \`tokend listen-key --rotate\``);
  return key;
}

const sha256 = (s: string) => createHash('sha256').update(s).digest();

/**
 * The app whose key (`tokend listen-key --app NAME`) `given` is, or undefined. The file is
 * re-read when it changes (a rotation or revocation takes effect at once); a missing or
 * unreadable file holds no app. Keys are compared as SHA-256 digests in constant time.
 */
function appKeyReader(file: string): (given: string) => string | undefined {
  let cached: { version: string; apps: Array<[string, Buffer]> } | undefined;
  const apps = (): Array<[string, Buffer]> => {
    let version: string;
    try {
      // The CLI renames a new file over the old: a new inode, even within one mtime tick.
      const st = fs.statSync(file);
      version = `${st.ino}:${st.mtimeMs}`;
    } catch {
      return [];
    }
    if (cached?.version !== version) {
      let parsed: { apps?: Record<string, unknown> } = {};
      try {
        parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
      } catch {
        parsed = {};
      }
      const entries = Object.entries(parsed.apps ?? {}).filter((e): e is [string, string] => typeof e[1] === 'string' && e[1].length >= 32);
      cached = { version, apps: entries.map(([name, key]) => [name, sha256(key)]) };
    }
    return cached.apps;
  };
  return (given) => {
    const g = sha256(given);
    let found: string | undefined;
    for (const [name, digest] of apps()) if (timingSafeEqual(g, digest)) found ??= name;
    return found;
  };
}

const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]'];

/**
 * The guard in front of the API on the TCP listener: answers (and returns true) for a
 * request it refuses, returns false for one that may go on. The key file is re-read when
 * it changes, so `tokend listen-key --rotate` takes effect at once.
 */
export function listenerGuard(opts: {
  keyFile: string;
  appKeysFile?: string;
  port: number;
}): (req: IncomingMessage, res: ServerResponse) => boolean {
  let cached: { mtimeMs: number; key: Buffer } | undefined;
  const currentKey = (): Buffer => {
    const st = fs.statSync(opts.keyFile);
    if (!cached || cached.mtimeMs !== st.mtimeMs) cached = { mtimeMs: st.mtimeMs, key: Buffer.from(readKey(opts.keyFile)) };
    return cached.key;
  };
  const appOf = opts.appKeysFile ? appKeyReader(opts.appKeysFile) : () => undefined;
  const allowedHosts = new Set(LOOPBACK_NAMES.map((h) => `${h}:${opts.port}`));
  return (req, res) => {
    let refusal: ApiError | undefined;
    if (req.headers.origin !== undefined) {
      refusal = E.forbidden('requests from web pages (with an Origin header) are not served on the loopback listener');
    } else if (!allowedHosts.has(String(req.headers.host ?? '').toLowerCase())) {
      refusal = E.forbidden(
        `the Host header must name this listener (127.0.0.1:${opts.port}, localhost:${opts.port} or [::1]:${opts.port})`,
      );
    } else {
      const given = /^Bearer ([^\s]+)$/i.exec(req.headers.authorization ?? '')?.[1];
      let ok = false;
      try {
        const key = currentKey();
        const g = Buffer.from(given ?? '');
        ok = g.length === key.length && timingSafeEqual(g, key);
      } catch {
        ok = false;
      }
      const app = ok || given === undefined ? undefined : appOf(given);
      if (app !== undefined) {
        setKeyCaller(req, app);
        ok = true;
      }
      if (!ok)
        refusal = E.unauthorized(
          'the loopback listener needs `Authorization: Bearer <daemon key or app key>` (see `tokend listen-key [--app NAME]`)',
        );
    }
    if (!refusal) {
      // The daemon key authenticated this request; it is not the caller's credential for
      // anything else, and must never reach the proxy's upstream.
      // (The proxy never forwards a caller's Authorization either.)
      delete req.headers.authorization;
      return false;
    }
    const headers: Record<string, string> = {};
    if (refusal.code === 'unauthorized') headers['www-authenticate'] = 'Bearer realm="tokend"';
    if (!req.complete) {
      headers.connection = 'close';
      req.resume();
    }
    sendJson(res, refusal.status, errorBody(refusal), headers);
    return true;
  };
}
