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
import { Iface, NULL_PATH, SECRETS_NAME, SERVICE_PATH } from "../lib/secret_service.ts";
import { StoreUnavailableError } from "./backend.ts";

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
   * Unlocks the default collection with `password` (bytes, exactly as typed), creating it when
   * the store has none. Resolves at once when it is already unlocked.
   *
   * @throws {WrongPasswordError}, {@link UnlockNotSupportedError}, {@link StoreUnavailableError}
   */
  unlock(password: Uint8Array): Promise<void>;
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

  async unlock(password: Uint8Array): Promise<void> {
    if (password.length === 0) throw new WrongPasswordError("the password is empty");
    if (!(await this.#offersMasterPassword())) {
      throw new UnlockNotSupportedError(
        "this secret store cannot be unlocked with a password from secrets-dispatcher " +
          "(it has no gnome-keyring master-password interface); unlock it with its own tools",
      );
    }
    const [, session] = await this.#call(Iface.Service, "OpenSession", "sv", [
      "plain",
      new Variant("s", ""),
    ]);
    const secret = [String(session), Buffer.alloc(0), Buffer.from(password), "text/plain"];
    try {
      const [alias] = await this.#call(Iface.Service, "ReadAlias", "s", ["default"]);
      if (alias === NULL_PATH) {
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
        return;
      }
      if (!(await this.#locked(String(alias)))) return;
      try {
        await this.#call(GNOME_KEYRING_PRIVATE, "UnlockWithMasterPassword", "o(oayays)", [
          String(alias),
          secret,
        ]);
      } catch (err) {
        if (!(err instanceof DBusCallError)) throw err;
        // gnome-keyring answers a wrong password with an error; check the state either way.
      }
      if (await this.#locked(String(alias))) {
        throw new WrongPasswordError("the password did not unlock the secret store");
      }
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
