/**
 * Time source and timers, replaceable in tests: the daemon's request lifetimes and the console's
 * VT hold deadlines both run on a {@link Clock}. {@link FakeClock} is the test double.
 *
 * @module
 */

/** Time source and timers. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Runs `fn` once after `ms` milliseconds. */
  setTimeout(fn: () => void, ms: number): Timer;
  /** Cancels a timer from {@link Clock.setTimeout}. */
  clearTimeout(id: Timer): void;
}

/** A timer handle of {@link Clock}. */
export type Timer = ReturnType<typeof setTimeout>;

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

/**
 * A clock that moves only when told (for tests): timers fire in due order during
 * {@link FakeClock.advance}, including timers they set that fall due within the same advance.
 */
export class FakeClock implements Clock {
  /** Current time, ms since the epoch. */
  t: number;
  /** Pending timers by id. */
  timers = new Map<number, { at: number; fn: () => void }>();
  #next = 1;

  /** @param start the initial time, ms since the epoch (default 2023-11-14) */
  constructor(start = 1_700_000_000_000) {
    this.t = start;
  }

  now(): number {
    return this.t;
  }

  setTimeout(fn: () => void, ms: number): Timer {
    const id = this.#next++;
    this.timers.set(id, { at: this.t + ms, fn });
    return id as unknown as Timer;
  }

  clearTimeout(id: Timer): void {
    this.timers.delete(id as unknown as number);
  }

  /** Moves time forward by `ms`, firing every timer that falls due, earliest first. */
  advance(ms: number): void {
    const end = this.t + ms;
    while (true) {
      const due = [...this.timers].filter(([, tm]) => tm.at <= end)
        .sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.t = Math.max(this.t, due[1].at);
      due[1].fn();
    }
    this.t = end;
  }
}
