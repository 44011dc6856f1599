import path from 'node:path';
import type { TokendPaths } from '../../protocol/paths.js';
import { LAUNCHD_LABEL, runService, type Runner } from '../service.js';

/** The systemd / launchd service as `tokend service status --json` reports it. */
export type ServiceState =
  | {
      kind: 'report';
      manager: 'systemd' | 'launchd';
      installed: boolean;
      partial: boolean;
      upToDate: boolean;
      managerAvailable: boolean;
      socket: string;
      running?: boolean;
      detail: string;
    }
  | { kind: 'none'; reason: string };

/** `tokend service status --json`, reused as is: the unit paths and systemctl/launchctl logic live there. */
export async function serviceState(env: NodeJS.ProcessEnv, platform: NodeJS.Platform, run: Runner): Promise<ServiceState> {
  let out = '';
  let err = '';
  try {
    await runService(['status', '--json'], { stdout: (s) => (out += s), stderr: (s) => (err += s), env, platform, run });
    const r = JSON.parse(out) as {
      ok?: boolean;
      error?: string;
      manager?: 'systemd' | 'launchd';
      installed?: boolean;
      up_to_date?: boolean;
      files?: { path: string; state: string }[];
      manager_available?: boolean;
      socket?: string;
      running?: boolean;
      loaded?: boolean;
      pid?: number;
      units?: Record<string, { enabled: string; active: string }>;
    };
    if (!r.ok || !r.manager) return { kind: 'none', reason: r.error ?? (err.trim() || 'no service files for this platform') };
    const files = r.files ?? [];
    let detail: string;
    if (r.units)
      detail = Object.entries(r.units)
        .map(([u, s]) => `${u} ${s.enabled}, ${s.active}`)
        .join('; ');
    else if (r.manager === 'launchd')
      detail = r.loaded
        ? `${LAUNCHD_LABEL} loaded${r.running ? `, running${r.pid ? ` (pid ${r.pid})` : ''}` : ''}`
        : `${LAUNCHD_LABEL} not loaded`;
    else detail = '';
    return {
      kind: 'report',
      manager: r.manager,
      installed: r.installed === true,
      partial: r.installed !== true && files.some((f) => f.state !== 'missing'),
      upToDate: r.up_to_date === true,
      managerAvailable: r.manager_available === true,
      socket: r.socket ?? '',
      running: r.running,
      detail,
    };
  } catch (e) {
    return { kind: 'none', reason: (e as Error).message };
  }
}

/** The service is installed and listens where clients here look. */
export function serviceRunsHere(service: ServiceState, paths: TokendPaths): boolean {
  return service.kind === 'report' && service.installed && path.resolve(service.socket) === path.resolve(paths.socket);
}
