import assert from "node:assert/strict";
import type { VerifiedCaller } from "../lib/protocol.ts";
import { commitIdWithSignature } from "../lib/payload.ts";
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

/** A commit payload with `parent` as its first parent (or none). */
function commitPayload(parent: string | null, subject: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(
    "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n" +
      (parent ? `parent ${parent}\n` : "") +
      "author A U Thor <a@example.test> 1700000000 +0100\n" +
      "committer A U Thor <a@example.test> 1700000000 +0100\n\n" + subject + "\n",
  );
}

/** Lets the manager's async work (history, perform) and 0 ms timers run. */
async function settle(clock: { advance(ms: number): void }) {
  for (let i = 0; i < 5; i++) {
    clock.advance(0);
    await new Promise((r) => setTimeout(r, 0));
  }
}

Deno.test("rebase grant: the next N signatures whose first parent is the commit just signed", async () => {
  const { m, clock, gpg, history, submit } = setup();
  const base = "a".repeat(40);
  const p0 = commitPayload(base, "pick 1");
  const first = await submit(":1.9", p0);
  const rule = m.approveWithGrant(first, m.get(first).digest, { signatures: 2 });
  assert.equal(rule.type, "rebase-grant");
  assert.equal(rule.remaining, 2);
  await settle(clock);
  assert.equal(m.get(first).state, "done");
  // The commit git writes from p0 and the signature the daemon returned.
  const c1 = commitIdWithSignature(p0, gpg.lastSignature!, "sha1");
  // A payload that does not continue it: asks the human.
  const stray = await submit(":1.9", commitPayload(base, "elsewhere"));
  await settle(clock);
  assert.equal(m.get(stray).state, "pending");
  // The continuation: approved by the grant, never pending on the console.
  const p1 = commitPayload(c1, "pick 2");
  const second = await submit(":1.9", p1);
  assert.deepEqual(m.summaries().map((s) => s.id), [stray], "not listed as pending");
  await settle(clock);
  assert.equal(m.get(second).state, "done");
  assert.ok(
    history.entries.some((e) => e.id === second && e.event === "approved" && e.rule === rule.id),
    "the history names the grant",
  );
  const c2 = commitIdWithSignature(p1, gpg.lastSignature!, "sha1");
  const third = await submit(":1.9", commitPayload(c2, "pick 3"));
  await settle(clock);
  assert.equal(m.get(third).state, "done");
  assert.deepEqual(m.rules(), [], "spent after 2");
  const c3 = commitIdWithSignature(commitPayload(c2, "pick 3"), gpg.lastSignature!, "sha1");
  const fourth = await submit(":1.9", commitPayload(c3, "pick 4"));
  await settle(clock);
  assert.equal(m.get(fourth).state, "pending", "the grant is used up");
});

Deno.test("rebase grant: another key, or a payload while one is signing, is not covered", async () => {
  const { m, clock, gpg, submit } = setup();
  const p0 = commitPayload("b".repeat(40), "pick 1");
  const first = await submit(":1.9", p0);
  m.approveWithGrant(first, m.get(first).digest, { signatures: 5 });
  // Before the first signature is back the grant has no commit to continue.
  const early = await submit(":1.9", commitPayload("b".repeat(40), "pick 2"));
  await settle(clock);
  assert.equal(m.get(early).state, "pending");
  const c1 = commitIdWithSignature(p0, gpg.lastSignature!, "sha1");
  const otherKey = await submit(":1.9", commitPayload(c1, "pick 2"), "Other Key");
  await settle(clock);
  assert.equal(m.get(otherKey).state, "pending");
  assert.throws(
    () => m.approveWithGrant(early, m.get(early).digest, { signatures: 0 }),
    /1-100 signatures/,
  );
  // The option of the other kind is refused, not ignored: nothing approved.
  assert.throws(
    () => m.approveWithGrant(early, m.get(early).digest, { signatures: 3, minutes: 3 }),
    /no grant: a sign\.commit request takes a rebase grant of 1-100 signatures \("signatures"\), not "minutes" \(secret\.read\)/,
  );
  assert.throws(
    () => m.approveWithGrant(early, m.get(early).digest, { minutes: 5 }),
    /not "minutes"/,
  );
  assert.equal(m.get(early).state, "pending");
  // Expiry: 30 minutes.
  clock.advance(31 * 60_000);
  assert.deepEqual(m.rules(), []);
});

