import fs from 'node:fs';
import path from 'node:path';
import { CORE_LIMIT_WARNING, NO_CALLER_ADDON_WARNING } from '../../protocol/local-trust.js';
import { parseDaemonOwner, type TokendPaths } from '../../protocol/paths.js';
import { LAUNCHD_LABEL, packageRoot } from '../service.js';
import type { Check, DoctorContext } from './check.js';
import { serviceRunsHere, type ServiceState } from './service-state.js';
import { shq, uid } from './shell.js';

function clientVersion(): string | undefined {
  try {
    return (JSON.parse(fs.readFileSync(path.join(packageRoot(), 'package.json'), 'utf8')) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

/** The daemon's pid file: which pid holds the data folder, whether it lives, and its socket. */
function lockOwner(paths: TokendPaths): { pid: number; socket: string; alive: boolean } | undefined {
  let owner: ReturnType<typeof parseDaemonOwner>;
  try {
    owner = parseDaemonOwner(fs.readFileSync(paths.pidFile, 'utf8'));
  } catch {
    return undefined;
  }
  if (!owner) return undefined;
  let alive = false;
  try {
    process.kill(owner.pid, 0);
    alive = true;
  } catch (err) {
    alive = (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  return { pid: owner.pid, socket: owner.socket, alive };
}

/** Is the daemon up, and the version this command expects? If not, why, and how to start it. */
export async function daemonChecks(ctx: DoctorContext): Promise<Check[]> {
  const [probe, service] = await Promise.all([ctx.probe, ctx.service]);
  const { paths, platform } = ctx;
  if (probe.up) {
    const h = probe.health;
    const checks: Check[] = [
      { id: 'daemon', status: 'ok', message: `running: pid ${h.pid}, version ${h.version}, up ${h.uptime_s} s, socket ${paths.socket}` },
    ];
    // What the daemon sees wrong with its own files (a deleted database, a changed key file,
    // a full disk): each sentence carries its fix.
    const restart = serviceRunsHere(service, paths)
      ? restartCommand(service, platform)
      : `kill ${h.pid}   # clients start it again on demand`;
    for (const warning of h.warnings ?? []) {
      // A core file would hold every token and the master key: restarted the usual ways, its limit is 0.
      if (warning.startsWith(CORE_LIMIT_WARNING)) checks.push({ id: 'core-limit', status: 'fail', message: warning, fix: restart });
      // It runs as before, only blind to who calls it (docs/security.md): a warning, not a failure.
      else if (warning.startsWith(NO_CALLER_ADDON_WARNING)) checks.push({ id: 'caller-addon', status: 'warn', message: warning });
      else checks.push({ id: 'daemon-files', status: 'fail', message: warning });
    }
    const mine = clientVersion();
    if (mine && h.version !== mine) {
      checks.push({
        id: 'version',
        status: 'warn',
        message: `the daemon runs tokend ${h.version}, this command is ${mine}: restart the daemon to run the installed version`,
        fix: serviceRunsHere(service, paths)
          ? restartCommand(service, platform)
          : `kill ${h.pid}   # clients start the new version on demand`,
      });
    }
    return checks;
  }
  const owner = lockOwner(paths);
  const live = owner?.alive ? owner : undefined;
  const installed = service.kind === 'report' && serviceRunsHere(service, paths);
  const kind = service.kind === 'report' ? service.manager : undefined;
  const units = kind === 'systemd' ? 'the systemd user units are' : 'the launchd agent is';
  let message: string;
  let fix: string;
  if (probe.reason === 'timeout') {
    message = `tokend does not answer: ${probe.detail}${live ? ` (pid ${live.pid} holds its data folder: stopped or wedged)` : ''}`;
    fix = installed ? restartCommand(service, platform) : live ? `kill ${live.pid}; tokend daemon` : 'tokend daemon';
  } else if (live?.socket && path.resolve(live.socket) !== path.resolve(paths.socket)) {
    message = `tokend runs (pid ${live.pid}) but listens on ${live.socket}, not on ${paths.socket} where clients here look (started with --socket or another TOKEND_SOCKET?)`;
    fix = `export TOKEND_SOCKET='${shq(live.socket)}'   # or restart it: kill ${live.pid}; tokend daemon`;
  } else {
    message = `tokend is ${probe.reason === 'error' ? 'not reachable' : 'not running'}: ${probe.detail}`;
    if (installed) {
      fix = kind === 'systemd' ? 'systemctl --user start tokend.socket' : `launchctl kickstart gui/${uid()}/${LAUNCHD_LABEL}`;
    } else if (service.kind === 'report' && service.managerAvailable) {
      fix = 'tokend service install   # or, in the foreground: tokend daemon';
    } else {
      fix = 'tokend daemon';
    }
  }
  if (service.kind !== 'report') message += `; no service files for this platform`;
  else if (installed) message += `; ${units} installed`;
  else if (service.managerAvailable) message += `; ${units} not installed`;
  else message += `; ${service.manager === 'systemd' ? 'no systemd user manager' : 'no launchd session'} here to run it as a service`;
  return [{ id: 'daemon', status: 'fail', message, fix }];
}

function restartCommand(service: ServiceState, platform: NodeJS.Platform): string {
  if (service.kind === 'report' && service.manager === 'launchd') return `launchctl kickstart -k gui/${uid()}/${LAUNCHD_LABEL}`;
  if (service.kind === 'report' && service.manager === 'systemd') return 'systemctl --user restart tokend.service';
  return platform === 'darwin' ? `launchctl kickstart -k gui/${uid()}/${LAUNCHD_LABEL}` : 'systemctl --user restart tokend.service';
}
