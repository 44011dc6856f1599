// What --profile runs after the table: each scenario's profile(ctx, profiler) runs its
// processes under node --cpu-prof through profiler.run(), whose summaries (bench/profile.mjs)
// are printed after the table and kept in --json; the .cpuprofile files stay in `outDir`.
import fs from 'node:fs';
import path from 'node:path';
import { summarizeProfile } from '../profile.mjs';

export function createProfiler(outDir, log) {
  fs.mkdirSync(outDir, { recursive: true });
  const profiles = []; // {label, title, summary}
  const sections = []; // free text, e.g. the import-cost table
  return {
    profiles,
    sections,
    /**
     * Run `fn(cpuArgs)`, where cpuArgs(intervalUs) are the node options that write a
     * .cpuprofile into a folder of this label, then summarise the newest profile written there.
     */
    async run(label, title, fn) {
      const dir = path.join(outDir, label);
      fs.mkdirSync(dir, { recursive: true });
      const before = new Set(fs.readdirSync(dir));
      await fn((intervalUs = 1000) => ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', String(intervalUs)]);
      const written = fs.readdirSync(dir).filter((n) => n.endsWith('.cpuprofile') && !before.has(n));
      if (!written.length) return log(`profile ${label}: no .cpuprofile written`);
      // CPU.DATE.TIME.PID.TID.SEQ.cpuprofile: the main thread's (TID 0), not a worker thread's.
      const main = written.filter((n) => /\.\d+\.0\.\d+\.cpuprofile$/.test(n)).sort();
      profiles.push({ label, title, summary: summarizeProfile(path.join(dir, (main.length ? main : written.sort()).at(-1)), 12) });
    },
    section(text) {
      sections.push(text);
    },
  };
}
