import path from 'node:path';
import { LAUNCHD_LABEL } from '../service.js';
import type { TokendPaths } from '../../protocol/paths.js';
import type { Check, DoctorContext } from './check.js';
import type { ServiceState } from './service-state.js';

/** The systemd user units or launchd agent: installed, current, listening where clients look? */
export async function serviceChecks(ctx: DoctorContext): Promise<Check[]> {
  return [serviceCheck(await ctx.service, ctx.paths)];
}

function serviceCheck(service: ServiceState, paths: TokendPaths): Check {
  if (service.kind === 'none') return { id: 'service', status: 'info', message: `not available: ${service.reason}` };
  const what = service.manager === 'systemd' ? 'systemd user units (tokend.socket, tokend.service)' : `launchd agent ${LAUNCHD_LABEL}`;
  if (!service.installed && !service.partial) {
    if (!service.managerAvailable) {
      const none = service.manager === 'systemd' ? 'no systemd user manager here (systemctl --user)' : 'no launchd GUI session here';
      return {
        id: 'service',
        status: 'info',
        message: `not installed: ${none}; run \`tokend daemon\` under your own supervisor, or let clients start it on demand`,
      };
    }
    return {
      id: 'service',
      status: 'info',
      message: `the ${what} are not installed (optional: clients start the daemon on demand)`,
      fix: 'tokend service install',
    };
  }
  if (service.partial || !service.upToDate) {
    return {
      id: 'service',
      status: 'warn',
      message: `the ${what} are ${service.partial ? 'partly installed' : 'installed but differ from this install (other node or tokend path)'}`,
      fix: 'tokend service install',
    };
  }
  if (path.resolve(service.socket) !== path.resolve(paths.socket)) {
    return {
      id: 'service',
      status: 'warn',
      message: `the service listens on ${service.socket}, but clients here look for the daemon at ${paths.socket} (TOKEND_HOME or TOKEND_SOCKET is set)`,
      fix: 'unset TOKEND_HOME TOKEND_SOCKET',
    };
  }
  if (service.managerAvailable && service.manager === 'systemd' && !/tokend\.socket enabled, active/.test(service.detail)) {
    return {
      id: 'service',
      status: 'warn',
      message: `the ${what} are installed but the socket is not listening: ${service.detail}`,
      fix: 'tokend service install',
    };
  }
  return { id: 'service', status: 'ok', message: `the ${what} are installed${service.detail ? `: ${service.detail}` : ''}` };
}
