/**
 * The daemon side of `POST /v1/helpers/:tool/:action` (docs/helpers.md): a tool's raw
 * stdin in, the exact bytes its helper must print and its exit status out. The helper
 * binaries are byte pipes (bin/*-credential-tokend), so every protocol rule lives here
 * and in src/protocol/helpers/; how the result travels over HTTP is
 * src/protocol/helper-http.ts.
 *
 * Never throws: every failure becomes the tool's own way of saying "no" (git-credential(1), docker's
 * credential-helper protocol, client-go's exec plugins, the EngFlow spec). A token never reaches `stderr`.
 */
import { formatBazelCredential, parseBazelRequest } from '../protocol/helpers/bazel.js';
import {
  DOCKER_ERR_NOT_FOUND,
  dockerServerTarget,
  formatDockerCredential,
  formatDockerError,
  formatDockerList,
  parseDockerInput,
} from '../protocol/helpers/docker.js';
import { authScheme } from '../protocol/helpers/auth-scheme.js';
import { acceptsAuthtype, formatGitCredential, parseGitCredentialInput, rejectedToken } from '../protocol/helpers/git.js';
import { formatExecCredential, parseKubectlExecInfo } from '../protocol/helpers/kubectl.js';
import { isHelperTool, type HelperEnv, type HelperResult, type HelperTool } from '../protocol/helper-http.js';
import { ambiguousMessage, describeTarget, targetFromUrl, type MatchResult, type MatchTarget } from './match.js';

/** What `getToken` hands a helper. */
export interface HelperToken {
  access_token: string;
  token_type: string;
  /** epoch **milliseconds** (as the broker's CachedToken), or null when unknown. */
  expires_at: number | null;
  /** The account's configured username, else its preset's (`x-token-auth` for Bitbucket…); absent = none. */
  username?: string;
  /** `basic`: never hand git a Bearer credential, even when it can take one (a forge whose git endpoints want Basic). */
  gitAuth?: 'bearer' | 'basic';
}

/** What the daemon gives the handlers; implemented over the real broker and config. */
export interface HelperDeps {
  /** Map a request's URL parts to an account (match.ts `matchAccount` over the configured accounts). */
  findAccount(target: MatchTarget): MatchResult<{ name: string }> | Promise<MatchResult<{ name: string }>>;
  /**
   * A token valid for at least `minTtlSeconds` (the broker clamps that to the token's
   * lifetime). Throws `{ code, message }` (an ApiError) when it cannot, e.g.
   * `reauth_required`; the message must be safe to show and hold no secret.
   */
  getToken(account: string, minTtlSeconds: number): Promise<HelperToken>;
  /** A tool reports a served token was refused (git `erase`): mark it stale so the next request refreshes. */
  reject(account: string, accessToken?: string): void | Promise<void>;
  /** docker `list`: server URL → username. Without it `list` answers `{}`. */
  listDockerServers?(): Readonly<Record<string, string>> | Promise<Readonly<Record<string, string>>>;
}

export interface HelperInput {
  stdin: Buffer;
  /**
   * The helper's environment, where a protocol reads it: `KUBERNETES_EXEC_INFO` (kubectl;
   * when absent, stdin is read as its value), `TOKEND_ACCOUNT` (kubectl, bazel: an
   * account named on the helper's command line, skipping host matching).
   */
  env?: HelperEnv;
}

/**
 * Seconds a served token must still be valid, per tool.
 * git: git 2.39 ignores `password_expiry_utc` (git-credential(1)) and keeps the
 * credential for the whole command, so a long clone or fetch+push must not run past
 * expiry; 5 min covers that without refusing providers whose tokens live only minutes
 * (the broker clamps min_ttl to the token lifetime). The others re-ask on expiry or
 * 401 (docker asks per operation; client-go and Bazel honour the expiry we send).
 */
export const HELPER_MIN_TTL: Readonly<Record<HelperTool, number>> = { git: 300, docker: 60, kubectl: 60, bazel: 60 };

/** The default git username with an OAuth access token as password (GitLab needs `oauth2`; docs/helpers.md). */
export const DEFAULT_GIT_USERNAME = 'oauth2';

