// Builds native/tokend-fast.c into build/tokend-fast, and native/peer.c into the daemon's addon
// build/tokend-peer.node, on this machine when a C compiler is available: package.json's `install` script (so every install gets a client for its own
// architecture; the package never ships one) and the last step of `npm run build`.
// Optional by design: without it the shims use curl, then node (slower, same answers). It
// never fails the install: every outcome exits 0, and a binary that does not run here
// (a cross compiler in $CC, a copied tree) is removed rather than left for the shims.
// Without the addon the daemon runs as before but cannot tell who calls it (docs/security.md).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const src = path.join(root, 'native', 'tokend-fast.c');
const out = path.join(root, 'build', 'tokend-fast');
const tmp = `${out}.${process.pid}.tmp`;
// The same binary under the helpers' names (a multi-call binary: it looks at its argv[0]).
// `tokend setup git --native` names build/git-credential-tokend, so git starts one process per call
// instead of the sh shim and then this; anything it cannot answer goes to the shim in bin/.
// build/tokend is the `tokend` command's fast path: `tokend setup cli` points the `tokend` on PATH at it.
const HELPER_LINKS = ['tokend', 'git-credential-tokend', 'docker-credential-tokend', 'bazel-credential-tokend'].map((n) =>
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

const ADDON_SRC = path.join(root, 'native', 'peer.c');
const ADDON = path.join(root, 'build', 'tokend-peer.node');
const ADDON_TMP = `${ADDON}.${process.pid}.tmp.node`;
const ADDON_LOST = 'the daemon will run without knowing its callers (docs/security.md)';

/**
 * Node's C headers (node_api.h), where this node has them: beside its binary (an install or an
 * official tarball: PREFIX/include/node), npm's `nodedir`, or node-gyp's download cache. The
 * addon uses Node-API only, so any node ≥ 20's headers build it; no node-gyp, no network.
 */
function nodeHeaders() {
  const version = process.versions.node;
  const candidates = [
    path.resolve(path.dirname(process.execPath), '..', 'include', 'node'),
    process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, 'include', 'node'),
    path.join(os.homedir(), '.cache', 'node-gyp', version, 'include', 'node'),
    '/usr/include/node',
    '/usr/local/include/node',
  ].filter(Boolean);
  return candidates.find((dir) => fs.existsSync(path.join(dir, 'node_api.h')));
}

function buildAddon() {
  fs.rmSync(ADDON, { force: true });
  const headers = nodeHeaders();
  if (!headers) {
    say(`node's C headers (node_api.h) were not found; ${ADDON_LOST}`);
    return;
  }
  // Node-API symbols come from the node binary that loads the addon.
  const link = process.platform === 'darwin' ? ['-bundle', '-undefined', 'dynamic_lookup'] : ['-shared', '-fPIC'];
  for (const cc of [process.env.CC, 'cc', 'gcc', 'clang'].filter(Boolean)) {
    const r = spawnSync(cc, ['-O2', '-std=c99', '-Wall', '-Wextra', ...link, `-I${headers}`, '-o', ADDON_TMP, ADDON_SRC], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    if (r.error?.code === 'ENOENT') continue;
    if (r.status !== 0) {
      say(`building the caller addon with ${cc} failed (${ADDON_LOST}):\n${r.stderr}`);
      return;
    }
    try {
      if (typeof createRequire(import.meta.url)(ADDON_TMP).peer !== 'function') throw new Error('no peer()');
    } catch (err) {
      say(`${cc} built a caller addon that does not load here (${err.message}); ${ADDON_LOST}`);
      return;
    }
    fs.renameSync(ADDON_TMP, ADDON);
    return;
  }
  say(`no C compiler found; ${ADDON_LOST}`);
}

try {
  build();
} catch (err) {
  say(`could not build the fast helper (${err.message}); the helpers will use curl or node instead`);
} finally {
  fs.rmSync(tmp, { force: true });
}
try {
  buildAddon();
} catch (err) {
  say(`could not build the caller addon (${err.message}); ${ADDON_LOST}`);
} finally {
  fs.rmSync(ADDON_TMP, { force: true });
}
