import { defineConfig } from 'vitest/config';
import SlowFirstSequencer from './test/support/sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One PostgreSQL cluster for the fleet files that share one (test/support/postgres.ts).
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real daemons and IdPs. On two cores, three forks keep both
    // busy while a file waits on a process or a clock (2026-12-07, quiet, whole suite: 2
    // forks 418 s, 3 forks 371 s, 4 forks 393 s with more CPU spent: docs/reliability.md).
    pool: 'forks',
    maxWorkers: 3,
    fileParallelism: true,
    // Test files share their worker's module cache (oidc-provider, the daemon's own modules):
    // importing them again for each file cost about a fifth of the suite's CPU. No test
    // mocks a module or changes process-wide state it does not restore.
    isolate: false,
    // The slowest files first even on a fresh clone, where vitest has no durations cached
    // (test/support/sequencer.ts): a long file started last sets the run's tail.
    sequence: { sequencer: SlowFirstSequencer },
  },
});
