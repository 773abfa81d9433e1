/**
 * An in-memory {@link SecretBackend} for unit tests: the shape of a gnome-keyring with its login
 * keyring (a `login` collection that the `default` alias names, and a `session` collection), or
 * without one yet (`session` only), with the same error semantics as `SecretServiceBackend`, plus
 * switches to simulate a locked or unavailable store.
 *
 * @module
 */

import type { CollectionInfo, ItemInfo } from "../lib/protocol.ts";
import { COLLECTION_PREFIX, collectionOf, SESSION_COLLECTION } from "../lib/secret_service.ts";
import {
  type BackendStatus,
  chooseStore,
  NoSuchObjectError,
  type SecretBackend,
  type SecretValue,
  StoreLockedError,
  storeStatusOf,
  StoreUnavailableError,
} from "./backend.ts";

/** Path of the fake's `login` collection (the `default` alias). */
export const MEMORY_LOGIN = `${COLLECTION_PREFIX}login`;
/** Path of the fake's `session` collection (gnome-keyring's in-memory one). */
export const MEMORY_SESSION = SESSION_COLLECTION;

interface MemoryItem {
  label: string;
  attributes: Record<string, string>;
  secret: SecretValue;
  created: number;
  modified: number;
}

interface MemoryCollection {
  label: string;
  locked: boolean;
  created: number;
  modified: number;
  nextId: number;
  items: Map<string, MemoryItem>;
}

/**
 * In-memory fake of a Secret Service backend. Item paths are `<collection>/<n>` with `n`
 * counting up from 1 per collection (as gnome-keyring does); search is subset matching on exact
 * strings (`{}` matches all); `replace` overwrites the first item of the collection whose
 * attributes include all the new ones, keeping its path and creation time. Locked collections
 * can be searched and their metadata read, but not their values, and nothing in them changed.
 * Values are copied in and out.
 */
export class MemoryBackend implements SecretBackend {
  #collections = new Map<string, MemoryCollection>();
  #aliases = new Map<string, string>();
  #unavailable = false;
  #now: () => number;

  /**
   * @param options `now`: the clock for Created/Modified, in seconds since the epoch (default
   *   the wall clock); `keyring: false` starts without the `login` collection and the `default`
   *   alias, as gnome-keyring does before its login keyring exists (see {@link createKeyring})
   */
  constructor(options: { now?: () => number; keyring?: boolean } = {}) {
    this.#now = options.now ?? (() => Math.floor(Date.now() / 1000));
    if (options.keyring ?? true) this.createKeyring();
    this.#add(MEMORY_SESSION, "");
    this.#aliases.set("session", MEMORY_SESSION);
  }

  /**
   * Creates the `login` collection, unlocked, and points the `default` and `login` aliases at it
   * (what `UnlockStore` does on a store without a keyring).
   */
  createKeyring(): void {
    this.#add(MEMORY_LOGIN, "Login");
    this.#aliases.set("default", MEMORY_LOGIN);
    this.#aliases.set("login", MEMORY_LOGIN);
  }

