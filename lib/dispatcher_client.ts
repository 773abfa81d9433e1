/**
 * Typed client of the dispatcher on the system bus (the desktop user's side): make a request,
 * wait for its unicast `Completed` signal, cancel it. Used by the signer and by other Deno
 * programs through `mod.ts`. Protocol: `DISPATCHER_MEMBERS` in `lib/protocol.ts`.
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
} from "./dbus.ts";
import {
  DISPATCHER_IFACE,
  DISPATCHER_PATH,
  dispatcherName,
  type Outcome,
  REQUEST_IFACE,
  requestIdFromPath,
  type SignContext,
} from "./protocol.ts";

/** How a request ended, as the `Completed` signal said. */
export interface RequestCompletion {
  outcome: Outcome;
  /** Armored detached signature (`done` signing requests). */
  signature?: Uint8Array;
  /** gpg's status lines, when gpg ran. */
  status: string;
  /** Human text for anything but `done`. */
  message: string;
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
}

/** The daemon answered with an `org.secretsdispatcher.Error.*`: it refused the request. */
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

/** A connection to one user's dispatcher. */
export class DispatcherClient {
  #bus: Bus;
  #name: string;
  #owner: string;
  #early = new Map<string, RequestCompletion>();
  #waiters = new Map<string, (c: RequestCompletion) => void>();
  #gone: Promise<never>;

  private constructor(bus: Bus, name: string, owner: string, gone: Promise<never>) {
    this.#bus = bus;
    this.#name = name;
    this.#owner = owner;
    this.#gone = gone;
    gone.catch(() => {});
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
    const bus = await Bus.connect(options.address, { timeoutMs: options.timeoutMs });
    const { promise: gone, reject } = Promise.withResolvers<never>();
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
   * Asks for a detached signature over `payload` (the exact bytes to sign).
   *
   * @param payload commit, tag or push-certificate bytes
   * @param request `keySpec` as given to gpg's `-u`, and the reported `context`
   * @throws {RequestRefusedError} when the daemon refuses it (bad payload, unknown key, flood)
   * @throws {BusUnavailableError} when the daemon does not answer within 4 s
   */
  async requestSign(
    payload: Uint8Array,
    request: { keySpec: string; context: SignContext },
  ): Promise<PendingRequest> {
    let path: string;
    try {
      const [p] = await this.#bus.call({
        destination: this.#owner,
        path: DISPATCHER_PATH,
        interface: DISPATCHER_IFACE,
        member: "RequestSign",
        signature: "ayss",
        body: [Buffer.from(payload), request.keySpec, JSON.stringify(request.context)],
      }, { timeoutMs: 4000 });
      path = String(p);
    } catch (err) {
      if (err instanceof DBusCallError && err.dbusName.startsWith("org.secretsdispatcher.Error.")) {
        throw new RequestRefusedError(err.dbusName, err.message);
      }
      if (err instanceof DBusCallError) throw new BusUnavailableError(err.message);
      throw err;
    }
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
    return {
      id,
      path,
      completed,
      cancel: async () => {
        await this.#bus.call({
          destination: this.#owner,
          path,
          interface: REQUEST_IFACE,
          member: "Cancel",
        }, { timeoutMs: 2000 }).catch(() => {});
      },
    };
  }

  /** Closes the connection. */
  close(): void {
    this.#bus.close();
  }

  #onMessage(msg: Message, daemonGone: (err: Error) => void): void {
    if (msg.type !== MessageType.SIGNAL) return;
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
