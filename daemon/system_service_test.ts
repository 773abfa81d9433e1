// The desktop side's view of pending requests over a real bus: Subscribe, the unicast
// RequestPending/RequestEnded signals, ListPending, DenyOwn, and subscribers dropped when they
// leave. The daemon's DispatcherService and the real DispatcherClient on a private bus.

import assert from "node:assert/strict";
import { Bus, type Message, MessageType } from "../lib/dbus.ts";
import { RequestRefusedError } from "../lib/dispatcher_client.ts";
import {
  type ClientReport,
  DISPATCHER_IFACE,
  Errors,
  MAX_SUBSCRIBERS,
  type PendingSummary,
} from "../lib/protocol.ts";
import { pendingSummary } from "./announce.ts";
import { MEMORY_LOGIN } from "./memory_backend.ts";
import { dispatcherStack } from "./test_support.ts";

const UID = Deno.uid()!;
const enc = (s: string) => new TextEncoder().encode(s);
const client: ClientReport = {
  busName: ":1.50",
  pid: null,
  uid: UID,
  exe: "/usr/bin/secret-tool",
  cmdline: ["secret-tool", "lookup", "service", "mail"],
  cwd: "/",
};
const COMMIT = enc(
  "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n" +
    "author A U Thor <a@example.test> 1700000000 +0000\n" +
    "committer A U Thor <a@example.test> 1700000000 +0000\n\nFix the frobnicator\n\nBody.\n",
);

/** Records what one subscriber hears. */
function recorder() {
  const events: string[] = [];
  const pending: PendingSummary[] = [];
  return {
    events,
    pending,
    listener: {
      pending(p: PendingSummary) {
        pending.push(p);
        events.push(`pending ${p.id}`);
      },
      ended(id: string, state: string) {
        events.push(`ended ${id} ${state}`);
      },
    },
  };
}

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const setup = () => dispatcherStack({ clientUid: UID });

Deno.test("subscribers hear of pending and ended requests, unicast; ListPending; DenyOwn only denies", async () => {
  const t = await setup();
  try {
    const agent = await t.connect();
    const requester = await t.connect();
    // A connection that asks the bus for every signal of the interface, as a snooper would.
    const snoop = await Bus.connect(t.bus.address);
    t.clients.push(snoop);
    const snooped: string[] = [];
    await snoop.addMatch(`type='signal',interface='${DISPATCHER_IFACE}'`);
    snoop.raw.on("message", (m: Message) => {
      if (m.type === MessageType.SIGNAL && m.interface === DISPATCHER_IFACE) {
        snooped.push(String(m.member));
      }
    });

    const heard = recorder();
    await agent.subscribe(heard.listener);
    assert.equal(t.dispatcher.subscribers, 1);
    assert.deepEqual(await agent.listPending(), []);

    // A secret read: the summary names the operation, the label and the program.
    const read = await requester.requestRead([t.item], client);
    await until("RequestPending", () => heard.pending.length === 1);
    assert.deepEqual(heard.pending[0], {
      id: read.id,
      kind: "secret.read",
      summary: 'read "mail password"',
      program: "/usr/bin/secret-tool",
    });
    assert.deepEqual(await agent.listPending(), heard.pending);

    // A signature: the commit subject and the reported repository.
    const sign = await requester.requestSign(COMMIT, {
      keySpec: "A U Thor",
      context: { repo: "/home/alice/src/frob" },
    });
    await until("the second RequestPending", () => heard.pending.length === 2);
    assert.deepEqual(heard.pending[1], {
      id: sign.id,
      kind: "sign.commit",
      summary: 'commit "Fix the frobnicator"',
      program: "git in /home/alice/src/frob",
    });
    assert.deepEqual((await agent.listPending()).map((p) => p.id), [read.id, sign.id]);

    // DenyOwn denies another connection's request; it cannot be denied twice.
    await agent.denyOwn(read.id);
    const denied = await read.completed;
    assert.equal(denied.outcome, "denied");
    assert.match(denied.message, /by the desktop user/);
    await assert.rejects(agent.denyOwn(read.id), (e: unknown) => {
      assert.ok(e instanceof RequestRefusedError);
      assert.equal(e.dbusName, Errors.NotPending);
      return true;
    });
    await assert.rejects(agent.denyOwn("0".repeat(32)), (e: unknown) => {
      assert.ok(e instanceof RequestRefusedError);
      assert.equal(e.dbusName, Errors.NoSuchRequest);
      return true;
    });

    // An approval ends a request once (approved, not again when done).
    const view = t.manager.get(sign.id);
    t.manager.approve(sign.id, view.digest);
    assert.equal((await sign.completed).outcome, "done");
    await until("RequestEnded", () => heard.events.length === 4);
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(heard.events, [
      `pending ${read.id}`,
      `pending ${sign.id}`,
      `ended ${read.id} denied`,
      `ended ${sign.id} approved`,
    ]);
    assert.deepEqual(await agent.listPending(), []);
    assert.deepEqual(snooped, [], "no request event is ever broadcast");
    assert.equal(JSON.stringify(heard).includes("hunter2"), false);

    // The subscriber leaves the bus: it is dropped.
    agent.close();
    await until("the subscriber to be dropped", () => t.dispatcher.subscribers === 0);
    assert.ok(t.log.some((l) => l.includes("subscriber") && l.includes("left the bus")));
  } finally {
    await t.stop();
  }
});

