/**
 * Thin, careful helpers over `npm:dbus-next` shared by every component: connecting with a
 * timeout, calls with a timeout, unicast signals, match rules and caller credentials.
 *
 * Why these exist (see shared/reference/secret-service.md §5.2): dbus-next has no call timeout,
 * hangs silently when a Deno permission is missing during the handshake, never settles pending
 * calls when the connection dies, and leaks match rules through its proxy objects. Everything
 * here uses the low-level message API instead.
 *
 * Permissions: `--allow-sys=uid` (the EXTERNAL authentication sends our uid) and, for a
 * `unix:path=<sock>` bus, `--allow-read=<sock> --allow-write=<sock> --allow-net=unix:<sock>`.
 * {@link Bus.connect} checks them up front and names the missing flags.
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

/** A call got no reply within its timeout (the connection itself may still be fine). */
export class CallTimeoutError extends BusUnavailableError {
  /** The timeout that passed, in milliseconds. */
  readonly timeoutMs: number;
  /**
   * @param message what timed out, naming the call
   * @param timeoutMs the timeout that passed
   */
  constructor(message: string, timeoutMs: number) {
    super(message);
    this.name = "CallTimeoutError";
    this.timeoutMs = timeoutMs;
  }
}

/** A D-Bus error reply: `dbusName` is the error name (e.g. `org.freedesktop.DBus.Error.AccessDenied`). */
export class DBusCallError extends Error {
  /** The D-Bus error name. */
  readonly dbusName: string;
  /** The error text from the reply (raw: escape before display); may be empty. */
  readonly text: string;
  /**
   * @param dbusName the error name from the reply
   * @param text the error message from the reply
   */
  constructor(dbusName: string, text: string) {
    super(text ? `${dbusName}: ${text}` : dbusName);
    this.name = "DBusCallError";
    this.dbusName = dbusName;
    this.text = text;
  }
}

