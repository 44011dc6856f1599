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
 * Read a /proc file into the shared buffer (at most 64 KiB: a longer command line is cut):
 * its length, or -1 when it cannot be read (the process is gone). open, one read, close:
 * readFileSync stats the file first and /proc reports size 0, which made it several times
 * slower here. The bytes stay there until the next read.
 */
export function readRaw(file: string): number {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return -1;
  }
  try {
    return fs.readSync(fd, buffer, 0, buffer.length, 0);
  } catch {
    return -1;
  } finally {
    fs.closeSync(fd);
  }
}

/** A copy of the `n` bytes the last `readRaw` left; undefined for a failed read. */
const rawCopy = (n: number): Buffer | undefined => (n < 0 ? undefined : Buffer.from(buffer.subarray(0, n)));

/** Are the `n` bytes the last `readRaw` left the same as `kept` (both failed reads count as different)? */
export function rawEquals(n: number, kept: Buffer | undefined): boolean {
  return kept !== undefined && n === kept.length && buffer.compare(kept, 0, n, 0, n) === 0;
}

/** /proc/PID/stat; undefined when the process is gone. */
export function readStat(pid: number, proc = '/proc'): ProcStat | undefined {
  const n = readRaw(`${proc}/${pid}/stat`);
  if (n < 0) return undefined;
  // "PID (COMM) STATE PPID …": comm may hold spaces and parentheses, so it ends at the last ')'.
  // The numbers are read from the bytes: a chain of four parents is six stats a connection.
  const open = buffer.indexOf(0x28);
  const close = buffer.lastIndexOf(0x29, n - 1);
  if (open < 0 || close < open) return undefined;
  let ppid = 0;
  let tty = 0;
  let start = -1;
  // Field 3 (the state) starts two bytes after ')'; each space starts the next field.
  let field = 3;
  let value = 0;
  for (let i = close + 2; i <= n && field <= 22; i++) {
    const c = i < n ? buffer[i]! : 0x20;
    if (c !== 0x20) {
      // A digit, or tty_nr's and other fields' signs and the state letter (their value is unused).
      value = c >= 0x30 && c <= 0x39 ? value * 10 + (c - 0x30) : value;
      continue;
    }
    if (field === 4) ppid = value;
    else if (field === 7) tty = value;
    else if (field === 22) start = value;
    field++;
    value = 0;
  }
  if (start < 0 || !Number.isSafeInteger(start)) return undefined;
  return { comm: buffer.toString('latin1', open + 1, close), ppid, tty: tty !== 0, start };
}

const cut = (s: string) => (s.length > CALLER_TEXT_MAX ? `…${s.slice(-(CALLER_TEXT_MAX - 1))}` : s);

/** A /proc link's target (exe, cwd), or undefined when it cannot be read (gone, or a non-dumpable process). */
export function readLink(p: string): string | undefined {
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
  return resolveScript(scriptArg(exe, argv), cwd);
}

