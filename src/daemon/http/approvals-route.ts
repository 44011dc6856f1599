import type { Hono } from 'hono';
import { type ApprovalDecided, ApprovalDecision, type ApprovalList } from '../../protocol/api.js';
import { ROUTE_PATTERNS } from '../../protocol/routes.js';
import type { Approvals } from '../caller/approvals.js';
import { E } from '../errors.js';
import { readJson } from './app.js';
import { who } from './raw-request.js';

/**
 * `GET /v1/approvals` and `POST /v1/approvals/:id`: the requests of `ask` accounts that wait,
 * and the user's decision on one. Open to every caller of the user, like account
 * management: a same-user program can approve its own request (docs/security.md says what
 * `ask` stops and what it does not).
 */
export function mountApprovals(deps: { approvals: Pick<Approvals, 'list' | 'decide'> | undefined }): (app: Hono) => void {
  // Without approvals (an app built for a test) nothing ever waits.
  const approvals = deps.approvals ?? {
    list: () => [],
    decide: async (id: string) => Promise.reject(E.notFound(`no approval ${id} is waiting`)),
  };
  return function approvalRoutes(app) {
    app.get(ROUTE_PATTERNS.approvals, (c) => {
      const body: ApprovalList = { approvals: approvals.list() };
      return c.json(body);
    });
    app.post(ROUTE_PATTERNS.approval, async (c) => {
      const body = await readJson(c, ApprovalDecision);
      const view = await approvals.decide(c.req.param('id'), body, who(c));
      const answer: ApprovalDecided = { ...view, ...body };
      return c.json(answer);
    });
  };
}
