/**
 * The events of `GET /v1/events` (Server-Sent Events): one schema per type, what the daemon
 * sends as each message's `data` (JSON; the message's `event:` is the type and its `id:` the
 * event's id). Events never carry a secret. The SDK takes the types only (`import type`).
 *
 * Ids are `RUN-SEQ`: RUN changes with every daemon run, SEQ counts up within one, so an id
 * from another run is never taken for an older or newer one of this run (docs/api.md).
 */
import { z } from 'zod';
import { AccountName, LoginFlow, LoginStatus } from './api.js';
import { Caller, RecordedCaller } from './caller.js';

/** How far back a reconnecting client is caught up: the last 1000 events, at most 10 minutes old. */
export const EVENT_WINDOW = { events: 1000, ms: 10 * 60_000 } as const;

/** An event id: `RUN-SEQ` (RUN: lowercase letters and digits; SEQ: a decimal count from 1). */
export const EventId = z.string().regex(/^[0-9a-z]+-\d+$/);
/** RUN and SEQ of an event id; undefined when it is not one. */
export function parseEventId(id: string): { run: string; seq: number } | undefined {
  const m = /^([0-9a-z]+)-(\d{1,15})$/.exec(id);
  return m ? { run: m[1], seq: Number(m[2]) } : undefined;
}

const at = z.string().describe('when it happened (ISO 8601)');

/** What every event of an account carries. */
const accountEvent = <T extends string, S extends z.ZodRawShape>(type: T, fields: S) =>
  z.object({ id: EventId, type: z.literal(type), account: AccountName, at, ...fields });

const loginFields = {
  login_id: z.string(),
  flow: LoginFlow,
  /** The caller's label of the login (`task` on `POST /v1/accounts/:name/login`). */
  task: z.string().nullable(),
};

/** Who caused an event (an account written, a login started): as verified, and its declared User-Agent. */
const causedBy = { caller: RecordedCaller.optional() };

export const LoginPendingEvent = accountEvent('login.pending', {
  ...loginFields,
  ...causedBy,
  status: z.literal('pending'),
  user_code: z.string().nullable(),
  verification_uri: z.string().nullable(),
  verification_uri_complete: z.string().nullable(),
  authorization_url: z.string().nullable(),
  expires_at: z.string(),
});
export const LoginSucceededEvent = accountEvent('login.succeeded', { ...loginFields, status: z.literal('active') });
export const LoginFailedEvent = accountEvent('login.failed', {
  ...loginFields,
  /** `failed`, `expired`, or another end of a login other than `active`. */
  status: LoginStatus.exclude(['pending', 'active']),
  /** The login's error code (docs/logins.md). */
  error: z.string().optional(),
  message: z.string().optional(),
});
export const TokenRefreshedEvent = accountEvent('token.refreshed', {
  generation: z.number().int().optional(),
  expires_at: z.string().nullable(),
  /** `fleet`: another daemon of the fleet refreshed, this one took its grant up. */
  by: z.literal('fleet').optional(),
});
export const TokenRefreshFailedEvent = accountEvent('token.refresh_failed', {
  /** The provider's OAuth error, or the kind of failure (`network`, `server`, …). */
  error: z.string(),
  message: z.string(),
});
export const TokenRecoveredEvent = accountEvent('token.recovered', {
  /** Why the refresh was refused before the grant was recovered without the user. */
  reason: z.string(),
});
export const ReauthRequiredEvent = accountEvent('account.reauth_required', { reason: z.string().nullable() });
export const ReauthSoonEvent = accountEvent('account.reauth_soon', { refresh_expires_at: z.string() });
export const AccountAddedEvent = accountEvent('account.added', { ...causedBy });
export const AccountChangedEvent = accountEvent('account.changed', {
  ...causedBy,
  /** The fields the write gave (their names only, never a value); a PUT over an account gives all of them. */
  fields: z.array(z.string()),
});
export const AccountRemovedEvent = accountEvent('account.removed', {
  ...causedBy,
  /** Whether the provider took the grant back. */
  revoked: z.boolean(),
});
/** A caller the account's `access` does not allow was refused its token (at most once a minute per account and program). */
export const AccessDeniedEvent = accountEvent('access.denied', {
  ...causedBy,
  mode: z.enum(['callers', 'ask', 'open']),
});

