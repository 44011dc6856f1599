import { parseOptions } from './args.js';
import { accountChecks } from './doctor/accounts.js';
import type { Check, CheckFamily } from './doctor/check.js';
import { clockChecks } from './doctor/clock.js';
import { configChecks } from './doctor/config.js';
import { databaseChecks } from './doctor/database.js';
import { doctorContext, type DoctorIo } from './doctor/context.js';
import { daemonChecks } from './doctor/daemon.js';
import { dockerChecks } from './doctor/docker.js';
import { gitChecks } from './doctor/git.js';
import { kubectlChecks } from './doctor/kubectl.js';
import { keyChecks } from './doctor/key.js';
import { logChecks } from './doctor/log.js';
import { permissionChecks } from './doctor/permissions.js';
import { serviceChecks } from './doctor/service.js';

// `tokend doctor [--json]`: what is wrong and how to fix it. Every check is one line with
// a status and, when something needs doing, the command that does it. It never starts
// the daemon and never sends a secret anywhere. Each family of checks is a module in
// doctor/; this file runs them and prints the report.

/** Every family of checks, in the order the report lists them. */
const FAMILIES: readonly CheckFamily[] = [
  daemonChecks,
  serviceChecks,
  logChecks,
  permissionChecks,
  configChecks,
  keyChecks,
  databaseChecks,
  accountChecks,
  clockChecks,
  gitChecks,
  dockerChecks,
  kubectlChecks,
];

export interface DoctorReport {
  /** No check failed. Warnings and infos do not make it false. */
  ok: boolean;
  checks: Check[];
}

const HELP = `usage: tokend doctor [--json]

Checks that tokend can work and says how to fix what is wrong:
  - the daemon answers on its socket (its pid and version), and the systemd / launchd
    service, when installed (doctor never starts the daemon itself)
  - folders are 0700 and files 0600 and yours (config, data and socket folders;
    config.json, key, tokend.db, tokend.log), and no folder above them is writable
    by another user (as the daemon checks at start)
  - the running daemon's core size limit is 0 (a core file would hold every token)
  - config.json is valid, the key is there and 32 bytes
  - in a fleet (TOKEND_DATABASE_URL): the database answers, its schema is one this
    tokend can use, and the key here is the fleet's
  - every account: active, expiring with nothing to refresh it, needing a login, or
    needing its issuer or client secret fixed (where a login cannot help)
  - whether git, docker and kubectl are set up to use tokend (optional), and whether
    a storage helper after tokend gets a copy of every token git is given
  - each provider's clock against ours (30 s: warning, 5 min: failure)

Each line is ok, info, warn or fail; a fix follows as a command to run.
  --json   print {"ok", "checks": [{"id", "status", "message", "fix"}]} on stdout
Exit status: 0 when nothing failed, 1 otherwise, 2 bad usage.
`;

/**
 * `tokend doctor [--json]`. Exit 0 when no check failed, 1 otherwise; a usage mistake
 * throws UsageError, which the CLI reports in one line with exit 2 (as every command).
 */
export async function runDoctor(args: string[], io: DoctorIo): Promise<number> {
  const { values } = parseOptions('doctor', args, { json: { type: 'boolean' } }, 0);
  if (values.help) {
    io.stdout(HELP);
    return 0;
  }
  const report = await diagnose(io);
  if (values.json) io.stdout(JSON.stringify(report, null, 2) + '\n');
  else io.stdout(formatReport(report));
  return report.ok ? 0 : 1;
}

/** Run every family of checks at once; never throws for what it finds, only reports it. */
async function diagnose(io: DoctorIo): Promise<DoctorReport> {
  const ctx = doctorContext(io);
  const checks = (await Promise.all(FAMILIES.map((family) => family(ctx)))).flat();
  return { ok: !checks.some((c) => c.status === 'fail'), checks };
}

function formatReport(report: DoctorReport): string {
  const lines = ['tokend doctor'];
  for (const c of report.checks) {
    lines.push(`${c.status.padEnd(5)} ${c.id}: ${c.message}`);
    if (c.fix) lines.push(`      fix: ${c.fix.split('\n').join('\n           ')}`);
  }
  const fails = report.checks.filter((c) => c.status === 'fail').length;
  const warns = report.checks.filter((c) => c.status === 'warn').length;
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? '' : 's'}`;
  lines.push(
    fails
      ? `\n${plural(fails, 'problem')}${warns ? `, ${plural(warns, 'warning')}` : ''}: run the fixes above, then tokend doctor again`
      : warns
        ? `\nno problems, ${plural(warns, 'warning')}`
        : '\nall is well',
  );
  return lines.join('\n') + '\n';
}
