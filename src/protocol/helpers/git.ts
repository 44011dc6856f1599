/**
 * The git credential-helper wire format (`git-credential(1)`).
 * Pure: bytes in, a typed request or a typed error out; a typed answer in, bytes out.
 */
import { splitAuthority, type HostPattern } from '../host-pattern.js';
import { isLoopbackHost } from '../rules.js';
import { authScheme } from './auth-scheme.js';
import { parseFailure, type HelperParseError, type HelperParseResult } from './parse-result.js';

/** git-credential(1), INPUT/OUTPUT FORMAT: "A line, including its newline, may not exceed 65535 bytes" (git ≥ 2.46 doc). */
export const GIT_MAX_LINE_BYTES = 65_535;
/** Our own cap on a whole request; git sends a few hundred bytes. Same as the socket API's body cap. */
export const GIT_MAX_INPUT_BYTES = 64 * 1024;

/** What git asked for, with `host` split from its `:port` (git-credential(1): host includes the port). */
export interface GitCredentialRequest {
  /** argv's last word: `get`, `store`, `erase`, or anything a future git sends. */
  action: string;
  protocol: string;
  /** Without the port; an IPv6 literal keeps its brackets (`[::1]`), as in a URL. */
  host: string;
  port?: number;
  /** As git sends it: no leading slash (`org/repo.git`); only with `credential.useHttpPath` (gitcredentials(7)). */
  path?: string;
  username?: string;
  password?: string;
  /**
   * `capability[]` values, in order (git ≥ 2.46 announces `authtype` and `state` first);
   * absent when git announced none, as every git before 2.46 does.
   */
  capabilities?: string[];
  /** `authtype` and `credential` (git ≥ 2.46): what `erase` and `store` carry back instead of a password. */
  authtype?: string;
  credential?: string;
}

export type GitParseErrorCode =
  | 'input_too_large'
  | 'line_too_long'
  | 'nul_byte'
  | 'carriage_return'
  | 'invalid_line'
  | 'invalid_url'
  | 'invalid_port'
  | 'missing_protocol'
  | 'missing_host';

export type GitParseError = HelperParseError<GitParseErrorCode>;

export type GitParseResult = HelperParseResult<GitCredentialRequest, GitParseErrorCode>;

const LF = 0x0a;
const CR = 0x0d;
const NUL = 0x00;

const fail = parseFailure<GitParseErrorCode>;

/** A key is safe to name in a message only when it looks like a git attribute name. */
function keyLabel(key: string): string {
  return /^[A-Za-z0-9_[\]-]{1,40}$/.test(key) ? `"${key}"` : 'an attribute';
}

function percentDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/**
 * `url=` splits into its parts the way git's `credential_from_url_1` does: all fields
 * are cleared first (git-credential(1) "parsing calls credential_clear() first"), then
 * `proto://[user[:pass]@]host[/path]`, each part percent-decoded, trailing slashes off the path.
 */
function applyUrl(fields: Map<string, string>, url: string): boolean {
  const sep = url.indexOf('://');
  if (sep <= 0) return false;
  fields.clear();
  fields.set('protocol', url.slice(0, sep));
  const rest = url.slice(sep + 3);
  const slash = rest.indexOf('/');
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const at = authority.lastIndexOf('@');
  const hostPart = at < 0 ? authority : authority.slice(at + 1);
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    const colon = userinfo.indexOf(':');
    fields.set('username', percentDecode(colon < 0 ? userinfo : userinfo.slice(0, colon)));
    if (colon >= 0) fields.set('password', percentDecode(userinfo.slice(colon + 1)));
  }
  fields.set('host', percentDecode(hostPart));
  if (slash >= 0) {
    const path = percentDecode(rest.slice(slash + 1)).replace(/\/+$/, '');
    if (path !== '') fields.set('path', path);
  }
  return true;
}

/**
 * Parse what git writes on a helper's stdin (git-credential(1), INPUT/OUTPUT FORMAT): `key=value` lines up to
 * a blank line or EOF. Unknown keys are ignored (git-credential(1): "Unrecognised attributes … are
 * silently discarded"). Refused: a line without `=` (git itself stops at one), a NUL, a
 * CR anywhere (CVE-2024-52006: a CR can smuggle a second `host=` past a lax reader), a
 * line over 65535 bytes, or more than 64 KiB in all.
 */
