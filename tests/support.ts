/**
 * Test support: command helpers and an approver that plays the human through the real admin
 * client. The signing stack itself lives in `dev/harness.ts` (shared with the demo and benches).
 *
 * @module
 */

import type { AdminClient } from "../lib/admin_client.ts";
import type { RequestView } from "../lib/protocol.ts";
export { type SignStack, signStack } from "../dev/harness.ts";

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

/** The human's decision for one request; null leaves it pending. */
export type Decide = (view: RequestView) => "approve" | "deny" | null;

/**
 * Plays the human: polls the pending list through the real admin client and decides each new
 * request with `decide`, approving with the digest of the view it looked at.
 */
export class Approver {
  /** Every request seen, in order. */
  readonly seen: RequestView[] = [];
  #admin: AdminClient;
  #decide: Decide;
  #stop = false;
  #loop: Promise<void>;

  /**
   * @param admin a connected admin client
   * @param decide the decision for each request
   */
  constructor(admin: AdminClient, decide: Decide) {
    this.#admin = admin;
    this.#decide = decide;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    const handled = new Set<string>();
    while (!this.#stop) {
      for (const view of await this.#admin.list()) {
        if (handled.has(view.id)) continue;
        const d = this.#decide(view);
        if (d === null) continue;
        handled.add(view.id);
        this.seen.push(view);
        if (d === "approve") await this.#admin.approve(view.id, view.digest);
        else await this.#admin.deny(view.id, "test says no");
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Stops polling. */
  async stop(): Promise<void> {
    this.#stop = true;
    await this.#loop;
  }
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
