/**
 * The shape of the command line, read from the commands' own --help texts: their
 * options, the words that may follow them (`setup git`, `service install|…`), which take
 * an account NAME, and the values an option takes (`--flow device|browser`). The build
 * (scripts/cli-docs.mjs) writes it to dist/client/cli-spec.json beside the man page made
 * from the same texts; `tokend completion` turns it into a shell's completion script. So
 * completion and man page say what --help says, and cannot drift from it.
 */

/** One command as completion sees it. */
export interface CommandSpec {
  /** The command word: `add`, `setup`, `git-credential`… */
  name: string;
  /** The one-line summary from the overview (`tokend --help`). */
  summary: string;
  /** Every long option its help names, with `--help`, sorted. */
  options: string[];
  /** The words its first argument may be (`git` for setup, `install`… for service); empty when none. */
  words: string[];
  /** Its first argument names an existing account (not `add`, which names a new one). */
  account: boolean;
  /** Options whose value is one of a few words (`--flow` → device, browser). */
  values: Record<string, string[]>;
}

export interface CliSpec {
  commands: CommandSpec[];
}

const WORD_LIST = /^[a-z][a-z0-9_-]*(\|[a-z][a-z0-9_-]*)*$/;

/** The usage lines of a help text, each after `tokend NAME` (or `NAME-tokend`): the lines before the first blank one. */
function usageLines(name: string, help: string): string[][] {
  const head = help.split('\n\n')[0] ?? '';
  return head
    .split('\n')
    .map((l) =>
      l
        .replace(/^usage:\s*/, '')
        .trim()
        .split(/\s+/),
    )
    .map((words) => (words[0] === 'tokend' && words[1] === name ? words.slice(2) : words[0] === `${name}-tokend` ? words.slice(1) : []))
    .filter((words) => words.length > 0);
}

/** The positional words of a usage line: options, their values and bracketed or parenthesised option groups skipped. */
function positionals(line: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < line.length; i++) {
    const w = line[i]!;
    if (w.startsWith('[-') || w.startsWith('(')) {
      // `[--flow device|browser]`, `[-H 'Name: value']...`, `(--a | --b)`: to the closing bracket.
      while (i < line.length && !/[\])](\.\.\.)?$/.test(line[i]!)) i++;
    } else if (w.startsWith('-')) {
      // `--url URL`: the option's placeholder goes with it.
      if (/^[A-Z]/.test(line[i + 1] ?? '')) i++;
    } else {
      out.push(w);
    }
  }
  return out;
}

/** What `name`'s help text says about its command line; `summary` is its overview line. */
export function commandSpec(name: string, help: string, summary = ''): CommandSpec {
  const options = new Set<string>(['--help']);
  const values: Record<string, string[]> = {};
  // The option table: `  --flow F   device | browser | …`, `  -X, --method M   …`, `  --on-reauth fail|login   …`.
  for (const m of help.matchAll(/^ {2,}(?:-[A-Za-z], )?(--[a-z][a-z0-9-]*)(.*)$/gm)) {
    options.add(m[1]!);
    const arg = /^ (\S+)/.exec(m[2]!)?.[1];
    const description = /\S {2,}(\S.*)$/.exec(m[2]!)?.[1] ?? /^ {2,}(\S.*)$/.exec(m[2]!)?.[1];
    const list = arg?.includes('|') ? arg : description?.trim().replace(/ \| /g, '|');
    if (list?.includes('|') && WORD_LIST.test(list)) values[m[1]!] = list.split('|');
  }
  const words = new Set<string>();
  let account = false;
  for (const line of usageLines(name, help)) {
    for (const w of line) {
      const opt = /^\[?(--[a-z][a-z0-9-]*)/.exec(w)?.[1];
      if (opt) options.add(opt);
    }
    // The first positional: a word list (`get|store|erase`), a literal (`git`), or NAME.
    const first = positionals(line)[0]?.replace(/^\[|\]$/g, '');
    if (first === 'NAME') account = name !== 'add';
    else if (first !== undefined && WORD_LIST.test(first)) for (const w of first.split('|')) words.add(w);
    // `[--flow device|browser]`, `[--platform linux|darwin]`.
    for (let i = 0; i < line.length - 1; i++) {
      const opt = /^\[?(--[a-z][a-z0-9-]*)$/.exec(line[i]!)?.[1];
      const val = line[i + 1]!.replace(/\]$/, '');
      if (opt && val.includes('|') && WORD_LIST.test(val)) values[opt] = val.split('|');
    }
  }
  return { name, summary, options: [...options].sort(), words: [...words], account, values };
}

/**
 * The commands of the overview (`tokend --help`), in its order, each with its one-line
 * summary: the lines `  word …   summary` under a section heading, the summary on the
 * next line when the usage fills the first. A command listed twice (`login NAME
 * --cancel`) keeps its first summary.
 */
export function overviewCommands(overview: string): Array<{ name: string; summary: string }> {
  const out: Array<{ name: string; summary: string }> = [];
  const lines = overview.split('\n');
  lines.forEach((line, i) => {
    const m = /^ {2}([a-z][a-z0-9-]*)\b(.*)$/.exec(line);
    if (!m || out.some((c) => c.name === m[1])) return;
    const summary = /\S\s{2,}(\S.*)$/.exec(line)?.[1] ?? /^ {10,}(\S.*)$/.exec(lines[i + 1] ?? '')?.[1] ?? '';
    out.push({ name: m[1]!, summary });
  });
  return out;
}
