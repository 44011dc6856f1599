import { z } from 'zod';
import { ERROR_STATUS, type ErrorCode as ErrorCodeName } from './errors.js';
import { LABEL_COUNT_RULE, labelKeyProblem, labelValueProblem, MAX_LABELS } from './labels.js';
import { ACCOUNT_NAME_RE, ACCOUNT_NAME_RULE } from './names.js';
import { NEEDS_LOGIN_STATUSES } from './rules.js';
import { Caller, RecordedCaller } from './caller.js';
import { Access, AccountOwner } from './access.js';

export const AccountName = z.string().regex(ACCOUNT_NAME_RE, { message: ACCOUNT_NAME_RULE });
export type AccountName = z.infer<typeof AccountName>;

export const ErrorCode = z.enum(Object.keys(ERROR_STATUS) as [ErrorCodeName, ...ErrorCodeName[]]);

/** `{"error": {"code", "message"}}`; `retry_after` (seconds) when the daemon knows when to try again. */
export const ErrorBody = z.object({
  error: z.object({
    code: ErrorCode,
    message: z.string(),
    account: z.string().optional(),
    retry_after: z.number().optional(),
    login: z.record(z.string(), z.unknown()).optional(),
  }),
});
export type ErrorBody = z.infer<typeof ErrorBody>;

const httpUrl = z.url({ protocol: /^https?$/, message: 'must be an http(s) URL' });

export const Flow = z.enum(['device', 'browser', 'client-credentials', 'password']);
export type Flow = z.infer<typeof Flow>;

export const ClientAuthMethod = z.enum(['client_secret_basic', 'client_secret_post', 'none']);
export type ClientAuthMethod = z.infer<typeof ClientAuthMethod>;

