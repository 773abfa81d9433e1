/**
 * Holds the console's VT while a request is on screen, brings it to the front, and gives the
 * screen back afterwards. Built on {@link VtControl} (`vt.ts`) and an injectable clock.
 *
 * ## How console/main.ts uses it
 *
 * ```ts
 * import { openLibcVt } from "./vt.ts";
 * import { VtGuard } from "./vt_guard.ts";
 *
 * // At startup, before the first request is shown (needs --allow-ffi=<libc path>, see
 * // deploy/permissions.ts). Throws when fd 0 is not a VT or not the controlling terminal: in
 * // production that is fatal; the demo (a terminal emulator) runs without a guard.
 * const guard = new VtGuard(openLibcVt(), { onAutoRelease: () => app.redraw() });
 * guard.start();
 *
 * // A request is on screen (hold first, then focus: no window in which a switch goes through).
 * guard.hold(request.expiresAt); // ms since the epoch; call again when another request is shown
 * if (focusOnNewRequest) await guard.focus(); // VT_ACTIVATE(own), remembers the VT in front
 *
 * // Nothing is on screen any more (decided, expired or cancelled):
 * guard.release(); // VT_AUTO again: switching away is free
 * await guard.returnFocus(); // back to the VT that was in front before focus(), if still ours
 *
 * // Every way out: App.stop() (already called by main.ts's SIGINT/SIGTERM/SIGHUP listeners)
 * // and main's finally block call guard.dispose(). It is idempotent and closes the VtControl.
 * ```
 *
 * `start()` also registers `unload` and `error` listeners on `globalThis` that call `dispose()`
 * (Deno fires `unload` on `Deno.exit()` and at the natural end, not on a default-action signal
 * or an uncaught error; measured with Deno 2.9.6). Pass `exitSignals` to have the guard itself
 * restore `VT_AUTO` and exit on SIGTERM/SIGINT/SIGHUP (the test fixture does); main.ts already
 * listens to those and should call `dispose()` from its own handler instead. If the process dies
 * anyway (SIGKILL, SAK), the kernel finds the VT owner gone at the next switch request and resets
 * the VT to `VT_AUTO` itself (`reset_vc()`).
 *
 * ## Signals
 *
 * Both the release and the acquire signal are SIGUSR2 (`VtControl.setMode("process")` allows
 * nothing else). Never SIGUSR1: Deno 2.9 opens a V8 inspector on SIGUSR1, and the kernel sends
 * the VT signal on behalf of anyone who asks for a switch (DESIGN.md §6). A SIGUSR2 listener must
 * exist whenever the VT is in `VT_PROCESS`: without one, SIGUSR2 kills Deno (measured: exit 140).
 * Every SIGUSR2 is answered with `VT_RELDISP(0)` while held and `VT_RELDISP(1)` otherwise; EINVAL
 * means no release was pending (it was the acquire signal, or a request `VT_SETMODE` dropped) and
 * is ignored. The guard never sends `VT_ACKACQ`: with a release pending the kernel would take it
 * as "allow".
 *
 * Sources: `man 2 ioctl_console`, `<linux/vt.h>`, kernel `drivers/tty/vt/vt_ioctl.c`
 * (`vt_reldisp()`, `VT_SETMODE`), `../shared/reference/vt-pam-systemd-vm.md` §1–§2.
 *
 * @module
 */

import {
  ERRNO,
  VT_RELDISP_ALLOW,
  VT_RELDISP_REFUSE,
  type VtControl,
  VtError,
  type VtModeInfo,
} from "./vt.ts";
import { type Clock, systemClock, type Timer } from "../lib/clock.ts";

/** Signals that end the process when {@link VtGuardOptions.exitSignals} lists them. */
export type ExitSignal = "SIGTERM" | "SIGINT" | "SIGHUP";

/** Every signal the guard ever listens to. SIGUSR1 is deliberately not representable. */
export type GuardSignal = "SIGUSR2" | ExitSignal;

/** Linux signal numbers of {@link ExitSignal} (`man 7 signal`), for the exit code 128 + n. */
export const EXIT_SIGNAL_NUMBERS: Readonly<Record<ExitSignal, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGTERM: 15,
};

/** Where the guard listens for signals (real: {@link denoSignals}; tests: a fake). */
export interface SignalSource {
  /** Calls `listener` whenever `signal` arrives. */
  add(signal: GuardSignal, listener: () => void): void;
  /** Stops calling `listener` for `signal`. */
  remove(signal: GuardSignal, listener: () => void): void;
}

