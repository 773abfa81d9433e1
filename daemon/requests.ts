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
  READ_WINDOW_MS,
  type RequestKind,
  type RequestState,
  type RequestView,
  type SecretDetails,
  type SignContext,
  type SignDetails,
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
  /** The item a `done` create wrote. */
  item?: string;
  /** The items a `done` read may fetch. */
  items?: string[];
}

/** What an approved operation produced. */
export interface PerformResult extends Omit<Completion, "outcome"> {
  /**
   * Items the requester may now fetch with {@link RequestManager.readable} during the read
   * window (an approved read: its items; an approved write: the item written).
   */
  readable?: string[];
}

/** A new request, ready to be shown. */
export interface Submission {
  kind: RequestKind;
  caller: VerifiedCaller;
  /** Unique bus name of the connection that asked (gets `Completed`, may `Cancel`). */
  requester: string;
  /**
   * What the per-caller flood limit counts: the requester, or for requests the agent forwards,
   * the requester plus the desktop client's name (each client has its own limit).
   */
  limitKey?: string;
  sign?: SignDetails;
  secret?: SecretDetails;
  /** Hex SHA-256 over everything shown (see {@link contentDigest}, {@link digestOf}). */
  digest: string;
  /** One-line summary for the history (raw). */
  summary: string;
  /**
   * Runs the operation once approved. Throwing fails the request with the error's message
   * (a {@link GpgError}'s status lines are passed on).
   */
  perform: () => Promise<PerformResult>;
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
  limitKey: string;
  summary: string;
  /** The operation; dropped once the request is final (it may hold a secret value). */
  perform: (() => Promise<PerformResult>) | null;
  timer: Timer | null;
  /** What may be fetched after approval, and until when (ms since the epoch). */
  readable: { items: Set<string>; until: number } | null;
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
    const kind = payloadKind(content);
    const sign: SignDetails = {
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
    const gpg = this.#opts.gpg;
    return this.submit({
      kind,
      caller: input.caller,
      requester: input.requester,
      sign,
      digest,
      summary: summarize(content),
      perform: async () => {
        const result = await gpg.sign(
          { localUser: key.localUser, fingerprint: key.fingerprint, uid: key.uid },
          payload,
        );
        return { signature: result.signature, status: result.status };
      },
    });
  }