  #add(path: string, label: string): void {
    const t = this.#now();
    this.#collections.set(path, {
      label,
      locked: false,
      created: t,
      modified: t,
      nextId: 1,
      items: new Map(),
    });
  }

  /**
   * Locks a collection (default: `login`).
   *
   * @throws {NoSuchObjectError} for an unknown collection
   */
  lock(collection: string = MEMORY_LOGIN): void {
    this.#collection(collection).locked = true;
  }

  /**
   * Unlocks a collection (default: `login`).
   *
   * @throws {NoSuchObjectError} for an unknown collection
   */
  unlock(collection: string = MEMORY_LOGIN): void {
    this.#collection(collection).locked = false;
  }

  /** While true, every method fails with {@link StoreUnavailableError} (status: `unavailable`). */
  lockAll(): Promise<void> {
    if (this.#unavailable) {
      return Promise.reject(new StoreUnavailableError("the memory backend is unavailable"));
    }
    for (const c of this.#collections.keys()) this.lock(c);
    return Promise.resolve();
  }

  setUnavailable(unavailable: boolean): void {
    this.#unavailable = unavailable;
  }

  /** The store's state, chosen and worded as `SecretServiceBackend.status` does. */
  status(): Promise<BackendStatus> {
    if (this.#unavailable) {
      return Promise.resolve({
        state: "unavailable",
        message: "the secret store is not running (memory backend set unavailable)",
      });
    }
    const choice = chooseStore(this.#aliases.get("default") ?? null, [...this.#collections.keys()]);
    const c = "path" in choice ? this.#collections.get(choice.path) : undefined;
    return Promise.resolve(storeStatusOf(choice, c));
  }

  /** Every collection. */
  collections(): Promise<CollectionInfo[]> {
    return this.#run(() =>
      [...this.#collections].map(([path, c]) => ({
        path,
        label: c.label,
        locked: c.locked,
        created: c.created,
        modified: c.modified,
      }))
    );
  }

  /** `default` and `login` name `login`; `session` names `session`; anything else is null. */
  readAlias(name: string): Promise<string | null> {
    return this.#run(() => this.#aliases.get(name) ?? null);
  }

  /**
   * Items whose attributes include all of `attributes`, locked ones too.
   *
   * @throws {NoSuchObjectError} for an unknown collection
   */
  searchItems(
    attributes: Record<string, string>,
    collection: string | null,
  ): Promise<ItemInfo[]> {
    return this.#run(() => {
      const where = collection === null ? [...this.#collections.keys()] : [collection];
      const out: ItemInfo[] = [];
      for (const cpath of where) {
        for (const [path, item] of this.#collection(cpath).items) {
          if (matches(item.attributes, attributes)) out.push(info(path, item));
        }
      }
      return out;
    });
  }

  /** Metadata of the given items in order; unknown paths are left out. */
  getItems(paths: string[]): Promise<ItemInfo[]> {
    return this.#run(() =>
      paths.flatMap((path) => {
        const item = this.#collections.get(collectionOf(path))?.items.get(path);
        return item ? [info(path, item)] : [];
      })
    );
  }

  /**
   * Copies of the values.
   *
   * @throws {NoSuchObjectError} when any item does not exist (checked before locks)
   * @throws {StoreLockedError} when any item is locked
   */
  getSecrets(paths: string[]): Promise<Map<string, SecretValue>> {
    return this.#run(() => {
      const items = paths.map((path) => [path, this.#item(path)] as const);
      const locked = items.filter(([path]) => this.#collections.get(collectionOf(path))!.locked);
      if (locked.length > 0) {
        throw new StoreLockedError(
          `${locked.map(([p]) => p).join(", ")} locked in the secret store: ` +
            `the store must be unlocked first`,
        );
      }
      return new Map(items.map(([path, item]) => [path, copySecret(item.secret)]));
    });
  }

  /**
   * Stores an item (or, with `replace`, overwrites the first one whose attributes include all of
   * the new ones).
   *
   * @throws {NoSuchObjectError}, {@link StoreLockedError}
   */
  createItem(
    collection: string,
    item: {
      label: string;
      attributes: Record<string, string>;
      secret: SecretValue;
      replace: boolean;
    },
  ): Promise<string> {
    return this.#run(() => {
      const c = this.#writable(collection, "create an item in");
      const t = this.#now();
      if (item.replace) {
        for (const [path, old] of c.items) {
          if (!matches(old.attributes, item.attributes)) continue;
          old.label = item.label;
          old.attributes = { ...item.attributes };
          old.secret = copySecret(item.secret);
          old.modified = t;
          return path;
        }
      }
      const path = `${collection}/${c.nextId++}`;
      c.items.set(path, {
        label: item.label,
        attributes: { ...item.attributes },
        secret: copySecret(item.secret),
        created: t,
        modified: t,
      });
      c.modified = t;
      return path;
    });
  }

  /** @throws {NoSuchObjectError}, {@link StoreLockedError} */
  setSecret(item: string, secret: SecretValue): Promise<void> {
    return this.#run(() => {
      const it = this.#item(item);
      this.#writable(collectionOf(item), "set the secret of an item in");
      it.secret = copySecret(secret);
      it.modified = this.#now();
    });
  }

  /** @throws {NoSuchObjectError}, {@link StoreLockedError} */
  setProperties(
    item: string,
    props: { label?: string; attributes?: Record<string, string> },
  ): Promise<void> {
    return this.#run(() => {
      const it = this.#item(item);
      if (props.label === undefined && props.attributes === undefined) return;
      this.#writable(collectionOf(item), "change an item in");
      if (props.label !== undefined) it.label = props.label;
      if (props.attributes !== undefined) it.attributes = { ...props.attributes };
      it.modified = this.#now();
    });
  }

  /** @throws {NoSuchObjectError}, {@link StoreLockedError} */
  deleteItem(item: string): Promise<void> {
    return this.#run(() => {
      this.#item(item);
      const c = this.#writable(collectionOf(item), "delete an item in");
      c.items.delete(item);
      c.modified = this.#now();
    });
  }

  /** Runs `fn` as an async backend call: unavailable first, errors as rejections. */
  #run<T>(fn: () => T): Promise<T> {
    try {
      if (this.#unavailable) {
        throw new StoreUnavailableError(
          "the secret store is not running (memory backend set unavailable)",
        );
      }
      return Promise.resolve(fn());
    } catch (err) {
      return Promise.reject(err);
    }
  }

  #collection(path: string): MemoryCollection {
    const c = this.#collections.get(path);
    if (!c) throw new NoSuchObjectError(`no such collection in the secret store: ${path}`);
    return c;
  }

  #item(path: string): MemoryItem {
    const item = this.#collections.get(collectionOf(path))?.items.get(path);
    if (!item) throw new NoSuchObjectError(`no such item in the secret store: ${path}`);
    return item;
  }

  #writable(path: string, what: string): MemoryCollection {
    const c = this.#collection(path);
    if (c.locked) {
      throw new StoreLockedError(
        `cannot ${what} ${path}: the collection is locked; the store must be unlocked first`,
      );
    }
    return c;
  }
}

function matches(have: Record<string, string>, want: Record<string, string>): boolean {
  return Object.entries(want).every(([k, v]) => Object.hasOwn(have, k) && have[k] === v);
}

function info(path: string, item: MemoryItem): ItemInfo {
  return {
    path,
    collection: collectionOf(path),
    label: item.label,
    attributes: { ...item.attributes },
    created: item.created,
    modified: item.modified,
  };
}

function copySecret(s: SecretValue): SecretValue {
  return { value: new Uint8Array(s.value), contentType: s.contentType };
}
