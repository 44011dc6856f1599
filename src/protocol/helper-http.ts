/**
 * The HTTP contract of `POST /v1/helpers/:tool/:action` (ROUTES.helper): the daemon speaks
 * each tool's credential-helper protocol, and a helper binary is a byte pipe that sends the
 * tool's stdin as the body and relays the answer. Free of zod: the node helper imports it
 * on its fast path.
 *
 * Mirrored where node cannot run: bin/tokend-sh-lib (the sh shims), bin/tokend
 * (`tokend token NAME` and `kubectl-credential NAME`) and native/tokend-fast.c. A change
 * here changes them too.
 */

/** The tools whose credential-helper protocol the daemon speaks. */
export const HELPER_TOOLS = ['git', 'docker', 'kubectl', 'bazel'] as const;
export type HelperTool = (typeof HELPER_TOOLS)[number];

export function isHelperTool(tool: string): tool is HelperTool {
  return (HELPER_TOOLS as readonly string[]).includes(tool);
}

/**
 * `tokend token NAME` through the same pipe (bin/tokend's fast path): the account name is
 * the body, the token and a newline the answer, and the CLI's exit statuses (2 bad usage,
 * 3 needs a login) pass through {@link HELPER_EXIT_HEADER}.
 */
export const CLI_TOKEN = { tool: 'cli', action: 'token' } as const;

/** An action is lower-case letters and dashes: it becomes a segment of the URL path. */
export const HELPER_ACTION_RE = /^[a-z-]{1,32}$/;

/** Request header: a JSON object of the helper's environment; the daemon reads only {@link HELPER_FORWARDED_ENV}. */
export const HELPER_ENV_HEADER = 'x-tokend-env';

/**
 * The environment variables a helper forwards: `KUBERNETES_EXEC_INFO` (kubectl's input;
 * without it the body is read as its value) and `TOKEND_ACCOUNT` (an account named on the
 * helper's command line, which skips host matching).
 */
export const HELPER_FORWARDED_ENV = ['KUBERNETES_EXEC_INFO', 'TOKEND_ACCOUNT'] as const;
export type HelperEnv = Partial<Record<(typeof HELPER_FORWARDED_ENV)[number], string>>;

/** Query parameter naming the account where a byte pipe cannot send headers: `?account=NAME`. */
export const HELPER_ACCOUNT_QUERY = 'account';

/**
 * Response header: the helper's exit status, 0 to 3 (a helper's 0 or 1; `tokend token`'s
 * CLI statuses 0-3). The shims read any other status of build/tokend-fast, besides its own
 * 111 and 112, as "it did not run as itself" (126: it cannot execute here) and ask node.
 */
export const HELPER_EXIT_HEADER = 'x-tokend-exit';

/** Response header: one line for the helper's stderr, `%` and non-ASCII percent-encoded. */
export const HELPER_STDERR_HEADER = 'x-tokend-stderr';

/**
 * The statuses of a helper answer; the body is the exact stdout bytes with either.
 * `failed` (422) means a non-zero exit: `curl --fail-with-body` still prints the body (and
 * exits 22). Any other status is not a helper answer (no such route, 413, 5xx): the caller
 * leaves it to the node client, which explains it.
 */
export const HELPER_STATUS = { ok: 200, failed: 422 } as const;

/** What a helper must do: print `stdout` exactly, `stderr` as one line, exit with `exitCode`. */
export interface HelperResult {
  exitCode: number;
  stdout: Buffer;
  /** One line for the user, without a trailing newline; never a secret. */
  stderr?: string;
}

/**
 * A stderr line as a header value. Header values must be latin1 without CR/LF, so `%`
 * and anything outside printable ASCII become %XX (UTF-8); plain ASCII stays readable as
 * is, for the curl shim, which prints the value raw.
 */
export function encodeStderrHeader(line: string): string {
  return line.replace(/[^\x20-\x24\x26-\x7e]/gu, (c) => {
    try {
      return encodeURIComponent(c);
    } catch {
      return '?'; // a lone surrogate
    }
  });
}

/** The stderr line back from its header value; a malformed escape is kept as it is. */
export function decodeStderrHeader(value: string): string {
  try {
    return decodeURIComponent(value);
  } catch {
    return value;
  }
}

/** The HTTP answer for a helper result: the daemon's side of the contract. */
export function helperHttpResponse(r: HelperResult): { status: number; headers: Record<string, string>; body: Buffer } {
  const headers: Record<string, string> = {
    'content-type': 'application/octet-stream',
    'cache-control': 'no-store',
    [HELPER_EXIT_HEADER]: String(r.exitCode),
  };
  if (r.stderr) headers[HELPER_STDERR_HEADER] = encodeStderrHeader(r.stderr);
  return { status: r.exitCode === 0 ? HELPER_STATUS.ok : HELPER_STATUS.failed, headers, body: r.stdout };
}

/** The client's side: the exit status a helper answer asks for, or undefined when `status` is not a helper answer. */
export function helperExitStatus(status: number, exitHeader: string | string[] | undefined): number | undefined {
  if (status !== HELPER_STATUS.ok && status !== HELPER_STATUS.failed) return undefined;
  const exit = Number(exitHeader);
  return Number.isInteger(exit) ? exit : status === HELPER_STATUS.ok ? 0 : 1;
}

/** The forwarded environment from its header: only the variables of {@link HELPER_FORWARDED_ENV}, only strings. */
export function parseHelperEnv(header: string | undefined): HelperEnv {
  const env: HelperEnv = {};
  if (!header) return env;
  let raw: unknown;
  try {
    raw = JSON.parse(header);
  } catch {
    return env;
  }
  if (typeof raw !== 'object' || raw === null) return env;
  for (const k of HELPER_FORWARDED_ENV) {
    const v = (raw as Record<string, unknown>)[k];
    if (typeof v === 'string') env[k] = v;
  }
  return env;
}
