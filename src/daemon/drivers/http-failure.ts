/**
 * What every driver's error translation shares, whatever the provider speaks: which URLs a
 * request may go to, which answers are about the server's state rather than our request
 * (5xx, 429, 408, with `Retry-After`), which failures are the network's, and how
 * provider-supplied text is cleaned before it enters a message.
 */
import { isLoopbackHost } from '../../protocol/rules.js';
import { DriverError } from './driver.js';

/**
 * The URL a step may send to: https, or plain http to loopback only (RFC 6749 §3.1 / §3.2
 * require TLS; a local test server is the one exception we make).
 */
export function checkTransport(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DriverError('config', 'an endpoint is not a valid URL');
  }
  if (parsed.protocol === 'http:') {
    if (!isLoopbackHost(parsed.hostname)) throw new DriverError('config', `refusing plain http to a non-loopback host: ${parsed.origin}`);
  } else if (parsed.protocol !== 'https:') {
    throw new DriverError('config', `refusing a ${parsed.protocol} endpoint: only https (or http to loopback) is allowed`);
  }
  return parsed;
}

/** "token endpoint at https://host/path": where a step went, for messages; never the query (it may hold a code). */
export function placeOf(label: string, url: string | undefined): string {
  if (!url) return label;
  try {
    const u = new URL(url);
    return `${label} at ${u.origin}${u.pathname}`;
  } catch {
    return label;
  }
}

/**
 * Answers about the server's state, not about our request: 5xx (RFC 9110 §15.6), 429 (RFC 6585
 * §4) and 408 (RFC 9110 §15.5.9: the client may repeat the request). RFC 6749 §5.2 errors are 400/401.
 */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 || status === 429 || status === 408;
}

/** A 5xx, 429 or 408 answer as a transient DriverError carrying its `Retry-After`; the body is discarded. */
export function retryableFailure(response: Response, where: string): DriverError {
  void response.body?.cancel().catch(() => {});
  const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
  return new DriverError('transient', `the ${where} answered HTTP ${response.status}${response.status === 429 ? ' (rate limited)' : ''}`, {
    status: response.status,
    retryAfterMs,
  });
}

/** Network failures where the connection never opened, so the request cannot have been seen. */
const NEVER_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_CONNECT_TIMEOUT']);

const TLS_CODE = /^(ERR_TLS_|CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_)/;

/**
 * A failure of the request itself rather than an answer: aborted or timed out (the request
 * may have been processed and its answer lost), or the network (fetch rejects with
 * `TypeError('fetch failed', { cause })`). Undefined for anything else.
 */
export function transportFailure(err: unknown, where: string, signal?: AbortSignal): DriverError | undefined {
  const e = err as { name?: unknown; code?: unknown } | undefined;
  const name = typeof e?.name === 'string' ? e.name : '';
  if (name === 'AbortError' || name === 'TimeoutError' || signal?.aborted) {
    const timedOut = name === 'TimeoutError' || (signal?.reason as { name?: unknown } | undefined)?.name === 'TimeoutError';
    return new DriverError('transient', `the ${where} did not answer in time (${timedOut ? 'timed out' : 'aborted'})`, {
      outcomeUnknown: true,
    });
  }
  if (err instanceof TypeError && typeof e?.code !== 'string') {
    const code = networkCode(err);
    const sent = !(code && (NEVER_SENT.has(code) || TLS_CODE.test(code)));
    return new DriverError('transient', `could not reach the ${where}${code ? `: ${code}` : ''}`, { outcomeUnknown: sent });
  }
  return undefined;
}

function networkCode(err: TypeError): string | undefined {
  let c: unknown = err.cause;
  for (let depth = 0; c && depth < 4; depth++) {
    const code = (c as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    c = (c as { cause?: unknown }).cause;
  }
  return undefined;
}

/** Removes every known secret from server-supplied text, and control characters; bounds the length. */
export function scrub(text: string, secrets: readonly (string | undefined)[] = []): string {
  let out = text;
  for (const s of secrets) {
    if (s && s.length >= 4) out = out.split(s).join('[redacted]');
  }
  // eslint-disable-next-line no-control-regex
  out = out.replace(/[\u0000-\u001f\u007f]+/g, ' ');
  return out.length > 300 ? `${out.slice(0, 300)}…` : out;
}

// --- Retry-After ------------------------------------------------------------------------------

const MONTHS = ['jan', 'feb', 'mar', 'apr', 'may', 'jun', 'jul', 'aug', 'sep', 'oct', 'nov', 'dec'];
const IMF_FIXDATE = /^[a-z]{3}, (\d{2}) ([a-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT$/i;
const RFC850_DATE = /^[a-z]{6,9}, (\d{2})-([a-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT$/i;
const ASCTIME_DATE = /^[a-z]{3} ([a-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})$/i;

/**
 * `Retry-After` in ms from `now` (RFC 9110 §10.2.3): `delay-seconds` or an `HTTP-date`,
 * in any of the three forms a recipient must accept (§5.6.7). A date in the past gives 0;
 * anything unparseable gives undefined.
 */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value == null) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) {
    const ms = Number(v) * 1000;
    return Number.isFinite(ms) ? ms : undefined;
  }
  const at = parseHttpDate(v, now);
  return at === undefined ? undefined : Math.max(0, at - now);
}

function parseHttpDate(v: string, now: number): number | undefined {
  let m: RegExpExecArray | null;
  let day: number, mon: string, year: number, hh: number, mm: number, ss: number;
  if ((m = IMF_FIXDATE.exec(v))) {
    [day, mon, year, hh, mm, ss] = [+m[1], m[2], +m[3], +m[4], +m[5], +m[6]];
  } else if ((m = RFC850_DATE.exec(v))) {
    [day, mon, hh, mm, ss] = [+m[1], m[2], +m[4], +m[5], +m[6]];
    // §5.6.7: a two-digit year more than 50 years in the future means the most recent past
    // year with the same last two digits.
    const thisYear = new Date(now).getUTCFullYear();
    year = Math.floor(thisYear / 100) * 100 + +m[3];
    if (year > thisYear + 50) year -= 100;
  } else if ((m = ASCTIME_DATE.exec(v))) {
    [mon, day, hh, mm, ss, year] = [m[1], +m[2].trim(), +m[3], +m[4], +m[5], +m[6]];
  } else {
    return undefined;
  }
  const month = MONTHS.indexOf(mon.toLowerCase());
  if (month < 0 || day < 1 || day > 31 || hh > 23 || mm > 59 || ss > 60) return undefined;
  return Date.UTC(year, month, day, hh, mm, ss);
}
