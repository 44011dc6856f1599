/**
 * `tokend/client`: the SDK for apps (docs/sdk.md). No runtime dependencies: node
 * built-ins and tokend's zod-free protocol modules only; the wire types are imported as
 * types and erased.
 */
export { Tokend } from './tokend.js';
export type {
  AccountQuery,
  AccountWriteOptions,
  AuditOptions,
  LoginOptions,
  LoginQuery,
  RefreshOptions,
  RemovedAccount,
  RevokeResult,
  TokendOptions,
  TokenOptions,
} from './tokend.js';
export { TokendError } from './errors.js';
export type { TokendErrorCode } from './errors.js';
export type { EventsOptions, EventSubscription } from './event-subscription.js';
export type { TokendBody, TokendFetchInit } from './proxy-fetch.js';
export type { WaitForLoginOptions } from './wait-for-login.js';
export type {
  AccountStatus,
  AccountView,
  AuditEntry,
  AuditList,
  AuditOutcome,
  DpopProofResponse,
  Flow,
  Health,
  Labels,
  LastLogin,
  LoginFlow,
  LoginStatus,
  LoginView,
  PatchAccountRequest,
  PutAccountRequest,
  RecoverResponse,
  RefreshResponse,
  RejectResponse,
  TokenResponse,
} from '../protocol/api.js';
export type { ImportTokens, TokenObject } from '../protocol/import-tokens.js';
export type {
  DaemonEvent,
  EventType,
  ReadyEvent,
  ReconnectedEvent,
  TokendEvent,
} from '../protocol/events.js';
export type { ErrorCode } from '../protocol/errors.js';
