/**
 * `tokend approvals [--json]`, `tokend approvals allow ID [--for 8h | --always]`,
 * `tokend approvals deny ID`: the requests of `ask` accounts that wait for the user, and the
 * user's decision (docs/security.md).
 */
import type { ApprovalDecided, ApprovalDecision, ApprovalList } from '../protocol/api.js';
import { ROUTES } from '../protocol/routes.js';
import { parseOptions } from './args.js';
import { callerChain } from './audit-command.js';
import { EXIT, UsageError, formatTable, type Command } from './io.js';
import { durationOption, relative } from './when.js';

export const APPROVALS_HELP = `usage: tokend approvals [--json]
       tokend approvals allow ID [--for DURATION | --always] [--json]
       tokend approvals deny ID [--json]

Lists the token requests of accounts with access "ask" that wait for you: which program
asks (its script or executable, then its parents, nearest first, and its pid, as the daemon
verified them from the kernel), for which account, and until when it waits. Unanswered,
a request is denied when the account's ask_timeout_s (30 s) runs out.

  allow ID         let this request have the token (and any other of the same process
                   waiting for the same account)
  --for DURATION   allow this process (its pid and start time: a later process given the
                   same pid is asked again) for DURATION: 90s, 30m, 8h, 2d
  --always         allow this program from now on: adds a rule for its executable (or its
                   script with its interpreter, or its listener app key) to the account's
                   access (tokend access NAME shows it)
  deny ID          refuse it: the program gets 403 caller_not_allowed
  --json           print {"approvals": [{"id", "account", "caller", "tty", "expires_at"}]}
                   (allow, deny: the decided approval with "decision")

Any program of your user can decide an approval, as it can manage accounts: "ask" stops an
unattended program from taking a token, not someone who drives your own tools.

Exit status: 0 ok, 1 error (no such approval: it was decided, timed out, or its caller
went away), 2 bad usage.
`;

export const approvalsCommand: Command = async (args, io, client) => {
  const { values, positionals } = parseOptions(
    'approvals',
    args,
    { for: { type: 'string' }, always: { type: 'boolean' }, json: { type: 'boolean' } },
    2,
  );
  if (values.help) {
    io.stdout(APPROVALS_HELP);
    return EXIT.ok;
  }
  const [action, id] = positionals;
  if (action === undefined) {
    if (values.for !== undefined || values.always) throw new UsageError('--for and --always go with `allow ID`', 'approvals');
    return list(await client().json<ApprovalList>('GET', ROUTES.approvals), Boolean(values.json), io);
  }
  if (action !== 'allow' && action !== 'deny') throw new UsageError(`"${action.slice(0, 40)}": say allow ID or deny ID`, 'approvals');
  if (id === undefined || !/^[0-9a-z]{1,64}$/.test(id))
    throw new UsageError(`${action} needs the approval's ID (tokend approvals lists them)`, 'approvals');
  if (action === 'deny' && (values.for !== undefined || values.always))
    throw new UsageError('--for and --always go with allow', 'approvals');
  if (values.for !== undefined && values.always) throw new UsageError('give --for or --always, not both', 'approvals');
  const body: ApprovalDecision = { decision: action };
  if (values.for !== undefined) body.for_s = durationOption(values.for, '--for', 'approvals');
  if (values.always) body.always = true;
  const done = await client().json<ApprovalDecided>('POST', ROUTES.approval(id), body);
  if (values.json) io.stdout(`${JSON.stringify(done, null, 2)}\n`);
  const how = done.always ? ' from now on (a rule was added)' : done.for_s !== undefined ? ` for ${values.for}` : '';
  io.stderr(`tokend: ${action === 'allow' ? 'allowed' : 'denied'} ${callerChain(done.caller)} for "${done.account}"${how}\n`);
  return EXIT.ok;
};

function list(l: ApprovalList, json: boolean, io: Parameters<Command>[1]): number {
  if (json) {
    io.stdout(`${JSON.stringify(l, null, 2)}\n`);
    return EXIT.ok;
  }
  if (l.approvals.length === 0) {
    io.stderr('tokend: no request waits for approval\n');
    return EXIT.ok;
  }
  const now = Date.now();
  const rows = [
    ['ID', 'ACCOUNT', 'PROGRAM', 'PATH', 'UNIT', 'TTY', 'DENIED'],
    ...l.approvals.map((a) => [
      a.id,
      a.account,
      callerChain(a.caller),
      a.caller.script ?? a.caller.exe ?? '-',
      a.caller.unit ?? '-',
      a.tty ? 'yes' : 'no',
      relative(a.expires_at, now),
    ]),
  ];
  io.stdout(formatTable(rows));
  io.stderr('tokend: tokend approvals allow ID [--for 8h | --always], or tokend approvals deny ID\n');
  return EXIT.ok;
}
