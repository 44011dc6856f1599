import fs from 'node:fs';
import path from 'node:path';
import type { Check, DoctorContext } from './check.js';
import { onPath, pathFix } from './shell.js';

/** Does a kubeconfig user run tokend as its exec plugin, and is tokend there to run? (optional) */
export async function kubectlChecks(ctx: DoctorContext): Promise<Check[]> {
  const { env, home } = ctx;
  const files = env.KUBECONFIG ? env.KUBECONFIG.split(path.delimiter).filter(Boolean) : [path.join(home, '.kube', 'config')];
  const fix =
    'kubectl config set-credentials tokend-NAME --exec-api-version=client.authentication.k8s.io/v1 --exec-command=tokend --exec-arg=kubectl-credential --exec-arg=NAME --exec-interactive-mode=Never';
  const found: { file: string; user?: string; command: string }[] = [];
  let any = false;
  for (const file of files) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    any = true;
    // A kubeconfig is YAML (or JSON); no parser in the client, so look for exec `command:`
    // lines that run tokend and name the user entry above each.
    const lines = text.split('\n');
    lines.forEach((line, i) => {
      const m = /^\s*"?command"?\s*:\s*["']?([^"'#,\n]*?)["']?\s*,?\s*(#.*)?$/.exec(line);
      if (!m || !/tokend/.test(m[1])) return;
      let user: string | undefined;
      for (let j = i - 1; j >= 0; j--) {
        const n = /^\s*-\s*"?name"?\s*:\s*["']?([^"'\n,]+)["']?/.exec(lines[j]);
        if (n) {
          user = n[1].trim();
          break;
        }
      }
      found.push({ file, user, command: m[1].trim() });
    });
  }
  if (found.length === 0) {
    return [
      {
        id: 'kubectl',
        status: 'info',
        message: any
          ? `no kubeconfig user runs tokend (${files.join(', ')}; optional)`
          : `kubectl is not set up to use tokend (no ${files.join(', ')}; optional)`,
        fix,
      },
    ];
  }
  const shown = found.map((f) => `${f.user ? `user ${f.user}` : 'a user'} in ${f.file}`).join(', ');
  for (const f of found) {
    const bin = f.command.split(/\s+/)[0];
    if (path.isAbsolute(bin) ? !fs.existsSync(bin) : !onPath(bin, env)) {
      return [
        {
          id: 'kubectl',
          status: 'warn',
          message: `kubectl runs "${f.command}" for ${f.user ? `user ${f.user}` : 'a user'} in ${f.file}, but ${bin} is not ${path.isAbsolute(bin) ? 'there' : 'on PATH'}`,
          fix: pathFix(),
        },
      ];
    }
  }
  return [{ id: 'kubectl', status: 'ok', message: `kubectl uses tokend: ${shown}` }];
}
