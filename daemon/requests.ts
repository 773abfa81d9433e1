/**
 * The request manager: the lifecycle of every request (DESIGN.md §5), independent of D-Bus.
 *
 * `pending → approved | denied | expired | cancelled`, then for approved `done | failed`.
 * An approval must name the request id and the digest of what was shown.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { parsePayload, PayloadError, payloadKind, summarize } from "../lib/payload.ts";
import {
  DEFAULT_REQUEST_TTL_MS,
  Errors,
  isFinal,
  MAX_PAYLOAD_BYTES,
  type Outcome,
  type RequestState,
  type RequestView,
  type SignContext,
  type VerifiedCaller,
} from "../lib/protocol.ts";
import { GpgError, type GpgRunner } from "./gpg.ts";
import type { HistorySink } from "./history.ts";

/** An error meant for the requesting client or the admin, with a D-Bus error name. */
export class RequestError extends Error {
  /** One of {@link Errors}. */
  readonly dbusName: string;
  /**
   * @param dbusName error name sent over D-Bus
   * @param message human text
   */
  constructor(dbusName: string, message: string) {
    super(message);
    this.name = "RequestError";
    this.dbusName = dbusName;
  }
}

/** Time source and timers, replaceable in tests. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): Timer;
  clearTimeout(id: Timer): void;
}

/** A timer handle of {@link Clock}. */
export type Timer = ReturnType<typeof setTimeout>;

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

/** What the requester gets when its request ends. */
export interface Completion {
  outcome: Outcome;
  /** The armored signature, for a `done` signing request. */
  signature?: Uint8Array;
  /** gpg's status lines, for signing requests that reached gpg. */
  status?: string;
  /** Human text for anything but `done`. */
  message?: string;
}

/** Options of {@link RequestManager}. */
export interface RequestManagerOptions {
  gpg: GpgRunner;
  history: HistorySink;
  clock?: Clock;
  /** Lifetime of a pending request in milliseconds (default 5 minutes). */
  ttlMs?: number;
  /** Most pending requests one caller connection may have (default 16). */
  maxPendingPerCaller?: number;
  /** Most pending requests in all (default 32). */
  maxPending?: number;
  /** Called after any request is created or changes state. */
  onChanged?: (view: RequestView) => void;
  /** Called once when a request reaches its final state, for the requester. */
  onCompleted?: (id: string, requester: string, completion: Completion) => void;
}

interface Entry {
  view: RequestView;
  /** Unique bus name of the connection that asked. */
  requester: string;
  payload: Uint8Array;
  localUser: string | null;
  timer: Timer | null;
}

/** How many finished requests stay visible to `get` (for `ctl show` after a decision). */
const RECENT_KEPT = 100;

/** Holds pending and recent requests and moves them through their states. */
export class RequestManager {
  #opts: Required<Omit<RequestManagerOptions, "onChanged" | "onCompleted">> & RequestManagerOptions;
  #entries = new Map<string, Entry>();
  #recent: string[] = [];

