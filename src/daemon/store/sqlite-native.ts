/**
 * better-sqlite3's native module, missing or unloadable: what a user sees when npm did not
 * run its install script (npm 12 runs a dependency's install script only when allowed:
 * README, Install) or when Node was upgraded under a build for another version. One
 * sentence naming the fix, never the loader's stack trace or its list of paths tried.
 */
import { createRequire } from 'node:module';
import path from 'node:path';

/** What the loaders say (the `bindings` package, Node's dlopen): not built, built for another Node, or another machine. */
const NATIVE_FAILURE =
  /Could not locate the bindings file|better_sqlite3\.node|NODE_MODULE_VERSION|did not self-register|invalid ELF header|wrong ELF class|Exec format error/;

export function isNativeModuleError(err: unknown): err is Error {
  if (!(err instanceof Error)) return false;
  const code = (err as NodeJS.ErrnoException).code;
  return NATIVE_FAILURE.test(err.message) || code === 'ERR_DLOPEN_FAILED';
}

/** The folder npm installed tokend's dependencies for: where `npm rebuild better-sqlite3` must run. */
function installFolder(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve('better-sqlite3/package.json');
    return path.dirname(path.dirname(path.dirname(pkg))); // …/node_modules/better-sqlite3/package.json → …
  } catch {
    return undefined;
  }
}

/** The error the daemon stops with: why (the loader's first line), and the two ways to fix it. */
export function nativeModuleError(err: Error): Error {
  // The first line, without the `bindings` package's list of the paths it tried.
  const why = err.message
    .split('\n')[0]!
    .replace(/\.?\s*Tried:.*$/, '')
    .trim();
  const where = installFolder();
  return new Error(
    `better-sqlite3's native module is not built for this Node (${why}), so the daemon cannot open its database. ` +
      'npm 12 skips dependency install scripts unless they are allowed: install tokend with ' +
      '`npm install -g tokend --allow-scripts=tokend,better-sqlite3`' +
      (where
        ? `, or build it where it is: \`cd ${where} && npm rebuild better-sqlite3\``
        : ', or run `npm rebuild better-sqlite3` where tokend is installed') +
      ' (README, Install)',
  );
}
