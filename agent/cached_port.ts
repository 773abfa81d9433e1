/**
 * A short-lived cache of the daemon's metadata answers in front of a {@link DispatcherPort}.
 *
 * Clients ask for the same metadata many times within one operation (secretstorage probes
 * `Label`, then `Locked` twice, then reads; libsecret reads every property after a search), and
 * each question would otherwise cross the system bus to the daemon and the companion bus to the
 * backend. Item metadata, collections, aliases and the store state are therefore kept for
 * `ttlMs` (default 2 s). Searches always reach the daemon (it logs them) and refresh the items
 * they return; every write request made through this port empties the cache, when it is raised
 * and again when it ends, and so does a change of the daemon's reachability (a restarted daemon
 * starts afresh). Values (secrets) are never cached here; `denyOwn` and `listen` pass through.
 *
 * @module
 */

import type { ClientReport, CollectionInfo, ItemInfo, StoreStatus } from "../lib/protocol.ts";
import type {
  CreateItemRequest,
  DaemonListener,
  DispatcherPort,
  PendingRequest,
  SecretValue,
} from "./port.ts";

/** Default lifetime of a cached answer, in milliseconds. */
export const DEFAULT_METADATA_TTL_MS = 2000;

interface Entry<T> {
  value: T;
  until: number;
}

/** {@link DispatcherPort} with cached metadata; see the module doc. */
export class CachedPort implements DispatcherPort {
  #port: DispatcherPort;
  #ttlMs: number;
  #now: () => number;
  #items = new Map<string, Entry<ItemInfo | null>>();
  #collections: Entry<CollectionInfo[]> | null = null;
  #status: Entry<StoreStatus> | null = null;
  #aliases = new Map<string, Entry<string | null>>();

  /**
   * @param port the daemon
   * @param options `ttlMs` of an answer (default {@link DEFAULT_METADATA_TTL_MS}); `now` (ms)
   *   for tests
   */
  constructor(port: DispatcherPort, options: { ttlMs?: number; now?: () => number } = {}) {
    this.#port = port;
    this.#ttlMs = options.ttlMs ?? DEFAULT_METADATA_TTL_MS;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Forgets every cached answer. */
  clear(): void {
    this.#items.clear();
    this.#aliases.clear();
    this.#collections = null;
    this.#status = null;
  }

  async storeStatus(): Promise<StoreStatus> {
    if (this.#fresh(this.#status)) return this.#status!.value;
    const value = await this.#port.storeStatus();
    this.#status = this.#entry(value);
    return value;
  }

  async collections(client: ClientReport): Promise<CollectionInfo[]> {
    if (this.#fresh(this.#collections)) return this.#collections!.value;
    const value = await this.#port.collections(client);
    this.#collections = this.#entry(value);
    return value;
  }

  async readAlias(name: string, client: ClientReport): Promise<string | null> {
    const hit = this.#aliases.get(name);
    if (this.#fresh(hit)) return hit!.value;
    const value = await this.#port.readAlias(name, client);
    this.#aliases.set(name, this.#entry(value));
    return value;
  }

  async searchItems(
    attributes: Record<string, string>,
    options: { collection?: string | null; client: ClientReport },
  ): Promise<ItemInfo[]> {
    const found = await this.#port.searchItems(attributes, options);
    this.#prune();
    for (const item of found) this.#items.set(item.path, this.#entry(item));
    return found;
  }

  async getItems(paths: string[], client: ClientReport): Promise<ItemInfo[]> {
    const missing = paths.filter((p) => !this.#fresh(this.#items.get(p)));
    if (missing.length > 0) {
      const got = await this.#port.getItems(missing, client);
      this.#prune();
      for (const p of missing) {
        this.#items.set(p, this.#entry(got.find((i) => i.path === p) ?? null));
      }
    }
    const out: ItemInfo[] = [];
    for (const p of paths) {
      const info = this.#items.get(p)?.value;
      if (info) out.push(info);
    }
    return out;
  }

  requestRead(items: string[], client: ClientReport): Promise<PendingRequest> {
    return this.#port.requestRead(items, client);
  }

  requestCreateItem(collection: string, request: CreateItemRequest): Promise<PendingRequest> {
    return this.#write(() => this.#port.requestCreateItem(collection, request));
  }

  requestSetSecret(
    item: string,
    request: { secret: SecretValue; client: ClientReport },
  ): Promise<PendingRequest> {
    return this.#write(() => this.#port.requestSetSecret(item, request));
  }

  requestSetProperties(
    item: string,
    request: { label?: string; attributes?: Record<string, string>; client: ClientReport },
  ): Promise<PendingRequest> {
    return this.#write(() => this.#port.requestSetProperties(item, request));
  }

  requestDelete(item: string, client: ClientReport): Promise<PendingRequest> {
    return this.#write(() => this.#port.requestDelete(item, client));
  }

  denyOwn(id: string): Promise<void> {
    return this.#port.denyOwn(id);
  }

  listen(listener: DaemonListener): () => void {
    return this.#port.listen({
      synced: (pending) => listener.synced(pending),
      pending: (request) => listener.pending(request),
      ended: (id, state) => listener.ended(id, state),
      reachable: (up, why) => {
        this.clear();
        listener.reachable(up, why);
      },
    });
  }

  async #write(raise: () => Promise<PendingRequest>): Promise<PendingRequest> {
    this.clear();
    const req = await raise();
    req.completed.finally(() => this.clear()).catch(() => {});
    return req;
  }

  /** Drops expired item answers once there are many (the cache stays small). */
  #prune(): void {
    if (this.#items.size < 1000) return;
    for (const [path, e] of this.#items) if (!this.#fresh(e)) this.#items.delete(path);
  }

  #entry<T>(value: T): Entry<T> {
    return { value, until: this.#now() + this.#ttlMs };
  }

  #fresh(e: Entry<unknown> | null | undefined): boolean {
    return e !== null && e !== undefined && this.#now() < e.until;
  }
}
