/**
 * How tokend reaches providers and APIs on a corporate network: through the proxy the
 * environment names (`HTTPS_PROXY`, `HTTP_PROXY`, `NO_PROXY`, as curl and most tools read
 * them; Node 20's own fetch ignores them), trusting the system's CAs, `NODE_EXTRA_CA_CERTS`,
 * and an account's own `ca_file` (a private IdP's CA). Provider calls (every driver) and the
 * API proxy's upstream requests go through the dispatcher given here.
 */
import dns from 'node:dns';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import tls from 'node:tls';
import type { Dispatcher } from 'undici';

type Undici = typeof import('undici');
let undiciModule: Undici | undefined;
/**
 * undici, loaded on the first outbound request instead of at start-up: evaluating it was
 * ~25 ms of every daemon's start (the cold-start bench), for requests a daemon may not make for an
 * hour. Not bundled (scripts/bundle.mjs): it is read from node_modules when first needed.
 */
function undici(): Undici {
  return (undiciModule ??= createRequire(import.meta.url)('undici') as Undici);
}

/** What of an account decides how its requests go out. */
export interface OutboundConfig {
  ca_file?: string;
}

const PROXY_VARS = ['HTTPS_PROXY', 'https_proxy', 'HTTP_PROXY', 'http_proxy'];

/** One dispatcher per CA file (and one for none): connections are pooled across requests. */
const dispatchers = new Map<string, { dispatcher: Dispatcher; mtimeMs: number }>();

/** The CA certificates a connection trusts: the system's, NODE_EXTRA_CA_CERTS, and the account's file. */
function caBundle(caFile: string | undefined): string[] | undefined {
  if (!caFile) return undefined; // node's defaults (which include NODE_EXTRA_CA_CERTS)
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  return [
    ...tls.rootCertificates,
    ...(extra && fs.existsSync(extra) ? [fs.readFileSync(extra, 'utf8')] : []),
    fs.readFileSync(caFile, 'utf8'),
  ];
}

/**
 * The dispatcher for an account's outbound requests: a proxy-aware one when the environment
 * names a proxy, with the account's CA when it has one. Read again when the CA file changes.
 */
export function dispatcherFor(cfg: OutboundConfig, env: NodeJS.ProcessEnv = process.env): Dispatcher {
  const key = cfg.ca_file ?? '';
  const mtimeMs = cfg.ca_file ? statMtime(cfg.ca_file) : 0;
  const hit = dispatchers.get(key);
  if (hit && hit.mtimeMs === mtimeMs) return hit.dispatcher;
  const ca = caBundle(cfg.ca_file);
  const tlsOptions = { ...(ca ? { ca } : {}), lookup: pinnedLookup };
  // undici's highWaterMark (64 KiB, both ways) would win over these: unset, and its 64 KiB kept for reads.
  const connect = { ...tlsOptions, highWaterMark: undefined, readableHighWaterMark: 64 * 1024, writableHighWaterMark: UPLOAD_WRITE_BUFFER };
  const dispatcher: Dispatcher = PROXY_VARS.some((v) => env[v])
    ? // Direct connections (NO_PROXY) and tunnels to the target both check the target's certificate against `ca`.
      new (undici().EnvHttpProxyAgent)({ connect, requestTls: tlsOptions })
    : new (undici().Agent)({ connect, keepAliveTimeout: 30_000 });
  if (hit) void hit.dispatcher.close().catch(() => undefined);
  dispatchers.set(key, { dispatcher, mtimeMs });
  return dispatcher;
}

/**
 * What an outbound socket takes before a write says "wait for drain" (undici's is 64 KiB,
 * its read size): a proxied upload is written upstream in the caller's 64 KiB chunks, and
 * at 64 KiB every write paused the caller's body and resumed it on 'drain'.
 */
const UPLOAD_WRITE_BUFFER = 1024 * 1024;

function statMtime(file: string): number {
  try {
    return fs.statSync(file).mtimeMs;
  } catch {
    return -1;
  }
}

/** A fetch for an account's provider calls, through `dispatcherFor`. */
export function outboundFetch(cfg: OutboundConfig): typeof fetch {
  const viaDispatcher = (input: string | URL | Request, init?: RequestInit, dispatcher = dispatcherFor(cfg)) =>
    undici().fetch(input as never, { ...(init as object), dispatcher } as never) as unknown as Promise<Response>;
  if (!cfg.ca_file && !PROXY_VARS.some((v) => process.env[v])) {
    // Node's own fetch, but its lookup is the system's: a loopback name goes the pinned way.
    return ((input: string | URL | Request, init?: RequestInit) =>
      isLoopbackName(hostnameOf(input)) ? viaDispatcher(input, init) : fetch(input, init)) as typeof fetch;
  }
  const dispatcher = dispatcherFor(cfg);
  return ((input: string | URL | Request, init?: RequestInit) => viaDispatcher(input, init, dispatcher)) as typeof fetch;
}

