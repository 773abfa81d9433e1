/**
 * Test-only fakes for the console's wiring (imported by `*_test.ts` files, never by an
 * entrypoint): an in-memory daemon behind {@link AdminApi}, a terminal that records the bytes
 * the console writes, a harness that builds a {@link ConsoleApp} on the fake VT and clock of
 * `vt_fakes.ts`, and the same console drawing into a headless terminal emulator
 * (`@xterm/headless`), so that tests assert the screen a person would see.
 *
 * @module
 */

import {
  type AdminStoreStatus,
  type DenyRuleOptions,
  Errors,
  type GrantOptions,
  type HistoryEntry,
  type RequestState,
  type RequestSummary,
  type RequestView,
  type RuleView,
} from "../lib/protocol.ts";
import xterm from "@xterm/headless";
import { AdminError } from "../lib/admin_client.ts";
import { toSummary } from "./test_support.ts";
import { type AdminApi, ConsoleApp, setupVt, type VtSetup } from "./main.ts";
import type { Size } from "./render.ts";
import { Screen, type TerminalIo } from "./terminal.ts";
import { FakeClock, FakeEvents, FakeSignals, FakeVt } from "./vt_fakes.ts";

/**
 * An in-memory daemon: pending requests, decisions, `Changed` listeners, and a secret store that
 * can be locked ({@link storeLocked}) and opened with {@link storePassword}, or have no keyring
 * yet ({@link noKeyring}: the first non-empty passphrase creates it).
 */
export class MemoryAdmin implements AdminApi {
  /** Requests by id (any state). */
  readonly requests = new Map<string, RequestView>();
  /** Every call: member and arguments (`unlockStore`: none; see {@link passwords}). */
  readonly calls: { member: string; args: unknown[] }[] = [];
  history_: HistoryEntry[] = [];
  /** The store itself is locked (the console's lock is {@link locked}). */
  storeLocked = false;
  /** The passphrase that opens the store. */
  storePassword = "correct horse battery";
  /** False: a backend without password unlocking (`UnlockStore` answers `NotSupported`). */
  passwordUnlock = true;
  /**
   * The store has no keyring yet (with {@link storeLocked}): `Status` says `creates`, and
   * `UnlockStore` creates it with any non-empty passphrase, which becomes {@link storePassword}.
   */
  noKeyring = false;
  /** What each `unlockStore` call received, copied at once (the console zeroes its array). */
  readonly passwords: string[] = [];
  /** The arrays `unlockStore` received, as they are now (to check that they were zeroed). */
  readonly passwordArrays: Uint8Array[] = [];
  /** Calls of `unlockStore` wait for this, when set (to test input during the call). */
  unlockGate: Promise<void> | null = null;
  #changed = new Set<(id: string, state: RequestState) => void>();
  #closed = new Set<(err: Error) => void>();

  /** Adds a pending request and tells the listeners. */
  add(view: RequestView): void {
    this.requests.set(view.id, structuredClone(view));
    this.#emit(view.id, "pending");
  }

  /** Moves a request to `state` (as the daemon would on expiry, cancel, decision). */
  setState(id: string, state: RequestState): void {
    const r = this.requests.get(id);
    if (!r) throw new Error(`no request ${id}`);
    r.state = state;
    this.#emit(id, state);
  }

