// Bundles the daemon into one file (dist/daemon/main.bundle.js). Node's ESM loader pays
// per module, and zod alone is hundreds of them: the bundle starts in ~140 ms where the
// tsc output takes ~390 ms (bench/, row 8). better-sqlite3 stays outside (native addon).
// bin/tokend falls back to dist/daemon/main.js when the bundle is missing. pg stays outside
// too: a fleet's store imports it when it opens, so a daemon of its own never loads it; and
// @napi-rs/keyring (a native addon per platform), loaded only with settings.key_store "keyring";
// and undici, which src/daemon/outbound.ts loads on the first outbound request.
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

await build({
  entryPoints: [path.join(root, 'dist', 'daemon', 'main.js')],
  outfile: path.join(root, 'dist', 'daemon', 'main.bundle.js'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: ['better-sqlite3', 'pg', '@napi-rs/keyring', 'undici'],
  // CommonJS dependencies (proper-lockfile) call require(): give the ES module one.
  banner: { js: "import { createRequire as __tokendRequire } from 'node:module'; const require = __tokendRequire(import.meta.url);" },
  plugins: [zodEnglishOnly],
  sourcemap: 'linked',
  logLevel: 'warning',
});
