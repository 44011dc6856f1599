import type { Hono } from 'hono';
import { LoginCallbackRequest, LoginListQuery, LoginRequest } from '../../protocol/api.js';
import { ROUTE_PATTERNS } from '../../protocol/routes.js';
import { describeIssues } from '../../protocol/issues.js';
import { E } from '../errors.js';
import type { LoginManager } from '../logins.js';
import { accountParam, readJson } from './app.js';
import { who } from './raw-request.js';

/**
 * Logins an app can drive: start one (with the app's own `task` label), list them, read
 * one, cancel one, and hand over the callback of a deep-link redirect.
 */
export function mountLogins(deps: { logins: LoginManager }): (app: Hono) => void {
  return function loginRoutes(app) {
    app.post(ROUTE_PATTERNS.accountLogin, async (c) => {
      const name = accountParam(c);
      const body = await readJson(c, LoginRequest);
      // 202 for a new login and for one joined: either way it is still in progress. Its start
      // and end are audited where the login manager begins and finishes it.
      return c.json(await deps.logins.start(name, body.flow, { task: body.task, ttlS: body.ttl_s, ...who(c) }), 202);
    });
    app.get(ROUTE_PATTERNS.logins, async (c) => {
      const parsed = LoginListQuery.safeParse(c.req.query());
      if (!parsed.success) throw E.invalidRequest(describeIssues(parsed.error));
      return c.json({ logins: await deps.logins.list(parsed.data) });
    });
    app.get(ROUTE_PATTERNS.login, async (c) => c.json(await deps.logins.get(c.req.param('id'))));
    app.post(ROUTE_PATTERNS.loginCancel, async (c) => {
      return c.json(await deps.logins.cancel(c.req.param('id')));
    });
    app.post(ROUTE_PATTERNS.loginCallbackByState, async (c) => {
      const body = await readJson(c, LoginCallbackRequest);
      return c.json(await deps.logins.completeByState(body.url));
    });
    app.post(ROUTE_PATTERNS.loginCallback, async (c) => {
      const body = await readJson(c, LoginCallbackRequest);
      return c.json(await deps.logins.completeCallback(c.req.param('id'), body.url));
    });
  };
}
