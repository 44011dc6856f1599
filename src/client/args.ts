/**
 * Command-line parsing for the CLI: node's parseArgs, with `--help` on every command and
 * its errors turned into one line that names the option (parseArgs' own text is a
 * paragraph about `--`). A value given with an option is never echoed: it may be a secret
 * typed in the wrong place.
 */
import { parseArgs } from 'node:util';
import { isAccountName } from '../protocol/names.js';
import { clip, describeMistake, type OptionTable } from '../protocol/usage.js';
import { UsageError } from './io.js';

// Shared with the daemon's own command line (src/protocol/usage.ts).
export { clip, describeMistake, type OptionTable };

const HELP_OPTION = { help: { type: 'boolean', short: 'h' } } as const;

/**
 * Parse `args` for `command` against `options` (plus --help/-h), allowing at most
 * `positionals` positional arguments. Throws UsageError with one line.
 */
export function parseOptions<T extends OptionTable>(command: string, args: string[], options: T, positionals = 1) {
  const all = { ...options, ...HELP_OPTION };
  let out: ReturnType<typeof parseArgs<{ args: string[]; options: typeof all; allowPositionals: true; strict: true }>>;
  try {
    out = parseArgs({ args, options: all, allowPositionals: true, strict: true });
  } catch {
    throw new UsageError(describeMistake(args, all), command);
  }
  const extra = out.positionals.length - positionals;
  if (!(out.values as { help?: boolean }).help && extra > 0) {
    throw new UsageError(
      positionals === 0 ? 'takes no arguments, only options' : `too many arguments (at most ${positionals}, got ${out.positionals.length})`,
      command,
    );
  }
  return out;
}

/** The account NAME argument of `command`, checked. */
export function requireName(name: string | undefined, command: string): string {
  if (!name) throw new UsageError(`needs an account NAME`, command);
  if (!isAccountName(name)) {
    throw new UsageError(`"${clip(name, 80)}" is not a valid account name (1-64 letters, digits, ".", "_" or "-")`, command);
  }
  return name;
}

/** A `--min-ttl`-style option: whole seconds, or undefined when not given. */
export function wholeSeconds(value: string | undefined, option: string, command: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new UsageError(`${option} takes whole seconds`, command);
  return n;
}
