import fs from 'node:fs';
/**
 * One JSON object per line on stderr (journald and launchd keep them). Any field whose
 * name looks secret is replaced before the line is written, so a careless call site
 * cannot leak a token.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_KEY = /token|secret|password|authorization|cookie|code_verifier|^code$/i;

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
}

function redact(fields: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (SECRET_KEY.test(k) && v !== null && v !== undefined && typeof v !== 'boolean' && typeof v !== 'number') {
      out[k] = '[redacted]';
    } else if (v instanceof Error) {
      out[k] = v.message;
    } else if (v && typeof v === 'object' && !Array.isArray(v)) {
      out[k] = redact(v as Record<string, unknown>);
    } else {
      out[k] = v;
    }
  }
  return out;
}

/** syslog priorities (RFC 5424 §6.2.1) of our levels, for journald's `<N>` line prefix. */
const SYSLOG_PRIORITY: Record<LogLevel, number> = { debug: 7, info: 6, warn: 4, error: 3 };

/**
 * A logger writing JSON lines at or above `level` to `write` (default: stderr). With
 * `journald`, each line starts with its syslog priority (`<3>` for errors): journald reads
 * that prefix from a service's stderr (SyslogLevelPrefix=, on by default), so `journalctl
 * -p err` finds tokend's errors.
 */
export function createLogger(
  level: LogLevel = 'info',
  write: (line: string) => void = (line) => process.stderr.write(line),
  opts: { journald?: boolean } = {},
): Logger {
  const min = ORDER[level] ?? ORDER.info;
  const emit = (lvl: LogLevel, msg: string, fields?: Record<string, unknown>) => {
    if (ORDER[lvl] < min) return;
    const rec: Record<string, unknown> = { time: new Date().toISOString(), level: lvl, msg };
    // time, level and msg come first and a field of the same name cannot overwrite them.
    if (fields) for (const [k, v] of Object.entries(redact(fields))) if (!(k in rec)) rec[k] = v;
    write(`${opts.journald ? `<${SYSLOG_PRIORITY[lvl]}>` : ''}${JSON.stringify(rec)}\n`);
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
  };
}

export function parseLogLevel(value: string | undefined): LogLevel {
  return value && value in ORDER ? (value as LogLevel) : 'info';
}

/**
 * Is stderr the journal? systemd sets `JOURNAL_STREAM=<device>:<inode>` for a service whose
 * stderr goes to journald; it is ours only if our fd 2 is that very stream (a child that
 * inherited the variable but writes elsewhere must not prefix).
 */
export function stderrIsJournal(env: NodeJS.ProcessEnv, fd = 2): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  try {
    const st = fs.fstatSync(fd, { bigint: true });
    return st.dev === BigInt(m[1]) && st.ino === BigInt(m[2]);
  } catch {
    return false;
  }
}
