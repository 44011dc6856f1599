/**
 * The vitest hooks of a file that runs against the real stack: one IdP for the file, a
 * fresh daemon (fast device polling) for each test, both stopped and cleaned up after.
 */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { startDaemon, type TestDaemon } from './fake-as.js';
import { startIdp, type TestIdp } from './idp.js';

export interface Stack {
  readonly idp: TestIdp;
  readonly t: TestDaemon;
}

/** Call at the top of a `describe`; read `idp` and `t` inside the tests. */
export function useStack(): Stack {
  const stack = {} as { idp: TestIdp; t: TestDaemon };
  beforeAll(async () => {
    stack.idp = await startIdp();
  });
  afterAll(async () => {
    await stack.idp?.close();
  });
  beforeEach(async () => {
    stack.t = await startDaemon();
  });
  afterEach(async () => {
    await stack.t?.cleanup();
  });
  return stack;
}
