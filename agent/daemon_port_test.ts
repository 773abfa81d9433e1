// The client half of the system-bus contract over the wire: DispatcherClient's Secret Service
// members against a fake daemon speaking DISPATCHER_MEMBERS / REQUEST_MEMBERS on a private
// bus, and DaemonPort's reconnection.

import assert from "node:assert/strict";
import { startTestBus } from "../console/test_support.ts";
import { BusUnavailableError } from "../lib/dbus.ts";
import { DispatcherClient, RequestRefusedError } from "../lib/dispatcher_client.ts";
import { type ClientReport, Errors } from "../lib/protocol.ts";
import { DaemonPort } from "./daemon_port.ts";
import { FakePort, LOGIN, serveFakeDaemon } from "./test_support.ts";

const UID = 4242;
const client: ClientReport = {
  busName: ":1.99",
  pid: 1234,
  uid: 1000,
  exe: "/usr/bin/secret-tool",
  cmdline: ["secret-tool", "lookup", "k", "v"],
  cwd: "/home/alice",
};
const bytes = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("DispatcherClient: metadata, requests, completions and values over the system bus", async () => {
  const bus = await startTestBus();
  const port = new FakePort();
  const daemon = await serveFakeDaemon(bus.address, port, UID);
  const c = await DispatcherClient.connect({ address: bus.address, uid: UID, timeoutMs: 3000 });
  try {
    const item = port.addItem("Mail", { app: "mail", user: "bob" }, "pw-1");
    assert.deepEqual(await c.storeStatus(), { state: "unlocked", message: "test store" });
    assert.deepEqual(await c.collections(client), port.collectionList);
    assert.equal(await c.readAlias("default", client), LOGIN);
    assert.equal(await c.readAlias("nope", client), null);
    const [info] = await c.searchItems({ app: "mail" }, { collection: LOGIN, client });
    assert.deepEqual(info, port.items.get(item)!.info);
    assert.equal(typeof info.created, "number");
    assert.deepEqual(await c.searchItems({ app: "none" }, { client }), []);
    assert.deepEqual(await c.getItems([item, `${LOGIN}/404`], client), [info]);
    assert.deepEqual(port.calls.at(-1)?.client, client, "the report travels as sent");

    // A read: the completion names the items; values come from the request.
    const read = await c.requestRead([item], client);
    assert.match(read.id, /^[0-9a-f]{32}$/);
    await assert.rejects(read.getSecrets([item]), (e: unknown) => {
      assert.ok(e instanceof RequestRefusedError);
      assert.equal(e.dbusName, Errors.NotApproved);
      return true;
    });
    port.requests[0].approve();
    const done = await read.completed;
    assert.equal(done.outcome, "done");
    assert.deepEqual(done.items, [item]);
    const values = await read.getSecrets([item]);
    assert.equal(text(values.get(item)!.value), "pw-1");
    assert.equal(values.get(item)!.contentType, "text/plain");

    // A create: the completion names the new item.
    port.autoDecide = () => "approve";
    const create = await c.requestCreateItem(LOGIN, {
      label: "New",
      attributes: { app: "new" },
      secret: { value: bytes("\u0000binary\u00ff"), contentType: "application/octet-stream" },
      replace: false,
      client,
    });
    const created = await create.completed;
    assert.equal(created.outcome, "done");
    assert.ok(created.item?.startsWith(`${LOGIN}/`));
    assert.equal(text(port.items.get(created.item!)!.secret.value), "\u0000binary\u00ff");
    assert.equal(port.items.get(created.item!)!.secret.contentType, "application/octet-stream");

    await (await c.requestSetSecret(item, {
      secret: { value: bytes("pw-2"), contentType: "text/plain" },
      client,
    })).completed;
    assert.equal(text(port.items.get(item)!.secret.value), "pw-2");
    await (await c.requestSetProperties(item, { label: "Renamed", client })).completed;
    assert.equal(port.items.get(item)!.info.label, "Renamed");
    assert.deepEqual(
      port.items.get(item)!.info.attributes,
      { app: "mail", user: "bob" },
      "untouched",
    );
    await (await c.requestSetProperties(item, { attributes: { app: "x" }, client })).completed;
    assert.deepEqual(port.items.get(item)!.info.attributes, { app: "x" });

    // Denied, and cancelled by the requester.
    port.autoDecide = () => "deny";
    const denied = await (await c.requestDelete(item, client)).completed;
    assert.deepEqual([denied.outcome, denied.message], ["denied", "denied on the console"]);
    port.autoDecide = null;
    const pending = await c.requestDelete(item, client);
    await pending.cancel();
    assert.equal((await pending.completed).outcome, "cancelled");
    assert.ok(port.items.has(item));

    // Refusals keep their name.
    await assert.rejects(c.requestRead([`${LOGIN}/404`], client), (e: unknown) => {
      assert.ok(e instanceof RequestRefusedError);
      assert.equal(e.dbusName, Errors.NoSuchObject);
      return true;
    });
    port.status = { state: "locked", message: "locked" };
    await assert.rejects(c.requestRead([item], client), (e: unknown) => {
      assert.ok(e instanceof RequestRefusedError);
      assert.equal(e.dbusName, Errors.StoreLocked);
      return true;
    });

    // The daemon leaves: pending completions fail, the client says it is closed.
    port.status = { state: "unlocked", message: "" };
    const orphan = await c.requestRead([item], client);
    assert.equal(c.closed, false);
    daemon.stop();
    await assert.rejects(orphan.completed, BusUnavailableError);
    assert.equal(c.closed, true);
  } finally {
    c.close();
    daemon.stop();
    await bus.stop();
  }
});

