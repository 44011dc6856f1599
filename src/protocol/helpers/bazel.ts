/**
 * The Bazel / EngFlow credential-helper wire format (EngFlow
 * credential-helper-spec `spec.md`, `schemas/*.json`). Pure: bytes in, typed out.
 */
import { z } from 'zod';
import { authScheme } from './auth-scheme.js';
import { parseFailure, type HelperParseError, type HelperParseResult } from './parse-result.js';

export const BAZEL_MAX_INPUT_BYTES = 64 * 1024;

/** The EngFlow spec: `{"uri": …}` is required; the request "may contain extra properties". */
export const BazelGetRequest = z.looseObject({ uri: z.string().min(1).max(8192) });
export type BazelGetRequest = z.infer<typeof BazelGetRequest>;

export type BazelParseErrorCode = 'input_too_large' | 'invalid_json' | 'missing_uri' | 'invalid_uri';

/** `message` is one line for stderr. */
export type BazelParseError = HelperParseError<BazelParseErrorCode>;

export type BazelParseResult = HelperParseResult<{ uri: string }, BazelParseErrorCode>;

const fail = parseFailure<BazelParseErrorCode>;

/** Parse `<helper> get`'s stdin. */
export function parseBazelRequest(input: Buffer | string): BazelParseResult {
  const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  if (buf.length > BAZEL_MAX_INPUT_BYTES) return fail('input_too_large', `request is larger than ${BAZEL_MAX_INPUT_BYTES} bytes`);
  let json: unknown;
  try {
    json = JSON.parse(buf.toString('utf8'));
  } catch {
    return fail('invalid_json', 'request on stdin is not JSON; expected {"uri": "…"}');
  }
  const parsed = BazelGetRequest.safeParse(json);
  if (!parsed.success) return fail('missing_uri', 'request on stdin has no "uri" string; expected {"uri": "…"}');
  if (!URL.canParse(parsed.data.uri)) return fail('invalid_uri', 'request "uri" is not an absolute URI');
  return { ok: true, request: { uri: parsed.data.uri } };
}

/**
 * RFC 3339 in whole seconds, `Z`. Checked with Java 17: Bazel parses
 * `expires` with `yyyy-MM-dd'T'HH:mm:ssXXX`, so `toISOString()`'s `.000Z` fails the whole
 * response ("could not be parsed at index 19"). Rounds down: never claim a later expiry.
 */
export function rfc3339Seconds(epochMs: number): string {
  return new Date(Math.floor(epochMs / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export interface BazelCredential {
  token: string;
  token_type?: string;
  /** epoch ms, or null to leave `expires` out (Bazel then caches for `--credential_helper_cache_duration`). */
  expires_at: number | null;
}

/** `get`'s stdout: `{"headers":{"Authorization":["Bearer <token>"]},"expires":"…Z"}` and a newline. */
export function formatBazelCredential(cred: BazelCredential): Buffer {
  const body: { headers: Record<string, string[]>; expires?: string } = {
    headers: { Authorization: [`${authScheme(cred.token_type)} ${cred.token}`] },
  };
  if (cred.expires_at !== null) body.expires = rfc3339Seconds(cred.expires_at);
  return Buffer.from(`${JSON.stringify(body)}\n`, 'utf8');
}
