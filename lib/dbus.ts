/**
 * Thin, careful helpers over `npm:dbus-next` shared by every component: connecting with a
 * timeout, calls with a timeout, unicast signals, match rules and caller credentials.
 *
 * Why these exist (see shared/reference/secret-service.md §5.2): dbus-next has no call timeout,
 * hangs silently when a Deno permission is missing during the handshake, never settles pending
 * calls when the connection dies, and leaks match rules through its proxy objects. Everything
 * here uses the low-level message API instead.
 *
 * @module
 */

import dbus from "dbus-next";

/** A dbus-next message bus connection. */
export type MessageBus = dbus.MessageBus;
/** A dbus-next message. */
export type Message = dbus.Message;

/** dbus-next's message and helper classes, re-exported so callers import one module. */
export const { Message: DBusMessage, Variant, DBusError } = dbus;

/** Message type numbers (D-Bus specification, "Message Format"). */
export const MessageType = {
  METHOD_CALL: 1,
  METHOD_RETURN: 2,
  ERROR: 3,
  SIGNAL: 4,
} as const;

/** Default timeout of one outgoing call, in milliseconds. */
export const DEFAULT_CALL_TIMEOUT_MS = 10_000;

/** Default timeout for connecting and authenticating, in milliseconds. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/** Raised when a bus cannot be reached, a call times out, or the connection is gone. */
export class BusUnavailableError extends Error {
  /**
   * @param message what failed, naming the address or the call
   * @param options standard `ErrorOptions` (`cause`)
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BusUnavailableError";
  }
}

/** A D-Bus error reply: `dbusName` is the error name (e.g. `org.freedesktop.DBus.Error.AccessDenied`). */
export class DBusCallError extends Error {
  /** The D-Bus error name. */
  readonly dbusName: string;
  /**
   * @param dbusName the error name from the reply
   * @param text the error message from the reply
   */
  constructor(dbusName: string, text: string) {
    super(text ? `${dbusName}: ${text}` : dbusName);
    this.name = "DBusCallError";
    this.dbusName = dbusName;
  }
}

/** A method call to make: the D-Bus message header fields and body. */
export interface CallSpec {
  destination: string;
  path: string;
  interface: string;
  member: string;
  /** D-Bus type signature of `body`, e.g. `"ays"`; empty for no arguments. */
  signature?: string;
  body?: unknown[];
}

/** An open connection plus the state needed to notice its end. */
export class Bus {
  /** The underlying dbus-next bus (for `addMethodHandler`, `send`, `on("message")`). */
  readonly raw: MessageBus;
  /** The address this connection was made to. */
  readonly address: string;
  #closed = false;
  #closeListeners: ((reason: string) => void)[] = [];
  #pending = new Set<(err: Error) => void>();

