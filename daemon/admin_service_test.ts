/**
 * The admin service's store members (`Status`, `UnlockStore`, `Lock`, `Unlock`) through a real
 * companion bus and the real admin client, over the in-memory store and a fake unlocker.
 */

import assert from "node:assert/strict";
import { AdminClient, AdminError } from "../lib/admin_client.ts";
import { Bus } from "../lib/dbus.ts";
import { type AdminStoreStatus, Errors } from "../lib/protocol.ts";
import { currentUser, Stack } from "../dev/harness.ts";
import { AdminService } from "./admin_service.ts";
import { StoreUnavailableError } from "./backend.ts";
import { MemoryBackend } from "./memory_backend.ts";
import { RequestManager } from "./requests.ts";
import { SecretRequests } from "./secret_requests.ts";
import { type StoreUnlocker, UnlockNotSupportedError, WrongPasswordError } from "./store_unlock.ts";
import { FakeGpg, MemoryHistory } from "./test_support.ts";

const PASSWORD = "store p\u00e4ssword";

/** Unlocks a {@link MemoryBackend} with {@link PASSWORD}, when `support` says it can. */
class FakeUnlocker implements StoreUnlocker {
  /** What `supported()` answers; an Error is thrown. */
  support: boolean | Error = true;
  constructor(readonly backend: MemoryBackend) {}
  supported(): Promise<boolean> {
    return this.support instanceof Error
      ? Promise.reject(this.support)
      : Promise.resolve(this.support);
  }
  async unlock(password: Uint8Array): Promise<"unlocked" | "created"> {
    if (this.support !== true) throw new UnlockNotSupportedError("no master password here");
    if ((await this.backend.status()).noKeyring) {
      if (password.length === 0) throw new WrongPasswordError("an empty passphrase");
      this.backend.createKeyring();
      return "created";
    }
    if (new TextDecoder().decode(password) !== PASSWORD) {
      throw new WrongPasswordError("the password did not unlock the store");
    }
    this.backend.unlock();
    return "unlocked";
  }
}

/**
 * The admin service wired as `daemon/main.ts` wires it (status from `SecretRequests`, the lock
 * locking the store), over a locked in-memory store (`keyring: false`: one without a keyring
 * yet), on a real companion bus.
 */
async function withAdmin(
  options: { unlocker: boolean; keyring?: boolean },
  fn: (
    t: {
      client: AdminClient;
      backend: MemoryBackend;
      unlocker: FakeUnlocker;
      log: string[];
      changed: [string, string][];
    },
  ) => Promise<void>,
): Promise<void> {
  const stack = await Stack.temp("sd-admin-");
  const closers: (() => void)[] = [];
  try {
    const companion = await stack.companionBus(await currentUser());
    const bus = await Bus.connect(companion.address, { timeoutMs: 5000 });
    closers.push(() => bus.close());
    const backend = new MemoryBackend({ keyring: options.keyring });
    if (options.keyring !== false) backend.lock();
    const unlocker = new FakeUnlocker(backend);
    const log: string[] = [];
    const manager = new RequestManager({ gpg: new FakeGpg(), history: new MemoryHistory() });
    closers.push(() => manager.shutdown("test over"));
    const secrets = new SecretRequests(backend, {
      manager,
      clientUid: 1000,
      proc: { info: () => Promise.resolve(null) },
    });
    const admin = new AdminService(bus, {
      manager,
      history: new MemoryHistory(),
      adminUid: Deno.uid()!,
      status: () => secrets.status(),
      unlocker: options.unlocker ? unlocker : undefined,
      onLock: async () => {
        await backend.lockAll();
        return [];
      },
      log: (l) => log.push(l),
    });
    await admin.start();
    const client = await AdminClient.connect(companion.address, { timeoutMs: 5000 });
    closers.push(() => client.close());
    const changed: [string, string][] = [];
    await client.onChanged((id, state) => changed.push([id, state]));
    await fn({ client, backend, unlocker, log, changed });
  } finally {
    for (const c of closers.reverse()) c();
    await stack.destroy();
  }
}

/** Waits until `changed` holds `n` signals (they arrive asynchronously). */
async function signals(changed: unknown[], n: number): Promise<void> {
  for (let i = 0; i < 200 && changed.length < n; i++) await new Promise((r) => setTimeout(r, 10));
}

