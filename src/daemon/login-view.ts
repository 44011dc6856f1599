/**
 * A login as the manager holds it (LoginState), as the API shows it (LoginView) and as the
 * store keeps it (LoginRecord), and the conversions between them. Nothing here is a secret
 * on its way to the store: the state, PKCE verifier, authorization URL and device code go
 * in the record's sealed `secrets` only.
 */
import { LoginView, type LoginFlow, type LoginStatus } from '../protocol/api.js';
import { E } from './errors.js';
import type { LoginError } from './login-device.js';
import type { LoginRecord } from './store/types.js';

/** A login as the manager holds it: the API's fields, times in epoch ms. */
export interface LoginState {
  id: string;
  account: string;
  flow: LoginFlow;
  task: string | null;
  status: LoginStatus;
  user_code: string | null;
  verification_uri: string | null;
  verification_uri_complete: string | null;
  authorization_url: string | null;
  created_at: number;
  updated_at: number;
  expires_at: number;
  error: LoginError | null;
  /** The device flow's QR code (see qrOf); memory only. */
  qr?: string | null;
  /**
   * What a restarted daemon needs to take the login up (login-resume.ts), none a secret:
   * the provider and client it talks to (grant-identity.ts), a browser login's redirect
   * URI, a device login's polling interval in seconds.
   */
  identity: string;
  redirect_uri: string | null;
  interval: number | null;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function view(s: LoginState): LoginView {
  return {
    id: s.id,
    account: s.account,
    flow: s.flow,
    task: s.task,
    status: s.status,
    user_code: s.user_code,
    verification_uri: s.verification_uri,
    verification_uri_complete: s.verification_uri_complete,
    // Only while pending, as stored (fromRecord): it carries the state.
    authorization_url: s.status === 'pending' ? s.authorization_url : null,
    qr: s.status === 'pending' ? (s.qr ?? null) : null,
    created_at: iso(s.created_at),
    updated_at: iso(s.updated_at),
    expires_at: iso(s.expires_at),
    error: s.error,
  };
}

/**
 * The QR code a phone scans to open the verification URL, rendered here so the thin client
 * needs no library; uqr is loaded on the first device login, not at daemon start.
 */
export async function qrOf(url: string | null): Promise<string | null> {
  if (!url) return null;
  try {
    const { renderUnicodeCompact } = await import('uqr');
    return renderUnicodeCompact(url, { border: 1 });
  } catch {
    return null; // too long for a QR code: the URL is printed anyway
  }
}

export function toRecord(s: LoginState): LoginRecord {
  const { id, account, flow, status, created_at, updated_at } = s;
  // Named one by one, never spread: not authorization_url, which carries the state, a
  // secret (stored sealed, see LoginManager.begin), nor the QR code, which is memory only.
  const { task, user_code, verification_uri, verification_uri_complete, expires_at, error, identity, redirect_uri, interval } = s;
  const data = { task, user_code, verification_uri, verification_uri_complete, expires_at, error, identity, redirect_uri, interval };
  return { id, account, flow, status, created_at, updated_at, data };
}

const text = (v: unknown): string | null => (typeof v === 'string' ? v : null);

/**
 * A stored login as the manager holds it, to take it up after a restart; its authorization
 * URL from its sealed secrets. Undefined when the record is not a login this tokend wrote
 * with what a restart needs (an older tokend's), or unreadable.
 */
export function stateOf(rec: LoginRecord): LoginState | undefined {
  const d = rec.data;
  const identity = text(d.identity);
  if (!identity || typeof d.expires_at !== 'number' || (rec.flow !== 'device' && rec.flow !== 'browser')) return undefined;
  return {
    id: rec.id,
    account: rec.account,
    flow: rec.flow,
    task: text(d.task),
    status: rec.status,
    user_code: text(d.user_code),
    verification_uri: text(d.verification_uri),
    verification_uri_complete: text(d.verification_uri_complete),
    authorization_url: rec.secrets?.authorization_url ?? null,
    created_at: rec.created_at,
    updated_at: rec.updated_at,
    expires_at: d.expires_at,
    error: null,
    identity,
    redirect_uri: text(d.redirect_uri),
    interval: typeof d.interval === 'number' ? d.interval : null,
  };
}

/** A stored login, validated on the way out; a pending one's authorization URL is among its sealed secrets. */
export function fromRecord(rec: LoginRecord): LoginView {
  const d = rec.data;
  const authorizationUrl = rec.status === 'pending' ? rec.secrets?.authorization_url : undefined;
  const parsed = LoginView.safeParse({
    id: rec.id,
    account: rec.account,
    flow: rec.flow,
    task: d.task ?? null,
    status: rec.status,
    user_code: d.user_code ?? null,
    verification_uri: d.verification_uri ?? null,
    verification_uri_complete: d.verification_uri_complete ?? null,
    authorization_url: authorizationUrl ?? null,
    created_at: iso(rec.created_at),
    updated_at: iso(rec.updated_at),
    expires_at: typeof d.expires_at === 'number' ? iso(d.expires_at) : undefined,
    error: d.error ?? null,
  });
  if (!parsed.success) throw E.internal(`the stored login "${rec.id}" is unreadable`);
  return parsed.data;
}
