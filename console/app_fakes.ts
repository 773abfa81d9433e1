/**
 * Test-only fakes for the console's wiring (imported by `*_test.ts` files, never by an
 * entrypoint): an in-memory daemon behind {@link AdminApi}, a terminal that records the bytes
 * the console writes, and a harness that builds a {@link ConsoleApp} on the fake VT and clock of
 * `vt_fakes.ts`.
 *
 * @module
 */

import type {
  DenyRuleOptions,
  GrantOptions,
  HistoryEntry,
  RequestState,
  RequestSummary,
  RequestView,
  RuleView,
  StoreStatus,
} from "../lib/protocol.ts";
import { toSummary } from "./test_support.ts";
import { type AdminApi, ConsoleApp, setupVt, type VtSetup } from "./main.ts";
import type { Size } from "./render.ts";
import { Screen, type TerminalIo } from "./terminal.ts";
import { FakeClock, FakeEvents, FakeSignals, FakeVt } from "./vt_fakes.ts";

/** An in-memory daemon: pending requests, decisions, `Changed` listeners. */
export class MemoryAdmin implements AdminApi {
  /** Requests by id (any state). */
  readonly requests = new Map<string, RequestView>();
  /** Every call: member and arguments. */
  readonly calls: { member: string; args: unknown[] }[] = [];
  history_: HistoryEntry[] = [];
  store: StoreStatus = { state: "unlocked", message: "test store" };
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
  status(): Promise<StoreStatus> {
    return Promise.resolve(this.store);
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
 *   virtual console, the terminal `size`, and pre-existing `requests`
 */
export async function harness(
  options: {
    focus?: boolean;
    vt?: boolean;
    size?: Size;
    requests?: RequestView[];
    admin?: MemoryAdmin;
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
