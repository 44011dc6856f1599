// Loads a CommonJS bundle (dist/daemon/main.bundle.cjs, dist/client/cli.bundle.cjs) with V8's
// code cache, which Node 20 offers only through vm.Script (module.enableCompileCache is Node
// 22+). The build (scripts/bundle.mjs) makes the cache next to the bundle.
//
// V8 checks a cache against its own version and flags and the source's length only, and a
// release build does not check the data's checksum: altered data can abort the process
// (V8_Fatal), never to be handed over unchecked. So the build stamps the bundle with an id (a
// last line `//# tokend-bundle-id <sha256 of the rest>`), and the cache file starts with one
// line `tokend-code-cache 3 <that id> <data length> <data sha256>`. The cache is used only
// when the id, the length and the hash all match: a bundle rebuilt since, or a cache cut
// short or altered, is ignored. Anything wrong with the cache means a plain compile, never an
// error.
//
// CommonJS itself: bin/tokend requires it, since an ES module import of node:fs costs more
// (its ES facade reads every lazy export, fs's streams too).
'use strict';
const fs = require('node:fs');
const { createRequire } = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

const MAGIC = 'tokend-code-cache 3';
const ID_LINE = '//# tokend-bundle-id ';
// Node's own CommonJS wrapper, on the first line so line numbers stay the bundle's.
const WRAP_HEAD = '(function (exports, require, module, __filename, __dirname) { ';
const WRAP_TAIL = '\n});';

/** The data's sha256: catches a cache cut short or altered (not an attacker: see readCache). */
function checksum(data) {
  // node:crypto only here: the daemon loads it anyway; a JavaScript loop over the 0.6 MB
  // cost 7-15 ms of CPU, in the interpreter before V8 optimizes it.
  return require('node:crypto').createHash('sha256').update(data).digest('hex');
}

/** The id the build stamped on the bundle, or undefined. */
function bundleId(source) {
  const at = source.lastIndexOf(ID_LINE);
  if (at < 0) return undefined;
  const id = source.slice(at + ID_LINE.length).trim();
  return /^[0-9a-f]{64}$/.test(id) ? id : undefined;
}

/** The cache's data if it belongs to this very bundle and is whole; otherwise why not. */
function readCache(cacheFile, id, bundleStat) {
  let bytes;
  try {
    const fd = fs.openSync(cacheFile, 'r');
    try {
      const st = fs.fstatSync(fd);
      // Trusted no more than the bundle itself: its owner's, and nobody else may write it.
      if (st.uid !== bundleStat.uid || (st.mode & 0o022) !== 0) return { state: 'untrusted' };
      bytes = fs.readFileSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return { state: 'missing' };
  }
  const nl = bytes.indexOf(10);
  const head = nl > 0 && nl < 200 ? bytes.subarray(0, nl).toString('latin1').split(' ') : [];
  if (head.length !== 5 || `${head[0]} ${head[1]}` !== MAGIC) return { state: 'corrupt' };
  if (id === undefined || head[2] !== id) return { state: 'stale' };
  const data = bytes.subarray(nl + 1);
  if (String(data.length) !== head[3] || checksum(data) !== head[4]) return { state: 'corrupt' };
  return { state: 'found', data };
}

function compile(file, cacheFile) {
  const source = fs.readFileSync(file, 'utf8');
  const cache = cacheFile ? readCache(cacheFile, bundleId(source), fs.statSync(file)) : { state: 'missing' };
  const script = new vm.Script(WRAP_HEAD + source + WRAP_TAIL, { filename: file, cachedData: cache.data });
  const state = cache.data === undefined ? cache.state : script.cachedDataRejected ? 'rejected' : 'used';
  return { script, source, state };
}

function run(script, file) {
  const module = { exports: {}, filename: file, id: file };
  script.runInThisContext().call(module.exports, module.exports, createRequire(file), module, file, path.dirname(file));
  return module.exports;
}

/**
 * Runs the CommonJS bundle `file` as Node would, with the code cache in `cacheFile` when it is
 * valid for it. `cache` says what became of the cache: used, missing, stale, corrupt,
 * untrusted or rejected (by V8: another Node version, other V8 flags).
 */
function loadBundle(file, cacheFile) {
  const { script, state } = compile(file, cacheFile);
  return { exports: run(script, file), cache: state };
}

/**
 * The build's part, in a process of its own: stamps `file` with its id, compiles it and runs
 * its top level (so the functions its imports run are in the cache too), then writes V8's data
 * with the header readCache checks. Returns the data's length.
 */
function writeCache(file, cacheFile) {
  let source = fs.readFileSync(file, 'utf8');
  if (bundleId(source) === undefined) {
    const id = checksum(source);
    source += `${source.endsWith('\n') ? '' : '\n'}${ID_LINE}${id}\n`;
    fs.writeFileSync(file, source);
  }
  const { script } = compile(file, undefined);
  run(script, file);
  const data = script.createCachedData();
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  const head = `${MAGIC} ${bundleId(source)} ${data.length} ${checksum(data)}\n`;
  fs.writeFileSync(tmp, Buffer.concat([Buffer.from(head, 'latin1'), data]), { mode: 0o644 });
  fs.renameSync(tmp, cacheFile);
  return data.length;
}

module.exports = { loadBundle, writeCache };