Deno.test("DaemonPort: fails fast without a daemon and reconnects when one (re)appears", async () => {
  const bus = await startTestBus();
  const port = new FakePort();
  const remote = new DaemonPort({ address: bus.address, uid: UID });
  let daemon = null;
  try {
    const started = Date.now();
    await assert.rejects(remote.storeStatus(), (e: unknown) => {
      assert.ok(e instanceof BusUnavailableError);
      assert.match(e.message, /not running/);
      return true;
    });
    assert.ok(Date.now() - started < 2000);

    daemon = await serveFakeDaemon(bus.address, port, UID);
    assert.equal((await remote.storeStatus()).state, "unlocked");

    // A restarted daemon is a new connection: the port finds it again.
    daemon.stop();
    await new Promise((r) => setTimeout(r, 100));
    port.status = { state: "locked", message: "after restart" };
    daemon = await serveFakeDaemon(bus.address, port, UID);
    assert.deepEqual(await remote.storeStatus(), { state: "locked", message: "after restart" });
  } finally {
    remote.close();
    daemon?.stop();
    await bus.stop();
  }
});

Deno.test("DaemonPort.listen: subscribes then lists, and again after the daemon came back", async () => {
  const bus = await startTestBus();
  const port = new FakePort();
  const item = port.addItem("Mail", { app: "mail" }, "pw");
  const remote = new DaemonPort({
    address: bus.address,
    uid: UID,
    backoff: { minMs: 50, maxMs: 200 },
  });
  const heard: string[] = [];
  let daemon = null;
  const until = async (what: string, check: () => boolean) => {
    const end = Date.now() + 5000;
    while (!check()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}: ${heard.join(" | ")}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  try {
    remote.listen({
      synced: (list) => heard.push(`synced ${list.map((p) => p.summary).join(",")}`),
      pending: (p) => heard.push(`pending ${p.summary}`),
      ended: (id, state) => heard.push(`ended ${id.slice(0, 4)} ${state}`),
      reachable: (up) => heard.push(up ? "up" : "down"),
    });
    await until("down", () => heard.includes("down"));

    // A request already waits when the daemon appears: the list brings it.
    const first = await port.requestRead([item], client);
    daemon = await serveFakeDaemon(bus.address, port, UID);
    await until("synced", () => heard.includes('synced read "Mail"'));
    assert.deepEqual(heard.slice(0, 3), ["down", 'synced read "Mail"', "up"]);
    assert.equal(daemon.subscriptions.length, 1);
    assert.equal(daemon.listCalls, 1);

    // Events arrive unicast.
    await first.cancel();
    await until(
      "ended",
      () => heard.some((h) => h.startsWith(`ended ${first.id.slice(0, 4)} cancelled`)),
    );
    const second = await port.requestDelete(item, client);
    await until("pending", () => heard.includes('pending delete "Mail"'));

    // The daemon restarts: forgotten, then subscribed and listed again.
    const mark = heard.length;
    daemon.stop();
    await until("down again", () => heard.slice(mark).includes("down"));
    assert.deepEqual(heard.slice(mark), ["synced ", "down"], "its requests ended with it");
    daemon = await serveFakeDaemon(bus.address, port, UID);
    await until("resynced", () => heard.slice(mark).includes("up"));
    assert.deepEqual(heard.slice(mark), ["synced ", "down", 'synced delete "Mail"', "up"]);
    assert.equal(daemon.listCalls, 1);
    await second.cancel();
    await until(
      "ended after the restart",
      () => heard.some((h) => h.startsWith(`ended ${second.id.slice(0, 4)}`)),
    );
  } finally {
    remote.close();
    await remote.finished();
    daemon?.stop();
    await bus.stop();
  }
});
