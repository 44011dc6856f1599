import fs from 'node:fs';
import { MASTER_KEY_BYTES as KEY_BYTES, type TokendPaths } from '../../protocol/paths.js';
import type { Check, DoctorContext } from './check.js';

/** The master key: there, a regular file, exactly the daemon's key length; never missing beside a database it sealed. */
export async function keyChecks(ctx: DoctorContext): Promise<Check[]> {
  if ((await ctx.config).keyStore === 'keyring') return [keyringCheck(ctx.paths)];
  return [keyCheck(ctx.paths, (await ctx.probe).up)];
}

/** The key in the OS keyring: the daemon reads it there at start and says so when it cannot (doctor does not load the keyring). */
function keyringCheck(paths: TokendPaths): Check {
  if (fs.existsSync(paths.keyFile)) {
    return {
      id: 'key',
      status: 'warn',
      message: `settings.key_store is "keyring", yet a key file ${paths.keyFile} exists (a move that did not finish?); \`tokend key\` says where the running daemon's key is: if that is the keyring, move the file away`,
    };
  }
  return {
    id: 'key',
    status: 'info',
    message: 'the key is in the OS keyring (settings.key_store "keyring"); `tokend key` shows the entry',
  };
}

function keyCheck(paths: TokendPaths, daemonUp: boolean): Check {
  let st: fs.Stats;
  try {
    st = fs.statSync(paths.keyFile);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      return { id: 'key', status: 'fail', message: `cannot inspect the key ${paths.keyFile}: ${(err as Error).message}` };
    }
    let dbSize = 0;
    try {
      dbSize = fs.statSync(paths.dbFile).size;
    } catch {
      /* no database either */
    }
    if (dbSize > 0) {
      return {
        id: 'key',
        status: 'fail',
        message: `the key ${paths.keyFile} is missing but ${paths.dbFile} exists: its secrets cannot be decrypted without it; restore the key from a backup (the daemon would create a new one and fail to read the old secrets)`,
      };
    }
    return daemonUp
      ? {
          id: 'key',
          status: 'warn',
          message: `no key at ${paths.keyFile} although the daemon runs: it uses other folders than this shell (TOKEND_HOME, TOKEND_KEY_FILE?)`,
        }
      : {
          id: 'key',
          status: 'info',
          message: `no key at ${paths.keyFile} yet (the daemon creates it, ${KEY_BYTES} random bytes, at first start)`,
        };
  }
  if (!st.isFile()) return { id: 'key', status: 'fail', message: `the key ${paths.keyFile} is not a regular file` };
  if (st.size !== KEY_BYTES) {
    return {
      id: 'key',
      status: 'fail',
      message: `the key ${paths.keyFile} is ${st.size} bytes, expected ${KEY_BYTES}: it is damaged or not a tokend key; restore it from a backup`,
    };
  }
  return { id: 'key', status: 'ok', message: `the key ${paths.keyFile} is present (${KEY_BYTES} bytes)` };
}
