import type { AccountView } from '../../protocol/api.js';
import type { TokendPaths } from '../../protocol/paths.js';
import type { Runner } from '../service.js';
import type { ConfigRead } from './config-read.js';
import type { Probe } from './probe.js';
import type { ServiceState } from './service-state.js';

export type CheckStatus = 'ok' | 'info' | 'warn' | 'fail';

export interface Check {
  id: string;
  status: CheckStatus;
  message: string;
  /** A command to run (or, for docker, the config to add). */
  fix?: string;
}

/** What every family of checks may look at: the environment, and facts gathered once for all of them. */
export interface DoctorContext {
  env: NodeJS.ProcessEnv;
  platform: NodeJS.Platform;
  /** Runs git, systemctl, launchctl. */
  run: Runner;
  fetch: typeof fetch;
  paths: TokendPaths;
  /** The user's home folder (HOME, else the OS's idea of it). */
  home: string;
  /** GET /v1/health: is the daemon up (doctor never starts it)? */
  probe: Promise<Probe>;
  /** The systemd / launchd service, as `tokend service status` sees it. */
  service: Promise<ServiceState>;
  /** The daemon's accounts once it answered the probe: the list, or why it could not be read. */
  accounts: Promise<{ list?: AccountView[]; error?: string }>;
  /** config.json, read with the daemon's own schema. */
  config: Promise<ConfigRead>;
}

/** One family of checks (one module each); doctor.ts runs every family and lists their checks in order. */
export type CheckFamily = (ctx: DoctorContext) => Promise<Check[]>;

/** A duration the way the checks word it: seconds, minutes or hours. */
export function inSeconds(ms: number): string {
  const s = Math.round(ms / 1000);
  if (Math.abs(s) < 120) return `${s} s`;
  if (Math.abs(s) < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 3600)} h`;
}
