/**
 * The vitest hooks of a file that runs against the real stack: one IdP for the file, a
 * fresh daemon (fast device polling) for each test, both stopped and cleaned up after.
 */
import { startDaemon, type TestDaemon } from './fake-as.js';
import { useDaemon, useIdp } from './fixtures.js';
import type { TestIdp } from './idp.js';

export interface Stack {
  readonly idp: TestIdp;
  readonly t: TestDaemon;
}

/** Call at the top of a `describe`; read `idp` and `t` inside the tests. */
export function useStack(): Stack {
  return { idp: useIdp(), t: useDaemon({ lifetime: 'test', launch: startDaemon }).t };
}
