/**
 * `fetch` through the daemon's API proxy (`ANY /v1/proxy/:name/<path under api_base>`):
 * the daemon adds the account's token, so the caller never holds one. Bodies stream both
 * ways; nothing is buffered but a daemon error's small JSON body.
 */
import type http from 'node:http';
import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { PROXY_ERROR_HEADER, ROUTES } from '../protocol/routes.js';
import { errorFromAnswer, TokendError } from './errors.js';
import { header, type SocketTransport } from './socket-transport.js';

/** What `fetch` sends: what WHATWG fetch takes, plus any async iterable of bytes (a Node stream). */
export type TokendBody =
  | string
  | Uint8Array
  | ArrayBuffer
  | ArrayBufferView
  | URLSearchParams
  | Blob
  | FormData
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array | string>;

export interface TokendFetchInit {
  /** Default GET. */
  method?: string;
  /** Passed through, except Authorization and Cookie, which the daemon replaces with the account's token. */
  headers?: ConstructorParameters<typeof Headers>[0];
  body?: TokendBody | null;
  signal?: AbortSignal | null;
}

/** Largest daemon error answer read. */
const MAX_ERROR_ANSWER = 64 * 1024;
// Only to resolve relative paths; never contacted.
const PLACEHOLDER_ORIGIN = 'http://api-base.invalid';

/** True when `pathOrUrl` is an absolute URL rather than a path under api_base. */
export function isAbsoluteUrl(pathOrUrl: string | URL): boolean {
  return pathOrUrl instanceof URL || /^[a-z][a-z0-9+.-]*:/i.test(pathOrUrl);
}

/**
 * The part of the request URL under the account's api_base (path and query), with dot
 * segments resolved so it cannot climb out of it: `/user`, `user?x=1`, or an absolute URL
 * under `apiBase` (needed only for those). Anything else is refused.
 */
export function pathUnderApiBase(account: string, pathOrUrl: string | URL, apiBase?: string): string {
  if (!isAbsoluteUrl(pathOrUrl)) {
    const url = new URL(String(pathOrUrl), `${PLACEHOLDER_ORIGIN}/`);
    // `//host/x` and `\\host\x` are relative references to another host.
    if (url.origin !== PLACEHOLDER_ORIGIN)
      throw refuse(`"${url.origin}" is a URL of another host, not a path; give an absolute URL under the account's api_base`);
    return url.pathname.slice(1) + url.search;
  }
  const url = new URL(String(pathOrUrl));
  if (!apiBase)
    throw refuse(`account "${account}" has no api_base, so ${describe(url)} cannot be reached through it; set one with updateAccount`);
  const base = new URL(apiBase);
  const basePath = base.pathname.endsWith('/') ? base.pathname : `${base.pathname}/`;
  const under = url.origin === base.origin && (url.pathname === basePath.slice(0, -1) || url.pathname.startsWith(basePath));
  if (!under || url.username || url.password) {
    throw refuse(`${describe(url)} is not under account "${account}"'s api_base ${describe(base)}; the proxy reaches nothing else`);
  }
  return url.pathname.slice(basePath.length) + url.search;
}

/** One request through the proxy; the upstream's answer as a Response, or a TokendError for the daemon's own. */
export async function proxyFetch(transport: SocketTransport, account: string, rest: string, init: TokendFetchInit = {}): Promise<Response> {
  const method = (init.method ?? 'GET').toUpperCase();
  const headers = new Headers(init.headers);
  const hasBody = init.body !== undefined && init.body !== null;
  if (hasBody && (method === 'GET' || method === 'HEAD')) throw new TypeError(`a ${method} request cannot have a body`);
  const body = hasBody ? encodeBody(init.body!) : undefined;
  if (body?.type && !headers.has('content-type')) headers.set('content-type', body.type);
  if (body?.length !== undefined && !headers.has('content-length')) headers.set('content-length', String(body.length));
  const signal = init.signal ?? undefined;
  const res = await transport.request({
    method,
    path: ROUTES.proxy(account, rest),
    headers: Object.fromEntries(headers),
    body: body?.data,
    signal,
  });
  const status = res.statusCode ?? 0;
  if (res.headers[PROXY_ERROR_HEADER] !== undefined)
    throw errorFromAnswer(status, await transport.text(res, MAX_ERROR_ANSWER, signal), header(res, 'retry-after'));
  // A body cut short (the daemon stopped mid-download) errors the stream with a TokendError
  // too; an upstream body that does not decode stays the decoder's error.
  return toResponse(res, method, (err) => (res.errored ? transport.broken(err, signal) : err));
}

