/**
 * Approval state per client connection: which items the human approved for reading (and for
 * how long), and which requests of the client are still pending at the daemon.
 *
 * An approval is scoped to one connection and to the items the daemon approved, and lasts
 * `READ_WINDOW_MS` from the moment the agent learnt of it (the daemon's own window starts at the
 * approval, a little earlier, and is the one that counts: values are only ever fetched from the
 * daemon with the approving request). A read asked for while the same client already waits for
 * a read covering those items joins it instead of asking the human twice.
 *
 * @module
 */

import type { Outcome } from "../lib/protocol.ts";
import type { PendingRequest } from "./port.ts";

/** How a read request ended for the client. */
export type ReadResult =
  | { approved: true; items: string[] }
  | { approved: false; outcome: Outcome; message: string };

/** A read request of one client, raised or being raised. */
export interface PendingRead {
  /** The items asked for. */
  readonly items: ReadonlySet<string>;
  /** The request, once the daemon accepted it. */
  readonly request: Promise<PendingRequest>;
  /** Settles when the human decided (or the request ended otherwise); never rejects. */
  readonly result: Promise<ReadResult>;
}

interface Grant {
  request: PendingRequest;
  expiresAt: number;
}

interface ClientState {
  grants: Map<string, Grant>;
  reads: Set<PendingRead>;
  writes: Set<PendingRequest>;
}

/** Approvals and pending requests of every client connection. */
export class Approvals {
  #clients = new Map<string, ClientState>();
  #windowMs: number;
  #now: () => number;

  /**
   * @param options `windowMs` how long an approval lasts (READ_WINDOW_MS in production), `now`
   *   the clock in milliseconds (default `Date.now`)
   */
  constructor(options: { windowMs: number; now?: () => number }) {
    this.#windowMs = options.windowMs;
    this.#now = options.now ?? Date.now;
  }

  #state(client: string): ClientState {
    let s = this.#clients.get(client);
    if (!s) {
      s = { grants: new Map(), reads: new Set(), writes: new Set() };
      this.#clients.set(client, s);
    }
    return s;
  }

  /** The request that approved `item` for `client`, while the approval lasts; else null. */
  source(client: string, item: string): PendingRequest | null {
    const g = this.#clients.get(client)?.grants.get(item);
    if (!g) return null;
    if (g.expiresAt <= this.#now()) {
      this.#clients.get(client)!.grants.delete(item);
      return null;
    }
    return g.request;
  }

  /** True while `item` is approved for `client`. */
  approved(client: string, item: string): boolean {
    return this.source(client, item) !== null;
  }

  /**
   * Records that `request` (a `done` read, create or set-secret) lets `client` read `items`
   * for the window, starting now.
   */
  grant(client: string, items: Iterable<string>, request: PendingRequest): void {
    const s = this.#state(client);
    const expiresAt = this.#now() + this.#windowMs;
    for (const item of items) s.grants.set(item, { request, expiresAt });
  }

  /** Withdraws the client's approvals of the items `which` selects (`Service.Lock`, delete). */
  revoke(client: string, which: (item: string) => boolean): void {
    const grants = this.#clients.get(client)?.grants;
    if (!grants) return;
    for (const item of [...grants.keys()]) if (which(item)) grants.delete(item);
  }

  /** Withdraws every client's approval of the items `which` selects (the item is gone). */
  revokeAll(which: (item: string) => boolean): void {
    for (const client of this.#clients.keys()) this.revoke(client, which);
  }

  /**
   * A read request for `items`: the client's pending one when it covers them all, else a new
   * one made with `raise`. When it ends `done`, the approved items are granted to the client.
   *
   * @param client the client's unique bus name
   * @param items the items to read (existing, not yet approved)
   * @param raise makes the request at the daemon
   * @returns the pending read
   * @throws whatever `raise` throws (the daemon refused or is unreachable)
   */
  async read(
    client: string,
    items: string[],
    raise: () => Promise<PendingRequest>,
  ): Promise<PendingRead> {
    const s = this.#state(client);
    for (const r of s.reads) {
      if (items.every((i) => r.items.has(i))) {
        await r.request;
        return r;
      }
    }
    const request = raise();
    const read: PendingRead = {
      items: new Set(items),
      request,
      result: request.then((req) => this.#settle(client, items, req), () => ({
        approved: false as const,
        outcome: "failed" as const,
        message: "the request could not be made",
      })),
    };
    s.reads.add(read);
    read.result.finally(() => s.reads.delete(read));
    request.catch(() => s.reads.delete(read));
    await request;
    return read;
  }

  async #settle(client: string, items: string[], req: PendingRequest): Promise<ReadResult> {
    try {
      const c = await req.completed;
      if (c.outcome !== "done") return { approved: false, outcome: c.outcome, message: c.message };
      const approved = c.items ?? items;
      // A client that left meanwhile gets nothing recorded.
      if (this.#clients.has(client)) this.grant(client, approved, req);
      return { approved: true, items: approved };
    } catch (err) {
      return { approved: false, outcome: "failed", message: (err as Error).message };
    }
  }

  /**
   * Tracks a pending write (create, set-secret, set-properties, delete) of a client so that it
   * is cancelled if the client leaves; returns the function that stops tracking it.
   */
  trackWrite(client: string, request: PendingRequest): () => void {
    const s = this.#state(client);
    s.writes.add(request);
    return () => s.writes.delete(request);
  }

  /** True when the client has approvals or pending requests. */
  busy(client: string): boolean {
    const s = this.#clients.get(client);
    if (!s) return false;
    this.#expire(s);
    return s.grants.size > 0 || s.reads.size > 0 || s.writes.size > 0;
  }

  /** Forgets expired approvals and clients with nothing left. */
  sweep(): void {
    for (const [client, s] of this.#clients) {
      this.#expire(s);
      if (s.grants.size === 0 && s.reads.size === 0 && s.writes.size === 0) {
        this.#clients.delete(client);
      }
    }
  }

  #expire(s: ClientState): void {
    const now = this.#now();
    for (const [item, g] of s.grants) if (g.expiresAt <= now) s.grants.delete(item);
  }

  /**
   * A client left the bus: forgets its approvals and cancels its pending requests at the daemon.
   *
   * @returns when every cancel was sent (each bounded in time)
   */
  async dropClient(client: string): Promise<void> {
    const s = this.#clients.get(client);
    if (!s) return;
    this.#clients.delete(client);
    const cancels: Promise<void>[] = [...s.writes].map((w) => w.cancel());
    for (const r of s.reads) cancels.push(r.request.then((req) => req.cancel(), () => {}));
    await Promise.all(cancels);
  }

  /** Every client with state (for shutting down). */
  clients(): string[] {
    return [...this.#clients.keys()];
  }
}
