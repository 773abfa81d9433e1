/**
 * The daemon's face on the system bus: `org.secretsdispatcher.Dispatcher1` (request methods) and
 * the per-request objects with `org.secretsdispatcher.Request1` (`Cancel`, unicast `Completed`).
 *
 * Every call is checked against the served uid with `GetConnectionUnixUser`, whatever the bus
 * policy says. A requester that leaves the bus has its requests cancelled.
 *
 * Subscribers (the desktop agent, through `Subscribe`) get `RequestPending`/`RequestEnded` for
 * every request, each signal sent with the subscriber as its destination (never broadcast), and
 * are dropped when they leave the bus. `DenyOwn` lets the desktop user deny (never approve).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { NULL_PATH } from "../lib/secret_service.ts";
import {
  type Bus,
  type Message,
  MessageType,
  nameOwnerChangedRule,
  peerCredentials,
  Variant,
} from "../lib/dbus.ts";
import {
  DISPATCHER_IFACE,
  DISPATCHER_MEMBERS,
  DISPATCHER_PATH,
  DISPATCHER_SIGNALS,
  dispatcherName,
  Errors,
  type ItemInfo,
  MAX_SUBSCRIBERS,
  type PendingSummary,
  REQUEST_IFACE,
  REQUEST_MEMBERS,
  requestIdFromPath,
  requestPath,
  type RequestView,
  type SignContext,
  type VerifiedCaller,
} from "../lib/protocol.ts";
import { pendingSummary } from "./announce.ts";
import { type ProcReader, psProcReader } from "./proc.ts";
import { type Completion, RequestError, type RequestManager } from "./requests.ts";
import { type Asker, parseClientReport, type SecretRequests } from "./secret_requests.ts";

/** Most callers whose verified facts are kept at once (idle ones beyond it are forgotten). */
const MAX_KNOWN_CALLERS = 256;

/** Options of {@link DispatcherService}. */
export interface DispatcherServiceOptions {
  /** The desktop user's uid: the only uid whose calls are served. */
  clientUid: number;
  proc?: ProcReader;
  /** The Secret Service side; without it the secret members answer `StoreUnavailable`. */
  secrets?: SecretRequests | null;
  /** Logs one line (never secret values). */
  log?: (line: string) => void;
}

/** Serves the request methods on the system bus. */
export class DispatcherService {
  #bus: Bus;
  #manager: RequestManager;
  #opts: Required<DispatcherServiceOptions>;
  /** Callers established so far, by unique name; each is watched until it leaves the bus. */
  #callers = new Map<string, Promise<VerifiedCaller>>();
  #watched = new Set<string>();
  /** Connections that called `Subscribe`. */
  #subscribers = new Set<string>();
  /** Requests announced as pending whose end has not been announced yet. */
  #announced = new Set<string>();

  /**
   * @param bus the system bus connection
   * @param manager the request manager
   * @param options served uid, /proc reader, logger
   */
  constructor(bus: Bus, manager: RequestManager, options: DispatcherServiceOptions) {
    this.#bus = bus;
    this.#manager = manager;
    this.#opts = { proc: psProcReader(), secrets: null, log: () => {}, ...options };
  }

  /**
   * Owns the dispatcher name and starts answering calls.
   *
   * @throws {Error} when the name is owned by someone else or the policy refuses it
   */
  async start(): Promise<void> {
    this.#bus.raw.addMethodHandler((msg: Message) => this.#dispatch(msg));
    this.#bus.raw.on("message", (msg: Message) => this.#onSignal(msg));
    await this.#bus.requestName(dispatcherName(this.#opts.clientUid));
  }