  private constructor(raw: MessageBus, address: string) {
    this.raw = raw;
    this.address = address;
    const conn = (raw as unknown as { _connection: { on(e: string, f: () => void): void } })
      ._connection;
    conn.on("end", () => this.#markClosed("the bus closed the connection"));
    raw.on("error", (err: unknown) => this.#markClosed(`bus error: ${errorText(err)}`));
  }

  /**
   * Connects to a bus and completes the `Hello` handshake.
   *
   * @param address a D-Bus address such as `unix:path=/run/dbus/system_bus_socket`
   * @param options `timeoutMs` for the whole handshake (default 5000)
   * @throws {BusUnavailableError} when the socket is missing, authentication fails, a Deno
   *   permission is missing (dbus-next would otherwise hang), or the timeout passes
   */
  static async connect(
    address: string,
    options: { timeoutMs?: number } = {},
  ): Promise<Bus> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const path = unixSocketPath(address);
    if (path !== null) {
      try {
        const info = await Deno.stat(path);
        if (!info.isSocket) throw new Error("not a socket");
      } catch (err) {
        throw new BusUnavailableError(
          `cannot reach the bus at ${address}: ${errorText(err)}`,
          { cause: err },
        );
      }
    }
    let raw: MessageBus;
    try {
      raw = dbus.sessionBus({ busAddress: address });
    } catch (err) {
      throw new BusUnavailableError(`cannot connect to ${address}: ${errorText(err)}`, {
        cause: err,
      });
    }
    const bus = new Bus(raw, address);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new BusUnavailableError(
                `no answer from the bus at ${address} within ${timeoutMs} ms ` +
                  `(a missing permission or a dead bus)`,
              ),
            ),
          timeoutMs,
        );
        raw.on("connect", () => resolve());
        raw.on("error", (err: unknown) =>
          reject(
            new BusUnavailableError(`cannot connect to ${address}: ${errorText(err)}`, {
              cause: err,
            }),
          ));
      });
    } catch (err) {
      bus.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return bus;
  }

  /** This connection's unique name, e.g. `:1.7`. */
  get uniqueName(): string {
    return (this.raw as unknown as { name: string }).name;
  }

  /** True once the connection has ended (by either side). */
  get closed(): boolean {
    return this.#closed;
  }

  /** Registers `fn` to run once when the connection ends; runs at once if it already has. */
  onClose(fn: (reason: string) => void): void {
    if (this.#closed) fn("closed");
    else this.#closeListeners.push(fn);
  }

  /**
   * Calls a method and waits for its reply.
   *
   * @returns the reply body (empty array for no out-arguments)
   * @throws {DBusCallError} for an error reply
   * @throws {BusUnavailableError} on timeout or when the connection is gone
   */
  async call(spec: CallSpec, options: { timeoutMs?: number } = {}): Promise<unknown[]> {
    if (this.#closed) {
      throw new BusUnavailableError(`connection to ${this.address} is closed`);
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const msg = new DBusMessage({
      destination: spec.destination,
      path: spec.path,
      interface: spec.interface,
      member: spec.member,
      signature: spec.signature ?? "",
      body: spec.body ?? [],
    });
    let timer: ReturnType<typeof setTimeout> | undefined;
    let abort: ((err: Error) => void) | undefined;
    const what = `${spec.interface}.${spec.member} on ${spec.destination}`;
    try {
      const reply = await Promise.race([
        this.raw.call(msg),
        new Promise<never>((_, reject) => {
          abort = reject;
          this.#pending.add(reject);
          timer = setTimeout(
            () => reject(new BusUnavailableError(`${what}: no reply within ${timeoutMs} ms`)),
            timeoutMs,
          );
        }),
      ]);
      return reply?.body ?? [];
    } catch (err) {
      if (err instanceof DBusError) {
        throw new DBusCallError(err.type, String(err.text ?? ""));
      }
      if (err instanceof BusUnavailableError) {
        // Forget the reply handler so a late reply does not leak memory.
        const handlers = (this.raw as unknown as {
          _methodReturnHandlers: Record<string, unknown>;
        })._methodReturnHandlers;
        if (msg.serial !== null) delete handlers[msg.serial];
        throw err;
      }
      throw new BusUnavailableError(`${what}: ${errorText(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
      if (abort) this.#pending.delete(abort);
    }
  }

  /** Calls a method on the bus daemon itself (`org.freedesktop.DBus`). */
  callBus(member: string, signature = "", body: unknown[] = []): Promise<unknown[]> {
    return this.call({
      destination: "org.freedesktop.DBus",
      path: "/org/freedesktop/DBus",
      interface: "org.freedesktop.DBus",
      member,
      signature,
      body,
    });
  }

  /** Adds a match rule once (D-Bus spec "Match Rules"); never removed for the connection's life. */
  async addMatch(rule: string): Promise<void> {
    await this.callBus("AddMatch", "s", [rule]);
  }

  /**
   * Requests a well-known name without queueing.
   *
   * @throws {Error} naming the current owner when the name is taken, or the policy refuses
   */
  async requestName(name: string): Promise<void> {
    const DO_NOT_QUEUE = 4;
    const [reply] = await this.callBus("RequestName", "su", [name, DO_NOT_QUEUE]);
    if (reply === 1 || reply === 4) return;
    let owner = "another connection";
    try {
      const [o] = await this.callBus("GetNameOwner", "s", [name]);
      owner = `connection ${o}`;
    } catch { /* gone meanwhile */ }
    throw new Error(`the name ${name} is already owned by ${owner}`);
  }

  /**
   * Sends a signal to one connection only (the destination header is set, so the bus delivers
   * it to that connection and nobody else, whatever their match rules).
   */
  sendUnicastSignal(
    destination: string,
    signal: {
      path: string;
      interface: string;
      member: string;
      signature?: string;
      body?: unknown[];
    },
  ): void {
    const msg = DBusMessage.newSignal(
      signal.path,
      signal.interface,
      signal.member,
      signal.signature ?? "",
      signal.body ?? [],
    );
    msg.destination = destination;
    this.raw.send(msg);
  }

  /** Broadcasts a signal to every connection with a matching rule. */
  sendSignal(
    signal: {
      path: string;
      interface: string;
      member: string;
      signature?: string;
      body?: unknown[];
    },
  ): void {
    this.raw.send(
      DBusMessage.newSignal(
        signal.path,
        signal.interface,
        signal.member,
        signal.signature ?? "",
        signal.body ?? [],
      ),
    );
  }

  /** Sends the method return for `call`. Never throws: a vanished connection is ignored. */
  reply(call: Message, signature = "", body: unknown[] = []): void {
    try {
      this.raw.send(DBusMessage.newMethodReturn(call, signature, body));
    } catch { /* the connection is gone */ }
  }

  /** Sends an error reply for `call`. Never throws: a vanished connection is ignored. */
  replyError(call: Message, name: string, text: string): void {
    try {
      // dbus-next's types say `string` but the implementation takes the call message.
      this.raw.send(DBusMessage.newError(call as unknown as string, name, text));
    } catch { /* the connection is gone */ }
  }

  /** Ends the connection. Pending calls fail with {@link BusUnavailableError}. */
  close(): void {
    if (!this.#closed) {
      try {
        this.raw.disconnect();
      } catch { /* already closed */ }
    }
    this.#markClosed("closed by this process");
  }

  #markClosed(reason: string): void {
    if (this.#closed) return;
    this.#closed = true;
    const err = new BusUnavailableError(`connection to ${this.address} ended: ${reason}`);
    for (const reject of this.#pending) reject(err);
    this.#pending.clear();
    for (const fn of this.#closeListeners.splice(0)) {
      try {
        fn(reason);
      } catch { /* listeners must not break each other */ }
    }
  }
}

/** Credentials of a peer connection as the bus daemon reports them. */
export interface PeerCredentials {
  uid: number;
  pid: number | null;
}

/**
 * Asks the bus daemon who owns a unique name (`GetConnectionUnixUser`,
 * `GetConnectionUnixProcessID`; D-Bus specification, "Message Bus Messages").
 *
 * @throws {DBusCallError} when the name has no owner any more
 */
export async function peerCredentials(bus: Bus, uniqueName: string): Promise<PeerCredentials> {
  const [uid] = await bus.callBus("GetConnectionUnixUser", "s", [uniqueName]);
  let pid: number | null = null;
  try {
    const [p] = await bus.callBus("GetConnectionUnixProcessID", "s", [uniqueName]);
    pid = Number(p);
  } catch { /* some buses cannot tell */ }
  return { uid: Number(uid), pid };
}

/**
 * The socket path of a `unix:path=...` address, or null for other address kinds.
 *
 * @param address a D-Bus server address (D-Bus specification, "Server Addresses")
 */
export function unixSocketPath(address: string): string | null {
  const first = address.split(";")[0];
  if (!first.startsWith("unix:")) return null;
  for (const kv of first.slice(5).split(",")) {
    const eq = kv.indexOf("=");
    if (eq > 0 && kv.slice(0, eq) === "path") return decodeAddressValue(kv.slice(eq + 1));
  }
  return null;
}

/** The system bus address: `$DBUS_SYSTEM_BUS_ADDRESS` or the standard socket. */
export function systemBusAddress(env: (name: string) => string | undefined): string {
  return env("DBUS_SYSTEM_BUS_ADDRESS") || "unix:path=/run/dbus/system_bus_socket";
}

function decodeAddressValue(v: string): string {
  return v.replace(/%([0-9a-fA-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}

/** A short text for any thrown value. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
