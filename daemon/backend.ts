/**
 * The daemon's view of the secret store: a Secret Service backend on the companion bus
 * (gnome-keyring in tests and the demo; gopass-secret-service or KeePassXC in production).
 * The request manager works against this interface; `secret_service_backend.ts` implements it
 * over D-Bus and `memory_backend.ts` in memory for unit tests.
 *
 * @module
 */

import type { CollectionInfo, ItemInfo, StoreStatus } from "../lib/protocol.ts";

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
 * A Secret Service backend as the daemon uses it. Paths are the backend's own object paths
 * (`/org/freedesktop/secrets/collection/<c>[/<i>]`); alias paths are resolved by the caller
 * through {@link readAlias}. Every method fails with {@link StoreUnavailableError} when the
 * backend does not answer in time, and never hangs.
 */
export interface SecretBackend {
  /** Whether the store can be used now: the default collection's lock state, or unavailable. */
  status(): Promise<StoreStatus>;
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
