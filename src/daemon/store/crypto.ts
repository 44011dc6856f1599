import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { MASTER_KEY_BYTES as KEY_BYTES } from '../../protocol/paths.js';

// Sealed blob: version (1 byte) || IV (12) || GCM tag (16) || ciphertext.
// The version byte lets a later release change the scheme and still read old rows.
const FORMAT_VERSION = 1;
// 96-bit random IVs (NIST SP 800-38D §8.2.2): safe for far more than the 2^32 writes
// one key will ever see here (a few refreshes per account per hour).
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + IV_BYTES + TAG_BYTES;

/** Read the master key from `keyFile`, creating it (32 random bytes, mode 0600) on first use. */
export function loadOrCreateKey(keyFile: string): Buffer {
  try {
    return readKey(keyFile);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
  createKey(keyFile);
  // Read back through the same checks, whether this process or a racing one wrote it.
  return readKey(keyFile);
}

/** Encrypt `plaintext` with AES-256-GCM under a fresh IV, binding it to `aad` (the row and column it belongs to). */
export function seal(key: Buffer, plaintext: string, aad: string): Buffer {
  assertKey(key);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.of(FORMAT_VERSION), iv, cipher.getAuthTag(), ciphertext]);
}

/** Decrypt a blob made by `seal` with the same `aad`; throws an Error naming `aad` (never any plaintext) if it does not verify. */
export function open(key: Buffer, blob: Buffer, aad: string): string {
  assertKey(key);
  if (blob.length < HEADER_BYTES) {
    throw new Error(`cannot decrypt ${aad}: the stored value is too short to be sealed data`);
  }
  if (blob[0] !== FORMAT_VERSION) {
    throw new Error(`cannot decrypt ${aad}: unknown format version ${blob[0]} (written by a newer tokend?)`);
  }
  const iv = blob.subarray(1, 1 + IV_BYTES);
  const tag = blob.subarray(1 + IV_BYTES, HEADER_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.from(aad, 'utf8'));
  decipher.setAuthTag(tag);
  try {
    const plain = Buffer.concat([decipher.update(blob.subarray(HEADER_BYTES)), decipher.final()]);
    return plain.toString('utf8');
  } catch {
    // The only failure here is a tag mismatch; its cause carries nothing useful and the
    // partial output of update() must not escape, so neither goes into the error.
    throw new Error(
      `cannot decrypt ${aad}: wrong master key, or the value was altered or copied from another row`,
    );
  }
}

function assertKey(key: Buffer): void {
  if (key.length !== KEY_BYTES) throw new Error(`master key must be ${KEY_BYTES} bytes, got ${key.length}`);
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
      throw new Error(
        `key file ${keyFile} is readable or writable by group or others (mode ${mode}); run: chmod 600 ${keyFile}`,
      );
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
 * Write a new key without ever exposing a partial or readable one. The bytes go to a
 * private temp file (opened 'wx', 0600) that is then hard-linked into place: link(2)
 * fails with EEXIST if another process got there first, so two racing daemons agree on
 * one key, and a reader never sees a half-written file. Where hard links are not
 * supported we fall back to 'wx' on the key file itself.
 */
function createKey(keyFile: string): void {
  const dir = path.dirname(keyFile);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const key = randomBytes(KEY_BYTES);
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
