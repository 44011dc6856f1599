/** `POST /v1/dpop/proof` (RFC 9449 §7): a proof by the account's key and the token it is bound to. The key stays here. */
import type { Hono } from 'hono';
import { DpopProofRequest, type DpopProofResponse } from '../../protocol/api.js';
import { ROUTE_PATTERNS } from '../../protocol/routes.js';
import type { AuditLog } from '../audit.js';
import type { Broker } from '../broker.js';
import type { AccessControl } from '../caller/access.js';
import type { DpopProofs } from '../dpop/proofs.js';
import { E, unknownAccount } from '../errors.js';
import { readJson } from './app.js';
import { callerOfContext, header } from './raw-request.js';

export interface DpopRouteDeps {
  broker: Broker;
  audit: AuditLog;
  dpop: DpopProofs;
  config: { getAccount(name: string): unknown };
  /** The account's access decides, as for POST /v1/token: the answer carries the token. */
  access: AccessControl;
}

export function mountDpop(deps: DpopRouteDeps): (app: Hono) => void {
  return (app) => {
    app.post(ROUTE_PATTERNS.dpopProof, async (c) => {
      const req = await readJson(c, DpopProofRequest);
      if (!deps.config.getAccount(req.account)) throw unknownAccount(req.account);
      // Who asks is read once per connection (/proc, caller/connection.ts), and an `ask`
      // account may wait for the user: both before the clock that times the proof itself.
      const allowed = deps.access.check(req.account, callerOfContext(c), header(c, 'user-agent'));
      if (allowed) await allowed;
      const started = performance.now();
      if (!deps.dpop.uses(req.account)) {
        throw E.invalidRequest(`account "${req.account}" does not use DPoP (turn it on with tokend set ${req.account} --dpop)`, {
          account: req.account,
        });
      }
      const tok = await deps.broker.getToken({ account: req.account });
      if (tok.token_type !== 'DPoP') {
        // RFC 9449 §5: the provider answered `Bearer` to a request with a proof: it does not bind.
        throw E.conflict(`the provider of account "${req.account}" issued a ${tok.token_type} token, not a DPoP-bound one`, {
          account: req.account,
        });
      }
      const proof = await deps.dpop.proof(req.account, { htm: req.htm, htu: req.htu, accessToken: tok.access_token, nonce: req.nonce });
      // The daemon's own time from the token to the signed proof (W3C Server-Timing, which the
      // bench reads; no secret in it). The caller's identity is read once per connection, apart.
      c.header('server-timing', `proof;dur=${(performance.now() - started).toFixed(3)}`);
      // The proof carries the token: its row is written before the answer leaves, as the token route's (audit.ts).
      const written = deps.audit.record(req.account, header(c, 'user-agent'), 'dpop_proof', callerOfContext(c));
      if (written) await written;
      const body: DpopProofResponse = {
        account: req.account,
        access_token: tok.access_token,
        token_type: 'DPoP',
        proof,
        expires_at: tok.expires_at === null ? null : new Date(tok.expires_at).toISOString(),
      };
      return c.json(body);
    });
  };
}
