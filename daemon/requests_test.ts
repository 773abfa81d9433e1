import assert from "node:assert/strict";
import type { VerifiedCaller } from "../lib/protocol.ts";
import { type Completion, RequestError, RequestManager } from "./requests.ts";
import { FakeClock, FakeGpg, MemoryHistory } from "./test_support.ts";

const PAYLOAD = new TextEncoder().encode(
  "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n" +
    "author A U Thor <a@example.test> 1700000000 +0100\n" +
    "committer A U Thor <a@example.test> 1700000000 +0100\n\nsubject\n\nbody\n",
);
const CALLER: VerifiedCaller = { busName: ":1.9", uid: 1000, pid: 42, cmdline: ["git"], exe: null };

function setup(opts: { maxPendingPerCaller?: number } = {}) {
  const clock = new FakeClock();
  const gpg = new FakeGpg();
  const history = new MemoryHistory();
  const completed: { id: string; requester: string; c: Completion }[] = [];
  const m = new RequestManager({
    gpg,
    history,
    clock,
    ttlMs: 60_000,
    ...opts,
    onCompleted: (id, requester, c) => completed.push({ id, requester, c }),
  });
  const submit = (requester = ":1.9", payload = PAYLOAD, keySpec = "A U Thor") =>
    m.submitSign({ caller: CALLER, requester, payload, keySpec, context: { repo: "/r" } });
  return { clock, gpg, history, completed, m, submit };
}

Deno.test("approve with the shown digest signs exactly the payload bytes", async () => {
  const { m, gpg, completed, submit } = setup();
  const id = await submit();
  const view = m.get(id.slice(0, 6));
  assert.equal(view.state, "pending");
  assert.equal(view.kind, "sign.commit");
  m.approve(id, view.digest);
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(gpg.signed, [PAYLOAD]);
  assert.equal(completed.length, 1);
  assert.equal(completed[0].c.outcome, "done");
  assert.equal(completed[0].requester, ":1.9");
  assert.equal(m.get(id).state, "done");
  assert.deepEqual(m.list(), []);
});

Deno.test("a wrong digest is refused and the request stays pending", async () => {
  const { m, gpg, submit } = setup();
  const id = await submit();
  assert.throws(
    () => m.approve(id, "0".repeat(64)),
    (e: RequestError) => e.dbusName.endsWith("DigestMismatch"),
  );
  assert.equal(m.get(id).state, "pending");
  assert.deepEqual(gpg.signed, []);
});

Deno.test("deny, expiry and cancel end requests with the right outcome", async () => {
  const { m, clock, completed, submit, history } = setup();
  const a = await submit();
  const b = await submit();
  const c = await submit(":1.10");
  m.deny(a, "looks wrong");
  assert.throws(
    () => m.approve(a, m.get(a).digest),
    (e: RequestError) => e.dbusName.endsWith("NotPending"),
  );
  assert.throws(
    () => m.cancel(c, ":1.9"),
    (e: RequestError) => e.dbusName.endsWith("NoSuchRequest"),
  );
  m.cancel(c, ":1.10");
  clock.advance(60_001);
  assert.deepEqual(completed.map((x) => [x.id, x.c.outcome]), [
    [a, "denied"],
    [c, "cancelled"],
    [b, "expired"],
  ]);
  assert.deepEqual(
    history.entries.filter((e) => e.id === b).map((e) => e.event),
    ["created", "expired"],
  );
});

Deno.test("a disconnecting requester has its pending requests cancelled", async () => {
  const { m, completed, submit } = setup();
  await submit(":1.20");
  await submit(":1.20");
  await submit(":1.21");
  assert.equal(m.cancelFrom(":1.20"), 2);
  assert.equal(m.list().length, 1);
  assert.deepEqual(completed.map((c) => c.c.outcome), ["cancelled", "cancelled"]);
});

Deno.test("gpg failure is reported as failed, not as a denial", async () => {
  const { m, gpg, completed, submit } = setup();
  gpg.failSign = true;
  const id = await submit();
  m.approve(id, m.get(id).digest);
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(completed[0].c.outcome, "failed");
  assert.match(completed[0].c.status ?? "", /FAILURE sign/);
});

Deno.test("bad payloads, unknown keys and floods are refused with clear errors", async () => {
  const { submit } = setup({ maxPendingPerCaller: 2 });
  await assert.rejects(
    submit(":1.9", new TextEncoder().encode("hello world\n")),
    (e: RequestError) => e.dbusName.endsWith("InvalidArgs") && /refusing to sign/.test(e.message),
  );
  await assert.rejects(submit(":1.9", new Uint8Array()), /empty payload/);
  await assert.rejects(submit(":1.9", PAYLOAD, "nobody"), /no secret key/);
  await submit();
  await submit();
  await assert.rejects(submit(), (e: RequestError) => e.dbusName.endsWith("LimitExceeded"));
});

Deno.test("id prefixes resolve uniquely", async () => {
  const { m, submit } = setup();
  const id = await submit();
  assert.equal(m.get(id.slice(0, 4)).id, id);
  assert.throws(() => m.get("zz"), (e: RequestError) => e.dbusName.endsWith("NoSuchRequest"));
  assert.throws(
    () => m.get("ffff".repeat(8)),
    (e: RequestError) => e.dbusName.endsWith("NoSuchRequest"),
  );
});

Deno.test("the digest covers the payload and the reported context", async () => {
  const { m } = setup();
  const base = { caller: CALLER, requester: ":1.9", keySpec: "k" };
  const a = await m.submitSign({ ...base, payload: PAYLOAD, context: { repo: "/r" } });
  const b = await m.submitSign({ ...base, payload: PAYLOAD, context: { repo: "/other" } });
  const changed = new Uint8Array(PAYLOAD);
  changed[changed.length - 2] = 0x21;
  const c = await m.submitSign({ ...base, payload: changed, context: { repo: "/r" } });
  const digests = new Set([a, b, c].map((id) => m.get(id).digest));
  assert.equal(digests.size, 3);
});

Deno.test("summaries: what List returns, small and with the same digest as the full view", async () => {
  const { m, submit, clock } = setup();
  const long = new TextEncoder().encode(
    "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n" +
      "author A U Thor <a@example.test> 1700000000 +0100\n" +
      "committer A U Thor <a@example.test> 1700000000 +0100\n\n" + "x".repeat(500) + "\n\n" +
      "body\n".repeat(10_000),
  );
  const a = await submit();
  clock.t += 1;
  const b = await submit(":1.10", long);
  const list = m.summaries();
  assert.deepEqual(list.map((s) => s.id), [a, b]);
  const view = m.get(a);
  assert.deepEqual(list[0], {
    id: a,
    kind: "sign.commit",
    state: "pending",
    createdAt: view.createdAt,
    expiresAt: view.expiresAt,
    summary: "subject",
    callerUid: 1000,
    callerPid: 42,
    digest: view.digest,
  });
  assert.equal(list[1].summary, `${"x".repeat(200)}… (500 chars)`);
  assert.ok(JSON.stringify(list[1]).length < 1_000, "a 50 KB body does not travel in List");
  m.deny(a);
  assert.deepEqual(m.summaries().map((s) => s.id), [b]);
});
