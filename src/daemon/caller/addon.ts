/**
 * The caller addon (native/peer.c, built into build/tokend-peer.node by
 * scripts/build-native.mjs when a C compiler is there). Without it the daemon runs as before,
 * but cannot tell who calls it or refuse another uid, and stays dumpable: `addonWarning` says
 * so in `/v1/health` (and so `tokend doctor`).
 */
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The kernel's word on a connected peer; `at` is the boot-time clock in ticks when it was read. */
export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
  at: number;
}

export interface PeerAddon {
  peer(fd: number): PeerCred | null;
  nonDumpable(): boolean;
  clockTicks(): number;
}

/** Test hook (documented in docs/security.md): `1` makes the daemon start as if the addon had not been built. */
export const NO_ADDON_ENV = 'TOKEND_TEST_NO_PEER_ADDON';
export const ADDON_FILE = path.join('build', 'tokend-peer.node');

/** The package's root: the first folder up from this module with a package.json (dist/daemon/caller, or the bundle's dist/daemon). */
function packageRoot(): string | undefined {
  for (let dir = path.dirname(fileURLToPath(import.meta.url)); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return undefined;
  }
}

/** The addon, or why there is none. */
export function loadAddon(env: NodeJS.ProcessEnv = process.env): { addon: PeerAddon } | { missing: string } {
  if (env[NO_ADDON_ENV] === '1') return { missing: `${NO_ADDON_ENV}=1` };
  const root = packageRoot();
  const file = root && path.join(root, ADDON_FILE);
  if (!file || !fs.existsSync(file)) return { missing: `${file ?? ADDON_FILE} was not built (no C compiler at install?)` };
  try {
    return { addon: createRequire(import.meta.url)(file) as PeerAddon };
  } catch (err) {
    return { missing: `${file} does not load: ${(err as Error).message}` };
  }
}

/** The `/v1/health` warning of a daemon without the addon (src/protocol/local-trust.ts's prefix). */
export function addonWarning(missing: string, prefix: string): string {
  return (
    `${prefix}: the daemon cannot tell which program calls it (${missing}): audit rows name only the User-Agent a caller ` +
    'declared, connections from another uid are not refused by the daemon itself (only by the socket file mode), and ' +
    'other processes of the user can read its memory; install a C compiler (cc) and run `npm rebuild tokend` ' +
    '(or `node scripts/build-native.mjs` in its folder), then restart the daemon'
  );
}
