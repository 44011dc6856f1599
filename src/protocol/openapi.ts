/**
 * The socket API as OpenAPI 3.1, generated from the same zod schemas the daemon parses
 * with (never hand-written): `npm run build` writes it to dist/openapi.json, and the daemon
 * serves it at `GET /v1/openapi.json`, so an app in any language can generate a client.
 * Every route of the route table is one operation here; a test checks the two agree with
 * what the daemon registers.
 */
import { z } from 'zod';
import {
  AccountList,
  AccountView,
  ApprovalDecided,
  ApprovalDecision,
  ApprovalList,
  AuditList,
  AuditQuery,
  DpopProofRequest,
  DpopProofResponse,
  ErrorBody,
  Health,
  ImportRequest,
  KeyMoveRequest,
  KeyView,
  LoginCallbackRequest,
  LoginList,
  LoginListQuery,
  LoginRequest,
  LoginView,
  PatchAccountRequest,
  PutAccountRequest,
  RecoverResponse,
  RefreshRequest,
  RefreshResponse,
  RejectRequest,
  RejectResponse,
  RevokeResponse,
  TokenRequest,
  TokenResponse,
} from './api.js';
import { ERROR_STATUS } from './errors.js';
import { DaemonEvent, EMITTED_EVENTS, ReadyEvent, ResyncEvent } from './events.js';
import { ACCOUNT_LABEL_QUERY } from './labels.js';
import { ACCOUNT_WRITE_FLAGS, ROUTE_PATTERNS } from './routes.js';

type RouteKey = keyof typeof ROUTE_PATTERNS;
type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

/** One operation of the API: the route, the method, and what goes in and comes out. */
export interface Operation {
  route: RouteKey;
  /** `all` for the proxy, which passes any method on. */
  method: Method | 'all';
  summary: string;
  body?: z.ZodType;
  /** The body may be left out (an empty body is `{}`). */
  bodyOptional?: boolean;
  query?: z.ZodObject;
  /** The answer's schema; `events` (a stream of server-sent events), `bytes` (a helper's stdout), `any` (the proxied API's own). */
  answer: z.ZodType | 'events' | 'bytes' | 'any';
  status?: number;
}

const writeFlags = z.object({
  [ACCOUNT_WRITE_FLAGS.replaceGrant]: z
    .enum(['true', 'false'])
    .optional()
    .describe('allow a change of provider or client; the old grant is revoked and dropped'),
  [ACCOUNT_WRITE_FLAGS.check]: z.enum(['true', 'false']).optional().describe('false: do not contact the provider to check the account'),
});

