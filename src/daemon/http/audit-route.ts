import type { Hono } from 'hono';
import { AUDIT_DEFAULT_LIMIT, AuditQuery, type AuditEntry, type AuditList } from '../../protocol/api.js';
import { describeIssues } from '../../protocol/issues.js';
import { ROUTE_PATTERNS } from '../../protocol/routes.js';
import type { AuditLog } from '../audit.js';
import { E } from '../errors.js';
import type { AuditRow, Store } from '../store/types.js';

const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** `since`/`until`: an ISO time, or a duration back from `now` (`90s`, `15m`, `1h`, `7d`); epoch ms. */
export function auditTime(name: string, text: string, now: number): number {
  const d = /^(\d{1,9})([smhd])$/.exec(text);
  if (d) return now - Number(d[1]) * UNIT_MS[d[2]!]!;
  const at = /^\d{4}-\d{2}-\d{2}/.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(at)) throw E.invalidRequest(`${name}: expected an ISO time (2026-01-31T12:00:00Z) or a duration (90s, 15m, 1h, 7d)`);
  return at;
}

/** A stored row as the API shows it: the caller labelled as declared, the detail's names beside the columns. */
function entryOf(row: AuditRow): AuditEntry {
  // Rows from before callers were optional say `unknown` for a request without a User-Agent.
  const declared = row.client !== '' && row.client !== 'unknown';
  const { caller, ...detail } = row.detail ?? {};
  return {
    at: new Date(row.at).toISOString(),
    account: row.account === '' ? null : row.account,
    action: row.action,
    caller: { ...caller, ...(declared ? { user_agent: row.client } : {}) },
    outcome: row.outcome,
    code: row.code,
    task: row.task,
    ...detail,
  };
}

/**
 * `GET /v1/audit`: the audit log, newest first. Rows still buffered are written first, so
 * every action recorded before the request is in the answer.
 */
export function mountAudit(deps: { audit: Pick<AuditLog, 'flush'>; store: Pick<Store, 'listAudit'> }): (app: Hono) => void {
  return function auditRoutes(app) {
    app.get(ROUTE_PATTERNS.audit, async (c) => {
      const parsed = AuditQuery.safeParse(c.req.query());
      if (!parsed.success) throw E.invalidRequest(describeIssues(parsed.error));
      const q = parsed.data;
      const now = Date.now();
      const limit = q.limit ?? AUDIT_DEFAULT_LIMIT;
      const [at, id] = q.cursor ? q.cursor.split('.').map(Number) : [];
      await deps.audit.flush();
      // One row more than asked tells whether there is a next page.
      const rows = await deps.store.listAudit({
        account: q.account,
        action: q.action,
        since: q.since === undefined ? undefined : auditTime('since', q.since, now),
        until: q.until === undefined ? undefined : auditTime('until', q.until, now),
        limit: limit + 1,
        after: at === undefined ? undefined : { at, id: id! },
      });
      const page = rows.slice(0, limit);
      const last = page[page.length - 1];
      const body: AuditList = { entries: page.map(entryOf), ...(rows.length > limit && last ? { next: `${last.at}.${last.id}` } : {}) };
      return c.json(body);
    });
  };
}
