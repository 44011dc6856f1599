import fs from 'node:fs';
import { unsafeFolderOnTheWay } from '../protocol/local-trust.js';

/**
 * README, Files and places: every folder 0700 and every file 0600, owned by us.
 * The daemon refuses to start otherwise and names the offending path and the fix.
 */
export class UnsafePathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsafePathError';
  }
}

function checkOwnerAndMode(p: string, st: fs.Stats, kind: 'folder' | 'file'): void {
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new UnsafePathError(`${kind} ${p} is owned by uid ${st.uid}, not by you (uid ${uid}); tokend will not use it`);
  }
  const mode = st.mode & 0o777;
  if (mode & 0o077) {
    const want = kind === 'folder' ? '700' : '600';
    throw new UnsafePathError(
      `${kind} ${p} is accessible by group or others (mode ${mode.toString(8).padStart(3, '0')}); fix it with: chmod ${want} '${p}'`,
    );
  }
}

/** Create `dir` (and parents) as 0700 if missing, then check it is ours and private. */
export function ensurePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  checkOwnerAndMode(dir, fs.statSync(dir), 'folder');
}

/** If `file` exists, check it is ours and private (0600 or stricter). */
export function checkPrivateFile(file: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  checkOwnerAndMode(file, st, 'file');
}

/**
 * StrictModes (OpenSSH): `dir` and every folder above it up to `/` must be ours or root's
 * and not writable by group or others unless sticky, or another user could swap tokend's
 * folders (and socket) for their own. Checked before `dir` is made, so nothing is left there.
 */
export function checkFoldersAbove(dir: string): void {
  const unsafe = unsafeFolderOnTheWay(dir);
  if (unsafe) throw new UnsafePathError(`${unsafe.message}; tokend will not use it. Fix: ${unsafe.fix}`);
}
