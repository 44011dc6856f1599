#!/usr/bin/env node
// `npm run bench`: tokend against its baselines, side by side, in one run (issue 5). Runs
// every scenario of bench/scenarios/ (one module each, listed in scenarios/index.mjs) with
// the set-up they share (bench/context.mjs: an OpenID Provider, daemons under temporary
// TOKEND_HOMEs, a git HTTP server, a git credential-cache daemon, the load generator), then
// prints one markdown table (and --json FILE). See docs/performance.md.
//
//   node bench/run.mjs [--quick] [--json FILE] [--profile] [--only 1,2,...] [--soak MINUTES]
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ROOT, cleanupSync, installSignalHandlers, stopAll } from './lib/processes.mjs';
import { createProfiler } from './lib/profiler.mjs';
import { machine, renderReport, writeJson } from './lib/report.mjs';
import { textRow } from './lib/table.mjs';
import { createContext } from './context.mjs';
import { SCENARIOS } from './scenarios/index.mjs';

const USAGE = `usage: npm run bench -- [--quick] [--json FILE] [--profile] [--only 1,2,...] [--soak MINUTES]

  --quick       fewer and shorter rounds (about a minute)
  --json FILE   also write the table, notes and raw figures as JSON
  --profile     afterwards, run the daemon and the CLI under node --cpu-prof and print
                the top frames (profiles are kept in .bench-out/profiles/)
  --only LIST   run only these scenarios (numbers of the table in docs/performance.md)
  --soak MIN    run the soak (scenario 12, not in the default run) for MIN minutes: mixed
                load with the daemon's RSS and open descriptors sampled (30 for a verdict)
`;

const usageError = (msg) => {
  process.stderr.write(`bench: ${msg}\n${USAGE}`);
  process.exit(2);
};

let opts;
try {
  opts = parseArgs({
    options: {
      quick: { type: 'boolean', default: false },
      json: { type: 'string' },
      profile: { type: 'boolean', default: false },
      only: { type: 'string' },
      soak: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
} catch (err) {
  usageError(err.message);
}
if (opts.help) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const only = opts.only ? new Set(opts.only.split(',').map((s) => Number(s.trim()))) : undefined;
for (const id of only ?? []) if (!SCENARIOS.some((s) => s.id === id)) usageError(`--only: there is no scenario ${id}`);
const soakMinutes = opts.soak === undefined ? undefined : Number(opts.soak);
if (soakMinutes !== undefined && !(soakMinutes > 0)) usageError(`--soak: minutes must be a positive number, got ${opts.soak}`);
// The soak runs only when asked; --soak alone runs only the soak.
const selected = SCENARIOS.filter(
  (s) => (only ? only.has(s.id) : soakMinutes !== undefined ? s.optIn : !s.optIn) && (!s.optIn || soakMinutes !== undefined),
);

// Rounds: medians over several rounds, alternating which side goes first.
const ROUNDS = opts.quick
  ? {
      loadRounds: 3,
      warmupMs: 300,
      durationMs: 1000,
      cliRuns: 20,
      gitRuns: 8,
      refreshRuns: 20,
      stormRounds: 3,
      bigStarts: 2,
      coldRuns: 5,
      commitRuns: 100,
      streamMb: 256,
      streamRounds: 2,
    }
  : {
      loadRounds: 5,
      warmupMs: 500,
      durationMs: 1500,
      cliRuns: 30,
      gitRuns: 15,
      refreshRuns: 40,
      stormRounds: 5,
      bigStarts: 3,
      coldRuns: 10,
      commitRuns: 300,
      streamMb: 1024,
      streamRounds: 3,
    };

installSignalHandlers();
const log = (msg) => process.stderr.write(`bench: ${msg}\n`);
const t0 = Date.now();
const env = machine();
const ctx = createContext({ rounds: ROUNDS, log });
ctx.soakMinutes = soakMinutes;
const results = []; // {scenario, rows}, in run order
const notes = [];
const references = [];
const raw = {};
let profiler;
let failed = false;

/** Run each selected scenario; one that throws gets an ERROR row and the rest still run. */
async function runScenarios() {
  for (const s of selected) {
    const s0 = Date.now();
    log(`scenario ${s.id}: ${s.title}`);
    try {
      const out = await s.run(ctx);
      results.push({ scenario: s, rows: out.rows });
      references.push(...(out.references ?? []));
      Object.assign(raw, out.raw);
    } catch (err) {
      failed = true;
      log(`scenario ${s.id} (${s.title}) failed: ${err?.stack ?? err}`);
      const message = String(err?.message ?? err)
        .split('\n')[0]
        .replaceAll('|', '\\|');
      results.push({ scenario: s, rows: [textRow(`${s.id}. ${s.title}`, 'error', message, 'ERROR')] });
    }
    log(`scenario ${s.id} took ${((Date.now() - s0) / 1000).toFixed(1)} s`);
  }
  if (ctx.idp.started()) {
    const { replays } = await (await ctx.idp()).stats();
    if (replays > 0) {
      failed = true;
      notes.push(`The IdP saw ${replays} refresh-token replay(s): a superseded refresh token was sent again.`);
    }
  }
}

async function runProfiles() {
  const outDir = path.join(ROOT, '.bench-out', 'profiles', new Date().toISOString().replace(/[:.]/g, '-'));
  profiler = createProfiler(outDir, log);
  log(`profiles go to ${path.relative(ROOT, outDir)}`);
  for (const s of selected) if (s.profile) await s.profile(ctx, profiler);
}

/** Rows in table order (by scenario id), numbered id×10 + position for --json. */
function tableRows() {
  return [...results]
    .sort((a, b) => a.scenario.id - b.scenario.id)
    .flatMap(({ scenario, rows }) => rows.map((r, i) => ({ id: scenario.id * 10 + i, ...r })));
}

let exitCode = 0;
try {
  if (!fs.existsSync(path.join(ROOT, 'dist/daemon/main.js')) || !fs.existsSync(path.join(ROOT, 'dist/client/cli.js'))) {
    throw new Error('dist/ is missing: run `npm run build` first');
  }
  log(`machine: ${env.nproc} cpu (${env.cpu}), node ${env.node}; ${opts.quick ? 'quick' : 'full'} run`);
  await runScenarios();
  if (opts.profile) await runProfiles();
} catch (err) {
  failed = true;
  exitCode = 1;
  log(`failed: ${err?.stack ?? err}`);
} finally {
  await ctx.close().catch(() => undefined);
  await stopAll().catch(() => undefined);
  cleanupSync();
}
const report = {
  t0,
  quick: opts.quick,
  env,
  rounds: ROUNDS,
  rows: tableRows(),
  notes,
  references,
  profiles: profiler?.profiles ?? [],
  sections: profiler?.sections ?? [],
  raw,
  failed,
  durationS: (Date.now() - t0) / 1000,
};
process.stdout.write(renderReport(report));
if (opts.json) {
  writeJson(opts.json, report);
  log(`wrote ${opts.json}`);
}
process.exit(exitCode || (failed ? 1 : 0));
