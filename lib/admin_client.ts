/**
 * Typed client for the daemon's admin interface ({@link ADMIN_IFACE}) on the companion bus,
 * used by the console (TUI) and `ctl` (CLI).
 *
 * Built on dbus-next's low-level API only (`bus.call` with hand-made messages, `bus.on("message")`
 * for signals, one hand-made `AddMatch`): dbus-next proxy objects leak match rules and
 * `bus.call` has no timeout, so every call here has its own.
 *
 * Failure model:
 * - {@link AdminError}: the daemon (or the bus) answered with a D-Bus error, e.g.
 *   `NoSuchRequest`, `NotPending`, `DigestMismatch`; or sent a reply we cannot understand.
 * - {@link AdminUnreachableError}: there is nobody to talk to: cannot connect (dead socket,
 *   missing permission, not a D-Bus socket: all end in a timeout or an error), the connection was
 *   lost, a call timed out, or no daemon owns {@link ADMIN_NAME} on the bus.
 *
 * Permissions: `--allow-read=<sock> --allow-write=<sock> --allow-net=unix:<sock>
 * --allow-sys=uid` (the last for the EXTERNAL auth handshake).
 *
 * @module
 */

import dbus from "dbus-next";
import {
  ADMIN_IFACE,
  ADMIN_MEMBERS,
  ADMIN_NAME,
  ADMIN_PATH,
  type HistoryEntry,
  type RequestState,
  type RequestView,
} from "./protocol.ts";

/** Default time allowed to connect and authenticate, in milliseconds. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Default time allowed for one method call, in milliseconds. */
export const DEFAULT_CALL_TIMEOUT_MS = 10_000;

/** Error name used for replies that do not have the documented shape (client-side check). */
export const BAD_REPLY_ERROR = "org.secretsdispatcher.Client.BadReply";

/** Bus errors meaning "no daemon to talk to" rather than "the daemon said no". */
const UNREACHABLE_DBUS_ERRORS = new Set([
  "org.freedesktop.DBus.Error.ServiceUnknown",
  "org.freedesktop.DBus.Error.NameHasNoOwner",
  "org.freedesktop.DBus.Error.NoReply",
  "org.freedesktop.DBus.Error.Disconnected",
  "org.freedesktop.DBus.Error.NoServer",
  "org.freedesktop.DBus.Error.Timeout",
  "org.freedesktop.DBus.Error.TimedOut",
]);

/** The daemon (or the bus) answered a call with a D-Bus error. */
export class AdminError extends Error {
  /** D-Bus error name, e.g. `org.secretsdispatcher.Error.NotPending` (see `Errors`). */
  readonly dbusName: string;
  /** The error text as sent (raw: escape before display). */
  readonly text: string;

  /**
   * @param dbusName D-Bus error name
   * @param text error text from the reply
   */
  constructor(dbusName: string, text: string) {
    super(`${dbusName}: ${text}`);
    this.name = "AdminError";
    this.dbusName = dbusName;
    this.text = text;
  }
}

/** The daemon cannot be reached at all (no connection, connection lost, timeout, no owner). */
export class AdminUnreachableError extends Error {
  /** The bus address that was tried. */
  readonly address: string;

  /**
   * @param address bus address that was tried
   * @param message what went wrong
   * @param options `cause`, when there is one
   */
  constructor(address: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AdminUnreachableError";
    this.address = address;
  }
}

/** Options of {@link AdminClient.connect}. */
export interface ConnectOptions {
  /** Time allowed to connect and authenticate, ms (default {@link DEFAULT_CONNECT_TIMEOUT_MS}). */
  timeoutMs?: number;
  /** Default time allowed per call, ms (default {@link DEFAULT_CALL_TIMEOUT_MS}). */
  callTimeoutMs?: number;
}

/** Callback of {@link AdminClient.onChanged}: a request was created or changed state. */
export type ChangedListener = (id: string, state: RequestState) => void;

