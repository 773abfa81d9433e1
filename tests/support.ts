/**
 * Test support: command helpers. The signing stack and the approver that plays the human live in
 * `dev/harness.ts` (shared with the demo and the benchmarks).
 *
 * @module
 */

import type { AdminClient } from "../lib/admin_client.ts";
export { Approver, type Decide, type SignStack, signStack } from "../dev/harness.ts";

/** True when the tests run as root (real-user tests need it). */
export const IS_ROOT = Deno.uid() === 0;

/** Runs a command and returns its exit code and output (never throws on failure). */
export async function exec(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; stdin?: Uint8Array | string } = {},
): Promise<{ code: number; stdout: string; stderr: string; stdoutBytes: Uint8Array }> {
  const child = new Deno.Command(cmd, {
    args,
    env: options.env,
    clearEnv: options.env !== undefined,
    cwd: options.cwd,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(
      typeof options.stdin === "string" ? new TextEncoder().encode(options.stdin) : options.stdin,
    );
    await w.close().catch(() => {});
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
    stdoutBytes: out.stdout,
  };
}

/** Waits until the admin's history has an entry for `id` with `event`, and returns it. */
export async function waitForHistory(
  admin: AdminClient,
  predicate: (e: { id: string; event: string }) => boolean,
  timeoutMs = 10_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if ((await admin.history(500)).some(predicate)) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error("timed out waiting for a history entry");
}
