/**
 * The agent's real {@link DispatcherPort}: a `DispatcherClient` on the system bus that is made
 * when first needed and made again after the daemon restarted or the connection ended, so the
 * agent keeps serving (with a clear error) while the daemon is down and recovers without a
 * restart of its own.
 *
 * With a listener ({@link DaemonPort.listen}) it also keeps a subscription: it connects,
 * `Subscribe`s, then `ListPending`s (in that order, so nothing is missed), and after the daemon
 * or the bus went away it retries with backoff ({@link BACKOFF_MIN_MS} doubling up to
 * {@link BACKOFF_MAX_MS}) and subscribes and lists again. A daemon that stops answering (e.g.
 * SIGSTOP) is noticed by the calls that time out ({@link CALL_TIMEOUT_MS} each, well below the
 * ~25 s clients wait) and probed with the same backoff until it answers again.
 *
 * @module
 */

import { BusUnavailableError, errorText } from "../lib/dbus.ts";
import {
  CALL_TIMEOUT_MS,
  DispatcherClient,
  RequestRefusedError,
} from "../lib/dispatcher_client.ts";
import type { PendingSummary } from "../lib/protocol.ts";
import type { DaemonListener, DispatcherPort, PendingRequest } from "./port.ts";

export { CALL_TIMEOUT_MS };

/** Time allowed to connect to the system bus and find the daemon, in milliseconds. */
const CONNECT_TIMEOUT_MS = 3000;
/** First retry delay after the daemon could not be reached, in milliseconds. */
export const BACKOFF_MIN_MS = 250;
/** Longest retry delay, in milliseconds. */
export const BACKOFF_MAX_MS = 5000;

// Compile-time proof that the client itself speaks the port's contract (minus `listen`,
// which only the reconnecting port can keep).
const _clientIsPort: (c: DispatcherClient) => Omit<DispatcherPort, "listen"> = (c) => c;

/** A {@link DispatcherPort} over the system bus that reconnects on demand. */
export class DaemonPort implements DispatcherPort {
  #address: string;
  #uid: number;
  #backoff: { min: number; max: number };
  #log: (line: string) => void;
  #client: DispatcherClient | null = null;
  #connecting: Promise<DispatcherClient> | null = null;
  #closed = false;

  #listeners = new Set<DaemonListener>();
  #loop: Promise<void> | null = null;
  /** The client whose subscription is in place. */
  #subscribed: DispatcherClient | null = null;
  /** Calls timed out since the last subscription: list again once it answers. */
  #stale = false;
  /** Reachability last reported (null: not yet). */
  #up: boolean | null = null;
  #wake: (() => void) | null = null;