// Minimal structural types for the parts of dbus-next we use (its bundled types are loose).
type Bus = ReturnType<typeof dbus.sessionBus>;
type DbusMessage = InstanceType<typeof dbus.Message>;
interface Emitter {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  removeListener(
    event: string,
    listener: (...args: unknown[]) => void,
  ): unknown;
}
interface BusInternals {
  _connection?: { stream?: Emitter & { destroy?: () => void } } & Emitter;
  _methodReturnHandlers?: Record<number, unknown>;
}

interface Pending {
  reject: (err: Error) => void;
}

const SIGNAL = 4; // dbus.MessageType.SIGNAL
const CHANGED_MATCH = `type='signal',sender='${ADMIN_NAME}',path='${ADMIN_PATH}',` +
  `interface='${ADMIN_IFACE}',member='Changed'`;

function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

/**
 * A connection to the admin interface. Create with {@link AdminClient.connect}; every method
 * rejects with {@link AdminError} or {@link AdminUnreachableError}.
 */
export class AdminClient {
  /** The bus address this client is connected to. */
  readonly address: string;
  readonly #bus: Bus;
  readonly #callTimeoutMs: number;
  readonly #pending = new Set<Pending>();
  readonly #changedListeners = new Set<ChangedListener>();
  readonly #closeListeners = new Set<(err: AdminUnreachableError) => void>();
  #matchAdded: Promise<void> | null = null;
  #closed: AdminUnreachableError | null = null;

  private constructor(address: string, bus: Bus, callTimeoutMs: number) {
    this.address = address;
    this.#bus = bus;
    this.#callTimeoutMs = callTimeoutMs;
  }