  /**
   * Adds a request built by the caller (signing: {@link submitSign}; secrets:
   * `SecretRequests`) and shows it.
   *
   * @returns the new request id
   * @throws {RequestError} `LimitExceeded` on a flood
   */
  async submit(s: Submission): Promise<string> {
    const limitKey = s.limitKey ?? s.requester;
    this.#checkLimits(limitKey);
    const now = this.#opts.clock.now();
    const id = crypto.randomUUID().replaceAll("-", "");
    const view: RequestView = {
      id,
      kind: s.kind,
      state: "pending",
      createdAt: now,
      expiresAt: now + this.#opts.ttlMs,
      decidedAt: null,
      digest: s.digest,
      caller: s.caller,
      ...(s.sign ? { sign: s.sign } : {}),
      ...(s.secret ? { secret: s.secret } : {}),
      message: null,
    };
    const entry: Entry = {
      view,
      requester: s.requester,
      limitKey,
      summary: s.summary,
      perform: s.perform,
      timer: null,
      readable: null,
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

  /**
   * Checks that `requester` may fetch `items` through request `id` now: the request is `done`,
   * was made by that connection, named those items, and its read window is open.
   *
   * @throws {RequestError} `NoSuchRequest` (also for another connection's request),
   *   `NotApproved` (not done, window closed, or an item it did not cover)
   */
  readable(id: string, requester: string, items: string[]): void {
    const entry = this.#entries.get(id);
    if (!entry || entry.requester !== requester) {
      throw new RequestError(Errors.NoSuchRequest, `no request ${short(id)} of yours`);
    }
    const r = entry.readable;
    if (entry.view.state !== "done" || r === null) {
      throw new RequestError(
        Errors.NotApproved,
        `request ${short(id)} is ${entry.view.state}; nothing may be read through it`,
      );
    }
    if (this.#opts.clock.now() > r.until) {
      entry.readable = null;
      throw new RequestError(Errors.NotApproved, `the read window of ${short(id)} has closed`);
    }
    const other = items.find((p) => !r.items.has(p));
    if (other !== undefined) {
      throw new RequestError(
        Errors.NotApproved,
        `request ${short(id)} was not approved for ${other}`,
      );
    }
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

  /**
   * Refuses early, before any expensive work, when a new request of `limitKey` could not be
   * accepted ({@link submit} checks again).
   *
   * @throws {RequestError} `LimitExceeded`
   */
  checkCapacity(limitKey: string): void {
    this.#checkLimits(limitKey);
  }

  #checkLimits(limitKey: string): void {
    const pending = this.list();
    if (pending.length >= this.#opts.maxPending) {
      throw new RequestError(
        Errors.LimitExceeded,
        `too many pending requests (${pending.length}); decide some on the console first`,
      );
    }
    const mine =
      [...this.#entries.values()].filter((e) =>
        e.limitKey === limitKey && e.view.state === "pending"
      ).length;
    if (mine >= this.#opts.maxPendingPerCaller) {
      throw new RequestError(
        Errors.LimitExceeded,
        `this client already has ${mine} pending requests`,
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
    const perform = entry.perform;
    entry.perform = null;
    try {
      if (!perform) throw new Error("nothing to run");
      const { readable, ...result } = await perform();
      if (readable && readable.length > 0) {
        entry.readable = {
          items: new Set(readable),
          until: this.#opts.clock.now() + READ_WINDOW_MS,
        };
      }
      this.#finish(entry, "done", result);
    } catch (err) {
      const status = err instanceof GpgError ? err.status : undefined;
      const message = err instanceof Error ? err.message : String(err);
      this.#finish(entry, "failed", { ...(status !== undefined ? { status } : {}), message });
    }
  }

  #finish(entry: Entry, outcome: Outcome, completion: Omit<Completion, "outcome">): void {
    if (isFinal(entry.view.state)) return;
    if (entry.timer !== null) {
      this.#opts.clock.clearTimeout(entry.timer);
      entry.timer = null;
    }
    this.#setState(entry, outcome, completion.message ?? null);
    entry.perform = null; // nothing more will be done; drop what it holds (payload, secret)
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
      summary: capSummary(entry.summary.replace(/[\r\n]+/g, " ")),
      callerUid: v.caller.uid,
      callerPid: v.caller.pid,
      digest: v.digest,
      message: v.message,
    });
  }
}

/**
 * Hex SHA-256 over named fields, each written as `<name> <byte length>\n<bytes>\n` so that no
 * two different field lists hash alike.
 */
export function digestFields(fields: [name: string, value: Uint8Array | string][]): string {
  const h = createHash("sha256");
  for (const [name, value] of fields) {
    const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value;
    h.update(`${name} ${bytes.length}\n`);
    h.update(bytes);
    h.update("\n");
  }
  return h.digest("hex");
}

/**
 * The content digest of a signing request: {@link digestFields} over everything the console
 * shows (kind, key, exact payload bytes, reported context, verified caller).
 */
export function contentDigest(parts: {
  kind: string;
  keyFingerprint: string;
  localUser: string;
  payload: Uint8Array;
  reported: SignContext;
  caller: VerifiedCaller;
}): string {
  return digestFields([
    ["kind", parts.kind],
    ["key", parts.keyFingerprint],
    ["local-user", parts.localUser],
    ["payload", parts.payload],
    ["reported", JSON.stringify(parts.reported)],
    ["caller", JSON.stringify(parts.caller)],
  ]);
}

/** Longest summary kept in a history entry, in UTF-16 code units. */
const SUMMARY_MAX = 200;

function capSummary(s: string): string {
  return s.length > SUMMARY_MAX ? `${s.slice(0, SUMMARY_MAX)}… (${s.length} chars)` : s;
}

function short(id: string): string {
  return id.slice(0, 8);
}
