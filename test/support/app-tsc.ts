import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from './daemon.js';

const TSC = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

/**
 * Type-check `files` of the app project `project` as an app's own tsc would: strict,
 * NodeNext, the app's own @types/node (this checkout's stands in for it), and `options`
 * on top. Resolves with tsc's output: '' when the app type-checks.
 */
export async function typecheckApp(project: string, files: string[], options: Record<string, unknown>): Promise<string> {
  const compilerOptions = {
    target: 'ES2022',
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    typeRoots: [path.join(ROOT, 'node_modules', '@types')],
    types: ['node'],
    ...options,
  };
  fs.writeFileSync(path.join(project, 'tsconfig.json'), JSON.stringify({ compilerOptions, files }));
  const tsc = await promisify(execFile)(process.execPath, [TSC, '-p', project], { cwd: project }).catch(
    (err: { stdout: string; stderr: string }) => err,
  );
  return `${tsc.stdout}${tsc.stderr}`;
}
