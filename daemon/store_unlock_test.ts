/**
 * {@link MasterPasswordUnlocker} against a real gnome-keyring on a private companion bus, and
 * against a Secret Service without the master-password interface.
 */

import assert from "node:assert/strict";
import { Bus, type Message, MessageType } from "../lib/dbus.ts";
import { Iface, SECRETS_NAME, SERVICE_PATH, SESSION_COLLECTION } from "../lib/secret_service.ts";
import { currentUser, Stack } from "../dev/harness.ts";
import { StoreUnavailableError } from "./backend.ts";
import { SecretServiceBackend } from "./secret_service_backend.ts";
import {
  MasterPasswordUnlocker,
  UnlockNotSupportedError,
  WrongPasswordError,
} from "./store_unlock.ts";

const PASSWORD = "login p\u00e4ssword";
const LOGIN = "/org/freedesktop/secrets/collection/login";
const enc = (s: string) => new TextEncoder().encode(s);

/** A gnome-keyring with its login keyring (`login: false`: a fresh one without). */
async function withKeyring(
  fn: (
    k: { bus: Bus; backend: SecretServiceBackend; unlocker: MasterPasswordUnlocker },
  ) => Promise<void>,
  options: { login?: boolean } = {},
): Promise<void> {
  const stack = await Stack.temp("sd-unlock-");
  let bus: Bus | undefined;
  try {
    const companion = await stack.companionBus(await currentUser());
    await stack.gnomeKeyring({
      bus: companion,
      password: options.login === false ? null : PASSWORD,
    });
    bus = await Bus.connect(companion.address, { timeoutMs: 5000 });
    const backend = new SecretServiceBackend(bus);
    await backend.start();
    await fn({ bus, backend, unlocker: new MasterPasswordUnlocker(bus) });
    await backend.close();
  } finally {
    bus?.close();
    await stack.destroy();
  }
}

function service(bus: Bus, member: string, signature: string, body: unknown[]) {
  return bus.call({
    destination: SECRETS_NAME,
    path: SERVICE_PATH,
    interface: Iface.Service,
    member,
    signature,
    body,
  });
}

Deno.test("a locked store: a wrong password leaves it locked, the right one unlocks it", async () => {
  await withKeyring(async ({ bus, backend, unlocker }) => {
    await service(bus, "Lock", "ao", [[LOGIN]]);
    assert.equal((await backend.status()).state, "locked");
    assert.equal(await unlocker.supported(), true, "gnome-keyring takes a master password");
    await assert.rejects(unlocker.unlock(enc("not it")), WrongPasswordError);
    assert.equal((await backend.status()).state, "locked");
    await assert.rejects(unlocker.unlock(new Uint8Array()), WrongPasswordError);
    await unlocker.unlock(enc(PASSWORD));
    assert.equal((await backend.status()).state, "unlocked");
    // Already unlocked: nothing to do, any password.
    await unlocker.unlock(enc("whatever"));
    assert.equal((await backend.status()).state, "unlocked");
  });
});

Deno.test("a store without a default alias: the first collection, which Status names, is unlocked; none is created", async () => {
  await withKeyring(async ({ bus, backend, unlocker }) => {
    await service(bus, "SetAlias", "so", ["default", "/"]);
    await service(bus, "Lock", "ao", [[LOGIN]]);
    const before = await backend.collections();
    const status = await backend.status();
    assert.equal(status.state, "locked");
    assert.match(
      status.message,
      /first collection \(no default alias is set\) .*collection\/login/,
    );
    assert.equal(status.noKeyring, undefined);
    await assert.rejects(unlocker.unlock(enc("not it")), WrongPasswordError);
    assert.equal(await unlocker.unlock(enc(PASSWORD)), "unlocked");
    assert.equal((await backend.status()).state, "unlocked");
    assert.deepEqual(
      (await backend.collections()).map((c) => [c.path, c.locked]),
      before.map((c) => [c.path, false]),
    );
  });
});

Deno.test("a store without a keyring (gnome-keyring's session collection only): locked, no keyring; the first passphrase creates it", async () => {
  await withKeyring(async ({ bus, backend, unlocker }) => {
    assert.deepEqual((await backend.collections()).map((c) => [c.path, c.locked]), [
      [SESSION_COLLECTION, false],
    ]);
    const fresh = await backend.status();
    assert.equal(fresh.state, "locked", "the always-unlocked session collection does not count");
    assert.equal(fresh.noKeyring, true);
    assert.match(fresh.message, /has no keyring yet: the first unlock with a store passphrase/);
    await assert.rejects(unlocker.unlock(new Uint8Array()), /empty passphrase cannot create/);
    assert.equal((await backend.status()).noKeyring, true, "nothing was created");

    assert.equal(await unlocker.unlock(enc(PASSWORD)), "created");
    const def = await backend.readAlias("default");
    assert.ok(def !== null && def !== SESSION_COLLECTION, "the default alias names a new keyring");
    const open = await backend.status();
    assert.equal(open.state, "unlocked");
    assert.match(open.message, /default collection "Login"/);
    const item = await backend.createItem(def, {
      label: "x",
      attributes: { a: "b" },
      secret: { value: enc("v"), contentType: "text/plain" },
      replace: false,
    });
    assert.equal(
      new TextDecoder().decode((await backend.getSecrets([item])).get(item)!.value),
      "v",
    );
    // Locked again, it opens with the password it was created with (and is not created again).
    await service(bus, "Lock", "ao", [[def]]);
    assert.equal((await backend.status()).state, "locked");
    await assert.rejects(unlocker.unlock(enc("other")), WrongPasswordError);
    assert.equal(await unlocker.unlock(enc(PASSWORD)), "unlocked");
    assert.equal((await backend.collections()).length, 2);
  }, { login: false });
});

Deno.test("a backend without the master-password interface: not supported; none at all: unavailable", async () => {
  const stack = await Stack.temp("sd-unlock-");
  const buses: Bus[] = [];
  try {
    const companion = await stack.companionBus(await currentUser());
    const client = await Bus.connect(companion.address, { timeoutMs: 5000, callTimeoutMs: 1000 });
    buses.push(client);
    const unlocker = new MasterPasswordUnlocker(client, { timeoutMs: 1000 });
    await assert.rejects(unlocker.unlock(enc("pw")), StoreUnavailableError);
    await assert.rejects(unlocker.supported(), StoreUnavailableError);

    const other = await Bus.connect(companion.address, { timeoutMs: 5000 });
    buses.push(other);
    other.raw.addMethodHandler((msg: Message) => {
      if (msg.type !== MessageType.METHOD_CALL) return false;
      if (msg.member === "Introspect") {
        other.reply(msg, "s", [
          `<node><interface name="${Iface.Service}"/></node>`,
        ]);
      } else other.replyError(msg, "org.freedesktop.DBus.Error.UnknownMethod", "no");
      return true;
    });
    await other.requestName(SECRETS_NAME);
    assert.equal(await unlocker.supported(), false);
    await assert.rejects(unlocker.unlock(enc("pw")), UnlockNotSupportedError);
  } finally {
    for (const b of buses) b.close();
    await stack.destroy();
  }
});
