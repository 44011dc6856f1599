/**
 * What the fakes of public providers that cannot be reached from here (Real-Debrid, Cal.com,
 * AMP) share: a server on 127.0.0.1 that reads each request whole, JSON answers, secrets
 * that are recorded for leak checks, and scripted faults (an endpoint's next answers
 * replaced by a 500, a 429 with Retry-After, a provider's own error, or no answer at all).
 * Each fake keeps the protocol of its provider; this file keeps none.
 */
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { listenOnLoopback } from './loopback.js';

/** One request as a fake sees it: the body read whole. */
export interface FakeRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** An answer: status, JSON body (or text), headers. */
export interface FakeAnswer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** What a fault makes an endpoint do instead of its real answer. */
export type FaultAnswer = FakeAnswer | 'hang';

/** Scripted faults per endpoint: the next `times` requests get the fault, then the real answers again. */
export class Faults {
  private readonly plans: Array<{ endpoint: string; answer: FaultAnswer; left: number }> = [];

  /** The next `times` requests to `endpoint` get `answer` (Infinity: until `clear`). */
  add(endpoint: string, answer: FaultAnswer, times = 1): void {
    this.plans.push({ endpoint, answer, left: times });
  }

  clear(): void {
    this.plans.length = 0;
  }

  /** The fault this request to `endpoint` gets, if any (and it is counted). */
  take(endpoint: string): FaultAnswer | undefined {
    const plan = this.plans.find((p) => p.endpoint === endpoint && p.left > 0);
    if (!plan) return undefined;
    plan.left -= 1;
    return plan.answer;
  }
}

export interface FakeServer {
  url: string;
  close(): Promise<void>;
}

/** Starts a server whose handler gets each request read whole; a handler that throws answers 500. */
export async function startFakeServer(handle: (req: FakeRequest, res: http.ServerResponse) => void): Promise<FakeServer> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://fake.test');
      try {
        handle({ method: req.method ?? 'GET', path: u.pathname, query: u.searchParams, headers: req.headers, body }, res);
      } catch (err) {
        answer(res, { status: 500, body: { error: String(err) } });
      }
    });
  });
  const { url, close } = await listenOnLoopback(server);
  return { url, close };
}

/** Write an answer (or, for 'hang', nothing: the request waits until the client gives up). */
export function answer(res: http.ServerResponse, a: FaultAnswer): void {
  if (a === 'hang') return;
  const text = a.body === undefined ? '' : typeof a.body === 'string' ? a.body : JSON.stringify(a.body);
  res.writeHead(a.status, {
    ...(a.body !== undefined && typeof a.body !== 'string' ? { 'content-type': 'application/json' } : {}),
    'cache-control': 'no-store',
    ...a.headers,
  });
  res.end(text);
}

/** A JSON body, or undefined when it is not JSON. */
export function jsonOf(body: string): any {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

/** A fresh secret value, recorded in `issued` so that tests can look for it where it must not be. */
export function mint(prefix: string, issued: string[]): string {
  const v = `${prefix}-${randomBytes(12).toString('hex')}`;
  issued.push(v);
  return v;
}

/** An unsigned-looking JWT (HS256 header, random signature) with these claims: the fakes' tokens where the real ones are JWTs. */
export function fakeJwt(claims: Record<string, unknown>, issued: string[]): string {
  const part = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const jwt = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ ...claims, jti: randomBytes(8).toString('hex') })}.${randomBytes(32).toString('base64url')}`;
  issued.push(jwt);
  return jwt;
}

/** The token of an `Authorization: <scheme> <token>` header, when the scheme is `scheme` (case-insensitive, as RFC 9110 §11.1 says). */
export function credentialOf(headers: http.IncomingHttpHeaders, scheme: string): string | undefined {
  const m = /^(\S+) (.+)$/.exec(headers.authorization ?? '');
  return m && m[1].toLowerCase() === scheme.toLowerCase() ? m[2] : undefined;
}
