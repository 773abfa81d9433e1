/**
 * Keeps the VT switch lock ({@link VtGuard}) in step with what the console shows: while at least
 * one pending request is on screen the console's VT is held (switching away is refused with
 * `VT_RELDISP(0)`), bounded by the latest deadline of those requests (and the guard's own
 * `maxHoldMs`); a request that was not on screen before brings the console's VT to the front
 * (when focusing is on); once nothing is pending any more the hold ends and the VT that was in
 * front before is brought back.
 *
 * A hold that ended by itself at its deadline (the guard's `onAutoRelease`) is not taken again
 * for the same requests: only a request that was not on screen before holds again. So a request
 * whose lifetime exceeds the guard's bound cannot keep the machine on the console forever.
 *
 * No I/O of its own: everything goes through the guard (real: libc ioctls; tests: a fake VT).
 *
 * Sources: `man 2 ioctl_console` (`VT_SETMODE`, `VT_RELDISP`, `VT_ACTIVATE`), DESIGN.md §6,
 * `../shared/reference/vt-pam-systemd-vm.md` §1.
 *
 * @module
 */

import type { ReturnFocusResult, VtGuard } from "./vt_guard.ts";

/** A pending request as far as the lock cares: its id and deadline (ms since the epoch). */
export interface Deadline {
  id: string;
  expiresAt: number;
}

/** What the lock is doing, for the status line. */
export interface VtSyncStatus {
  /** True while switching away is refused. */
  held: boolean;
  /** When the hold ends by itself (ms since the epoch), or null. */
  heldUntil: number | null;
  /** The console's VT number. */
  vt: number;
}

/** Options of {@link VtSync}. */
export interface VtSyncOptions {
  /** Bring the console's VT to the front when a new request appears (default true). */
  focus?: boolean;
  /** Called after the lock changed (held, released, deadline moved). */
  onStatus?: (status: VtSyncStatus) => void;
  /** Called when the console's VT came to the front for a new request (input was flushed). */
  onFocused?: () => void;
  /** Called with what `returnFocus` did once nothing is pending. */
  onReturned?: (result: ReturnFocusResult) => void;
  /** Errors of the ioctls (never thrown to the caller of {@link VtSync.update}). */
  onError?: (err: unknown) => void;
}

/** Drives a started {@link VtGuard} from the list of pending requests on screen. */
export class VtSync {
  readonly #guard: VtGuard;
  readonly #focus: boolean;
  readonly #onStatus: (s: VtSyncStatus) => void;
  readonly #onFocused: () => void;
  readonly #onReturned: (r: ReturnFocusResult) => void;
  readonly #onError: (err: unknown) => void;
  /** Ids that were on screen at the last update. */
  #shown = new Set<string>();
  /** Set when the hold ended at its deadline: no new hold until a new request appears. */
  #suppressed = false;
  #deadline: number | null = null;
  #focusing: Promise<void> | null = null;
  #returning = false;
  #empty = true;

  /**
   * @param guard a started guard (the caller disposes it)
   * @param options focusing and callbacks; see {@link VtSyncOptions}
   */
  constructor(guard: VtGuard, options: VtSyncOptions = {}) {
    this.#guard = guard;
    this.#focus = options.focus ?? true;
    this.#onStatus = options.onStatus ?? (() => {});
    this.#onFocused = options.onFocused ?? (() => {});
    this.#onReturned = options.onReturned ?? (() => {});
    this.#onError = options.onError ?? (() => {});
  }

  /** The lock as it is now. */
  get status(): VtSyncStatus {
    return {
      held: this.#guard.held,
      heldUntil: this.#guard.heldUntil,
      vt: this.#guard.ownVt,
    };
  }

  /**
   * To be called by the guard's `onAutoRelease`: the hold reached its deadline. The same
   * requests do not hold again.
   */
  autoReleased(): void {
    this.#suppressed = true;
    this.#deadline = null;
    this.#onStatus(this.status);
  }

  /**
   * The pending requests now on screen (all of them, in any order). Holds, moves the deadline,
   * focuses, releases and returns focus as needed. Never throws.
   */
  update(pending: readonly Deadline[]): void {
    if (this.#guard.disposed) return;
    const fresh = pending.filter((r) => !this.#shown.has(r.id));
    this.#shown = new Set(pending.map((r) => r.id));
    this.#empty = pending.length === 0;
    const before = this.#guard.held;
    const beforeUntil = this.#guard.heldUntil;
    if (this.#empty) {
      this.#suppressed = false;
      this.#deadline = null;
      this.#try(() => this.#guard.release());
      this.#returnFocus();
    } else {
      if (fresh.length > 0) this.#suppressed = false;
      const deadline = Math.max(...pending.map((r) => r.expiresAt));
      if (!this.#suppressed && (!this.#guard.held || deadline !== this.#deadline)) {
        this.#try(() => {
          // hold() first, focus() after: no moment in which a switch away goes through.
          if (this.#guard.hold(deadline)) this.#deadline = deadline;
        });
      }
      if (fresh.length > 0 && this.#focus) this.#focusNow();
    }
    if (before !== this.#guard.held || beforeUntil !== this.#guard.heldUntil) {
      this.#onStatus(this.status);
    }
  }

  /** Resolves once a focus or return in flight has finished (for tests and shutdown). */
  async settled(): Promise<void> {
    while (this.#focusing) await this.#focusing;
  }

  #focusNow(): void {
    if (this.#focusing) return;
    this.#focusing = (async () => {
      try {
        if (await this.#guard.focus()) this.#onFocused();
      } catch (err) {
        this.#onError(err);
      }
    })().finally(() => {
      this.#focusing = null;
      // Everything was decided while the switch was under way: give the screen back now.
      if (this.#empty) this.#returnFocus();
    });
  }

  #returnFocus(): void {
    if (this.#focusing || this.#returning || this.#guard.disposed) return;
    if (this.#guard.held || this.#guard.previousVt === null) return;
    this.#returning = true;
    this.#guard.returnFocus().then(
      (result) => this.#onReturned(result),
      (err) => this.#onError(err),
    ).finally(() => this.#returning = false);
  }

  #try(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#onError(err);
    }
  }
}
