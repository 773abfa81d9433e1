/**
 * The trusted console (TUI): lists pending requests, shows one in full, approves or denies it,
 * shows the history. Talks to the daemon's admin interface on the companion bus, and holds its
 * virtual terminal while a request is on screen (DESIGN.md §6).
 *
 * Usage: `deno run --no-prompt <flags> console/main.ts [--bus <address>]`; the address defaults
 * to `$SD_COMPANION_BUS_ADDRESS`.
 *
 * Environment:
 *
 * | variable | meaning | default |
 * |---|---|---|
 * | `SD_COMPANION_BUS_ADDRESS` | the companion bus | required (or `--bus`) |
 * | `SD_CONSOLE_FOCUS` | `0` to never bring the console's VT to the front on a new request | `1` |
 * | `SD_CONSOLE_ARM_MS` | arming delay: keys typed this soon after the screen changed are discarded, ms (0–10000) | 750 |
 * | `SD_CONSOLE_PHRASE_FILE` | file holding the per-install phrase shown on every screen (`phrase.ts`) | none: a warning is shown |
 *
 * Permissions: `--allow-env=<the variables above> --allow-read=<sock>,<phrase file> --allow-write=<sock>
 * --allow-net=unix:<sock> --allow-sys=uid --allow-ffi=<libc>` (see `deploy/permissions.ts`).
 *
 * VT control: fd 0 must be the VT and the controlling terminal (systemd `TTYPath=/dev/tty8`,
 * `StandardInput=tty`). When fd 0 is a terminal but not a virtual console (the demo runs the
 * console in a terminal emulator), the console runs without the switch lock and says so on
 * screen; when it is a virtual console the lock cannot be taken on, the console refuses to run
 * (exit 1). The VT signal is SIGUSR2; SIGUSR1 is never listened to (Deno 2.9 opens an inspector
 * on it). `VT_AUTO` is restored on quit, SIGINT, SIGTERM, SIGHUP and uncaught errors.
 *
 * The screen is a pure function of the state (`render.ts`), the state a pure reducer of events
 * (`state.ts`); this file wires them to the terminal, the clock, the VT and the daemon.
 *
 * The store passphrase: when the store is locked and can be unlocked with a passphrase, the
 * console shows a prompt of its own (`state.ts` has the rules). While it is on screen, input is
 * not decoded into keys: the raw bytes go to a {@link PassphraseBuffer} (no echo: raw mode, and
 * the screen shows only a fixed mask); Enter sends them with `Admin1.UnlockStore`, and every copy
 * the console made is zeroed after the call, after leaving the prompt, and on exit. The
 * passphrase never goes to a log, an argument vector or the environment. When the store has no
 * keyring yet, the new passphrase is typed twice, into two such buffers; they are compared byte
 * by byte ({@link PassphraseBuffer.matches}) and the passphrase is sent only when they match.
 *
 * @module
 */

import { AdminClient, AdminError, AdminUnreachableError } from "../lib/admin_client.ts";
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
import { escapeLine } from "../lib/sanitize.ts";
import { render, START_HINT } from "./render.ts";
import { PHRASE_ENV, type PhraseInfo, readPhrase } from "./phrase.ts";
import {
  ARM_MS,
  type Effect,
  initialState,
  parseKeys,
  passphraseAccepts,
  type UiEvent,
  type UiState,
  update,
} from "./state.ts";
import { PassphraseBuffer, promptKeys } from "./passphrase.ts";
import { denoTerminalIo, Screen } from "./terminal.ts";
import { ERRNO, openLibcVt, type VtControl, VtError } from "./vt.ts";
import { type Clock, systemClock } from "../lib/clock.ts";
import { VtGuard } from "./vt_guard.ts";
import { VtSync } from "./vt_sync.ts";

/** Environment variable holding the companion bus address. */
export const ADDRESS_ENV = "SD_COMPANION_BUS_ADDRESS";
/** Environment variable: `0` turns off bringing the console's VT to the front. */
export const FOCUS_ENV = "SD_CONSOLE_FOCUS";
/** Environment variable: the arming delay in ms. */
export const ARM_ENV = "SD_CONSOLE_ARM_MS";
/** Every environment variable the console reads (its `--allow-env` list). */
export const CONSOLE_ENV: readonly string[] = [ADDRESS_ENV, FOCUS_ENV, ARM_ENV, PHRASE_ENV];
/** Period of the List poll (fallback for missed signals) and of reconnection attempts, ms. */
export const POLL_MS = 2_000;
/** Clock tick (countdowns), ms. */
export const TICK_MS = 1_000;

