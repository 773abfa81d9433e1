// The agent's Secret Service at the D-Bus level: a raw client connection on a private desktop
// bus, the agent serving with a fake daemon whose requests each test decides.

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { type Bus, DBusCallError, type Message, MessageType, Variant } from "../lib/dbus.ts";
import { Iface, SecretErrors, SECRETS_NAME, SERVICE_PATH } from "../lib/secret_service.ts";
import { DH_ALGORITHM, dhCodec, DhKeyPair } from "../lib/secret_session.ts";
import { type AgentFixture, agentFixture, LOGIN, runClient } from "./test_support.ts";

const DEFAULT_ALIAS = "/org/freedesktop/secrets/aliases/default";
const text = (b: unknown) => new TextDecoder().decode(new Uint8Array(b as Uint8Array));

/** Calls the agent (by its well-known name) from `bus`. */
function call(
  bus: Bus,
  path: string,
  member: string,
  options: { iface?: string; signature?: string; body?: unknown[]; timeoutMs?: number } = {},
): Promise<unknown[]> {
  return bus.call({
    destination: SECRETS_NAME,
    path,
    interface: options.iface ?? Iface.Service,
    member,
    signature: options.signature ?? "",
    body: options.body ?? [],
  }, { timeoutMs: options.timeoutMs ?? 10_000 });
}

/** Resolves with the body of the next `Completed` of `prompt` delivered to `bus`. */
function completed(
  bus: Bus,
  prompt: string,
): Promise<[boolean, { signature: string; value: unknown }]> {
  return new Promise((resolve) => {
    const listener = (m: Message) => {
      if (m.type === MessageType.SIGNAL && m.path === prompt && m.member === "Completed") {
        bus.raw.removeListener("message", listener);
        resolve(m.body as [boolean, { signature: string; value: unknown }]);
      }
    };
    bus.raw.on("message", listener);
  });
}

/** Collects the signals `bus` receives from the agent (after an AddMatch for them). */
async function collectSignals(
  bus: Bus,
): Promise<{ member: string; path: string; body: unknown[] }[]> {
  const seen: { member: string; path: string; body: unknown[] }[] = [];
  await bus.addMatch(`type='signal',sender='${SECRETS_NAME}'`);
  bus.raw.on("message", (m: Message) => {
    if (m.type === MessageType.SIGNAL && m.sender !== "org.freedesktop.DBus") {
      seen.push({ member: String(m.member), path: String(m.path), body: m.body as unknown[] });
    }
  });
  return seen;
}

async function plainSession(bus: Bus): Promise<string> {
  const [, path] = await call(bus, SERVICE_PATH, "OpenSession", {
    signature: "sv",
    body: ["plain", new Variant("s", "")],
  });
  return String(path);
}

/** Asserts that `p` rejects with the D-Bus error `name`; returns the error text. */
async function rejectsWith(p: Promise<unknown>, name: string): Promise<string> {
  let text = "";
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof DBusCallError, `expected a D-Bus error, got ${e}`);
    assert.equal(e.dbusName, name, e.message);
    assert.doesNotMatch(e.text, /\bat .*\.ts:\d+/, "no stack trace");
    text = e.text;
    return true;
  });
  return text;
}

async function withFixture(
  options: { readWaitMs?: number },
  fn: (f: AgentFixture) => Promise<void>,
): Promise<void> {
  const f = await agentFixture(options);
  try {
    await fn(f);
  } finally {
    await f.stop();
  }
}

Deno.test("CreateCollection for the default alias on a store without a keyring: IsLocked with the store's own words", async () => {
  await withFixture({}, async (f) => {
    f.port.aliases.delete("default");
    f.port.status = {
      state: "locked",
      message: "the secret store has no keyring yet: the first unlock with a store passphrase " +
        "creates it",
    };
    const a = await f.connect();
    const why = await rejectsWith(
      call(a, SERVICE_PATH, "CreateCollection", { signature: "a{sv}s", body: [{}, "default"] }),
      SecretErrors.IsLocked,
    );
    assert.equal(
      why,
      "secrets-dispatcher: the secret store has no keyring yet: the first unlock with a store " +
        "passphrase creates it",
    );
    // Any other collection is still not created from here.
    await rejectsWith(
      call(a, SERVICE_PATH, "CreateCollection", { signature: "a{sv}s", body: [{}, "work"] }),
      SecretErrors.NotSupported,
    );
  });
});

