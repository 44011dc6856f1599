/**
 * Usage mistakes on a command line, in one line: what the CLI, the helpers and the daemon
 * (`tokend daemon`) say when node's parseArgs refuses their arguments, instead of its own
 * paragraph about `--`. A value given with an option is never echoed: it may be a secret
 * typed in the wrong place. Zod-free (the client imports it at start-up).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export type OptionTable = NonNullable<ParseArgsConfig['options']>;

/** The first thing strict parsing of `args` against `options` refused, in one line. */
export function describeMistake(args: string[], options: OptionTable): string {
  const { tokens } = parseArgs({ args, options, allowPositionals: true, strict: false, tokens: true });
  for (const t of tokens) {
    if (t.kind !== 'option') continue;
    const name = clip(t.rawName, 60);
    const spec = Object.hasOwn(options, t.name) ? options[t.name] : undefined;
    if (!spec) return `unknown option "${name}"`;
    if (spec.type === 'boolean' && t.value !== undefined) return `${name} takes no value`;
    if (spec.type === 'string' && (t.value === undefined || (!t.inlineValue && t.value.startsWith('-')))) {
      return `${name} needs a value (one that starts with "-" goes as ${name}=VALUE)`;
    }
  }
  return 'bad options';
}

/** At most `max` characters of `s`, with `…` when cut. */
export function clip(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…` : s;
}
