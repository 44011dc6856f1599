/**
 * The options `tokend add` and `tokend set` share: one table, one help text, one
 * translation into the request body and query (PUT and PATCH /v1/accounts/:name).
 */
import path from 'node:path';
import type { PatchAccountRequest } from '../protocol/api.js';
import { labelKeyProblem, parseLabelSelector } from '../protocol/labels.js';
import { ACCOUNT_WRITE_FLAGS } from '../protocol/routes.js';
import type { parseOptions } from './args.js';
import { UsageError, type Io } from './io.js';
import { durationOption } from './when.js';

export const ACCOUNT_OPTIONS = {
  preset: { type: 'string' },
  driver: { type: 'string' },
  issuer: { type: 'string' },
  'client-id': { type: 'string' },
  'client-secret-stdin': { type: 'boolean' },
  'auth-method': { type: 'string' },
  scope: { type: 'string', multiple: true },
  audience: { type: 'string' },
  flow: { type: 'string' },
  host: { type: 'string', multiple: true },
  username: { type: 'string' },
  'api-base': { type: 'string' },
  'token-endpoint': { type: 'string' },
  'device-endpoint': { type: 'string' },
  'authorization-endpoint': { type: 'string' },
  'revocation-endpoint': { type: 'string' },
  'password-stdin': { type: 'boolean' },
  'base-url': { type: 'string' },
  'managed-user-id': { type: 'string' },
  'redirect-uri': { type: 'string' },
  'on-reauth': { type: 'string' },
  'login-ttl': { type: 'string' },
  'refresh-idle-days': { type: 'string' },
  'refresh-with-token': { type: 'boolean' },
  'git-auth': { type: 'string' },
  dpop: { type: 'boolean' },
  'no-dpop': { type: 'boolean' },
  'ca-file': { type: 'string' },
  label: { type: 'string', multiple: true },
  unlabel: { type: 'string', multiple: true },
  'replace-grant': { type: 'boolean' },
  'no-check': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/** What parseArgs gives for ACCOUNT_OPTIONS. */
export type AccountValues = ReturnType<typeof parseOptions<typeof ACCOUNT_OPTIONS>>['values'];

export const ACCOUNT_OPTIONS_HELP = `  --preset P                   provider defaults: github, gitlab, bitbucket, google,
                               microsoft, keycloak, real-debrid, cal-com, amp
                               (explicit options win; see docs/providers.md)
  --issuer URL                 OpenID / OAuth issuer (discovery: OIDC, then RFC 8414)
  --client-id ID               OAuth client id
  --client-secret-stdin        read the client secret from stdin (never from argv)
  --password-stdin             read the user's password from stdin (the password flow,
                               AMP); with --client-secret-stdin too, the secret is the
                               first line of stdin and the password the second
  --auth-method M              client_secret_basic | client_secret_post | none
  --scope S                    a scope (repeatable; "a b" counts as two)
  --audience A                 resource / audience (RFC 8707)
  --flow F                     device | browser | client-credentials | password
  --host HOST                  a host pattern this account serves (repeatable)
  --username U                 username helpers present with the token; the user whose
                               password obtains the grant (password flow, AMP)
  --api-base URL               base URL of the account's API: \`tokend api\` and the proxy
                               (/v1/proxy/NAME/...) send requests under it, with the token
  --base-url URL               a preset's service root (a sandbox, a self-hosted instance):
                               its endpoints and api_base move with it
  --managed-user-id N          Cal.com Platform: the managed user's id
  --redirect-uri URI           a browser login's redirect owned by an app (a deep link such
                               as com.example.app:/oauth2redirect); the app hands the
                               callback to the daemon (POST /v1/logins/ID/callback)
  --on-reauth fail|login       when the grant is refused: just say so (fail, default), or
                               start the interactive login at once (login)
  --login-ttl T                how long this account's logins wait unless the login says
                               (90s, 30m, 12h, 2d; default 10 min; at most the daemon's
                               login_ttl_max_s, 7 days by default)
  --refresh-idle-days N        the provider forgets an unused refresh token after N days
                               (Keycloak offline sessions: 30): refresh before that
  --refresh-with-token         AMP: refresh by presenting the current token first
  --dpop                       DPoP-bound grants (RFC 9449): the daemon holds the account's
                               key and signs a proof for every token request; the proxy
                               and \`tokend token --dpop-for\` give proofs for API calls.
                               Bearer-only tools (git, docker) cannot use such an account
  --no-dpop                    \`set\` only: turn DPoP off again
  --ca-file FILE               PEM CA certificates to trust for this account's provider
                               and API, besides the system's (a private CA)
  --git-auth bearer|basic      how git 2.46+ gets the token: a Bearer credential (default)
                               or Basic username/password (the github, gitlab presets)
  --label KEY=VALUE            a label saying what the account is for (repeatable:
                               --label user=123 --label task=t-1); \`tokend list --label\`
                               finds it. With \`set\`, the labels given are added or
                               changed, the others stay
  --unlabel KEY                \`set\` only: remove label KEY (repeatable)
  --token-endpoint URL         explicit endpoints, instead of or on top of discovery
  --device-endpoint URL
  --authorization-endpoint URL
  --revocation-endpoint URL
  --replace-grant              allow a change of provider or client (driver, issuer,
                               client id, token, authorization, device or revocation
                               endpoint): the old grant is revoked and dropped, so the
                               account needs a new login, and the stored client secret
                               and password are dropped unless given again. Without it
                               such a change is refused (exit 1) while the account holds
                               a grant, or a secret not given again in the same change.
  --no-check                   do not contact the provider to check the account
                               (discovery, required secrets): for offline setup
  --json                       print the account as JSON on stdout

With \`tokend set\`, an empty value clears an option (\`--api-base ''\`).
`;

/** The request body: only the options given (PATCH changes only those; PUT takes them as the whole account). */
export async function accountBody(values: AccountValues, io: Io, command: string): Promise<PatchAccountRequest> {
  const body: Record<string, unknown> = {
    driver: values.driver,
    preset: values.preset,
    issuer: values.issuer,
    client_id: values['client-id'],
    token_endpoint_auth_method: values['auth-method'],
    scopes: values.scope?.flatMap((s) => s.split(/\s+/).filter(Boolean)),
    audience: values.audience,
    flow: values.flow,
    hosts: values.host,
    username: values.username,
    api_base: values['api-base'],
    token_endpoint: values['token-endpoint'],
    device_authorization_endpoint: values['device-endpoint'],
    authorization_endpoint: values['authorization-endpoint'],
    revocation_endpoint: values['revocation-endpoint'],
    base_url: values['base-url'],
    managed_user_id: wholeNumber(values['managed-user-id'], '--managed-user-id', command),
    redirect_uri: values['redirect-uri'],
    on_reauth: values['on-reauth'],
    login_ttl_s: values['login-ttl'] ? durationOption(values['login-ttl'], '--login-ttl', command) : values['login-ttl'],
    refresh_idle_days: wholeNumber(values['refresh-idle-days'], '--refresh-idle-days', command),
    refresh_with_token: values['refresh-with-token'],
    git_auth: values['git-auth'],
    dpop: dpopOption(values, command),
    // The daemon may run elsewhere (a service): it gets the file's absolute path.
    ca_file: values['ca-file'] ? path.resolve(values['ca-file']) : values['ca-file'],
    labels: labelChanges(values, command),
  };
  const wantSecret = Boolean(values['client-secret-stdin']);
  const wantPassword = Boolean(values['password-stdin']);
  if (wantSecret || wantPassword) {
    // One stdin: the secret, or the password, or both on two lines (secret first).
    const lines = (await io.readStdin()).split(/\r?\n/);
    const take = (what: string) => {
      const v = lines.shift() ?? '';
      if (!v) throw new UsageError(`${what}: stdin had no value for it`, command);
      return v;
    };
    if (wantSecret) body.client_secret = take('--client-secret-stdin');
    if (wantPassword) body.password = take('--password-stdin');
  }
  for (const k of Object.keys(body)) {
    // An empty value (`--api-base ''`) clears the setting: null in a PATCH; a PUT just leaves it out.
    if (body[k] === '') body[k] = command === 'set' ? null : undefined;
    if (body[k] === undefined) delete body[k];
  }
  return body as PatchAccountRequest;
}

/**
 * `--label k=v` and `--unlabel k`: for `add` the account's labels; for `set` a patch the
 * daemon merges into them (a key set to null is removed). Undefined when neither is given.
 */
function labelChanges(values: AccountValues, command: string): Record<string, string | null> | undefined {
  if (!values.label && !values.unlabel) return undefined;
  if (values.unlabel && command !== 'set') throw new UsageError('--unlabel is for `tokend set`', command);
  let out: Record<string, string | null>;
  try {
    out = parseLabelSelector(values.label ?? []);
  } catch (err) {
    throw new UsageError(`--${(err as Error).message}`, command);
  }
  for (const k of values.unlabel ?? []) {
    const problem = labelKeyProblem(k);
    if (problem) throw new UsageError(`--unlabel ${problem}`, command);
    if (Object.hasOwn(out, k)) throw new UsageError(`label "${k}" is both set and removed`, command);
    out[k] = null;
  }
  return out;
}

/** `--dpop` on, `--no-dpop` off (`set`: null, the default), neither: unchanged. */
function dpopOption(values: AccountValues, command: string): boolean | '' | undefined {
  if (values.dpop && values['no-dpop']) throw new UsageError('--dpop and --no-dpop contradict each other', command);
  if (values['no-dpop']) return '';
  return values.dpop ? true : undefined;
}

function wholeNumber(v: string | undefined, option: string, command: string): number | '' | undefined {
  if (v === undefined || v === '') return v;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError(`${option} takes a whole number`, command);
  return n;
}

/** The query string of the write: `?replace_grant=true`, `?check=false`, or both, or nothing. */
export function writeQuery(values: AccountValues): string {
  const q = new URLSearchParams();
  if (values['replace-grant']) q.set(ACCOUNT_WRITE_FLAGS.replaceGrant, 'true');
  if (values['no-check']) q.set(ACCOUNT_WRITE_FLAGS.check, 'false');
  const s = q.toString();
  return s ? `?${s}` : '';
}