Deno.test("sessions: plain and DH work, other algorithms are NotSupported, a session is its owner's", async () => {
  await withFixture({}, async (f) => {
    const item = f.port.addItem("Mail", { app: "mail" }, "pässwörd");
    f.port.autoDecide = () => "approve";
    const a = await f.connect();
    const b = await f.connect();

    await rejectsWith(
      call(a, SERVICE_PATH, "OpenSession", {
        signature: "sv",
        body: ["rot13", new Variant("s", "")],
      }),
      "org.freedesktop.DBus.Error.NotSupported",
    );

    const keys = DhKeyPair.generate();
    const [out, session] = await call(a, SERVICE_PATH, "OpenSession", {
      signature: "sv",
      body: [DH_ALGORITHM, new Variant("ay", Buffer.from(keys.publicKey))],
    }) as [{ signature: string; value: Uint8Array }, string];
    assert.equal(out.signature, "ay");
    assert.match(session, /^\/org\/freedesktop\/secrets\/session\/\d+$/);
    const codec = dhCodec(keys.deriveKey(new Uint8Array(out.value)));
    const [secret] = await call(a, item, "GetSecret", {
      iface: Iface.Item,
      signature: "o",
      body: [session],
    }) as [[string, Uint8Array, Uint8Array, string]];
    assert.equal(secret[0], session, "the secret names the client's own session");
    assert.equal(secret[1].length, 16, "an IV per secret");
    assert.equal(
      text(codec.decode(new Uint8Array(secret[1]), new Uint8Array(secret[2]))),
      "pässwörd",
    );

    // Another connection cannot use a's session, nor even see it.
    await rejectsWith(
      call(b, item, "GetSecret", { iface: Iface.Item, signature: "o", body: [session] }),
      SecretErrors.NoSession,
    );
    await rejectsWith(
      call(b, SERVICE_PATH, "GetSecrets", { signature: "aoo", body: [[item], session] }),
      SecretErrors.NoSession,
    );
    await rejectsWith(
      call(b, session, "Close", { iface: Iface.Session }),
      SecretErrors.NoSuchObject,
    );

    // Closed by its owner, the session is gone.
    await call(a, session, "Close", { iface: Iface.Session });
    await rejectsWith(
      call(a, item, "GetSecret", { iface: Iface.Item, signature: "o", body: [session] }),
      SecretErrors.NoSession,
    );
  });
});

Deno.test("missing objects answer NoSuchObject on every path, also to Properties", async () => {
  await withFixture({}, async (f) => {
    const a = await f.connect();
    const gone = `${LOGIN}/999`;
    const missing: [string, string, string, string, unknown[]][] = [
      [gone, Iface.Properties, "Get", "ss", [Iface.Item, "Label"]],
      [gone, Iface.Properties, "GetAll", "s", [Iface.Item]],
      [gone, Iface.Item, "GetSecret", "o", ["/"]],
      [gone, Iface.Item, "Delete", "", []],
      ["/org/freedesktop/secrets/collection/nope", Iface.Properties, "Get", "ss", [
        Iface.Collection,
        "Label",
      ]],
      ["/org/freedesktop/secrets/aliases/nope", Iface.Collection, "SearchItems", "a{ss}", [{}]],
      ["/org/freedesktop/secrets/prompt/42", Iface.Prompt, "Prompt", "s", [""]],
      ["/org/freedesktop/secrets/session/42", Iface.Session, "Close", "", []],
      ["/org/example/elsewhere", Iface.Introspectable, "Introspect", "", []],
      ["/org/freedesktop/secrets/collection", Iface.Properties, "GetAll", "s", [""]],
    ];
    for (const [path, iface, member, signature, body] of missing) {
      await rejectsWith(
        call(a, path, member, { iface, signature, body }),
        SecretErrors.NoSuchObject,
      );
    }
    // Unknown items in a batch are left out, as gnome-keyring does.
    const session = await plainSession(a);
    const [values] = await call(a, SERVICE_PATH, "GetSecrets", {
      signature: "aoo",
      body: [[gone], session],
    });
    assert.deepEqual(values, {});
    await rejectsWith(
      call(a, SERVICE_PATH, "Frobnicate"),
      SecretErrors.UnknownMethod,
    );
    await rejectsWith(
      call(a, SERVICE_PATH, "ReadAlias", { signature: "u", body: [1] }),
      SecretErrors.InvalidArgs,
    );
  });
});