export const OPERATIONS: readonly Operation[] = [
  { route: 'health', method: 'get', summary: 'The daemon is up: version, pid, uptime, number of accounts', answer: Health },
  { route: 'openapi', method: 'get', summary: 'This document', answer: z.record(z.string(), z.unknown()) },
  {
    route: 'accounts',
    method: 'get',
    summary: 'Every account, without secrets; with `label`, those carrying every label given',
    query: z.object({
      [ACCOUNT_LABEL_QUERY]: z
        .array(z.string().regex(/^[^=]+=/))
        .optional()
        .describe('key=value, repeatable (label=user=123&label=task=t-1): the account must carry each'),
    }),
    answer: AccountList,
  },
  { route: 'account', method: 'get', summary: 'One account: status, expiry, the pending and the last login', answer: AccountView },
  {
    route: 'account',
    method: 'put',
    summary: 'Add or replace an account (secrets go to the encrypted store)',
    body: PutAccountRequest,
    query: writeFlags,
    answer: AccountView,
  },
  {
    route: 'account',
    method: 'patch',
    summary: 'Change only the given fields of an account',
    body: PatchAccountRequest,
    query: writeFlags,
    answer: AccountView,
  },
  { route: 'account', method: 'delete', summary: 'Revoke the grant where possible, then delete the account', answer: RevokeResponse },
  {
    route: 'accountImport',
    method: 'post',
    summary: 'Start an account from tokens the user holds',
    body: ImportRequest,
    answer: AccountView,
  },
  {
    route: 'accountRefresh',
    method: 'post',
    summary: 'Refresh the account now; with if_token, coalesced: the token already held when it is another one',
    body: RefreshRequest,
    bodyOptional: true,
    answer: RefreshResponse,
  },
  {
    route: 'accountRecover',
    method: 'post',
    summary: "The driver's recover step now (Cal.com force-refresh, AMP obtain_token); 409 where there is none",
    answer: RecoverResponse,
  },
  { route: 'accountLogout', method: 'post', summary: 'Revoke and forget the grant, keep the account', answer: RevokeResponse },
  {
    route: 'accountLogin',
    method: 'post',
    summary: 'Start (or join) an interactive login',
    body: LoginRequest,
    answer: LoginView,
    status: 202,
  },
  { route: 'logins', method: 'get', summary: 'Logins, newest first, by account, status or task', query: LoginListQuery, answer: LoginList },
  { route: 'login', method: 'get', summary: 'One login', answer: LoginView },
  { route: 'loginCancel', method: 'post', summary: 'Stop a pending login', answer: LoginView },
  {
    route: 'loginCallback',
    method: 'post',
    summary: 'Hand over the callback URL of a deep-link login',
    body: LoginCallbackRequest,
    answer: LoginView,
  },
  {
    route: 'loginCallbackByState',
    method: 'post',
    summary: "Hand over any pending browser login's callback URL; the login is found by its state",
    body: LoginCallbackRequest,
    answer: LoginView,
  },
  {
    route: 'token',
    method: 'post',
    summary: 'A valid access token for an account, a URL or a host',
    body: TokenRequest,
    answer: TokenResponse,
  },
  {
    route: 'dpopProof',
    method: 'post',
    summary: "A DPoP proof for one request of a DPoP account, signed by the daemon's key, with the token it is bound to",
    body: DpopProofRequest,
    answer: DpopProofResponse,
  },
  {
    route: 'credentialReject',
    method: 'post',
    summary: 'A served token was refused: stop serving it',
    body: RejectRequest,
    answer: RejectResponse,
  },
  {
    route: 'events',
    method: 'get',
    summary: 'Server-sent events: logins, refreshes, accounts needing a login (never a secret)',
    answer: 'events',
  },
  { route: 'helper', method: 'post', summary: "A credential helper's protocol: its stdin in, its stdout out", answer: 'bytes' },
  { route: 'key', method: 'get', summary: 'Where the master key lives (the key file or the OS keyring); never the key', answer: KeyView },
  {
    route: 'keyMove',
    method: 'post',
    summary: 'Move the master key to the key file or the OS keyring, and set settings.key_store',
    body: KeyMoveRequest,
    answer: KeyView,
  },
  {
    route: 'audit',
    method: 'get',
    summary: 'The audit log, newest first: who did what to which account, and how it ended (never a secret)',
    query: AuditQuery,
    answer: AuditList,
  },
  {
    route: 'approvals',
    method: 'get',
    summary: 'Requests of `ask` accounts waiting for the user to allow or deny them, with the verified caller',
    answer: ApprovalList,
  },
  {
    route: 'approval',
    method: 'post',
    summary: 'Allow (once, for_s seconds for this process, or always: a rule) or deny a waiting request',
    body: ApprovalDecision,
    answer: ApprovalDecided,
  },
  { route: 'proxy', method: 'all', summary: "A request to the account's api_base with its token added; streams both ways", answer: 'any' },
];

/** `/v1/accounts/:name` → `/v1/accounts/{name}`; the proxy's trailing `*` becomes `{path}` (which may hold slashes). */
export function openApiPath(pattern: string): string {
  return pattern.replace(/:([A-Za-z]+)/g, '{$1}').replace(/\/\*$/, '/{path}');
}

