/**
 * What the agent needs from the approval daemon: the client half of the system-bus contract
 * (`DISPATCHER_MEMBERS` and `REQUEST_MEMBERS` in `lib/protocol.ts`). `DispatcherClient` from
 * `lib/dispatcher_client.ts` satisfies it (wrapped for reconnection by `daemon_port.ts`); unit
 * tests use an in-memory fake.
 *
 * Errors: methods reject with `RequestRefusedError` (the daemon refused: `dbusName` is an
 * `org.secretsdispatcher.Error.*`) or `BusUnavailableError` (no daemon, no answer within the
 * call timeout); they never hang.
 *
 * @module
 */

import type { ClientReport, CollectionInfo, ItemInfo, StoreStatus } from "../lib/protocol.ts";
import type { CreateItemRequest, PendingRequest, SecretValue } from "../lib/dispatcher_client.ts";

export type {
  CreateItemRequest,
  PendingRequest,
  RequestCompletion,
  SecretValue,
} from "../lib/dispatcher_client.ts";

/** The daemon as the agent uses it. Paths are the backend's own object paths. */
export interface DispatcherPort {
  /** State of the secret store (`StoreStatus`). */
  storeStatus(): Promise<StoreStatus>;
  /** Every collection (`Collections`). */
  collections(client: ClientReport): Promise<CollectionInfo[]>;
  /** The collection an alias names, or null (`ReadAlias`). */
  readAlias(name: string, client: ClientReport): Promise<string | null>;
  /**
   * Items matching all of `attributes` (`SearchItems`); `collection` null or absent searches
   * every collection. Rejects with `NoSuchObject` for an unknown collection.
   */
  searchItems(
    attributes: Record<string, string>,
    options: { collection?: string | null; client: ClientReport },
  ): Promise<ItemInfo[]>;
  /** Metadata of the items that exist among `paths` (`GetItems`). */
  getItems(paths: string[], client: ClientReport): Promise<ItemInfo[]>;
  /** Raises a read request (`RequestRead`); the completion's `items` are the approved ones. */
  requestRead(items: string[], client: ClientReport): Promise<PendingRequest>;
  /** Raises a create request (`RequestCreateItem`); the completion's `item` is the new item. */
  requestCreateItem(collection: string, request: CreateItemRequest): Promise<PendingRequest>;
  /** Raises a request to replace an item's value (`RequestSetSecret`). */
  requestSetSecret(
    item: string,
    request: { secret: SecretValue; client: ClientReport },
  ): Promise<PendingRequest>;
  /** Raises a request to change an item's label and/or attributes (`RequestSetProperties`). */
  requestSetProperties(
    item: string,
    request: { label?: string; attributes?: Record<string, string>; client: ClientReport },
  ): Promise<PendingRequest>;
  /** Raises a delete request (`RequestDelete`). */
  requestDelete(item: string, client: ClientReport): Promise<PendingRequest>;
}