Deno.test("the default alias is a real object; collections are managed on the companion", async () => {
  await withFixture({}, async (f) => {
    const item = f.port.addItem("Web", { site: "example.org" }, "pw");
    const a = await f.connect();
    assert.deepEqual(
      await call(a, SERVICE_PATH, "ReadAlias", { signature: "s", body: ["default"] }),
      [LOGIN],
    );
    assert.deepEqual(
      await call(a, SERVICE_PATH, "ReadAlias", { signature: "s", body: ["nope"] }),
      ["/"],
    );
    const [label] = await call(a, DEFAULT_ALIAS, "Get", {
      iface: Iface.Properties,
      signature: "ss",
      body: [Iface.Collection, "Label"],
    }) as [{ value: string }];
    assert.equal(label.value, "Login");
    const [all] = await call(a, DEFAULT_ALIAS, "GetAll", {
      iface: Iface.Properties,
      signature: "s",
      body: [Iface.Collection],
    }) as [Record<string, { value: unknown }>];
    assert.deepEqual(all.Items.value, [item]);
    assert.equal(all.Locked.value, false);
    assert.equal(typeof all.Created.value, "bigint");
    assert.deepEqual(
      await call(a, DEFAULT_ALIAS, "SearchItems", {
        iface: Iface.Collection,
        signature: "a{ss}",
        body: [{ site: "example.org" }],
      }),
      [[item]],
    );
    const [services] = await call(a, SERVICE_PATH, "GetAll", {
      iface: Iface.Properties,
      signature: "s",
      body: [Iface.Service],
    }) as [Record<string, { value: unknown }>];
    assert.deepEqual(services.Collections.value, [LOGIN]);

    assert.deepEqual(
      await call(a, SERVICE_PATH, "CreateCollection", {
        signature: "a{sv}s",
        body: [{}, "default"],
      }),
      [LOGIN, "/"],
    );
    await rejectsWith(
      call(a, SERVICE_PATH, "CreateCollection", { signature: "a{sv}s", body: [{}, ""] }),
      "org.freedesktop.DBus.Error.NotSupported",
    );
    await rejectsWith(
      call(a, SERVICE_PATH, "SetAlias", { signature: "so", body: ["default", "/"] }),
      "org.freedesktop.DBus.Error.NotSupported",
    );
    await rejectsWith(
      call(a, LOGIN, "Delete", { iface: Iface.Collection }),
      "org.freedesktop.DBus.Error.NotSupported",
    );
    // A locked store shows as a locked collection, which the agent cannot unlock: the prompt
    // completes dismissed unless the store was unlocked (on the companion's side) meanwhile.
    f.port.status = { state: "locked", message: "locked" };
    const [locked] = await call(a, DEFAULT_ALIAS, "Get", {
      iface: Iface.Properties,
      signature: "ss",
      body: [Iface.Collection, "Locked"],
    }) as [{ value: boolean }];
    assert.equal(locked.value, true);
    for (const [state, dismissed, value] of [["locked", true, []], ["unlocked", false, [LOGIN]]]) {
      const [unlocked, prompt] = await call(a, SERVICE_PATH, "Unlock", {
        signature: "ao",
        body: [[LOGIN]],
      }) as [string[], string];
      assert.deepEqual(unlocked, []);
      f.port.status = { state: state as "locked" | "unlocked", message: "" };
      const done = completed(a, prompt);
      await call(a, prompt, "Prompt", { iface: Iface.Prompt, signature: "s", body: [""] });
      const [d, r] = await done;
      assert.deepEqual([d, r.signature, r.value], [dismissed, "ao", value]);
      f.port.status = { state: "locked", message: "" };
    }
    assert.equal(f.port.requests.length, 0, "unlocking a collection asks nobody");
  });
});