const Scopes = z
  .array(
    z
      .string()
      .min(1)
      .max(256)
      .regex(/^[^\s"\\]+$/, 'a scope has no spaces or quotes'),
  )
  .max(64);
const Hosts = z.array(z.string().min(1).max(512)).max(64);

/** Each label's key and value against the rules of protocol/labels.ts (null: a patch removing it), and their count. */
function checkLabels(labels: Record<string, string | null>, ctx: z.RefinementCtx): void {
  const keys = Object.keys(labels);
  if (keys.length > MAX_LABELS) ctx.addIssue({ code: 'custom', message: `${keys.length} labels: ${LABEL_COUNT_RULE}` });
  for (const k of keys) {
    const v = labels[k];
    const problem = labelKeyProblem(k) ?? (v === null || v === undefined ? undefined : labelValueProblem(k, v));
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }
}

/** An account's labels (`user=123`, `task=t-1`): what the app that made it says it is for; see protocol/labels.ts. */
export const Labels = z.record(z.string(), z.string()).superRefine(checkLabels);
export type Labels = z.infer<typeof Labels>;

/** An account's fields as they are written, without defaults (a patch names only what changes). */
const AccountFields = z.object({
  driver: z.string().min(1),
  preset: z.string().min(1).optional(),
  issuer: httpUrl.optional(),
  /** The OAuth client id; every driver but AMP's needs one. */
  client_id: z.string().min(1).max(512).optional(),
  token_endpoint_auth_method: ClientAuthMethod.optional(),
  scopes: Scopes,
  audience: z.string().min(1).max(2048).optional(),
  flow: Flow.optional(),
  hosts: Hosts,
  username: z.string().min(1).max(256).optional(),
  api_base: httpUrl.optional(),
  token_endpoint: httpUrl.optional(),
  authorization_endpoint: httpUrl.optional(),
  device_authorization_endpoint: httpUrl.optional(),
  revocation_endpoint: httpUrl.optional(),
  /**
   * A browser login's redirect that is not tokend's loopback listener: a private-use URI
   * scheme (RFC 8252 §7.1, `com.example.app:/oauth2redirect`) or an app's own https URL.
   * The app hands the callback URL to `POST /v1/logins/:id/callback`.
   */
  redirect_uri: z.url({ message: 'must be a URL' }).max(2048).optional(),
  /** What a `reauth_required` grant does: nothing (`fail`, default), or start its interactive login (`login`). */
  on_reauth: z.enum(['fail', 'login']).optional(),
  /** How long a login of this account waits, in seconds, when the request names no `ttl_s` (at most settings.login_ttl_max_s). */
  login_ttl_s: z
    .number()
    .int()
    .min(1)
    .max(365 * 86400)
    .optional(),
  /**
   * A provider's service root, from which its driver derives its endpoints and `api_base`
   * (Real-Debrid `https://api.real-debrid.com`, Cal.com `https://api.cal.com`, AMP
   * `https://amp.blockstream.com/api`): moved for a sandbox, a self-hosted instance, tests.
   */
  base_url: httpUrl.optional(),
  /** Cal.com Platform: the managed user whose tokens this account holds. */
  managed_user_id: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional(),
  /**
   * Days after which the provider forgets a refresh token nobody used (Keycloak's Offline
   * Session Idle, 30 by default): a keep-alive refresh runs before that, even with no client asking.
   */
  refresh_idle_days: z.number().int().min(1).max(3650).optional(),
  /**
   * A PEM file of CA certificates to trust besides the system's (and NODE_EXTRA_CA_CERTS),
   * for a provider or API behind a private CA.
   */
  ca_file: z.string().min(1).max(4096).optional(),
  /**
   * How git ≥ 2.46 gets the token: `bearer` (the default: `authtype=Bearer`, ephemeral) or
   * `basic` (username and password, as older git), for a forge whose git endpoints take Basic only.
   */
  git_auth: z.enum(['bearer', 'basic']).optional(),
  /** AMP: refresh by presenting the current token (`/user/refresh_token`) before obtaining a new one. */
  refresh_with_token: z.boolean().optional(),
  /**
   * DPoP (RFC 9449): the daemon holds a key pair for the account and every token request
   * carries a proof, so the provider binds the tokens to that key. Off by default: a bound
   * token is useless to tools that only send Bearer (git, docker). Part of the grant's identity.
   */
  dpop: z.boolean().optional(),
  /** What the account is for, as the app says (`{"user": "123", "task": "t-1"}`): `GET /v1/accounts?label=user=123` finds it. Not part of the grant's identity. */
  labels: Labels.optional(),
  /** Who may take the account's token (docs/security.md); absent is `open`, any process of the user. */
  access: Access.optional(),
});

/**
 * An account's configuration as stored in config.json: never a secret.
 * Either `issuer` (discovery) or `token_endpoint` must be given for the oauth2 driver.
 */
export const AccountConfig = AccountFields.extend({
  driver: AccountFields.shape.driver.default('oauth2'),
  scopes: Scopes.default([]),
  hosts: Hosts.default([]),
}).strict();
export type AccountConfig = z.infer<typeof AccountConfig>;
export type AccountConfigInput = z.input<typeof AccountConfig>;

/** `PUT /v1/accounts/:name`: the config plus secrets, which go to the encrypted store only. */
export const PutAccountRequest = AccountConfig.extend({
  client_secret: z.string().min(1).max(4096).optional(),
  /** The user's password where the grant is obtained with one (the password flow, AMP): encrypted, never in config.json. */
  password: z.string().min(1).max(4096).optional(),
  /** `self`: the account's access becomes `callers` with the writing caller as its one rule (docs/security.md). */
  owner: AccountOwner.optional(),
}).strict();
export type PutAccountRequest = z.input<typeof PutAccountRequest>;

/** Each field of `shape`, also taking `null`. */
function nullable<S extends Record<string, z.ZodType>>(shape: S): { [K in keyof S]: z.ZodNullable<S[K]> } {
  return Object.fromEntries(Object.entries(shape).map(([k, v]) => [k, v.nullable()])) as { [K in keyof S]: z.ZodNullable<S[K]> };
}

/**
 * `PATCH /v1/accounts/:name` (`tokend set`): only the fields given change; `null` clears
 * one (back to its default). Arrays replace the whole list. The result is validated as a
 * whole, like a PUT.
 */
export const PatchAccountRequest = z
  .object({
    ...nullable(AccountFields.shape),
    /** Merged into the account's labels (RFC 7396): a key set to null is removed; `labels: null` removes them all. */
    labels: z.record(z.string(), z.string().nullable()).superRefine(checkLabels).nullable(),
    client_secret: z.string().min(1).max(4096),
    password: z.string().min(1).max(4096),
  })
  .partial()
  .strict();
export type PatchAccountRequest = z.input<typeof PatchAccountRequest>;

/**
 * The fields of an account that a grant and the stored client secret and password are bound
 * to (rule 8, docs/architecture.md): who issued it, and every endpoint the account sends its
 * client secret, a code, a PKCE verifier or a refresh token to. Changing any of them moves the
 * account to another provider or client, so its grant and secrets must not follow.
 * `username` counts only where it names the user the grant belongs to (the password flow),
 * not where it is just what a credential helper presents with the token. `api_base` (it
 * receives access tokens by design) and `redirect_uri` (nothing secret) are not part of it.
 */
export const GRANT_IDENTITY_FIELDS = [
  'driver',
  'issuer',
  'token_endpoint',
  'revocation_endpoint',
  'client_id',
  'base_url',
  'managed_user_id',
  'authorization_endpoint',
  'device_authorization_endpoint',
] as const;

// Query flags of `PUT`/`PATCH /v1/accounts/:name`: with the routes, zod-free, for the CLI and the SDK.
export { ACCOUNT_WRITE_FLAGS } from './routes.js';

export const AccountStatus = z.enum(['active', 'expired', 'no_grant', 'reauth_required', 'login_pending', 'refresh_failing']);
export type AccountStatus = z.infer<typeof AccountStatus>;

// Statuses in which the account cannot serve a token until someone logs in (CLI exit 3):
// in rules.ts, which the thin client can import; checked against AccountStatus here.
export { NEEDS_LOGIN_STATUSES };
NEEDS_LOGIN_STATUSES satisfies readonly AccountStatus[];

/** The interactive login flows (RFC 8628 device grant; RFC 6749 §4.1 + RFC 7636 PKCE on a loopback redirect). */
export const LoginFlow = z.enum(['device', 'browser']);
export type LoginFlow = z.infer<typeof LoginFlow>;

/** `POST /v1/accounts/:name/login`: without `flow`, the account's, else the daemon's guess. */
export const LoginRequest = z
  .object({
    flow: LoginFlow.optional(),
    /** The caller's own label for this login (a task id, a user id), returned with it and searchable. */
    task: z.string().min(1).max(200).optional(),
    /**
     * How long the login waits, in seconds (default: the account's `login_ttl_s`, else 10
     * minutes; a device login at most its code's `expires_in`); more than
     * settings.login_ttl_max_s is a 400.
     */
    ttl_s: z.number().int().min(1).optional(),
  })
  .strict();
export type LoginRequest = z.infer<typeof LoginRequest>;

export const LoginStatus = z.enum(['pending', 'active', 'failed', 'expired']);
export type LoginStatus = z.infer<typeof LoginStatus>;

/**
 * One interactive login (`POST /v1/accounts/:name/login`, `GET /v1/logins/:id`). Never a
 * secret: no device_code, PKCE verifier, authorization code or token.
 */
export const LoginView = z.object({
  id: z.string(),
  account: AccountName,
  flow: LoginFlow,
  /** The caller's label given when the login started, if any. */
  task: z.string().nullable().optional(),
  status: LoginStatus,
  /** Device flow (RFC 8628 §3.2): what the user enters, and where. */
  user_code: z.string().nullable(),
  verification_uri: z.string().nullable(),
  verification_uri_complete: z.string().nullable(),
  /** Browser flow: the URL to open; its redirect is a one-shot listener on 127.0.0.1. */
  authorization_url: z.string().nullable(),
  /** A pending device login: a QR code of the complete verification URL, as lines of Unicode half blocks. */
  qr: z.string().nullable().optional(),
  created_at: z.string(),
  updated_at: z.string(),
  /** After this the login is `expired` (`ttl_s`, default 10 min; a device login at most the server's `expires_in`). */
  expires_at: z.string(),
  /** Why the login failed or expired: the provider's OAuth error code when it sent one. */
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
});
export type LoginView = z.infer<typeof LoginView>;

/** `GET /v1/logins?account=&status=&task=`: logins, newest first. */
export const LoginListQuery = z
  .object({ account: AccountName.optional(), status: LoginStatus.optional(), task: z.string().min(1).max(200).optional() })
  .strict();
export type LoginListQuery = z.infer<typeof LoginListQuery>;
export const LoginList = z.object({ logins: z.array(LoginView) });
export type LoginList = z.infer<typeof LoginList>;

/**
 * `POST /v1/logins/:id/callback`: the full redirect URL an app's OS-level handler received
 * for a login whose `redirect_uri` is not a loopback listener (RFC 8252 §7.1 private-use
 * scheme, e.g. `com.example.app:/oauth2redirect?code=…&state=…`).
 */
export const LoginCallbackRequest = z.object({ url: z.string().min(1).max(8192) }).strict();
/* `POST /v1/logins/callback` takes the same body: any pending browser login's redirect, found by its `state`. */
export type LoginCallbackRequest = z.infer<typeof LoginCallbackRequest>;

/** How an audited action ended: `ok`, `refused` (the daemon or the provider said no), `failed`. */
export const AuditOutcome = z.enum(['ok', 'refused', 'failed']);
export type AuditOutcome = z.infer<typeof AuditOutcome>;

/** The largest `limit` of `GET /v1/audit` (default 100). */
export const AUDIT_MAX_LIMIT = 1000;
export const AUDIT_DEFAULT_LIMIT = 100;

/**
 * `GET /v1/audit?account=&action=&since=&until=&limit=&cursor=`: `since`/`until` are ISO
 * times or durations back from now (`90s`, `15m`, `1h`, `7d`); `cursor` is the `next` of
 * the previous page.
 */
export const AuditQuery = z
  .object({
    account: AccountName.optional(),
    action: z.string().min(1).max(64).optional(),
    since: z.string().min(1).max(64).optional().describe('an ISO time, or a duration back from now: 90s, 15m, 1h, 7d'),
    until: z.string().min(1).max(64).optional().describe('an ISO time, or a duration back from now'),
    limit: z.coerce
      .number()
      .int()
      .min(1)
      .max(AUDIT_MAX_LIMIT)
      .optional()
      .describe(`default ${AUDIT_DEFAULT_LIMIT}, at most ${AUDIT_MAX_LIMIT}`),
    cursor: z
      .string()
      .regex(/^\d{1,16}\.\d{1,19}$/, 'the `next` of a previous page')
      .optional(),
  })
  .strict();
export type AuditQuery = z.infer<typeof AuditQuery>;

/**
 * One audited action. `caller` is who asked: the program as the daemon verified it (pid, exe,
 * script, unit, parents, or a listener app key) and the User-Agent it declared; empty when the
 * daemon acted by itself.
 */
export const AuditEntry = z.object({
  at: z.string(),
  /** null for the daemon's own (a key move). */
  account: z.string().nullable(),
  action: z.string(),
  caller: RecordedCaller,
  outcome: AuditOutcome,
  /** Why it was refused or failed (an error code), or how a login ended. */
  code: z.string().nullable(),
  task: z.string().nullable(),
  /** Names of the fields an account change set (never their values). */
  fields: z.array(z.string()).optional(),
  login_id: z.string().optional(),
  flow: z.string().optional(),
  /** Where a moved master key went. */
  to: z.string().optional(),
  /** An approval's decision: which approval, how it was decided, by whom, for how long or for good. */
  approval_id: z.string().optional(),
  via: z.enum(['api', 'notification', 'timeout', 'disconnected']).optional(),
  decided_by: RecordedCaller.optional(),
  for_s: z.number().optional(),
  always: z.boolean().optional(),
});
export type AuditEntry = z.infer<typeof AuditEntry>;
/** Newest first; `next` (when more rows match) is the `cursor` of the following page. */
export const AuditList = z.object({ entries: z.array(AuditEntry), next: z.string().optional() });
export type AuditList = z.infer<typeof AuditList>;

/** Longest `allow --for`: 30 days. */
export const APPROVAL_FOR_MAX_S = 30 * 86_400;

/** A request of an `ask` account that waits for the user (`GET /v1/approvals`). */
export const ApprovalView = z.object({
  id: z.string(),
  account: AccountName,
  /** The program that asks, as the daemon verified it. */
  caller: Caller,
  /** Whether it runs on a terminal. */
  tty: z.boolean(),
  /** When it is denied unless someone decides first (the account's `ask_timeout_s`). */
  expires_at: z.string(),
});
export type ApprovalView = z.infer<typeof ApprovalView>;
export const ApprovalList = z.object({ approvals: z.array(ApprovalView) });
export type ApprovalList = z.infer<typeof ApprovalList>;

/**
 * `POST /v1/approvals/:id`: allow (this request; `for_s`: this process, by pid and start
 * time, for that long; `always`: add a rule for its program to the account's access) or deny.
 */
export const ApprovalDecision = z
  .object({
    decision: z.enum(['allow', 'deny']),
    for_s: z.number().int().min(1).max(APPROVAL_FOR_MAX_S).optional().describe('allow this process for this many seconds'),
    always: z.boolean().optional().describe("allow this program from now on: adds a rule to the account's access"),
  })
  .strict()
  .refine((d) => d.decision === 'allow' || (d.for_s === undefined && !d.always), {
    message: 'for_s and always go with decision "allow" only',
  })
  .refine((d) => d.for_s === undefined || !d.always, { message: 'give for_s or always, not both' });
export type ApprovalDecision = z.infer<typeof ApprovalDecision>;
/** The answer to a decision: the approval, and what was decided. */
export const ApprovalDecided = ApprovalView.extend({
  decision: z.enum(['allow', 'deny']),
  for_s: z.number().int().optional(),
  always: z.boolean().optional(),
});
export type ApprovalDecided = z.infer<typeof ApprovalDecided>;

/** The last login of an account that did not succeed, or the last one at all: what `status` shows. */
export const LastLogin = LoginView.pick({ id: true, flow: true, status: true, updated_at: true, error: true });
export type LastLogin = z.infer<typeof LastLogin>;

/** What the API shows of an account: config without secrets, plus grant state. */
export const AccountView = z.object({
  name: AccountName,
  driver: z.string(),
  preset: z.string().optional(),
  status: AccountStatus,
  expires_at: z.string().nullable(),
  scopes: z.array(z.string()),
  hosts: z.array(z.string()),
  issuer: z.string().optional(),
  client_id: z.string().optional(),
  has_client_secret: z.boolean(),
  /** A password is stored for the account (the password flow, AMP). */
  has_password: z.boolean().optional(),
  /** When the refresh token itself stops working, when the provider said (ISO time). */
  refresh_expires_at: z.string().nullable().optional(),
  has_refresh_token: z.boolean(),
  flow: Flow.optional(),
  audience: z.string().optional(),
  username: z.string().optional(),
  api_base: z.string().optional(),
  /**
   * DPoP-bound grants (RFC 9449): the JWK thumbprint (RFC 7638) of the account's key, never the key;
   * `grant_jkt` only when the grant is bound to another key (not used: log in again).
   */
  dpop: z.object({ jkt: z.string().nullable(), grant_jkt: z.string().optional() }).optional(),
  /** The account's labels; `{}` when it has none. */
  labels: z.record(z.string(), z.string()).optional(),
  /** Who may take the account's token; absent when it is `open` (any process of the user). */
  access: Access.optional(),
  last_error: z.string().nullable(),
  /** While refreshes back off after a failure (`refresh_failing`, or `active` on a token still valid): when the next attempt is allowed (ISO time). */
  retry_at: z.string().nullable().optional(),
  generation: z.number().int(),
  /** Seconds the current access token stays valid (0 once expired); null when there is none, or its provider gave no expiry. */
  expires_in: z.number().int().nullable().optional(),
  /** When the current grant was first obtained (a login, an import, the recover step; ISO time); refreshes keep it. */
  obtained_at: z.string().nullable().optional(),
  /** When the grant was last refreshed successfully (ISO time); null until its first refresh. */
  refreshed_at: z.string().nullable().optional(),
  /** The pending login, if one is running: its code and URL. */
  login: LoginView.nullable().optional(),
  /** The account's most recent finished login (succeeded, denied, expired, failed, cancelled). */
  last_login: LastLogin.nullable().optional(),
  /** Only in the answer to `PUT`/`PATCH`: what the change did besides saving (a grant dropped, a secret dropped…). */
  notices: z.array(z.string()).optional(),
});
export type AccountView = z.infer<typeof AccountView>;

export const AccountList = z.object({ accounts: z.array(AccountView) });
export type AccountList = z.infer<typeof AccountList>;

/** `POST /v1/accounts/:name/import`: start from a known refresh token (RFC 6749 §6). */
export const ImportRequest = z
  .object({
    refresh_token: z.string().min(1).max(16384).optional(),
    /** An access token the provider already issued with it (Cal.com's managed-user tokens), and when it expires. */
    access_token: z.string().min(1).max(16384).optional(),
    /** Epoch ms or an ISO time. */
    expires_at: z.union([z.number().int().min(0), z.iso.datetime({ offset: true })]).optional(),
    /** The client the refresh token was issued to, where the driver takes one (Real-Debrid's per-user client). */
    client_id: z.string().min(1).max(1024).optional(),
    client_secret: z.string().min(1).max(4096).optional(),
    /**
     * A DPoP account's key the imported tokens are bound to (RFC 9449), as a private EC P-256
     * JWK: it becomes the account's key, sealed like every secret. Without it a DPoP account
     * refuses a refresh token, which would be useless without its key.
     */
    dpop_jwk: z
      .object({
        kty: z.literal('EC'),
        crv: z.literal('P-256'),
        x: z.string().min(1).max(64),
        y: z.string().min(1).max(64),
        d: z.string().min(1).max(64),
      })
      .optional(),
  })
  .strict()
  .refine((r) => (r.client_id === undefined) === (r.client_secret === undefined), {
    message: 'give client_id and client_secret together, or neither',
  })
  .refine((r) => r.refresh_token !== undefined || r.access_token !== undefined, {
    message: 'give a refresh_token, an access_token, or both',
  });
export type ImportRequest = z.infer<typeof ImportRequest>;

/**
 * How a token request or a rejection names its account: by name, or by a URL or host that
 * one account's `hosts` serve (docs/helpers.md, "Which account answers").
 */
const AccountTarget = {
  account: AccountName.optional(),
  url: z.string().min(1).max(4096).optional(),
  host: z.string().min(1).max(512).optional(),
};

/** `POST /v1/token` (docs/architecture.md, token serving rules). */
export const TokenRequest = z
  .object({
    ...AccountTarget,
    username: z.string().max(256).optional(),
    min_ttl: z.number().int().min(0).max(86_400).optional(),
    scope: z.string().min(1).max(2048).optional(),
    audience: z.string().min(1).max(2048).optional(),
  })
  .strict()
  .refine((r) => r.account !== undefined || r.url !== undefined || r.host !== undefined, {
    message: 'name an account, or give a url or host',
  });
export type TokenRequest = z.infer<typeof TokenRequest>;

export const TokenResponse = z.object({
  account: AccountName,
  access_token: z.string(),
  token_type: z.string(),
  expires_at: z.string().nullable(),
  expires_in: z.number().int().nullable(),
  scope: z.string().nullable(),
});
export type TokenResponse = z.infer<typeof TokenResponse>;

/** `POST /v1/dpop/proof` (RFC 9449 §4): a proof for one request of a DPoP account, signed by the daemon's key. */
export const DpopProofRequest = z
  .object({
    account: AccountName,
    /** The request's method (RFC 9449 §4.2 `htm`). */
    htm: z
      .string()
      .min(1)
      .max(32)
      .regex(/^[A-Za-z]+$/, 'an HTTP method'),
    /** The request's URL; query and fragment are left out of the proof (§4.2 `htu`). */
    htu: z.url({ message: 'must be a URL' }).max(4096),
    /** A nonce the resource server gave in `DPoP-Nonce` (§9). */
    nonce: z.string().min(1).max(1024).optional(),
  })
  .strict();
export type DpopProofRequest = z.infer<typeof DpopProofRequest>;

/** The access token and a proof bound to it (`ath`, §4.2): send `Authorization: DPoP <access_token>` and `DPoP: <proof>`. */
export const DpopProofResponse = z.object({
  account: AccountName,
  access_token: z.string(),
  token_type: z.literal('DPoP'),
  proof: z.string(),
  expires_at: z.string().nullable(),
});
export type DpopProofResponse = z.infer<typeof DpopProofResponse>;

/** `POST /v1/credential/reject`: a tool reports a served token was refused. */
export const RejectRequest = z
  .object({
    ...AccountTarget,
    access_token: z.string().min(1).max(16384).optional(),
  })
  .strict();
export type RejectRequest = z.infer<typeof RejectRequest>;

/** `DELETE /v1/accounts/:name`, `POST /v1/accounts/:name/logout`: whether the provider revoked the grant. */
export const RevokeResponse = z.object({ ok: z.literal(true), revoked: z.boolean() });
export type RevokeResponse = z.infer<typeof RevokeResponse>;

/** `POST /v1/credential/reject`: how many cached tokens were dropped. */
export const RejectResponse = z.object({ ok: z.literal(true), dropped: z.number().int() });
export type RejectResponse = z.infer<typeof RejectResponse>;

/**
 * `POST /v1/accounts/:name/refresh`: no body refreshes now. `if_token` (the token the caller
 * saw refused; in the body, never in a URL) makes it coalesced: when the daemon already holds
 * another valid token it answers with that one and calls nobody, and a refresh in flight is joined.
 */
export const RefreshRequest = z.object({ if_token: z.string().min(1).max(16384).optional() }).strict();
export type RefreshRequest = z.infer<typeof RefreshRequest>;

export const RefreshResponse = z.object({
  account: AccountName,
  expires_at: z.string().nullable(),
  generation: z.number().int(),
  /** Only with `if_token`: the token to use now (the one already held, or the new one), as `POST /v1/token` answers it. */
  access_token: z.string().optional(),
  token_type: z.string().optional(),
  expires_in: z.number().int().nullable().optional(),
  scope: z.string().nullable().optional(),
  /** Only with `if_token`: false when the daemon already held another token and called nobody. */
  refreshed: z.boolean().optional(),
});
export type RefreshResponse = z.infer<typeof RefreshResponse>;

/** `POST /v1/accounts/:name/recover`: the grant obtained anew by the driver's recover step. */
export const RecoverResponse = RefreshResponse.pick({ account: true, expires_at: true, generation: true });
export type RecoverResponse = z.infer<typeof RecoverResponse>;

/** Where the master key lives: the 0600 key file, or the OS keyring (macOS Keychain, Linux Secret Service). */
export const KeyStore = z.enum(['file', 'keyring']);
export type KeyStore = z.infer<typeof KeyStore>;

/** `POST /v1/key/move`: move the master key to the other place. */
export const KeyMoveRequest = z.object({ to: KeyStore }).strict();
export type KeyMoveRequest = z.infer<typeof KeyMoveRequest>;

/** `GET /v1/key`, `POST /v1/key/move`: where the key is now (never the key). */
export const KeyView = z.object({
  key_store: KeyStore,
  /** The file's path, or the keyring entry (service and account) holding it. */
  where: z.string(),
  /** On a move: false when it was already there. */
  moved: z.boolean().optional(),
});
export type KeyView = z.infer<typeof KeyView>;

export const Health = z.object({
  status: z.literal('ok'),
  version: z.string(),
  pid: z.number().int(),
  uptime_s: z.number(),
  accounts: z.number().int(),
  /** Problems the daemon sees while it runs (a database file deleted, a key file changed, a full disk), with their fix. */
  warnings: z.array(z.string()).optional(),
});
export type Health = z.infer<typeof Health>;

// The events of `GET /v1/events` are in events.ts.