  /** Sends the `Completed` signal of a finished request to the connection that asked. */
  complete(id: string, requester: string, c: Completion): void {
    const result: Record<string, unknown> = {};
    if (c.signature) result.signature = new Variant("ay", Buffer.from(c.signature));
    if (c.status !== undefined) {
      result.status = new Variant("ay", Buffer.from(new TextEncoder().encode(c.status)));
    }
    if (c.message) result.message = new Variant("s", c.message);
    if (c.item) result.item = new Variant("o", c.item);
    if (c.items) result.items = new Variant("ao", c.items);
    try {
      this.#bus.sendSignal({
        path: requestPath(id),
        interface: REQUEST_IFACE,
        member: "Completed",
        signature: "sa{sv}",
        body: [c.outcome, result],
      }, { destination: requester });
    } catch (err) {
      this.#opts.log(`cannot send Completed for ${id.slice(0, 8)}: ${err}`);
    }
  }

  /**
   * Tells the subscribers about a request that was created or changed state (call it from the
   * manager's `onChanged`): `RequestPending` once when it starts to wait, `RequestEnded` once
   * when it stops waiting. Each signal goes to each subscriber by destination.
   */
  changed(view: RequestView): void {
    if (view.state === "pending") {
      if (this.#announced.has(view.id)) return;
      this.#announced.add(view.id);
      const s = pendingSummary(view);
      this.#announce("RequestPending", [s.id, s.kind, s.summary, s.program]);
    } else if (this.#announced.delete(view.id)) {
      this.#announce("RequestEnded", [view.id, view.state]);
    }
  }

  /** Number of subscribed connections. */
  get subscribers(): number {
    return this.#subscribers.size;
  }

  #announce(member: keyof typeof DISPATCHER_SIGNALS, body: string[]): void {
    for (const destination of this.#subscribers) {
      try {
        this.#bus.sendSignal({
          path: DISPATCHER_PATH,
          interface: DISPATCHER_IFACE,
          member,
          signature: DISPATCHER_SIGNALS[member],
          body,
        }, { destination });
      } catch (err) {
        this.#opts.log(`cannot send ${member} to ${destination}: ${err}`);
      }
    }
  }

  #dispatch(msg: Message): boolean {
    if (msg.type !== MessageType.METHOD_CALL) return false;
    const path = msg.path ?? "";
    if (path === DISPATCHER_PATH && msg.interface === DISPATCHER_IFACE) {
      const member = msg.member as keyof typeof DISPATCHER_MEMBERS;
      const spec = Object.hasOwn(DISPATCHER_MEMBERS, member) ? DISPATCHER_MEMBERS[member] : null;
      if (spec) {
        this.#handle(msg, spec.in, async (caller) => ({
          signature: spec.out,
          body: await this.#member(member, msg, caller),
        }));
        return true;
      }
    }
    const id = requestIdFromPath(path);
    if (id !== null && msg.interface === REQUEST_IFACE) {
      if (msg.member === "Cancel") {
        this.#handle(msg, REQUEST_MEMBERS.Cancel.in, () => {
          this.#manager.cancel(id, msg.sender);
          return Promise.resolve({ signature: "", body: [] });
        });
        return true;
      }
      if (msg.member === "GetSecrets") {
        this.#handle(msg, REQUEST_MEMBERS.GetSecrets.in, async () => {
          const values = await this.#secrets().getSecrets(id, {
            requester: msg.sender,
            items: (msg.body[0] as string[]).map(String),
          });
          const out: Record<string, [Buffer, string]> = {};
          for (const [item, v] of values) out[item] = [Buffer.from(v.value), v.contentType];
          return { signature: REQUEST_MEMBERS.GetSecrets.out, body: [out] };
        });
        return true;
      }
    }
    if (path === DISPATCHER_PATH || path.startsWith(DISPATCHER_PATH + "/")) {
      this.#bus.replyError(
        msg,
        "org.freedesktop.DBus.Error.UnknownMethod",
        `no method ${msg.interface}.${msg.member} at ${path}`,
      );
      return true;
    }
    return false;
  }

  /** Runs one `Dispatcher1` member; returns the reply body. */
  async #member(
    member: keyof typeof DISPATCHER_MEMBERS,
    msg: Message,
    caller: VerifiedCaller,
  ): Promise<unknown[]> {
    const a = msg.body;
    if (member === "RequestSign") return [await this.#requestSign(msg, caller)];
    if (member === "StoreStatus") {
      const st = await this.#secrets().status();
      return [st.state, st.message];
    }
    if (member === "Subscribe") {
      if (!this.#subscribers.has(msg.sender) && this.#subscribers.size >= MAX_SUBSCRIBERS) {
        throw new RequestError(
          Errors.LimitExceeded,
          `already ${MAX_SUBSCRIBERS} subscribers; one of them must leave first`,
        );
      }
      this.#subscribers.add(msg.sender);
      await this.#watch(msg.sender);
      this.#opts.log(`${msg.sender} (pid ${caller.pid ?? "?"}) subscribed to request events`);
      return [];
    }
    if (member === "ListPending") {
      return [
        this.#manager.list().map(pendingSummary).map((p: PendingSummary) => [
          p.id,
          p.kind,
          p.summary,
          p.program,
        ]),
      ];
    }
    if (member === "DenyOwn") {
      const id = requestIdFromPath(String(a[0]));
      if (id === null) throw new RequestError(Errors.InvalidArgs, `not a request path: ${a[0]}`);
      this.#manager.deny(id, "by the desktop user (from a notification)");
      this.#opts.log(`request ${id.slice(0, 8)} denied from the desktop by ${msg.sender}`);
      return [];
    }
    const secrets = this.#secrets();
    const asker = (clientJson: unknown): Asker => ({
      caller,
      requester: msg.sender,
      client: parseClientReport(String(clientJson)),
    });
    const value = (bytes: unknown, contentType: unknown) => ({
      value: new Uint8Array(bytes as Uint8Array),
      contentType: String(contentType),
    });
    const submitted = async (id: Promise<string>) => {
      const requestId = await id;
      await this.#watch(msg.sender);
      return [requestPath(requestId)];
    };
    switch (member) {
      case "Collections":
        return [(await secrets.collections(asker(a[0]))).map((c) => [
          c.path,
          c.label,
          c.locked,
          BigInt(c.created),
          BigInt(c.modified),
        ])];
      case "ReadAlias":
        return [(await secrets.readAlias(String(a[0]), asker(a[1]))) ?? NULL_PATH];
      case "SearchItems": {
        const collection = String(a[1]);
        return [itemTuples(
          await secrets.searchItems(stringMap(a[0]), {
            collection: collection === NULL_PATH ? null : collection,
            asker: asker(a[2]),
          }),
        )];
      }
      case "GetItems":
        return [itemTuples(await secrets.getItems((a[0] as string[]).map(String), asker(a[1])))];
      case "RequestRead":
        return await submitted(secrets.requestRead((a[0] as string[]).map(String), asker(a[1])));
      case "RequestCreateItem":
        return await submitted(secrets.requestCreateItem(String(a[0]), {
          label: String(a[1]),
          attributes: stringMap(a[2]),
          secret: value(a[3], a[4]),
          replace: a[5] === true,
          asker: asker(a[6]),
        }));
      case "RequestSetSecret":
        return await submitted(secrets.requestSetSecret(String(a[0]), {
          secret: value(a[1], a[2]),
          asker: asker(a[3]),
        }));
      case "RequestSetProperties": {
        const props = a[1] as Record<string, { signature: string; value: unknown }>;
        const unknown = Object.keys(props).filter((k) => k !== "Label" && k !== "Attributes");
        if (unknown.length > 0) {
          throw new RequestError(Errors.InvalidArgs, `unknown property ${unknown[0]}`);
        }
        if (props.Label && props.Label.signature !== "s") {
          throw new RequestError(Errors.InvalidArgs, "Label must be a string (s)");
        }
        if (props.Attributes && props.Attributes.signature !== "a{ss}") {
          throw new RequestError(Errors.InvalidArgs, "Attributes must be a{ss}");
        }
        return await submitted(secrets.requestSetProperties(String(a[0]), {
          label: props.Label ? String(props.Label.value) : undefined,
          attributes: props.Attributes ? stringMap(props.Attributes.value) : undefined,
          asker: asker(a[2]),
        }));
      }
      case "RequestDelete":
        return await submitted(secrets.requestDelete(String(a[0]), asker(a[1])));
    }
  }

  #secrets(): SecretRequests {
    if (!this.#opts.secrets) {
      throw new RequestError(
        Errors.StoreUnavailable,
        "this daemon has no secret store configured",
      );
    }
    return this.#opts.secrets;
  }

  /** Checks the signature and the caller, runs `fn`, replies with its result or an error. */
  #handle(
    msg: Message,
    signature: string,
    fn: (caller: VerifiedCaller) => Promise<{ signature: string; body: unknown[] }>,
  ): void {
    (async () => {
      if ((msg.signature ?? "") !== signature) {
        throw new RequestError(
          Errors.InvalidArgs,
          `expected arguments (${signature}), got (${msg.signature ?? ""})`,
        );
      }
      const caller = await this.#verify(msg.sender);
      const reply = await fn(caller);
      this.#bus.reply(msg, reply.signature, reply.body);
    })().catch((err) => {
      if (err instanceof RequestError) this.#bus.replyError(msg, err.dbusName, err.message);
      else {
        this.#opts.log(
          `internal error in ${msg.member}: ${err instanceof Error ? err.stack : err}`,
        );
        this.#bus.replyError(msg, Errors.Failed, "internal error in the daemon (see its log)");
      }
    });
  }

  /**
   * Who is calling. A connection's credentials cannot change while it exists, so they are
   * established once per connection (bus credentials, then `ps`) and kept until it leaves the
   * bus; a refusal is not kept.
   */
  async #verify(sender: string): Promise<VerifiedCaller> {
    let known = this.#callers.get(sender);
    if (!known) {
      known = this.#establish(sender);
      this.#callers.set(sender, known);
      known.catch(() => this.#callers.delete(sender));
      await known;
      await this.#watch(sender);
      this.#trim();
    }
    return await known;
  }

  async #establish(sender: string): Promise<VerifiedCaller> {
    let creds;
    try {
      creds = await peerCredentials(this.#bus, sender);
    } catch {
      throw new RequestError(Errors.AccessDenied, "cannot establish who is calling");
    }
    if (creds.uid !== this.#opts.clientUid) {
      this.#opts.log(`refused a call from uid ${creds.uid} (${sender})`);
      throw new RequestError(
        Errors.AccessDenied,
        `this dispatcher serves uid ${this.#opts.clientUid} only`,
      );
    }
    let cmdline: string[] | null = null;
    let exe: string | null = null;
    if (creds.pid !== null) {
      const info = await this.#opts.proc.info(creds.pid);
      // The pid must still belong to the caller's uid (narrows pid reuse).
      if (info && info.uid === creds.uid) ({ cmdline, exe } = info);
    }
    return { busName: sender, uid: creds.uid, pid: creds.pid, cmdline, exe };
  }

  /** Forgets the oldest idle callers (no open request, no subscription) beyond {@link MAX_KNOWN_CALLERS}. */
  #trim(): void {
    for (const name of this.#callers.keys()) {
      if (this.#callers.size <= MAX_KNOWN_CALLERS) return;
      if (!this.#manager.hasOpen(name) && !this.#subscribers.has(name)) this.#forget(name);
    }
  }

  async #requestSign(msg: Message, caller: VerifiedCaller): Promise<string> {
    const [payload, keySpec, contextJson] = msg.body as [Uint8Array, string, string];
    const context = parseContext(contextJson);
    await this.#watch(msg.sender);
    const id = await this.#manager.submitSign({
      caller,
      requester: msg.sender,
      payload: new Uint8Array(payload),
      keySpec,
      context,
    });
    this.#opts.log(`request ${id.slice(0, 8)} sign from uid ${caller.uid} pid ${caller.pid}`);
    return requestPath(id);
  }

  /** Watches a caller's unique name: its requests end and it is forgotten when it leaves. */
  async #watch(name: string): Promise<void> {
    if (this.#watched.has(name)) return;
    this.#watched.add(name);
    await this.#bus.addMatch(nameOwnerChangedRule(name));
    // It may have left before the rule was in place.
    try {
      await this.#bus.callBus("GetNameOwner", "s", [name]);
    } catch {
      this.#gone(name);
    }
  }

  #forget(name: string): void {
    this.#callers.delete(name);
    if (!this.#watched.delete(name)) return;
    this.#bus.callBus("RemoveMatch", "s", [nameOwnerChangedRule(name)]).catch(() => {});
  }

  #onSignal(msg: Message): void {
    if (
      msg.type === MessageType.SIGNAL && msg.sender === "org.freedesktop.DBus" &&
      msg.member === "NameOwnerChanged" && msg.interface === "org.freedesktop.DBus"
    ) {
      const [name, , newOwner] = msg.body as [string, string, string];
      if (newOwner === "" && this.#watched.has(name)) this.#gone(name);
    }
  }

  #gone(name: string): void {
    if (this.#subscribers.delete(name)) this.#opts.log(`subscriber ${name} left the bus`);
    const n = this.#manager.cancelFrom(name);
    if (n > 0) this.#opts.log(`${name} left the bus: cancelled ${n} request(s)`);
    this.#forget(name);
  }
}