Deno.test("Unlock: a prompt raises the read request; approve → Completed(false, ao), deny → Completed(true, ao [])", async () => {
  await withFixture({ readWaitMs: 500 }, async (f) => {
    const one = f.port.addItem("One", { n: "1" }, "first");
    const two = f.port.addItem("Two", { n: "2" }, "second");
    const a = await f.connect();
    const locked = async (path: string) =>
      ((await call(a, path, "Get", {
        iface: Iface.Properties,
        signature: "ss",
        body: [Iface.Item, "Locked"],
      }))[0] as { value: boolean }).value;
    const unlock = async (paths: string[]) =>
      await call(a, SERVICE_PATH, "Unlock", { signature: "ao", body: [paths] }) as [
        string[],
        string,
      ];
    const runPrompt = (prompt: string) =>
      call(a, prompt, "Prompt", { iface: Iface.Prompt, signature: "s", body: [""] });

    // Without a session nothing can be read: libsecret's clear needs the matches unlocked.
    assert.deepEqual(
      await call(a, SERVICE_PATH, "SearchItems", { signature: "a{ss}", body: [{}] }),
      [[one, two], []],
    );
    assert.equal(await locked(one), false);
    await plainSession(a);
    assert.deepEqual(
      await call(a, SERVICE_PATH, "SearchItems", { signature: "a{ss}", body: [{}] }),
      [[], [one, two]],
    );
    assert.equal(await locked(one), true);

    const [unlocked, prompt] = await unlock([one, DEFAULT_ALIAS, `${LOGIN}/404`]);
    assert.deepEqual(unlocked, [DEFAULT_ALIAS], "the collection of an unlocked store is unlocked");
    assert.match(prompt, /^\/org\/freedesktop\/secrets\/prompt\/\d+$/);
    assert.equal(f.port.requests.length, 0, "nothing is asked before Prompt()");

    // Approved while Prompt() waits: the reply, then Completed(false, ao [one]).
    const done = completed(a, prompt);
    const prompted = runPrompt(prompt);
    const req = await f.port.nextRequest();
    assert.equal(req.kind, "read");
    assert.deepEqual(req.items, [one]);
    assert.equal(req.client.busName, a.uniqueName);
    req.approve();
    await prompted;
    const [dismissed, result] = await done;
    assert.equal(dismissed, false);
    assert.equal(result.signature, "ao");
    assert.deepEqual(result.value, [one]);
    assert.equal(await locked(one), false);
    assert.equal(await locked(two), true);
    assert.deepEqual(
      await call(a, SERVICE_PATH, "SearchItems", { signature: "a{ss}", body: [{}] }),
      [[one], [two]],
    );
    // The prompt is gone after Completed.
    await rejectsWith(runPrompt(prompt), SecretErrors.NoSuchObject);

    // Already approved: no prompt. Lock drops the approval.
    assert.deepEqual(await unlock([one]), [[one], "/"]);
    assert.deepEqual(
      await call(a, SERVICE_PATH, "Lock", { signature: "ao", body: [[one]] }),
      [[one], "/"],
    );
    assert.equal(await locked(one), true);

    // Denied while Prompt() waits: Prompt() fails with the reason, then Completed(true, ao []).
    const [, p2] = await unlock([two]);
    const denied = completed(a, p2);
    const prompted2 = runPrompt(p2);
    (await f.port.nextRequest()).deny();
    assert.match(
      await rejectsWith(prompted2, "org.freedesktop.DBus.Error.AccessDenied"),
      /denied on the console/,
    );
    const [d2, r2] = await denied;
    assert.equal(d2, true);
    assert.deepEqual([r2.signature, r2.value], ["ao", []]);
    assert.equal(await locked(two), true);

    // A slow decision: Prompt() returns after the wait, Completed comes when the human decides.
    const [, p3] = await unlock([two]);
    const slow = completed(a, p3);
    await runPrompt(p3);
    const late = await f.port.nextRequest();
    assert.equal(late.state, "pending");
    late.approve();
    assert.deepEqual((await slow)[1].value, [two]);

    // Dismiss withdraws the daemon request.
    await call(a, SERVICE_PATH, "Lock", { signature: "ao", body: [[two]] });
    const [, p4] = await unlock([two]);
    const dismissedP = completed(a, p4);
    await runPrompt(p4);
    const pending = await f.port.nextRequest();
    await call(a, p4, "Dismiss", { iface: Iface.Prompt });
    assert.equal((await dismissedP)[0], true);
    assert.equal(pending.state, "cancelled");

    // A prompt belongs to its connection.
    const [, p5] = await unlock([two]);
    const b = await f.connect();
    await rejectsWith(
      call(b, p5, "Prompt", { iface: Iface.Prompt, signature: "s", body: [""] }),
      SecretErrors.NoSuchObject,
    );
  });
});

