// The tests' own harness, for the bench: the daemon harness (test/support/daemon.ts), the
// git HTTP server (test/support/git-server.ts) and, in the IdP's process, the OpenID
// Provider (test/support/idp.ts). One copy of each serves both, so the bench measures
// against exactly what the tests pin down.
//
// How plain node runs them: the bench is .mjs without a TypeScript loader, so this module
// registers ./typescript-hooks.mjs (node:module register(), Node ≥ 20.6), which compiles
// each .ts file with esbuild (already a devDependency, scripts/bundle.mjs) as it is
// imported. Nothing is written to disk and the files run from where they are, so their
// own paths (ROOT, bin/tokend) stay right. The imports below must be dynamic: static
// imports are loaded before any code here runs, that is before the hooks exist.
import { register } from 'node:module';

register('./typescript-hooks.mjs', import.meta.url);

/** Import a module of test/support/ by name, e.g. `await supportModule('idp')`. */
export const supportModule = (name) => import(new URL(`../../test/support/${name}.ts`, import.meta.url).href);

export const { DaemonProcess, tokendEnv, waitForHealth, writeSettings } = await supportModule('daemon');
export const { isolatedGitEnv, startGitServer } = await supportModule('git-server');
