// Small shell-facing pieces the checks share: quoting in suggested commands, PATH lookup.
import fs from 'node:fs';
import path from 'node:path';
import { packageRoot } from '../service.js';

/** `p` quoted for use inside single quotes in a suggested shell command. */
export function shq(p: string): string {
  return p.replace(/'/g, `'\\''`);
}

/** Our uid (0 where the platform has none): file owners are compared with it. */
export function uid(): number {
  return typeof process.getuid === 'function' ? process.getuid() : 0;
}

/** Is `name` an executable in one of PATH's folders? */
export function onPath(name: string, env: NodeJS.ProcessEnv): boolean {
  for (const dir of (env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue;
    try {
      fs.accessSync(path.join(dir, name), fs.constants.X_OK);
      return true;
    } catch {
      /* next */
    }
  }
  return false;
}

/** The folder with tokend's own executables (bin/), for `PATH` fixes. */
export function binDir(): string {
  return path.join(packageRoot(), 'bin');
}

/** The fix for a tool that cannot find one of tokend's executables on PATH. */
export function pathFix(): string {
  return `export PATH="${binDir()}:$PATH"   # or: npm link (in ${packageRoot()})`;
}