const EMPTY = Buffer.alloc(0);

/** One printable line, at most 300 chars, with any known secret cut out. */
function oneLine(message: string, secrets: readonly string[] = []): string {
  let m = message;
  for (const s of secrets) if (s.length >= 4) m = m.split(s).join('[redacted]');
  m = m.replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  return m.length > 300 ? `${m.slice(0, 297)}...` : m;
}

/** A failure's message for the user: the daemon's own message when it has one, never a stack. */
function describeError(err: unknown): string {
  if (err && typeof err === 'object' && typeof (err as { message?: unknown }).message === 'string') {
    const e = err as { code?: unknown; message: string };
    if (e.message.trim() !== '') return e.message;
    if (typeof e.code === 'string') return e.code;
  }
  return 'could not get a token';
}

function accountName(a: { name: string } | string): string {
  return typeof a === 'string' ? a : a.name;
}

function result(exitCode: number, stdout: Buffer = EMPTY, stderr?: string): HelperResult {
  return stderr === undefined ? { exitCode, stdout } : { exitCode, stdout, stderr: oneLine(stderr) };
}

// ---------------------------------------------------------------- git

/** A miss git moves past: nothing on stdout, exit 0 (gitcredentials(7), CUSTOM HELPERS "print nothing"); a hint on stderr. */
function gitMiss(hint?: string): HelperResult {
  return result(0, EMPTY, hint === undefined ? undefined : `tokend: ${hint}`);
}

async function gitHelper(action: string, input: HelperInput, deps: HelperDeps): Promise<HelperResult> {
  // gitcredentials(7), CUSTOM HELPERS: `store` has nothing to do (tokens live in the daemon); an action a future git
  // invents "should [be] silently ignore[d]". Both: exit 0, no output.
  if (action !== 'get' && action !== 'erase') return result(0);
  const parsed = parseGitCredentialInput(action, input.stdin);
  if (!parsed.ok) {
    // erase's output is ignored anyway; get says why it declined.
    return action === 'get' ? gitMiss(`ignoring git credential input: ${parsed.error.message}`) : result(0);
  }
  const req = parsed.request;
  const target: MatchTarget = { protocol: req.protocol, host: req.host };
  if (req.port !== undefined) target.port = req.port;
  if (req.path !== undefined) target.path = req.path;
  if (req.username !== undefined) target.username = req.username;

  const match = await deps.findAccount(target);
  if (match.kind === 'none') return gitMiss(); // silent: the next helper may know this host
  if (match.kind === 'ambiguous') return gitMiss(ambiguousMessage(match.accounts, target));
  const account = accountName(match.account);

  if (action === 'erase') {
    // gitcredentials(7): git sends erase after a 401 with the credential it used: "this token was
    // rejected". The broker compares it with what it served before dropping it.
    try {
      await deps.reject(account, rejectedToken(req));
    } catch (err) {
      return gitMiss(`could not report the rejected token for "${account}": ${oneLine(describeError(err))}`);
    }
    return result(0);
  }

  let token: HelperToken;
  try {
    token = await deps.getToken(account, HELPER_MIN_TTL.git);
  } catch (err) {
    // Exit 0 with nothing on stdout: git tries its next helper or prompts (git ignores a helper's exit status anyway).
    return gitMiss(oneLine(describeError(err)));
  }
  try {
    const expiry = token.expires_at !== null ? { password_expiry_utc: Math.floor(token.expires_at / 1000) } : {};
    // git ≥ 2.46 announced `capability[]=authtype`: hand it the token as what it is, a
    // Bearer credential (git-credential(1) `authtype`, `credential`), marked `ephemeral` so no
    // storage helper after us keeps a copy. A token of another type (DPoP needs a proof
    // per request) goes the old way.
    if (acceptsAuthtype(req) && authScheme(token.token_type) === 'Bearer' && token.gitAuth !== 'basic') {
      return result(0, formatGitCredential({ authtype: 'Bearer', credential: token.access_token, ephemeral: true, ...expiry }));
    }
    // Basic: the account's (or preset's) username wins; otherwise keep a username git
    // already has, as git-credential-oauth does; otherwise `oauth2` (docs/helpers.md).
    const username = token.username ?? (req.username === undefined ? DEFAULT_GIT_USERNAME : undefined);
    // git ≥ 2.40 drops an expired password before use; 2.39 ignores the expiry (git-credential(1)).
    return result(0, formatGitCredential({ ...(username !== undefined ? { username } : {}), password: token.access_token, ...expiry }));
  } catch (err) {
    return gitMiss(oneLine(describeError(err), [token.access_token]));
  }
}

