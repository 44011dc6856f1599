import { expect } from 'vitest';

/** What `p` rejects with, which must be a `kind` (a promise that resolves fails the test too). */
export async function rejectionOf<E>(p: Promise<unknown>, kind: abstract new (...args: never[]) => E): Promise<E> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(kind);
  return err as E;
}
