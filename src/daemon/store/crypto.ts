import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MASTER_KEY_BYTES as KEY_BYTES } from '../../protocol/paths.js';

// The sealing scheme is shared with `tokend doctor`, which checks a fleet's key with it.
export { open, seal } from '../../protocol/sealed.js';

/** Read the master key from `keyFile`, creating it (32 random bytes, mode 0600) on first use. */
export function loadOrCreateKey(keyFile: string): Buffer {
  try {
    return readKey(keyFile);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  writeKeyFile(keyFile, randomBytes(KEY_BYTES));
  // Read back through the same checks, whether this process or a racing one wrote it.
  return readKey(keyFile);
}

/** Read the master key from `keyFile` with the same checks; a missing file throws ENOENT (a fleet daemon does not invent a key). */
export function loadKey(keyFile: string): Buffer {
  return readKey(keyFile);
}

/** Whether an error from {@link loadKey} says the key file does not exist. */
export function isMissingKey(err: unknown): boolean {
  return errnoCode(err) === 'ENOENT';
}

function readKey(keyFile: string): Buffer {
  const fd = fs.openSync(keyFile, 'r');
  try {
    // fstat the descriptor we read from, so the checks and the read see the same file.
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new Error(`key file ${keyFile} is not a regular file; refusing to use it`);
    const uid = process.getuid?.();
    if (uid !== undefined && st.uid !== uid) {
      throw new Error(`key file ${keyFile} is owned by uid ${st.uid}, not by this user (uid ${uid}); refusing to use it`);
    }
    if ((st.mode & 0o077) !== 0) {
      const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
      throw new Error(`key file ${keyFile} is readable or writable by group or others (mode ${mode}); run: chmod 600 ${keyFile}`);
    }
    if (st.size !== KEY_BYTES) {
      throw new Error(
        `key file ${keyFile} is ${st.size} bytes, expected ${KEY_BYTES}: it is not a tokend key or it is damaged; refusing to use it`,
      );
    }
    const key = Buffer.alloc(KEY_BYTES);
    let got = 0;
    while (got < KEY_BYTES) {
      const n = fs.readSync(fd, key, got, KEY_BYTES - got, got);
      if (n === 0) throw new Error(`key file ${keyFile} shrank while being read; refusing to use it`);
      got += n;
    }
    return key;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Write `key` as the key file without ever exposing a partial or readable one, unless a
 * key file is already there (then that one stays: read it back to know which won). The
 * bytes go to a private temp file (opened 'wx', 0600) that is then hard-linked into place:
 * link(2) fails with EEXIST if another process got there first, so two racing daemons
 * agree on one key, and a reader never sees a half-written file. Where hard links are not
 * supported we fall back to 'wx' on the key file itself.
 */
export function writeKeyFile(keyFile: string, key: Buffer): void {
  const dir = path.dirname(keyFile);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const tmp = `${keyFile}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeExclusive(tmp, key);
  try {
    fs.linkSync(tmp, keyFile);
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'EEXIST') return; // someone else won the race; use theirs
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP' && code !== 'ENOSYS') throw err;
    try {
      writeExclusive(keyFile, key);
    } catch (err2) {
      if (errnoCode(err2) !== 'EEXIST') throw err2;
    }
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  fsyncDir(dir);
}

function writeExclusive(file: string, data: Buffer): void {
  const fd = fs.openSync(file, 'wx', 0o600);
  try {
    fs.writeFileSync(fd, data);
    // Losing the key loses every stored secret: make it durable before anyone relies on it.
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Remove the key file (its key now lives elsewhere), durably. */
export function removeKeyFile(keyFile: string): void {
  fs.rmSync(keyFile, { force: true });
  fsyncDir(path.dirname(keyFile));
}

function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    // Not every platform can fsync a directory; the file itself is already synced.
  }
}

function errnoCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}