export function parseGitCredentialInput(action: string, input: Buffer | string): GitParseResult {
  const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  if (buf.length > GIT_MAX_INPUT_BYTES) {
    // Name the more precise fault when one line alone is over git's limit.
    for (let start = 0, n = 1; start < buf.length; n++) {
      const lf = buf.indexOf(LF, start);
      const end = lf < 0 ? buf.length : lf + 1;
      if (end - start > GIT_MAX_LINE_BYTES) {
        return fail('line_too_long', `credential line ${n} is longer than ${GIT_MAX_LINE_BYTES} bytes`);
      }
      if (end - start <= 1 && lf >= 0) break; // the blank line ending the request
      start = end;
    }
    return fail('input_too_large', `credential input is larger than ${GIT_MAX_INPUT_BYTES} bytes`);
  }

  const fields = new Map<string, string>();
  const capabilities: string[] = [];
  let start = 0;
  let lineNo = 0;
  while (start < buf.length) {
    let end = buf.indexOf(LF, start);
    const hasLf = end >= 0;
    if (!hasLf) end = buf.length;
    lineNo += 1;
    if (end - start + (hasLf ? 1 : 0) > GIT_MAX_LINE_BYTES) {
      return fail('line_too_long', `credential line ${lineNo} is longer than ${GIT_MAX_LINE_BYTES} bytes`);
    }
    const line = buf.subarray(start, end);
    start = end + 1;
    // git-credential(1): "The list ends at a blank line or at EOF."
    if (line.length === 0) break;
    if (line.includes(NUL)) return fail('nul_byte', `credential line ${lineNo} contains a NUL byte`);
    const eq = line.indexOf(0x3d /* = */);
    if (eq < 0) {
      // Checked before CR so a bare "\r" line reads as what it is: not an attribute.
      return fail('invalid_line', `credential line ${lineNo} is not key=value`);
    }
    const key = line.subarray(0, eq).toString('utf8');
    if (line.includes(CR)) {
      // Same words as git's own refusal: "credential value for username contains carriage return".
      return fail('carriage_return', `credential value for ${keyLabel(key)} contains carriage return`);
    }
    const value = line.subarray(eq + 1).toString('utf8');
    if (key === 'url') {
      if (!applyUrl(fields, value)) return fail('invalid_url', 'credential url cannot be parsed');
    } else if (key === 'capability[]') {
      // git-credential(1): "If the value is empty, the list is cleared" (multi-valued keys, git ≥ 2.41).
      if (value === '') capabilities.length = 0;
      else capabilities.push(value);
    } else {
      // Other multi-valued `key[]` entries (wwwauth[], state[]) and unknown keys are kept
      // aside and never used; the last single value wins, as in git's credential_read.
      fields.set(key, value);
    }
  }

  const protocol = fields.get('protocol');
  if (!protocol) return fail('missing_protocol', 'credential input has no protocol');
  const hostport = fields.get('host');
  if (!hostport) return fail('missing_host', 'credential input has no host');
  // git-credential(1): host is "Hostname including :port"; an unbracketed IPv6 literal carries no port.
  const hp = splitAuthority(hostport);
  if (!hp || hp.host === '') return fail('invalid_port', 'credential host has an invalid port');

  const request: GitCredentialRequest = { action, protocol, host: hp.host };
  if (hp.port !== undefined) request.port = hp.port;
  const path = fields.get('path');
  if (path) request.path = path;
  const username = fields.get('username');
  if (username) request.username = username;
  const password = fields.get('password');
  if (password) request.password = password;
  if (capabilities.length > 0) request.capabilities = capabilities;
  const authtype = fields.get('authtype');
  if (authtype) request.authtype = authtype;
  const credential = fields.get('credential');
  if (credential) request.credential = credential;
  return { ok: true, request };
}

/** git-credential(1): `authtype`, `credential` and `ephemeral` may be sent only to a git that announced this capability. */
export const GIT_CAPABILITY_AUTHTYPE = 'authtype';

/** Did git announce `capability[]=authtype` (git ≥ 2.46)? */
export function acceptsAuthtype(request: Pick<GitCredentialRequest, 'capabilities'>): boolean {
  return request.capabilities?.includes(GIT_CAPABILITY_AUTHTYPE) ?? false;
}

/**
 * The token git reports as refused in `erase`: the `password` a git before 2.46 sends, or
 * the `credential` of a Bearer answer a git ≥ 2.46 sends back.
 */
export function rejectedToken(request: GitCredentialRequest): string | undefined {
  if (request.password !== undefined) return request.password;
  if (request.credential !== undefined && authScheme(request.authtype) === 'Bearer') return request.credential;
  return undefined;
}