/** Kept-alive connections for `exchangeFetch`, one pool per scheme (node's Agent pools per host). */
const exchangeAgents = {
  // Idle connections close after 4 s, or a second before the server's `Keep-Alive: timeout`
  // (node's Agent reads it), so a request is never sent on one the server is closing.
  'http:': new http.Agent({ keepAlive: true, timeout: 4000 }),
  'https:': new https.Agent({ keepAlive: true, timeout: 4000 }),
};

/**
 * A fetch for a provider's small form-POST exchanges (the token endpoint's, through
 * oauth4webapi's `customFetch`): node:http on a kept-alive agent, the answer read whole and
 * handed back as a `Response`. Node's fetch builds WHATWG streams, a Request and a Headers
 * per call and writes the body as a stream (~0.3 ms of CPU a refresh on this machine, in the
 * one provider call a caller waits on), and undici's own client would be loaded first (~1 s on
 * a loaded machine, inside the first request's timeout). A network failure is fetch's
 * `TypeError('fetch failed', { cause })` and an abort the signal's reason, so every driver
 * error reads the same (drivers/http-failure.ts). A proxy from the environment or an
 * account's CA, another redirect mode than `manual` (what oauth4webapi asks for) or a body
 * that is not text go through `outboundFetch`.
 */
export function exchangeFetch(cfg: OutboundConfig): typeof fetch {
  if (cfg.ca_file || PROXY_VARS.some((v) => process.env[v])) return outboundFetch(cfg);
  return ((input: string | URL | Request, init?: RequestInit) => {
    const body = init?.body;
    const textual = body === undefined || body === null || typeof body === 'string' || body instanceof URLSearchParams;
    const url = typeof input === 'string' ? new URL(input) : undefined;
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || init?.redirect !== 'manual' || !textual)
      return outboundFetch(cfg)(input, init);
    return exchange(url, init, body === undefined || body === null ? undefined : String(body));
  }) as typeof fetch;
}

function exchange(url: URL, init: RequestInit, payload: string | undefined): Promise<Response> {
  const signal = init.signal ?? undefined;
  const headers: Record<string, string> = { ...(init.headers as Record<string, string>) };
  if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
  return new Promise((resolve, reject) => {
    const fail = (err: unknown) => reject(signal?.aborted ? (signal.reason ?? err) : new TypeError('fetch failed', { cause: err }));
    // The signal is followed here rather than given to node as `signal`, which ties it to
    // the request through end-of-stream (~0.1 ms of CPU a refresh on this machine): one listener.
    const options = { method: init.method ?? 'GET', headers, lookup: pinnedLookup as never };
    const req = (url.protocol === 'https:' ? https : http).request(
      url,
      { ...options, agent: exchangeAgents[url.protocol as 'http:'] },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', fail);
        res.on('end', () => {
          const answer = new Headers();
          const raw = res.rawHeaders;
          for (let i = 0; i + 1 < raw.length; i += 2) answer.append(raw[i]!, raw[i + 1]!);
          const status = res.statusCode ?? 0;
          try {
            resolve(new Response(status === 204 || status === 304 ? null : Buffer.concat(chunks), { status, headers: answer }));
          } catch (err) {
            fail(err);
          }
        });
      },
    );
    req.on('error', fail);
    if (signal) {
      const abort = () => req.destroy(signal.reason);
      if (signal.aborted) abort();
      else {
        signal.addEventListener('abort', abort, { once: true });
        req.once('close', () => signal.removeEventListener('abort', abort));
      }
    }
    req.end(payload);
  });
}

function hostnameOf(input: string | URL | Request): string {
  try {
    return new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url).hostname;
  } catch {
    return '';
  }
}

/**
 * `localhost` and the names under it (RFC 6761 §6.3), with or without the final dot: plain http
 * may go to them (rules.ts) because they are loopback, so they must never be looked up in DNS,
 * where whoever answers could send the request, and what it carries, to another host.
 */
function isLoopbackName(host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return h === 'localhost' || h.endsWith('.localhost');
}

const LOOPBACK_ADDRESSES: dns.LookupAddress[] = [
  { address: '127.0.0.1', family: 4 },
  { address: '::1', family: 6 },
];

/** net.connect's `lookup` for every outbound connection: a loopback name is 127.0.0.1 / ::1, any other name the system's answer. */
function pinnedLookup(
  hostname: string,
  options: dns.LookupOptions,
  callback: (err: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void,
): void {
  if (!isLoopbackName(hostname)) {
    dns.lookup(hostname, options, callback as never);
    return;
  }
  const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : options.family;
  const addresses = LOOPBACK_ADDRESSES.filter((a) => !family || a.family === family);
  if (options.all) callback(null, addresses);
  else callback(null, addresses[0].address, addresses[0].family);
}