// ---------------------------------------------------------------- docker

/** `store` for a registry no account serves: tokend keeps no passwords, so the login would be lost. */
function dockerStoreUnserved(registry: string): HelperResult {
  return dockerError(
    `tokend: no tokend account serves ${registry}, and tokend keeps no registry passwords: this login is not saved ` +
      '(add an account with --host for this registry, or set another credential helper for it in credHelpers)',
  );
}

/** docker errors go to stdout with exit 1 (docker-credential-helpers' `fmt.Fprintln(os.Stdout, err)`). */
function dockerError(message: string, secrets: readonly string[] = []): HelperResult {
  return result(1, formatDockerError(oneLine(message, secrets)));
}

async function dockerHelper(action: string, input: HelperInput, deps: HelperDeps): Promise<HelperResult> {
  const parsed = parseDockerInput(action, input.stdin);
  if (!parsed.ok) return dockerError(parsed.error.message);
  const req = parsed.request;

  if (req.action === 'list') {
    const entries = deps.listDockerServers ? await deps.listDockerServers() : {};
    return result(0, formatDockerList(entries));
  }
  const target = dockerServerTarget(req.serverUrl);
  if (!target) return req.action === 'store' ? dockerStoreUnserved('this registry') : dockerError(DOCKER_ERR_NOT_FOUND);
  const match = await deps.findAccount(target);
  if (req.action === 'store') {
    // tokend owns the tokens of the registries its accounts serve: `docker login` there
    // needs nothing kept (the next `get` brings a fresh token). Elsewhere nothing would keep
    // the password either, so say so: exit 1 makes `docker login` fail instead of
    // reporting a login that the next pull would not have.
    if (match.kind === 'match') return result(0);
    if (match.kind === 'ambiguous') return dockerError(`tokend: ${ambiguousMessage(match.accounts, target)}`);
    return dockerStoreUnserved(describeTarget(target));
  }
  // The exact string docker reads as "no credentials" and then lets the user log in.
  if (match.kind === 'none') return dockerError(DOCKER_ERR_NOT_FOUND);
  if (match.kind === 'ambiguous') return dockerError(`tokend: ${ambiguousMessage(match.accounts, target)}`);
  const account = accountName(match.account);

  if (req.action === 'erase') {
    try {
      await deps.reject(account);
    } catch (err) {
      return dockerError(`tokend: ${describeError(err)}`);
    }
    return result(0);
  }

  let token: HelperToken;
  try {
    token = await deps.getToken(account, HELPER_MIN_TTL.docker);
  } catch (err) {
    return dockerError(`tokend: ${describeError(err)}`);
  }
  // No expiry field in this protocol; docker asks again per operation. The
  // username follows the same rule as git's (a registry's token auth takes any, GitLab's `oauth2`).
  return result(
    0,
    formatDockerCredential({
      ServerURL: req.serverUrl,
      Username: token.username ?? DEFAULT_GIT_USERNAME,
      Secret: token.access_token,
    }),
  );
}

// ---------------------------------------------------------------- kubectl and bazel

/** kubectl and Bazel fail with a non-zero exit and a line on stderr (client-go exec plugins; the EngFlow credential-helper spec). */
function toolError(message: string, secrets: readonly string[] = []): HelperResult {
  return result(1, EMPTY, `tokend: ${oneLine(message, secrets)}`);
}

