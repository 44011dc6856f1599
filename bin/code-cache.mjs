// Loads a CommonJS bundle (dist/daemon/main.bundle.cjs) with V8's code cache, which Node 20
// offers only through vm.Script (module.enableCompileCache is Node 22+). The cache is made by
// the build (scripts/bundle.mjs) next to the bundle; compiling the bundle without it is most
// of what a daemon start costs before main() runs.
//
// The cache file: one header line `tokend-code-cache 1 <sha256 of the source> <sha256 of the
// data>\n`, then V8's data. V8 itself checks only the source's length and its own version and
// flags (release builds skip the data's checksum), so a cache is used only when both hashes
// match: a bundle rebuilt since, or a cache cut short or altered, is ignored, never run.
// Anything wrong with the cache means a plain compile, never an error.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import vm from 'node:vm';

const MAGIC = 'tokend-code-cache 1';
// Node's own CommonJS wrapper, on the first line so line numbers stay the bundle's.
const WRAP_HEAD = '(function (exports, require, module, __filename, __dirname) { ';
const WRAP_TAIL = '\n});';

const sha256 = (data) => createHash('sha256').update(data).digest('hex');

/** The cache's data if it belongs to this exact source and is whole; otherwise why not. */
function readCache(cacheFile, sourceHash, bundleStat) {
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
  const head = nl > 0 ? bytes.subarray(0, nl).toString('latin1').split(' ') : [];
  if (head.length !== 4 || `${head[0]} ${head[1]}` !== MAGIC) return { state: 'corrupt' };
  if (head[2] !== sourceHash) return { state: 'stale' };
  const data = bytes.subarray(nl + 1);
  if (head[3] !== sha256(data)) return { state: 'corrupt' };
  return { state: 'found', data };
}

function compile(file, cacheFile) {
  const source = fs.readFileSync(file, 'utf8');
  const sourceHash = sha256(source);
  const cache = cacheFile ? readCache(cacheFile, sourceHash, fs.statSync(file)) : { state: 'missing' };
  const script = new vm.Script(WRAP_HEAD + source + WRAP_TAIL, { filename: file, cachedData: cache.data });
  const state = cache.data === undefined ? cache.state : script.cachedDataRejected ? 'rejected' : 'used';
  return { script, sourceHash, state };
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
export function loadBundle(file, cacheFile) {
  const { script, state } = compile(file, cacheFile);
  return { exports: run(script, file), cache: state };
}

/**
 * Writes the code cache for `file` to `cacheFile` (the build does, in a process of its own):
 * compiles and runs the bundle's top level, so the functions its imports run are in the
 * cache too, then saves V8's data with the header readCache checks.
 */
export function writeCache(file, cacheFile) {
  const { script, sourceHash } = compile(file, undefined);
  run(script, file);
  const data = script.createCachedData();
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, Buffer.concat([Buffer.from(`${MAGIC} ${sourceHash} ${sha256(data)}\n`, 'latin1'), data]), { mode: 0o644 });
  fs.renameSync(tmp, cacheFile);
  return data.length;
}
