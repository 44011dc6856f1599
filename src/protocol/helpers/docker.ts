/**
 * The docker credential-helper wire format (docker-credential-helpers
 * `credentials/credentials.go`). Pure: bytes in, a typed request or error; data in, bytes out.
 */
import { parseTargetUrl } from '../host-pattern.js';
import { parseFailure, type HelperParseError, type HelperParseResult } from './parse-result.js';

/** docker's credential store: the client matches these exact strings (after TrimSpace). */
export const DOCKER_ERR_NOT_FOUND = 'credentials not found in native keychain';
export const DOCKER_ERR_NO_SERVER_URL = 'no credentials server URL';
export const DOCKER_ERR_NO_USERNAME = 'no credentials username';

/** `bufio.Scanner`'s default token limit in the Go library is 64 KiB; we cap the whole input there. */
export const DOCKER_MAX_INPUT_BYTES = 64 * 1024;

export type DockerRequest =
  | { action: 'get' | 'erase'; serverUrl: string }
  | { action: 'store'; serverUrl: string; username: string; secret: string }
  | { action: 'list' };

export type DockerParseErrorCode = 'no_server_url' | 'no_username' | 'invalid_json' | 'input_too_large' | 'unknown_action';

/** `message` is the exact line to print on stdout (with exit 1). */
export type DockerParseError = HelperParseError<DockerParseErrorCode>;

export type DockerParseResult = HelperParseResult<DockerRequest, DockerParseErrorCode>;

const fail = parseFailure<DockerParseErrorCode>;

/** Go's encoding/json matches struct fields case-insensitively; so do we. */
function field(obj: Record<string, unknown>, name: string): unknown {
  if (name in obj) return obj[name];
  const lower = name.toLowerCase();
  for (const k of Object.keys(obj)) if (k.toLowerCase() === lower) return obj[k];
  return undefined;
}

/**
 * Parse a docker helper's stdin for `action` (argv[1]):
 * `get`/`erase` take the raw server URL, whitespace-trimmed (`strings.TrimSpace`);
 * `store` takes `{"ServerURL","Username","Secret"}`; `list` ignores stdin (docker sends "unused").
 */
export function parseDockerInput(action: string, input: Buffer | string): DockerParseResult {
  const buf = typeof input === 'string' ? Buffer.from(input, 'utf8') : input;
  if (action === 'list') return { ok: true, request: { action: 'list' } };
  if (action !== 'get' && action !== 'erase' && action !== 'store') {
    // The library's words: `Unknown credential action `%s``; we do not echo argv back.
    return fail('unknown_action', 'Unknown credential action');
  }
  // The Go library fails with "bufio.Scanner: token too long" past 64 KiB.
  if (buf.length > DOCKER_MAX_INPUT_BYTES) return fail('input_too_large', 'bufio.Scanner: token too long');
  // The library joins the scanner's lines without their newlines before using them.
  const text = buf.toString('utf8').replace(/\r?\n/g, '');

  if (action === 'get' || action === 'erase') {
    const serverUrl = text.trim();
    if (serverUrl === '') return fail('no_server_url', DOCKER_ERR_NO_SERVER_URL);
    return { ok: true, request: { action, serverUrl } };
  }

  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    // Node's JSON.parse message quotes the input, which holds the Secret: never print it.
    return fail('invalid_json', 'invalid JSON on stdin: expected {"ServerURL","Username","Secret"}');
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    return fail('invalid_json', 'invalid JSON on stdin: expected {"ServerURL","Username","Secret"}');
  }
  const obj = parsed as Record<string, unknown>;
  const serverUrl = field(obj, 'ServerURL') ?? '';
  const username = field(obj, 'Username') ?? '';
  const secret = field(obj, 'Secret') ?? '';
  if (typeof serverUrl !== 'string' || typeof username !== 'string' || typeof secret !== 'string') {
    return fail('invalid_json', 'invalid JSON on stdin: ServerURL, Username and Secret must be strings');
  }
  // credentials.go isValid(): server URL first, then username.
  if (serverUrl === '') return fail('no_server_url', DOCKER_ERR_NO_SERVER_URL);
  if (username === '') return fail('no_username', DOCKER_ERR_NO_USERNAME);
  return { ok: true, request: { action: 'store', serverUrl, username, secret } };
}

/**
 * Where a docker server URL points, for account matching. Docker passes either a bare
 * registry host (`registry.example.com`, `localhost:5000`) or a URL
 * (`https://index.docker.io/v1/`); a bare host means https, as docker assumes.
 */
export function dockerServerTarget(serverUrl: string): { protocol: string; host: string; port?: number; path?: string } | undefined {
  const url = parseTargetUrl(serverUrl);
  if (!url) return undefined;
  const target: { protocol: string; host: string; port?: number; path?: string } = {
    protocol: url.protocol.replace(/:$/, ''),
    host: url.hostname,
  };
  if (url.port !== '') target.port = Number(url.port);
  if (url.pathname !== '' && url.pathname !== '/') target.path = url.pathname;
  return target;
}

/** docker's `Credentials` struct; field order as in credentials.go. */
export interface DockerCredential {
  ServerURL: string;
  Username: string;
  Secret: string;
}

/** `get`'s stdout: `json.NewEncoder(…).Encode(Credentials{…})`, i.e. JSON plus a newline. */
export function formatDockerCredential(cred: DockerCredential): Buffer {
  const ordered = { ServerURL: cred.ServerURL, Username: cred.Username, Secret: cred.Secret };
  return Buffer.from(`${JSON.stringify(ordered)}\n`, 'utf8');
}

/** `list`'s stdout: server URL → username, JSON plus a newline. */
export function formatDockerList(entries: Readonly<Record<string, string>>): Buffer {
  return Buffer.from(`${JSON.stringify(entries)}\n`, 'utf8');
}

/** An error as docker expects it: the message on **stdout**, then exit 1 (`fmt.Fprintln(os.Stdout, err)`). */
export function formatDockerError(message: string): Buffer {
  return Buffer.from(`${message.replace(/[\r\n]+/g, ' ')}\n`, 'utf8');
}
