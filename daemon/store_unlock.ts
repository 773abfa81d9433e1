/**
 * Unlocking the secret store with a password (the login password the PAM hand-off delivers, or
 * one typed on the console): the one place where the daemon uses something backend-specific.
 *
 * The Secret Service spec has no way to unlock with a password: `Unlock` returns a prompt that the
 * backend's own GUI answers (spec ch. 8). gnome-keyring offers a private interface for it,
 * `org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface` on `/org/freedesktop/secrets`
 * (used by seahorse; reference secret-service.md §1.11): `UnlockWithMasterPassword(o, (oayays))`
 * and `CreateWithMasterPassword(a{sv}, (oayays)) → o`. A backend that does not offer it is
 * answered with {@link UnlockNotSupportedError}; the password travels in a plain session on the
 * companion's private bus, which only the companion can reach.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { type Bus, DBusCallError, Variant } from "../lib/dbus.ts";
import {
  Iface,
  NULL_PATH,
  SECRETS_NAME,
  SERVICE_PATH,
  SESSION_COLLECTION,
} from "../lib/secret_service.ts";
import { chooseStore, StoreUnavailableError } from "./backend.ts";

/** gnome-keyring's private interface with the master-password methods. */
export const GNOME_KEYRING_PRIVATE = "org.gnome.keyring.InternalUnsupportedGuiltRiddenInterface";

/** The password did not unlock the store. */
export class WrongPasswordError extends Error {
  /** @param message what was tried */
  constructor(message: string) {
    super(message);
    this.name = "WrongPasswordError";
  }
}

/** The backend cannot be unlocked with a password from here. */
export class UnlockNotSupportedError extends Error {
  /** @param message which backend, what to do instead */
  constructor(message: string) {
    super(message);
    this.name = "UnlockNotSupportedError";
  }
}

/** Unlocks the store; see the module doc. */
export interface StoreUnlocker {
  /**
   * Unlocks the store with `password` (bytes, exactly as typed): the collection `chooseStore`
   * picks (the one `status()` reports), or, when the store has no keyring yet (no collection
   * but gnome-keyring's `session` one), creates one with it and makes it the `default` alias.
   * Resolves at once when the store is already unlocked (whatever the password).
   *
   * @returns `created` when it created the store's keyring, `unlocked` otherwise
   * @throws {WrongPasswordError} for a password that does not unlock it, and for an empty one
   *   (never a store created without a passphrase)
   * @throws {UnlockNotSupportedError}, {@link StoreUnavailableError}
   */
  unlock(password: Uint8Array): Promise<"unlocked" | "created">;
  /**
   * Whether {@link unlock} can work with this backend at all (false: it would throw
   * {@link UnlockNotSupportedError}). Asked afresh each time: the backend may be replaced.
   *
   * @throws {StoreUnavailableError} when the backend does not answer
   */
  supported(): Promise<boolean>;
}

/** {@link StoreUnlocker} over gnome-keyring's private interface on the companion bus. */
export class MasterPasswordUnlocker implements StoreUnlocker {
  #bus: Bus;
  #timeoutMs: number;

  /**
   * @param bus the companion bus
   * @param options `timeoutMs` of each call (default 10 s: unlocking derives a key)
   */
  constructor(bus: Bus, options: { timeoutMs?: number } = {}) {
    this.#bus = bus;
    this.#timeoutMs = options.timeoutMs ?? 10_000;
  }

  supported(): Promise<boolean> {
    return this.#offersMasterPassword();
  }

  async unlock(password: Uint8Array): Promise<"unlocked" | "created"> {
    if (!(await this.#offersMasterPassword())) {
      if (password.length === 0) throw new WrongPasswordError("the password is empty");
      throw new UnlockNotSupportedError(
        "this secret store cannot be unlocked with a password from secrets-dispatcher " +
          "(it has no gnome-keyring master-password interface); unlock it with its own tools",
      );
    }
    const [alias] = await this.#call(Iface.Service, "ReadAlias", "s", ["default"]);
    const defaultAlias = alias === NULL_PATH ? null : String(alias);
    const choice = chooseStore(
      defaultAlias,
      defaultAlias !== null && defaultAlias !== SESSION_COLLECTION ? [] : await this.#collections(),
    );
    const creating = choice.kind === "noKeyring" || choice.kind === "none";
    if (password.length === 0) {
      throw new WrongPasswordError(
        creating
          ? "an empty passphrase cannot create the secret store: choose one"
          : "the password is empty",
      );
    }
    if (!creating && !(await this.#locked(choice.path))) return "unlocked";
    const [, session] = await this.#call(Iface.Service, "OpenSession", "sv", [
      "plain",
      new Variant("s", ""),
    ]);
    const secret = [String(session), Buffer.alloc(0), Buffer.from(password), "text/plain"];
    try {
      if (creating) {
        const [created] = await this.#call(
          GNOME_KEYRING_PRIVATE,
          "CreateWithMasterPassword",
          "a{sv}(oayays)",
          [
            { [`${Iface.Collection}.Label`]: new Variant("s", "Login") },
            secret,
          ],
        );
        await this.#call(Iface.Service, "SetAlias", "so", ["default", String(created)]);
        return "created";
      }
      try {
        await this.#call(GNOME_KEYRING_PRIVATE, "UnlockWithMasterPassword", "o(oayays)", [
          choice.path,
          secret,
        ]);
      } catch (err) {
        if (!(err instanceof DBusCallError)) throw err;
        // gnome-keyring answers a wrong password with an error; check the state either way.
      }
      if (await this.#locked(choice.path)) {
        throw new WrongPasswordError("the password did not unlock the secret store");
      }
      return "unlocked";
    } finally {
      (secret[2] as Buffer).fill(0);
      await this.#bus.call({
        destination: SECRETS_NAME,
        path: String(session),
        interface: Iface.Session,
        member: "Close",
      }, { timeoutMs: 2000 }).catch(() => {});
    }
  }

  /** Every collection path (`Service.Collections`). */
  async #collections(): Promise<string[]> {
    const [v] = await this.#call(Iface.Properties, "Get", "ss", [Iface.Service, "Collections"]);
    const value = (v as { value?: unknown }).value;
    return Array.isArray(value) ? value.map(String) : [];
  }

  async #offersMasterPassword(): Promise<boolean> {
    const [xml] = await this.#call(Iface.Introspectable, "Introspect", "", []);
    return String(xml).includes(`"${GNOME_KEYRING_PRIVATE}"`);
  }

  async #locked(collection: string): Promise<boolean> {
    const [v] = await this.#bus.call({
      destination: SECRETS_NAME,
      path: collection,
      interface: Iface.Properties,
      member: "Get",
      signature: "ss",
      body: [Iface.Collection, "Locked"],
    }, { timeoutMs: this.#timeoutMs }).catch((err) => {
      throw unavailable(err);
    });
    return (v as { value: unknown }).value === true;
  }

  async #call(
    iface: string,
    member: string,
    signature: string,
    body: unknown[],
  ): Promise<unknown[]> {
    try {
      return await this.#bus.call({
        destination: SECRETS_NAME,
        path: SERVICE_PATH,
        interface: iface,
        member,
        signature,
        body,
      }, { timeoutMs: this.#timeoutMs });
    } catch (err) {
      if (err instanceof DBusCallError && member === "UnlockWithMasterPassword") throw err;
      throw unavailable(err);
    }
  }
}

function unavailable(err: unknown): Error {
  const text = err instanceof Error ? err.message : String(err);
  return new StoreUnavailableError(`the secret store did not answer: ${text}`);
}
