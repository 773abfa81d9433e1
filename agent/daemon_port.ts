/**
 * The agent's real {@link DispatcherPort}: a `DispatcherClient` on the system bus that is made
 * when first needed and made again after the daemon restarted or the connection ended, so the
 * agent keeps serving (with a clear error) while the daemon is down and recovers without a
 * restart of its own.
 *
 * @module
 */

import { BusUnavailableError } from "../lib/dbus.ts";
import { DispatcherClient } from "../lib/dispatcher_client.ts";
import type { DispatcherPort } from "./port.ts";

/** Time allowed to connect to the system bus and find the daemon, in milliseconds. */
const CONNECT_TIMEOUT_MS = 3000;

// Compile-time proof that the client itself speaks the port's contract.
const _clientIsPort: (c: DispatcherClient) => DispatcherPort = (c) => c;

/** A {@link DispatcherPort} over the system bus that reconnects on demand. */
export class DaemonPort implements DispatcherPort {
  #address: string;
  #uid: number;
  #client: DispatcherClient | null = null;
  #connecting: Promise<DispatcherClient> | null = null;
  #closed = false;

  /**
   * @param options `address` of the system bus, `uid` whose dispatcher to use
   */
  constructor(options: { address: string; uid: number }) {
    this.#address = options.address;
    this.#uid = options.uid;
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

  /** Closes the connection; later calls fail. */
  close(): void {
    this.#closed = true;
    this.#client?.close();
    this.#client = null;
  }

  /** See {@link DispatcherPort.storeStatus}. */
  async storeStatus(): ReturnType<DispatcherPort["storeStatus"]> {
    return (await this.client()).storeStatus();
  }
  /** See {@link DispatcherPort.collections}. */
  async collections(...a: Parameters<DispatcherPort["collections"]>) {
    return (await this.client()).collections(...a);
  }
  /** See {@link DispatcherPort.readAlias}. */
  async readAlias(...a: Parameters<DispatcherPort["readAlias"]>) {
    return (await this.client()).readAlias(...a);
  }
  /** See {@link DispatcherPort.searchItems}. */
  async searchItems(...a: Parameters<DispatcherPort["searchItems"]>) {
    return (await this.client()).searchItems(...a);
  }
  /** See {@link DispatcherPort.getItems}. */
  async getItems(...a: Parameters<DispatcherPort["getItems"]>) {
    return (await this.client()).getItems(...a);
  }
  /** See {@link DispatcherPort.requestRead}. */
  async requestRead(...a: Parameters<DispatcherPort["requestRead"]>) {
    return (await this.client()).requestRead(...a);
  }
  /** See {@link DispatcherPort.requestCreateItem}. */
  async requestCreateItem(...a: Parameters<DispatcherPort["requestCreateItem"]>) {
    return (await this.client()).requestCreateItem(...a);
  }
  /** See {@link DispatcherPort.requestSetSecret}. */
  async requestSetSecret(...a: Parameters<DispatcherPort["requestSetSecret"]>) {
    return (await this.client()).requestSetSecret(...a);
  }
  /** See {@link DispatcherPort.requestSetProperties}. */
  async requestSetProperties(...a: Parameters<DispatcherPort["requestSetProperties"]>) {
    return (await this.client()).requestSetProperties(...a);
  }
  /** See {@link DispatcherPort.requestDelete}. */
  async requestDelete(...a: Parameters<DispatcherPort["requestDelete"]>) {
    return (await this.client()).requestDelete(...a);
  }
}
