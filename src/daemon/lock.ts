import fs from 'node:fs';
import lockfile from 'proper-lockfile';
import { parseDaemonOwner, type DaemonOwner, type TokendPaths } from '../protocol/paths.js';

/** Another daemon holds the lock; the message names its pid and socket. */
export class LockHeldError extends Error {
  constructor(
    message: string,
    /** The running daemon's pid, when known. */
    readonly pid?: number,
  ) {
    super(message);
    this.name = 'LockHeldError';
  }
}

/**
 * One daemon per user (docs/architecture.md): proper-lockfile on the data dir, plus a
 * pid file beside it. proper-lockfile alone only sees a lock as stale after its mtime
 * ages (10 s); a daemon killed with SIGKILL should be replaced at once, so when the
 * recorded owner is not alive the lock is taken over. Taken over once, never in a loop.
 */
export async function acquireDaemonLock(
  paths: TokendPaths,
  opts: { onCompromised: (err: Error) => void; isAlive: (pid: number) => boolean },
): Promise<() => Promise<void>> {
  const lockfilePath = paths.lockFile;
  const ownerFile = paths.pidFile;
  const take = () =>
    lockfile.lock(paths.dataDir, {
      lockfilePath,
      realpath: false,
      stale: 10_000,
      update: 2_000,
      retries: 0,
      onCompromised: opts.onCompromised,
    });

  let release: () => Promise<void>;
  try {
    release = await take();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
    const owner = readOwner(ownerFile);
    if (owner && opts.isAlive(owner.pid) && owner.pid !== process.pid) {
      throw new LockHeldError(`another tokend daemon is running (pid ${owner.pid}, socket ${owner.socket})`, owner.pid);
    }
    if (!owner) {
      throw new LockHeldError(`another tokend daemon is starting or running (lock ${lockfilePath}); try again in a moment`);
    }
    // The recorded owner is gone (killed): its lock is stale.
    fs.rmSync(lockfilePath, { recursive: true, force: true });
    try {
      release = await take();
    } catch (again) {
      if ((again as NodeJS.ErrnoException).code === 'ELOCKED') {
        throw new LockHeldError(`another tokend daemon took over the stale lock first (lock ${lockfilePath})`);
      }
      throw again;
    }
  }
  const owner: DaemonOwner = { pid: process.pid, socket: paths.socket, started_at: new Date().toISOString() };
  fs.writeFileSync(ownerFile, JSON.stringify(owner) + '\n', { mode: 0o600 });
  return async () => {
    const current = readOwner(ownerFile);
    if (current?.pid === process.pid) fs.rmSync(ownerFile, { force: true });
    await release();
  };
}

function readOwner(file: string): DaemonOwner | undefined {
  try {
    return parseDaemonOwner(fs.readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}