/**
 * What a helper answers to `get`: a username and password (HTTP Basic; every git), or,
 * for a git that announced `capability[]=authtype`, the token itself as a pre-encoded
 * credential that git sends as `Authorization: <authtype> <credential>`.
 */
export type GitCredentialAnswer = GitPasswordAnswer | GitBearerAnswer;

export interface GitPasswordAnswer {
  /** Omitted to keep the username git already has (git-credential-oauth does the same). */
  username?: string;
  password: string;
  /** Unix seconds (UTC); git ≥ 2.40 honours it, 2.39 drops it silently (git-credential(1)). */
  password_expiry_utc?: number;
}

export interface GitBearerAnswer {
  /** The scheme, e.g. `Bearer`; only for a git that announced `capability[]=authtype`. */
  authtype: string;
  credential: string;
  /** git-credential(1) `ephemeral`: storage helpers must not keep the credential. */
  ephemeral?: boolean;
  /** Unix seconds (UTC); git drops the credential once it is past. */
  password_expiry_utc?: number;
}

/** Thrown when an answer cannot be written safely; the message names the field, never its value. */
export class GitFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GitFormatError';
  }
}

function checkValue(field: string, value: string): void {
  // A newline would let a value inject its own attribute (e.g. `url=`, which makes git
  // drop every remaining helper: git-credential(1)); git refuses CR and NUL.
  if (/[\n\r\0]/.test(value)) throw new GitFormatError(`credential ${field} contains a newline, CR or NUL`);
}

function expiryLine(expiry: number | undefined): string {
  if (expiry === undefined) return '';
  if (!Number.isSafeInteger(expiry) || expiry < 0) throw new GitFormatError('password_expiry_utc must be whole Unix seconds');
  return `password_expiry_utc=${expiry}\n`;
}

/**
 * The bytes a helper prints for `get`, one `key=value\n` each. Never `url=`
 * (git-credential(1): parsing `url` clears every attribute). No closing blank line: git
 * reads to EOF, and git-credential-oauth prints none either.
 *
 * Basic: `username`, `password`, `password_expiry_utc`. Bearer: `capability[]=authtype`
 * first (git-credential(1): "A capability[] directive must precede any value depending on
 * it"), then `authtype`, `credential`, `ephemeral`, `password_expiry_utc`.
 */
export function formatGitCredential(answer: GitCredentialAnswer): Buffer {
  let out = '';
  if ('credential' in answer) {
    checkValue('authtype', answer.authtype);
    if (answer.authtype === '' || /\s/.test(answer.authtype)) throw new GitFormatError('credential authtype must be one word');
    if (answer.credential === '') throw new GitFormatError('credential is empty');
    checkValue('credential', answer.credential);
    out += `capability[]=${GIT_CAPABILITY_AUTHTYPE}\nauthtype=${answer.authtype}\ncredential=${answer.credential}\n`;
    if (answer.ephemeral) out += 'ephemeral=1\n';
    out += expiryLine(answer.password_expiry_utc);
    return Buffer.from(out, 'utf8');
  }
  if (answer.username !== undefined) {
    checkValue('username', answer.username);
    out += `username=${answer.username}\n`;
  }
  if (answer.password === '') throw new GitFormatError('credential password is empty');
  checkValue('password', answer.password);
  out += `password=${answer.password}\n`;
  out += expiryLine(answer.password_expiry_utc);
  return Buffer.from(out, 'utf8');
}

/**
 * The URLs of git's `credential.<url>.*` config that cover an account's hosts pattern
 * (git-config(1), `http.<url>.*`, which `credential.<url>` follows: scheme and host must
 * match, `*` in a host stands for one label, an omitted port is the scheme's default, and
 * the path matches as a prefix of whole segments). A pattern without a scheme serves
 * https, and http too on a loopback host, as the daemon matches it. Only http(s): git asks
 * helpers for nothing else.
 */
export function gitConfigUrls(pattern: HostPattern): string[] {
  const schemes = pattern.scheme !== undefined ? [pattern.scheme] : isLoopbackHost(pattern.host) ? ['https', 'http'] : ['https'];
  const host = pattern.wildcard ? `*.${pattern.host}` : pattern.host;
  const port = pattern.port !== undefined ? `:${pattern.port}` : '';
  return schemes.filter((s) => s === 'https' || s === 'http').map((s) => `${s}://${host}${port}${pattern.pathPrefix ?? ''}`);
}