/** A method return whose signature is not the one the caller expected (see `replySignature`). */
export class BadReplyError extends Error {
  /** The signature the caller expected. */
  readonly expected: string;
  /** The signature the reply had (empty for no out-arguments). */
  readonly actual: string;
  /**
   * @param what the call, for the message
   * @param expected the expected reply signature
   * @param actual the reply's signature
   */
  constructor(what: string, expected: string, actual: string) {
    super(`${what}: reply signature "${actual}", expected "${expected}"`);
    this.name = "BadReplyError";
    this.expected = expected;
    this.actual = actual;
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

/** Options of {@link Bus.connect}. */
export interface ConnectOptions {
  /** Time allowed to connect and authenticate, ms (default {@link DEFAULT_CONNECT_TIMEOUT_MS}). */
  timeoutMs?: number;
  /** Default timeout of each call, ms (default {@link DEFAULT_CALL_TIMEOUT_MS}). */
  callTimeoutMs?: number;
}

/** Options of one call ({@link Bus.call}, {@link Bus.callBus}, {@link Bus.addMatch}). */
export interface CallOptions {
  /** Time allowed for the reply, ms (default: the connection's `callTimeoutMs`). */
  timeoutMs?: number;
  /**
   * The reply's expected D-Bus signature (`""` for no out-arguments). When given, a reply with
   * another signature is rejected with {@link BadReplyError}; when left out, any reply is returned.
   */
  replySignature?: string;
}

// The parts of dbus-next's internals this module relies on (not in its type declarations).
interface Emitter {
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  removeListener(event: string, listener: (...args: unknown[]) => void): unknown;
}
interface RawInternals {
  _connection: Emitter & {
    stream?: Emitter & { destroySoon?: () => void; destroy?: () => void };
  };
  _methodReturnHandlers: Record<number, unknown>;
}

/** A signal to send: header fields and body. */
export interface SignalSpec {
  path: string;
  interface: string;
  member: string;
  /** D-Bus type signature of `body`; empty for none. */
  signature?: string;
  body?: unknown[];
}

/** An open connection plus the state needed to notice its end. */
export class Bus {
  /** The underlying dbus-next bus (for `addMethodHandler`, `send`, `on("message")`). */
  readonly raw: MessageBus;
  /** The address this connection was made to. */
  readonly address: string;
  /** Default timeout of each call on this connection, in milliseconds. */
  readonly callTimeoutMs: number;
  #closed = false;
  #closeListeners: ((reason: string) => void)[] = [];
  #pending = new Set<(err: Error) => void>();

  private constructor(raw: MessageBus, address: string, callTimeoutMs: number) {
    this.raw = raw;
    this.address = address;
    this.callTimeoutMs = callTimeoutMs;
    const conn = (raw as unknown as RawInternals)._connection;
    conn.on("end", () => this.#markClosed("the bus closed the connection"));
    conn.stream?.on("close", () => this.#markClosed("connection closed"));
    // Also keeps swallowing late errors of a connection that failed its handshake.
    raw.on("error", (err: unknown) => this.#markClosed(`bus error: ${errorText(err)}`));
  }

  /**
   * Connects to a bus and completes the `Hello` handshake. First checks the Deno permissions
   * the handshake needs (see {@link missingBusPermissions}; a missing one would otherwise hang
   * the handshake or crash the process) and, for a `unix:path=` address, that the socket exists.
   *
   * @param address a D-Bus address such as `unix:path=/run/dbus/system_bus_socket`
   * @param options `timeoutMs` for the whole handshake, `callTimeoutMs` the default per call
   * @throws {BusUnavailableError} when a Deno permission is missing (the message names the flags),
   *   the address is malformed, the socket is missing, authentication fails, the connection
   *   closes, or the timeout passes; the message always starts `cannot connect to <address>: `
   */
  static async connect(address: string, options: ConnectOptions = {}): Promise<Bus> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const cannot = (why: string, cause?: unknown) =>
      new BusUnavailableError(
        `cannot connect to ${address}: ${why}`,
        cause === undefined ? undefined : { cause },
      );
    const missing = missingBusPermissions(address);
    if (missing.length > 0) {
      throw cannot(
        `missing Deno permission ${missing.join(" ")} (D-Bus authentication needs ` +
          `--allow-sys=uid; a unix socket needs read, write and net unix: access to its path)`,
      );
    }
    const path = unixSocketPath(address);
    if (path !== null) {
      try {
        const info = await Deno.stat(path);
        if (!info.isSocket) throw new Error(`${path} is not a socket`);
      } catch (err) {
        // Lead with the errno name (ENOENT, EACCES...) as Node's socket errors do.
        const code = (err as { code?: unknown }).code;
        throw cannot(typeof code === "string" ? `${code}: ${errorText(err)}` : errorText(err), err);
      }
    }
    let raw: MessageBus;
    try {
      raw = dbus.sessionBus({ busAddress: address });
    } catch (err) {
      // Malformed address or unknown transport.
      throw cannot(errorText(err), err);
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onConnect: (() => void) | undefined;
    let onError: ((err: unknown) => void) | undefined;
    const handshake = new Promise<void>((resolve, reject) => {
      timer = setTimeout(
        () =>
          reject(cannot(
            `no answer within ${timeoutMs} ms (dead socket, not a D-Bus bus, or a missing permission)`,
          )),
        timeoutMs,
      );
      onConnect = () => resolve();
      // Registered before the Bus's own listeners so the error, not the close, is reported.
      onError = (err: unknown) => reject(cannot(errorText(err), err));
      raw.on("connect", onConnect);
      raw.on("error", onError);
    });
    const bus = new Bus(raw, address, options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS);
    try {
      await Promise.race([
        handshake,
        new Promise<never>((_, reject) => bus.onClose((why) => reject(cannot(why)))),
      ]);
    } catch (err) {
      bus.close();
      throw err;
    } finally {
      clearTimeout(timer);
      if (onConnect) raw.removeListener("connect", onConnect);
      if (onError) raw.removeListener("error", onError);
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
   * Calls a method and waits for its reply. On timeout the reply handler is forgotten, so a
   * late reply is dropped; when the connection ends, the call rejects at once.
   *
   * @param spec the call
   * @param options `timeoutMs` (default {@link Bus.callTimeoutMs}), `replySignature` to check
   * @returns the reply body (empty array for no out-arguments)
   * @throws {DBusCallError} for an error reply
   * @throws {BadReplyError} when `replySignature` is given and the reply has another signature
   * @throws {CallTimeoutError} (a {@link BusUnavailableError}) when no reply comes in time
   * @throws {BusUnavailableError} when the connection is gone or ends before the reply
   */
  async call(spec: CallSpec, options: CallOptions = {}): Promise<unknown[]> {
    if (this.#closed) {
      throw new BusUnavailableError(`connection to ${this.address} is closed`);
    }
    const timeoutMs = options.timeoutMs ?? this.callTimeoutMs;
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
            () =>
              reject(new CallTimeoutError(`${what}: no reply within ${timeoutMs} ms`, timeoutMs)),
            timeoutMs,
          );
        }),
      ]);
      if (options.replySignature !== undefined) {
        const actual = reply?.signature ?? "";
        if (actual !== options.replySignature) {
          throw new BadReplyError(what, options.replySignature, actual);
        }
      }
      return reply?.body ?? [];
    } catch (err) {
      if (err instanceof DBusError) {
        throw new DBusCallError(err.type, String(err.text ?? ""));
      }
      if (err instanceof BadReplyError) throw err;
      if (err instanceof BusUnavailableError) {
        // Forget the reply handler so a late reply does not leak memory.
        const handlers = (this.raw as unknown as RawInternals)._methodReturnHandlers;
        if (msg.serial !== null) delete handlers[msg.serial];
        throw err;
      }
      throw new BusUnavailableError(`${what}: ${errorText(err)}`, { cause: err });
    } finally {
      clearTimeout(timer);
      if (abort) this.#pending.delete(abort);
    }
  }

  /**
   * Calls a method on the bus daemon itself (`org.freedesktop.DBus`); errors as {@link call}.
   *
   * @param member e.g. `GetNameOwner`
   * @param signature D-Bus type signature of `body`
   * @param body the arguments
   * @param options as for {@link call}
   */
  callBus(
    member: string,
    signature = "",
    body: unknown[] = [],
    options: CallOptions = {},
  ): Promise<unknown[]> {
    return this.call({
      destination: "org.freedesktop.DBus",
      path: "/org/freedesktop/DBus",
      interface: "org.freedesktop.DBus",
      member,
      signature,
      body,
    }, options);
  }

  /**
   * Adds a match rule once (D-Bus spec "Match Rules"); never removed for the connection's life.
   * Errors as {@link call}.
   *
   * @param rule e.g. `type='signal',sender='org.example',member='Changed'`
   * @param options `timeoutMs` as for {@link call}
   */
  async addMatch(rule: string, options: { timeoutMs?: number } = {}): Promise<void> {
    await this.callBus("AddMatch", "s", [rule], { timeoutMs: options.timeoutMs });
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
   * Sends a signal. With `destination` set the bus delivers it to that connection only, whatever
   * the match rules of others (a unicast signal); without it, to every matching connection.
   */
  sendSignal(signal: SignalSpec, options: { destination?: string } = {}): void {
    const msg = DBusMessage.newSignal(
      signal.path,
      signal.interface,
      signal.member,
      signal.signature ?? "",
      signal.body ?? [],
    );
    if (options.destination) msg.destination = options.destination;
    this.raw.send(msg);
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

  /**
   * Ends the connection (already written messages are still flushed). Pending calls fail with
   * {@link BusUnavailableError}; {@link onClose} listeners run.
   */
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
    // Release the socket: flush what is written, then destroy (a half-closed or never
    // authenticated stream would otherwise stay open).
    try {
      const stream = (this.raw as unknown as RawInternals)._connection.stream;
      if (stream?.destroySoon) stream.destroySoon();
      else stream?.destroy?.();
    } catch { /* already gone */ }
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

/**
 * The match rule for `NameOwnerChanged` of one name (D-Bus specification, "Match Rules"):
 * what a client adds to learn that a peer left the bus.
 */
export function nameOwnerChangedRule(name: string): string {
  return `type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',` +
    `member='NameOwnerChanged',arg0='${name}'`;
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
 * The Deno permission flags that connecting to `address` needs and this process lacks (empty
 * when all are granted): `--allow-sys=uid` for the EXTERNAL authentication, and for a
 * `unix:path=<sock>` address `--allow-read=<sock>`, `--allow-write=<sock>` and
 * `--allow-net=unix:<sock>`. Only a granted permission counts (no prompting).
 *
 * @param address a D-Bus server address
 */
export function missingBusPermissions(address: string): string[] {
  const needed: [Deno.PermissionDescriptor, string][] = [
    [{ name: "sys", kind: "uid" }, "--allow-sys=uid"],
  ];
  const path = unixSocketPath(address);
  if (path !== null) {
    needed.push(
      [{ name: "read", path }, `--allow-read=${path}`],
      [{ name: "write", path }, `--allow-write=${path}`],
      [{ name: "net", host: `unix:${path}` }, `--allow-net=unix:${path}`],
    );
  }
  return needed.filter(([descriptor]) => {
    try {
      return Deno.permissions.querySync(descriptor).state !== "granted";
    } catch {
      return false; // a descriptor this Deno cannot query: let the connection attempt tell
    }
  }).map(([, flag]) => flag);
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
