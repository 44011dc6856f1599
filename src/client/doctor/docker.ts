import fs from 'node:fs';
import path from 'node:path';
import type { Check, DoctorContext } from './check.js';
import { onPath, pathFix } from './shell.js';

/** Does docker use tokend for some registry, and can it run docker-credential-tokend? (optional) */
export async function dockerChecks(ctx: DoctorContext): Promise<Check[]> {
  const { env, home } = ctx;
  const file = path.join(env.DOCKER_CONFIG ? path.resolve(env.DOCKER_CONFIG) : path.join(home, '.docker'), 'config.json');
  const snippet = `add to ${file}: {"credHelpers": {"REGISTRY-HOST": "tokend"}}   # one entry per registry an account serves`;
  let cfg: { credsStore?: unknown; credHelpers?: unknown };
  try {
    cfg = JSON.parse(fs.readFileSync(file, 'utf8')) as typeof cfg;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return [{ id: 'docker', status: 'info', message: `docker is not set up to use tokend (no ${file}; optional)`, fix: snippet }];
    }
    return [{ id: 'docker', status: 'warn', message: `cannot read ${file}: ${(err as Error).message}` }];
  }
  const registries: string[] = [];
  if (cfg && typeof cfg.credHelpers === 'object' && cfg.credHelpers !== null) {
    for (const [reg, helper] of Object.entries(cfg.credHelpers as Record<string, unknown>)) if (helper === 'tokend') registries.push(reg);
  }
  const store = cfg?.credsStore === 'tokend';
  if (!store && registries.length === 0) {
    return [{ id: 'docker', status: 'info', message: `docker is not set up to use tokend (${file}; optional)`, fix: snippet }];
  }
  const what = store ? 'every registry (credsStore)' : `${registries.join(', ')} (credHelpers)`;
  if (!onPath('docker-credential-tokend', env)) {
    return [
      {
        id: 'docker',
        status: 'warn',
        message: `docker is set up to use tokend for ${what}, but docker-credential-tokend is not on PATH, so docker cannot run it`,
        fix: pathFix(),
      },
    ];
  }
  if (store) {
    // tokend keeps no passwords: `docker login` to a registry no account serves fails (docs/helpers.md).
    return [
      {
        id: 'docker',
        status: 'warn',
        message: `docker uses tokend for every registry (credsStore), so \`docker login\` to a registry no tokend account serves has nowhere to keep its password and fails`,
        fix: `in ${file}, replace "credsStore": "tokend" with {"credHelpers": {"REGISTRY-HOST": "tokend"}} for the registries your accounts serve`,
      },
    ];
  }
  return [{ id: 'docker', status: 'ok', message: `docker uses tokend for ${what}` }];
}
