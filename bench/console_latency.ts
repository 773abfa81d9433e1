/**
 * Console latency for `deno task bench`: the time from a request method returning (the signer's
 * `RequestSign` call has its request path) to the request being on the console's screen. The
 * console entrypoint runs with its production flags on a pseudo-terminal (`dev/pty_run.py`); its
 * output bytes go into a headless terminal emulator (`@xterm/headless`), and "on screen" means
 * the request's short id is in the emulator's visible buffer. Target: under 100 ms.
 *
 * @module
 */

import xterm from "@xterm/headless";
import { denoArgs } from "../deploy/permissions.ts";
import { denoDir, ROOT } from "../dev/harness.ts";
import type { SignStack } from "../dev/harness.ts";
import { DispatcherClient } from "../lib/dispatcher_client.ts";
import { type Stats, stats } from "./stats.ts";

const COLS = 120;
const ROWS = 40;
const PTY = new URL("../dev/pty_run.py", import.meta.url).pathname;

function payload(n: number): Uint8Array {
  return new TextEncoder().encode(
    "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n" +
      "author Bench <bench@example.test> 1700000000 +0000\n" +
      "committer Bench <bench@example.test> 1700000000 +0000\n\n" +
      `console latency ${n}\n`,
  );
}

/**
 * Measures the latency `runs` times (each request is denied afterwards, and the next one is made
 * once the screen shows no pending request).
 *
 * @param s a running stack (no approver running: the requests must stay pending)
 * @param options `runs`
 * @returns the latency statistics, ms
 * @throws {Error} when the console does not start or a request does not appear within 10 s
 */
export async function benchConsoleLatency(
  s: SignStack,
  options: { runs: number },
): Promise<Stats> {
  const args = denoArgs("console", {
    root: ROOT,
    paths: {
      systemBusSocket: s.systemBus.socket,
      companionBusSocket: s.companionBus.socket,
      stateDir: "",
      gpg: "",
      gitDirs: [],
    },
  });
  const child = new Deno.Command("/usr/bin/python3", {
    args: [PTY, String(COLS), String(ROWS), "--", Deno.execPath(), ...args],
    clearEnv: true,
    env: {
      PATH: "/usr/bin:/bin",
      TERM: "xterm-256color",
      DENO_DIR: await denoDir(),
      SD_COMPANION_BUS_ADDRESS: s.companionBus.address,
    },
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const term = new xterm.Terminal({ cols: COLS, rows: ROWS, allowProposedApi: true });
  const screen = () => {
    const b = term.buffer.active;
    let text = "";
    for (let i = 0; i < ROWS; i++) text += b.getLine(i)!.translateToString(true) + "\n";
    return text;
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
    for await (const chunk of child.stdout) term.write(chunk, check);
  })();
  const until = (what: string, want: (text: string) => boolean): Promise<number> => {
    const { promise, resolve, reject } = Promise.withResolvers<number>();
    const timer = setTimeout(() => reject(new Error(`not on the console: ${what}`)), 10_000);
    waiter = {
      want,
      resolve: (at) => {
        clearTimeout(timer);
        resolve(at);
      },
    };
    check();
    return promise;
  };
  const client = await DispatcherClient.connect({
    address: s.systemBus.address,
    uid: Deno.uid()!,
  });
  const samples: number[] = [];
  try {
    await until("the list", (t) => t.includes("no pending requests"));
    for (let n = 0; n <= options.runs; n++) {
      const pending = await client.requestSign(payload(n), {
        keySpec: s.key.fingerprint,
        context: {},
      });
      const returned = performance.now();
      const shown = await until(pending.id, (t) => t.includes(pending.id.slice(0, 8)));
      if (n > 0) samples.push(shown - returned); // the first one warms the console up
      await s.admin.deny(pending.id, "bench");
      await pending.completed;
      await until("the empty list", (t) => t.includes("no pending requests"));
    }
  } finally {
    client.close();
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
    await child.stdin.close().catch(() => {});
    await child.status;
    await pump.catch(() => {});
  }
  return stats(samples);
}
