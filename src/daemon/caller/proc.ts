/**
 * A process as /proc describes it (Linux, proc(5)): its start time, parent, executable,
 * arguments, working folder and cgroup. Synchronous reads: /proc answers from memory, and
 * these run once per connection (connection.ts), not per request.
 */
import fs from 'node:fs';
import path from 'node:path';
import { CALLER_PARENTS_MAX, CALLER_TEXT_MAX, type Caller } from '../../protocol/caller.js';

/** What /proc/PID/stat says that the daemon uses. */
export interface ProcStat {
  /** The command name (`comm`, at most 15 bytes; set by the process itself). */
  comm: string;
  ppid: number;
  /** A controlling terminal (field 7, tty_nr, not 0). */
  tty: boolean;
  /** Field 22: clock ticks after boot when the process started; with the pid, it names one process. */
  start: number;
}

/** One buffer for every /proc read: they are synchronous, so never two at once. */
const buffer = Buffer.alloc(64 * 1024);

/**
 * A /proc file's text (at most 64 KiB: a longer command line is cut), or undefined when it
 * cannot be read (the process is gone). open, one read, close: readFileSync stats the file
 * first and /proc reports size 0, which made it several times slower here.
 */
function readProc(file: string, encoding: 'latin1' | 'utf8'): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    return buffer.toString(encoding, 0, fs.readSync(fd, buffer, 0, buffer.length, 0));
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

/** /proc/PID/stat; undefined when the process is gone. */
export function readStat(pid: number, proc = '/proc'): ProcStat | undefined {
  const text = readProc(`${proc}/${pid}/stat`, 'latin1');
  if (text === undefined) return undefined;
  // "PID (COMM) STATE PPID …": comm may hold spaces and parentheses, so it ends at the last ')'.
  const close = text.lastIndexOf(')');
  const fields = text.slice(close + 2).split(' ');
  // fields[0] is field 3 (state): field N is fields[N - 3].
  const start = Number(fields[19]);
  if (close < 0 || !Number.isSafeInteger(start)) return undefined;
  return { comm: text.slice(text.indexOf('(') + 1, close), ppid: Number(fields[1]), tty: Number(fields[4]) !== 0, start };
}

const cut = (s: string) => (s.length > CALLER_TEXT_MAX ? `…${s.slice(-(CALLER_TEXT_MAX - 1))}` : s);

function readLink(p: string): string | undefined {
  try {
    return fs.readlinkSync(p);
  } catch {
    return undefined;
  }
}

/** The interpreters whose script names the program better than their executable does. */
const INTERPRETER = /^(node|nodejs|python[0-9.]*|sh|bash|dash|zsh|ksh|perl[0-9.]*|ruby[0-9.]*)$/;
/** Options after which there is no script (the code is inline, or a module is named): `python3 -c`, `node -e`, `sh -c`. */
const INLINE = new Set(['-c', '-e', '-p', '-m', '-E', '--eval', '--print', '--command']);
/** Options that take the next argument as their value. */
const TAKES_VALUE = new Set([
  '-r',
  '--require',
  '--import',
  '--loader',
  '--experimental-loader',
  '-C',
  '--conditions',
  '-W',
  '-X',
  '-I',
  '-o',
  '-O',
]);

/**
 * The script an interpreter runs: its first argument that is not an option (nor an option's
 * value), resolved against the process's working folder; undefined for inline code.
 */
export function scriptOf(exe: string, argv: string[], cwd: string | undefined): string | undefined {
  if (!INTERPRETER.test(path.basename(exe))) return undefined;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return resolveScript(argv[i + 1], cwd);
    if (INLINE.has(a) || (/^-[a-zA-Z]*c$/.test(a) && !a.startsWith('--'))) return undefined; // `sh -ec '…'`
    if (TAKES_VALUE.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-') || a.startsWith('+')) continue;
    return resolveScript(a, cwd);
  }
  return undefined;
}

function resolveScript(arg: string | undefined, cwd: string | undefined): string | undefined {
  if (arg === undefined || arg === '') return undefined;
  if (path.isAbsolute(arg)) return path.normalize(arg);
  return cwd === undefined ? undefined : path.resolve(cwd, arg);
}

/** The systemd unit from /proc/PID/cgroup: the deepest `*.service` or `*.scope` of the unified (or name=systemd) hierarchy. */
export function unitOf(cgroup: string): string | undefined {
  for (const line of cgroup.split('\n')) {
    const [, controllers, where] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (where === undefined || (controllers !== '' && controllers !== 'name=systemd')) continue;
    const units = where.split('/').filter((p) => /\.(service|scope)$/.test(p));
    if (units.length > 0) return units[units.length - 1];
  }
  return undefined;
}

/** One process's executable, or its command name in brackets (as ps shows it) when the link cannot be read. */
function exeOf(pid: number, stat: ProcStat, proc: string): string {
  const exe = readLink(`${proc}/${pid}/exe`);
  return cut(exe ?? `[${stat.comm}]`);
}

/** The executables of `stat`'s parents, nearest first; a parent that started after its child is a reused pid: the chain stops. */
function parentsOf(stat: ProcStat, proc: string): string[] {
  const out: string[] = [];
  let child = stat;
  while (out.length < CALLER_PARENTS_MAX && child.ppid > 0) {
    const parent = readStat(child.ppid, proc);
    if (!parent || parent.start > child.start) break;
    out.push(exeOf(child.ppid, parent, proc));
    child = parent;
  }
  return out;
}

/** A verified caller and what part 3's rules need besides it (the terminal, the start time that pins the pid). */
export interface CallerIdentity {
  caller: Caller;
  start: number;
  tty: boolean;
  /** The program, for grouping audit rows: everything but the pid. */
  program: string;
}

/**
 * Read the process `pid` the kernel named as a peer at boot-time tick `at`. Its start time is
 * read before and after everything else and must be the same, and not after `at`: otherwise
 * the peer is gone and its pid was reused, and nothing about it is trusted (undefined).
 */
export function identify(pid: number, at: number, proc = '/proc'): CallerIdentity | undefined {
  const before = readStat(pid, proc);
  if (!before || (at >= 0 && before.start > Math.ceil(at))) return undefined;
  const exe = readLink(`${proc}/${pid}/exe`);
  // Gone meanwhile: the second stat below says so.
  const argv = readProc(`${proc}/${pid}/cmdline`, 'utf8')?.split('\0').slice(0, -1) ?? [];
  const cgroup = readProc(`${proc}/${pid}/cgroup`, 'utf8');
  const unit = cgroup === undefined ? undefined : unitOf(cgroup);
  const script = exe === undefined ? undefined : scriptOf(exe, argv, readLink(`${proc}/${pid}/cwd`));
  const parents = parentsOf(before, proc);
  const after = readStat(pid, proc);
  if (!after || after.start !== before.start) return undefined;
  const caller: Caller = { pid, exe: cut(exe ?? `[${before.comm}]`), parents };
  if (script !== undefined) caller.script = cut(script);
  if (unit !== undefined) caller.unit = cut(unit);
  return { caller, start: before.start, tty: before.tty, program: programKey(caller) };
}

/** Everything that names a caller's program (not its pid), one string: rows of one program in one minute are one row. */
export function programKey(c: Caller): string {
  return [c.exe ?? '', c.script ?? '', c.unit ?? '', c.key ?? '', ...c.parents].join('\0');
}
