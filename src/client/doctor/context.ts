import os from 'node:os';
import path from 'node:path';
import { TokendClient } from '../socket-client.js';
import { commandRunner, type Runner } from '../service.js';
import type { DoctorContext } from './check.js';
import { readConfig } from './config-read.js';
import { daemonAccounts, probeDaemon } from './probe.js';
import { serviceState } from './service-state.js';

export interface DoctorIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
  platform?: NodeJS.Platform;
  /** Runs git, systemctl, launchctl; tests may pass a fake. Default: execFile with `env`. */
  run?: Runner;
  /** Default: the global fetch. */
  fetch?: typeof fetch;
}

/**
 * The facts several families of checks need, each asked for once and all at once: the
 * daemon probe, the service state and config.json do not wait for each other.
 */
export function doctorContext(io: DoctorIo): DoctorContext {
  const env = io.env;
  const platform = io.platform ?? process.platform;
  // A check waits 10 s at most for git, systemctl or launchctl: doctor answers even when one hangs.
  const run = io.run ?? commandRunner(env, 10_000);
  const client = new TokendClient({ env, autostart: false, userAgent: 'tokend-cli/doctor' });
  const paths = client.paths;
  const probe = probeDaemon(paths.socket);
  return {
    env,
    platform,
    run,
    fetch: io.fetch ?? fetch,
    paths,
    home: path.resolve(env.HOME || os.homedir()),
    probe,
    service: serviceState(env, platform, run),
    accounts: probe.then((p) => (p.up ? daemonAccounts(client) : {})),
    config: readConfig(paths.configFile),
  };
}
