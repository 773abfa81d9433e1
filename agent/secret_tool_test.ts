// secret-tool (libsecret 0.20.5) against the agent on a private desktop bus, the human played
// by the fake daemon's decisions. Each test asserts what the user of secret-tool sees.

import assert from "node:assert/strict";
import { type AgentFixture, agentFixture, runClient } from "./test_support.ts";

function secretTool(f: AgentFixture, args: string[], stdin?: string) {
  return runClient("secret-tool", args, { env: f.env, stdin });
}

async function withFixture(fn: (f: AgentFixture) => Promise<void>): Promise<void> {
  const f = await agentFixture({ readWaitMs: 3000 });
  try {
    await fn(f);
  } finally {
    await f.stop();
  }
}

Deno.test("secret-tool store, lookup and search when the human approves", async () => {
  await withFixture(async (f) => {
    f.port.autoDecide = () => "approve";
    const store = await secretTool(
      f,
      ["store", "--label=Demo password", "service", "demo", "user", "alice"],
      "hunter2",
    );
    assert.deepEqual([store.code, store.stderr], [0, ""]);
    const [item] = [...f.port.items.values()];
    assert.equal(new TextDecoder().decode(item.secret.value), "hunter2");
    assert.equal(item.info.label, "Demo password");
    assert.deepEqual(item.info.attributes, { service: "demo", user: "alice" });
    const create = f.port.requests[0];
    assert.equal(create.kind, "create");
    assert.equal(create.client.exe, "/usr/bin/secret-tool");
    assert.deepEqual(create.client.cmdline?.slice(1, 3), ["store", "--label=Demo password"]);

    const lookup = await secretTool(f, ["lookup", "service", "demo"]);
    assert.deepEqual([lookup.code, lookup.stdout], [0, "hunter2"]);
    assert.equal(f.port.requests.length, 2);
    assert.deepEqual(f.port.requests[1].items, [item.info.path]);

    // `search` reads the value twice (GetSecrets, then GetSecret): one approval.
    const search = await secretTool(f, ["search", "user", "alice"]);
    assert.equal(search.code, 0);
    assert.match(search.stdout, /^label = Demo password$/m);
    assert.match(search.stdout, /^secret = hunter2$/m);
    assert.match(search.stderr, /^attribute\.service = demo$/m);
    assert.equal(f.port.requests.length, 3);
  });
});

Deno.test("secret-tool store, lookup and search when the human denies", async () => {
  await withFixture(async (f) => {
    f.port.autoDecide = () => "deny";
    const store = await secretTool(f, ["store", "--label=Nope", "service", "demo"], "hunter2");
    assert.equal(store.code, 1, "a denied store is an error, not a silent success");
    assert.match(store.stderr, /secrets-dispatcher: denied on the console/);
    assert.equal(f.port.items.size, 0);

    f.port.addItem("Existing", { service: "demo" }, "hunter2");
    const lookup = await secretTool(f, ["lookup", "service", "demo"]);
    assert.equal(lookup.code, 1);
    assert.equal(lookup.stdout, "");
    assert.match(lookup.stderr, /denied on the console/);

    const search = await secretTool(f, ["search", "service", "demo"]);
    assert.match(search.stdout, /^label = Existing$/m, "metadata needs no approval");
    assert.doesNotMatch(search.stdout, /secret =/);
    assert.match(search.stderr, /denied on the console/);
    assert.ok(f.port.requests.every((r) => r.state === "denied"));
  });
});

Deno.test("slow decisions: lookup waits through its prompt; search gives up and withdraws", async () => {
  const f = await agentFixture({ readWaitMs: 800 });
  try {
    f.port.addItem("Existing", { service: "demo" }, "hunter2");
    // lookup unlocks through a prompt, which has no time limit: it waits for the decision.
    const lookup = secretTool(f, ["lookup", "service", "demo"]);
    const req = await f.port.nextRequest();
    await new Promise((r) => setTimeout(r, 1200));
    req.approve();
    assert.deepEqual([(await lookup).code, (await lookup).stdout], [0, "hunter2"]);

    // search reads without unlocking: GetSecrets waits 0.8 s, then says why nothing came; the
    // request is withdrawn when secret-tool exits (nobody is left to receive the value).
    const search = await secretTool(f, ["search", "service", "demo"]);
    assert.doesNotMatch(search.stdout, /secret =/);
    assert.match(
      search.stderr,
      /not approved yet, waiting for the console \(request [0-9a-f]{8}\)/,
    );
    const last = f.port.requests.at(-1)!;
    for (let i = 0; i < 100 && last.state === "pending"; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(last.state, "cancelled");
  } finally {
    await f.stop();
  }
});

Deno.test("secret-tool clear deletes after the human approves, and keeps the item when denied", async () => {
  await withFixture(async (f) => {
    // libsecret's clear searches without a session and deletes only the matches listed as
    // unlocked; the agent lists them so for a session-less connection, and Delete asks.
    const path = f.port.addItem("Existing", { service: "demo" }, "hunter2");
    f.port.autoDecide = () => "deny";
    const denied = await secretTool(f, ["clear", "service", "demo"]);
    assert.notEqual(denied.code, 0, "a denied clear is an error");
    assert.ok(f.port.items.has(path), "denied: the item is still there");
    assert.equal(f.port.requests.at(-1)?.kind, "delete");

    f.port.autoDecide = () => "approve";
    const clear = await secretTool(f, ["clear", "service", "demo"]);
    assert.equal(clear.code, 0, clear.stderr);
    assert.equal(f.port.items.has(path), false, "approved: the item is gone");
    assert.equal(f.port.requests.at(-1)?.kind, "delete");
    // Clearing reads nothing: no read request was made.
    assert.ok(f.port.requests.every((r) => r.kind === "delete"));
  });
});
