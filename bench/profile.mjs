// Summarise a V8 .cpuprofile (node --cpu-prof): where the busy time goes, by function
// (self and inclusive) and by module (package, node internals, tokend's dist files).
// usage: node bench/profile.mjs FILE.cpuprofile [TOP]
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function moduleOf(url, fn) {
  if (!url) return fn.startsWith('(') ? fn : '(native)';
  if (url.startsWith('node:')) return url;
  const p = url.replace(/^file:\/\//, '');
  const nm = p.lastIndexOf('/node_modules/');
  if (nm >= 0) {
    const rest = p.slice(nm + 14).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  if (p.startsWith(ROOT)) return path.relative(ROOT, p);
  return p;
}

export function summarizeProfile(file, top = 12) {
  const prof = JSON.parse(fs.readFileSync(file, 'utf8'));
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (n) => {
    const cf = n.callFrame;
    const mod = moduleOf(cf.url, cf.functionName);
    return { key: `${cf.functionName || '(anonymous)'} ${mod}:${cf.lineNumber + 1}`, mod, fn: cf.functionName || '(anonymous)' };
  };
  const self = new Map();
  const incl = new Map();
  const mods = new Map();
  let total = 0;
  let idle = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = (prof.timeDeltas[i] ?? 0) / 1000;
    const n = byId.get(prof.samples[i]);
    if (!n) continue;
    total += dt;
    const k = keyOf(n);
    if (k.fn === '(idle)') {
      idle += dt;
      continue;
    }
    self.set(k.key, (self.get(k.key) ?? 0) + dt);
    mods.set(k.mod, (mods.get(k.mod) ?? 0) + dt);
    const seen = new Set();
    for (let id = n.id; id !== undefined; id = parent.get(id)) {
      const kk = keyOf(byId.get(id)).key;
      if (seen.has(kk)) continue;
      seen.add(kk);
      incl.set(kk, (incl.get(kk) ?? 0) + dt);
    }
  }
  const busy = total - idle;
  const rank = (m, filter = () => true) =>
    [...m]
      .filter(([k]) => filter(k))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, ms]) => ({ frame: k, ms: +ms.toFixed(1), pct: +((100 * ms) / busy).toFixed(1) }));
  const ours = (k) => / (dist|bin)\//.test(k) || / bin\//.test(k);
  return {
    file,
    totalMs: +total.toFixed(1),
    busyMs: +busy.toFixed(1),
    self: rank(self),
    modules: rank(mods),
    inclusiveOurs: rank(incl, ours),
  };
}

export function formatProfile(s, title) {
  const lines = [`#### ${title}`, '', `busy ${s.busyMs} ms of ${s.totalMs} ms sampled (${path.basename(s.file)})`, ''];
  const block = (name, rows) => {
    lines.push(`${name}:`, '');
    for (const r of rows) lines.push(`    ${String(r.pct).padStart(5)}%  ${String(r.ms).padStart(8)} ms  ${r.frame}`);
    lines.push('');
  };
  block('by module (self time)', s.modules);
  block('top frames (self time)', s.self);
  block("tokend's own frames (inclusive time)", s.inclusiveOurs);
  return lines.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write('usage: node bench/profile.mjs FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  process.stdout.write(formatProfile(summarizeProfile(file, Number(process.argv[3] ?? 15)), file) + '\n');
}
