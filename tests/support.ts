/**
 * Test support: command helpers. The signing stack and the approver that plays the human live in
 * `dev/harness.ts` (shared with the demo and the benchmarks).
 *
 * @module
 */

import type { AdminClient } from "../lib/admin_client.ts";
export { Approver, type Decide, exec, type SignStack, signStack } from "../dev/harness.ts";

/** True when the tests run as root (real-user tests need it). */
export const IS_ROOT = Deno.uid() === 0;

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
