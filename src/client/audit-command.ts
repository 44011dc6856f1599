/**
 * `tokend audit [NAME] [--since 1h] [--action A] [--limit N] [--json]`: the daemon's audit
 * log, newest first, as a table (or the API's JSON). The daemon reads the times: an ISO
 * time or a duration back from now.
 */
import type { AuditEntry, AuditList } from '../protocol/api.js';
import { ROUTES } from '../protocol/routes.js';
import { requireName, parseOptions } from './args.js';
import { EXIT, UsageError, formatTable, type Command } from './io.js';

export const AUDIT_HELP = `usage: tokend audit [NAME] [--since T] [--until T] [--action A] [--limit N] [--json]

Shows who did what to which account, and how it ended, newest first: accounts added,
changed (which fields, never their values) and removed, imports, logins (started, succeeded,
failed, cancelled, expired, with their task), logouts, refresh failures and recoveries, key
moves, and token reads (one row per account, caller and minute). No secret is ever in it.

  NAME         only this account
  --since T    from T on: an ISO time (2026-01-31T12:00:00Z) or a duration back (90s, 15m, 1h, 7d)
  --until T    before T (same forms)
  --action A   only this action (token, import, login_succeeded, account_changed, …)
  --limit N    at most N entries (default 100, at most 1000)
  --json       print {"entries": [{"at", "account", "action", "caller", "outcome", "code", "task"}], "next"}

PROGRAM is the caller as the daemon verified it from the kernel: its script (or executable),
then the executables of its parents, nearest first, and its pid; USER-AGENT is the name it
declared (not verified). Rows are kept settings.audit_retention_days
(90) days, at most settings.audit_max_rows (1000000) of them.

Exit status: 0 ok, 1 error, 2 bad usage.
`;

/** The program that asked: `script ← parent ← …` (or the executable, or the listener key) and its pid; `-` when not verified. */
export function callerChain(c: AuditEntry['caller']): string {
  const self = c.key !== undefined ? `key ${c.key}` : (c.script ?? c.exe);
  if (self === undefined) return '-';
  const names = [self, ...(c.parents ?? [])].map((p) => (p.startsWith('[') || p.startsWith('key ') ? p : p.slice(p.lastIndexOf('/') + 1)));
  return `${names.join(' ← ')}${c.pid === undefined ? '' : ` (pid ${c.pid})`}`;
}

/** What a row says beyond its columns: its task, the fields it changed, its login. */
function detail(e: AuditEntry): string {
  const parts = [
    e.task ? `task=${e.task}` : '',
    e.fields ? `fields=${e.fields.join(',')}` : '',
    e.flow ? `flow=${e.flow}` : '',
    e.to ? `to=${e.to}` : '',
  ];
  return parts.filter(Boolean).join(' ') || '-';
}

export const auditCommand: Command = async (args, io, client) => {
  const { values, positionals } = parseOptions(
    'audit',
    args,
    {
      since: { type: 'string' },
      until: { type: 'string' },
      action: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
    },
    1,
  );
  if (values.help) {
    io.stdout(AUDIT_HELP);
    return EXIT.ok;
  }
  const account = positionals[0] === undefined ? undefined : requireName(positionals[0], 'audit');
  if (values.limit !== undefined && !/^\d{1,4}$/.test(values.limit)) throw new UsageError('--limit takes a number of entries', 'audit');
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries({ account, since: values.since, until: values.until, action: values.action, limit: values.limit }))
    if (v !== undefined) query.set(k, v);
  const q = query.toString();
  const list = await client().json<AuditList>('GET', q ? `${ROUTES.audit}?${q}` : ROUTES.audit);
  if (values.json) {
    io.stdout(`${JSON.stringify(list, null, 2)}\n`);
    return EXIT.ok;
  }
  if (list.entries.length === 0) {
    io.stderr('tokend: no audit entries match\n');
    return EXIT.ok;
  }
  const rows = [
    ['TIME', 'ACCOUNT', 'ACTION', 'OUTCOME', 'PROGRAM', 'USER-AGENT', 'DETAIL'],
    ...list.entries.map((e) => [
      e.at,
      e.account ?? '-',
      e.action,
      e.code ? `${e.outcome} (${e.code})` : e.outcome,
      callerChain(e.caller),
      e.caller.user_agent ?? '-',
      detail(e),
    ]),
  ];
  io.stdout(formatTable(rows));
  if (list.next) io.stderr('tokend: more entries are older; narrow with --since/--until or raise --limit\n');
  return EXIT.ok;
};
