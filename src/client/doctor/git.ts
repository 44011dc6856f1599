import fs from 'node:fs';
import path from 'node:path';
import type { Check, DoctorContext } from './check.js';
import { binDir, onPath, shq } from './shell.js';

/** Is git set up to ask tokend first, and can it run the helper? (optional) */
export async function gitChecks(ctx: DoctorContext): Promise<Check[]> {
  const { env, run } = ctx;
  // --get-regexp covers credential.helper and every credential.<url>.helper.
  const res = await run('git', ['config', '--global', '--get-regexp', '^credential\\..*helper$']);
  if (res.code === 127) return [{ id: 'git', status: 'info', message: 'git is not installed' }];
  if (res.code !== 0 && res.code !== 1) {
    return [{ id: 'git', status: 'warn', message: `git config --global failed (exit ${res.code}): ${res.stderr.trim().split('\n')[0] ?? ''}` }];
  }
  // gitcredentials(7): an empty value resets the list of helpers of that key.
  const byKey = new Map<string, string[]>();
  for (const line of res.stdout.split('\n')) {
    if (!line.trim()) continue;
    const sp = line.indexOf(' ');
    const key = sp < 0 ? line : line.slice(0, sp);
    const value = sp < 0 ? '' : line.slice(sp + 1);
    if (value === '') byKey.set(key, []);
    else byKey.set(key, [...(byKey.get(key) ?? []), value]);
  }
  const uses: { key: string; value: string }[] = [];
  for (const [key, values] of byKey) for (const value of values) if (/tokend/.test(value)) uses.push({ key, value });
  if (uses.length === 0) {
    return [{ id: 'git', status: 'info', message: 'git is not set up to use tokend (optional)', fix: 'tokend setup git --global' }];
  }
  const shown = uses.map((u) => `${u.key}=${u.value}`).join(', ');
  // git asks the helpers in order and stops at the first that answers: one before
  // tokend (store, cache, a keychain) serves its own, possibly stale, credentials.
  const plain = byKey.get('credential.helper') ?? [];
  const at = plain.findIndex((v) => /tokend/.test(v));
  const before = at > 0 ? plain.slice(0, at) : [];
  for (const u of uses) {
    // A bare name runs git-credential-NAME from PATH; an absolute path must exist.
    const first = u.value.trim().split(/\s+/)[0];
    if (u.value.startsWith('!')) continue;
    if (path.isAbsolute(first)) {
      if (!fs.existsSync(first)) {
        return [{ id: 'git', status: 'warn', message: `git runs ${first} (${u.key}), which does not exist`, fix: `git config --global --replace-all ${u.key} '${shq(path.join(binDir(), 'git-credential-tokend'))}'` }];
      }
    } else if (!onPath(`git-credential-${first}`, env)) {
      return [
        {
          id: 'git',
          status: 'warn',
          message: `git is set up to use tokend (${u.key}=${u.value}) but git-credential-${first} is not on PATH, so git cannot run it`,
          fix: `git config --global --replace-all ${u.key} '${shq(path.join(binDir(), 'git-credential-tokend'))}'   # or put ${binDir()} on PATH (npm link)`,
        },
      ];
    }
  }
  if (before.length) {
    return [
      {
        id: 'git',
        status: 'warn',
        message: `git uses tokend (${shown}) but asks ${before.join(', ')} first, which may answer with other credentials`,
        fix: 'tokend setup git --global',
      },
    ];
  }
  return [{ id: 'git', status: 'ok', message: `git uses tokend: ${shown}` }];
}
