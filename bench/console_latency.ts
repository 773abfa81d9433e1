/**
 * Console latency for `deno task bench`: the time from a request method returning (the signer's
 * `RequestSign` call has its request path) to the request being on the console's screen. The
 * console entrypoint runs with its production flags on a pseudo-terminal, its output bytes going
 * into a headless terminal emulator (`dev/console_pty.ts`), and "on screen" means the request's
 * short id is in the emulator's visible buffer. Target: under 100 ms.
 *
 * @module
 */

import { startConsoleOnPty } from "../dev/console_pty.ts";
import type { SignStack } from "../dev/harness.ts";
import { DispatcherClient } from "../lib/dispatcher_client.ts";
import { type Stats, stats } from "./stats.ts";

const COLS = 120;
const ROWS = 40;

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
  const con = await startConsoleOnPty(s.companionBus, { cols: COLS, rows: ROWS });
  const client = await DispatcherClient.connect({
    address: s.systemBus.address,
    uid: Deno.uid()!,
  });
  const samples: number[] = [];
  try {
    await con.until("the list", (t) => t.includes("no pending requests"));
    for (let n = 0; n <= options.runs; n++) {
      const pending = await client.requestSign(payload(n), {
        keySpec: s.key.fingerprint,
        context: {},
      });
      const returned = performance.now();
      const shown = await con.until(pending.id, (t) => t.includes(pending.id.slice(0, 8)));
      if (n > 0) samples.push(shown - returned); // the first one warms the console up
      await s.admin.deny(pending.id, "bench");
      await pending.completed;
      await con.until("the empty list", (t) => t.includes("no pending requests"));
    }
  } finally {
    client.close();
    await con.stop();
  }
  return stats(samples);
}
