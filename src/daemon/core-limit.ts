/**
 * A core dump of the daemon holds everything it has in memory: access and refresh tokens,
 * client secrets, the master key. Every way tokend starts it sets the core size limit to 0
 * (bin/tokend's sh part, the clients' autostart, `LimitCORE=0` in the systemd unit, the
 * launchd plist's resource limits); node itself cannot set it (it has no setrlimit). The
 * daemon reads the limit it got, and a non-zero one becomes a `/v1/health` warning (and a
 * `tokend doctor` failure) instead of passing unnoticed.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { CORE_LIMIT_WARNING } from '../protocol/local-trust.js';

/**
 * The soft core file size limit of this process as the kernel words it ("0", "unlimited",
 * a number of bytes or blocks), or undefined when it cannot be told. Linux: /proc/self/limits
 * (no process started); other Unixes: `ulimit -c` of a shell, which inherits ours.
 */
export async function readCoreLimit(platform: NodeJS.Platform = process.platform): Promise<string | undefined> {
  if (platform === 'linux') {
    try {
      // "Max core file size        0                    unlimited            bytes"
      const line = fs
        .readFileSync('/proc/self/limits', 'utf8')
        .split('\n')
        .find((l) => l.startsWith('Max core file size'));
      return line?.slice('Max core file size'.length).trim().split(/\s+/)[0];
    } catch {
      return undefined;
    }
  }
  if (platform === 'win32') return undefined;
  return new Promise((resolve) => {
    execFile('/bin/sh', ['-c', 'ulimit -c'], { timeout: 5000 }, (err, stdout) => resolve(err ? undefined : stdout.trim() || undefined));
  });
}

/** The health warning for a core size limit that is not 0; undefined when it is 0 or unknown. */
export function coreLimitWarning(limit: string | undefined): string | undefined {
  if (limit === undefined || limit === '0') return undefined;
  return (
    `${CORE_LIMIT_WARNING} (core file size limit ${limit}): a crash of the daemon would write its memory, tokens, ` +
    'client secrets and the master key included, to a core file; restart it with a limit of 0: ' +
    "`tokend daemon` (bin/tokend sets it), the clients' autostart or `tokend service install`, or `ulimit -c 0` before node"
  );
}
