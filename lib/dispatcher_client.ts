/**
 * Typed client of the dispatcher on the system bus (the desktop user's side): make a request,
 * wait for its unicast `Completed` signal, cancel it, fetch the values of an approved read; and
 * the Secret Service metadata calls that need no approval. Used by the signer, by the desktop
 * agent and by other Deno programs through `mod.ts`. Protocol: `DISPATCHER_MEMBERS` and
 * `REQUEST_MEMBERS` in `lib/protocol.ts`.
 *
 * Every call has its own timeout ({@link CALL_TIMEOUT_MS}); nothing here waits longer except
 * {@link PendingRequest.completed}, which waits for the human.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  Bus,
  BusUnavailableError,
  DBusCallError,
  type Message,
  MessageType,
  nameOwnerChangedRule,
  Variant,
} from "./dbus.ts";
import {
  type ClientReport,
  type CollectionInfo,
  DISPATCHER_IFACE,
  DISPATCHER_MEMBERS,
  DISPATCHER_PATH,
  DISPATCHER_SIGNALS,
  dispatcherName,
  type ItemInfo,
  type Outcome,
  type PendingSummary,
  REQUEST_IFACE,
  REQUEST_MEMBERS,
  requestIdFromPath,
  type RequestKind,
  requestPath,
  type SignContext,
  type StoreStatus,
} from "./protocol.ts";

/** Timeout of each call to the daemon, in milliseconds. */
export const CALL_TIMEOUT_MS = 4000;

/**
 * Timeout of the calls that create a request, in milliseconds: longer than {@link
 * CALL_TIMEOUT_MS}, because a request the daemon creates after its caller stopped waiting would
 * sit on the console with nobody to answer (a daemon busy with a flood is slow, not gone).
 */
export const REQUEST_CALL_TIMEOUT_MS = 10_000;

/** Timeout of `Request1.Cancel`, in milliseconds. */
const CANCEL_TIMEOUT_MS = 2000;

/** How a request ended, as the `Completed` signal said. */
export interface RequestCompletion {
  outcome: Outcome;
  /** Armored detached signature (`done` signing requests). */
  signature?: Uint8Array;
  /** gpg's status lines, when gpg ran. */
  status: string;
  /** Human text for anything but `done`. */
  message: string;
  /** The item written (`done` create requests): a backend object path. */
  item?: string;
  /** The items approved (`done` read requests): backend object paths. */
  items?: string[];
}

/** A secret value and its content type (e.g. `text/plain`). */
export interface SecretValue {
  value: Uint8Array;
  contentType: string;
}

/** A request the daemon accepted and has not finished yet. */
export interface PendingRequest {
  /** Request id (32 hex). */
  id: string;
  /** Request object path. */
  path: string;
  /**
   * Resolves when the request ends. Rejects with {@link BusUnavailableError} when the daemon
   * leaves the bus or the connection ends first.
   */
  completed: Promise<RequestCompletion>;
  /** Withdraws the request (bounded by a 2 s timeout; errors are ignored). */
  cancel(): Promise<void>;
  /**
   * Fetches item values through `Request1.GetSecrets` on this request: the items of a `done`
   * read request, or the written item of a `done` create/set-secret request, within
   * `READ_WINDOW_MS` of the approval. Items the daemon leaves out are missing from the map.
   *
   * @param items backend item paths
   * @returns item path → value and content type
   * @throws {RequestRefusedError} `NotApproved` (not approved, or the window closed),
   *   `NoSuchRequest`, `StoreLocked`, `StoreUnavailable`
   * @throws {BusUnavailableError} when the daemon does not answer within {@link CALL_TIMEOUT_MS}
   */
  getSecrets(items: string[]): Promise<Map<string, SecretValue>>;
}

/**
 * The daemon answered with an `org.secretsdispatcher.Error.*` (`Errors` in `lib/protocol.ts`):
 * it refused the call. `dbusName` tells which refusal (e.g. `...Error.StoreLocked`).
 */
export class RequestRefusedError extends Error {
  /** The D-Bus error name. */
  readonly dbusName: string;
  /**
   * @param dbusName the error name
   * @param message its text
   */
  constructor(dbusName: string, message: string) {
    super(message);
    this.name = "RequestRefusedError";
    this.dbusName = dbusName;
  }
}