  /** @param options collaborators and limits */
  constructor(options: RequestManagerOptions) {
    this.#opts = {
      clock: systemClock,
      ttlMs: DEFAULT_REQUEST_TTL_MS,
      maxPendingPerCaller: 16,
      maxPending: 32,
      ...options,
    };
  }

  /**
   * Creates a signing request from the exact payload bytes.
   *
   * @returns the new request id
   * @throws {RequestError} `InvalidArgs` for a payload that is not a commit, tag or push
   *   certificate, an oversized payload or an unknown key; `LimitExceeded` on a flood
   */
  async submitSign(input: {
    caller: VerifiedCaller;
    requester: string;
    payload: Uint8Array;
    keySpec: string;
    context: SignContext;
  }): Promise<string> {
    const { payload } = input;
    if (payload.length === 0) throw new RequestError(Errors.InvalidArgs, "empty payload");
    if (payload.length > MAX_PAYLOAD_BYTES) {
      throw new RequestError(
        Errors.InvalidArgs,
        `payload of ${payload.length} bytes exceeds the limit of ${MAX_PAYLOAD_BYTES}`,
      );
    }
    this.#checkLimits(input.requester);
    let content;
    try {
      content = parsePayload(payload);
    } catch (err) {
      if (err instanceof PayloadError) {
        throw new RequestError(Errors.InvalidArgs, `refusing to sign: ${err.message}`);
      }
      throw err;
    }
    let key;
    try {
      key = await this.#opts.gpg.resolveKey(input.keySpec);
    } catch (err) {
      if (err instanceof GpgError) throw new RequestError(Errors.InvalidArgs, err.message);
      throw err;
    }
    this.#checkLimits(input.requester); // the key lookup awaited: check again
    const now = this.#opts.clock.now();
    const id = crypto.randomUUID().replaceAll("-", "");
    const kind = payloadKind(content);
    const sign = {
      keySpec: input.keySpec,
      keyFingerprint: key.fingerprint,
      keyUid: key.uid,
      keyError: null,
      payloadSize: payload.length,
      content,
      reported: input.context,
    };
    const digest = contentDigest({
      kind,
      keyFingerprint: key.fingerprint,
      localUser: key.localUser,
      payload,
      reported: input.context,
      caller: input.caller,
    });
    const view: RequestView = {
      id,
      kind,
      state: "pending",
      createdAt: now,
      expiresAt: now + this.#opts.ttlMs,
      decidedAt: null,
      digest,
      caller: input.caller,
      sign,
      message: null,
    };
    const entry: Entry = {
      view,
      requester: input.requester,
      payload,
      localUser: key.localUser,
      timer: null,
    };
    this.#entries.set(id, entry);
    entry.timer = this.#opts.clock.setTimeout(
      () => this.#finish(entry, "expired", { message: "the request expired unanswered" }),
      this.#opts.ttlMs,
    );
    await this.#record(entry, "created");
    this.#opts.onChanged?.(view);
    return id;
  }

  /** Pending requests, oldest first. */
  list(): RequestView[] {
    return [...this.#entries.values()]
      .filter((e) => e.view.state === "pending")
      .map((e) => e.view)
      .sort((a, b) => a.createdAt - b.createdAt);
  }

  /**
   * One request by full id or unique prefix (at least 4 hex characters), pending or recent.
   *
   * @throws {RequestError} `NoSuchRequest` or `AmbiguousId`
   */
  get(idOrPrefix: string): RequestView {
    return this.#find(idOrPrefix).view;
  }

  /**
   * Approves a pending request and runs the operation. Resolves once the request is marked
   * approved; the operation's outcome arrives through `onCompleted`.
   *
   * @throws {RequestError} `NoSuchRequest`, `NotPending`, `DigestMismatch`
   */
  approve(id: string, digest: string): void {
    const entry = this.#exact(id);
    if (entry.view.state !== "pending") {
      throw new RequestError(Errors.NotPending, `request ${short(id)} is ${entry.view.state}`);
    }
    if (digest !== entry.view.digest) {
      throw new RequestError(
        Errors.DigestMismatch,
        `digest does not match request ${short(id)}: it is not what was shown`,
      );
    }
    this.#setState(entry, "approved", null);
    this.#run(entry);
  }

  /**
   * Denies a pending request.
   *
   * @throws {RequestError} `NoSuchRequest`, `NotPending`
   */
  deny(id: string, reason = ""): void {
    const entry = this.#exact(id);
    if (entry.view.state !== "pending") {
      throw new RequestError(Errors.NotPending, `request ${short(id)} is ${entry.view.state}`);
    }
    this.#finish(entry, "denied", {
      message: reason ? `denied: ${reason}` : "denied on the console",
    });
  }

  /**
   * Cancels a pending request on behalf of the connection that made it.
   *
   * @throws {RequestError} `NoSuchRequest` (also for another connection's request), `NotPending`
   */
  cancel(id: string, requester: string): void {
    const entry = this.#entries.get(id);
    if (!entry || entry.requester !== requester) {
      throw new RequestError(Errors.NoSuchRequest, `no request ${short(id)} of yours`);
    }
    if (entry.view.state !== "pending") {
      throw new RequestError(Errors.NotPending, `request ${short(id)} is ${entry.view.state}`);
    }
    this.#finish(entry, "cancelled", { message: "cancelled by the requester" });
  }

  /** Cancels every pending request of a connection that went away. Returns how many. */
  cancelFrom(requester: string): number {
    let n = 0;
    for (const entry of this.#entries.values()) {
      if (entry.requester === requester && entry.view.state === "pending") {
        this.#finish(entry, "cancelled", { message: "the requester disconnected" });
        n++;
      }
    }
    return n;
  }

  /** True when the connection still has pending or running requests. */
  hasOpen(requester: string): boolean {
    for (const e of this.#entries.values()) {
      if (e.requester === requester && !isFinal(e.view.state)) return true;
    }
    return false;
  }

  /** Ends every pending request (daemon shutdown). */
  shutdown(message: string): void {
    for (const entry of this.#entries.values()) {
      if (entry.view.state === "pending") this.#finish(entry, "cancelled", { message });
    }
  }

  #checkLimits(requester: string): void {
    const pending = this.list();
    if (pending.length >= this.#opts.maxPending) {
      throw new RequestError(
        Errors.LimitExceeded,
        `too many pending requests (${pending.length}); decide some on the console first`,
      );
    }
    const mine =
      [...this.#entries.values()].filter((e) =>
        e.requester === requester && e.view.state === "pending"
      ).length;
    if (mine >= this.#opts.maxPendingPerCaller) {
      throw new RequestError(
        Errors.LimitExceeded,
        `this connection already has ${mine} pending requests`,
      );
    }
  }

  #find(idOrPrefix: string): Entry {
    const q = idOrPrefix.trim().toLowerCase();
    if (!/^[0-9a-f]{4,32}$/.test(q)) {
      throw new RequestError(
        Errors.NoSuchRequest,
        `not a request id: ${JSON.stringify(idOrPrefix)}`,
      );
    }
    const hits = [...this.#entries.keys()].filter((id) => id.startsWith(q));
    if (hits.length === 0) throw new RequestError(Errors.NoSuchRequest, `no request ${q}`);
    if (hits.length > 1) {
      throw new RequestError(Errors.AmbiguousId, `${q} matches ${hits.length} requests`);
    }
    return this.#entries.get(hits[0])!;
  }

  #exact(id: string): Entry {
    const entry = this.#entries.get(id);
    if (!entry) throw new RequestError(Errors.NoSuchRequest, `no request ${id}`);
    return entry;
  }

  async #run(entry: Entry): Promise<void> {
    try {
      const key = { localUser: entry.localUser!, fingerprint: "", uid: null };
      const result = await this.#opts.gpg.sign(key, entry.payload);
      this.#finish(entry, "done", { signature: result.signature, status: result.status });
    } catch (err) {
      const status = err instanceof GpgError ? err.status : "";
      const message = err instanceof Error ? err.message : String(err);
      this.#finish(entry, "failed", { status, message });
    }
  }

  #finish(entry: Entry, outcome: Outcome, completion: Omit<Completion, "outcome">): void {
    if (isFinal(entry.view.state)) return;
    if (entry.timer !== null) {
      this.#opts.clock.clearTimeout(entry.timer);
      entry.timer = null;
    }
    this.#setState(entry, outcome, completion.message ?? null);
    entry.payload = new Uint8Array(); // nothing more will be done with it
    this.#recent.push(entry.view.id);
    while (this.#recent.length > RECENT_KEPT) this.#entries.delete(this.#recent.shift()!);
    this.#opts.onCompleted?.(entry.view.id, entry.requester, { outcome, ...completion });
  }

  #setState(entry: Entry, state: RequestState, message: string | null): void {
    entry.view = {
      ...entry.view,
      state,
      message,
      decidedAt: isFinal(state) || state === "approved"
        ? this.#opts.clock.now()
        : entry.view.decidedAt,
    };
    this.#record(entry, state).catch((err) => {
      console.error(`history write failed: ${err instanceof Error ? err.message : err}`);
    });
    this.#opts.onChanged?.(entry.view);
  }

  #record(entry: Entry, event: "created" | RequestState): Promise<void> {
    const v = entry.view;
    return this.#opts.history.append({
      at: this.#opts.clock.now(),
      id: v.id,
      kind: v.kind,
      event,
      summary: capSummary(v.sign ? summarize(v.sign.content) : v.kind),
      callerUid: v.caller.uid,
      callerPid: v.caller.pid,
      digest: v.digest,
      message: v.message,
    });
  }
}

/**
 * The content digest: hex SHA-256 over a canonical serialisation of everything the console
 * shows for a request (kind, key, exact payload bytes, reported context, verified caller).
 */
export function contentDigest(parts: {
  kind: string;
  keyFingerprint: string;
  localUser: string;
  payload: Uint8Array;
  reported: SignContext;
  caller: VerifiedCaller;
}): string {
  const h = createHash("sha256");
  const field = (name: string, value: Uint8Array | string) => {
    const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value;
    h.update(`${name} ${bytes.length}\n`);
    h.update(bytes);
    h.update("\n");
  };
  field("kind", parts.kind);
  field("key", parts.keyFingerprint);
  field("local-user", parts.localUser);
  field("payload", parts.payload);
  field("reported", JSON.stringify(parts.reported));
  field("caller", JSON.stringify(parts.caller));
  return h.digest("hex");
}

/** Longest summary kept in a history entry, in UTF-16 code units. */
const SUMMARY_MAX = 200;

function capSummary(s: string): string {
  return s.length > SUMMARY_MAX ? `${s.slice(0, SUMMARY_MAX)}… (${s.length} chars)` : s;
}

function short(id: string): string {
  return id.slice(0, 8);
}
