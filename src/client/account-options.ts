/**
 * The options `tokend add` and `tokend set` share: one table, one help text, one
 * translation into the request body and query (PUT and PATCH /v1/accounts/:name).
 */
import type { PatchAccountRequest } from '../protocol/api.js';
import { ACCOUNT_WRITE_FLAGS } from '../protocol/routes.js';
import type { parseOptions } from './args.js';
import { UsageError, type Io } from './io.js';

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
  'replace-grant': { type: 'boolean' },
  'no-check': { type: 'boolean' },
  json: { type: 'boolean' },
} as const;

/** What parseArgs gives for ACCOUNT_OPTIONS. */
export type AccountValues = ReturnType<typeof parseOptions<typeof ACCOUNT_OPTIONS>>['values'];

export const ACCOUNT_OPTIONS_HELP = `  --preset P                   provider defaults: github, gitlab, bitbucket, google,
                               microsoft, keycloak (explicit options win)
  --issuer URL                 OpenID / OAuth issuer (discovery: OIDC, then RFC 8414)
  --client-id ID               OAuth client id
  --client-secret-stdin        read the client secret from stdin (never from argv)
  --auth-method M              client_secret_basic | client_secret_post | none
  --scope S                    a scope (repeatable; "a b" counts as two)
  --audience A                 resource / audience (RFC 8707)
  --flow F                     device | browser | client-credentials
  --host HOST                  a host pattern this account serves (repeatable)
  --username U                 username helpers present with the token
  --api-base URL               base URL for the proxy
  --token-endpoint URL         explicit endpoints, instead of or on top of discovery
  --device-endpoint URL
  --authorization-endpoint URL
  --revocation-endpoint URL
  --replace-grant              allow a change of provider or client (driver, issuer,
                               token or revocation endpoint, client id): the old grant
                               is revoked and dropped, so the account needs a new login.
                               Without it such a change is refused (exit 1).
  --no-check                   do not contact the provider to check the account
                               (discovery, required secrets): for offline setup
  --json                       print the account as JSON on stdout
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
  };
  if (values['client-secret-stdin']) {
    const secret = (await io.readStdin()).replace(/\r?\n$/, '');
    if (!secret) throw new UsageError('--client-secret-stdin: stdin was empty', command);
    body.client_secret = secret;
  }
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return body as PatchAccountRequest;
}

/** The query string of the write: `?replace_grant=true`, `?check=false`, or both, or nothing. */
export function writeQuery(values: AccountValues): string {
  const q = new URLSearchParams();
  if (values['replace-grant']) q.set(ACCOUNT_WRITE_FLAGS.replaceGrant, 'true');
  if (values['no-check']) q.set(ACCOUNT_WRITE_FLAGS.check, 'false');
  const s = q.toString();
  return s ? `?${s}` : '';
}
