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

import type {
  ClientReport,
  CollectionInfo,
  ItemInfo,
  PendingSummary,
  StoreStatus,
} from "../lib/protocol.ts";
import type { CreateItemRequest, PendingRequest, SecretValue } from "../lib/dispatcher_client.ts";

export type {
  CreateItemRequest,
  PendingRequest,
  RequestCompletion,
  SecretValue,
} from "../lib/dispatcher_client.ts";

/**
 * Receives what the daemon says about pending requests and whether it can be reached (the
 * agent's notifications). Called synchronously, in order.
 */
export interface DaemonListener {
  /**
   * Everything pending now, after each (re)subscription; replaces what was known. Also called
   * with `[]` when the daemon's connection ended (its requests ended with it).
   */
  synced(pending: PendingSummary[]): void;
  /** A request started to wait for the human (`RequestPending`). */
  pending(request: PendingSummary): void;
  /** A request stopped waiting (`RequestEnded`). */
  ended(id: string, state: string): void;
  /**
   * The daemon became reachable (`up`) or not: not running, gone, or not answering within the
   * call timeout (`why` says which). Called on changes only.
   */
  reachable(up: boolean, why: string): void;
}

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
  /** Denies a pending request of the desktop user (`DenyOwn`); never approves. */
  denyOwn(id: string): Promise<void>;
  /**
   * Starts telling `listener` about pending requests and reachability (`Subscribe`, then
   * `ListPending`, again after every reconnection), until the returned function is called.
   */
  listen(listener: DaemonListener): () => void;
}
