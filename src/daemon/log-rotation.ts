/**
 * The log file's size cap. An autostarted daemon (and one under launchd) writes its stderr
 * to a file it did not open (O_APPEND, opened by its parent), so it cannot reopen it: when
 * the file grows past the cap, the daemon copies it to `<file>.1` (replacing the previous
 * one) and truncates its own stderr to zero; appends go on at the new end. Under systemd,
 * stderr is the journal, which caps itself, and nothing is done.
 */
import fs from 'node:fs';

/** Check every `everyMs` whether fd 2 is `logFile` and larger than `maxBytes`; rotate if so. Returns a stop function. */
export function capLogFile(
  logFile: string,
  maxBytes: number,
  opts: { everyMs?: number; fd?: number; onRotate?: () => void } = {},
): () => void {
  const fd = opts.fd ?? 2;
  const ours = (): boolean => {
    try {
      const a = fs.fstatSync(fd);
      const b = fs.statSync(logFile);
      return a.isFile() && a.dev === b.dev && a.ino === b.ino;
    } catch {
      return false;
    }
  };
  const check = () => {
    try {
      if (!ours() || fs.fstatSync(fd).size <= maxBytes) return;
      fs.copyFileSync(logFile, `${logFile}.1`);
      fs.chmodSync(`${logFile}.1`, 0o600);
      fs.ftruncateSync(fd, 0);
      opts.onRotate?.();
    } catch {
      // A full disk or a vanished file: the log is not worth failing for; try next time.
    }
  };
  check();
  const timer = setInterval(check, opts.everyMs ?? 60_000);
  timer.unref();
  return () => clearInterval(timer);
}
