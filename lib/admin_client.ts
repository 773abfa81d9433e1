/**
 * Typed client for the daemon's admin interface ({@link ADMIN_IFACE}) on the companion bus,
 * used by the console (TUI) and `ctl` (CLI).
 *
 * Built on {@link Bus} from `lib/dbus.ts`, which owns everything about the connection:
 * connecting with a timeout (after checking the Deno permissions), per-call timeouts, forgetting
 * reply handlers on timeout, rejecting pending calls when the connection ends, match rules. This
 * module only adds the admin protocol: member signatures, reply checks and the error mapping.
 *
 * Failure model:
 * - {@link AdminError}: the daemon (or the bus) answered with a D-Bus error, e.g.
 *   `NoSuchRequest`, `NotPending`, `DigestMismatch`; or sent a reply we cannot understand
 *   ({@link BAD_REPLY_ERROR}).
 * - {@link AdminUnreachableError}: there is nobody to talk to: cannot connect (missing socket,
 *   missing permission, dead socket, not a D-Bus socket: the message says which when known), the
 *   connection was lost, a call timed out, or no daemon owns {@link ADMIN_NAME} on the bus.
 *
 * Permissions: `--allow-read=<sock> --allow-write=<sock> --allow-net=unix:<sock>
 * --allow-sys=uid` (the last for the EXTERNAL auth handshake); a missing one fails
 * {@link AdminClient.connect} at once with a message naming the flag.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  BadReplyError,
  Bus,
  CallTimeoutError,
  DBusCallError,
  errorText,
  type Message,
  MessageType,
} from "./dbus.ts";
import {
  ADMIN_IFACE,
  ADMIN_MEMBERS,
  ADMIN_NAME,
  ADMIN_PATH,
  type AdminStoreStatus,
  type DenyRuleOptions,
  type GrantOptions,
  type HistoryEntry,
  type RequestState,
  type RequestSummary,
  type RequestView,
  type RuleView,
} from "./protocol.ts";

// The defaults of ConnectOptions are the Bus's own (connect 5 s, call 10 s), re-exported here.
export { DEFAULT_CALL_TIMEOUT_MS, DEFAULT_CONNECT_TIMEOUT_MS } from "./dbus.ts";

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

const CHANGED_MATCH = `type='signal',sender='${ADMIN_NAME}',path='${ADMIN_PATH}',` +
  `interface='${ADMIN_IFACE}',member='Changed'`;

/**
 * A connection to the admin interface. Create with {@link AdminClient.connect}; every method
 * rejects with {@link AdminError} or {@link AdminUnreachableError}.
 */
export class AdminClient {
  /** The bus address this client is connected to. */
  readonly address: string;
  readonly #bus: Bus;
  readonly #changedListeners = new Set<ChangedListener>();
  readonly #closeListeners = new Set<(err: AdminUnreachableError) => void>();
  #matchAdded: Promise<void> | null = null;
  #closed: AdminUnreachableError | null = null;

