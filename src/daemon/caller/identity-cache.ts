/**
 * The callers of one process share one read of it. A burst of connections, a client that
 * connects per request, a pool: each connection needs its caller, and the first read of a
 * process (proc.ts: six stats, five links, its command line and cgroup) is kept per pid and
 * start time, with the bytes it read.
 *
 * A later connection of that process gets an identity that is still verified, not
 * remembered: a process can exec another program under the same pid and start time, move to
 * another cgroup, be reparented, and its parents can exec too. So each time it reads again,
 * and compares with what it kept rather than parsing:
 *
 * - the process: its exe link (another executable), its command line (the same interpreter
 *   running another script), its working folder when the script was named relative to it,
 *   and its cgroup (another unit); then its stat, after those reads: the same start time as
 *   at the first read (taken before everything then) and not after the connection, so the
 *   pid was not reused and every read above was of this process (proc.ts's rule); the same
 *   parent, terminal or not.
 * - each parent: its exe link (a parent that exec'd) and, but for the last of four, its
 *   stat (its own parent: reparented when that one exits). The process's parent pid being
 *   the same says its parent is the same process: whoever a process is reparented to is
 *   older than it, and a process that was its parent after it started held that pid all
 *   along, so no other process can have it (likewise up the chain).
 *
 * That is four stats and five links instead of six and five, and no parsing. Anything that
 * differs, or a chain that ended early (a parent gone while it was read), is read again as
 * new. At most MAX_ENTRIES processes are kept (the least recently used goes first); a pid
 * whose start time changed is read as new and replaces its entry. Each connection gets its own
 * identity object (approvals wait on its connection), sharing the caller.
 */
import { CALLER_PARENTS_MAX } from '../../protocol/caller.js';
import { type CallerIdentity, type ProcRead, rawEquals, readCaller, readLink, readRaw, readStat, startedAfter } from './proc.js';

/** How many processes are kept: a daemon's regular callers are a few; a flood of new ones only cycles the oldest out. */
const MAX_ENTRIES = 256;
/** A process whose command line is longer is read in full each time (the bytes kept to compare stay small). */
const CMDLINE_KEPT_MAX = 8192;

export class CallerCache {
  private readonly entries = new Map<number, ProcRead>();
  /** Reads of processes seen before that still matched, and those read in full (tests, benches). */
  readonly counts = { hits: 0, reads: 0 };

  constructor(
    private readonly proc = '/proc',
    private readonly maxEntries = MAX_ENTRIES,
  ) {}

  /** The verified caller `pid` the kernel named as a peer at boot-time tick `at`; undefined when it cannot be verified. */
  identify(pid: number, at: number): CallerIdentity | undefined {
    const kept = this.entries.get(pid);
    if (kept) {
      this.entries.delete(pid);
      const tty = stillSame(kept, at, this.proc);
      if (tty !== undefined) {
        this.entries.set(pid, kept);
        this.counts.hits++;
        const { caller, start, program } = kept.identity;
        return { caller, start, tty, program };
      }
    }
    this.counts.reads++;
    const read = readCaller(pid, at, this.proc);
    if (!read) return undefined;
    if (read.complete && (read.cmdline?.length ?? 0) <= CMDLINE_KEPT_MAX) {
      if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
      this.entries.set(pid, read);
    }
    return { ...read.identity };
  }
}

/**
 * Is `kept` still what the process `kept.pid` is, for a connection the kernel named at `at`?
 * Its terminal (a process may gain or lose one without changing program) when it is, else
 * undefined: read it as new.
 */
function stillSame(kept: ProcRead, at: number, proc: string): boolean | undefined {
  const dir = `${proc}/${kept.pid}`;
  if (readLink(`${dir}/exe`) !== kept.exe) return undefined;
  if (!rawEquals(readRaw(`${dir}/cmdline`), kept.cmdline)) return undefined;
  if (kept.cwd && readLink(`${dir}/cwd`) !== kept.cwd.link) return undefined;
  if (!rawEquals(readRaw(`${dir}/cgroup`), kept.cgroup)) return undefined;
  const now = readStat(kept.pid, proc);
  if (!now || now.start !== kept.start || startedAfter(now.start, at) || now.ppid !== kept.ppid) return undefined;
  if (kept.exe === undefined && now.comm !== kept.comm) return undefined;
  const n = kept.parents.length;
  for (let i = 0; i < n; i++) {
    const p = kept.parents[i]!;
    // The fourth parent's own parent is not part of the chain: its pid, checked one level down, is enough.
    if (i < CALLER_PARENTS_MAX - 1 || p.exe === undefined) {
      const st = readStat(p.pid, proc);
      if (!st || st.start !== p.start || st.ppid !== p.ppid || (p.exe === undefined && st.comm !== p.comm)) return undefined;
    }
    if (readLink(`${proc}/${p.pid}/exe`) !== p.exe) return undefined;
  }
  return now.tty;
}
