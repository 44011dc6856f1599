/**
 * What every CLI command shares: where it writes (`Io`), how it says "bad usage"
 * (`UsageError`, exit 2) and the exit statuses. Commands throw `UsageError`; whoever runs
 * the command reports it with `reportUsage`, so every usage message has one shape.
 */
import { EXIT } from '../protocol/errors.js';
import type { TokendClient } from './socket-client.js';

export { EXIT };

/** Where a command writes: stdout carries only the data asked for (so `$(tokend token x)` works). */
export interface Io {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  readStdin: () => Promise<string>;
  env: NodeJS.ProcessEnv;
  /** Is stderr, where the person reads what to do (QR codes, prompts), a terminal? */
  stderrIsTTY?: () => boolean;
  /**
   * Call `fn` each time the person presses Enter, when stdin is a terminal; returns what
   * stops listening. Absent, or stdin not a terminal: undefined.
   */
  onEnter?: (fn: () => void) => (() => void) | undefined;
}

/** Bad usage: exit 2. `command` names whose --help to point at when it is not the command that ran (`setup git`). */
export class UsageError extends Error {
  override name = 'UsageError';
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message);
  }
}

/**
 * A failure a command reports without the daemon's help (a missing file, git refusing):
 * `code` as a program reads it with --json (`not_found`, `failed`, …), `command` names the
 * subcommand in the message (`setup git`).
 */
export class CommandError extends Error {
  override name = 'CommandError';
  constructor(
    readonly code: string,
    message: string,
    readonly command?: string,
  ) {
    super(message);
  }
}

/** Did the command line ask for JSON (`--json` before any `--`, past which the words are another program's)? */
export function asksJson(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--json');
}

/**
 * With --json, every error is also `{"error":{"code","message",…}}` on stdout, so a program
 * reading stdout never gets text it cannot parse. `code`: the daemon's wire code, or the
 * CLI's own: `usage` (exit 2), `daemon_unreachable`, `failed` (a local step), `internal`.
 */
export function printJsonError(io: Pick<Io, 'stdout'>, error: { code: string; message: string; [field: string]: unknown }): void {
  io.stdout(`${JSON.stringify({ error }, null, 2)}\n`);
}

/** Say what was wrong in one line that names the command's --help (and, with --json, as JSON on stdout); returns exit 2. */
export function reportUsage(io: Pick<Io, 'stderr'> & Partial<Pick<Io, 'stdout'>>, command: string, message: string, json = false): number {
  const who = command ? `tokend ${command}` : 'tokend';
  io.stderr(`${who}: ${message} (see \`${who} --help\`)\n`);
  if (json && io.stdout) printJsonError({ stdout: io.stdout }, { code: 'usage', message: `${who}: ${message}` });
  return EXIT.usage;
}

/** A CLI command: its arguments (after the command word) in, its exit status out. The client connects on first use. */
export type Command = (args: string[], io: Io, client: () => TokendClient) => Promise<number>;

/** Rows as aligned columns (the first row is the header), two spaces apart, one line each. */
export function formatTable(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}
