// Builds native/tokend-fast.c into build/tokend-fast on this machine, when a C compiler is
// available: package.json's `install` script (so every install gets a client for its own
// architecture; the package never ships one) and the last step of `npm run build`.
// Optional by design: without it the shims use curl, then node (slower, same answers). It
// never fails the install: every outcome exits 0, and a binary that does not run here
// (a cross compiler in $CC, a copied tree) is removed rather than left for the shims.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'native', 'tokend-fast.c');
const out = path.join(root, 'build', 'tokend-fast');
const tmp = `${out}.${process.pid}.tmp`;
// The same binary under the helpers' names (a multi-call binary: it looks at its argv[0]).
// `tokend setup git --native` names build/git-credential-tokend, so git starts one process per call
// instead of the sh shim and then this; anything it cannot answer goes to the shim in bin/.
const HELPER_LINKS = ['git-credential-tokend', 'docker-credential-tokend', 'bazel-credential-tokend'].map((n) =>
  path.join(root, 'build', n),
);

/** One line on stderr: npm shows an install script's output only when asked (--foreground-scripts). */
const say = (line) => process.stderr.write(`tokend: ${line}\n`);

/** Does `file` run here? It prints its usage and exits 2 when given no arguments (native/tokend-fast.c). */
function runsHere(file) {
  const r = spawnSync(file, [], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 5000 });
  return r.status === 2 && String(r.stderr).startsWith('usage: tokend-fast');
}

function build() {
  fs.mkdirSync(path.dirname(out), { recursive: true });
  // A client left by an earlier build (or copied from another machine) must not outlive a failed one.
  fs.rmSync(out, { force: true });
  for (const link of HELPER_LINKS) fs.rmSync(link, { force: true });
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean)) {
    const r = spawnSync(cc, ['-O2', '-std=c99', '-Wall', '-Wextra', '-o', tmp, src], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (r.error?.code === 'ENOENT') continue;
    if (r.status !== 0) {
      say(`building the fast helper with ${cc} failed (the helpers will use curl or node instead):\n${r.stderr}`);
      return;
    }
    if (!runsHere(tmp)) {
      say(`${cc} built a build/tokend-fast that does not run on this machine; the helpers will use curl or node instead`);
      return;
    }
    fs.renameSync(tmp, out);
    for (const link of HELPER_LINKS) fs.symlinkSync('tokend-fast', link);
    return;
  }
  say('no C compiler found; the helpers will use curl or node instead of build/tokend-fast');
}

try {
  build();
} catch (err) {
  say(`could not build the fast helper (${err.message}); the helpers will use curl or node instead`);
} finally {
  fs.rmSync(tmp, { force: true });
}
