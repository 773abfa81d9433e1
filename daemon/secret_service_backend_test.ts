/**
 * Integration tests of {@link SecretServiceBackend} against a real gnome-keyring on a private
 * companion bus (dev/harness.ts), plus a tiny scripted Secret Service for the prompt paths that
 * gnome-keyring never takes headless.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { Bus, type Message, Variant } from "../lib/dbus.ts";
import { isItemPath, SECRETS_NAME, SERVICE_PATH } from "../lib/secret_service.ts";
import { type BusInfo, currentUser, Stack } from "../dev/harness.ts";
import {
  BackendError,
  NoSuchObjectError,
  type SecretValue,
  StoreLockedError,
  StoreUnavailableError,
} from "./backend.ts";
import {
  SecretServiceBackend,
  type SecretServiceBackendOptions,
} from "./secret_service_backend.ts";

const PASSWORD = "test password\u00e9";
const LOGIN = "/org/freedesktop/secrets/collection/login";
const SERVICE = "org.freedesktop.Secret.Service";

interface Keyring {
  stack: Stack;
  companion: BusInfo;
  keyring: Awaited<ReturnType<Stack["gnomeKeyring"]>>;
  bus: Bus;
  backend: SecretServiceBackend;
  logs: string[];
}

/** Runs `fn` with a companion bus, a gnome-keyring on it and a started backend; cleans up. */
async function withKeyring(
  options: SecretServiceBackendOptions,
  fn: (k: Keyring) => Promise<void>,
): Promise<void> {
  const stack = await Stack.temp("sd-ssb-");
  let bus: Bus | undefined;
  try {
    const companion = await stack.companionBus(await currentUser());
    const keyring = await stack.gnomeKeyring({ bus: companion, password: PASSWORD });
    bus = await Bus.connect(companion.address, { timeoutMs: 5000 });
    const logs: string[] = [];
    const backend = new SecretServiceBackend(bus, { ...options, log: (l) => logs.push(l) });
    await backend.start();
    await fn({ stack, companion, keyring, bus, backend, logs });
    await backend.close();
  } finally {
    bus?.close();
    await stack.destroy();
  }
}

/** A raw call to the Secret Service (test-only operations such as Lock). */
async function svc(
  bus: Bus,
  path: string,
  iface: string,
  member: string,
  signature = "",
  body: unknown[] = [],
): Promise<unknown[]> {
  return await bus.call({
    destination: SECRETS_NAME,
    path,
    interface: iface,
    member,
    signature,
    body,
  });
}

/** Unlocks a collection with gnome-keyring's private interface (test-only; no prompt). */
async function unlockWithPassword(bus: Bus, collection: string): Promise<void> {
  const [, session] = await svc(bus, SERVICE_PATH, SERVICE, "OpenSession", "sv", [
    "plain",
    new Variant("s", ""),
  ]);
  await svc(
    bus,
    SERVICE_PATH,
    "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface",
    "UnlockWithMasterPassword",
    "o(oayays)",
    [collection, [session, Buffer.alloc(0), Buffer.from(PASSWORD), "text/plain"]],
  );
}

