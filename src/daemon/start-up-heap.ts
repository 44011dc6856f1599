/**
 * V8 grows its young generation when most young objects survive their first collection.
 * During start-up nearly everything allocated survives (config.json's accounts, the grants'
 * summaries), so it grew to its largest (16 MB semi-spaces, ~15 MB resident with 10 000
 * accounts) and stayed that size for the daemon's life, although no request had come yet.
 * Growth is held off while loading and V8's own factor (2, its default) restored once the
 * daemon is ready: under load the young generation still grows as V8 sees fit.
 *
 * V8 reads this flag each time it would grow the young generation; setting it later has no
 * other effect (and, should a node ever ignore it, costs nothing but the memory).
 */
import v8 from 'node:v8';
import vm from 'node:vm';

const V8_DEFAULT_GROWTH_FACTOR = 2;

/**
 * Hold the young generation's size while the accounts and grants load. Not from the first
 * line: evaluating the daemon's modules is the same work for one account or 100 000, and
 * holding it there only added collections to every start (the cold-start bench).
 */
export function holdYoungGeneration(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
}

/**
 * The daemon is ready: let V8 grow the young generation again, and collect what loading left
 * behind. config.json's text and parsed copy, the rows read from the store: 100 MB of
 * garbage with 100 000 accounts, which an idle daemon (no allocation, so no collection)
 * would keep resident for hours. One full collection, once, when that much was loaded.
 */
export function loadingDone(loaded: { accounts: number }): void {
  v8.setFlagsFromString(`--semi-space-growth-factor=${V8_DEFAULT_GROWTH_FACTOR}`);
  if (loaded.accounts < COLLECT_FROM_ACCOUNTS) return;
  setImmediate(() => fullCollection());
}

/** Below this, what loading leaves is too little to be worth a full collection. */
const COLLECT_FROM_ACCOUNTS = 1000;

/** V8's full collection, reached without starting node with --expose-gc (the flag only exposes `gc` to contexts made after it). */
function fullCollection(): void {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as (() => void) | undefined;
  // Twice: the first frees the garbage but leaves the pages it was on half empty (and
  // resident); the second finds them fragmented and compacts them (V8 11, node 20).
  gc?.();
  gc?.();
}
