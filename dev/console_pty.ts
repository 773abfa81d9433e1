/**
 * The console entrypoint as a person would use it in a terminal: `console/main.ts` with its
 * production permission flags on a pseudo-terminal (`dev/pty_run.py`), its output bytes fed to a
 * headless terminal emulator (`@xterm/headless`), and keys typed into the terminal. Shared by the
 * integration tests and the benchmarks (tests and bench only; never an entrypoint).
 *
 * @module
 */

import xterm from "@xterm/headless";
import { denoArgs } from "../deploy/permissions.ts";
import { type BusInfo, denoDir, ROOT } from "./harness.ts";

const PTY = new URL("./pty_run.py", import.meta.url).pathname;

/** A running console on a pty. */
export interface PtyConsole {
  /** The visible rows, as text (trailing blanks cut), joined by newlines. */
  screen(): string;
  /** Every byte the console wrote so far (to check what it never wrote). */
  output(): Uint8Array;
  /** Types `text` into the terminal (one write). */
  type(text: string): Promise<void>;
  /**
   * Waits until the screen satisfies `want`.
   *
   * @param what what is waited for, for the error
   * @param timeoutMs give up after this long (default 10 s)
   * @returns `performance.now()` when the emulator had taken the bytes that made it so
   * @throws {Error} naming `what` and holding the screen, on timeout
   */
  until(what: string, want: (screen: string) => boolean, timeoutMs?: number): Promise<number>;
  /** Ends the console (SIGTERM) and waits for it. */
  stop(): Promise<void>;
}

/**
 * Starts the console on a pty of `cols` x `rows` against the companion bus.
 *
 * @param companionBus the bus the daemon's admin interface is on
 * @param options terminal size (default 100x30) and extra environment (`SD_CONSOLE_ARM_MS`...)
 */
export async function startConsoleOnPty(
  companionBus: BusInfo,
  options: { cols?: number; rows?: number; env?: Record<string, string> } = {},
): Promise<PtyConsole> {
  const cols = options.cols ?? 100;
  const rows = options.rows ?? 30;
  const args = denoArgs("console", {
    root: ROOT,
    paths: {
      systemBusSocket: "",
      companionBusSocket: companionBus.socket,
      stateDir: "",
      gpg: "",
      gitDirs: [],
    },
  });
  const child = new Deno.Command("/usr/bin/python3", {
    args: [PTY, String(cols), String(rows), "--", Deno.execPath(), ...args],
    clearEnv: true,
    env: {
      PATH: "/usr/bin:/bin",
      TERM: "xterm-256color",
      DENO_DIR: await denoDir(),
      SD_COMPANION_BUS_ADDRESS: companionBus.address,
      ...options.env,
    },
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const term = new xterm.Terminal({ cols, rows, allowProposedApi: true });
  const chunks: Uint8Array[] = [];
  const screen = () => {
    const b = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < rows; i++) lines.push(b.getLine(i)!.translateToString(true));
    return lines.join("\n");
  };
  let waiter: { want: (text: string) => boolean; resolve: (at: number) => void } | null = null;
  const check = () => {
    if (waiter && waiter.want(screen())) {
      const w = waiter;
      waiter = null;
      w.resolve(performance.now());
    }
  };
  const pump = (async () => {
    for await (const chunk of child.stdout) {
      chunks.push(chunk);
      term.write(chunk, check);
    }
  })();
  const writer = child.stdin.getWriter();
  return {
    screen,
    output() {
      const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
      let at = 0;
      for (const c of chunks) {
        out.set(c, at);
        at += c.length;
      }
      return out;
    },
    async type(text: string) {
      await writer.write(new TextEncoder().encode(text));
    },
    until(what, want, timeoutMs = 10_000) {
      const { promise, resolve, reject } = Promise.withResolvers<number>();
      const timer = setTimeout(() => {
        waiter = null;
        reject(new Error(`not on the console: ${what}\n--- screen ---\n${screen()}`));
      }, timeoutMs);
      waiter = {
        want,
        resolve: (at) => {
          clearTimeout(timer);
          resolve(at);
        },
      };
      check();
      return promise;
    },
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch { /* gone */ }
      await writer.close().catch(() => {});
      await child.status;
      await pump.catch(() => {});
    },
  };
}
