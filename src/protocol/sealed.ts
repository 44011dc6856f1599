/**
 * Sealed values: how the daemon's stores encrypt every token and secret at rest (AES-256-GCM
 * under the master key, a fresh IV per write, the row and column as associated data). Shared
 * by the daemon and `tokend doctor`, which opens a fleet's sealed check value to tell whether
 * its key is the fleet's. Node built-ins only.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { MASTER_KEY_BYTES as KEY_BYTES } from './paths.js';

// Sealed blob: version (1 byte) || IV (12) || GCM tag (16) || ciphertext.
// The version byte lets a later release change the scheme and still read old rows.
const FORMAT_VERSION = 1;
// 96-bit random IVs (NIST SP 800-38D §8.2.2): safe for far more than the 2^32 writes
// one key will ever see here (a few refreshes per account per hour).
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + IV_BYTES + TAG_BYTES;

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
    throw new Error(`cannot decrypt ${aad}: wrong master key, or the value was altered or copied from another row`);
  }
}

function assertKey(key: Buffer): void {
  if (key.length !== KEY_BYTES) throw new Error(`master key must be ${KEY_BYTES} bytes, got ${key.length}`);
}
