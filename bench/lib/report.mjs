// What `npm run bench` prints (markdown) and writes with --json.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { formatProfile } from '../profile.mjs';
import { median, quantile } from './stats.mjs';
import { renderTable } from './table.mjs';

/** The machine the figures come from. */
export function machine() {
  const cpuinfo = fs.existsSync('/proc/cpuinfo') ? fs.readFileSync('/proc/cpuinfo', 'utf8') : '';
  const ver = (cmd, args) => spawnSync(cmd, args, { encoding: 'utf8' }).stdout?.split('\n')[0]?.trim() || 'missing';
  return {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpu: /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? 'unknown',
    memGb: +(os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    os: `${os.type()} ${os.release()}`,
    git: ver('git', ['--version']),
    curl: ver('curl', ['--version']).split(' ').slice(0, 2).join(' '),
  };
}

/**
 * The report as markdown. run: {t0, quick, env, rounds, rows (numbered, in table order),
 * notes, references, profiles, sections, durationS}.
 */
export function renderReport(run) {
  const { t0, quick, env, rounds: Q, rows, notes, references, profiles, sections, durationS } = run;
  const out = [
    `## tokend benchmarks (${quick ? 'quick' : 'full'} run, ${new Date(t0).toISOString()})`,
    '',
    `machine: ${env.nproc} CPUs (${env.cpu}), ${env.memGb} GB, ${env.os}; node ${env.node}; ${env.git}; ${env.curl}`,
    `load generator: bench/loadgen.mjs (raw HTTP/1.1 over the Unix socket, its own process); ${Q.loadRounds} rounds × ${Q.durationMs} ms after ${Q.warmupMs} ms warm-up; medians over rounds`,
    '',
    renderTable(rows),
    '',
  ];
  const misses = missesOf(rows);
  if (misses.length || notes.length) out.push('Targets missed:', '', ...[...misses, ...notes].map((n) => `- ${n}`), '');
  if (references.length) out.push('Reference points (same run):', '', ...references.map((n) => `- ${n}`), '');
  out.push(`total time ${durationS.toFixed(0)} s`, '');
  for (const p of profiles) out.push(formatProfile(p.summary, p.title));
  out.push(...sections);
  return out.join('\n') + '\n';
}

const missesOf = (rows) => rows.flatMap((r) => (r.missText ? [r.missText] : []));

/** The same report, its raw figures included, for --json. */
export function writeJson(file, run) {
  const json = {
    started: new Date(run.t0).toISOString(),
    durationS: run.durationS,
    quick: run.quick,
    machine: run.env,
    rounds: run.rounds,
    rows: run.rows,
    misses: missesOf(run.rows),
    notes: run.notes,
    references: run.references,
    profiles: run.profiles.map((p) => ({ label: p.label, title: p.title, ...p.summary })),
    imports: run.sections.join('\n'),
    raw: slim(run.raw),
    failed: run.failed,
  };
  fs.writeFileSync(file, JSON.stringify(json, null, 2) + '\n');
}

/** Raw figures without per-request arrays bigger than needed. */
function slim(v) {
  if (Array.isArray(v)) return v.length > 500 ? { n: v.length, p50: median(v), p99: quantile(v, 0.99) } : v.map(slim);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, slim(x)]));
  return typeof v === 'number' ? +v.toFixed(3) : v;
}
