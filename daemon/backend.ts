/**
 * The daemon's view of the secret store: a Secret Service backend on the companion bus
 * (gnome-keyring in tests and the demo; gopass-secret-service or KeePassXC in production).
 * The request manager works against this interface; `secret_service_backend.ts` implements it
 * over D-Bus and `memory_backend.ts` in memory for unit tests.
 *
 * @module
 */

import type { CollectionInfo, ItemInfo, StoreStatus } from "../lib/protocol.ts";
import { SESSION_COLLECTION } from "../lib/secret_service.ts";

/** A secret value and its content type (e.g. `text/plain`). */
export interface SecretValue {
  value: Uint8Array;
  contentType: string;
}

/** The collection or an item is locked in the backend: nothing can be read or changed. */
export class StoreLockedError extends Error {
  /** @param message which object is locked, what to do */
  constructor(message: string) {
    super(message);
    this.name = "StoreLockedError";
  }
}

/** No backend answers (not running, restarting, timed out). */
export class StoreUnavailableError extends Error {
  /**
   * @param message what failed
   * @param options standard `ErrorOptions` (`cause`)
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StoreUnavailableError";
  }
}

/** The collection or item named does not exist in the backend. */
export class NoSuchObjectError extends Error {
  /** @param message which object */
  constructor(message: string) {
    super(message);
    this.name = "NoSuchObjectError";
  }
}

/** The backend refused an operation for another reason (bad value, unsupported, dismissed). */
export class BackendError extends Error {
  /** @param message the backend's error name and text */
  constructor(message: string) {
    super(message);
    this.name = "BackendError";
  }
}

/**
 * The store's state as the daemon sees its backend: a {@link StoreStatus}, and whether the store
 * has no keyring yet. Only `state` and `message` travel on the system bus (`StoreStatus`); the
 * admin `Status` turns `noKeyring` into `AdminStoreStatus.creates`.
 */
export interface BackendStatus extends StoreStatus {
  /**
   * True when the store has no keyring yet: no collection but gnome-keyring's in-memory
   * `session` one (`state` is then `locked`): the first unlock with a passphrase creates it.
   */
  noKeyring?: boolean;
}

/** What `status()` says, and secret requests are refused with, while the store has no keyring. */
export const NO_KEYRING_TEXT =
  "the secret store has no keyring yet: the first unlock with a store passphrase creates it";

/**
 * Which collection is the store (what `status()` reports and `UnlockStore` unlocks):
 * - `default`: the one the `default` alias names;
 * - `first`: without that alias, the first collection;
 * - `noKeyring`: there is none but gnome-keyring's `session` collection ({@link SESSION_COLLECTION},
 *   which never counts: it is kept in memory only and always unlocked); unlocking creates one;
 * - `none`: the backend lists no collection at all.
 */
export type StoreChoice =
  | { kind: "default" | "first"; path: string }
  | { kind: "noKeyring" }
  | { kind: "none" };

/**
 * Chooses the collection that stands for the store; see {@link StoreChoice}.
 *
 * @param defaultAlias the collection the `default` alias names, or null when it is not set
 * @param collections every collection path, in the backend's order (only looked at when the
 *   alias does not name a collection that counts)
 */
export function chooseStore(defaultAlias: string | null, collections: string[]): StoreChoice {
  if (defaultAlias !== null && defaultAlias !== SESSION_COLLECTION) {
    return { kind: "default", path: defaultAlias };
  }
  const first = collections.find((c) => c !== SESSION_COLLECTION);
  if (first !== undefined) return { kind: "first", path: first };
  return collections.length > 0 ? { kind: "noKeyring" } : { kind: "none" };
}

/** True when every collection listed is gnome-keyring's `session` one (and there is one). */
export function hasNoKeyring(collections: string[]): boolean {
  return chooseStore(null, collections).kind === "noKeyring";
}

/**
 * The status of the store `choice` names, worded for people (the console, `ctl status`, the
 * agent's log): which collection, whether it is locked, what to do.
 *
 * @param choice from {@link chooseStore}
 * @param collection the chosen collection's `Label` and `Locked` (for `default` and `first`)
 */
export function storeStatusOf(
  choice: StoreChoice,
  collection?: { label: string; locked: boolean },
): BackendStatus {
  if (choice.kind === "noKeyring") {
    return {
      state: "locked",
      message: `${NO_KEYRING_TEXT} (gnome-keyring's in-memory session collection does not count)`,
      noKeyring: true,
    };
  }
  if (choice.kind === "none") {
    return {
      state: "unavailable",
      message: "the secret store has no collection (and no default alias)",
    };
  }
  const how = choice.kind === "default"
    ? "default collection"
    : "first collection (no default alias is set)";
  const name = `"${collection?.label || basename(choice.path)}" (${choice.path})`;
  if (collection?.locked) {
    return {
      state: "locked",
      message: `the secret store's ${how} ${name} is locked: the store must be unlocked ` +
        `before secrets can be read or changed`,
    };
  }
  return { state: "unlocked", message: `the secret store's ${how} ${name} is unlocked` };
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

/**
 * A Secret Service backend as the daemon uses it. Paths are the backend's own object paths
 * (`/org/freedesktop/secrets/collection/<c>[/<i>]`); alias paths are resolved by the caller
 * through {@link readAlias}. Every method fails with {@link StoreUnavailableError} when the
 * backend does not answer in time, and never hangs.
 */
export interface SecretBackend {
  /**
   * Whether the store can be used now: the lock state of the collection {@link chooseStore}
   * picks (worded by {@link storeStatusOf}), `locked` with `noKeyring` when there is no keyring
   * yet, or `unavailable`. Never throws.
   */
  status(): Promise<BackendStatus>;
  /** Every collection. */
  collections(): Promise<CollectionInfo[]>;
  /** The collection an alias names (`default`, `login`, `session`...), or null. */
  readAlias(name: string): Promise<string | null>;
  /**
   * Items whose attributes include all of `attributes` (exact strings; `{}` matches all).
   *
   * @param collection a collection path to search in, or null for every collection
   * @throws {NoSuchObjectError} for an unknown collection
   */
  searchItems(
    attributes: Record<string, string>,
    collection: string | null,
  ): Promise<ItemInfo[]>;
  /** Metadata of the given items, in the same order; unknown paths are left out. */
  getItems(paths: string[]): Promise<ItemInfo[]>;
  /**
   * The values of the given items.
   *
   * @throws {StoreLockedError} when any of them is locked
   * @throws {NoSuchObjectError} when any of them does not exist
   */
  getSecrets(paths: string[]): Promise<Map<string, SecretValue>>;
  /**
   * Stores a new item (with `replace`, overwrites the item with the same attributes).
   *
   * @returns the item's path
   * @throws {StoreLockedError}, {@link NoSuchObjectError} (collection), {@link BackendError}
   */
  createItem(
    collection: string,
    item: {
      label: string;
      attributes: Record<string, string>;
      secret: SecretValue;
      replace: boolean;
    },
  ): Promise<string>;
  /**
   * Replaces an item's value.
   *
   * @throws {StoreLockedError}, {@link NoSuchObjectError}, {@link BackendError}
   */
  setSecret(item: string, secret: SecretValue): Promise<void>;
  /**
   * Changes an item's label and/or attributes.
   *
   * @throws {StoreLockedError}, {@link NoSuchObjectError}, {@link BackendError}
   */
  setProperties(
    item: string,
    props: { label?: string; attributes?: Record<string, string> },
  ): Promise<void>;
  /**
   * Locks every collection (spec `Service.Lock`): reading or writing then needs the store to be
   * unlocked again (with its password).
   *
   * @throws {StoreUnavailableError}
   */
  lockAll(): Promise<void>;
  /**
   * Deletes an item.
   *
   * @throws {StoreLockedError}, {@link NoSuchObjectError}, {@link BackendError}
   */
  deleteItem(item: string): Promise<void>;
}
