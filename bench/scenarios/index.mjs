// Every scenario of `npm run bench`, one line each, in the order they run (the table lists
// them by id). A scenario is a module of this folder whose default export is
//   { id, title, async run(ctx) → { rows, references?, raw? }, async profile?(ctx, profiler) }
// id: its number in the table and in --only; ctx: bench/context.mjs; rows: bench/lib/table.mjs
// row() / textRow(), in table order; references: reference points (text) for the notes;
// raw: figures for --json; profile: what --profile runs for it (bench/lib/profiler.mjs).
// Adding a scenario is one module and one line here.
const NAMES = [
  'hot-token', // 1
  'cli-token', // 2
  'git-helper', // 3
  'git-ls-remote', // 4
  'forced-refresh', // 5
  'refresh-storm', // 6, after 5: uses its bare-refresh figure
  'cold-start', // 8, before 7: its 1-account daemon is 7's baseline
  'many-accounts', // 7
  'many-accounts-100k', // 13, after 8 like 7
  'durable-refresh', // 9
  'proxy', // 10
  'fleet', // 11
  'access', // 14
  'dpop', // 15
  'soak', // 12, only with --soak MINUTES
];

export const SCENARIOS = await Promise.all(NAMES.map(async (name) => (await import(`./${name}.mjs`)).default));
