// Small statistics: medians over rounds, and rounds in which the contenders take turns.

export const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

/** The q-quantile (0..1) of a numeric array, nearest-rank on a sorted copy. */
export function quantile(values, q) {
  if (values.length === 0) return NaN;
  const s = Float64Array.from(values).sort();
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i];
}
export const median = (values) => quantile(values, 0.5);

/**
 * Run the named measurements (each returns its figure, or a promise of it) `runs` times
 * each, rotating which goes first so machine noise falls on all of them alike; returns
 * name → results.
 */
export async function interleave(runs, cmds, warmup = 3) {
  const names = Object.keys(cmds);
  for (let i = 0; i < warmup; i++) for (const n of names) await cmds[n]();
  const out = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < runs; i++) {
    for (let j = 0; j < names.length; j++) {
      const n = names[(i + j) % names.length];
      out[n].push(await cmds[n]());
    }
  }
  return out;
}