/** A request of an `ask` account waits for the user's decision (`tokend approvals`, `POST /v1/approvals/:id`). */
export const ApprovalPendingEvent = accountEvent('approval.pending', {
  approval_id: z.string(),
  /** The program that asks, as the daemon verified it. */
  caller: Caller,
  /** When it is denied unless someone decides first. */
  expires_at: z.string(),
});
/** An approval ended: allowed or denied by the user, denied when it timed out or its caller went away. */
export const ApprovalDecidedEvent = accountEvent('approval.decided', {
  approval_id: z.string(),
  caller: Caller,
  decision: z.enum(['allow', 'deny']),
  /** `api` (tokend approvals, an app), `notification` (the desktop's Allow/Deny), `timeout`, `disconnected`. */
  via: z.enum(['api', 'notification', 'timeout', 'disconnected']),
  for_s: z.number().int().optional(),
  always: z.boolean().optional(),
  /** Who decided through the API, as verified, with its declared User-Agent. */
  decided_by: RecordedCaller.optional(),
});

/**
 * Sent to a client that reconnected with a `Last-Event-ID` the daemon cannot catch up from:
 * `restart` (an id of another daemon run), `gap` (older than the window), `unknown` (not an
 * id this daemon gave). Events were missed: re-read the state you follow.
 */
export const ResyncEvent = z.object({
  id: EventId,
  type: z.literal('resync'),
  at,
  reason: z.enum(['restart', 'gap', 'unknown']),
});

/** The first message of every stream (`event: ready`): the subscription stands; `id` is the newest event's id. */
export const ReadyEvent = z.object({ id: EventId, at });
export type ReadyEvent = z.infer<typeof ReadyEvent>;

/** The events the daemon emits, by type. */
export const EMITTED_EVENTS = {
  'login.pending': LoginPendingEvent,
  'login.succeeded': LoginSucceededEvent,
  'login.failed': LoginFailedEvent,
  'token.refreshed': TokenRefreshedEvent,
  'token.refresh_failed': TokenRefreshFailedEvent,
  'token.recovered': TokenRecoveredEvent,
  'account.reauth_required': ReauthRequiredEvent,
  'account.reauth_soon': ReauthSoonEvent,
  'account.added': AccountAddedEvent,
  'account.changed': AccountChangedEvent,
  'account.removed': AccountRemovedEvent,
  'access.denied': AccessDeniedEvent,
  'approval.pending': ApprovalPendingEvent,
  'approval.decided': ApprovalDecidedEvent,
} as const;

/** Every event of the stream but `ready`. */
export const DaemonEvent = z.discriminatedUnion('type', [
  LoginPendingEvent,
  LoginSucceededEvent,
  LoginFailedEvent,
  TokenRefreshedEvent,
  TokenRefreshFailedEvent,
  TokenRecoveredEvent,
  ReauthRequiredEvent,
  ReauthSoonEvent,
  AccountAddedEvent,
  AccountChangedEvent,
  AccountRemovedEvent,
  AccessDeniedEvent,
  ApprovalPendingEvent,
  ApprovalDecidedEvent,
  ResyncEvent,
]);
export type DaemonEvent = z.infer<typeof DaemonEvent>;

export type EmittedType = keyof typeof EMITTED_EVENTS;
export const EVENT_TYPES = Object.keys(EMITTED_EVENTS) as EmittedType[];
/** The fields an emitter gives for an event of type T (the bus adds id, type, account, at). */
export type EventFields<T extends EmittedType> = Omit<z.infer<(typeof EMITTED_EVENTS)[T]>, 'id' | 'type' | 'account' | 'at'>;

/**
 * Not on the wire: the SDK's iterator yields it when its stream was cut and stands again,
 * before the events it missed (or a `resync`).
 */
export interface ReconnectedEvent {
  type: 'reconnected';
  at: string;
  /** The id the SDK sent as `Last-Event-ID`; null when it had seen none. */
  last_event_id: string | null;
}

/** What `events()` of the SDK yields, typed per `type`. */
export type TokendEvent = DaemonEvent | ReconnectedEvent;
export type EventType = TokendEvent['type'];
