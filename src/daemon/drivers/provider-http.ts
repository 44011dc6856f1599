/**
 * Steps against providers with their own HTTP APIs (Real-Debrid, Cal.com, AMP), in the
 * oauth4webapi manner: a request function returns the raw Response, a process function
 * turns a 2xx body into what the step returns, and every failure becomes a DriverError in
 * `providerStep` and nowhere else. The transport rules are every driver's (http-failure.ts);
 * what a refusal means is each provider's (`ReadRefusal`).
 */
import type { AccountConfig } from '../../protocol/api.js';
import { outboundFetch } from '../outbound.js';
import { DriverError, type DriverContext } from './driver.js';
import { checkTransport, isRetryableStatus, parseRetryAfter, placeOf, retryableFailure, scrub, transportFailure } from './http-failure.js';

/** What every provider driver can be given (tests, proxies). */
export interface ProviderDriverOptions {
  /** The fetch every request goes through. Default: the global fetch. */
  fetch?: typeof fetch;
  /** The clock (ms), where a driver keeps time. */
  now?: () => number;
}

/** One request of a step: what is asked of whom, and what must never appear in a message. */
export interface ProviderStep {
  /** For messages: "Real-Debrid token endpoint". */
  label: string;
  url: string;
  /** What the step sends that is secret (tokens, client secrets, device codes, passwords). */
  secrets: readonly (string | undefined)[];
  signal: AbortSignal;
}

/** A provider's answer that is neither 2xx nor about its own state (5xx, 429, 408 are transient whoever answers). */
export interface Refusal {
  status: number;
  /** The body parsed as JSON, when it is JSON. */
  json: unknown;
  /** "the Real-Debrid token endpoint at https://…/oauth/v2/token", for messages. */
  where: string;
  retryAfterMs?: number;
  /** Server-supplied text made fit for a message: the step's secrets removed, bounded. */
  clean(text: string): string;
}

/** A provider's reading of a refusal; undefined leaves the default (config, naming the status). */
export type ReadRefusal = (r: Refusal) => DriverError | undefined;

export interface RequestInit {
  method: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
}

/** One request of a driver's step: the request itself, and for messages whom it asks and what it sends that is secret. */
export interface ProviderCall extends RequestInit, Omit<ProviderStep, 'signal'> {}

/**
 * The step runner of one driver: every call goes out with the account's signal, through
 * `opts.fetch` when given (tests), else the account's outbound client (its proxy and CA file).
 */
export function providerSteps(opts: ProviderDriverOptions) {
  return function step<T>(
    ctx: DriverContext,
    call: ProviderCall,
    process: (json: unknown) => T | undefined,
    readRefusal: ReadRefusal,
  ): Promise<T> {
    const { label, url, secrets, ...init } = call;
    return providerStep(
      { label, url, secrets, signal: ctx.signal },
      // Chosen inside the send: trouble making the account's client (an unreadable CA file) is then the step's failure like any other.
      () => sendRequest(url, init, ctx.signal, opts.fetch ?? outboundFetch(ctx.config)),
      process,
      readRefusal,
    );
  };
}

/**
 * Send one request: only to https (or http on loopback), and never following a redirect, so
 * a secret header or body cannot follow a Location somewhere else.
 */
function sendRequest(url: string, init: RequestInit, signal: AbortSignal, fetchImpl: typeof fetch = fetch): Promise<Response> {
  checkTransport(url);
  return fetchImpl(url, {
    method: init.method,
    headers: { accept: 'application/json', ...init.headers },
    body: init.body,
    redirect: 'manual',
    signal,
  });
}

/**
 * Run one step: send, read, and `process` a 2xx answer's JSON (undefined when the body is not
 * the answer the provider documents). Network failures, timeouts, 5xx, 429 and 408 are
 * transient; a refusal is what `readRefusal` says, else a config error naming the status.
 */
async function providerStep<T>(
  step: ProviderStep,
  send: () => Promise<Response>,
  process: (json: unknown) => T | undefined,
  readRefusal: ReadRefusal,
): Promise<T> {
  const where = placeOf(step.label, step.url);
  const clean = (text: string) => scrub(text, step.secrets);
  let response: Response;
  let text: string;
  try {
    response = await send();
    if (isRetryableStatus(response.status)) throw retryableFailure(response, where);
    text = await response.text();
  } catch (err) {
    throw failureOf(err, step, where, clean);
  }
  const json = parseJson(text);
  if (response.status >= 200 && response.status < 300) {
    const out = process(json);
    // Not the documented answer: a broken proxy or a bad deploy; try again later.
    if (out === undefined)
      throw new DriverError('transient', `the ${where} answered ${response.status} with a body that is not the answer it documents`, {
        status: response.status,
      });
    return out;
  }
  const refusal: Refusal = {
    status: response.status,
    json,
    where,
    clean,
    retryAfterMs: parseRetryAfter(response.headers.get('retry-after')),
  };
  throw readRefusal(refusal) ?? new DriverError('config', `the ${where} answered HTTP ${response.status}`, { status: response.status });
}

function failureOf(err: unknown, step: ProviderStep, where: string, clean: (s: string) => string): DriverError {
  if (err instanceof DriverError) return err;
  const transport = transportFailure(err, where, step.signal);
  if (transport) return transport;
  // Anything else is unexpected: assume the worst about whether the request went out.
  const what = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  return new DriverError('transient', `unexpected failure talking to the ${where}: ${clean(what)}`, { outcomeUnknown: true });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** `base_url` without its trailing slashes: where a provider driver's endpoints hang. */
export function serviceRoot(ctx: DriverContext): string {
  if (!ctx.config.base_url) throw new DriverError('config', `account "${ctx.name}" has no base_url (set it with --base-url)`);
  return ctx.config.base_url.replace(/\/+$/, '');
}

/** `validate` for a provider driver: the base URL its endpoints hang off. */
export function needsBaseUrl(cfg: AccountConfig, driver: string): string | undefined {
  return cfg.base_url ? undefined : `base_url: the ${driver} driver needs the service's base URL (--base-url, or --preset ${driver})`;
}

/** A property of a JSON object, when the value is an object. */
export function field(json: unknown, key: string): unknown {
  return json && typeof json === 'object' && !Array.isArray(json) ? (json as Record<string, unknown>)[key] : undefined;
}

/** A string property, when it is a non-empty string. */
export function stringField(json: unknown, key: string): string | undefined {
  const v = field(json, key);
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** A number property, when it is a finite positive number. */
export function positiveField(json: unknown, key: string): number | undefined {
  const v = field(json, key);
  return typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : undefined;
}
