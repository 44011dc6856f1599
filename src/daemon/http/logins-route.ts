import type { Hono } from 'hono';
import { LoginRequest } from '../../protocol/api.js';
import { CLIENT_HEADER, ROUTE_PATTERNS } from '../../protocol/routes.js';
import type { AuditLog } from '../audit.js';
import type { LoginManager } from '../logins.js';
import { accountParam, readJson } from './app.js';
import { header } from './raw-request.js';

/** `POST /v1/accounts/:name/login` (202 with the login object) and `GET /v1/logins/:id`. */
export function mountLogins(deps: { logins: LoginManager; audit: AuditLog }): (app: Hono) => void {
  return function loginRoutes(app) {
    app.post(ROUTE_PATTERNS.accountLogin, async (c) => {
      const name = accountParam(c);
      const body = await readJson(c, LoginRequest);
      deps.audit.record(name, header(c, CLIENT_HEADER), 'login');
      // 202 for a new login and for one joined: either way it is still in progress.
      return c.json(await deps.logins.start(name, body.flow), 202);
    });
    app.get(ROUTE_PATTERNS.login, (c) => c.json(deps.logins.get(c.req.param('id'))));
  };
}