function schema(t: z.ZodType, io: 'input' | 'output'): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(t, { io, unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

const ERROR_RESPONSE = {
  description: 'An error: `{"error":{"code","message"}}`',
  content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorBody' } } },
};

/** The whole OpenAPI 3.1 document. */
export function buildOpenApi(version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of OPERATIONS) {
    const pattern = ROUTE_PATTERNS[op.route];
    const p = openApiPath(pattern);
    const pathParams = [...p.matchAll(/\{([A-Za-z]+)\}/g)].map((m) => ({
      name: m[1],
      in: 'path',
      required: true,
      schema: { type: 'string' },
    }));
    const queryParams = op.query
      ? Object.entries((schema(op.query, 'input').properties ?? {}) as Record<string, Record<string, unknown>>).map(([name, s]) => ({
          name,
          in: 'query',
          required: false,
          schema: s,
        }))
      : [];
    const ok =
      op.answer === 'events'
        ? {
            description:
              'A stream of server-sent events: `ready` first (components ReadyEvent), then every event (components DaemonEvent, one schema per type)',
            content: {
              'text/event-stream': { schema: { type: 'string' }, 'x-tokend-events': { $ref: '#/components/schemas/DaemonEvent' } },
            },
          }
        : op.answer === 'bytes'
          ? {
              description: "The helper's stdout; its exit status in x-tokend-exit",
              content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } },
            }
          : op.answer === 'any'
            ? { description: "The API's own answer, passed through (daemon errors carry x-tokend-error)" }
            : { description: op.summary, content: { 'application/json': { schema: schema(op.answer, 'output') } } };
    const operation: Record<string, unknown> = {
      operationId: `${op.route}${op.method === 'all' ? '' : op.method[0].toUpperCase() + op.method.slice(1)}`,
      summary: op.summary,
      ...(pathParams.length || queryParams.length ? { parameters: [...pathParams, ...queryParams] } : {}),
      ...(op.body
        ? { requestBody: { required: !op.bodyOptional, content: { 'application/json': { schema: schema(op.body, 'input') } } } }
        : {}),
      ...(op.answer === 'bytes'
        ? { requestBody: { content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } } }
        : {}),
      responses: { [String(op.status ?? 200)]: ok, default: ERROR_RESPONSE },
    };
    const methods = op.method === 'all' ? (['get', 'post', 'put', 'patch', 'delete'] as const) : [op.method];
    paths[p] ??= {};
    for (const m of methods)
      paths[p][m] = {
        ...operation,
        operationId: `${operation.operationId as string}${op.method === 'all' ? m[0].toUpperCase() + m.slice(1) : ''}`,
      };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'tokend socket API',
      version,
      description:
        "HTTP/1.1 + JSON over the daemon's Unix socket (or its loopback TCP listener, with `Authorization: Bearer <daemon key>`). " +
        `Error codes and their statuses: ${Object.entries(ERROR_STATUS)
          .map(([c, s]) => `${c} ${s}`)
          .join(', ')}.`,
    },
    servers: [{ url: 'http://tokend', description: 'the Unix socket (any Host)' }],
    paths,
    components: { schemas: { ErrorBody: schema(ErrorBody, 'output'), ...eventSchemas() } },
  };
}

/** The events of `GET /v1/events`: one component per type (named by it), `ReadyEvent`, and their union `DaemonEvent`. */
export function eventSchemas(): Record<string, unknown> {
  const byType: Record<string, unknown> = {};
  for (const [type, s] of Object.entries(EMITTED_EVENTS)) byType[eventComponent(type)] = schema(s, 'output');
  byType[eventComponent('resync')] = schema(ResyncEvent, 'output');
  const oneOf = DaemonEvent.options.map((o) => ({ $ref: `#/components/schemas/${eventComponent(o.shape.type.value)}` }));
  return { ...byType, ReadyEvent: schema(ReadyEvent, 'output'), DaemonEvent: { oneOf, discriminator: { propertyName: 'type' } } };
}

/** `token.refresh_failed` → `TokenRefreshFailedEvent`. */
export function eventComponent(type: string): string {
  return `${type
    .split(/[._]/)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join('')}Event`;
}
