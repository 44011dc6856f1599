// Builds native/tokend-fast.c into build/tokend-fast when a C compiler is available.
// Optional by design: without it the shims use curl, then node (slower, same answers).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'native', 'tokend-fast.c');
const out = path.join(root, 'build', 'tokend-fast');
fs.mkdirSync(path.dirname(out), { recursive: true });
for (const cc of [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean)) {
  const r = spawnSync(cc, ['-O2', '-std=c99', '-Wall', '-Wextra', '-o', out, src], { stdio: ['ignore', 'ignore', 'pipe'] });
  if (r.status === 0) {
    process.exit(0);
  }
  if (r.error?.code !== 'ENOENT') {
    process.stderr.write(`tokend: building the fast helper with ${cc} failed (the helpers will use curl or node instead):\n${r.stderr}`);
    process.exit(0);
  }
}
fs.rmSync(out, { force: true });
process.stderr.write('tokend: no C compiler found; the helpers will use curl or node instead of build/tokend-fast\n');