Deno.test("GetSecret waits for the human: approval in time → the value; no decision → IsLocked", async () => {
  await withFixture({ readWaitMs: 1500 }, async (f) => {
    const item = f.port.addItem("Key", { k: "1" }, "value-1");
    const a = await f.connect();
    const session = await plainSession(a);
    const get = () =>
      call(a, item, "GetSecret", { iface: Iface.Item, signature: "o", body: [session] });

    // No decision: IsLocked once the wait is over; the request stays pending.
    const started = Date.now();
    const why = await rejectsWith(get(), SecretErrors.IsLocked);
    assert.match(why, /not approved yet, waiting for the console \(request [0-9a-f]{8}\)/);
    assert.ok(Date.now() - started >= 1000, "it waited");
    assert.equal(f.port.requests.length, 1);
    const pending = f.port.requests[0];
    assert.equal(pending.state, "pending");

    // A retry joins the pending request; approving it answers the waiting call.
    const retry = get();
    (await f.port.nextRequest()).approve();
    const [[, , value]] = await retry as [[string, Uint8Array, Uint8Array, string]];
    assert.equal(text(value), "value-1");
    assert.equal(f.port.requests.length, 1, "the retry asked no second time");
  });
});

Deno.test("a double read within the window asks once, and only for that connection", async () => {
  await withFixture({}, async (f) => {
    const item = f.port.addItem("Key", { k: "1" }, "value-1");
    f.port.autoDecide = () => "approve";
    const a = await f.connect();
    const session = await plainSession(a);
    // libsecret's `search`: GetSecrets, then GetSecret on the same item.
    const [all] = await call(a, SERVICE_PATH, "GetSecrets", {
      signature: "aoo",
      body: [[item], session],
    }) as [Record<string, [string, Uint8Array, Uint8Array, string]>];
    assert.equal(text(all[item][2]), "value-1");
    const [one] = await call(a, item, "GetSecret", {
      iface: Iface.Item,
      signature: "o",
      body: [session],
    }) as [[string, Uint8Array, Uint8Array, string]];
    assert.equal(text(one[2]), "value-1");
    assert.equal(f.port.requests.length, 1);
    assert.equal(f.port.requests[0].getSecretsCalls, 2, "values come from the approving request");

    const b = await f.connect();
    const sb = await plainSession(b);
    await call(b, item, "GetSecret", { iface: Iface.Item, signature: "o", body: [sb] });
    assert.equal(f.port.requests.length, 2, "another connection asks for itself");
  });
});

Deno.test("an approval ends with its window: the next read asks again", async () => {
  const f = await agentFixture({});
  try {
    f.port.windowMs = 300;
    const item = f.port.addItem("Key", { k: "1" }, "v");
    f.port.autoDecide = () => "approve";
    const a = await f.connect();
    const session = await plainSession(a);
    const get = () =>
      call(a, item, "GetSecret", { iface: Iface.Item, signature: "o", body: [session] });
    await get();
    await new Promise((r) => setTimeout(r, 600));
    // The daemon says NotApproved; the agent asks again instead of failing.
    const [[, , value]] = await get() as [[string, Uint8Array, Uint8Array, string]];
    assert.equal(text(value), "v");
    assert.equal(f.port.requests.length, 2);
  } finally {
    await f.stop();
  }
});

Deno.test("a client that leaves while its request is pending: the daemon request is cancelled", async () => {
  await withFixture({ readWaitMs: 10_000 }, async (f) => {
    const item = f.port.addItem("Key", { k: "1" }, "v");
    // Blocking GetSecret.
    const a = await f.connect();
    const session = await plainSession(a);
    call(a, item, "GetSecret", { iface: Iface.Item, signature: "o", body: [session] }).catch(
      () => {},
    );
    const read = await f.port.nextRequest();
    a.close();
    await waitUntil(() => read.state === "cancelled");

    // A running prompt.
    const b = await f.connect();
    const [, prompt] = await call(b, SERVICE_PATH, "Unlock", {
      signature: "ao",
      body: [[item]],
    }) as [
      string[],
      string,
    ];
    call(b, prompt, "Prompt", { iface: Iface.Prompt, signature: "s", body: [""] }).catch(() => {});
    const viaPrompt = await f.port.nextRequest((r) => r !== read);
    b.close();
    await waitUntil(() => viaPrompt.state === "cancelled");
  });
});

