/**
 * Disk faults the daemon can see while it runs, for `GET /v1/health` (`warnings`) and
 * `tokend doctor`: the database file deleted or replaced under it (its writes would go to a
 * file nobody will open again), the key file changed or gone (the next start could not open
 * a single grant), the disk holding the database nearly full. The store itself refuses to
 * write to a replaced file; this says so before anyone asks.
 */
import fs from 'node:fs';
import type { Logger } from './log.js';

export interface DiskWatch {
  /** What is wrong now, one sentence each with its fix; empty when nothing is. */
  warnings(): string[];
  /** The master key moved (to or from the key file): watch the file as it is now. */
  keyMoved(): void;
  stop(): void;
}

/** Below this much free space on the database's disk, writes (a rotated token) may fail. */
const LOW_SPACE_BYTES = 4 * 1024 * 1024;

export function watchDisk(o: { dbFile: string; keyFile: string; log: Logger; everyMs: number; fleet: boolean }): DiskWatch {
  const readKey = () => {
    try {
      return fs.readFileSync(o.keyFile);
    } catch {
      return undefined;
    }
  };
  // The store has just opened with this key (it is read only once, at the start); none when
  // it lives in the OS keyring.
  let keyAtStart = readKey();
  const identity = (f: string) => {
    try {
      const st = fs.statSync(f);
      return `${st.dev}:${st.ino}`;
    } catch {
      return undefined;
    }
  };
  const dbAtStart = o.fleet ? undefined : identity(o.dbFile);
  let current: string[] = [];
  const check = () => {
    const found: string[] = [];
    if (dbAtStart !== undefined) {
      const now = identity(o.dbFile);
      if (now !== dbAtStart) {
        found.push(
          `the database ${o.dbFile} was ${now === undefined ? 'deleted' : 'replaced'} while tokend runs: it writes nothing (a rotated token would be lost) and serves tokens from memory; restore the file, or restart tokend to start from what is there now`,
        );
      }
      try {
        const fsStat = fs.statfsSync(o.dbFile);
        if (fsStat.bavail * fsStat.bsize < LOW_SPACE_BYTES) {
          found.push(
            `the disk holding ${o.dbFile} is nearly full (${Math.round((fsStat.bavail * fsStat.bsize) / 1024)} KiB free): a rotated token may not be storable; free some space`,
          );
        }
      } catch {
        /* reported by the identity check */
      }
    }
    const key = readKey();
    if (keyAtStart && !key?.equals(keyAtStart)) {
      found.push(
        `the key file ${o.keyFile} was ${key ? 'changed' : 'removed'} while tokend runs: it keeps the key it started with, but at the next start no grant could be opened; put the original key back`,
      );
    }
    for (const w of found) if (!current.includes(w)) o.log.error(w);
    current = found;
  };
  check();
  const timer = setInterval(check, o.everyMs);
  timer.unref();
  return {
    warnings: () => (check(), current),
    // `tokend key move`: the file is now the key's place, or not any more.
    keyMoved: () => {
      keyAtStart = readKey();
      check();
    },
    stop: () => clearInterval(timer),
  };
}
