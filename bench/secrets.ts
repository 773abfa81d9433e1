/**
 * Secret Service benchmarks for `deno task bench`: `secret-tool lookup` through the agent and the
 * daemon (approval by the admin interface, the same calls `ctl approve` makes) against the same
 * lookup straight from gnome-keyring; lookups inside one client connection while its approval is
 * still valid, against the same loop straight from gnome-keyring; and the resident memory of the
 * daemon and the agent, idle and after 1000 approved requests.
 *
 * @module
 */

import { Approver, exec } from "../dev/harness.ts";
import type { SecretStack } from "../dev/secret_stack.ts";
import { type Stats, stats, time } from "./stats.ts";

const PYTHON = "/usr/bin/python3";
const CLIENT = new URL("./secret_client.py", import.meta.url).pathname;

/** What {@link benchSecrets} measured. */
export interface SecretBench {
  lookupThroughAgent: Stats;
  lookupDirect: Stats;
  /** Median through / median direct. */
  lookupRatio: number;
  approvedLookupThroughAgent: Stats;
  approvedLookupDirect: Stats;
  /** Median through / median direct, for lookups with a still-valid approval. Target ≤ 2. */
  approvedLookupRatio: number;
  /** Resident set sizes in KiB. */
  rssKiB: {
    daemonIdle: number;
    agentIdle: number;
    daemonAfter: number;
    agentAfter: number;
    requests: number;
  };
}

async function rss(pid: number): Promise<number> {
  const r = await exec("ps", ["-o", "rss=", "-p", String(pid)]);
  return Number(r.stdout.trim());
}

async function ok(r: Promise<{ code: number; stderr: string; stdout: string }>): Promise<string> {
  const out = await r;
  if (out.code !== 0) throw new Error(out.stderr.trim() || `exit ${out.code}`);
  return out.stdout;
}

/**
 * Runs the Secret Service benchmarks on a running stack.
 *
 * @param s the stack (agent running)
 * @param options `runs` per measurement (at least 10 for published numbers), `requests` for
 *   the memory measurement (default 1000)
 */
export async function benchSecrets(
  s: SecretStack,
  options: { runs: number; requests?: number },
): Promise<SecretBench> {
  const { runs } = options;
  const requests = options.requests ?? 1000;
  const agentEnv = s.clientEnv;
  const directEnv = { ...s.clientEnv, DBUS_SESSION_BUS_ADDRESS: s.companionBus.address };
  const approver = new Approver(s.admin, () => "approve", { pollMs: 2 });
  try {
    await ok(exec("secret-tool", ["store", "--label=bench", "bench", "lookup"], {
      env: agentEnv,
      stdin: "bench-secret",
    }));
    const lookup = (env: Record<string, string>) => async () => {
      if ((await ok(exec("secret-tool", ["lookup", "bench", "lookup"], { env }))) === "") {
        throw new Error("lookup returned nothing");
      }
    };
    // Warm both paths once.
    await lookup(agentEnv)();
    await lookup(directEnv)();
    const through: number[] = [];
    const direct: number[] = [];
    for (let n = 0; n < runs; n++) {
      through.push(await time(lookup(agentEnv)));
      direct.push(await time(lookup(directEnv)));
    }
    const loop = async (env: Record<string, string>) =>
      (JSON.parse(
        await ok(exec(PYTHON, [CLIENT, "lookups", String(runs), "bench", "lookup"], { env })),
      ) as { ms: number[] }).ms;
    const approvedThrough = await loop(agentEnv);
    const approvedDirect = await loop(directEnv);

    const daemonIdle = await rss(s.daemon.pid);
    const agentIdle = await rss(s.agent.pid);
    await ok(exec(PYTHON, [CLIENT, "requests", String(requests), "bench", "lookup"], {
      env: agentEnv,
    }));
    // Let the finished requests' timers and buffers settle before reading memory.
    await new Promise((r) => setTimeout(r, 500));
    const result: SecretBench = {
      lookupThroughAgent: stats(through),
      lookupDirect: stats(direct),
      lookupRatio: 0,
      approvedLookupThroughAgent: stats(approvedThrough),
      approvedLookupDirect: stats(approvedDirect),
      approvedLookupRatio: 0,
      rssKiB: {
        daemonIdle,
        agentIdle,
        daemonAfter: await rss(s.daemon.pid),
        agentAfter: await rss(s.agent.pid),
        requests,
      },
    };
    const ratio = (a: Stats, b: Stats) => Math.round(a.medianMs / b.medianMs * 10) / 10;
    result.lookupRatio = ratio(result.lookupThroughAgent, result.lookupDirect);
    result.approvedLookupRatio = ratio(
      result.approvedLookupThroughAgent,
      result.approvedLookupDirect,
    );
    return result;
  } finally {
    await approver.stop();
  }
}
