/**
 * Once per vitest run (vitest.config.ts `globalSetup`): a folder for the run's shared
 * PostgreSQL cluster, which the first fleet test file to need it starts
 * (postgres.ts `sharedPostgres()`), and its teardown: the cluster stopped, the folder removed.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { stopSharedPostgres } from './postgres.js';

export default function setup(project: TestProject): () => void {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'tkd-pgrun-'));
  // The server may run as its own user (postgres.ts): it must reach the cluster's folder inside.
  fs.chmodSync(root, 0o711);
  project.provide('sharedPostgresRoot', root);
  let done = false;
  const teardown = () => {
    if (done) return;
    done = true;
    stopSharedPostgres(root);
  };
  // A run cut short (Ctrl-C) does not leave a server behind either.
  process.once('exit', teardown);
  return teardown;
}