  /**
   * Connects to the companion bus at `address` and authenticates. dbus-next itself would wait
   * forever on a dead socket or a missing permission; this gives up after `timeoutMs`.
   *
   * @param address D-Bus address, e.g. `unix:path=/run/secrets-dispatcher/alice/bus`
   * @param opts timeouts
   * @returns a connected client
   * @throws {AdminUnreachableError} when the bus cannot be reached in time (the message says
   *   why when known: missing permission, no such socket...)
   */
  static async connect(
    address: string,
    opts: ConnectOptions = {},
  ): Promise<AdminClient> {
    const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const callTimeoutMs = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    // The EXTERNAL handshake reads our uid; without the permission dbus-next's handshake throws
    // inside an event handler and the connection just hangs. Fail early and clearly instead.
    if (
      Deno.permissions.querySync({ name: "sys", kind: "uid" }).state !==
        "granted"
    ) {
      throw new AdminUnreachableError(
        address,
        `cannot connect to ${address}: missing permission --allow-sys=uid (needed for D-Bus authentication)`,
      );
    }
    let bus: Bus;
    try {
      bus = dbus.sessionBus({ busAddress: address });
    } catch (err) {
      // Bad address syntax, or a missing read/write/net permission on the socket.
      throw new AdminUnreachableError(
        address,
        `cannot connect to ${address}: ${describeError(err)}`,
        {
          cause: err,
        },
      );
    }
    const internals = bus as unknown as BusInternals;
    const stream = internals._connection?.stream;

    let timer: ReturnType<typeof setTimeout> | undefined;
    let onError: ((err: unknown) => void) | undefined;
    let onClose: (() => void) | undefined;
    let onConnect: (() => void) | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(() => {
          reject(
            new AdminUnreachableError(
              address,
              `cannot connect to ${address}: no answer within ${timeoutMs} ms ` +
                "(dead socket, not a D-Bus bus, or a missing permission)",
            ),
          );
        }, timeoutMs);
        onError = (err: unknown) => {
          reject(
            new AdminUnreachableError(
              address,
              `cannot connect to ${address}: ${describeError(err)}`,
              { cause: err },
            ),
          );
        };
        onClose = () =>
          reject(
            new AdminUnreachableError(
              address,
              `cannot connect to ${address}: connection closed`,
            ),
          );
        onConnect = () => resolve();
        bus.on("error", onError);
        bus.on("connect", onConnect);
        stream?.on("close", onClose);
      });
    } catch (err) {
      clearTimeout(timer);
      destroyBus(bus);
      // Keep swallowing late errors of the abandoned connection.
      bus.on("error", () => {});
      throw err;
    } finally {
      clearTimeout(timer);
      if (onError) bus.removeListener("error", onError);
      if (onConnect) bus.removeListener("connect", onConnect);
      if (onClose) stream?.removeListener("close", onClose);
    }
    const client = new AdminClient(address, bus, callTimeoutMs);
    client.#watch(stream);
    return client;
  }

  /** True once the connection is closed or lost; every call then rejects. */
  get closed(): boolean {
    return this.#closed !== null;
  }

  #watch(stream: Emitter | undefined): void {
    this.#bus.on(
      "error",
      (err: unknown) => this.#lost(`connection error: ${describeError(err)}`, err),
    );
    stream?.on("close", () => this.#lost("connection closed"));
    stream?.on("end", () => this.#lost("connection closed by the bus"));
    this.#bus.on("message", (msg: DbusMessage) => this.#onMessage(msg));
  }

  #lost(what: string, cause?: unknown): void {
    if (this.#closed) return;
    const err = new AdminUnreachableError(
      this.address,
      `lost the companion bus ${this.address}: ${what}`,
      { cause },
    );
    this.#closed = err;
    for (const p of [...this.#pending]) p.reject(err);
    this.#pending.clear();
    destroyBus(this.#bus);
    for (const cb of [...this.#closeListeners]) {
      try {
        cb(err);
      } catch {
        // a listener's failure must not stop the others
      }
    }
  }

  #onMessage(msg: DbusMessage): void {
    if (
      msg.type !== SIGNAL || msg.interface !== ADMIN_IFACE ||
      msg.path !== ADMIN_PATH ||
      msg.member !== "Changed" || msg.signature !== "ss"
    ) return;
    const [id, state] = msg.body as [string, string];
    for (const cb of [...this.#changedListeners]) {
      try {
        cb(id, state as RequestState);
      } catch {
        // ignore listener failures
      }
    }
  }

  /**
   * Calls `member` of the admin interface with its own timeout.
   *
   * @param member one of {@link ADMIN_MEMBERS}
   * @param body arguments matching the member's `in` signature
   * @param timeoutMs per-call timeout, ms
   * @returns the reply body
   */
  async #call(
    member: keyof typeof ADMIN_MEMBERS,
    body: unknown[],
    timeoutMs = this.#callTimeoutMs,
  ): Promise<unknown[]> {
    if (this.#closed) throw this.#closed;
    const msg = new dbus.Message({
      destination: ADMIN_NAME,
      path: ADMIN_PATH,
      interface: ADMIN_IFACE,
      member,
      signature: ADMIN_MEMBERS[member].in,
      body,
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    let pending: Pending | undefined;
    try {
      const reply = await new Promise<DbusMessage | null>((resolve, reject) => {
        pending = { reject };
        this.#pending.add(pending);
        timer = setTimeout(() => {
          // dbus-next keeps a reply handler per serial forever; drop ours so it cannot leak.
          const handlers = (this.#bus as unknown as BusInternals)._methodReturnHandlers;
          if (handlers && typeof msg.serial === "number") {
            delete handlers[msg.serial];
          }
          reject(
            new AdminUnreachableError(
              this.address,
              `${member}: the daemon did not answer within ${timeoutMs} ms`,
            ),
          );
        }, timeoutMs);
        this.#bus.call(msg).then(resolve, reject);
      });
      const expected = ADMIN_MEMBERS[member].out;
      if ((reply?.signature ?? "") !== expected) {
        throw new AdminError(
          BAD_REPLY_ERROR,
          `${member}: reply signature "${reply?.signature ?? ""}", expected "${expected}"`,
        );
      }
      return reply?.body ?? [];
    } catch (err) {
      throw this.#mapError(member, err);
    } finally {
      clearTimeout(timer);
      if (pending) this.#pending.delete(pending);
    }
  }

  #mapError(member: string, err: unknown): Error {
    if (err instanceof AdminError || err instanceof AdminUnreachableError) {
      return err;
    }
    if (err instanceof dbus.DBusError) {
      const name = (err as { type: string }).type;
      const text = (err as { text?: string }).text ?? "";
      if (UNREACHABLE_DBUS_ERRORS.has(name)) {
        return new AdminUnreachableError(
          this.address,
          `${member}: no daemon answering on ${this.address} (${name}: ${text})`,
          {
            cause: err,
          },
        );
      }
      return new AdminError(name, text);
    }
    if (this.#closed) return this.#closed;
    return new AdminUnreachableError(
      this.address,
      `${member}: ${describeError(err)}`,
      { cause: err },
    );
  }

  async #callJson(
    member: "List" | "Get" | "History",
    body: unknown[],
  ): Promise<unknown> {
    const [json] = await this.#call(member, body);
    try {
      return JSON.parse(json as string);
    } catch {
      throw new AdminError(BAD_REPLY_ERROR, `${member}: reply is not JSON`);
    }
  }

  /**
   * The pending requests, oldest first.
   *
   * @throws {AdminError} | {AdminUnreachableError}
   */
  async list(): Promise<RequestView[]> {
    const value = await this.#callJson("List", []);
    if (!Array.isArray(value)) {
      throw new AdminError(BAD_REPLY_ERROR, "List: reply is not an array");
    }
    return value.map((v) => checkRequestView(v, "List"));
  }

  /**
   * One request, pending or recently finished.
   *
   * @param idOrPrefix full id, or a unique prefix of at least 4 hex characters
   * @throws {AdminError} `NoSuchRequest`, `AmbiguousId` | {AdminUnreachableError}
   */
  async get(idOrPrefix: string): Promise<RequestView> {
    return checkRequestView(await this.#callJson("Get", [idOrPrefix]), "Get");
  }

  /**
   * Approves request `id`, which must still show `digest` (the digest of what was displayed).
   *
   * @param id full request id
   * @param digest the `digest` of the RequestView that was shown to the user
   * @throws {AdminError} `NoSuchRequest`, `DigestMismatch`, `NotPending` | {AdminUnreachableError}
   */
  async approve(id: string, digest: string): Promise<void> {
    await this.#call("Approve", [id, digest]);
  }

  /**
   * Denies request `id`.
   *
   * @param id full request id
   * @param reason short human text, recorded in the history
   * @throws {AdminError} `NoSuchRequest`, `NotPending` | {AdminUnreachableError}
   */
  async deny(id: string, reason: string): Promise<void> {
    await this.#call("Deny", [id, reason]);
  }

  /**
   * The newest history entries, newest last.
   *
   * @param limit at most this many entries; 0 means the daemon's default (100)
   * @throws {AdminError} | {AdminUnreachableError}
   */
  async history(limit = 0): Promise<HistoryEntry[]> {
    if (!Number.isSafeInteger(limit) || limit < 0 || limit > 0xffffffff) {
      throw new RangeError(`bad history limit ${limit}`);
    }
    const value = await this.#callJson("History", [limit]);
    if (!Array.isArray(value)) {
      throw new AdminError(BAD_REPLY_ERROR, "History: reply is not an array");
    }
    return value.map((v) => checkHistoryEntry(v));
  }

  /**
   * Listens to the `Changed(s id, s state)` signal. The first call adds the bus match rule (once
   * per connection). Signals only say "something changed": re-read with {@link list}.
   *
   * @param cb called with the raw id and state (escape before display)
   * @returns a function that removes the listener
   * @throws {AdminError} | {AdminUnreachableError} when the match rule cannot be added
   */
  async onChanged(cb: ChangedListener): Promise<() => void> {
    if (this.#closed) throw this.#closed;
    this.#changedListeners.add(cb);
    try {
      this.#matchAdded ??= this.#addMatch();
      await this.#matchAdded;
    } catch (err) {
      this.#matchAdded = null;
      this.#changedListeners.delete(cb);
      throw err;
    }
    return () => this.#changedListeners.delete(cb);
  }

  async #addMatch(): Promise<void> {
    const msg = new dbus.Message({
      destination: "org.freedesktop.DBus",
      path: "/org/freedesktop/DBus",
      interface: "org.freedesktop.DBus",
      member: "AddMatch",
      signature: "s",
      body: [CHANGED_MATCH],
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const pending: Pending = { reject: () => {} };
    try {
      await new Promise<unknown>((resolve, reject) => {
        pending.reject = reject;
        this.#pending.add(pending);
        timer = setTimeout(
          () =>
            reject(
              new AdminUnreachableError(
                this.address,
                "AddMatch: the bus did not answer",
              ),
            ),
          this.#callTimeoutMs,
        );
        this.#bus.call(msg).then(resolve, reject);
      });
    } catch (err) {
      throw this.#mapError("AddMatch", err);
    } finally {
      clearTimeout(timer);
      this.#pending.delete(pending);
    }
  }

  /**
   * Registers `cb` to be called once when the connection is lost (not after {@link close}).
   *
   * @returns a function that removes the listener
   */
  onClose(cb: (err: AdminUnreachableError) => void): () => void {
    this.#closeListeners.add(cb);
    return () => this.#closeListeners.delete(cb);
  }

  /** Closes the connection; pending calls reject with {@link AdminUnreachableError}. */
  close(): void {
    if (this.#closed) return;
    this.#closeListeners.clear();
    this.#lost("closed by the client");
  }
}

function destroyBus(bus: Bus): void {
  try {
    bus.disconnect();
  } catch {
    // already gone
  }
  try {
    (bus as unknown as BusInternals)._connection?.stream?.destroy?.();
  } catch {
    // already gone
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Checks the fields every consumer relies on; the rest of the shape is trusted to the daemon
 * (display code still treats every string as raw).
 */
function checkRequestView(v: unknown, member: string): RequestView {
  const bad = (what: string) => new AdminError(BAD_REPLY_ERROR, `${member}: ${what}`);
  if (!isObject(v)) throw bad("request is not an object");
  for (const k of ["id", "kind", "state", "digest"]) {
    if (typeof v[k] !== "string") {
      throw bad(`request field ${k} is not a string`);
    }
  }
  for (const k of ["createdAt", "expiresAt"]) {
    if (typeof v[k] !== "number") {
      throw bad(`request field ${k} is not a number`);
    }
  }
  if (!isObject(v.caller) || typeof v.caller.uid !== "number") {
    throw bad("request caller is malformed");
  }
  if (v.sign !== undefined && v.sign !== null) {
    if (
      !isObject(v.sign) || !isObject(v.sign.content) ||
      !isObject(v.sign.reported)
    ) {
      throw bad("request sign details are malformed");
    }
  }
  return v as unknown as RequestView;
}

function checkHistoryEntry(v: unknown): HistoryEntry {
  const bad = (what: string) => new AdminError(BAD_REPLY_ERROR, `History: ${what}`);
  if (!isObject(v)) throw bad("entry is not an object");
  for (const k of ["id", "kind", "event"]) {
    if (typeof v[k] !== "string") throw bad(`entry field ${k} is not a string`);
  }
  if (typeof v.at !== "number") throw bad("entry field at is not a number");
  return v as unknown as HistoryEntry;
}
