/**
 * Bounded waits: the agent never lets a client call wait longer than it said (clients give up
 * after ~25 s; the agent answers before that).
 *
 * @module
 */

/** What {@link bounded} returns when the time ran out. */
export const TIMEOUT: unique symbol = Symbol("timeout");

/**
 * Waits for `promise` at most `ms` milliseconds (the timer is cleared either way).
 *
 * @returns the promise's value, or {@link TIMEOUT}
 * @throws whatever `promise` rejects with, if it does so in time
 */
export async function bounded<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMEOUT> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<typeof TIMEOUT>((resolve) => timer = setTimeout(() => resolve(TIMEOUT), ms)),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