Deno.test("at most MAX_SUBSCRIBERS connections subscribe; subscribing twice counts once", async () => {
  const t = await setup();
  try {
    const noop = { pending() {}, ended() {} };
    const subs = [];
    for (let i = 0; i < MAX_SUBSCRIBERS; i++) {
      const c = await t.connect();
      await c.subscribe(noop);
      subs.push(c);
    }
    await subs[0].subscribe(noop);
    assert.equal(t.dispatcher.subscribers, MAX_SUBSCRIBERS);
    const extra = await t.connect();
    await assert.rejects(extra.subscribe(noop), (e: unknown) => {
      assert.ok(e instanceof RequestRefusedError);
      assert.equal(e.dbusName, Errors.LimitExceeded);
      return true;
    });
    subs[0].close();
    await until("a free place", () => t.dispatcher.subscribers === MAX_SUBSCRIBERS - 1);
    await extra.subscribe(noop);
    assert.equal(t.dispatcher.subscribers, MAX_SUBSCRIBERS);
  } finally {
    await t.stop();
  }
});

Deno.test("pendingSummary: operations, labels, programs; one line, capped, never a value", () => {
  const base = {
    id: "a".repeat(32),
    state: "pending" as const,
    createdAt: 0,
    expiresAt: 0,
    decidedAt: null,
    digest: "",
    caller: { busName: ":1.2", uid: 1000, pid: 7, cmdline: ["deno run agent"], exe: null },
    message: null,
  };
  const item = {
    path: `${MEMORY_LOGIN}/1`,
    collection: MEMORY_LOGIN,
    label: "Mail\npassword",
    attributes: {},
    created: 0,
    modified: 0,
  };
  const secret = {
    items: [item],
    collection: null,
    client: { ...client, exe: null, cmdline: ["python3", "x.py"] },
    clientCheck: { pid: null, uid: null, cmdline: null, consistent: false },
  };
  const s = (kind: "secret.read" | "secret.write" | "secret.delete", extra: object) =>
    pendingSummary({ ...base, kind, secret: { ...secret, ...extra } as never });
  assert.deepEqual(s("secret.read", { operation: "read", items: [item, item] }), {
    id: base.id,
    kind: "secret.read",
    summary: 'read "Mail password" and 1 more',
    program: "python3",
  });
  assert.equal(
    s("secret.write", { operation: "create", items: [], label: "New", secretSize: 7 }).summary,
    'store "New"',
  );
  assert.equal(s("secret.write", { operation: "create", label: "New" }).summary, 'replace "New"');
  assert.equal(
    s("secret.write", { operation: "set-secret" }).summary,
    'change the secret of "Mail password"',
  );
  assert.equal(
    s("secret.write", { operation: "set-properties", label: "L", attributes: {} }).summary,
    'change the label and attributes of "Mail password"',
  );
  assert.equal(s("secret.delete", { operation: "delete" }).summary, 'delete "Mail password"');
  const long = s("secret.delete", {
    operation: "delete",
    items: [{ ...item, label: "x".repeat(500) }],
  });
  assert.equal([...long.summary].length, 200);
  assert.ok(long.summary.endsWith("…"));

  const push = pendingSummary({
    ...base,
    kind: "sign.push",
    sign: {
      keySpec: "k",
      keyFingerprint: null,
      keyUid: null,
      keyError: null,
      payloadSize: 1,
      content: {
        type: "push",
        version: "0.1",
        pusher: null,
        pushee: "origin",
        nonce: "n",
        extraHeaders: [],
        updates: [{ old: "a", new: "b", ref: "refs/heads/main" }],
      },
      reported: {},
    },
  });
  assert.equal(push.summary, "push 1 ref to origin");
  assert.equal(push.program, "deno run agent", "no repository reported: the verified caller");
});
