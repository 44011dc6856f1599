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
  sourcemap: 'linked',
  logLevel: 'warning',
});
