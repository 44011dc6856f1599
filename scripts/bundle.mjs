// Bundles the daemon into one file (dist/daemon/main.bundle.js). Node's ESM loader pays
// per module, and zod alone is hundreds of them: the bundle starts in ~140 ms where the
// tsc output takes ~390 ms (bench/, row 8). better-sqlite3 stays outside (native addon).
// bin/tokend falls back to dist/daemon/main.js when the bundle is missing. pg stays outside
// too: a fleet's store imports it when it opens, so a daemon of its own never loads it; and
// @napi-rs/keyring (a native addon per platform), loaded only with settings.key_store "keyring";
// and undici, which src/daemon/outbound.ts loads on the first outbound request.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { isBuiltin } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// zod's `z` namespace re-exports every message locale (`z.locales`, 64 modules, 400 KB of the
// 1.4 MB bundle); the daemon only ever speaks English (zod's default, which it sets from
// locales/en.js itself). Parsing them cost about 20 ms of CPU at every daemon start.
const zodEnglishOnly = {
  name: 'zod-english-only',
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) =>
      /[\\/]node_modules[\\/]zod[\\/]/.test(args.importer)
        ? { path: path.join(path.dirname(args.importer), args.path), namespace: 'zod-locales' }
        : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'zod-locales' }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(path.join(path.dirname(args.path), 'en.js'))};`,
      resolveDir: path.dirname(args.path),
    }));
  },
};

// esbuild turns every `import fs from 'node:fs'` of a CommonJS bundle into a
// `__toESM(require("node:fs"), 1)` of its own: a new object with a getter for each of the
// module's exports (~100 for node:fs), made again in each module that imports it (19 for
// node:fs in the daemon). ~5 ms of CPU at every start, in code V8 has not optimised yet. One
// such object per built-in serves them all: the same getters of the same module, never written
// to. The function is in the banner (inside the module wrapper: its `require`, esbuild's
// `__toESM`, both there by the time a module's top level calls it).
const SHARED_BUILTINS =
  'function __tokendBuiltin(id) { const made = (__tokendBuiltin.made ??= new Map()); let m = made.get(id); if (!m) made.set(id, (m = __toESM(require(id), 1))); return m; }';

/** Each `__toESM(require("<built-in>"), 1)` of `file` as the one shared object (above). */
function shareBuiltins(file) {
  const text = fs.readFileSync(file, 'utf8');
  fs.writeFileSync(
    file,
    text.replace(/__toESM\(require\("([^"]+)"\), 1\)/g, (call, id) => (isBuiltin(id) ? `__tokendBuiltin(${JSON.stringify(id)})` : call)),
  );
}

const common = {
  entryPoints: [path.join(root, 'dist', 'daemon', 'main.js')],
  bundle: true,
  platform: 'node',
  target: 'node20',
  external: ['better-sqlite3', 'pg', '@napi-rs/keyring', 'undici'],
  plugins: [zodEnglishOnly],
  sourcemap: 'linked',
  logLevel: 'warning',
};

await build({
  ...common,
  outfile: path.join(root, 'dist', 'daemon', 'main.bundle.js'),
  format: 'esm',
  // CommonJS dependencies (proper-lockfile) call require(): give the ES module one.
  banner: { js: "import { createRequire as __tokendRequire } from 'node:module'; const require = __tokendRequire(import.meta.url);" },
});

// The same as CommonJS, which bin/code-cache.cjs compiles with V8's code cache (Node 20 has no
// compile cache for ES modules): bin/tokend starts this one when it is there. import() becomes
// require() (vm.Script has no loader for import()); import.meta.url the file's own URL.
const daemon = path.join(root, 'dist', 'daemon', 'main.bundle.cjs');
await build({
  ...common,
  outfile: daemon,
  format: 'cjs',
  supported: { 'dynamic-import': false },
  define: { 'import.meta.url': '__tokendModuleUrl' },
  banner: { js: `const __tokendModuleUrl = require('node:url').pathToFileURL(__filename).href;\n${SHARED_BUILTINS}` },
});
shareBuiltins(daemon);

// The CLI as one CommonJS file too (dist/client/cli.bundle.cjs), which bin/tokend requires when
// it is there: node's ES module loader pays per module (`tokend version` loaded some 30). No
// code cache for it: it compiles lazily in less time than V8 takes to read a cache back. The
// rare commands it imports when used are in the same file, run only when used; packages stay
// outside (zod, loaded only for config.json: test/client-imports.test.ts). Same folder as
// tsc's files, so the `new URL('../../…', import.meta.url)` paths in src/client still hold.
const cli = path.join(root, 'dist', 'client', 'cli.bundle.cjs');
await build({
  entryPoints: [path.join(root, 'dist', 'client', 'cli.js')],
  outfile: cli,
  bundle: true,
  packages: 'external',
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  supported: { 'dynamic-import': false },
  define: { 'import.meta.url': '__tokendModuleUrl' },
  banner: { js: `const __tokendModuleUrl = require('node:url').pathToFileURL(__filename).href;\n${SHARED_BUILTINS}` },
  logLevel: 'warning',
});
shareBuiltins(cli);

// The daemon's cache is made in a process of its own: it runs the bundle's top level.
const daemonCache = path.join(root, 'dist', 'daemon', 'main.bundle.cache');
fs.rmSync(daemonCache, { force: true });
execFileSync(
  process.execPath,
  [
    '-e',
    `require(${JSON.stringify(path.join(root, 'bin', 'code-cache.cjs'))}).writeCache(${JSON.stringify(daemon)}, ${JSON.stringify(daemonCache)});`,
  ],
  { stdio: 'inherit' },
);