/** {@link SignalSource} over `Deno.addSignalListener` / `Deno.removeSignalListener`. */
export const denoSignals: SignalSource = {
  add: (signal, listener) => Deno.addSignalListener(signal, listener),
  remove: (signal, listener) => Deno.removeSignalListener(signal, listener),
};

/** Where the guard listens for `unload` and `error` (default `globalThis`). */
export type LifecycleEvents = Pick<EventTarget, "addEventListener" | "removeEventListener">;

/** Counts of the answers given to SIGUSR2, for diagnostics and tests. */
export interface VtGuardStats {
  /** Release requests refused with `VT_RELDISP(0)` while held. */
  refused: number;
  /** Release requests allowed with `VT_RELDISP(1)` while not held. */
  allowed: number;
  /** Signals with no release pending (acquire signals, stale requests): EINVAL, ignored. */
  notPending: number;
}

/** What {@link VtGuard.returnFocus} did. */
export type ReturnFocusResult =
  /** The VT that was in front before {@link VtGuard.focus} is in front again. */
  | "returned"
  /** Nothing to return to: focus() did not switch, or returnFocus() already ran. */
  | "none"
  /** The user had already left the console's VT: the guard did not move them. */
  | "elsewhere"
  /** The kernel did not switch within `focusTimeoutMs` (e.g. the target VT refused). */
  | "timeout";

/** Options of {@link VtGuard}. */
export interface VtGuardOptions {
  /** Time source for deadlines and polling (default {@link systemClock}). */
  clock?: Clock;
  /** Signal listeners (default {@link denoSignals}). */
  signals?: SignalSource;
  /** Target of the `unload`/`error` listeners (default `globalThis`). */
  events?: LifecycleEvents;
  /**
   * Signals on which the guard restores `VT_AUTO` and ends the process with `exit(128 + n)`
   * (default none: main.ts handles its signals and calls {@link VtGuard.dispose}).
   */
  exitSignals?: readonly ExitSignal[];
  /** How to end the process for `exitSignals` (default `Deno.exit`). */
  exit?: (code: number) => void;
  /** Upper bound of one hold, ms, whatever the deadline (default 600 000 = 10 min). */
  maxHoldMs?: number;
  /** How long {@link VtGuard.focus}/{@link VtGuard.returnFocus} wait for a switch, ms (2 000). */
  focusTimeoutMs?: number;
  /** Interval of `VT_GETSTATE` polls while waiting for a switch, ms (default 50). */
  pollMs?: number;
  /** Called after a hold ended by itself at its deadline (the VT is then in `VT_AUTO`). */
  onAutoRelease?: () => void;
  /**
   * Errors that cannot be thrown to a caller (in the signal handler, the deadline timer, the
   * exit paths). Default: `console.error` (the journal, in production).
   */
  onError?: (err: unknown) => void;
}

/** Defaults of {@link VtGuardOptions}. */
export const VT_GUARD_DEFAULTS = {
  maxHoldMs: 600_000,
  focusTimeoutMs: 2_000,
  pollMs: 50,
} as const;

/**
 * The switch lock of the console's VT.
 *
 * States: created → {@link start} → idle (`VT_AUTO`) ⇄ held (`VT_PROCESS`, switches refused)
 * → {@link dispose} (`VT_AUTO`, listeners removed, {@link VtControl} closed). The guard owns the
 * `VtControl` it is given.
 */
export class VtGuard {
  readonly #vt: VtControl;
  readonly #clock: Clock;
  readonly #signals: SignalSource;
  readonly #events: LifecycleEvents;
  readonly #exitSignals: readonly ExitSignal[];
  readonly #exit: (code: number) => void;
  readonly #maxHoldMs: number;
  readonly #focusTimeoutMs: number;
  readonly #pollMs: number;
  readonly #onAutoRelease: () => void;
  readonly #onError: (err: unknown) => void;
  readonly #exitListeners = new Map<ExitSignal, () => void>();
  readonly #stats: VtGuardStats = { refused: 0, allowed: 0, notPending: 0 };
  #ownVt = 0;
  #started = false;
  #disposed = false;
  #held = false;
  #heldUntil: number | null = null;
  #timer: Timer | null = null;
  #previousVt: number | null = null;