  /** Simulates the connection dropping. */
  drop(): void {
    for (const cb of [...this.#closed]) cb(new Error("connection lost (test)"));
  }

  #emit(id: string, state: RequestState): void {
    for (const cb of [...this.#changed]) cb(id, state);
  }

  list(): Promise<RequestSummary[]> {
    this.calls.push({ member: "list", args: [] });
    return Promise.resolve(
      [...this.requests.values()].filter((r) => r.state === "pending").map(toSummary),
    );
  }
  get(id: string): Promise<RequestView> {
    this.calls.push({ member: "get", args: [id] });
    const hit = [...this.requests.values()].find((r) => r.id.startsWith(id));
    return hit ? Promise.resolve(structuredClone(hit)) : Promise.reject(new Error("no request"));
  }
  approve(id: string, digest: string): Promise<void> {
    this.calls.push({ member: "approve", args: [id, digest] });
    const r = this.requests.get(id);
    if (!r || r.state !== "pending" || r.digest !== digest) {
      return Promise.reject(new Error("refused"));
    }
    this.setState(id, "approved");
    return Promise.resolve();
  }
  deny(id: string, reason: string): Promise<void> {
    this.calls.push({ member: "deny", args: [id, reason] });
    const r = this.requests.get(id);
    if (!r || r.state !== "pending") return Promise.reject(new Error("refused"));
    this.setState(id, "denied");
    return Promise.resolve();
  }
  /** Grants and rules made through this fake. */
  readonly rules_: RuleView[] = [];
  locked = false;
  async approveWithGrant(id: string, digest: string, options: GrantOptions): Promise<RuleView> {
    await this.approve(id, digest);
    this.calls.push({ member: "approveWithGrant", args: [id, digest, options] });
    return this.#rule("read-grant", id);
  }
  async denyWithRule(id: string, reason: string, options: DenyRuleOptions): Promise<RuleView> {
    await this.deny(id, reason);
    this.calls.push({ member: "denyWithRule", args: [id, reason, options] });
    return this.#rule("deny", id);
  }
  #rule(type: RuleView["type"], from: string): RuleView {
    const rule: RuleView = {
      id: `g${String(this.rules_.length).padStart(8, "0")}`,
      type,
      description: `a ${type} from ${from}`,
      createdAt: 0,
      expiresAt: null,
      remaining: null,
      uses: 0,
      fromRequest: from,
    };
    this.rules_.push(rule);
    return rule;
  }
  rules(): Promise<RuleView[]> {
    return Promise.resolve([...this.rules_]);
  }
  revoke(ruleId: string): Promise<void> {
    this.calls.push({ member: "revoke", args: [ruleId] });
    const i = this.rules_.findIndex((r) => r.id === ruleId);
    if (i < 0) return Promise.reject(new Error("no rule"));
    this.rules_.splice(i, 1);
    return Promise.resolve();
  }
  lock(): Promise<void> {
    this.calls.push({ member: "lock", args: [] });
    this.locked = true;
    this.storeLocked = true; // as the daemon does: Service.Lock
    for (const r of this.requests.values()) {
      if (r.state === "pending") this.setState(r.id, "denied");
    }
    return Promise.resolve();
  }
  unlock(): Promise<void> {
    this.calls.push({ member: "unlock", args: [] });
    this.locked = false;
    return Promise.resolve();
  }
  history(): Promise<HistoryEntry[]> {
    return Promise.resolve(this.history_);
  }
  status(): Promise<AdminStoreStatus> {
    if (this.locked) {
      return Promise.resolve({
        state: "locked",
        message: "locked on the console",
        consoleLock: true,
        passwordUnlock: null,
        creates: false,
      });
    }
    if (this.storeLocked) {
      return Promise.resolve({
        state: "locked",
        message: this.noKeyring
          ? "the test store has no keyring yet"
          : 'the test store\x1b[2J "Login" is locked',
        consoleLock: false,
        passwordUnlock: this.passwordUnlock,
        creates: this.noKeyring && this.passwordUnlock,
      });
    }
    return Promise.resolve({
      state: "unlocked",
      message: "test store",
      consoleLock: false,
      passwordUnlock: null,
      creates: false,
    });
  }
  async unlockStore(password: Uint8Array): Promise<void> {
    this.calls.push({ member: "unlockStore", args: [] });
    this.passwords.push(new TextDecoder().decode(password));
    this.passwordArrays.push(password);
    if (this.unlockGate) await this.unlockGate;
    if (!this.passwordUnlock) {
      throw new AdminError(Errors.NotSupported, "this secret store cannot be unlocked here");
    }
    if (this.noKeyring && this.storeLocked) {
      if (password.length === 0) {
        throw new AdminError(Errors.WrongPassword, "an empty passphrase cannot create the store");
      }
      this.noKeyring = false;
      this.storePassword = this.passwords.at(-1)!;
    } else if (this.passwords.at(-1) !== this.storePassword) {
      throw new AdminError(Errors.WrongPassword, "the password did not unlock the secret store");
    }
    this.storeLocked = false;
    this.locked = false;
    this.#emit("", "store" as RequestState);
  }
  /**
   * Unlocks the store behind the console's back: with `signal` (default) as `UnlockStore` does
   * for the PAM hand-off or `ctl unlock` (`Changed("", "store")`); without, as the store's own
   * tools would (only a `Status` poll sees it).
   */
  openStoreElsewhere(options: { signal?: boolean } = {}): void {
    this.storeLocked = false;
    if (options.signal ?? true) this.#emit("", "store" as RequestState);
  }
  onChanged(cb: (id: string, state: RequestState) => void): Promise<() => void> {
    this.#changed.add(cb);
    return Promise.resolve(() => this.#changed.delete(cb));
  }
  onClose(cb: (err: Error) => void): () => void {
    this.#closed.add(cb);
    return () => this.#closed.delete(cb);
  }
  close(): void {
    this.#changed.clear();
    this.#closed.clear();
  }
}

/** A terminal that keeps every byte written to it. */
export class RecordingTerminal implements TerminalIo {
  readonly chunks: Uint8Array[] = [];
  raw = false;
  cols: number;
  rows: number;
  /** Called with each write (e.g. to feed a terminal emulator). */
  onWrite: ((bytes: Uint8Array) => void) | null = null;

  constructor(size: Size = { cols: 100, rows: 30 }) {
    this.cols = size.cols;
    this.rows = size.rows;
  }
  write(bytes: Uint8Array): void {
    const copy = bytes.slice();
    this.chunks.push(copy);
    this.onWrite?.(copy);
  }
  setRaw(on: boolean): void {
    this.raw = on;
  }
  size(): Size {
    return { cols: this.cols, rows: this.rows };
  }
  /** Everything written so far, decoded. */
  text(): string {
    return new TextDecoder().decode(
      this.chunks.reduce((a, c) => {
        const out = new Uint8Array(a.length + c.length);
        out.set(a);
        out.set(c, a.length);
        return out;
      }, new Uint8Array()),
    );
  }
}

/** Lets promise chains and queued microtasks run (real event-loop turns). */
export async function settle(turns = 20): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise((r) => setTimeout(r, 0));
}

/** A console on the fake VT and clock, with an in-memory daemon. */
export interface Harness {
  app: ConsoleApp;
  admin: MemoryAdmin;
  vt: FakeVt;
  signals: FakeSignals;
  clock: FakeClock;
  term: RecordingTerminal;
  setup: VtSetup;
  errors: unknown[];
  /** Advances the fake clock by `ms` in steps, letting async work run in between. */
  advance(ms: number, stepMs?: number): Promise<void>;
}

/**
 * Builds (and starts) a console on a fake VT 8 (VT 2 in front), a fake clock and `admin`.
 *
 * @param options `focus` (default true), `armMs`, `vt: false` for a terminal that is not a
 *   virtual console, the terminal `size`, pre-existing `requests`, and `passphraseStorage` for
 *   the console's passphrase buffers
 */
export async function harness(
  options: {
    focus?: boolean;
    vt?: boolean;
    size?: Size;
    requests?: RequestView[];
    admin?: MemoryAdmin;
    passphraseStorage?: [Uint8Array, Uint8Array];
  } = {},
): Promise<Harness> {
  const signals = new FakeSignals();
  const vt = new FakeVt(signals);
  const clock = new FakeClock();
  const errors: unknown[] = [];
  if (options.vt === false) {
    vt.vtNumber = () => {
      throw new (class extends Error {})("not a VT");
    };
  }
  const admin = options.admin ?? new MemoryAdmin();
  for (const r of options.requests ?? []) admin.requests.set(r.id, structuredClone(r));
  const term = new RecordingTerminal(options.size);
  let app: ConsoleApp | null = null;
  const setup = options.vt === false
    ? {
      guard: null,
      flushInput: () => vt.flushInput(),
      note: "not on a virtual console: switching away is not prevented (demo mode)",
      dispose() {},
    }
    : setupVt({
      open: () => vt,
      guardOptions: {
        clock,
        signals,
        events: new FakeEvents(),
        onAutoRelease: () => app?.autoReleased(),
        onError: (e) => errors.push(e),
      },
    });
  app = new ConsoleApp({
    address: "unix:path=/test/bus",
    screen: new Screen(term),
    connect: () => Promise.resolve(admin),
    clock,
    vt: setup,
    focus: options.focus,
    passphraseStorage: options.passphraseStorage,
  });
  app.start();
  await settle();
  const h: Harness = {
    app,
    admin,
    vt,
    signals,
    clock,
    term,
    setup,
    errors,
    async advance(ms: number, stepMs = 50) {
      for (let left = ms; left > 0; left -= stepMs) {
        clock.advance(Math.min(stepMs, left));
        signals.flush();
        await settle(5);
      }
    },
  };
  return h;
}

/** A headless xterm fed with everything a console wrote. */
export interface XtermScreen {
  term: InstanceType<typeof xterm.Terminal>;
  /** Every window title the output set (should stay empty). */
  titles: string[];
  /** How many times the bell rang. */
  bells: number;
  /** The visible rows as text. */
  lines(): string[];
}

/**
 * A console (see {@link harness}) whose every output byte goes into a headless xterm of the same
 * size (100x30), with `requests` added and 1.5 s of fake time passed.
 *
 * @param requests pending requests to add once the console runs
 * @param options `admin`: the daemon to use (default a fresh {@link MemoryAdmin});
 *   `passphraseStorage`: the console's passphrase buffers (to see that they are zeroed)
 * @returns the harness, the screen, and `settleScreen`, which lets 100 ms pass and waits until
 *   the emulator has taken every byte written so far
 */
export async function consoleOnXterm(
  requests: RequestView[],
  options: { admin?: MemoryAdmin; passphraseStorage?: [Uint8Array, Uint8Array] } = {},
): Promise<{ h: Harness; screen: XtermScreen; settleScreen(): Promise<void> }> {
  const cols = 100;
  const rows = 30;
  const term = new xterm.Terminal({ cols, rows, allowProposedApi: true });
  const titles: string[] = [];
  let bells = 0;
  term.onTitleChange((t) => titles.push(t));
  term.onBell(() => bells++);
  let pending = Promise.resolve();
  const h = await harness({
    size: { cols, rows },
    admin: options.admin,
    passphraseStorage: options.passphraseStorage,
  });
  // Replay what was written before the hook, then follow every write.
  const feed = (bytes: Uint8Array) => {
    pending = pending.then(() => new Promise<void>((r) => term.write(bytes, r)));
  };
  for (const c of h.term.chunks) feed(c);
  h.term.onWrite = feed;
  for (const r of requests) h.admin.add(r);
  await h.advance(1_500);
  const screen: XtermScreen = {
    term,
    titles,
    get bells() {
      return bells;
    },
    lines() {
      const b = term.buffer.active;
      return Array.from({ length: rows }, (_, i) => b.getLine(i)!.translateToString(true));
    },
  };
  return {
    h,
    screen,
    async settleScreen() {
      await h.advance(100);
      await pending;
    },
  };
}