function secretSubmit(
  m: RequestManager,
  facts: {
    client: { pid: number; cmdline: string; started?: string | null } | null;
    items: string[];
  },
  caller: VerifiedCaller = CALLER,
) {
  return m.submit({
    kind: "secret.read",
    caller,
    requester: caller === CALLER ? ":1.20" : caller.busName,
    digest: "d".repeat(64),
    summary: "read",
    facts,
    perform: () => Promise.resolve({ items: facts.items, readable: facts.items }),
  });
}

Deno.test("read grant: this program may read these items for N minutes", async () => {
  const { m, clock, history } = setup();
  const client = {
    pid: 4242,
    cmdline: "secret-tool lookup service mail",
    started: "Mon Nov 30 06:50:01 2026",
  };
  const items = ["/org/freedesktop/secrets/collection/login/1", "/org/x/2"];
  const first = await secretSubmit(m, { client, items });
  const rule = m.approveWithGrant(first, m.get(first).digest, { minutes: 2 });
  assert.equal(rule.type, "read-grant");
  assert.equal(rule.expiresAt, clock.now() + 120_000);
  await settle(clock);
  // Same program, a subset of the items: approved without asking.
  const again = await secretSubmit(m, { client, items: [items[1]] });
  await settle(clock);
  assert.equal(m.get(again).state, "done");
  assert.ok(history.entries.some((e) => e.id === again && e.rule === rule.id));
  // Another process, another command line, another item, an unverified program: asked.
  for (
    const facts of [
      { client: { ...client, pid: 4243 }, items },
      { client: { ...client, cmdline: "secret-tool lookup service bank" }, items },
      // The program exited and another process got its pid, with the same command line.
      { client: { ...client, started: "Mon Nov 30 06:51:40 2026" }, items },
      { client, items: ["/org/x/3"] },
      { client: null, items },
    ]
  ) {
    const id = await secretSubmit(m, facts);
    await settle(clock);
    assert.equal(m.get(id).state, "pending", JSON.stringify(facts));
    m.deny(id);
  }
  // After 2 minutes: asked again.
  clock.advance(120_000);
  const late = await secretSubmit(m, { client, items });
  await settle(clock);
  assert.equal(m.get(late).state, "pending");
  // No grant for an unverified program.
  const unverified = await secretSubmit(m, { client: null, items });
  assert.throws(
    () => m.approveWithGrant(unverified, m.get(unverified).digest, { minutes: 2 }),
    /not verified/,
  );
  assert.equal(m.get(unverified).state, "pending", "nothing approved when the grant is refused");
  for (const options of [{ signatures: 3 }, { minutes: 2, signatures: 3 }]) {
    assert.throws(
      () => m.approveWithGrant(unverified, m.get(unverified).digest, options),
      /a secret\.read request takes a read grant of 1-60 minutes \("minutes"\), not "signatures"/,
    );
  }
  assert.equal(m.get(unverified).state, "pending");
});

