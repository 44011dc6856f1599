import type { AccountView } from '../../protocol/api.js';
import type { Check, DoctorContext } from './check.js';
import type { ConfigRead } from './config-read.js';
import { shq } from './shell.js';

/** config.json: there, valid for the daemon, and listing the accounts the running daemon serves. */
export async function configChecks(ctx: DoctorContext): Promise<Check[]> {
  const [config, probe, accounts] = await Promise.all([ctx.config, ctx.probe, ctx.accounts]);
  return [configCheck(config, ctx.paths.configFile, probe.up ? { pid: probe.health.pid, accounts: accounts.list } : undefined)];
}

function configCheck(config: ConfigRead, file: string, daemon: { pid: number; accounts?: AccountView[] } | undefined): Check {
  const edit = `\${EDITOR:-vi} '${shq(file)}'`;
  switch (config.state) {
    case 'missing':
      return daemon
        ? {
            id: 'config',
            status: 'warn',
            message: `${file} does not exist although the daemon runs: it reads another folder than this shell (TOKEND_HOME, TOKEND_CONFIG_DIR?), or the file was deleted (the daemon writes it again on the next change)`,
          }
        : { id: 'config', status: 'info', message: `no ${file} yet (the daemon creates it at first start)` };
    case 'unreadable':
      return { id: 'config', status: 'fail', message: `cannot read ${file}: ${config.error}` };
    case 'invalid':
      return {
        id: 'config',
        status: 'fail',
        message: `${file} ${config.error}${daemon ? '; the running daemon keeps the config it loaded, but will not start again with this file' : ''}`,
        fix: edit,
      };
    case 'ok': {
      const n = config.accounts.size;
      if (daemon?.accounts) {
        const inFile = [...config.accounts.keys()].sort().join(',');
        const inDaemon = daemon.accounts
          .map((a) => a.name)
          .sort()
          .join(',');
        if (inFile !== inDaemon) {
          return {
            id: 'config',
            status: 'warn',
            message: `${file} is valid but lists other accounts than the daemon serves (edited by hand since it started?): reload it`,
            fix: `kill -HUP ${daemon.pid}`,
          };
        }
      }
      return { id: 'config', status: 'ok', message: `${file} is valid (${n} account${n === 1 ? '' : 's'})` };
    }
  }
}