/**
 * Reads `--bus <address>` / `--bus=<address>` from `args`, else `$SD_COMPANION_BUS_ADDRESS`.
 *
 * @returns the address, or an error text for the user
 */
export function resolveAddress(args: string[]): { address: string } | { error: string } {
  let address: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--bus") {
      address = args[++i];
      if (address === undefined) return { error: "--bus needs an address" };
    } else if (a.startsWith("--bus=")) {
      address = a.slice("--bus=".length);
    } else if (a === "-h" || a === "--help") {
      return { error: `usage: console [--bus <address>]   (default: $${ADDRESS_ENV})` };
    } else {
      return { error: `unknown argument: ${escapeLine(a)}` };
    }
  }
  address ??= readEnv(ADDRESS_ENV);
  if (!address) return { error: `no bus address: pass --bus <address> or set ${ADDRESS_ENV}` };
  return { address };
}

/** An environment variable, or undefined when unset or not permitted. */
function readEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // no --allow-env for it: treated as unset
  }
}

/**
 * Whether to bring the console's VT to the front on a new request: on unless the value is
 * `0`, `false`, `no` or `off`.
 */
export function focusEnabled(value: string | undefined): boolean {
  return !["0", "false", "no", "off"].includes((value ?? "").trim().toLowerCase());
}

/**
 * The arming delay from `SD_CONSOLE_ARM_MS`: an integer 0–10000, else the default {@link ARM_MS}.
 *
 * @returns the delay in ms, and a warning to show when the value was not usable
 */
export function armDelay(value: string | undefined): { ms: number; warning: string | null } {
  if (value === undefined || value.trim() === "") return { ms: ARM_MS, warning: null };
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 10_000) {
    return {
      ms: ARM_MS,
      warning: `${ARM_ENV}=${escapeLine(value)} is not 0-10000 ms; using ${ARM_MS}`,
    };
  }
  return { ms: n, warning: null };
}