Deno.test("Admin1.Status: locked, and whether the store's passphrase can open it", async () => {
  await withAdmin({ unlocker: true }, async ({ client, backend, unlocker }) => {
    const locked: AdminStoreStatus = await client.status();
    assert.equal(locked.state, "locked");
    assert.match(locked.message, /must be unlocked/);
    assert.equal(locked.consoleLock, false);
    assert.equal(locked.passwordUnlock, true);
    unlocker.support = false;
    assert.equal((await client.status()).passwordUnlock, false, "NotSupported: said so");
    unlocker.support = new StoreUnavailableError("gone");
    assert.equal((await client.status()).passwordUnlock, null, "no answer: not known");
    backend.unlock();
    const open = await client.status();
    assert.equal(open.state, "unlocked");
    assert.equal(open.passwordUnlock, null, "nothing to unlock");
    assert.equal(open.creates, false);
  });
  await withAdmin({ unlocker: false }, async ({ client }) => {
    assert.equal((await client.status()).passwordUnlock, false, "no unlocker at all");
  });
});

Deno.test("Admin1.UnlockStore: a wrong password leaves it locked, the right one opens it and says so", async () => {
  await withAdmin({ unlocker: true }, async ({ client, log, changed }) => {
    await assert.rejects(
      client.unlockStore(new TextEncoder().encode("not it")),
      (e: unknown) => e instanceof AdminError && e.dbusName === Errors.WrongPassword,
    );
    assert.equal((await client.status()).state, "locked");
    assert.deepEqual(changed, []);
    await client.unlockStore(new TextEncoder().encode(PASSWORD));
    assert.equal((await client.status()).state, "unlocked");
    await signals(changed, 1);
    assert.deepEqual(changed, [["", "store"]], 'Changed("", "store") for the console');
    assert.ok(!log.join("\n").includes(PASSWORD) && !log.join("\n").includes("not it"));
  });
});

Deno.test("Admin1.Lock/Unlock: the console's lock shows in Status and signals a store change", async () => {
  await withAdmin({ unlocker: true }, async ({ client, backend, changed }) => {
    backend.unlock();
    await client.lock();
    const locked = await client.status();
    assert.equal(locked.state, "locked");
    assert.equal(locked.consoleLock, true);
    assert.equal(locked.passwordUnlock, null, "the console's lock is lifted with U, not typed");
    await client.unlock();
    // The lock locked the store too: lifting the console's lock leaves that for the passphrase.
    assert.deepEqual(
      { ...(await client.status()), message: "" },
      { state: "locked", message: "", consoleLock: false, passwordUnlock: true, creates: false },
    );
    await signals(changed, 2);
    assert.deepEqual(changed, [["", "store"], ["", "store"]]);
  });
});

Deno.test("Admin1.Status and UnlockStore on a store without a keyring yet: locked, creates; the passphrase creates it", async () => {
  await withAdmin(
    { unlocker: true, keyring: false },
    async ({ client, unlocker, log, changed }) => {
      const fresh = await client.status();
      assert.deepEqual({ ...fresh, message: "" }, {
        state: "locked",
        message: "",
        consoleLock: false,
        passwordUnlock: true,
        creates: true,
      });
      assert.match(fresh.message, /no keyring yet: the first unlock with a store passphrase/);
      // Only a passphrase that can be typed creates it: not without password unlocking.
      unlocker.support = false;
      assert.equal((await client.status()).creates, false);
      unlocker.support = true;
      await assert.rejects(
        client.unlockStore(new Uint8Array()),
        (e: unknown) => e instanceof AdminError && e.dbusName === Errors.WrongPassword,
      );
      assert.equal((await client.status()).creates, true, "an empty passphrase creates nothing");
      await client.unlockStore(new TextEncoder().encode("a new passphrase"));
      const open = await client.status();
      assert.equal(open.state, "unlocked");
      assert.equal(open.creates, false);
      assert.match(open.message, /default collection "Login"/);
      await signals(changed, 1);
      assert.deepEqual(changed, [["", "store"]]);
      assert.match(log.join("\n"), /had no keyring: created it/);
      assert.ok(!log.join("\n").includes("a new passphrase"));
    },
  );
});