/** What `CreateItem` stores, for {@link DispatcherClient.requestCreateItem}. */
export interface CreateItemRequest {
  label: string;
  attributes: Record<string, string>;
  secret: SecretValue;
  /** Replace an item with the same attributes instead of adding one. */
  replace: boolean;
  /** The desktop program asking. */
  client: ClientReport;
}

/**
 * Receives the daemon's request events after {@link DispatcherClient.subscribe}. Called
 * synchronously, in the order the daemon sent them.
 */
export interface RequestEventListener {
  /** A request now waits for the human (`RequestPending`). */
  pending(request: PendingSummary): void;
  /** A request stopped waiting (`RequestEnded`): `state` is where it went. */
  ended(id: string, state: string): void;
}

type DispatcherMember = keyof typeof DISPATCHER_MEMBERS;
type ItemTuple = [string, string, string, Record<string, string>, bigint, bigint];
type CollectionTuple = [string, string, boolean, bigint, bigint];

/** A connection to one user's dispatcher. */
export class DispatcherClient {
  #bus: Bus;
  #name: string;
  #owner: string;
  #early = new Map<string, RequestCompletion>();
  #waiters = new Map<string, (c: RequestCompletion) => void>();
  #gone: Promise<never>;
  #ended: Promise<string>;
  #closed = false;
  #listener: RequestEventListener | null = null;

