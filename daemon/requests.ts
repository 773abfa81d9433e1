/**
 * The request manager: the lifecycle of every request (DESIGN.md §5), independent of D-Bus.
 *
 * `pending → approved | denied | expired | cancelled`, then for approved `done | failed`.
 * An approval must name the request id and the digest of what was shown.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  commitIdWithSignature,
  parsePayload,
  PayloadError,
  payloadKind,
  summarize,
} from "../lib/payload.ts";
import {
  capSummary,
  DEFAULT_REQUEST_TTL_MS,
  type DenyRuleOptions,
  Errors,
  type GrantOptions,
  isFinal,
  MAX_GRANT_MINUTES,
  MAX_GRANT_SIGNATURES,
  MAX_PAYLOAD_BYTES,
  type Outcome,
  READ_WINDOW_MS,
  type RequestKind,
  type RequestState,
  type RequestSummary,
  type RequestView,
  type RuleView,
  type SecretDetails,
  type SignContext,
  type SignDetails,
  summaryOf,
  type VerifiedCaller,
} from "../lib/protocol.ts";
import { type Clock, systemClock, type Timer } from "../lib/clock.ts";
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

/** Re-exported for the daemon's callers: the clock lives in `lib/clock.ts`. */
export type { Clock, Timer };

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
  /** What grants and deny rules match on (see {@link RuleFacts}). */
  facts?: RuleFacts;
}

/**
 * The facts of a request that grants and deny rules are keyed on: only what the daemon
 * established itself (D-Bus credentials, `ps`, the parsed payload), never what the desktop side
 * reports. (Read grants also key on the verified caller of the {@link Submission}: see
 * {@link RequestManager.approveWithGrant}.)
 */
export interface RuleFacts {
  /**
   * The desktop program behind a secret request, as the daemon saw it with `ps` (pid, command
   * line, and start time as `ps -o lstart` shows it, so that a later process reusing the pid is
   * another program), or null when the caller's report did not match what the daemon sees. It is only
   * consistent with `ps`: any process of the desktop user can name any pid of that user in a
   * report, so this alone never identifies who asks.
   */
  client?: { pid: number; cmdline: string; started?: string | null } | null;
  /** Secret requests: the items concerned. */
  items?: string[];
  /** Signing: the key's fingerprint. */
  keyFingerprint?: string;
  /** `sign.commit`: the first parent of the commit, or null for a root commit. */
  firstParent?: string | null;
  /** `sign.commit`: the id of the commit git will write with this signature. */
  predictCommit?: (signature: Uint8Array) => string;
}

/** The grant limits, defined beside `GrantOptions` in lib/protocol.ts (ctl checks them too). */
export { MAX_GRANT_MINUTES, MAX_GRANT_SIGNATURES };
/** How long a rebase grant lasts at most, ms (30 minutes). */
export const REBASE_GRANT_MS = 30 * 60 * 1000;
/** Longest time-boxed deny rule, minutes (one day). */
export const MAX_DENY_MINUTES = 24 * 60;

/** A connection to the system bus as the bus itself identified it. */
interface Connection {
  busName: string;
  uid: number;
  pid: number | null;
}

interface Rule {
  view: RuleView;
  kind: RequestKind;
  callerUid: number;
  /** read grants and secret deny rules: the program (with its start time: pids are reused). */
  client?: { pid: number; cmdline: string; started?: string | null } | null;
  /**
   * read grants: the verified connection that sent the request the grant was made from (unique
   * bus name, uid and pid from the bus), normally the desktop agent's.
   */
  via?: Connection;
  /** read grants and secret deny rules: the items. */
  items?: Set<string>;
  /** rebase grants and signing deny rules. */
  keyFingerprint?: string;
  /** rebase grants: the commit the next payload must continue; null while one is signing. */
  lastCommit?: string | null;
  /** rebase grants: the request being signed under it (or that made it). */
  awaiting?: string | null;
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
  facts: RuleFacts;
  /** The grant or deny rule that decided it, if one did. */
  rule: string | null;
}

/** How many finished requests stay visible to `get` (for `ctl show` after a decision). */
const RECENT_KEPT = 100;

