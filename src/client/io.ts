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

/** Say what was wrong in one line that names the command's --help; returns exit 2. */
export function reportUsage(io: Pick<Io, 'stderr'>, command: string, message: string): number {
  const who = command ? `tokend ${command}` : 'tokend';
  io.stderr(`${who}: ${message} (see \`${who} --help\`)\n`);
  return EXIT.usage;
}

/** A CLI command: its arguments (after the command word) in, its exit status out. The client connects on first use. */
export type Command = (args: string[], io: Io, client: () => TokendClient) => Promise<number>;
