/**
 * The daemon's face on the system bus: `org.secretsdispatcher.Dispatcher1` (request methods) and
 * the per-request objects with `org.secretsdispatcher.Request1` (`Cancel`, unicast `Completed`).
 *
 * Every call is checked against the served uid with `GetConnectionUnixUser`, whatever the bus
 * policy says. A requester that leaves the bus has its requests cancelled.
 *
 * @module
 */

import { Buffer } from "node:buffer";
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
  DISPATCHER_PATH,
  dispatcherName,
  Errors,
  REQUEST_IFACE,
  requestIdFromPath,
  requestPath,
  type SignContext,
  type VerifiedCaller,
} from "../lib/protocol.ts";
import { type Completion, RequestError, type RequestManager } from "./requests.ts";

/** What the daemon can establish about a calling process. */
export interface ProcessInfo {
  /** Real uid owning the process. */
  uid: number;
  /** Its command line as `ps` shows it (arguments joined by spaces), or null. */
  cmdline: string[] | null;
  /** Its executable, or null when it cannot be read (another uid's `/proc/<pid>/exe`). */
  exe: string | null;
}

/** Reads facts about a process; replaceable in tests. */
export interface ProcReader {
  /** Facts about `pid`, or null when the process is gone. */
  info(pid: number): Promise<ProcessInfo | null>;
}

/**
 * {@link ProcReader} through `ps` (procps, ps(1)): Deno refuses every `/proc/<pid>/…` path
 * without `--allow-all`, so the daemon asks `ps` (its only other `--allow-run`) instead.
 */
export function psProcReader(ps = "/usr/bin/ps"): ProcReader {
  return {
    async info(pid) {
      if (!Number.isSafeInteger(pid) || pid <= 0) return null;
      try {
        const out = await new Deno.Command(ps, {
          args: ["-ww", "-o", "uid=", "-o", "args=", "-p", String(pid)],
          env: { LC_ALL: "C" },
          clearEnv: true,
          stdin: "null",
          stdout: "piped",
          stderr: "null",
        }).output();
        if (!out.success) return null;
        const m = new TextDecoder().decode(out.stdout).match(/^\s*(\d+)\s+(.*)$/s);
        if (!m) return null;
        return { uid: Number(m[1]), cmdline: [m[2].replace(/\n$/, "")], exe: null };
      } catch {
        return null;
      }
    },
  };
}

/** Options of {@link DispatcherService}. */
export interface DispatcherServiceOptions {
  /** The desktop user's uid: the only uid whose calls are served. */
  clientUid: number;
  proc?: ProcReader;
  /** Logs one line (never secret values). */
  log?: (line: string) => void;
}

/** Serves the request methods on the system bus. */
export class DispatcherService {
  #bus: Bus;
  #manager: RequestManager;
  #opts: Required<DispatcherServiceOptions>;
  #watched = new Set<string>();

  /**
   * @param bus the system bus connection
   * @param manager the request manager
   * @param options served uid, /proc reader, logger
   */
  constructor(bus: Bus, manager: RequestManager, options: DispatcherServiceOptions) {
    this.#bus = bus;
    this.#manager = manager;
    this.#opts = { proc: psProcReader(), log: () => {}, ...options };
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
    this.#unwatchIfIdle(requester);
  }

  #dispatch(msg: Message): boolean {
    if (msg.type !== MessageType.METHOD_CALL) return false;
    if (msg.path === DISPATCHER_PATH) {
      if (msg.interface === DISPATCHER_IFACE && msg.member === "RequestSign") {
        this.#handle(msg, "ayss", (caller) => this.#requestSign(msg, caller));
      } else {
        this.#bus.replyError(
          msg,
          "org.freedesktop.DBus.Error.UnknownMethod",
          `no method ${msg.member}`,
        );
      }
      return true;
    }
    const id = requestIdFromPath(msg.path ?? "");
    if (id !== null || (msg.path ?? "").startsWith(DISPATCHER_PATH + "/")) {
      if (id !== null && msg.interface === REQUEST_IFACE && msg.member === "Cancel") {
        this.#handle(msg, "", () => {
          this.#manager.cancel(id, msg.sender);
          return Promise.resolve({ signature: "", body: [] });
        });
      } else {
        this.#bus.replyError(
          msg,
          "org.freedesktop.DBus.Error.UnknownMethod",
          `no method ${msg.member}`,
        );
      }
      return true;
    }
    return false;
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

  async #verify(sender: string): Promise<VerifiedCaller> {
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

  async #requestSign(
    msg: Message,
    caller: VerifiedCaller,
  ): Promise<{ signature: string; body: unknown[] }> {
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
    return { signature: "o", body: [requestPath(id)] };
  }

  /** Watches one requester's unique name so its requests end when it leaves the bus. */
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

  #unwatchIfIdle(name: string): void {
    if (!this.#watched.has(name) || this.#manager.hasOpen(name)) return;
    this.#watched.delete(name);
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
    const n = this.#manager.cancelFrom(name);
    if (n > 0) this.#opts.log(`${name} left the bus: cancelled ${n} request(s)`);
    this.#unwatchIfIdle(name);
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