/** Rejects when `p` does not settle within `ms` (so a hang fails the test instead of stalling it). */
function within<T>(ms: number, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`hung for ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

function bytes(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function secret(value: Uint8Array | string): SecretValue {
  return { value: typeof value === "string" ? bytes(value) : value, contentType: "text/plain" };
}

async function readOne(backend: SecretServiceBackend, path: string): Promise<Uint8Array> {
  const got = await backend.getSecrets([path]);
  assert.deepEqual([...got.keys()], [path]);
  return got.get(path)!.value;
}

for (const algorithm of ["plain", "dh"] as const) {
  Deno.test(`SecretServiceBackend (${algorithm}): store, read, replace, change, search, delete`, async () => {
    await withKeyring({ algorithm }, async ({ backend, logs }) => {
      const status = await backend.status();
      assert.equal(status.state, "unlocked");
      assert.match(status.message, /"Login" \(\/org\/freedesktop\/secrets\/collection\/login\)/);
      assert.equal(await backend.readAlias("default"), LOGIN);
      assert.equal(await backend.readAlias("no_such_alias"), null);
      const collections = await backend.collections();
      const login = collections.find((c) => c.path === LOGIN);
      assert.ok(login, "login collection listed");
      assert.equal(login.label, "Login");
      assert.equal(login.locked, false);
      assert.ok(collections.some((c) => c.path.endsWith("/session")));

      // Binary, non-UTF-8 and longer than one AES block.
      const value1 = new Uint8Array([0, 255, 1, 128, ...bytes("pässwörd-1-0123456789abcdef")]);
      const path = await backend.createItem(LOGIN, {
        label: "Test item",
        attributes: { service: "svc-a", user: "alice" },
        secret: secret(value1),
        replace: false,
      });
      assert.ok(isItemPath(path), path);
      assert.ok(path.startsWith(`${LOGIN}/`));
      assert.deepEqual(await readOne(backend, path), value1);
      const got = await backend.getSecrets([path, path]);
      assert.equal(got.size, 1);
      assert.equal(got.get(path)!.contentType, "text/plain");
      assert.ok(logs.some((l) => l.includes(`opened ${algorithm === "dh" ? "dh-" : "plain"}`)));

      const [meta] = await backend.getItems([path]);
      assert.equal(meta.path, path);
      assert.equal(meta.collection, LOGIN);
      assert.equal(meta.label, "Test item");
      assert.equal(meta.attributes.service, "svc-a");
      assert.equal(meta.attributes.user, "alice");
      assert.equal(typeof meta.created, "number");
      assert.ok(meta.created > 1_600_000_000, `created ${meta.created} in seconds`);
      assert.ok(meta.modified >= meta.created);

      // replace=true with the same attributes keeps the path, changes label and value.
      const replaced = await backend.createItem(LOGIN, {
        label: "Replaced",
        attributes: { service: "svc-a", user: "alice" },
        secret: secret("second"),
        replace: true,
      });
      assert.equal(replaced, path);
      assert.deepEqual(await readOne(backend, path), bytes("second"));
      assert.equal((await backend.getItems([path]))[0].label, "Replaced");

      // replace=false makes a second item.
      const other = await backend.createItem(LOGIN, {
        label: "Other",
        attributes: { service: "svc-b" },
        secret: secret(""),
        replace: false,
      });
      assert.notEqual(other, path);
      assert.deepEqual(await readOne(backend, other), new Uint8Array());

      await backend.setSecret(path, secret(new Uint8Array(4096).fill(7)));
      assert.deepEqual(await readOne(backend, path), new Uint8Array(4096).fill(7));
      const both = await backend.getSecrets([path, other]);
      assert.equal(both.size, 2);

      await backend.setProperties(path, { label: "Renamed" });
      await backend.setProperties(path, { attributes: { service: "svc-a", user: "bob" } });
      const [changed] = await backend.getItems([path]);
      assert.equal(changed.label, "Renamed");
      assert.equal(changed.attributes.user, "bob");
      await backend.setProperties(path, {});

      const found = await backend.searchItems({ service: "svc-a" }, null);
      assert.deepEqual(found.map((i) => i.path), [path]);
      assert.equal(found[0].label, "Renamed");
      assert.deepEqual(
        (await backend.searchItems({ service: "svc-a", user: "bob" }, LOGIN)).map((i) => i.path),
        [path],
      );
      assert.deepEqual(await backend.searchItems({ service: "svc-a", user: "alice" }, null), []);
      const all = (await backend.searchItems({}, null)).map((i) => i.path).sort();
      assert.deepEqual(all, [path, other].sort());
      assert.deepEqual(
        (await backend.searchItems({}, LOGIN)).map((i) => i.path).sort(),
        [path, other].sort(),
      );

      const missing = `${LOGIN}/9999`;
      const nowhere = "/org/freedesktop/secrets/collection/nowhere";
      assert.deepEqual((await backend.getItems([missing, path])).map((i) => i.path), [path]);
      await assert.rejects(backend.getSecrets([missing]), NoSuchObjectError);
      await assert.rejects(backend.getSecrets([path, missing]), NoSuchObjectError);
      await assert.rejects(backend.setSecret(missing, secret("x")), NoSuchObjectError);
      await assert.rejects(backend.setProperties(missing, { label: "x" }), NoSuchObjectError);
      await assert.rejects(backend.deleteItem(missing), NoSuchObjectError);
      await assert.rejects(backend.searchItems({}, nowhere), NoSuchObjectError);
      await assert.rejects(
        backend.createItem(nowhere, {
          label: "x",
          attributes: {},
          secret: secret("x"),
          replace: false,
        }),
        NoSuchObjectError,
      );

      await backend.deleteItem(other);
      assert.deepEqual(await backend.getItems([other]), []);
      await assert.rejects(backend.getSecrets([other]), NoSuchObjectError);
      assert.deepEqual((await backend.searchItems({}, null)).map((i) => i.path), [path]);

      // No value ever reaches the log.
      for (const line of logs) {
        assert.ok(!line.includes("second") && !line.includes("pässwörd"), line);
      }
    });
  });
}

Deno.test("SecretServiceBackend: a locked collection, then unlocked again", async () => {
  await withKeyring({}, async ({ backend, bus }) => {
    const path = await backend.createItem(LOGIN, {
      label: "Locked item",
      attributes: { kind: "locked-test" },
      secret: secret("value"),
      replace: true,
    });
    const [locked] = await svc(bus, SERVICE_PATH, SERVICE, "Lock", "ao", [[LOGIN]]);
    assert.deepEqual(locked, [LOGIN]);

    const status = await backend.status();
    assert.equal(status.state, "locked");
    assert.match(status.message, /"Login"/);
    assert.match(status.message, /must be unlocked/);
    assert.equal((await backend.collections()).find((c) => c.path === LOGIN)?.locked, true);

    // gnome-keyring leaves locked items out of GetSecrets without an error.
    await assert.rejects(backend.getSecrets([path]), (e: unknown) => {
      assert.ok(e instanceof StoreLockedError);
      assert.match(e.message, /locked/);
      assert.ok(e.message.includes(path));
      return true;
    });
    const write = { label: "x", attributes: { kind: "new" }, secret: secret("x"), replace: false };
    await assert.rejects(backend.createItem(LOGIN, write), StoreLockedError);
    await assert.rejects(backend.setSecret(path, secret("y")), StoreLockedError);
    await assert.rejects(backend.setProperties(path, { label: "y" }), StoreLockedError);
    await assert.rejects(backend.deleteItem(path), StoreLockedError);
    // Metadata stays readable while locked.
    assert.deepEqual(
      (await backend.searchItems({ kind: "locked-test" }, null)).map((i) => i.path),
      [
        path,
      ],
    );

    await unlockWithPassword(bus, LOGIN);
    assert.equal((await backend.status()).state, "unlocked");
    assert.deepEqual(await readOne(backend, path), bytes("value"));
    await backend.deleteItem(path);
  });
});

Deno.test("SecretServiceBackend: status falls back to the first collection without a default alias", async () => {
  await withKeyring({}, async ({ backend, bus }) => {
    await svc(bus, SERVICE_PATH, SERVICE, "SetAlias", "so", ["default", "/"]);
    assert.equal(await backend.readAlias("default"), null);
    const status = await backend.status();
    assert.equal(status.state, "unlocked");
    assert.match(status.message, /first collection \(no default alias is set\)/);
  });
});

Deno.test("SecretServiceBackend: reopens its session after NoSession", async () => {
  await withKeyring({ algorithm: "dh" }, async ({ backend, bus, logs }) => {
    const path = await backend.createItem(LOGIN, {
      label: "s",
      attributes: { kind: "session-test" },
      secret: secret("v1"),
      replace: true,
    });
    const opened = logs.map((l) => l.match(/opened \S+ session (\S+)/)?.[1]).filter(Boolean);
    assert.equal(opened.length, 1);
    // Close the backend's session behind its back (same connection, so the backend allows it).
    await svc(bus, opened[0]!, "org.freedesktop.Secret.Session", "Close");
    assert.deepEqual(await readOne(backend, path), bytes("v1"));
    await backend.setSecret(path, secret("v2"));
    assert.deepEqual(await readOne(backend, path), bytes("v2"));
    assert.ok(logs.some((l) => l.includes("reopening")), logs.join("\n"));
    assert.equal(logs.filter((l) => /opened \S+ session/.test(l)).length, 2);
  });
});

Deno.test("SecretServiceBackend: backend killed → unavailable at once; restarted → works, same paths", async () => {
  await withKeyring(
    { callTimeoutMs: 2000 },
    async ({ stack, companion, keyring, backend, logs }) => {
      const path = await backend.createItem(LOGIN, {
        label: "Persistent",
        attributes: { kind: "restart-test" },
        secret: secret("survives"),
        replace: true,
      });
      assert.deepEqual(await readOne(backend, path), bytes("survives"));

      await stack.stopProcess(keyring.child, "SIGKILL");
      const t0 = performance.now();
      await assert.rejects(within(8000, backend.getSecrets([path])), (e: unknown) => {
        assert.ok(e instanceof StoreUnavailableError, String(e));
        assert.match(e.message, /not running/);
        return true;
      });
      // ServiceUnknown comes back at once, not after the 2 s call timeout.
      assert.ok(performance.now() - t0 < 1500, `took ${performance.now() - t0} ms`);
      await assert.rejects(
        within(
          8000,
          backend.createItem(LOGIN, {
            label: "x",
            attributes: {},
            secret: secret("x"),
            replace: false,
          }),
        ),
        StoreUnavailableError,
      );
      await assert.rejects(within(8000, backend.searchItems({}, null)), StoreUnavailableError);
      const down = await within(8000, backend.status());
      assert.equal(down.state, "unavailable");
      assert.match(down.message, /not running/);

      await stack.gnomeKeyring({ bus: companion, password: PASSWORD, home: keyring.home });
      assert.equal((await backend.status()).state, "unlocked");
      assert.deepEqual(await readOne(backend, path), bytes("survives"));
      assert.deepEqual(
        (await backend.searchItems({ kind: "restart-test" }, null)).map((i) => i.path),
        [
          path,
        ],
      );
      await backend.setSecret(path, secret("again"));
      assert.deepEqual(await readOne(backend, path), bytes("again"));
      assert.ok(logs.some((l) => l.includes("no owner any more")), logs.join("\n"));
      // The owner change dropped the old session: the new one was opened without a NoSession.
      assert.ok(!logs.some((l) => l.includes("reopening")), logs.join("\n"));
      assert.equal(logs.filter((l) => /opened \S+ session/.test(l)).length, 2);
    },
  );
});

Deno.test("SecretServiceBackend: a stopped (SIGSTOP) backend times out as unavailable", async () => {
  await withKeyring({ callTimeoutMs: 300 }, async ({ keyring, backend }) => {
    const path = await backend.createItem(LOGIN, {
      label: "Frozen",
      attributes: { kind: "sigstop-test" },
      secret: secret("cold"),
      replace: true,
    });
    keyring.child.kill("SIGSTOP");
    try {
      await assert.rejects(within(8000, backend.getSecrets([path])), (e: unknown) => {
        assert.ok(e instanceof StoreUnavailableError, String(e));
        assert.match(e.message, /did not answer within 300 ms/);
        return true;
      });
      const status = await within(8000, backend.status());
      assert.equal(status.state, "unavailable");
      assert.match(status.message, /did not answer/);
    } finally {
      keyring.child.kill("SIGCONT");
    }
    assert.deepEqual(await readOne(backend, path), bytes("cold"));
  });
});

/**
 * A scripted Secret Service owning `org.freedesktop.secrets`: `CreateItem` and `Item.Delete`
 * answer with a prompt; `Prompt("")` then does what `onPrompt` says.
 */
async function scriptedService(
  address: string,
  onPrompt: "complete" | "dismiss" | "never",
): Promise<Bus> {
  const peer = await Bus.connect(address, { timeoutMs: 5000 });
  const item = "/org/freedesktop/secrets/collection/fake/1";
  const prompt = "/org/freedesktop/secrets/prompt/p1";
  peer.raw.addMethodHandler((msg: Message) => {
    const key = `${msg.interface}.${msg.member}`;
    if (key === `${SERVICE}.OpenSession`) {
      peer.reply(msg, "vo", [new Variant("s", ""), "/org/freedesktop/secrets/session/s1"]);
    } else if (key === "org.freedesktop.Secret.Collection.CreateItem") {
      peer.reply(msg, "oo", ["/", prompt]);
    } else if (key === "org.freedesktop.Secret.Item.Delete") {
      peer.reply(msg, "o", [prompt]);
    } else if (key === "org.freedesktop.Secret.Prompt.Prompt") {
      peer.reply(msg);
      if (onPrompt === "never") return true;
      const dismissed = onPrompt === "dismiss";
      // Broadcast (no destination), as some backends do; gnome-keyring sends it unicast.
      setTimeout(() =>
        peer.sendSignal({
          path: prompt,
          interface: "org.freedesktop.Secret.Prompt",
          member: "Completed",
          signature: "bv",
          body: [dismissed, new Variant("o", dismissed ? "/" : item)],
        }), 20);
    } else if (key === "org.freedesktop.Secret.Prompt.Dismiss") {
      peer.reply(msg);
    } else {
      peer.replyError(msg, "org.freedesktop.DBus.Error.UnknownMethod", "not scripted");
    }
    return true;
  });
  await peer.requestName(SECRETS_NAME);
  return peer;
}

Deno.test("SecretServiceBackend: prompts are run; dismissed → BackendError; too slow → unavailable", async () => {
  const stack = await Stack.temp("sd-ssb-");
  const buses: Bus[] = [];
  try {
    const companion = await stack.companionBus(await currentUser());
    const write = { label: "x", attributes: {}, secret: secret("x"), replace: false };
    const fake = "/org/freedesktop/secrets/collection/fake";
    for (const mode of ["complete", "dismiss", "never"] as const) {
      const peer = await scriptedService(companion.address, mode);
      buses.push(peer);
      const bus = await Bus.connect(companion.address, { timeoutMs: 5000 });
      buses.push(bus);
      const backend = new SecretServiceBackend(bus, { promptTimeoutMs: 500 });
      await backend.start();
      if (mode === "complete") {
        assert.equal(await within(5000, backend.createItem(fake, write)), `${fake}/1`);
        await within(5000, backend.deleteItem(`${fake}/1`));
      } else if (mode === "dismiss") {
        await assert.rejects(within(5000, backend.createItem(fake, write)), (e: unknown) => {
          assert.ok(e instanceof BackendError, String(e));
          assert.match(e.message, /dismissed/);
          return true;
        });
        await assert.rejects(within(5000, backend.deleteItem(`${fake}/1`)), BackendError);
      } else {
        await assert.rejects(within(5000, backend.createItem(fake, write)), (e: unknown) => {
          assert.ok(e instanceof StoreUnavailableError, String(e));
          assert.match(e.message, /did not complete within 500 ms/);
          return true;
        });
      }
      await backend.close();
      bus.close();
      peer.close();
    }
    // Nobody owns the name: unavailable, not a hang.
    const bus = await Bus.connect(companion.address, { timeoutMs: 5000 });
    buses.push(bus);
    const backend = new SecretServiceBackend(bus);
    await backend.start();
    await assert.rejects(within(5000, backend.getSecrets([`${fake}/1`])), StoreUnavailableError);
    assert.equal((await backend.status()).state, "unavailable");
    // The connection itself closing: unavailable too.
    bus.close();
    await assert.rejects(within(5000, backend.readAlias("default")), StoreUnavailableError);
  } finally {
    for (const b of buses) b.close();
    await stack.destroy();
  }
});