  /**
   * Creates the guard; nothing happens until {@link start}.
   *
   * @param vt the VT control (owned by the guard from now on: {@link dispose} closes it)
   * @param options clock, signal source, bounds and callbacks; see {@link VtGuardOptions}
   */
  constructor(vt: VtControl, options: VtGuardOptions = {}) {
    this.#vt = vt;
    this.#clock = options.clock ?? systemClock;
    this.#signals = options.signals ?? denoSignals;
    this.#events = options.events ?? globalThis;
    this.#exitSignals = options.exitSignals ?? [];
    this.#exit = options.exit ?? ((code) => Deno.exit(code));
    this.#maxHoldMs = options.maxHoldMs ?? VT_GUARD_DEFAULTS.maxHoldMs;
    this.#focusTimeoutMs = options.focusTimeoutMs ?? VT_GUARD_DEFAULTS.focusTimeoutMs;
    this.#pollMs = options.pollMs ?? VT_GUARD_DEFAULTS.pollMs;
    this.#onAutoRelease = options.onAutoRelease ?? (() => {});
    this.#onError = options.onError ?? ((err) => console.error("vt_guard:", err));
  }

  /** The number of the console's VT (1–63); 0 before {@link start}. */
  get ownVt(): number {
    return this.#ownVt;
  }

  /** True while switches away are refused. */
  get held(): boolean {
    return this.#held;
  }

  /** When the current hold ends by itself (clock ms), or null when not held. */
  get heldUntil(): number | null {
    return this.#heldUntil;
  }

  /** The VT {@link returnFocus} would switch back to, or null. */
  get previousVt(): number | null {
    return this.#previousVt;
  }

