/**
 * The master key's two places (`settings.key_store`): the 0600 key file, the default, or the
 * OS keyring. The daemon reads it once, at start, from the place the settings name, and
 * keeps it in memory; `tokend key move` (POST /v1/key/move) moves it while the daemon runs.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import type { KeyStore, KeyView } from '../../protocol/api.js';
import { MASTER_KEY_BYTES, type TokendPaths } from '../../protocol/paths.js';
import { isMissingKey, loadKey, loadOrCreateKey, removeKeyFile, writeKeyFile } from './crypto.js';
import { keyringEntry, KeyringError, type KeyringEntry } from './keyring.js';

/** The key this daemon runs with, and where it read it from. */
export interface MasterKey {
  readonly bytes: Buffer;
  kind: KeyStore;
  where: string;
}

/** Read the master key from its place, creating it there on a first start; throws with what to do. */
export async function loadMasterKey(kind: KeyStore, paths: Pick<TokendPaths, 'dataDir' | 'keyFile' | 'dbFile'>): Promise<MasterKey> {
  if (kind === 'file') return { bytes: loadOrCreateKey(paths.keyFile), kind, where: paths.keyFile };
  const entry = await keyringEntry(paths.dataDir);
  const found = await entry.read();
  if (found) return { bytes: found, kind, where: entry.where };
  // Never invent a key beside secrets sealed with another one: they would not open again.
  if (fs.existsSync(paths.keyFile)) {
    throw new KeyringError(
      `settings.key_store is "keyring", but ${entry.where} holds no tokend key while ${paths.keyFile} does: set key_store back to "file", start tokend, and run \`tokend key move --to keyring\` (it moves the key and sets key_store)`,
    );
  }
  if (sizeOf(paths.dbFile) > 0) {
    throw new KeyringError(
      `settings.key_store is "keyring", but ${entry.where} holds no tokend key while ${paths.dbFile} exists: its secrets open only with the key they were sealed with; put that key back (in the keyring, or as ${paths.keyFile} with key_store "file")`,
    );
  }
  const bytes = randomBytes(MASTER_KEY_BYTES);
  await writeVerified(entry, bytes);
  return { bytes, kind, where: entry.where };
}

/**
 * Move the running daemon's key to `to`: write it there, read it back, record the new place
 * (`saveKind`, config.json's key_store), and only then remove it from the old place. A
 * crash in between leaves two copies of one key, never none; so does a removal that fails
 * (its error is the answer, and the key already counts as moved). Refuses (KeyMoveConflict) to
 * overwrite a different key already at the destination.
 */
export async function moveMasterKey(
  key: MasterKey,
  to: KeyStore,
  paths: Pick<TokendPaths, 'dataDir' | 'keyFile'>,
  saveKind: (kind: KeyStore) => Promise<void>,
): Promise<KeyView> {
  if (key.kind === to) return { key_store: to, where: key.where, moved: false };
  if (to === 'keyring') {
    const entry = await keyringEntry(paths.dataDir);
    const there = await entry.read();
    if (there && !there.equals(key.bytes)) {
      throw new KeyMoveConflict(
        `${entry.where} already holds a different tokend key (an older install's?); tokend does not overwrite a key: remove that entry first if it is not needed`,
      );
    }
    if (!there) await writeVerified(entry, key.bytes);
    await saveKind('keyring');
    Object.assign(key, { kind: 'keyring', where: entry.where });
    removeKeyFile(paths.keyFile);
  } else {
    const entry = await keyringEntry(paths.dataDir);
    let there: Buffer | undefined;
    try {
      there = loadKey(paths.keyFile);
    } catch (err) {
      if (!isMissingKey(err)) throw err;
    }
    if (there && !there.equals(key.bytes)) {
      throw new KeyMoveConflict(
        `${paths.keyFile} already holds a different tokend key; tokend does not overwrite a key: move that file away first if it is not needed`,
      );
    }
    if (!there) {
      writeKeyFile(paths.keyFile, key.bytes);
      if (!loadKey(paths.keyFile).equals(key.bytes))
        throw new KeyMoveConflict(`${paths.keyFile} appeared with another key while tokend wrote it; nothing was moved`);
    }
    await saveKind('file');
    Object.assign(key, { kind: 'file', where: paths.keyFile });
    await entry.remove();
  }
  return { key_store: key.kind, where: key.where, moved: true };
}

/** A move that would overwrite another key. */
export class KeyMoveConflict extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyMoveConflict';
  }
}

async function writeVerified(entry: KeyringEntry, bytes: Buffer): Promise<void> {
  await entry.write(bytes);
  const back = await entry.read();
  if (!back?.equals(bytes))
    throw new KeyringError(`${entry.where} did not keep the master key it was given; keep the key in a file (settings.key_store "file")`);
}

function sizeOf(file: string): number {
  try {
    return fs.statSync(file).size;
  } catch {
    return 0;
  }
}