interface EncodedBody {
  data: Uint8Array | Readable;
  /** The Content-Type fetch would give it. */
  type?: string;
  /** Known length; a stream of unknown length goes chunked. */
  length?: number;
}

/** A fetch body as bytes or a Node stream, the way WHATWG fetch extracts one (Fetch §5.2 "extract a body"). */
export function encodeBody(body: TokendBody): EncodedBody {
  if (typeof body === 'string') return { data: Buffer.from(body, 'utf8'), type: 'text/plain;charset=UTF-8' };
  if (body instanceof URLSearchParams)
    return { data: Buffer.from(body.toString(), 'utf8'), type: 'application/x-www-form-urlencoded;charset=UTF-8' };
  if (body instanceof Uint8Array) return { data: body };
  if (body instanceof ArrayBuffer) return { data: new Uint8Array(body) };
  if (ArrayBuffer.isView(body)) return { data: new Uint8Array(body.buffer, body.byteOffset, body.byteLength) };
  if (body instanceof Blob) return { data: fromWeb(body.stream()), type: body.type || undefined, length: body.size };
  if (body instanceof FormData) {
    // The multipart encoding (and its boundary) is the platform's.
    const encoded = new Response(body);
    return { data: fromWeb(encoded.body!), type: encoded.headers.get('content-type') ?? undefined };
  }
  if (body instanceof ReadableStream) return { data: fromWeb(body) };
  if (body instanceof Readable) return { data: body };
  if (typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function')
    return { data: Readable.from(body as AsyncIterable<Uint8Array | string>) };
  throw new TypeError('unsupported body: give a string, bytes, URLSearchParams, Blob, FormData or a stream');
}

/**
 * The daemon's answer as a WHATWG Response whose body streams from the socket, decoded as
 * fetch decodes it; a failure while reading it is what `failure` makes of it.
 */
export function toResponse(res: http.IncomingMessage, method: string, failure: (err: unknown) => unknown = (err) => err): Response {
  const headers = new Headers();
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) headers.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
  const status = res.statusCode ?? 502;
  // Fetch §4.6 "null body status", and HEAD: no body.
  if (method === 'HEAD' || status === 204 || status === 205 || status === 304) {
    res.resume();
    return new Response(null, { status, statusText: res.statusMessage, headers });
  }
  return new Response(pullStream(decoded(res), failure), { status, statusText: res.statusMessage, headers });
}

/** Fetch §4.6 step "content codings": gzip, deflate and br bodies come out decoded. */
function decoded(res: http.IncomingMessage): Readable {
  const coding = header(res, 'content-encoding')?.trim().toLowerCase();
  const decoder =
    coding === 'gzip' || coding === 'x-gzip'
      ? zlib.createGunzip({ flush: zlib.constants.Z_SYNC_FLUSH, finishFlush: zlib.constants.Z_SYNC_FLUSH })
      : coding === 'deflate'
        ? zlib.createInflate()
        : coding === 'br'
          ? zlib.createBrotliDecompress()
          : undefined;
  if (!decoder) return res;
  res.on('error', (err) => decoder.destroy(err));
  decoder.on('close', () => res.destroy());
  return res.pipe(decoder);
}

/**
 * A web stream that reads the Node stream only when its reader asks (high water mark 0),
 * so a slow reader holds the socket back instead of filling memory: a large download
 * flows at the reader's pace.
 */
function pullStream(src: Readable, failure: (err: unknown) => unknown): ReadableStream<Uint8Array> {
  const chunks = src[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let next: IteratorResult<Buffer>;
        try {
          next = await chunks.next();
        } catch (err) {
          throw failure(err);
        }
        const { value, done } = next;
        if (done) controller.close();
        else controller.enqueue(new Uint8Array(value.buffer, value.byteOffset, value.byteLength));
      },
      async cancel(reason) {
        src.destroy(reason instanceof Error ? reason : undefined);
      },
    },
    { highWaterMark: 0 },
  );
}

function fromWeb(stream: ReadableStream<Uint8Array>): Readable {
  return Readable.fromWeb(stream as Parameters<typeof Readable.fromWeb>[0]);
}

/** A URL for a message: no query, no credentials (either may hold a secret). */
function describe(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function refuse(message: string): TokendError {
  return new TokendError('invalid_request', message);
}