/**
 * Validates the signer's reported context (JSON `SignContext`). Unknown fields are dropped;
 * wrong types are an error.
 *
 * @throws {RequestError} `InvalidArgs`
 */
export function parseContext(json: string): SignContext {
  let raw: unknown;
  try {
    raw = json === "" ? {} : JSON.parse(json);
  } catch {
    throw new RequestError(Errors.InvalidArgs, "context is not valid JSON");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new RequestError(Errors.InvalidArgs, "context must be a JSON object");
  }
  const r = raw as Record<string, unknown>;
  const out: SignContext = {};
  const str = (k: "repo" | "branch" | "rebase" | "filesError") => {
    if (r[k] === undefined) return;
    if (typeof r[k] !== "string" || (r[k] as string).length > 4096) {
      throw new RequestError(Errors.InvalidArgs, `context.${k} must be a string (≤ 4096)`);
    }
    out[k] = r[k] as string;
  };
  str("repo");
  str("branch");
  str("rebase");
  str("filesError");
  if (r.files !== undefined) {
    if (!Array.isArray(r.files) || r.files.length > 10_000) {
      throw new RequestError(Errors.InvalidArgs, "context.files must be an array (≤ 10000)");
    }
    out.files = r.files.map((f) => {
      if (
        typeof f !== "object" || f === null || typeof f.status !== "string" ||
        typeof f.path !== "string" || f.status.length > 4 || f.path.length > 4096
      ) {
        throw new RequestError(Errors.InvalidArgs, "context.files entries are {status, path}");
      }
      return { status: f.status, path: f.path };
    });
  }
  if (r.filesTruncated !== undefined) out.filesTruncated = r.filesTruncated === true;
  return out;
}

/** {@link ItemInfo}s as D-Bus `a(oosa{ss}tt)` tuples. */
function itemTuples(items: ItemInfo[]): unknown[] {
  return items.map((i) => [
    i.path,
    i.collection,
    i.label,
    i.attributes,
    BigInt(i.created),
    BigInt(i.modified),
  ]);
}

/** An `a{ss}` argument as a plain record (dbus-next gives an object). */
function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v as Record<string, unknown>)) out[k] = String(val);
  return out;
}