  private constructor(bus: Bus) {
    this.address = bus.address;
    this.#bus = bus;
    bus.raw.on("message", (msg: Message) => this.#onMessage(msg));
    bus.onClose((reason) => this.#lost(reason));
  }

  /**
   * Connects to the companion bus at `address` and authenticates (see {@link Bus.connect}: it
   * checks the Deno permissions and the socket first, and gives up after `timeoutMs` where
   * dbus-next alone would wait forever).
   *
   * @param address D-Bus address, e.g. `unix:path=/run/secrets-dispatcher/alice/bus`
   * @param opts timeouts
   * @returns a connected client
   * @throws {AdminUnreachableError} when the bus cannot be reached in time (the message says
   *   why when known: missing permission, no such socket, bad address...)
   */
  static async connect(
    address: string,
    opts: ConnectOptions = {},
  ): Promise<AdminClient> {
    try {
      return new AdminClient(
        await Bus.connect(address, {
          timeoutMs: opts.timeoutMs,
          callTimeoutMs: opts.callTimeoutMs,
        }),
      );
    } catch (err) {
      throw new AdminUnreachableError(address, errorText(err), { cause: err });
    }
  }

  /** True once the connection is closed or lost; every call then rejects. */
  get closed(): boolean {
    return this.#closed !== null;
  }

  #lost(reason: string): void {
    if (this.#closed) return;
    const err = new AdminUnreachableError(
      this.address,
      `lost the companion bus ${this.address}: ${reason}`,
    );
    this.#closed = err;
    for (const cb of [...this.#closeListeners]) {
      try {
        cb(err);
      } catch {
        // a listener's failure must not stop the others
      }
    }
  }

  #onMessage(msg: Message): void {
    if (
      msg.type !== MessageType.SIGNAL || msg.interface !== ADMIN_IFACE ||
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
   * Calls `member` of the admin interface (with the connection's per-call timeout) and checks
   * the reply's signature.
   *
   * @param member one of {@link ADMIN_MEMBERS}
   * @param body arguments matching the member's `in` signature
   * @returns the reply body
   */
  async #call(member: keyof typeof ADMIN_MEMBERS, body: unknown[]): Promise<unknown[]> {
    if (this.#closed) throw this.#closed;
    try {
      return await this.#bus.call({
        destination: ADMIN_NAME,
        path: ADMIN_PATH,
        interface: ADMIN_IFACE,
        member,
        signature: ADMIN_MEMBERS[member].in,
        body,
      }, { replySignature: ADMIN_MEMBERS[member].out });
    } catch (err) {
      throw this.#mapError(member, err, "the daemon");
    }
  }

  /** Maps {@link Bus.call}'s errors to this module's two error classes. */
  #mapError(member: string, err: unknown, peer: string): Error {
    if (err instanceof BadReplyError) {
      return new AdminError(
        BAD_REPLY_ERROR,
        `${member}: reply signature "${err.actual}", expected "${err.expected}"`,
      );
    }
    if (err instanceof DBusCallError) {
      if (UNREACHABLE_DBUS_ERRORS.has(err.dbusName)) {
        return new AdminUnreachableError(
          this.address,
          `${member}: no daemon answering on ${this.address} (${err.message})`,
          { cause: err },
        );
      }
      return new AdminError(err.dbusName, err.text);
    }
    if (this.#closed) return this.#closed;
    if (err instanceof CallTimeoutError) {
      return new AdminUnreachableError(
        this.address,
        `${member}: ${peer} did not answer within ${err.timeoutMs} ms`,
        { cause: err },
      );
    }
    return new AdminUnreachableError(this.address, `${member}: ${errorText(err)}`, {
      cause: err,
    });
  }

  async #callJson(
    member: "List" | "Get" | "History" | "Status" | "ApproveWithGrant" | "DenyWithRule" | "Rules",
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
   * Summaries of the pending requests, oldest first; {@link get} fetches one in full.
   *
   * @throws {AdminError} | {AdminUnreachableError}
   */
  async list(): Promise<RequestSummary[]> {
    const value = await this.#callJson("List", []);
    if (!Array.isArray(value)) {
      throw new AdminError(BAD_REPLY_ERROR, "List: reply is not an array");
    }
    return value.map((v) => checkSummary(v));
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
   * Approves request `id` (as {@link approve}) and makes a grant from it.
   *
   * @param id full request id
   * @param digest the digest of what was shown
   * @param options `minutes` for a `secret.read` grant, `signatures` for a `sign.commit` rebase
   *   grant
   * @returns the grant
   * @throws {AdminError} as {@link approve}, `InvalidArgs` when no grant can be made
   */
  async approveWithGrant(id: string, digest: string, options: GrantOptions): Promise<RuleView> {
    return checkRule(
      await this.#callJson("ApproveWithGrant", [id, digest, JSON.stringify(options)]),
    );
  }

  /**
   * Denies request `id` (as {@link deny}) and makes a deny rule from it.
   *
   * @param options `minutes` the rule lasts; 0 or absent: until revoked
   * @returns the rule
   */
  async denyWithRule(id: string, reason: string, options: DenyRuleOptions): Promise<RuleView> {
    return checkRule(await this.#callJson("DenyWithRule", [id, reason, JSON.stringify(options)]));
  }

  /** The grants and deny rules in force. */
  async rules(): Promise<RuleView[]> {
    const value = await this.#callJson("Rules", []);
    if (!Array.isArray(value)) {
      throw new AdminError(BAD_REPLY_ERROR, "Rules: reply is not an array");
    }
    return value.map(checkRule);
  }

  /**
   * Ends a grant or deny rule.
   *
   * @throws {AdminError} `NoSuchRequest` when there is no such rule
   */
  async revoke(ruleId: string): Promise<void> {
    await this.#call("Revoke", [ruleId]);
  }

  /** Locks: pending requests denied, grants dropped, new requests refused until {@link unlock}. */
  async lock(): Promise<void> {
    await this.#call("Lock", []);
  }

  /** Ends the lock. */
  async unlock(): Promise<void> {
    await this.#call("Unlock", []);
  }

  /**
   * Unlocks the secret store with `password` (the bytes exactly as typed; the daemon never logs
   * them), or creates its keyring with it when it has none yet ({@link AdminStoreStatus.creates}).
   *
   * @throws {AdminError} `WrongPassword`, `NotSupported`, `StoreUnavailable`; errors as
   *   {@link list}
   */
  async unlockStore(password: Uint8Array): Promise<void> {
    const bytes = Buffer.from(password);
    try {
      await this.#call("UnlockStore", [bytes]);
    } finally {
      bytes.fill(0);
    }
  }

  /**
   * The secret store's state as the daemon sees its backend, whether the console's lock is on,
   * whether {@link unlockStore} can open it, and whether it would create it. A daemon that does
   * not send `consoleLock`, `passwordUnlock` or `creates` (an older one) is read as `false`,
   * `null` and `false`.
   *
   * @throws {AdminError} with `BAD_REPLY_ERROR` for a malformed reply; errors as {@link list}
   */
  async status(): Promise<AdminStoreStatus> {
    const value = await this.#callJson("Status", []) as Partial<AdminStoreStatus> | null;
    if (
      typeof value !== "object" || value === null ||
      !["unlocked", "locked", "unavailable"].includes(String(value.state)) ||
      typeof value.message !== "string" ||
      !(value.consoleLock === undefined || typeof value.consoleLock === "boolean") ||
      !(value.passwordUnlock === undefined || value.passwordUnlock === null ||
        typeof value.passwordUnlock === "boolean") ||
      !(value.creates === undefined || typeof value.creates === "boolean")
    ) {
      throw new AdminError(BAD_REPLY_ERROR, "Status: reply is not a store status");
    }
    return {
      state: value.state as AdminStoreStatus["state"],
      message: value.message,
      consoleLock: value.consoleLock ?? false,
      passwordUnlock: value.passwordUnlock ?? null,
      creates: value.creates ?? false,
    };
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
      this.#matchAdded ??= this.#bus.addMatch(CHANGED_MATCH).catch((err) => {
        throw this.#mapError("AddMatch", err, "the bus");
      });
      await this.#matchAdded;
    } catch (err) {
      this.#matchAdded = null;
      this.#changedListeners.delete(cb);
      throw err;
    }
    return () => this.#changedListeners.delete(cb);
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
    this.#bus.close();
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
  if (v.secret !== undefined && v.secret !== null) {
    if (
      !isObject(v.secret) || typeof v.secret.operation !== "string" ||
      !Array.isArray(v.secret.items) || !isObject(v.secret.client) ||
      !isObject(v.secret.clientCheck)
    ) {
      throw bad("request secret details are malformed");
    }
  }
  return v as unknown as RequestView;
}

function checkRule(v: unknown): RuleView {
  const bad = (what: string) => new AdminError(BAD_REPLY_ERROR, `rule: ${what}`);
  if (!isObject(v)) throw bad("not an object");
  for (const k of ["id", "type", "description", "fromRequest"]) {
    if (typeof v[k] !== "string") throw bad(`field ${k} is not a string`);
  }
  if (typeof v.createdAt !== "number" || typeof v.uses !== "number") throw bad("bad numbers");
  return v as unknown as RuleView;
}

function checkSummary(v: unknown): RequestSummary {
  const bad = (what: string) => new AdminError(BAD_REPLY_ERROR, `List: ${what}`);
  if (!isObject(v)) throw bad("summary is not an object");
  for (const k of ["id", "kind", "state", "digest", "summary"]) {
    if (typeof v[k] !== "string") throw bad(`summary field ${k} is not a string`);
  }
  for (const k of ["createdAt", "expiresAt", "callerUid"]) {
    if (typeof v[k] !== "number") throw bad(`summary field ${k} is not a number`);
  }
  if (v.callerPid !== null && typeof v.callerPid !== "number") {
    throw bad("summary field callerPid is not a number or null");
  }
  return v as unknown as RequestSummary;
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
