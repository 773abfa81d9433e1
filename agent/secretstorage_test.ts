// python3-secretstorage 3.3.3 (jeepney, no libsecret) against the agent on a private desktop
// bus. `/usr/bin/python3` is Debian's, which has the module (the PATH one may not).

import assert from "node:assert/strict";
import { type AgentFixture, agentFixture, LOGIN, runClient } from "./test_support.ts";

/** Runs a Python snippet with secretstorage; its `emit(...)` lines come back parsed. */
async function python(f: AgentFixture, body: string): Promise<{ out: unknown[]; stderr: string }> {
  const script = `
import json, secretstorage
def emit(*v): print(json.dumps(v), flush=True)
conn = secretstorage.dbus_init()
${body}
`;
  const r = await runClient("/usr/bin/python3", ["-c", script], { env: f.env });
  const out = r.stdout.trim().split("\n").filter((l) => l).map((l) => JSON.parse(l));
  return { out, stderr: r.stderr };
}

Deno.test("secretstorage: default collection, create, search, get secret over DH, delete", async () => {
  const f = await agentFixture({ readWaitMs: 3000 });
  try {
    f.port.autoDecide = () => "approve";
    const { out, stderr } = await python(
      f,
      `
c = secretstorage.get_default_collection(conn)
emit("collection", c.collection_path, c.get_label(), c.is_locked())
item = c.create_item("Py item", {"app": "py", "user": "bob"}, b"s3cr\\xc3\\xa9t", replace=True)
emit("created", item.item_path, item.is_locked(), item.session.encrypted)
emit("secret", item.get_secret().decode())
found = list(secretstorage.search_items(conn, {"app": "py"}))
emit("found", [i.item_path for i in found], found[0].get_label(), found[0].get_attributes())
item.delete()
emit("after delete", [i.item_path for i in c.search_items({"app": "py"})])
`,
    );
    assert.equal(stderr, "");
    const [collection, created, secret, found, afterDelete] = out as unknown[][];
    assert.deepEqual(collection, [
      "collection",
      "/org/freedesktop/secrets/aliases/default",
      "Login",
      false,
    ]);
    const item = created[1] as string;
    assert.ok(item.startsWith(`${LOGIN}/`));
    assert.deepEqual(
      created.slice(2),
      [false, true],
      "read back unlocked, over an encrypted session",
    );
    assert.deepEqual(secret, ["secret", "s3crét"]);
    assert.deepEqual(found, ["found", [item], "Py item", { app: "py", user: "bob" }]);
    assert.deepEqual(afterDelete, ["after delete", []]);
    assert.deepEqual(f.port.requests.map((r) => r.kind), ["create", "delete"]);
    assert.equal(f.port.requests[0].client.exe?.startsWith("/usr/bin/python3"), true);
  } finally {
    await f.stop();
  }
});

Deno.test("secretstorage: reads are asked for; a connection with a session sees items locked until approved", async () => {
  const f = await agentFixture({ readWaitMs: 3000 });
  try {
    f.port.addItem("Stored", { app: "py" }, "old secret");
    f.port.addItem("Second", { app: "py2" }, "second secret");
    f.port.autoDecide = (r) => r.kind === "read" ? "approve" : "deny";
    const { out } = await python(
      f,
      `
item = next(secretstorage.search_items(conn, {"app": "py"}))
emit("locked before any session", item.is_locked())
emit("secret", item.get_secret().decode())
second = next(secretstorage.search_items(conn, {"app": "py2"}))
emit("locked with a session", second.is_locked())
try:
    second.get_secret()
except secretstorage.exceptions.LockedException as e:
    emit("refused", "LockedException")
emit("unlock dismissed", second.unlock())
emit("second", second.get_secret().decode())
try:
    item.delete()
except Exception as e:
    emit("delete failed", type(e).__name__, str(e))
c = secretstorage.get_default_collection(conn)
try:
    c.create_item("New", {"app": "new"}, b"x")
except Exception as e:
    emit("create failed", type(e).__name__, str(e))
`,
    );
    assert.deepEqual(out, [
      ["locked before any session", false],
      ["secret", "old secret"],
      ["locked with a session", true],
      ["refused", "LockedException"],
      ["unlock dismissed", false],
      ["second", "second secret"],
      [
        "delete failed",
        "DBusErrorResponse",
        "[org.freedesktop.DBus.Error.AccessDenied] ('secrets-dispatcher: denied on the console',)",
      ],
      [
        "create failed",
        "DBusErrorResponse",
        "[org.freedesktop.DBus.Error.AccessDenied] ('secrets-dispatcher: denied on the console',)",
      ],
    ]);
    assert.equal(f.port.items.size, 2, "nothing deleted, nothing created");
    assert.deepEqual(
      f.port.requests.map((r) => [r.kind, r.state]),
      [["read", "done"], ["read", "done"], ["delete", "denied"], ["create", "denied"]],
    );
  } finally {
    await f.stop();
  }
});
