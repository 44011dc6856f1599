import type { IncomingMessage, ServerResponse } from 'node:http';
import { TokenRequest, type TokenResponse } from '../../protocol/api.js';
import { isAccountName } from '../../protocol/names.js';
import { ROUTES } from '../../protocol/routes.js';
import type { AuditLog } from '../audit.js';
import type { AccessControl } from '../caller/access.js';
import { callerOf } from '../caller/connection.js';
import type { CallerIdentity } from '../caller/proc.js';
import type { Broker, CachedToken, TokenQuery } from '../broker.js';
import { E } from '../errors.js';
import type { Logger } from '../log.js';
import type { TargetRequest } from '../match.js';
import { readIncomingThen } from './raw-request.js';
import { errorResponse, parseJsonBody, sendJson } from './wire.js';

export function tokenBody(tok: CachedToken, now: number): TokenResponse {
  return {
    account: tok.account,
    access_token: tok.access_token,
    token_type: tok.token_type,
    expires_at: tok.expires_at === null ? null : new Date(tok.expires_at).toISOString(),
    expires_in: expiresIn(tok, now),
    scope: tok.scope,
  };
}

function expiresIn(tok: CachedToken, now: number): number | null {
  return tok.expires_at === null ? null : Math.max(0, Math.floor((tok.expires_at - now) / 1000));
}

/**
 * The token route's handler: the answer itself when memory holds the token (rule 2: nothing
 * to wait for, so no promise either), else a promise of it. Throws, or rejects, with the
 * wire error.
 */
export type TokenHandler = (body: Buffer, client: string | undefined, by?: CallerIdentity) => TokenResponse | Promise<TokenResponse>;

/** What the token route needs; app.ts's AppDeps has it (declared here so the two modules do not import each other). */
export interface TokenRouteDeps {
  broker: Broker;
  audit: AuditLog;
  /** Who may take each account's token (caller/access.ts). */
  access: Pick<AccessControl, 'check'>;
  /** Resolve a url/host to an account name; undefined when none matches. */
  resolveTarget?: (req: TargetRequest) => string | undefined;
}

/** `POST /v1/token` (rules 1–2, docs/architecture.md): parse, look up memory, answer. No network, no log line, and no disk once the token is in memory. */
export function createTokenHandler(deps: TokenRouteDeps): TokenHandler {
  const answers = lastAnswer();
  const served = (q: TokenQuery, tok: CachedToken, client: string | undefined, by: CallerIdentity | undefined) => {
    // A row held for the end of this turn's write: the answer leaves after it (audit.ts).
    const written = deps.audit.record(q.account, client, 'token', by);
    return written ? written.then(() => answers.of(tok, Date.now())) : answers.of(tok, Date.now());
  };
  const serve = (q: TokenQuery, client: string | undefined, by: CallerIdentity | undefined) => {
    const hit = deps.broker.cachedToken(q);
    return hit ? served(q, hit, client, by) : deps.broker.getToken(q).then((tok) => served(q, tok, client, by));
  };
  return (body, client, by) => {
    const req = plainAccountRequest(body) ?? parseJsonBody(body, TokenRequest);
    let account = req.account;
    if (!account) {
      account = deps.resolveTarget?.({ url: req.url, host: req.host, username: req.username });
      if (!account) throw E.notFound(`no account serves ${req.url ?? req.host}`);
    }
    const q: TokenQuery = { account, min_ttl: req.min_ttl, scope: req.scope, audience: req.audience };
    const allowed = deps.access.check(account, by, client);
    return allowed ? allowed.then(() => serve(q, client, by)) : serve(q, client, by);
  };
}

/**
 * `{"account":"NAME"}` and nothing else, the request scripts and helpers send: its one field
 * checked as TokenRequest checks it (AccountName is ACCOUNT_NAME_RE), so the value is the
 * one the schema would give, without zod's walk. Anything else (and a body that is not JSON)
 * is undefined: the schema then parses it and says what is wrong.
 */
function plainAccountRequest(body: Buffer): TokenRequest | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return undefined;
  for (const key in raw) if (key !== 'account') return undefined;
  const account = (raw as { account?: unknown }).account;
  return typeof account === 'string' && isAccountName(account) ? { account } : undefined;
}

/**
 * The last answer made, given again while it is exact: the same token (the same object,
 * so nothing was refreshed) and the same whole seconds left. The waiters of one refresh all
 * get it (one body, serialised once by the lane below), and so does a script asking in a
 * loop. The answer is shared: nobody changes it.
 */
function lastAnswer() {
  let tok: CachedToken | undefined;
  let body: TokenResponse | undefined;
  return {
    of(t: CachedToken, now: number): TokenResponse {
      if (t !== tok || body === undefined || body.expires_in !== expiresIn(t, now)) {
        tok = t;
        body = tokenBody(t, now);
      }
      return body;
    },
  };
}

/**
 * The token route as a plain node:http handler, in front of Hono: the request scripts and
 * helpers make most goes through no router and no web Request (the hot-token bench), and a
 * token in memory is written from the request's 'end' event, with no promise in between.
 * Returns false for any other request.
 */
export function tokenLane(handler: TokenHandler, log: Logger): (req: IncomingMessage, res: ServerResponse) => boolean {
  let sent: TokenResponse | undefined;
  let json = '';
  let length = 0;
  return (req, res) => {
    if (req.method !== 'POST' || req.url !== ROUTES.token) return false;
    const ua = req.headers['user-agent'];
    const refuse = (err: unknown) => {
      const r = errorResponse(err, log, ROUTES.token);
      sendJson(res, r.status, r.body, r.headers);
    };
    const answer = (body: TokenResponse) => {
      // Serialised once for every caller it goes to (lastAnswer): a storm's 1000 waiters.
      if (body !== sent) {
        json = JSON.stringify((sent = body));
        length = Buffer.byteLength(json);
      }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': length });
      res.end(json);
    };
    readIncomingThen(
      req,
      (body) => {
        let out: TokenResponse | Promise<TokenResponse>;
        try {
          // The caller is read once per connection (caller/connection.ts), here while the client waits.
          out = handler(body, ua, callerOf(req));
        } catch (err) {
          refuse(err);
          return;
        }
        if (out instanceof Promise) out.then(answer, refuse);
        else answer(out);
      },
      refuse,
    );
    return true;
  };
}