  private constructor(bus: Bus, name: string, owner: string, gone: Promise<never>) {
    this.#bus = bus;
    this.#name = name;
    this.#owner = owner;
    this.#gone = gone;
    this.#ended = gone.catch((err: unknown) => {
      this.#closed = true;
      return err instanceof Error ? err.message : String(err);
    });
  }

  /**
   * Connects to the system bus and finds the dispatcher serving `uid`.
   *
   * @param options `address` of the system bus, `uid` served (default: own uid), `timeoutMs`
   * @throws {BusUnavailableError} when the bus cannot be reached or no daemon owns the name
   */
  static async connect(
    options: { address: string; uid: number; timeoutMs?: number },
  ): Promise<DispatcherClient> {
    const name = dispatcherName(options.uid);
    const bus = await Bus.connect(options.address, {
      timeoutMs: options.timeoutMs,
      callTimeoutMs: CALL_TIMEOUT_MS,
    });
    const { promise: gone, reject } = Promise.withResolvers<never>();
    // Observed here too: a failed connect closes the bus, which rejects `gone` with no client.
    gone.catch(() => {});
    let client: DispatcherClient | undefined;
    bus.raw.on("message", (msg: Message) => {
      if (client) client.#onMessage(msg, reject);
    });
    bus.onClose((why) =>
      reject(new BusUnavailableError(`the system bus connection ended (${why})`))
    );
    try {
      await bus.addMatch(nameOwnerChangedRule(name));
      const [owner] = await bus.callBus("GetNameOwner", "s", [name]);
      client = new DispatcherClient(bus, name, String(owner), gone);
      return client;
    } catch (err) {
      bus.close();
      if (err instanceof DBusCallError && err.dbusName.endsWith("NameHasNoOwner")) {
        throw new BusUnavailableError(`the daemon is not running (nobody owns ${name})`);
      }
      throw err;
    }
  }

  /**
   * True once this client is of no more use: the daemon left the bus (a restarted daemon has
   * another connection; connect again) or the connection ended.
   */
  get closed(): boolean {
    return this.#closed;
  }

  /** Resolves with the reason once {@link closed} is true (the daemon left, or the bus ended). */
  get ended(): Promise<string> {
    return this.#ended;
  }

  /**
   * Subscribes this connection to the daemon's request events (`Subscribe() → ()`): from the
   * reply on, `listener` gets `RequestPending` and `RequestEnded`, sent by the daemon to this
   * connection only. Call {@link listPending} after it to learn what already waits. Calling it
   * again replaces the listener.
   *
   * @throws {RequestRefusedError} `LimitExceeded` when too many connections subscribed
   * @throws {BusUnavailableError} when the daemon does not answer within 4 s
   */
  async subscribe(listener: RequestEventListener): Promise<void> {
    this.#listener = listener;
    await this.#call("Subscribe", []);
  }

  /**
   * Every pending request of this dispatcher, oldest first (`ListPending() → a(ssss)`).
   *
   * @throws {RequestRefusedError}, {@link BusUnavailableError} as every call here
   */
  async listPending(): Promise<PendingSummary[]> {
    const [list] = await this.#call("ListPending", []);
    return (list as [string, string, string, string][]).map(([id, kind, summary, program]) => ({
      id,
      kind: kind as RequestKind,
      summary,
      program,
    }));
  }

  /**
   * Denies a pending request (`DenyOwn(o request)`); it never approves anything.
   *
   * @param id the request id (32 hex)
   * @throws {RequestRefusedError} `NoSuchRequest`, `NotPending`, `InvalidArgs`
   * @throws {BusUnavailableError} when the daemon does not answer within 4 s
   */
  async denyOwn(id: string): Promise<void> {
    await this.#call("DenyOwn", [requestPath(id)]);
  }

  /**
   * Asks for a detached signature over `payload` (the exact bytes to sign).
   *
   * @param payload commit, tag or push-certificate bytes
   * @param request `keySpec` as given to gpg's `-u`, and the reported `context`
   * @throws {RequestRefusedError} when the daemon refuses it (bad payload, unknown key, flood)
   * @throws {BusUnavailableError} when the daemon does not answer within 4 s
   */
  requestSign(
    payload: Uint8Array,
    request: { keySpec: string; context: SignContext },
  ): Promise<PendingRequest> {
    return this.#request("RequestSign", [
      Buffer.from(payload),
      request.keySpec,
      JSON.stringify(request.context),
    ]);
  }

  /**
   * The state of the secret store (`StoreStatus() → (ss)`).
   *
   * @throws {RequestRefusedError}, {@link BusUnavailableError} as every call here
   */
  async storeStatus(): Promise<StoreStatus> {
    const [state, message] = await this.#call("StoreStatus", []);
    if (state !== "unlocked" && state !== "locked" && state !== "unavailable") {
      throw new BusUnavailableError(`the daemon reported an unknown store state ${state}`);
    }
    return { state, message: String(message) };
  }

  /**
   * Every collection of the store (`Collections(s client) → a(osbtt)`).
   *
   * @param client the desktop program asking (logged by the daemon)
   */
  async collections(client: ClientReport): Promise<CollectionInfo[]> {
    const [list] = await this.#call("Collections", [JSON.stringify(client)]);
    return (list as CollectionTuple[]).map(([path, label, locked, created, modified]) => ({
      path,
      label,
      locked,
      created: Number(created),
      modified: Number(modified),
    }));
  }

  /**
   * The collection an alias names (`ReadAlias(s name, s client) → o`).
   *
   * @param name alias such as `default`
   * @param client the desktop program asking
   * @returns the collection path, or null when the alias is not set
   */
  async readAlias(name: string, client: ClientReport): Promise<string | null> {
    const [path] = await this.#call("ReadAlias", [name, JSON.stringify(client)]);
    return path === "/" ? null : String(path);
  }

  /**
   * Items whose attributes include all of `attributes`, exact strings
   * (`SearchItems(a{ss}, o collection, s client) → a(oosa{ss}tt)`).
   *
   * @param attributes the attributes to match (`{}` matches every item)
   * @param options `collection` to search in (default: every collection), `client` asking
   * @throws {RequestRefusedError} `NoSuchObject` for an unknown collection
   */
  async searchItems(
    attributes: Record<string, string>,
    options: { collection?: string | null; client: ClientReport },
  ): Promise<ItemInfo[]> {
    const [list] = await this.#call("SearchItems", [
      attributes,
      options.collection ?? "/",
      JSON.stringify(options.client),
    ]);
    return (list as ItemTuple[]).map(itemInfo);
  }

  /**
   * Metadata of the given items (`GetItems(ao, s client) → a(oosa{ss}tt)`); unknown paths are
   * left out.
   *
   * @param paths backend item paths
   * @param client the desktop program asking
   */
  async getItems(paths: string[], client: ClientReport): Promise<ItemInfo[]> {
    const [list] = await this.#call("GetItems", [paths, JSON.stringify(client)]);
    return (list as ItemTuple[]).map(itemInfo);
  }

  /**
   * Asks to read item values (`RequestRead(ao, s client) → o`). On `done` the completion's
   * `items` lists the approved items; fetch them with {@link PendingRequest.getSecrets}.
   *
   * @param items backend item paths
   * @param client the desktop program asking
   * @throws {RequestRefusedError} `NoSuchObject`, `StoreLocked`, `StoreUnavailable`,
   *   `LimitExceeded`, `InvalidArgs`, `AccessDenied`
   */
  requestRead(items: string[], client: ClientReport): Promise<PendingRequest> {
    return this.#request("RequestRead", [items, JSON.stringify(client)]);
  }

  /**
   * Asks to store a new item (`RequestCreateItem(o, s, a{ss}, ay, s, b, s) → o`). On `done`
   * the completion's `item` is the written item's path.
   *
   * @param collection backend collection path
   * @param request label, attributes, the value, `replace` and the `client` asking
   * @throws {RequestRefusedError} as {@link requestRead}
   */
  requestCreateItem(collection: string, request: CreateItemRequest): Promise<PendingRequest> {
    return this.#request("RequestCreateItem", [
      collection,
      request.label,
      request.attributes,
      Buffer.from(request.secret.value),
      request.secret.contentType,
      request.replace,
      JSON.stringify(request.client),
    ]);
  }

  /**
   * Asks to replace an item's value (`RequestSetSecret(o, ay, s, s) → o`).
   *
   * @param item backend item path
   * @param request the new `secret` and the `client` asking
   * @throws {RequestRefusedError} as {@link requestRead}
   */
  requestSetSecret(
    item: string,
    request: { secret: SecretValue; client: ClientReport },
  ): Promise<PendingRequest> {
    return this.#request("RequestSetSecret", [
      item,
      Buffer.from(request.secret.value),
      request.secret.contentType,
      JSON.stringify(request.client),
    ]);
  }

  /**
   * Asks to change an item's label and/or attributes (`RequestSetProperties(o, a{sv}, s) → o`).
   *
   * @param item backend item path
   * @param request the new `label` and/or `attributes`, and the `client` asking
   * @throws {RequestRefusedError} as {@link requestRead}
   */
  requestSetProperties(
    item: string,
    request: { label?: string; attributes?: Record<string, string>; client: ClientReport },
  ): Promise<PendingRequest> {
    const props: Record<string, InstanceType<typeof Variant>> = {};
    if (request.label !== undefined) props.Label = new Variant("s", request.label);
    if (request.attributes !== undefined) {
      props.Attributes = new Variant("a{ss}", request.attributes);
    }
    return this.#request("RequestSetProperties", [item, props, JSON.stringify(request.client)]);
  }

  /**
   * Asks to delete an item (`RequestDelete(o, s) → o`).
   *
   * @param item backend item path
   * @param client the desktop program asking
   * @throws {RequestRefusedError} as {@link requestRead}
   */
  requestDelete(item: string, client: ClientReport): Promise<PendingRequest> {
    return this.#request("RequestDelete", [item, JSON.stringify(client)]);
  }

  /** Closes the connection. */
  close(): void {
    this.#bus.close();
  }

  /** Calls a dispatcher member with its protocol signatures; maps errors (see {@link #mapped}). */
  #call(
    member: DispatcherMember,
    body: unknown[],
    timeoutMs = CALL_TIMEOUT_MS,
  ): Promise<unknown[]> {
    const { in: signature, out } = DISPATCHER_MEMBERS[member];
    return this.#mapped(() =>
      this.#bus.call({
        destination: this.#owner,
        path: DISPATCHER_PATH,
        interface: DISPATCHER_IFACE,
        member,
        signature,
        body,
      }, { timeoutMs, replySignature: out })
    );
  }

  /**
   * Runs a call: daemon refusals become {@link RequestRefusedError}, other error replies (the
   * bus's own, such as `ServiceUnknown`) {@link BusUnavailableError}.
   */
  async #mapped<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof DBusCallError && err.dbusName.startsWith("org.secretsdispatcher.Error.")) {
        throw new RequestRefusedError(err.dbusName, err.text || err.message);
      }
      if (err instanceof DBusCallError) throw new BusUnavailableError(err.message);
      if (err instanceof Error && !(err instanceof BusUnavailableError)) {
        throw new BusUnavailableError(err.message, { cause: err });
      }
      throw err;
    }
  }

  /** Makes a request whose method returns the request object path. */
  async #request(member: DispatcherMember, body: unknown[]): Promise<PendingRequest> {
    const [p] = await this.#call(member, body, REQUEST_CALL_TIMEOUT_MS);
    const path = String(p);
    const id = requestIdFromPath(path);
    if (id === null) {
      throw new BusUnavailableError(`the daemon returned a bad request path ${path}`);
    }
    const early = this.#early.get(path);
    this.#early.delete(path);
    const completed = early ? Promise.resolve(early) : Promise.race([
      new Promise<RequestCompletion>((resolve) => this.#waiters.set(path, resolve)),
      this.#gone,
    ]);
    const onRequest = (member: keyof typeof REQUEST_MEMBERS, body: unknown[], timeoutMs: number) =>
      this.#bus.call({
        destination: this.#owner,
        path,
        interface: REQUEST_IFACE,
        member,
        signature: REQUEST_MEMBERS[member].in,
        body,
      }, { timeoutMs, replySignature: REQUEST_MEMBERS[member].out });
    return {
      id,
      path,
      completed,
      cancel: async () => {
        await onRequest("Cancel", [], CANCEL_TIMEOUT_MS).catch(() => {});
      },
      getSecrets: async (items) => {
        const [values] = await this.#mapped(() =>
          onRequest("GetSecrets", [items], CALL_TIMEOUT_MS)
        );
        const map = new Map<string, SecretValue>();
        for (
          const [item, [value, contentType]] of Object.entries(
            values as Record<string, [Uint8Array, string]>,
          )
        ) {
          map.set(item, { value: new Uint8Array(value), contentType });
        }
        return map;
      },
    };
  }

  #onMessage(msg: Message, daemonGone: (err: Error) => void): void {
    if (msg.type !== MessageType.SIGNAL) return;
    if (
      msg.interface === DISPATCHER_IFACE && msg.path === DISPATCHER_PATH &&
      msg.sender === this.#owner && this.#listener !== null
    ) {
      const b = (msg.body ?? []).map(String);
      try {
        if (
          msg.member === "RequestPending" && msg.signature === DISPATCHER_SIGNALS.RequestPending
        ) {
          this.#listener.pending({
            id: b[0],
            kind: b[1] as RequestKind,
            summary: b[2],
            program: b[3],
          });
        } else if (
          msg.member === "RequestEnded" && msg.signature === DISPATCHER_SIGNALS.RequestEnded
        ) {
          this.#listener.ended(b[0], b[1]);
        }
      } catch { /* a listener's bug must not break the connection */ }
      return;
    }
    if (
      msg.interface === REQUEST_IFACE && msg.member === "Completed" && msg.sender === this.#owner &&
      msg.signature === "sa{sv}" && requestIdFromPath(msg.path) !== null
    ) {
      const [outcome, result] = msg.body as [Outcome, Record<string, { value: unknown }>];
      const bytes = (v: unknown) => new Uint8Array(v as Uint8Array);
      const c: RequestCompletion = {
        outcome,
        signature: result.signature ? bytes(result.signature.value) : undefined,
        status: result.status ? new TextDecoder().decode(bytes(result.status.value)) : "",
        message: result.message ? String(result.message.value) : "",
        item: result.item ? String(result.item.value) : undefined,
        items: Array.isArray(result.items?.value) ? result.items.value.map(String) : undefined,
      };
      const waiter = this.#waiters.get(msg.path);
      this.#waiters.delete(msg.path);
      if (waiter) waiter(c);
      else this.#early.set(msg.path, c);
    } else if (
      msg.sender === "org.freedesktop.DBus" && msg.member === "NameOwnerChanged" &&
      (msg.body as string[])[0] === this.#name && (msg.body as string[])[1] === this.#owner
    ) {
      daemonGone(new BusUnavailableError("the daemon left the bus"));
    }
  }
}

/** An item tuple `(oosa{ss}tt)` as {@link ItemInfo}. */
function itemInfo([path, collection, label, attributes, created, modified]: ItemTuple): ItemInfo {
  return {
    path,
    collection,
    label,
    attributes,
    created: Number(created),
    modified: Number(modified),
  };
}