/** The script argument as given (maybe relative to the working folder), or undefined. */
function scriptArg(exe: string, argv: string[]): string | undefined {
  if (!INTERPRETER.test(path.basename(exe))) return undefined;
  for (let i = 1; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return argv[i + 1];
    if (INLINE.has(a) || (/^-[a-zA-Z]*c$/.test(a) && !a.startsWith('--'))) return undefined; // `sh -ec '…'`
    if (TAKES_VALUE.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-') || a.startsWith('+')) continue;
    return a;
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

/** What was read of one parent: enough to check later that it is still the same process running the same program. */
export interface ParentRead {
  pid: number;
  start: number;
  ppid: number;
  comm: string;
  /** The exe link as read (undefined: unreadable, the name is `[comm]`). */
  exe: string | undefined;
}

/** A process's executable as a caller names it: the exe link, or its command name in brackets (as ps shows it). */
const exeName = (exe: string | undefined, comm: string) => cut(exe ?? `[${comm}]`);

/**
 * The parents of `stat`, nearest first; a parent that started after its child is a reused pid:
 * the chain stops. `complete` when it stopped where it would stop again: at the limit, or at a
 * process without a parent (init, or one whose parent is outside this pid namespace).
 */
function parentsOf(stat: ProcStat, proc: string): { links: ParentRead[]; complete: boolean } {
  const links: ParentRead[] = [];
  let child = stat;
  while (links.length < CALLER_PARENTS_MAX && child.ppid > 0) {
    const parent = readStat(child.ppid, proc);
    if (!parent || parent.start > child.start) return { links, complete: false };
    links.push({ pid: child.ppid, start: parent.start, ppid: parent.ppid, comm: parent.comm, exe: readLink(`${proc}/${child.ppid}/exe`) });
    child = parent;
  }
  return { links, complete: true };
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
 * Everything a first read of a process saw, as read (not as named): a later connection of the
 * same process (identity-cache.ts) reads the files again and compares, rather than parsing.
 */
export interface ProcRead {
  identity: CallerIdentity;
  pid: number;
  start: number;
  ppid: number;
  comm: string;
  exe: string | undefined;
  /** /proc/PID/cmdline's bytes (undefined: unreadable). */
  cmdline: Buffer | undefined;
  /** The working folder, read only when the script was named relative to it. */
  cwd: { link: string | undefined } | undefined;
  cgroup: Buffer | undefined;
  parents: ParentRead[];
  /** The chain ended where it would end again (see parentsOf): it can be checked link by link. */
  complete: boolean;
}

/** Did the process start after the kernel named its pid as the peer (at boot-time tick `at`; -1: unknown)? A reused pid. */
export const startedAfter = (start: number, at: number) => at >= 0 && start > Math.ceil(at);

/**
 * Read the process `pid` the kernel named as a peer at boot-time tick `at`. Its start time is
 * read before and after everything else and must be the same, and not after `at`: otherwise
 * the peer is gone and its pid was reused, and nothing about it is trusted (undefined).
 */
export function readCaller(pid: number, at: number, proc = '/proc'): ProcRead | undefined {
  const before = readStat(pid, proc);
  if (!before || startedAfter(before.start, at)) return undefined;
  const dir = `${proc}/${pid}`;
  const exe = readLink(`${dir}/exe`);
  // Gone meanwhile: the second stat below says so.
  const cmdline = rawCopy(readRaw(`${dir}/cmdline`));
  const cgroup = rawCopy(readRaw(`${dir}/cgroup`));
  const unit = cgroup === undefined ? undefined : unitOf(cgroup.toString('utf8'));
  const arg = exe === undefined || cmdline === undefined ? undefined : scriptArg(exe, cmdline.toString('utf8').split('\0').slice(0, -1));
  const cwd = arg !== undefined && arg !== '' && !path.isAbsolute(arg) ? { link: readLink(`${dir}/cwd`) } : undefined;
  const script = resolveScript(arg, cwd?.link);
  const { links, complete } = parentsOf(before, proc);
  const after = readStat(pid, proc);
  if (!after || after.start !== before.start) return undefined;
  const caller: Caller = { pid, exe: exeName(exe, before.comm), parents: links.map((p) => exeName(p.exe, p.comm)) };
  if (script !== undefined) caller.script = cut(script);
  if (unit !== undefined) caller.unit = cut(unit);
  const identity = { caller, start: before.start, tty: before.tty, program: programKey(caller) };
  return { identity, pid, start: before.start, ppid: before.ppid, comm: before.comm, exe, cmdline, cwd, cgroup, parents: links, complete };
}

/** The caller `pid` as read now (readCaller), without keeping anything for later. */
export function identify(pid: number, at: number, proc = '/proc'): CallerIdentity | undefined {
  return readCaller(pid, at, proc)?.identity;
}

/** Everything that names a caller's program (not its pid), one string: rows of one program in one minute are one row. */
export function programKey(c: Caller): string {
  return [c.exe ?? '', c.script ?? '', c.unit ?? '', c.key ?? '', ...c.parents].join('\0');
}
