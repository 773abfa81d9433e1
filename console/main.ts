/**
 * The trusted console (TUI): lists pending requests, shows one in full, approves or denies it,
 * shows the history. Talks to the daemon's admin interface on the companion bus.
 *
 * Usage: `deno run --no-prompt <flags> console/main.ts [--bus <address>]`; the address defaults
 * to `$SD_COMPANION_BUS_ADDRESS`.
 *
 * Permissions: `--allow-env=SD_COMPANION_BUS_ADDRESS --allow-read=<sock> --allow-write=<sock>
 * --allow-net=unix:<sock> --allow-sys=uid`.
 *
 * The screen is a pure function of the state (`render.ts`), the state a pure reducer of events
 * (`state.ts`); this file only wires them to the terminal, the clock and the daemon.
 *
 * @module
 */

import { AdminClient, AdminError, AdminUnreachableError } from "../lib/admin_client.ts";
import { escapeLine } from "../lib/sanitize.ts";
import { render, START_HINT } from "./render.ts";
import {
  type Effect,
  initialState,
  parseKeys,
  type UiEvent,
  type UiState,
  update,
} from "./state.ts";
import { denoTerminalIo, Screen } from "./terminal.ts";

/** Environment variable holding the companion bus address. */
export const ADDRESS_ENV = "SD_COMPANION_BUS_ADDRESS";
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
  if (address === undefined) {
    try {
      address = Deno.env.get(ADDRESS_ENV);
    } catch {
      // no --allow-env: treated as unset
    }
  }
  if (!address) return { error: `no bus address: pass --bus <address> or set ${ADDRESS_ENV}` };
  return { address };
}

function errorText(err: unknown): string {
  if (err instanceof AdminError) return `${err.dbusName}: ${err.text}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** The running console: state, terminal and daemon connection. */
class App {
  #state: UiState;
  readonly #screen: Screen;
  readonly #address: string;
  #client: AdminClient | null = null;
  #connecting = false;
  #refreshing = false;
  #refreshAgain = false;
  #drawQueued = false;
  #timers: ReturnType<typeof setInterval>[] = [];
  #done: () => void = () => {};
  readonly finished: Promise<void>;

  constructor(address: string, screen: Screen) {
    this.#address = address;
    this.#screen = screen;
    this.#state = initialState(address, Date.now(), screen.size());
    this.finished = new Promise((resolve) => this.#done = resolve);
  }

  start(): void {
    this.#screen.enter();
    this.#draw();
    this.#timers.push(setInterval(() => this.#tick(), TICK_MS));
    this.#timers.push(setInterval(() => this.#poll(), POLL_MS));
    this.#connect();
    this.#readInput();
  }

  dispatch(event: UiEvent): void {
    if (this.#state.quit) return;
    const { state, effects } = update(this.#state, event);
    this.#state = state;
    for (const e of effects) this.#run(e);
    this.#queueDraw();
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
    this.dispatch({ type: "tick", now: Date.now() });
  }

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
      const client = await AdminClient.connect(this.#address, {
        timeoutMs: 3_000,
        callTimeoutMs: 5_000,
      });
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
          this.dispatch({ type: "list", requests: await client.list() });
          this.dispatch({ type: "store", store: await client.status() });
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
          (c) =>
            effect.type === "approve"
              ? c.approve(effect.id, effect.digest)
              : c.deny(effect.id, effect.reason),
          () => this.dispatch({ type: "decision", id: effect.id, action, error: null }),
          (error) => this.dispatch({ type: "decision", id: effect.id, action, error }),
        );
        return;
      }
    }
  }

  #withClient<T>(
    call: (c: AdminClient) => Promise<T>,
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

  async #readInput(): Promise<void> {
    const buf = new Uint8Array(1024);
    const dec = new TextDecoder();
    while (!this.#state.quit) {
      let n: number | null;
      try {
        n = await Deno.stdin.read(buf);
      } catch {
        n = null;
      }
      if (n === null) {
        this.stop();
        return;
      }
      const at = Date.now();
      for (const key of parseKeys(dec.decode(buf.subarray(0, n), { stream: true }))) {
        this.dispatch({ type: "key", key, at });
      }
    }
  }

  /** Stops timers, closes the connection and restores the terminal. Idempotent. */
  stop(): void {
    if (!this.#state.quit) this.#state = { ...this.#state, quit: true };
    for (const t of this.#timers) clearInterval(t);
    this.#timers = [];
    this.#client?.close();
    this.#client = null;
    this.#screen.restore();
    this.#done();
  }
}

/**
 * Runs the console until the user quits, stdin closes or a signal arrives.
 *
 * @param args command-line arguments (`--bus <address>`)
 * @returns the exit code: 0 after a normal quit, 2 without an address or a terminal
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
  const app = new App(resolved.address, screen);

  // Restore the terminal on every way out. Never listen to SIGUSR1 (see DESIGN.md §6).
  const onSignal = () => app.stop();
  const onResize = () => app.resize();
  const signals: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP"];
  for (const s of signals) Deno.addSignalListener(s, onSignal);
  Deno.addSignalListener("SIGWINCH", onResize);
  const onUnload = () => screen.restore();
  const onError = (e: ErrorEvent) => {
    screen.restore();
    console.error("console: fatal error:", e.error);
  };
  const onRejection = (e: PromiseRejectionEvent) => {
    // dbus-next can leave rejected promises behind on a broken connection: keep running.
    e.preventDefault();
  };
  globalThis.addEventListener("unload", onUnload);
  globalThis.addEventListener("error", onError);
  globalThis.addEventListener("unhandledrejection", onRejection);
  try {
    app.start();
    await app.finished;
  } finally {
    screen.restore();
    for (const s of signals) Deno.removeSignalListener(s, onSignal);
    Deno.removeSignalListener("SIGWINCH", onResize);
    globalThis.removeEventListener("error", onError);
    globalThis.removeEventListener("unhandledrejection", onRejection);
  }
  return 0;
}

if (import.meta.main) {
  // Exit explicitly: a pending stdin read would keep the process alive.
  Deno.exit(await main(Deno.args));
}
