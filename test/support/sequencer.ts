/**
 * The order vitest hands test files to its workers. Two workers take the files one after the
 * other, so the run ends when the last long file ends: long files must start first. vitest's
 * own order (BaseSequencer) does that from the durations it cached in an earlier run, but a
 * fresh clone (CI) has none, and it then runs larger files first: crash-loop.test.ts (one
 * test of about 27 s, a small file) came among the last and set the run's tail. Here a file
 * with no cached duration takes the one below, measured on a quiet run of the whole suite
 * (docs/reliability.md), so the slow files still go first; the rest keep vitest's order.
 */
import path from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/** Seconds per file (start to end, quiet machine, two workers) of the files over 15 s. */
const KNOWN_SECONDS: Record<string, number> = {
  'fleet-faults.test.ts': 51,
  'e2e-faults.test.ts': 40,
  'e2e-real-debrid.test.ts': 38,
  'doctor.test.ts': 36,
  'cli-help.test.ts': 31,
  'crash-loop.test.ts': 27,
  'login-fake-as.test.ts': 25,
  'e2e-amp.test.ts': 25,
  'e2e-core.test.ts': 21,
  'login-device.test.ts': 21,
  'e2e-endpoint-identity.test.ts': 20,
  'e2e-cal-com.test.ts': 20,
  'e2e-access.test.ts': 19,
  'login-restart.test.ts': 19,
  'e2e-dpop.test.ts': 19,
  'e2e-proxy.test.ts': 19,
  'e2e-grant-identity.test.ts': 17,
  'cli-habits.test.ts': 17,
  'e2e-disk-faults.test.ts': 16,
  'login-browser.test.ts': 16,
};

export default class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const ordered = await super.sort(files);
    const cache = this.ctx.cache;
    const root = this.ctx.config.root;
    const cached = (f: TestSpecification) => cache.getFileTestResults(`${f.project.name}:${path.relative(root, f.moduleId)}`);
    // Only when vitest has no duration for some file: otherwise its order (failed first, then
    // longest first, from this checkout's own runs) stands.
    if (ordered.every((f) => cached(f) !== undefined)) return ordered;
    const known = (f: TestSpecification) => (cached(f) === undefined ? KNOWN_SECONDS[path.basename(f.moduleId)] : undefined);
    const first = ordered.filter((f) => known(f) !== undefined).sort((a, b) => known(b)! - known(a)!);
    return [...first, ...ordered.filter((f) => known(f) === undefined)];
  }
}
