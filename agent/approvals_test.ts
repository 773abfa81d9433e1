import assert from "node:assert/strict";
import type { ClientReport } from "../lib/protocol.ts";
import { Approvals } from "./approvals.ts";
import { FakePort } from "./test_support.ts";

const report: ClientReport = {
  busName: ":1.5",
  pid: null,
  uid: null,
  exe: null,
  cmdline: null,
  cwd: null,
};

function setup() {
  let now = 1_000_000;
  const port = new FakePort();
  const a = port.addItem("A", {}, "a");
  const b = port.addItem("B", {}, "b");
  const c = port.addItem("C", {}, "c");
  const approvals = new Approvals({ windowMs: 1000, now: () => now });
  let raised = 0;
  const raise = (items: string[]) => () => {
    raised++;
    return port.requestRead(items, report);
  };
  return { port, a, b, c, approvals, raise, raised: () => raised, tick: (ms: number) => now += ms };
}

Deno.test("Approvals: a read covering the items is joined; a done read grants for the window only", async () => {
  const { port, a, b, c, approvals, raise, raised, tick } = setup();
  const first = await approvals.read(":1.5", [a, b], raise([a, b]));
  const joined = await approvals.read(":1.5", [b], raise([b]));
  assert.equal(joined, first);
  const other = await approvals.read(":1.5", [b, c], raise([b, c]));
  assert.notEqual(other, first);
  const elsewhere = await approvals.read(":1.6", [a], raise([a]));
  assert.notEqual(elsewhere, first, "another connection never joins");
  assert.equal(raised(), 3);

  port.requests[0].approve();
  assert.deepEqual(await first.result, { approved: true, items: [a, b] });
  assert.equal(approvals.approved(":1.5", a), true);
  assert.equal(approvals.approved(":1.6", a), false);
  assert.equal(approvals.source(":1.5", b), port.requests[0]);
  tick(999);
  assert.equal(approvals.approved(":1.5", a), true);
  tick(1);
  assert.equal(approvals.approved(":1.5", a), false, "the window is over");

  port.requests[1].deny();
  const denied = await other.result;
  assert.deepEqual(denied, {
    approved: false,
    outcome: "denied",
    message: "denied on the console",
  });
  assert.equal(approvals.approved(":1.5", c), false);
});

Deno.test("Approvals: dropClient cancels the pending reads and writes of a client that left", async () => {
  const { port, a, b, approvals, raise } = setup();
  const read = await approvals.read(":1.5", [a], raise([a]));
  const write = await port.requestDelete(b, report);
  const untrack = approvals.trackWrite(":1.5", write);
  assert.equal(approvals.busy(":1.5"), true);
  await approvals.dropClient(":1.5");
  assert.equal(port.requests[0].state, "cancelled");
  assert.equal(port.requests[1].state, "cancelled");
  assert.equal((await read.result).approved, false);
  assert.equal(approvals.busy(":1.5"), false);
  untrack();
});

Deno.test("Approvals: a refused raise leaves no pending read behind; revoke and sweep forget grants", async () => {
  const { port, a, approvals, raise, tick } = setup();
  port.status = { state: "locked", message: "locked" };
  await assert.rejects(approvals.read(":1.5", [a], raise([a])));
  assert.equal(approvals.busy(":1.5"), false);

  port.status = { state: "unlocked", message: "" };
  const req = await port.requestRead([a], report);
  approvals.grant(":1.5", [a], req);
  approvals.revoke(":1.5", (i) => i === a);
  assert.equal(approvals.approved(":1.5", a), false);
  approvals.grant(":1.5", [a], req);
  assert.deepEqual(approvals.clients(), [":1.5"]);
  tick(1000);
  approvals.sweep();
  assert.deepEqual(approvals.clients(), []);
});