Deno.test("writes: CreateItem and Delete prompt; SetSecret and Properties.Set wait; signals follow", async () => {
  await withFixture({ readWaitMs: 1000 }, async (f) => {
    const a = await f.connect();
    const watcher = await f.connect();
    const signals = await collectSignals(watcher);
    const session = await plainSession(a);
    const secret = (s: string) => [session, Buffer.alloc(0), Buffer.from(s), "text/plain"];

    // CreateItem on the alias: ("/", prompt); the prompt raises the create request.
    const [path, prompt] = await call(a, DEFAULT_ALIAS, "CreateItem", {
      iface: Iface.Collection,
      signature: "a{sv}(oayays)b",
      body: [
        {
          "org.freedesktop.Secret.Item.Label": new Variant("s", "New"),
          "org.freedesktop.Secret.Item.Attributes": new Variant("a{ss}", { app: "x" }),
        },
        secret("created!"),
        true,
      ],
    }) as [string, string];
    assert.equal(path, "/");
    const created = completed(a, prompt);
    const prompted = call(a, prompt, "Prompt", { iface: Iface.Prompt, signature: "s", body: [""] });
    const create = await f.port.nextRequest();
    assert.equal(create.kind, "create");
    assert.equal(create.client.busName, a.uniqueName);
    create.approve();
    await prompted;
    const [dismissed, result] = await created;
    assert.equal(dismissed, false);
    assert.equal(result.signature, "o");
    const item = String(result.value);
    assert.equal(text(f.port.items.get(item)!.secret.value), "created!");
    // The read-back within the window asks nobody.
    const [back] = await call(a, item, "GetSecret", {
      iface: Iface.Item,
      signature: "o",
      body: [session],
    }) as [[string, Uint8Array, Uint8Array, string]];
    assert.equal(text(back[2]), "created!");
    assert.equal(f.port.requests.length, 1);

    // SetSecret: denied → AccessDenied; no decision → IsLocked and withdrawn; approved → OK.
    const setSecret = () =>
      call(a, item, "SetSecret", {
        iface: Iface.Item,
        signature: "(oayays)",
        body: [secret("next")],
      });
    f.port.autoDecide = () => "deny";
    assert.match(
      await rejectsWith(setSecret(), "org.freedesktop.DBus.Error.AccessDenied"),
      /denied on the console/,
    );
    f.port.autoDecide = null;
    await rejectsWith(setSecret(), SecretErrors.IsLocked);
    assert.equal(f.port.requests.at(-1)!.state, "cancelled");
    f.port.autoDecide = () => "approve";
    await setSecret();
    assert.equal(text(f.port.items.get(item)!.secret.value), "next");

    // A secret that does not decode: InvalidArgs, nothing asked.
    const before = f.port.requests.length;
    const badSession = await call(a, SERVICE_PATH, "OpenSession", {
      signature: "sv",
      body: [DH_ALGORITHM, new Variant("ay", Buffer.from(DhKeyPair.generate().publicKey))],
    }) as [unknown, string];
    await rejectsWith(
      call(a, item, "SetSecret", {
        iface: Iface.Item,
        signature: "(oayays)",
        body: [[badSession[1], Buffer.alloc(16), Buffer.alloc(5), "text/plain"]],
      }),
      SecretErrors.InvalidArgs,
    );
    assert.equal(f.port.requests.length, before);

    // Properties.Set(Label).
    await call(a, item, "Set", {
      iface: Iface.Properties,
      signature: "ssv",
      body: [Iface.Item, "Label", new Variant("s", "Renamed")],
    });
    assert.equal(f.port.items.get(item)!.info.label, "Renamed");
    await rejectsWith(
      call(a, item, "Set", {
        iface: Iface.Properties,
        signature: "ssv",
        body: [Iface.Item, "Created", new Variant("t", 1n)],
      }),
      "org.freedesktop.DBus.Error.PropertyReadOnly",
    );

    // Delete: a prompt; Completed(false, ...) when done.
    const [delPrompt] = await call(a, item, "Delete", { iface: Iface.Item }) as [string];
    const deleted = completed(a, delPrompt);
    await call(a, delPrompt, "Prompt", { iface: Iface.Prompt, signature: "s", body: [""] });
    // Prompt() answered after the (automatic) approval; Completed follows it.
    assert.equal((await deleted)[0], false);
    assert.equal(f.port.items.has(item), false);
    assert.equal(f.port.requests.at(-1)!.kind, "delete");

    await waitUntil(() => signals.some((s) => s.member === "ItemDeleted"));
    const ours = signals.filter((s) => s.member.startsWith("Item"));
    assert.deepEqual(ours.map((s) => [s.member, s.path, s.body[0]]), [
      ["ItemCreated", LOGIN, item],
      ["ItemChanged", LOGIN, item],
      ["ItemChanged", LOGIN, item],
      ["ItemDeleted", LOGIN, item],
    ]);
    assert.ok(
      signals.some((s) =>
        s.member === "PropertiesChanged" && s.path === LOGIN &&
        JSON.stringify(s.body[2]) === '["Items"]'
      ),
    );
  });
});

