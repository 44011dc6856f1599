// The bench's table: one row per figure, tokend against its baseline, with the target
// and the verdict. Rows are plain objects, so a scenario returns them and the runner
// numbers, orders and prints them.

export const fmtMs = (v) => {
  if (!Number.isFinite(v)) return '–';
  const a = Math.abs(v);
  return `${v < 0 ? '−' : ''}${a < 10 ? a.toFixed(2) : a < 100 ? a.toFixed(1) : Math.round(a)} ms`;
};
export const fmtRps = (v) => (Number.isFinite(v) ? `${Math.round(v).toLocaleString('en-US')} req/s` : '–');
const fmtMb = (v) => (Number.isFinite(v) ? `${v.toFixed(1)} MB` : '–');
export const fmtRatio = (v) => (Number.isFinite(v) ? `${v.toFixed(2)}×` : '–');
const fmtMbps = (v) => (Number.isFinite(v) ? `${v.toFixed(0)} MB/s` : '–');
const fmtKb = (v) => (Number.isFinite(v) ? `${v.toFixed(1)} KB` : '–');
const fmtUs = (v) => (Number.isFinite(v) ? `${v < 10 ? v.toFixed(1) : Math.round(v)} µs` : '–');
const FMT = { us: fmtUs, ms: fmtMs, rps: fmtRps, mb: fmtMb, kb: fmtKb, mbps: fmtMbps, count: (v) => String(v) };

const signed = (fmt, d) => `${d >= 0 ? '+' : '−'}${fmt(Math.abs(d))}`;

/**
 * One measured row. kind: 'min' (ratio ≥ limit), 'max' (ratio ≤ limit), 'abs' (tokend < limit,
 * in the row's unit), 'diff' (tokend − baseline ≤ limit), 'exact' (tokend === limit), 'info'
 * (no verdict; `diff: true` shows the difference instead of the ratio).
 */
export function row({ scenario, measure, t, b, unit, kind = 'info', limit, target, baselineLabel, diff = false }) {
  const fmt = FMT[unit];
  const ratio = Number.isFinite(t) && Number.isFinite(b) && b !== 0 ? t / b : NaN;
  let ratioText = fmtRatio(ratio);
  let pass;
  switch (kind) {
    case 'min':
      pass = ratio >= limit;
      target ??= `≥ ${limit.toFixed(2)}×`;
      break;
    case 'max':
      pass = ratio <= limit;
      target ??= `≤ ${limit.toFixed(2)}×`;
      break;
    case 'abs':
      pass = t < limit;
      target ??= `< ${fmt(limit)}`;
      break;
    case 'diff':
      pass = t - b <= limit;
      ratioText = signed(fmt, t - b);
      target ??= `≤ baseline + ${fmt(limit)}`;
      break;
    case 'exact':
      pass = t === limit;
      ratioText = '–';
      target ??= `exactly ${limit}`;
      break;
    default:
      target ??= '–';
      if (diff) ratioText = signed(fmt, t - b);
  }
  const verdict = kind === 'info' ? '–' : !Number.isFinite(t) && kind !== 'exact' ? 'ERROR' : pass ? 'pass' : '**MISS**';
  const missText =
    verdict === '**MISS**'
      ? `${scenario}, ${measure}: ${fmt(t)}${b === undefined ? '' : ` against ${fmt(b)}`} (${b === undefined ? '' : `${ratioText}; `}target ${target}).`
      : undefined;
  return {
    scenario,
    measure,
    tokend: fmt(t),
    baseline: b === undefined ? '–' : `${fmt(b)}${baselineLabel ? ` (${baselineLabel})` : ''}`,
    ratio: ratioText,
    target,
    verdict,
    values: { tokend: t, baseline: b ?? null, ratio: Number.isFinite(ratio) ? ratio : null, limit: limit ?? null, kind, unit },
    missText,
  };
}

/** A row that says something instead of a figure: "not measured (…)", or an error. */
export function textRow(scenario, measure, text, verdict = 'not measured') {
  return { scenario, measure, tokend: text, baseline: '–', ratio: '–', target: '–', verdict, values: null };
}

/** The markdown table of `rows`, in the order given. */
export function renderTable(rows) {
  const head = ['scenario', 'measure', 'tokend', 'baseline', 'ratio', 'target', 'verdict'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const r of rows) lines.push(`| ${[r.scenario, r.measure, r.tokend, r.baseline, r.ratio, r.target, r.verdict].join(' | ')} |`);
  return lines.join('\n');
}
