/**
 * Test-only fakes of the VT layer (imported by `*_test.ts` files, never by an entrypoint): a
 * kernel VT that behaves like `drivers/tty/vt/vt_ioctl.c` for the console's own VT, signal
 * delivery, a clock and an event target that counts listeners.
 *
 * @module
 */

import { FakeClock } from "../lib/clock.ts";
import {
  decodeVtMode,
  encodeVtMode,
  ERRNO,
  type RelDispAnswer,
  VT_ACKACQ,
  VT_AUTO,
  VT_PROCESS,
  type VtControl,
  VtError,
  type VtModeInfo,
  type VtState,
  type VtSwitchMode,
} from "./vt.ts";
import type { GuardSignal, SignalSource } from "./vt_guard.ts";
// Fakes

/** Linux signal numbers the fake kernel may send (man 7 signal). */
const SIGNAL_NAMES: Record<number, string> = { 10: "SIGUSR1", 12: "SIGUSR2" };

/** Signal listeners; the fake kernel queues signals, {@link flush} delivers them (like Deno). */
export class FakeSignals implements SignalSource {
  listeners = new Map<string, Set<() => void>>();
  queue: string[] = [];
  /** Signals that arrived with no listener: a real Deno process would have died (or worse). */
  unhandled: string[] = [];
  everAdded: string[] = [];

  add(signal: GuardSignal, listener: () => void) {
    this.everAdded.push(signal);
    if (!this.listeners.has(signal)) this.listeners.set(signal, new Set());
    this.listeners.get(signal)!.add(listener);
  }
  remove(signal: GuardSignal, listener: () => void) {
    this.listeners.get(signal)?.delete(listener);
  }
  count(): number {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }
  /** The kernel sends signal number `signo`. */
  send(signo: number) {
    this.queue.push(SIGNAL_NAMES[signo] ?? `signal ${signo}`);
  }
  /** Delivers queued signals (including ones raised while delivering). */
  flush() {
    while (this.queue.length) {
      const name = this.queue.shift()!;
      const set = this.listeners.get(name);
      if (!set?.size) {
        this.unhandled.push(name);
        continue;
      }
      for (const fn of [...set]) fn();
    }
  }
}

export function einval(op: string) {
  return new VtError(op, { errno: ERRNO.EINVAL });
}

/**
 * A kernel VT layer as `drivers/tty/vt/vt_ioctl.c` behaves for the console's own VT: `VT_PROCESS`
 * makes a switch away a pending request signalled with relsig, answered by `VT_RELDISP`; a switch
 * to it is signalled with acqsig afterwards; `VT_SETMODE` drops a pending request.
 */
export class FakeVt implements VtControl {
  active = 2;
  readonly own: number;
  mode: VtModeInfo = { mode: VT_AUTO, waitv: 0, relsig: 0, acqsig: 0, frsig: 0 };
  pendingNewVt = -1;
  /** When true, switches are silently ignored (set_console() refusing). */
  stuck = false;
  /** The next setMode throws this. */
  failSetMode: VtError | null = null;
  calls: string[] = [];
  closed = false;
  readonly signals: FakeSignals;

  constructor(signals: FakeSignals, own = 8) {
    this.signals = signals;
    this.own = own;
  }

  #live(op: string) {
    if (this.closed) throw new Error(`${op} on a closed VtControl`);
    this.calls.push(op);
  }
  vtNumber(): number {
    this.#live("vtNumber");
    return this.own;
  }
  getState(): VtState {
    if (this.closed) throw new Error("getState on a closed VtControl");
    return { active: this.active, signal: 0, state: 0x1 | (1 << this.own) | (1 << this.active) };
  }
  getMode(): VtModeInfo {
    if (this.closed) throw new Error("getMode on a closed VtControl");
    return { ...this.mode };
  }
  setMode(mode: VtSwitchMode) {
    this.#live(`setMode(${mode})`);
    if (this.failSetMode) {
      const err = this.failSetMode;
      this.failSetMode = null;
      throw err;
    }
    // Exactly the bytes the real control hands to the kernel.
    this.mode = decodeVtMode(encodeVtMode(mode));
    this.pendingNewVt = -1;
  }
  relDisp(answer: RelDispAnswer) {
    this.#live(`relDisp(${answer})`);
    if (this.mode.mode !== VT_PROCESS) throw einval("VT_RELDISP");
    if (this.pendingNewVt < 0) {
      if (answer === VT_ACKACQ) return;
      throw einval("VT_RELDISP");
    }
    const target = this.pendingNewVt;
    this.pendingNewVt = -1;
    if (answer !== 0) this.#complete(target);
  }
  activate(vt: number) {
    this.#live(`activate(${vt})`);
    this.requestSwitch(vt);
  }
  flushInput() {
    this.#live("flushInput");
  }
  close() {
    this.calls.push("close");
    this.closed = true;
  }

  /** What `chvt n`, Alt+Fn or logind do: the kernel's change_console(). */
  requestSwitch(vt: number) {
    if (this.stuck || vt === this.active) return;
    if (this.active === this.own && this.mode.mode === VT_PROCESS) {
      this.pendingNewVt = vt;
      this.signals.send(this.mode.relsig);
      return;
    }
    this.#complete(vt);
  }
  #complete(vt: number) {
    this.active = vt;
    if (vt === this.own && this.mode.mode === VT_PROCESS) this.signals.send(this.mode.acqsig);
  }
}

/** An EventTarget that counts registered listeners (EventTarget itself cannot tell). */
export class FakeEvents extends EventTarget {
  #counts = new Map<string, number>();
  count(type: string): number {
    return this.#counts.get(type) ?? 0;
  }
  override addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ) {
    this.#counts.set(type, (this.#counts.get(type) ?? 0) + 1);
    super.addEventListener(type, listener, options);
  }
  override removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ) {
    this.#counts.set(type, (this.#counts.get(type) ?? 0) - 1);
    super.removeEventListener(type, listener, options);
  }
}

export async function drive<T>(clock: FakeClock, promise: Promise<T>, stepMs = 10): Promise<T> {
  let done = false;
  const result = promise.finally(() => done = true);
  for (let i = 0; i < 10_000 && !done; i++) {
    await new Promise((r) => setTimeout(r, 0));
    if (!done) clock.advance(stepMs);
  }
  return await result;
}

/** The shared fake clock, re-exported for the console's tests. */
export { FakeClock };