/** An account named on the helper's command line, or the one the URL matches. */
async function resolveAccount(
  input: HelperInput,
  url: string | undefined,
  deps: HelperDeps,
  noUrlHint: string,
): Promise<{ ok: true; account: string } | { ok: false; error: HelperResult }> {
  const named = input.env?.TOKEND_ACCOUNT;
  if (named) return { ok: true, account: named };
  if (url === undefined) return { ok: false, error: toolError(noUrlHint) };
  const target = targetFromUrl(url);
  if (!target) return { ok: false, error: toolError('the URL to authenticate to is not a URL') };
  const match = await deps.findAccount(target);
  if (match.kind === 'none') {
    return { ok: false, error: toolError(`no tokend account serves ${describeTarget(target)} (see the accounts' hosts)`) };
  }
  if (match.kind === 'ambiguous') return { ok: false, error: toolError(ambiguousMessage(match.accounts, target)) };
  return { ok: true, account: accountName(match.account) };
}

/** kubectl's and Bazel's token: of the account named on the command line or the one the URL matches, at the tool's min TTL. */
async function toolToken(
  input: HelperInput,
  url: string | undefined,
  deps: HelperDeps,
  noUrlHint: string,
  minTtl: number,
): Promise<{ ok: true; token: HelperToken } | { ok: false; error: HelperResult }> {
  const resolved = await resolveAccount(input, url, deps, noUrlHint);
  if (!resolved.ok) return resolved;
  try {
    return { ok: true, token: await deps.getToken(resolved.account, minTtl) };
  } catch (err) {
    return { ok: false, error: toolError(describeError(err)) };
  }
}

async function kubectlHelper(_action: string, input: HelperInput, deps: HelperDeps): Promise<HelperResult> {
  // client-go: input is the KUBERNETES_EXEC_INFO env var, not stdin; a byte-pipe client may send it as the body.
  const raw = input.env?.KUBERNETES_EXEC_INFO ?? (input.stdin.length > 0 ? input.stdin : undefined);
  const parsed = parseKubectlExecInfo(raw);
  if (!parsed.ok) return toolError(parsed.error.message);
  const req = parsed.request;
  const got = await toolToken(
    input,
    req.server,
    deps,
    'name an account (tokend kubectl-credential NAME) or set provideClusterInfo: true in the kubeconfig',
    HELPER_MIN_TTL.kubectl,
  );
  if (!got.ok) return got.error;
  return result(0, formatExecCredential({ apiVersion: req.apiVersion, token: got.token.access_token, expires_at: got.token.expires_at }));
}

async function bazelHelper(action: string, input: HelperInput, deps: HelperDeps): Promise<HelperResult> {
  // EngFlow spec: argv is `<helper> get`; nothing else is defined.
  if (action !== 'get') return toolError('unsupported credential helper action (Bazel sends only "get")');
  const parsed = parseBazelRequest(input.stdin);
  if (!parsed.ok) return toolError(parsed.error.message);
  // EngFlow spec: for input it does not support (a foreign domain) a helper SHOULD fail, not answer {}.
  const got = await toolToken(input, parsed.request.uri, deps, 'no uri', HELPER_MIN_TTL.bazel);
  if (!got.ok) return got.error;
  return result(
    0,
    formatBazelCredential({ token: got.token.access_token, token_type: got.token.token_type, expires_at: got.token.expires_at }),
  );
}

// ---------------------------------------------------------------- entry points

const HANDLERS: Record<HelperTool, (action: string, input: HelperInput, deps: HelperDeps) => Promise<HelperResult>> = {
  git: gitHelper,
  docker: dockerHelper,
  kubectl: kubectlHelper,
  bazel: bazelHelper,
};

/**
 * Run one helper request. Never throws: an unexpected failure is answered the tool's
 * way (git: silent miss with a hint; docker: message on stdout, exit 1; kubectl,
 * Bazel: exit 1 with a line on stderr).
 */
export async function handleHelper(tool: string, action: string, input: HelperInput, deps: HelperDeps): Promise<HelperResult> {
  if (!isHelperTool(tool)) return toolError('unknown credential helper');
  try {
    return await HANDLERS[tool](action, input, deps);
  } catch {
    // Unexpected (a bug or a failing dependency): its message may hold anything, so a fixed one.
    const msg = 'internal error while answering the credential helper';
    if (tool === 'git') return gitMiss(msg);
    if (tool === 'docker') return dockerError(`tokend: ${msg}`);
    return toolError(msg);
  }
}