Deno.test("a daemon that is not running gives a prompt, clear error", async () => {
  await withFixture({}, async (f) => {
    f.port.down = true;
    const a = await f.connect();
    const started = Date.now();
    const why = await rejectsWith(
      call(a, SERVICE_PATH, "GetAll", {
        iface: Iface.Properties,
        signature: "s",
        body: [Iface.Service],
      }),
      "org.freedesktop.DBus.Error.Failed",
    );
    assert.match(why, /^secrets-dispatcher: the approval daemon is not running/);
    assert.ok(Date.now() - started < 2000);
    const r = await runClient("secret-tool", ["lookup", "k", "v"], { env: f.env });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /approval daemon is not running/);
  });
});

Deno.test("introspection: busctl tree shows the Secret Service objects; who is asking is reported", async () => {
  await withFixture({}, async (f) => {
    const item = f.port.addItem("Key", { k: "1" }, "v");
    const r = await runClient("busctl", [
      `--address=${f.bus.address}`,
      "tree",
      "--list",
      SECRETS_NAME,
    ], {
      env: f.env,
    });
    assert.equal(r.code, 0, r.stderr);
    const paths = r.stdout.trim().split("\n");
    for (const p of [SERVICE_PATH, LOGIN, item, DEFAULT_ALIAS]) assert.ok(paths.includes(p), p);
    const intro = await runClient(
      "busctl",
      [`--address=${f.bus.address}`, "introspect", SECRETS_NAME, item, Iface.Item],
      { env: f.env },
    );
    assert.match(intro.stdout, /\.GetSecret\s+method\s+o\s+\(oayays\)/);

    // The report of the test process itself, read from /proc through readlink and cat.
    const a = await f.connect();
    await call(a, SERVICE_PATH, "SearchItems", { signature: "a{ss}", body: [{}] });
    const report = f.port.calls.findLast((c) => c.client?.busName === a.uniqueName)!.client!;
    assert.equal(report.pid, Deno.pid);
    assert.equal(report.uid, Deno.uid());
    assert.equal(report.exe, Deno.execPath());
    assert.equal(report.cwd, Deno.cwd());
    assert.ok(report.cmdline?.includes("test"), `the deno test command line: ${report.cmdline}`);
  });
});

/** Polls until `check` holds (at most 5 s). */
async function waitUntil(check: () => boolean): Promise<void> {
  for (let i = 0; i < 250 && !check(); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(check(), "condition not reached in time");
}

Deno.test("a client is watched (one match rule) only while it holds state at the agent", async () => {
  await withFixture({}, async (f) => {
    const probe = await f.connect();
    const rules = async () => {
      const [stats] = await probe.call({
        destination: "org.freedesktop.DBus",
        path: "/org/freedesktop/DBus",
        interface: "org.freedesktop.DBus.Debug.Stats",
        member: "GetConnectionStats",
        signature: "s",
        body: [f.agentBus.uniqueName],
      }) as [Record<string, { value: number }>];
      return stats.MatchRules.value;
    };
    const settle = async (want: number) => {
      for (let i = 0; i < 150 && await rules() !== want; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal(await rules(), want);
    };
    const base = await rules();
    const a = await f.connect();
    const session = await plainSession(a);
    assert.equal(await rules(), base + 1);
    await call(a, session, "Close", { iface: Iface.Session });
    await settle(base);

    const b = await f.connect();
    await plainSession(b);
    await plainSession(b);
    assert.equal(await rules(), base + 1, "one rule per client");
    b.close();
    await settle(base);
  });
});