function errorText(err: unknown): string {
  if (err instanceof AdminError) return `${err.dbusName}: ${err.text}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** The admin operations the console uses (real: {@link AdminClient}; tests: a fake). */
export interface AdminApi {
  list(): Promise<RequestSummary[]>;
  get(idOrPrefix: string): Promise<RequestView>;
  approve(id: string, digest: string): Promise<void>;
  deny(id: string, reason: string): Promise<void>;
  history(limit?: number): Promise<HistoryEntry[]>;
  status(): Promise<AdminStoreStatus>;
  /**
   * `Admin1.UnlockStore`; the caller zeroes `password` after the call.
   *
   * @throws {AdminError} `WrongPassword`, `NotSupported`, `StoreUnavailable`
   */
  unlockStore(password: Uint8Array): Promise<void>;
  approveWithGrant(id: string, digest: string, options: GrantOptions): Promise<RuleView>;
  denyWithRule(id: string, reason: string, options: DenyRuleOptions): Promise<RuleView>;
  rules(): Promise<RuleView[]>;
  revoke(ruleId: string): Promise<void>;
  lock(): Promise<void>;
  unlock(): Promise<void>;
  onChanged(cb: (id: string, state: RequestState) => void): Promise<() => void>;
  onClose(cb: (err: Error) => void): () => void;
  close(): void;
}

/** The VT side of the console, as {@link ConsoleApp} sees it. */
export interface VtSetup {
  /** The switch lock, or null when the console runs without one. */
  guard: VtGuard | null;
  /** Discards pending terminal input (`tcflush(0, TCIFLUSH)`); a no-op without a terminal. */
  flushInput(): void;
  /** Why there is no switch lock (shown on screen), or null when there is one. */
  note: string | null;
  /** Releases what was opened (disposes the guard: `VT_AUTO`). Idempotent. */
  dispose(): void;
}

/** Options of {@link ConsoleApp}. */
export interface ConsoleAppOptions {
  /** Companion bus address (shown on screen; passed to `connect`). */
  address: string;
  /** The terminal. */
  screen: Screen;
  /** Connects to the daemon (real: {@link AdminClient.connect}). */
  connect: (address: string) => Promise<AdminApi>;
  /** Time and timers (default: the real clock). */
  clock?: Clock;
  /** VT control (default: none, with no note). */
  vt?: VtSetup;
  /** Bring the VT to the front on a new request (default true). */
  focus?: boolean;
  /** Arming delay, ms (default {@link ARM_MS}). */
  armMs?: number;
  /** The per-install phrase (default: none, with a warning). */
  phrase?: PhraseInfo;
  /**
   * Where the two passphrase buffers keep their bytes (default: fresh arrays of
   * `MAX_PASSWORD_BYTES`). Tests pass their own to see that they are zeroed.
   */
  passphraseStorage?: [Uint8Array, Uint8Array];
}

/** The running console: state, terminal, VT and daemon connection. */
export class ConsoleApp {
  #state: UiState;
  readonly #screen: Screen;
  readonly #address: string;
  readonly #connectFn: (address: string) => Promise<AdminApi>;
  readonly #clock: Clock;
  readonly #vt: VtSetup;
  readonly #sync: VtSync | null;
  #client: AdminApi | null = null;
  #connecting = false;
  #refreshing = false;
  #refreshAgain = false;
  #drawQueued = false;
  #timers: ReturnType<Clock["setTimeout"]>[] = [];
  #stopped = false;
  readonly #decoder = new TextDecoder();
  /** The store passphrase being typed; holds bytes only while the prompt takes input. */
  readonly #passphrase: PassphraseBuffer;
  /** The new passphrase typed again (creating the store); holds bytes only in that step. */
  readonly #again: PassphraseBuffer;
  #done: () => void = () => {};
  /** Resolves once the console stopped. */
  readonly finished: Promise<void>;

  /** @param options terminal, daemon, clock and VT; see {@link ConsoleAppOptions} */
  constructor(options: ConsoleAppOptions) {
    this.#address = options.address;
    this.#screen = options.screen;
    this.#connectFn = options.connect;
    this.#passphrase = new PassphraseBuffer(options.passphraseStorage?.[0]);
    this.#again = new PassphraseBuffer(options.passphraseStorage?.[1]);
    this.#clock = options.clock ?? systemClock;
    this.#vt = options.vt ?? { guard: null, flushInput() {}, note: null, dispose() {} };
    this.#state = initialState(this.#address, this.#clock.now(), this.#screen.size(), {
      armMs: options.armMs,
      phrase: options.phrase,
    });
    this.finished = new Promise((resolve) => this.#done = resolve);
    const guard = this.#vt.guard;
    this.#sync = guard
      ? new VtSync(guard, {
        focus: options.focus ?? true,
        onStatus: (s) =>
          this.dispatch({ type: "vt", status: s.held ? "held" : "free", vt: s.vt, note: null }),
        onFocused: () => this.dispatch({ type: "focused", at: this.#clock.now() }),
        onError: (err) => this.#status(`VT control: ${errorText(err)}`),
      })
      : null;
    if (guard) {
      this.#state = update(this.#state, { type: "vt", status: "free", vt: guard.ownVt, note: null })
        .state;
    } else if (this.#vt.note !== null) {
      this.#state = update(this.#state, { type: "vt", status: "off", vt: 0, note: this.#vt.note })
        .state;
    }
  }

  /** The current state (for tests). */
  get state(): UiState {
    return this.#state;
  }

  /** The VT synchronisation, when there is a switch lock (for tests). */
  get vtSync(): VtSync | null {
    return this.#sync;
  }

  /** To be called by the guard's `onAutoRelease`. */
  autoReleased(): void {
    this.#sync?.autoReleased();
  }

  /** Draws the first frame, starts the timers and connects. */
  start(): void {
    this.#screen.enter();
    this.#draw();
    this.#every(TICK_MS, () => this.#tick());
    this.#every(POLL_MS, () => this.#poll());
    this.#connect();
  }

  #every(ms: number, fn: () => void): void {
    const arm = () => {
      if (this.#stopped) return;
      const t = this.#clock.setTimeout(() => {
        this.#timers = this.#timers.filter((x) => x !== t);
        fn();
        arm();
      }, ms);
      this.#timers.push(t);
    };
    arm();
  }

  /**
   * Feeds raw terminal input (bytes as read from stdin). Keeps no reference to `bytes`: the
   * caller may zero them as soon as this returns. One read is taken in one mode: when a key
   * opens or closes the passphrase prompt, the rest of that read is discarded.
   */
  feed(bytes: Uint8Array): void {
    const at = this.#clock.now();
    if (this.#onPrompt()) {
      this.#feedPassphrase(bytes, at);
      return;
    }
    for (const key of parseKeys(this.#decoder.decode(bytes, { stream: true }))) {
      this.dispatch({ type: "key", key, at });
      if (this.#onPrompt()) return; // the rest was typed before the prompt was on screen
    }
  }

  #onPrompt(): boolean {
    return this.#state.screen === "unlock";
  }

  /** Input while the passphrase prompt is on screen: raw bytes, never decoded to a string. */
  #feedPassphrase(bytes: Uint8Array, at: number): void {
    for (const k of promptKeys(bytes)) {
      if (!this.#onPrompt()) return;
      // Enter may move on to typing it again within the same read.
      const buf = this.#state.unlock.step === "confirm" ? this.#again : this.#passphrase;
      if (k.type === "ctrl-c") {
        this.dispatch({ type: "key", key: "<ctrl-c>", at });
        return;
      }
      if (k.type === "ignored") continue;
      if (!passphraseAccepts(this.#state, at)) {
        buf.clear();
        this.dispatch({ type: "passphrase", key: "refused", empty: true, at });
        continue;
      }
      let key: "text" | "erase" | "clear" | "esc" | "enter" | "full" = k.type;
      if (k.type === "text") {
        if (!buf.append(k.bytes)) key = "full";
      } else if (k.type === "erase") buf.eraseLast();
      else if (k.type === "clear" || k.type === "esc") buf.clear();
      this.dispatch({ type: "passphrase", key, empty: buf.empty, at });
    }
  }

  /** Applies an event, carries out its effects and schedules a redraw. */
  dispatch(event: UiEvent): void {
    if (this.#state.quit && event.type !== "vt") return;
    const before = this.#state;
    const { state, effects } = update(before, event);
    this.#state = state;
    for (const e of effects) this.#run(e);
    this.#zeroUnused();
    if (state.requests !== before.requests || state.loaded !== before.loaded) {
      this.#sync?.update(state.requests);
    }
    this.#queueDraw();
  }

  /**
   * The passphrase lives only while the prompt takes it: both buffers are zeroed off the prompt,
   * the second one outside its step, and the one being typed when the state says nothing is.
   */
  #zeroUnused(): void {
    const s = this.#state;
    if (s.screen !== "unlock" || s.quit) {
      this.#passphrase.clear();
      this.#again.clear();
    } else if (s.unlock.step === "first") {
      this.#again.clear();
      if (!s.unlock.typed) this.#passphrase.clear();
    } else if (!s.unlock.typed) this.#again.clear();
  }

  #queueDraw(): void {
    if (this.#drawQueued) return;
    this.#drawQueued = true;
    queueMicrotask(() => {
      this.#drawQueued = false;
      this.#draw();
    });
  }

  #draw(): void {
    if (this.#state.quit) return;
    this.#screen.draw(render(this.#state, this.#state.size));
  }

  #tick(): void {
    const size = this.#screen.size();
    if (size.cols !== this.#state.size.cols || size.rows !== this.#state.size.rows) this.resize();
    this.dispatch({ type: "tick", now: this.#clock.now() });
  }

  /** Takes the terminal's new size (SIGWINCH). */
  resize(): void {
    const size = this.#screen.size();
    this.#screen.invalidate();
    this.dispatch({ type: "resize", cols: size.cols, rows: size.rows });
  }

  #poll(): void {
    if (this.#client) this.#refresh();
    else this.#connect();
  }

  async #connect(): Promise<void> {
    if (this.#client || this.#connecting || this.#state.quit) return;
    this.#connecting = true;
    try {
      const client = await this.#connectFn(this.#address);
      if (this.#state.quit) {
        client.close();
        return;
      }
      client.onClose((err) => {
        if (this.#client !== client) return;
        this.#client = null;
        this.dispatch({ type: "connection", status: "unreachable", error: err.message });
      });
      await client.onChanged((id, state) => this.dispatch({ type: "changed", id, state }));
      this.#client = client;
      this.dispatch({ type: "connection", status: "connected" });
    } catch (err) {
      this.dispatch({ type: "connection", status: "unreachable", error: errorText(err) });
    } finally {
      this.#connecting = false;
    }
  }

  async #refresh(): Promise<void> {
    const client = this.#client;
    if (!client) return;
    if (this.#refreshing) {
      this.#refreshAgain = true;
      return;
    }
    this.#refreshing = true;
    try {
      do {
        this.#refreshAgain = false;
        try {
          this.dispatch({ type: "list", requests: await client.list(), at: this.#clock.now() });
          this.dispatch({ type: "store", store: await client.status(), at: this.#clock.now() });
        } catch (err) {
          if (err instanceof AdminUnreachableError) {
            this.dispatch({ type: "connection", status: "unreachable", error: errorText(err) });
          } else {
            this.dispatch({ type: "connection", status: "connected" });
            this.#status(`cannot list requests: ${errorText(err)}`);
          }
          return;
        }
      } while (this.#refreshAgain);
    } finally {
      this.#refreshing = false;
    }
  }

  #status(text: string): void {
    this.#state = { ...this.#state, status: { text, tone: "error", at: this.#state.now } };
    this.#queueDraw();
  }

  #run(effect: Effect): void {
    switch (effect.type) {
      case "refresh":
        this.#refresh();
        return;
      case "quit":
        this.stop();
        return;
      case "flushInput":
        try {
          this.#vt.flushInput();
        } catch (err) {
          this.#status(`cannot flush input: ${errorText(err)}`);
        }
        return;
      case "load":
        this.#withClient(
          (c) => c.get(effect.id),
          (view) => this.dispatch({ type: "detail", view, at: this.#clock.now() }),
          (error) => this.dispatch({ type: "detailError", id: effect.id, error }),
        );
        return;
      case "loadHistory":
        this.#withClient(
          (c) => c.history(500),
          (entries) => this.dispatch({ type: "history", entries }),
          (error) => this.dispatch({ type: "historyError", error }),
        );
        return;
      case "approve":
      case "deny": {
        const action = effect.type;
        this.#withClient(
          async (c) => {
            if (effect.type === "approve") {
              if (effect.grant) await c.approveWithGrant(effect.id, effect.digest, effect.grant);
              else await c.approve(effect.id, effect.digest);
            } else if (effect.rule) {
              await c.denyWithRule(effect.id, effect.reason, effect.rule);
            } else await c.deny(effect.id, effect.reason);
          },
          () => this.dispatch({ type: "decision", id: effect.id, action, error: null }),
          (error) => this.dispatch({ type: "decision", id: effect.id, action, error }),
        );
        return;
      }
      case "loadRules":
        this.#withClient(
          (c) => c.rules(),
          (list) => this.dispatch({ type: "rules", list }),
          (error) => this.dispatch({ type: "rulesError", error }),
        );
        return;
      case "revoke":
        this.#withClient(
          (c) => c.revoke(effect.id),
          () => {
            this.dispatch({ type: "notice", text: `revoked ${effect.id}`, tone: "ok" });
            this.#run({ type: "loadRules" });
          },
          (error) =>
            this.dispatch({ type: "notice", text: `revoke failed: ${error}`, tone: "error" }),
        );
        return;
      case "unlockStore":
        this.#unlockStore(effect.create === true);
        return;
      case "lock":
      case "unlock":
        this.#withClient(
          (c) => effect.type === "lock" ? c.lock() : c.unlock(),
          () => {
            this.dispatch({ type: "notice", text: `${effect.type}ed`, tone: "ok" });
            this.#refresh();
          },
          (error) =>
            this.dispatch({
              type: "notice",
              text: `${effect.type} failed: ${error}`,
              tone: "error",
            }),
        );
        return;
    }
  }

  /**
   * Sends the typed passphrase with `UnlockStore`; zeroes every copy once answered. Creating
   * the store: only when the passphrase typed again matches (both buffers are zeroed anyway).
   */
  #unlockStore(create: boolean): void {
    if (create && !this.#passphrase.matches(this.#again)) {
      this.#passphrase.clear();
      this.#again.clear();
      this.dispatch({
        type: "unlockResult",
        outcome: "mismatch",
        text: null,
        at: this.#clock.now(),
      });
      return;
    }
    this.#again.clear();
    const password = this.#passphrase.take();
    const done = (outcome: "ok" | "wrong" | "unsupported" | "failed", text: string | null) => {
      password.fill(0);
      this.dispatch({ type: "unlockResult", outcome, text, at: this.#clock.now() });
    };
    const client = this.#client;
    if (!client) {
      done("failed", `daemon unreachable at ${this.#address}; ${START_HINT}`);
      return;
    }
    client.unlockStore(password).then(
      () => done("ok", null),
      (err) => {
        const name = err instanceof AdminError ? err.dbusName : "";
        done(
          name === Errors.WrongPassword
            ? "wrong"
            : name === Errors.NotSupported
            ? "unsupported"
            : "failed",
          err instanceof AdminError ? err.text : errorText(err),
        );
      },
    );
  }

  #withClient<T>(
    call: (c: AdminApi) => Promise<T>,
    ok: (value: T) => void,
    fail: (error: string) => void,
  ): void {
    const client = this.#client;
    if (!client) {
      fail(`daemon unreachable at ${this.#address}; ${START_HINT}`);
      return;
    }
    call(client).then(ok, (err) => fail(errorText(err)));
  }

  /**
   * Stops timers, closes the connection, gives the VT back (`VT_AUTO`) and restores the
   * terminal. Idempotent.
   */
  stop(): void {
    if (!this.#state.quit) this.#state = { ...this.#state, quit: true };
    this.#stopped = true;
    this.#passphrase.clear();
    this.#again.clear();
    for (const t of this.#timers) this.#clock.clearTimeout(t);
    this.#timers = [];
    this.#client?.close();
    this.#client = null;
    this.#vt.dispose();
    this.#screen.restore();
    this.#done();
  }
}

/**
 * Opens VT control on fd 0 (`vt.ts`): a started {@link VtGuard} when fd 0 is a virtual
 * console, none (with a note saying why) when it is another terminal or libc cannot be loaded.
 *
 * @param options `open` the control (default {@link openLibcVt} on fd 0), `clock`, `signals`
 *   and `events` for the guard (tests), `onAutoRelease` and `onError` for the guard
 * @returns the setup
 * @throws {VtError} when fd 0 is a virtual console but the lock cannot be taken (EPERM: it is
 *   not the controlling terminal; run the console as systemd does, or under `setsid -c`)
 */
export function setupVt(options: {
  open?: () => VtControl;
  guardOptions?: ConstructorParameters<typeof VtGuard>[1];
} = {}): VtSetup {
  let vt: VtControl;
  try {
    vt = (options.open ?? (() => openLibcVt()))();
  } catch (err) {
    return {
      guard: null,
      flushInput() {},
      note: `no VT control (${errorText(err)}): switching away is not prevented`,
      dispose() {},
    };
  }
  let closed = false;
  const flush = () => {
    if (!closed) vt.flushInput();
  };
  try {
    vt.vtNumber();
  } catch (err) {
    if (!(err instanceof VtError) || err.errno !== ERRNO.ENOTTY) {
      vt.close();
      throw err;
    }
    return {
      guard: null,
      flushInput: flush,
      note: "not on a virtual console: switching away is not prevented (demo mode)",
      dispose() {
        if (closed) return;
        closed = true;
        vt.close();
      },
    };
  }
  const guard = new VtGuard(vt, options.guardOptions);
  try {
    guard.start();
  } catch (err) {
    guard.dispose();
    throw err;
  }
  return {
    guard,
    flushInput: flush,
    note: null,
    dispose() {
      if (closed) return;
      closed = true;
      guard.dispose();
    },
  };
}

/** Signals the console listens to. Never SIGUSR1 (DESIGN.md §6): not even representable. */
export type ConsoleSignal = "SIGINT" | "SIGTERM" | "SIGHUP" | "SIGWINCH";

/** Where the console listens for its own signals (real: Deno; tests: a recorder). */
export interface ConsoleSignals {
  add(signal: ConsoleSignal, listener: () => void): void;
  remove(signal: ConsoleSignal, listener: () => void): void;
}

const denoConsoleSignals: ConsoleSignals = {
  add: (s, l) => Deno.addSignalListener(s, l),
  remove: (s, l) => Deno.removeSignalListener(s, l),
};

/**
 * Runs the console until the user quits, stdin closes or a signal arrives.
 *
 * @param args command-line arguments (`--bus <address>`)
 * @returns the exit code: 0 after a normal quit, 1 when the VT lock cannot be taken on a VT,
 *   2 without an address or a terminal
 */
export async function main(args: string[]): Promise<number> {
  const resolved = resolveAddress(args);
  if ("error" in resolved) {
    console.error(`console: ${resolved.error}`);
    return 2;
  }
  if (!Deno.stdin.isTerminal() || !Deno.stdout.isTerminal()) {
    console.error("console: stdin and stdout must be a terminal");
    return 2;
  }
  const screen = new Screen(denoTerminalIo());
  let app: ConsoleApp | null = null;
  let vt: VtSetup;
  try {
    vt = setupVt({
      guardOptions: {
        onAutoRelease: () => app?.autoReleased(),
        onError: (err) => app?.dispatch({ type: "vtError", error: errorText(err) }),
      },
    });
  } catch (err) {
    console.error(`console: cannot take the VT switch lock: ${errorText(err)}`);
    return 1;
  }
  const arm = armDelay(readEnv(ARM_ENV));
  app = new ConsoleApp({
    address: resolved.address,
    screen,
    vt,
    focus: focusEnabled(readEnv(FOCUS_ENV)),
    armMs: arm.ms,
    phrase: readPhrase(readEnv(PHRASE_ENV)),
    connect: (address) => AdminClient.connect(address, { timeoutMs: 3_000, callTimeoutMs: 5_000 }),
  });
  if (arm.warning) app.dispatch({ type: "notice", text: arm.warning, tone: "warn" });
  return await runApp(app, { screen, vt, signals: denoConsoleSignals, input: Deno.stdin });
}

/**
 * Runs a constructed app: signal listeners (SIGINT/SIGTERM/SIGHUP stop it, SIGWINCH resizes),
 * `error`/`unload` restore the terminal and the VT, input is read until it ends.
 *
 * @param app the console
 * @param options the screen and VT to restore, where to listen for signals, and the input
 * @returns 0 once the app stopped
 */
export async function runApp(
  app: ConsoleApp,
  options: {
    screen: Screen;
    vt: VtSetup;
    signals: ConsoleSignals;
    input: { read(p: Uint8Array): Promise<number | null> };
    events?: Pick<EventTarget, "addEventListener" | "removeEventListener">;
  },
): Promise<number> {
  const { screen, vt, signals } = options;
  const events = options.events ?? globalThis;
  const onSignal = () => app.stop();
  const onResize = () => app.resize();
  const stopSignals: ConsoleSignal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of stopSignals) signals.add(s, onSignal);
  signals.add("SIGWINCH", onResize);
  const onUnload = () => {
    vt.dispose();
    screen.restore();
  };
  const onError = (e: Event) => {
    vt.dispose();
    screen.restore();
    console.error("console: fatal error:", (e as ErrorEvent).error);
  };
  const onRejection = (e: Event) => {
    // dbus-next can leave rejected promises behind on a broken connection: keep running.
    e.preventDefault();
  };
  events.addEventListener("unload", onUnload);
  events.addEventListener("error", onError);
  events.addEventListener("unhandledrejection", onRejection);
  try {
    app.start();
    const reading = (async () => {
      const buf = new Uint8Array(1024);
      while (!app.state.quit) {
        let n: number | null;
        try {
          n = await options.input.read(buf);
        } catch {
          n = null;
        }
        if (n === null) {
          app.stop();
          return;
        }
        app.feed(buf.subarray(0, n));
        buf.fill(0, 0, n); // it may have held passphrase bytes
      }
    })();
    await Promise.race([app.finished, reading]);
    await app.finished;
  } finally {
    app.stop();
    vt.dispose();
    screen.restore();
    for (const s of stopSignals) signals.remove(s, onSignal);
    signals.remove("SIGWINCH", onResize);
    events.removeEventListener("unload", onUnload);
    events.removeEventListener("error", onError);
    events.removeEventListener("unhandledrejection", onRejection);
  }
  return 0;
}

if (import.meta.main) {
  // Exit explicitly: a pending stdin read would keep the process alive.
  Deno.exit(await main(Deno.args));
}