  /**
   * @param options `address` of the system bus, `uid` whose dispatcher to use; `backoff`
   *   (`minMs`, `maxMs`) between reconnection attempts; `log` for one line per state change
   */
  constructor(options: {
    address: string;
    uid: number;
    backoff?: { minMs?: number; maxMs?: number };
    log?: (line: string) => void;
  }) {
    this.#address = options.address;
    this.#uid = options.uid;
    this.#backoff = {
      min: options.backoff?.minMs ?? BACKOFF_MIN_MS,
      max: options.backoff?.maxMs ?? BACKOFF_MAX_MS,
    };
    this.#log = options.log ?? (() => {});
  }

  /**
   * The connected client, connecting first if there is none or the old one is dead.
   *
   * @throws {BusUnavailableError} when the bus or the daemon cannot be reached (within 3 s)
   */
  client(): Promise<DispatcherClient> {
    if (this.#closed) return Promise.reject(new BusUnavailableError("the agent is stopping"));
    if (this.#client && !this.#client.closed) return Promise.resolve(this.#client);
    if (this.#client) {
      this.#client.close();
      this.#client = null;
    }
    this.#connecting ??= DispatcherClient.connect({
      address: this.#address,
      uid: this.#uid,
      timeoutMs: CONNECT_TIMEOUT_MS,
    }).then((c) => {
      if (this.#closed) {
        c.close();
        throw new BusUnavailableError("the agent is stopping");
      }
      this.#client = c;
      return c;
    }).finally(() => this.#connecting = null);
    return this.#connecting;
  }

  /** Closes the connection and stops listening; later calls fail. */
  close(): void {
    this.#closed = true;
    this.#listeners.clear();
    this.#wake?.();
    this.#client?.close();
    this.#client = null;
  }

  /** See {@link DispatcherPort.listen}. Starts the subscription loop on the first listener. */
  listen(listener: DaemonListener): () => void {
    this.#listeners.add(listener);
    if (this.#up !== null) listener.reachable(this.#up, "");
    this.#loop ??= this.#maintain();
    this.#stale = true;
    this.#wake?.();
    return () => this.#listeners.delete(listener);
  }

  /** Resolves when the subscription loop has ended (after {@link close}). */
  async finished(): Promise<void> {
    await this.#loop;
  }

  #emit(fn: (l: DaemonListener) => void): void {
    for (const l of this.#listeners) {
      try {
        fn(l);
      } catch { /* a listener's bug must not stop the others */ }
    }
  }

  #reachable(up: boolean, why: string): void {
    if (this.#up === up) return;
    this.#up = up;
    this.#log(up ? "approval daemon reachable" : `approval daemon unreachable: ${why}`);
    this.#emit((l) => l.reachable(up, why));
  }

  /** Runs a call on the client, noting whether the daemon answered. */
  async #use<T>(fn: (c: DispatcherClient) => Promise<T>): Promise<T> {
    try {
      const result = await fn(await this.client());
      this.#answered();
      return result;
    } catch (err) {
      if (err instanceof RequestRefusedError) this.#answered();
      else if (err instanceof BusUnavailableError && !this.#closed) {
        this.#stale = true;
        this.#reachable(false, err.message);
        this.#wake?.();
      }
      throw err;
    }
  }

  #answered(): void {
    if (this.#up === true) return;
    this.#reachable(true, "");
    this.#wake?.(); // subscribe now rather than after the backoff
  }

  /** The subscription loop: connect, subscribe, list; wait for the end; back off; again. */
  async #maintain(): Promise<void> {
    let delay = this.#backoff.min;
    while (!this.#closed) {
      let c: DispatcherClient;
      try {
        c = await this.client();
        if (this.#subscribed !== c || this.#stale) {
          this.#stale = false;
          await this.#subscribe(c);
        }
        this.#reachable(true, "");
        delay = this.#backoff.min;
      } catch (err) {
        if (this.#closed) break;
        if (err instanceof RequestRefusedError) {
          this.#log(`cannot subscribe to request events: ${err.message}`);
          this.#reachable(true, "");
        } else this.#reachable(false, errorText(err));
        this.#stale = true;
        await this.#sleep(delay);
        delay = Math.min(delay * 2, this.#backoff.max);
        continue;
      }
      // Until the connection ends, or a call found the daemon not answering.
      const why = await Promise.race([c.ended, this.#sleep(Infinity).then(() => null)]);
      if (why !== null && !this.#closed) {
        this.#subscribed = null;
        this.#emit((l) => l.synced([]));
        this.#reachable(false, why);
        await this.#sleep(delay);
      }
    }
  }

  /** Subscribes `c`, then lists; what arrives meanwhile is merged into the list. */
  async #subscribe(c: DispatcherClient): Promise<void> {
    let syncing = true;
    const early = new Map<string, PendingSummary>();
    const endedEarly = new Set<string>();
    await c.subscribe({
      pending: (p) => {
        if (syncing) early.set(p.id, p);
        else this.#emit((l) => l.pending(p));
      },
      ended: (id, state) => {
        if (syncing) {
          early.delete(id);
          endedEarly.add(id);
        } else this.#emit((l) => l.ended(id, state));
      },
    });
    const listed = await c.listPending();
    syncing = false;
    const ids = new Set(listed.map((p) => p.id));
    const pending = [...listed, ...[...early.values()].filter((p) => !ids.has(p.id))]
      .filter((p) => !endedEarly.has(p.id));
    this.#subscribed = c;
    this.#emit((l) => l.synced(pending));
  }

  /** Waits `ms` (Infinity: until woken), or until woken by {@link close} or a state change. */
  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = () => {
        clearTimeout(timer);
        if (this.#wake === done) this.#wake = null;
        resolve();
      };
      if (Number.isFinite(ms)) timer = setTimeout(done, ms);
      const previous = this.#wake;
      this.#wake = done;
      previous?.();
    });
  }

  /** See {@link DispatcherPort.storeStatus}. */
  storeStatus(): ReturnType<DispatcherPort["storeStatus"]> {
    return this.#use((c) => c.storeStatus());
  }
  /** See {@link DispatcherPort.collections}. */
  collections(...a: Parameters<DispatcherPort["collections"]>) {
    return this.#use((c) => c.collections(...a));
  }
  /** See {@link DispatcherPort.readAlias}. */
  readAlias(...a: Parameters<DispatcherPort["readAlias"]>) {
    return this.#use((c) => c.readAlias(...a));
  }
  /** See {@link DispatcherPort.searchItems}. */
  searchItems(...a: Parameters<DispatcherPort["searchItems"]>) {
    return this.#use((c) => c.searchItems(...a));
  }
  /** See {@link DispatcherPort.getItems}. */
  getItems(...a: Parameters<DispatcherPort["getItems"]>) {
    return this.#use((c) => c.getItems(...a));
  }
  /** See {@link DispatcherPort.requestRead}. */
  requestRead(...a: Parameters<DispatcherPort["requestRead"]>): Promise<PendingRequest> {
    return this.#use((c) => c.requestRead(...a));
  }
  /** See {@link DispatcherPort.requestCreateItem}. */
  requestCreateItem(
    ...a: Parameters<DispatcherPort["requestCreateItem"]>
  ): Promise<PendingRequest> {
    return this.#use((c) => c.requestCreateItem(...a));
  }
  /** See {@link DispatcherPort.requestSetSecret}. */
  requestSetSecret(...a: Parameters<DispatcherPort["requestSetSecret"]>): Promise<PendingRequest> {
    return this.#use((c) => c.requestSetSecret(...a));
  }
  /** See {@link DispatcherPort.requestSetProperties}. */
  requestSetProperties(
    ...a: Parameters<DispatcherPort["requestSetProperties"]>
  ): Promise<PendingRequest> {
    return this.#use((c) => c.requestSetProperties(...a));
  }
  /** See {@link DispatcherPort.requestDelete}. */
  requestDelete(...a: Parameters<DispatcherPort["requestDelete"]>): Promise<PendingRequest> {
    return this.#use((c) => c.requestDelete(...a));
  }
  /** See {@link DispatcherPort.denyOwn}. */
  denyOwn(id: string): Promise<void> {
    return this.#use((c) => c.denyOwn(id));
  }
}