/** Holds pending and recent requests and moves them through their states. */
export class RequestManager {
  #opts: Required<Omit<RequestManagerOptions, "onChanged" | "onCompleted">> & RequestManagerOptions;
  #entries = new Map<string, Entry>();
  #recent: string[] = [];
  #rules = new Map<string, Rule>();
  #locked = false;

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
    const algo = content.type === "commit" && content.tree.length === 64 ? "sha256" : "sha1";
    return this.submit({
      kind,
      caller: input.caller,
      requester: input.requester,
      sign,
      digest,
      summary: summarize(content),
      facts: {
        keyFingerprint: key.fingerprint,
        ...(content.type === "commit"
          ? {
            firstParent: content.parents[0] ?? null,
            predictCommit: (signature: Uint8Array) =>
              commitIdWithSignature(payload, signature, algo),
          }
          : {}),
      },
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
    if (this.#locked) {
      throw new RequestError(
        Errors.StoreLocked,
        "locked on the console: nothing is asked or done until it is unlocked there",
      );
    }
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
      facts: s.facts ?? {},
      rule: null,
    };
    this.#entries.set(id, entry);
    entry.timer = this.#opts.clock.setTimeout(
      () => this.#finish(entry, "expired", { message: "the request expired unanswered" }),
      this.#opts.ttlMs,
    );
    await this.#record(entry, "created");
    const rule = this.#matchRule(entry);
    if (rule) {
      // Decided without a human. After the request method has returned (the requester learns
      // its request path before the outcome), and never shown as pending.
      rule.view = { ...rule.view, uses: rule.view.uses + 1 };
      entry.rule = rule.view.id;
      if (rule.view.type === "rebase-grant") {
        rule.view = { ...rule.view, remaining: (rule.view.remaining ?? 1) - 1 };
        rule.lastCommit = null;
        rule.awaiting = id;
      }
      this.#opts.clock.setTimeout(() => {
        if (entry.view.state !== "pending") return;
        if (rule.view.type === "deny") {
          this.#finish(entry, "denied", { message: `denied by rule ${rule.view.id}` });
        } else {
          this.#setState(entry, "approved", `approved by grant ${rule.view.id}`);
          this.#run(entry);
        }
      }, 0);
      return id;
    }
    this.#opts.onChanged?.(view);
    return id;
  }

  /** True while the console's lock is on ({@link lock}). */
  get locked(): boolean {
    return this.#locked;
  }

  /**
   * The lock: ends every pending request (denied), drops every grant (deny rules stay) and every
   * open read window, and refuses new requests until {@link unlock}.
   */
  lock(): void {
    this.#locked = true;
    for (const [id, r] of this.#rules) if (r.view.type !== "deny") this.#rules.delete(id);
    for (const entry of this.#entries.values()) {
      entry.readable = null;
      if (entry.view.state === "pending") {
        this.#finish(entry, "denied", { message: "denied: locked on the console" });
      }
    }
  }

  /** Ends the lock: requests are accepted again. */
  unlock(): void {
    this.#locked = false;
  }

  /** The grants and deny rules in force, oldest first (expired ones are dropped). */
  rules(): RuleView[] {
    this.#dropExpired();
    return [...this.#rules.values()].map((r) => r.view);
  }

  /**
   * Ends a grant or deny rule.
   *
   * @throws {RequestError} `NoSuchRequest` when there is no rule with that id
   */
  revoke(id: string): void {
    if (!this.#rules.delete(id)) {
      throw new RequestError(Errors.NoSuchRequest, `no grant or rule ${id}`);
    }
  }

  /**
   * Approves request `id` (as {@link approve}) and makes a grant from it: a read grant for
   * `options.minutes` (secret.read), or a rebase grant for `options.signatures` further
   * signatures (sign.commit).
   *
   * A read grant covers a later `secret.read` only when it comes from the same verified
   * connection (the unique bus name, uid and pid the bus gave for the sender; normally the
   * desktop agent's), names the same program as `ps` confirmed it (pid and command line) and a
   * subset of the items. The program alone is not enough: any process of the desktop user can
   * call the daemon itself with a report naming another program's pid. When the agent restarts
   * (or reconnects to the system bus) its connection is new and grants made through the old one
   * no longer match: the requests are asked again.
   *
   * @throws {RequestError} as {@link approve}; `InvalidArgs` when no grant can be made from this
   *   request (another kind, the program not verified, a bad number)
   */
  approveWithGrant(id: string, digest: string, options: GrantOptions): RuleView {
    const entry = this.#exact(id);
    const v = entry.view;
    const bad = (why: string) => new RequestError(Errors.InvalidArgs, `no grant: ${why}`);
    const now = this.#opts.clock.now();
    let rule: Rule;
    const readGrant = `a read grant of 1-${MAX_GRANT_MINUTES} minutes ("minutes")`;
    const rebaseGrant = `a rebase grant of 1-${MAX_GRANT_SIGNATURES} signatures ("signatures")`;
    if (v.kind === "secret.read") {
      if (options.signatures !== undefined) {
        throw bad(`a secret.read request takes ${readGrant}, not "signatures" (sign.commit)`);
      }
      const minutes = options.minutes;
      if (!Number.isInteger(minutes) || minutes! < 1 || minutes! > MAX_GRANT_MINUTES) {
        throw bad(`a secret.read request takes ${readGrant}`);
      }
      const client = entry.facts.client;
      if (!client) {
        throw bad("the program asking is not verified (its report does not match ps)");
      }
      const items = entry.facts.items ?? [];
      const via = { busName: v.caller.busName, uid: v.caller.uid, pid: v.caller.pid };
      rule = {
        kind: v.kind,
        callerUid: v.caller.uid,
        client,
        via,
        items: new Set(items),
        view: this.#ruleView("read-grant", {
          description: `pid ${client.pid} (${client.cmdline}), asking through ${via.busName} ` +
            `(uid ${via.uid}, pid ${via.pid ?? "?"}), may read ${items.length} item(s) ` +
            `for ${minutes} min: ${items.join(", ")}`,
          expiresAt: now + minutes! * 60_000,
          remaining: null,
          fromRequest: id,
        }),
      };
    } else if (v.kind === "sign.commit") {
      if (options.minutes !== undefined) {
        throw bad(`a sign.commit request takes ${rebaseGrant}, not "minutes" (secret.read)`);
      }
      const n = options.signatures;
      if (!Number.isInteger(n) || n! < 1 || n! > MAX_GRANT_SIGNATURES) {
        throw bad(`a sign.commit request takes ${rebaseGrant}`);
      }
      if (!entry.facts.predictCommit || !entry.facts.keyFingerprint) {
        throw bad("the commit this signature makes cannot be predicted");
      }
      rule = {
        kind: v.kind,
        callerUid: v.caller.uid,
        keyFingerprint: entry.facts.keyFingerprint,
        lastCommit: null,
        awaiting: id,
        view: this.#ruleView("rebase-grant", {
          description: `the next ${n} commit signature(s) with key ${entry.facts.keyFingerprint} ` +
            `continuing from the commit signed by request ${id.slice(0, 8)}`,
          expiresAt: now + REBASE_GRANT_MS,
          remaining: n!,
          fromRequest: id,
        }),
      };
    } else {
      throw bad(
        `grants exist for secret.read (${readGrant}) and sign.commit (${rebaseGrant}), not ${v.kind}`,
      );
    }
    this.approve(id, digest);
    this.#rules.set(rule.view.id, rule);
    return rule.view;
  }

  /**
   * Denies request `id` (as {@link deny}) and makes a deny rule from it: later requests of the
   * same kind from the same caller uid and program (secret: same items; signing: same key) are
   * denied without asking, for `options.minutes` or until revoked.
   *
   * Unlike a read grant, a deny rule does not key on the connection that sent the request: the
   * program named (as `ps` confirmed it) is denied whoever relays it. A report naming it can only
   * get a request denied, never approved, so the broader match fails closed.
   *
   * @throws {RequestError} as {@link deny}; `InvalidArgs` for a bad duration
   */
  denyWithRule(id: string, reason: string, options: DenyRuleOptions): RuleView {
    const entry = this.#exact(id);
    const minutes = options.minutes ?? 0;
    if (!Number.isInteger(minutes) || minutes < 0 || minutes > MAX_DENY_MINUTES) {
      throw new RequestError(
        Errors.InvalidArgs,
        `a deny rule lasts 1-${MAX_DENY_MINUTES} minutes, or 0 for until revoked`,
      );
    }
    this.deny(id, reason);
    const v = entry.view;
    const f = entry.facts;
    const what = v.kind.startsWith("secret.")
      ? `${f.client ? `pid ${f.client.pid} (${f.client.cmdline})` : "an unverified program"} ` +
        `on ${(f.items ?? []).join(", ") || "no items"}`
      : `key ${f.keyFingerprint ?? "?"}`;
    const rule: Rule = {
      kind: v.kind,
      callerUid: v.caller.uid,
      client: f.client ?? null,
      items: new Set(f.items ?? []),
      keyFingerprint: f.keyFingerprint,
      view: this.#ruleView("deny", {
        description: `deny ${v.kind} from uid ${v.caller.uid}, ${what}` +
          (minutes ? ` for ${minutes} min` : " until revoked"),
        expiresAt: minutes ? this.#opts.clock.now() + minutes * 60_000 : null,
        remaining: null,
        fromRequest: id,
      }),
    };
    this.#rules.set(rule.view.id, rule);
    return rule.view;
  }

  #ruleView(
    type: RuleView["type"],
    r: Pick<RuleView, "description" | "expiresAt" | "remaining" | "fromRequest">,
  ): RuleView {
    const prefix = type === "deny" ? "r" : "g";
    return {
      id: prefix + crypto.randomUUID().replaceAll("-", "").slice(0, 8),
      type,
      createdAt: this.#opts.clock.now(),
      uses: 0,
      ...r,
    };
  }

  #dropExpired(): void {
    const now = this.#opts.clock.now();
    for (const [id, r] of this.#rules) {
      const spent = r.view.type === "rebase-grant" && r.view.remaining === 0 && !r.awaiting;
      if ((r.view.expiresAt !== null && now >= r.view.expiresAt) || spent) this.#rules.delete(id);
    }
  }

  /** The deny rule (first) or grant that decides `entry` without a human, if any. */
  #matchRule(entry: Entry): Rule | null {
    this.#dropExpired();
    const v = entry.view;
    const f = entry.facts;
    const sameItems = (r: Rule, exact: boolean) => {
      const items = f.items ?? [];
      if (!r.items || items.length === 0) return false;
      return items.every((i) => r.items!.has(i)) && (!exact || items.length === r.items.size);
    };
    const sameClient = (r: Rule) =>
      (r.client ?? null) === null
        ? (f.client ?? null) === null
        : f.client != null && f.client.pid === r.client!.pid &&
          f.client.cmdline === r.client!.cmdline &&
          // A later process that got the same pid (pids are reused) started later.
          (f.client.started ?? null) === (r.client!.started ?? null);
    // The verified sender, not the report: a process calling the daemon itself with a copy of
    // the agent's report is another connection (and another pid) than the one granted.
    const sameConnection = (r: Rule) =>
      r.via !== undefined && r.via.busName === v.caller.busName &&
      r.via.uid === v.caller.uid && r.via.pid === v.caller.pid;
    const rules = [...this.#rules.values()].filter((r) =>
      r.kind === v.kind && r.callerUid === v.caller.uid
    );
    for (const r of rules) {
      if (r.view.type !== "deny") continue;
      if (
        v.kind.startsWith("secret.") ? sameClient(r) && sameItems(r, false) : (
          r.keyFingerprint !== undefined && r.keyFingerprint === f.keyFingerprint
        )
      ) return r;
    }
    for (const r of rules) {
      if (
        r.view.type === "read-grant" && f.client && sameConnection(r) && sameClient(r) &&
        sameItems(r, false)
      ) return r;
      if (
        r.view.type === "rebase-grant" && (r.view.remaining ?? 0) > 0 && !r.awaiting &&
        r.lastCommit && f.firstParent === r.lastCommit &&
        f.keyFingerprint === r.keyFingerprint
      ) return r;
    }
    return null;
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
    if (this.#locked) {
      throw new RequestError(Errors.NotApproved, "locked on the console: nothing may be read");
    }
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

  /** Summaries of the pending requests, oldest first (the admin `List`). */
  summaries(): RequestSummary[] {
    return [...this.#entries.values()]
      // One a rule decides is pending only until its 0 ms timer: never shown.
      .filter((e) => e.view.state === "pending" && e.rule === null)
      .sort((a, b) => a.view.createdAt - b.view.createdAt)
      .map((e) => summaryOf(e.view, e.summary));
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
      this.#signed(entry, result.signature);
      if (readable && readable.length > 0 && !this.#locked) {
        entry.readable = {
          items: new Set(readable),
          until: this.#opts.clock.now() + READ_WINDOW_MS,
        };
      }
      this.#finish(entry, "done", result);
    } catch (err) {
      this.#signed(entry, undefined);
      const status = err instanceof GpgError ? err.status : undefined;
      const message = err instanceof Error ? err.message : String(err);
      this.#finish(entry, "failed", { ...(status !== undefined ? { status } : {}), message });
    }
  }

  /**
   * A signing request under (or making) a rebase grant finished: the grant now waits for a
   * payload continuing the commit just signed; without a signature it ends.
   */
  #signed(entry: Entry, signature: Uint8Array | undefined): void {
    for (const [id, r] of this.#rules) {
      if (r.view.type !== "rebase-grant" || r.awaiting !== entry.view.id) continue;
      r.awaiting = null;
      if (!signature || !entry.facts.predictCommit) {
        this.#rules.delete(id);
        continue;
      }
      try {
        r.lastCommit = entry.facts.predictCommit(signature);
      } catch {
        this.#rules.delete(id);
      }
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
      summary: capSummary(entry.summary),
      callerUid: v.caller.uid,
      callerPid: v.caller.pid,
      digest: v.digest,
      message: v.message,
      ...(entry.rule ? { rule: entry.rule } : {}),
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

function short(id: string): string {
  return id.slice(0, 8);
}