Deno.test("read grant: only for the verified connection that sent the granted request", async () => {
  const { m, clock, history } = setup();
  // The agent relayed the granted request; the program it named was confirmed by ps.
  const agent: VerifiedCaller = { ...CALLER, busName: ":1.30", pid: 500 };
  const client = { pid: 4242, cmdline: "python3 victim.py" };
  const items = ["/org/x/1"];
  const first = await secretSubmit(m, { client, items }, agent);
  const rule = m.approveWithGrant(first, m.get(first).digest, { minutes: 10 });
  assert.equal(
    rule.description,
    "pid 4242 (python3 victim.py), asking through :1.30 (uid 1000, pid 500), " +
      "may read 1 item(s) for 10 min: /org/x/1",
  );
  await settle(clock);
  // Any other connection naming the same program (a copied report, which ps confirms just the
  // same) is asked: another process; another connection of the agent's process (it reconnected;
  // a restarted agent is both); and, defensively, another pid under the same name.
  for (
    const caller of [
      { ...agent, busName: ":1.31", pid: 501 },
      { ...agent, busName: ":1.31" },
      { ...agent, pid: 501 },
    ]
  ) {
    const id = await secretSubmit(m, { client, items }, caller);
    await settle(clock);
    assert.equal(m.get(id).state, "pending", JSON.stringify(caller));
    assert.ok(
      history.entries.filter((e) => e.id === id).every((e) =>
        !e.rule && !/grant/.test(e.message ?? "")
      ),
      "the history does not say approved by grant",
    );
    m.deny(id);
  }
  assert.equal(m.rules()[0].uses, 0);
  // The same connection for the same program: approved by the grant.
  const again = await secretSubmit(m, { client, items }, agent);
  await settle(clock);
  assert.equal(m.get(again).state, "done");
  assert.ok(
    history.entries.some((e) =>
      e.id === again && e.event === "approved" && e.rule === rule.id &&
      e.message === `approved by grant ${rule.id}`
    ),
  );
  m.readable(again, ":1.30", items);
  assert.equal(m.rules()[0].uses, 1);
});

Deno.test("secret deny rule: the program is denied whichever connection relays it", async () => {
  const { m, clock } = setup();
  const client = { pid: 4242, cmdline: "python3 victim.py" };
  const items = ["/org/x/1"];
  const first = await secretSubmit(m, { client, items });
  const rule = m.denyWithRule(first, "no", { minutes: 5 });
  // Denying more than the human saw fails closed: a copied report only gets itself denied.
  const other = await secretSubmit(m, { client, items }, {
    ...CALLER,
    busName: ":1.31",
    pid: 501,
  });
  await settle(clock);
  assert.equal(m.get(other).state, "denied");
  assert.equal(m.rules().find((r) => r.id === rule.id)?.uses, 1);
});

Deno.test("deny rule: later requests like it are denied until revoked", async () => {
  const { m, clock, history, submit } = setup();
  const a = await submit();
  const rule = m.denyWithRule(a, "no", {});
  assert.equal(rule.type, "deny");
  assert.equal(rule.expiresAt, null);
  const b = await submit();
  await settle(clock);
  assert.equal(m.get(b).state, "denied");
  assert.ok(history.entries.some((e) => e.id === b && e.event === "denied" && e.rule === rule.id));
  assert.equal(m.rules()[0].uses, 1);
  m.revoke(rule.id);
  assert.throws(() => m.revoke(rule.id), /no grant or rule/);
  const c = await submit();
  await settle(clock);
  assert.equal(m.get(c).state, "pending");
});

Deno.test("lock: pending requests denied, grants and read windows gone, new requests refused", async () => {
  const { m, clock, submit } = setup();
  const client = { pid: 1, cmdline: "x" };
  const r = await secretSubmit(m, { client, items: ["/org/x/1"] });
  m.approveWithGrant(r, m.get(r).digest, { minutes: 10 });
  await settle(clock);
  m.readable(r, ":1.20", ["/org/x/1"]);
  const pendingSign = await submit();
  const deny = m.denyWithRule(await submit(":1.11", PAYLOAD, "Other"), "no", { minutes: 5 });
  m.lock();
  assert.equal(m.locked, true);
  assert.equal(m.get(pendingSign).state, "denied");
  assert.deepEqual(m.rules().map((x) => x.id), [deny.id], "grants gone, deny rules stay");
  assert.throws(() => m.readable(r, ":1.20", ["/org/x/1"]), /locked/);
  await assert.rejects(submit(), /locked on the console/);
  m.unlock();
  const after = await submit();
  assert.equal(m.get(after).state, "pending");
});