  /** A copy of the answer counts. */
  get stats(): VtGuardStats {
    return { ...this.#stats };
  }

  /** True after {@link dispose}. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /**
   * Finds the console's VT (`fstat` of its fd), puts it in `VT_AUTO`, and starts listening:
   * SIGUSR2, `unload`, `error`, and the `exitSignals`. Idempotent.
   *
   * @throws {VtError} ENOTTY when the fd is not a VT; EPERM when it is not the controlling
   *   terminal (and the process lacks CAP_SYS_TTY_CONFIG)
   * @throws {Error} after {@link dispose}
   */
  start(): void {
    if (this.#disposed) throw new Error("VtGuard: start() after dispose()");
    if (this.#started) return;
    this.#ownVt = this.#vt.vtNumber();
    this.#vt.setMode("auto");
    // The SIGUSR2 listener goes in before the VT can ever be in VT_PROCESS.
    this.#signals.add("SIGUSR2", this.#onSwitchSignal);
    this.#events.addEventListener("unload", this.#onLifecycleEnd);
    this.#events.addEventListener("error", this.#onLifecycleEnd);
    for (const signal of this.#exitSignals) {
      if (this.#exitListeners.has(signal)) continue;
      const listener = () => this.#exitOn(signal);
      this.#exitListeners.set(signal, listener);
      this.#signals.add(signal, listener);
    }
    this.#started = true;
  }

  /**
   * Holds the VT until `deadline` (or {@link VtGuardOptions.maxHoldMs} from now, if earlier):
   * `VT_SETMODE(VT_PROCESS)` with SIGUSR2, and every switch away answered `VT_RELDISP(0)`. While
   * held, a later call replaces the deadline. At the deadline the guard releases by itself and
   * calls `onAutoRelease`.
   *
   * @param deadline clock time in ms since the epoch, normally the request's expiry
   * @returns false, without holding, when the deadline is not in the future
   * @throws {VtError} when `VT_SETMODE` fails (the guard then does not hold)
   * @throws {Error} before {@link start} or after {@link dispose}
   */
  hold(deadline: number): boolean {
    this.#assertRunning("hold");
    const now = this.#clock.now();
    if (!(deadline > now)) return false;
    const until = Math.min(deadline, now + this.#maxHoldMs);
    if (!this.#held) {
      this.#vt.setMode("process");
      this.#held = true;
    }
    this.#clearTimer();
    this.#heldUntil = until;
    this.#timer = this.#clock.setTimeout(() => this.#expire(), until - now);
    return true;
  }

  /**
   * Ends the hold: from now on switch requests go through (`VT_SETMODE(VT_AUTO)`; a signal that
   * still arrives is answered `VT_RELDISP(1)`). Does nothing when not held.
   *
   * @throws {VtError} when `VT_SETMODE(VT_AUTO)` fails (the guard still counts as released and
   *   allows every switch it is asked about)
   */
  release(): void {
    this.#clearTimer();
    this.#heldUntil = null;
    if (!this.#held) return;
    this.#held = false;
    if (!this.#disposed) this.#vt.setMode("auto");
  }

  /**
   * Brings the console's VT to the front (`VT_ACTIVATE`) and waits, polling `VT_GETSTATE`, until
   * it is there or `focusTimeoutMs` has passed. When it switched, it remembers the VT that was in
   * front for {@link returnFocus} and discards pending input (`tcflush(TCIFLUSH)`), so keys meant
   * for the desktop do not land in the console.
   *
   * @returns true when the console's VT is in front
   * @throws {VtError} when an ioctl fails
   * @throws {Error} before {@link start} or after {@link dispose}
   */
  async focus(): Promise<boolean> {
    this.#assertRunning("focus");
    const before = this.#vt.getState().active;
    if (before === this.#ownVt) return true;
    this.#vt.activate(this.#ownVt);
    if (!await this.#waitActive(this.#ownVt)) return false;
    this.#previousVt = before;
    try {
      this.#vt.flushInput();
    } catch (err) {
      this.#onError(err);
    }
    return true;
  }

  /**
   * Switches back to the VT that was in front before {@link focus}, if the console's VT is still
   * in front (a user who already moved elsewhere is not moved again), and waits for it like
   * {@link focus}. Forgets that VT either way.
   *
   * @throws {Error} while held (the guard would refuse its own switch): call {@link release}
   *   first; before {@link start} or after {@link dispose}
   * @throws {VtError} when an ioctl fails
   */
  async returnFocus(): Promise<ReturnFocusResult> {
    this.#assertRunning("returnFocus");
    if (this.#held) throw new Error("VtGuard: release() before returnFocus()");
    const target = this.#previousVt;
    this.#previousVt = null;
    if (target === null || target === this.#ownVt) return "none";
    if (this.#vt.getState().active !== this.#ownVt) return "elsewhere";
    this.#vt.activate(target);
    return await this.#waitActive(target) ? "returned" : "timeout";
  }

  /** `VT_GETMODE` of the console's VT (diagnostics). */
  mode(): VtModeInfo {
    this.#assertRunning("mode");
    return this.#vt.getMode();
  }

  /**
   * Restores `VT_AUTO`, stops listening, closes the {@link VtControl}. Idempotent; never throws
   * (errors go to `onError`).
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#clearTimer();
    this.#heldUntil = null;
    this.#held = false;
    this.#previousVt = null;
    if (this.#started) {
      try {
        this.#vt.setMode("auto");
      } catch (err) {
        this.#onError(err);
      }
      // Only now: the SIGUSR2 listener outlives VT_PROCESS.
      this.#signals.remove("SIGUSR2", this.#onSwitchSignal);
      this.#events.removeEventListener("unload", this.#onLifecycleEnd);
      this.#events.removeEventListener("error", this.#onLifecycleEnd);
      for (const [signal, listener] of this.#exitListeners) this.#signals.remove(signal, listener);
      this.#exitListeners.clear();
    }
    try {
      this.#vt.close();
    } catch (err) {
      this.#onError(err);
    }
  }

  /** Same as {@link dispose}, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** SIGUSR2: a release request (we are in front and someone asked to switch) or an acquire. */
  readonly #onSwitchSignal = (): void => {
    if (this.#disposed) return;
    const answer = this.#held ? VT_RELDISP_REFUSE : VT_RELDISP_ALLOW;
    try {
      this.#vt.relDisp(answer);
      if (answer === VT_RELDISP_REFUSE) this.#stats.refused++;
      else this.#stats.allowed++;
    } catch (err) {
      if (err instanceof VtError && err.errno === ERRNO.EINVAL) this.#stats.notPending++;
      else this.#onError(err);
    }
  };

  readonly #onLifecycleEnd = (): void => {
    this.dispose();
  };

  #exitOn(signal: ExitSignal): void {
    this.dispose();
    this.#exit(128 + EXIT_SIGNAL_NUMBERS[signal]);
  }

  #expire(): void {
    this.#timer = null;
    if (!this.#held) return;
    try {
      this.release();
    } catch (err) {
      this.#onError(err);
    }
    try {
      this.#onAutoRelease();
    } catch (err) {
      this.#onError(err);
    }
  }

  async #waitActive(vt: number): Promise<boolean> {
    const deadline = this.#clock.now() + this.#focusTimeoutMs;
    while (true) {
      // dispose() closes the VtControl: never touch it afterwards.
      if (this.#disposed) return false;
      if (this.#vt.getState().active === vt) return true;
      const left = deadline - this.#clock.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        this.#clock.setTimeout(resolve, Math.min(this.#pollMs, left));
      });
    }
  }

  #clearTimer(): void {
    if (this.#timer === null) return;
    this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  #assertRunning(op: string): void {
    if (this.#disposed) throw new Error(`VtGuard: ${op}() after dispose()`);
    if (!this.#started) throw new Error(`VtGuard: ${op}() before start()`);
  }
}
