// The agent's notifications over a real bus: the agent (with a fake daemon port) and a recording
// org.freedesktop.Notifications server on a private desktop bus, driven by a real secret-tool.

import assert from "node:assert/strict";
import {
  type NotificationServer,
  type NotifyCall,
  startNotificationServer,
} from "../dev/notification_server.ts";
import { type AgentFixture, agentFixture, FakePort, runClient } from "./test_support.ts";

async function until<T>(what: string, check: () => T | undefined | false, ms = 5000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function withAgent(
  fn: (f: AgentFixture, server: NotificationServer) => Promise<void>,
): Promise<void> {
  let server: NotificationServer | undefined;
  const f = await agentFixture({
    port: new FakePort(),
    notifications: true,
    noticeTiming: { settleMs: 20, downGraceMs: 300 },
    beforeAgent: async (address) => {
      server = await startNotificationServer(address);
    },
  });
  try {
    await fn(f, server!);
  } finally {
    await f.stop().finally(() => server?.stop());
  }
}

Deno.test("a pending lookup is notified with the spec's arguments and closed when decided", async () => {
  await withAgent(async (f, server) => {
    f.port.addItem("Mail <work>", { service: "mail" }, "hunter2");
    const lookup = runClient("secret-tool", ["lookup", "service", "mail"], { env: f.env });
    const request = await f.port.nextRequest();
    const call: NotifyCall = await until("Notify", () => server.notified[0]);
    assert.deepEqual({ ...call, sender: undefined }, {
      id: call.id,
      appName: "secrets-dispatcher",
      replacesId: 0,
      appIcon: "dialog-password",
      summary: 'Read "Mail <work>"',
      body: `Asked by /usr/bin/secret-tool\nRequest ${
        request.id.slice(0, 8)
      }. Approve on VT 8: Ctrl+Alt+F8`,
      actions: ["deny", "Deny"],
      hints: { urgency: { signature: "y", value: 2 } },
      expireTimeout: 0,
      sender: undefined,
    });
    assert.equal(call.sender, f.agentBus.uniqueName);
    assert.doesNotMatch(JSON.stringify(server.events), /hunter2/);

    request.approve();
    const r = await lookup;
    assert.equal(r.stdout, "hunter2");
    await until("CloseNotification", () => server.events.some((e) => e.type === "close"));
    assert.deepEqual(server.events.map((e) => e.type), ["notify", "close", "closed"]);
    assert.deepEqual(server.open(), []);
  });
});

Deno.test("Deny on a notification denies the request through DenyOwn", async () => {
  await withAgent(async (f, server) => {
    f.port.addItem("Mail", { service: "mail" }, "hunter2");
    const lookup = runClient("secret-tool", ["lookup", "service", "mail"], { env: f.env });
    const request = await f.port.nextRequest();
    const call = await until("Notify", () => server.notified[0]);
    server.invokeAction(call.id, "deny");
    const r = await lookup;
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, "");
    assert.deepEqual(f.port.deniedOwn, [request.id]);
    assert.equal(request.state, "denied");
    assert.ok(f.logs.some((l) => l.includes("denied from its notification")));
  });
});

Deno.test("a burst is gathered into one notification; the daemon going away is said once", async () => {
  await withAgent(async (f, server) => {
    const items = [1, 2, 3, 4, 5].map((i) => f.port.addItem(`Item ${i}`, { n: `${i}` }, "v"));
    const client = {
      busName: ":1.1",
      pid: null,
      uid: null,
      exe: "/bin/x",
      cmdline: null,
      cwd: null,
    };
    const requests = await Promise.all(items.map((i) => f.port.requestRead([i], client)));
    await until(
      "one notification for 5",
      () =>
        server.open().length === 1 &&
        server.open()[0].summary === "5 requests waiting for approval",
    );
    assert.equal(server.notified.length, 1, "the burst was gathered before anything was shown");
    assert.equal(server.peak(), 1);
    for (const r of requests) await r.cancel();
    await until("it closes", () => server.open().length === 0);

    // The daemon is gone: one notice after the grace time, whatever the calls do meanwhile.
    f.port.down = true;
    for (let i = 0; i < 3; i++) {
      const r = await runClient("secret-tool", ["lookup", "n", "1"], { env: f.env });
      assert.notEqual(r.code, 0);
      assert.match(r.stderr, /approval daemon is not running/);
    }
    await until(
      "the notice",
      () => server.open().find((c) => /daemon is not running/.test(c.summary)),
    );
    await new Promise((r) => setTimeout(r, 400));
    assert.equal(server.notified.filter((c) => /daemon is not running/.test(c.summary)).length, 1);
    f.port.down = false;
    await until("the notice to close", () => server.open().length === 0);
  });
});

Deno.test("a restarted notification server gets the open notifications again", async () => {
  await withAgent(async (f, server) => {
    f.port.addItem("A", { a: "1" }, "v");
    const client = {
      busName: ":1.1",
      pid: null,
      uid: null,
      exe: "/bin/x",
      cmdline: null,
      cwd: null,
    };
    const r = await f.port.requestRead([[...f.port.items.keys()][0]], client);
    await until("Notify", () => server.notified[0]);
    server.stop();
    const again = await startNotificationServer(f.bus.address);
    try {
      const call = await until("Notify on the new server", () => again.notified[0]);
      assert.equal(call.summary, 'Read "A"');
      await r.cancel();
      await until("closed on the new server", () => again.open().length === 0);
    } finally {
      again.stop();
    }
  });
});
