import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One PostgreSQL cluster for the fleet files that share one (test/support/postgres.ts).
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests start real daemons and IdPs; two cores are shared, so
    // run files in a few forks rather than one per core-hungry worker.
    pool: 'forks',
    maxWorkers: 2,
    fileParallelism: true,
    // Test files share their worker's module cache (oidc-provider, the daemon's own modules):
    // importing them again for each file cost about a fifth of the suite's CPU. No test
    // mocks a module or changes process-wide state it does not restore.
    isolate: false,
  },
});
