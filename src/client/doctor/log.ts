import fs from 'node:fs';
import path from 'node:path';
import type { Check, DoctorContext } from './check.js';
import { shq } from './shell.js';

/** The daemon is down: its last error line says why, when it logged to a file we can read. */
export async function logChecks(ctx: DoctorContext): Promise<Check[]> {
  const [probe, service] = await Promise.all([ctx.probe, ctx.service]);
  if (probe.up) return [];
  const { paths, platform, home } = ctx;
  const files = [paths.logFile];
  if (platform === 'darwin') files.push(path.join(home, 'Library', 'Logs', 'tokend', 'tokend.log'));
  const journal = service.kind === 'report' && service.manager === 'systemd' && service.installed;
  for (const file of files) {
    const line = lastErrorLine(file);
    if (line) {
      return [
        {
          id: 'log',
          status: 'info',
          message: `the last error in ${file}: ${line}`,
          fix: journal ? 'journalctl --user -u tokend -n 50' : `tail -n 50 '${shq(file)}'`,
        },
      ];
    }
  }
  if (journal) return [{ id: 'log', status: 'info', message: 'the service logs to the journal', fix: 'journalctl --user -u tokend -n 50' }];
  return [];
}

/** The newest error in a JSON-lines log (or a plain `tokend daemon: …` line), from its last 64 KiB. */
export function lastErrorLine(file: string): string | undefined {
  let text: string;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const len = Math.min(size, 64 * 1024);
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, size - len);
      text = buf.toString('utf8');
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
  const lines = text.split('\n').filter((l) => l.trim());
  for (let i = lines.length - 1; i >= 0; i--) {
    const l = lines[i].trim();
    if (l.startsWith('{')) {
      try {
        const rec = JSON.parse(l) as { time?: string; level?: string; msg?: string; error?: unknown };
        if (rec.level === 'error' && rec.msg) {
          const extra = typeof rec.error === 'string' && !rec.msg.includes(rec.error) ? `: ${rec.error}` : '';
          return `${rec.time ? `${rec.time} ` : ''}${rec.msg}${extra}`.slice(0, 500);
        }
      } catch {
        /* a torn line */
      }
    } else if (l.startsWith('tokend daemon:') || l.startsWith('tokend:')) {
      // The daemon's start-up failures print this line after the same message as JSON:
      // prefer the JSON one, which has the time.
      const prev = i > 0 ? lines[i - 1].trim() : '';
      if (prev.startsWith('{') && prev.includes('"level":"error"')) continue;
      return l.slice(0, 500);
    }
  }
  return undefined;
}
