// A read grant on a real bus, against the attack a reviewer found: a grant made for a request the
// agent relayed for a program must not let another process read the items by calling the daemon
// itself with a copy of the agent's report. Real dbus-daemon, the daemon's DispatcherService and
// SecretRequests, the real ps; the "victim" program is a real process (sleep), so its report is
// consistent with ps whoever sends it.

import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  DispatcherClient,
  type PendingRequest,
  RequestRefusedError,
} from "../lib/dispatcher_client.ts";
import { type ClientReport, Errors } from "../lib/protocol.ts";
import { psProcReader } from "./proc.ts";
import { dispatcherStack } from "./test_support.ts";

const UID = Deno.uid()!;
const ROOT = fileURLToPath(new URL("..", import.meta.url));
const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

async function setup() {
  const proc = psProcReader();
  const t = await dispatcherStack({ proc, clientUid: UID });
  // The program the grant is for: a real process of this uid.
  const victim = new Deno.Command("sleep", {
    args: ["300"],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  // Its command line as the agent would read it (Deno runs it by its full path).
  const seen = await proc.info(victim.pid);
  const report: ClientReport = {
    busName: ":1.999",
    pid: victim.pid,
    uid: UID,
    exe: null,
    cmdline: seen!.cmdline![0].split(" "),
    cwd: "/",
  };
  return {
    bus: t.bus,
    manager: t.manager,
    history: t.history,
    item: t.item,
    report,
    connect: t.connect,
    /** Entries of request `id` in the history. */
    historyOf: (id: string) => t.history.entries.filter((e) => e.id === id),
    async stop() {
      victim.kill();
      await victim.status;
      await t.stop();
    },
  };
}

/**
 * `RequestRead` on `c`. The completion is marked handled: a failed assertion must not turn into
 * an unhandled rejection when the connection is closed, hiding the failure.
 */
async function requestRead(
  c: DispatcherClient,
  item: string,
  report: ClientReport,
): Promise<PendingRequest> {
  const req = await c.requestRead([item], report);
  req.completed.catch(() => {});
  return req;
}

/** The values a request hands out, or the name of the daemon's refusal. */
async function readValue(req: PendingRequest, item: string): Promise<string> {
  try {
    return dec((await req.getSecrets([item])).get(item)!.value);
  } catch (err) {
    if (err instanceof RequestRefusedError) return err.dbusName;
    throw err;
  }
}

/**
 * The reviewer's attacker, in its own process (its own pid and connection): it searches and asks
 * to read with the copied `report` directly on the bus, prints `{pid, id}`, waits for a line on
 * stdin, then tries `GetSecrets` and prints `{outcome, got}`.
 */
async function attacker(address: string, socket: string, report: ClientReport) {
  const dir = await Deno.makeTempDir({ prefix: "sd-attacker-" });
  const script = `${dir}/attacker.ts`;
  const clientUrl = new URL("../lib/dispatcher_client.ts", import.meta.url).href;
  await Deno.writeTextFile(
    script,
    `import { DispatcherClient, RequestRefusedError } from ${JSON.stringify(clientUrl)};
const client = ${JSON.stringify(report)};
const c = await DispatcherClient.connect({ address: ${JSON.stringify(address)}, uid: ${UID} });
const [item] = await c.searchItems({ service: "mail" }, { client });
const req = await c.requestRead([item.path], client);
let outcome = null;
req.completed.then((r) => outcome = r.outcome, () => {});
console.log(JSON.stringify({ pid: Deno.pid, id: req.id }));
await Deno.stdin.read(new Uint8Array(16));
let got;
try {
  got = new TextDecoder().decode((await req.getSecrets([item.path])).get(item.path).value);
} catch (e) {
  got = e instanceof RequestRefusedError ? e.dbusName : String(e);
}
console.log(JSON.stringify({ outcome, got }));
c.close();
`,
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--no-prompt",
      "--cached-only",
      `--config=${ROOT}deno.json`,
      "--allow-sys=uid",
      `--allow-read=${ROOT},${socket}`,
      `--allow-write=${socket}`,
      `--allow-net=unix:${socket}`,
      script,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const line = async (): Promise<Record<string, unknown>> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) {
        const err = await new Response(child.stderr).text();
        throw new Error(`the attacker ended early: ${buffered}${err}`);
      }
      buffered += value;
    }
    const i = buffered.indexOf("\n");
    const l = buffered.slice(0, i);
    buffered = buffered.slice(i + 1);
    return JSON.parse(l);
  };
  const writer = child.stdin.getWriter();
  return {
    line,
    go: () => writer.write(enc("go\n")),
    async done() {
      await writer.close().catch(() => {});
      lines.releaseLock();
      await child.stdout.cancel().catch(() => {});
      await child.stderr.cancel().catch(() => {});
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

Deno.test("read grant: a copied report on another connection is asked on the console, the granted connection is not", async () => {
  const t = await setup();
  try {
    const agent = await t.connect();
    // The agent relays the program's read; the human approves it with a 10-minute grant.
    const first = await requestRead(agent, t.item, t.report);
    const view = t.manager.get(first.id);
    assert.equal(view.secret?.clientCheck.consistent, true, "ps confirms the report");
    assert.equal(view.caller.pid, Deno.pid, "the verified caller is the agent's connection");
    const rule = t.manager.approveWithGrant(first.id, view.digest, { minutes: 10 });
    assert.equal((await first.completed).outcome, "done");
    assert.equal(await readValue(first, t.item), "hunter2");

    // The same connection asks again for the same program: approved by the grant, no prompt.
    const second = await requestRead(agent, t.item, t.report);
    assert.equal((await second.completed).outcome, "done");
    assert.equal(await readValue(second, t.item), "hunter2");
    assert.ok(t.historyOf(second.id).some((e) => e.event === "approved" && e.rule === rule.id));

    // Another process copies the report and calls the daemon itself: a pending request.
    const other = await attacker(t.bus.address, t.bus.socket, t.report);
    try {
      const { pid, id } = await other.line() as { pid: number; id: string };
      assert.notEqual(pid, Deno.pid);
      await new Promise((r) => setTimeout(r, 200)); // a grant decides within a 0 ms timer
      const seen = t.manager.get(id);
      assert.equal(seen.state, "pending", "not approved by the grant");
      assert.ok(t.manager.list().some((v) => v.id === id), "shown as pending");
      assert.equal(seen.caller.pid, pid, "the console shows the attacker as the caller");
      assert.equal(seen.secret?.clientCheck.consistent, true, "the copy is consistent with ps");
      assert.ok(t.historyOf(id).every((e) => !e.rule && !/grant/.test(e.message ?? "")));
      await other.go();
      assert.deepEqual(await other.line(), { outcome: null, got: Errors.NotApproved });
      t.manager.deny(String(id));
    } finally {
      await other.done();
    }

    // Another connection of this very process (as after an agent reconnect): asked too.
    const reconnected = await t.connect();
    const [found] = await reconnected.searchItems({ service: "mail" }, { client: t.report });
    const third = await requestRead(reconnected, found.path, t.report);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(t.manager.get(third.id).state, "pending");
    assert.ok(t.historyOf(third.id).every((e) => !e.rule));
    assert.equal(await readValue(third, t.item), Errors.NotApproved);
    t.manager.deny(third.id);
    assert.equal((await third.completed).outcome, "denied");

    assert.equal(t.manager.rules().find((r) => r.id === rule.id)?.uses, 1, "used once only");
  } finally {
    await t.stop();
  }
});
