/**
 * Test doubles of the daemon's collaborators (clock, gpg, history), shared by its unit tests.
 *
 * @module
 */

import { startTestBus, type TestBus } from "../console/test_support.ts";
import { Bus } from "../lib/dbus.ts";
import { DispatcherClient } from "../lib/dispatcher_client.ts";
import type { HistoryEntry } from "../lib/protocol.ts";
import { GpgError, type GpgRunner, type ResolvedKey } from "./gpg.ts";
import type { HistorySink } from "./history.ts";
import { MEMORY_LOGIN, MemoryBackend } from "./memory_backend.ts";
import type { ProcReader } from "./proc.ts";
import { RequestManager } from "./requests.ts";
import { SecretRequests } from "./secret_requests.ts";
import { DispatcherService } from "./system_service.ts";
export { FakeClock } from "../lib/clock.ts";

/** A gpg that signs with a fixed signature; `nobody` is an unknown key. */
export class FakeGpg implements GpgRunner {
  signed: Uint8Array[] = [];
  /** How many times the passphrase cache was cleared. */
  forgotten = 0;
  forgetPassphrases(): Promise<void> {
    this.forgotten++;
    return Promise.resolve();
  }
  /** The signature of the last successful sign(). */
  lastSignature: Uint8Array | null = null;
  failSign = false;
  resolveKey(spec: string): Promise<ResolvedKey> {
    if (spec === "nobody") return Promise.reject(new GpgError("no secret key matches"));
    // "Other..." specs name another key (rules keyed on the fingerprint tell them apart).
    const fingerprint = spec.startsWith("Other") ? "OTHERFPR" : "FPR";
    return Promise.resolve({ localUser: fingerprint, fingerprint, uid: "A U Thor" });
  }
  sign(_key: ResolvedKey, payload: Uint8Array) {
    if (this.failSign) {
      return Promise.reject(new GpgError("gpg failed (exit 2)", "[GNUPG:] FAILURE sign 17\n"));
    }
    this.signed.push(payload);
    // A different signature each time, like gpg (timestamps): commit ids depend on it.
    this.lastSignature = new TextEncoder().encode(
      `-----BEGIN PGP SIGNATURE-----\n\nx${this.signed.length}\n-----END PGP SIGNATURE-----\n`,
    );
    return Promise.resolve({
      signature: this.lastSignature,
      status: "[GNUPG:] SIG_CREATED D 22 8 00 1 FPR\n",
    });
  }
}

/** A history kept in memory. */
export class MemoryHistory implements HistorySink {
  entries: HistoryEntry[] = [];
  append(e: HistoryEntry) {
    this.entries.push(e);
    return Promise.resolve();
  }
  tail(n: number) {
    return this.entries.slice(-n);
  }
}

/** A daemon's system-bus side on a private bus, with one stored item (see {@link dispatcherStack}). */
export interface DispatcherStack {
  bus: TestBus;
  manager: RequestManager;
  dispatcher: DispatcherService;
  history: MemoryHistory;
  /** The stored item "mail password" (`service=mail`, secret `hunter2`). */
  item: string;
  /** What the dispatcher logged. */
  log: string[];
  /** A new client connection (closed by {@link DispatcherStack.stop}). */
  connect(): Promise<DispatcherClient>;
  /** Connections {@link DispatcherStack.stop} closes (tests may add their own). */
  clients: { close(): void }[];
  stop(): Promise<void>;
}

/**
 * Starts a private dbus-daemon and the daemon's {@link DispatcherService} on it (fake gpg, the
 * memory backend holding one item, the memory history), serving `clientUid` (default this uid).
 *
 * @param proc how the daemon sees processes (default: it sees none)
 */
export async function dispatcherStack(
  options: { proc?: ProcReader; clientUid?: number } = {},
): Promise<DispatcherStack> {
  const clientUid = options.clientUid ?? Deno.uid()!;
  const bus = await startTestBus();
  const daemonBus = await Bus.connect(bus.address);
  const backend = new MemoryBackend();
  const item = await backend.createItem(MEMORY_LOGIN, {
    label: "mail password",
    attributes: { service: "mail" },
    secret: { value: new TextEncoder().encode("hunter2"), contentType: "text/plain" },
    replace: false,
  });
  const history = new MemoryHistory();
  const services: { dispatcher?: DispatcherService } = {};
  const manager = new RequestManager({
    gpg: new FakeGpg(),
    history,
    onChanged: (view) => services.dispatcher?.changed(view),
    onCompleted: (id, requester, c) => services.dispatcher?.complete(id, requester, c),
  });
  const proc = options.proc ?? { info: () => Promise.resolve(null) };
  const log: string[] = [];
  const secrets = new SecretRequests(backend, { manager, clientUid, proc });
  const dispatcher = new DispatcherService(daemonBus, manager, {
    clientUid,
    proc,
    secrets,
    log: (l) => log.push(l),
  });
  services.dispatcher = dispatcher;
  await dispatcher.start();
  const clients: { close(): void }[] = [];
  return {
    bus,
    manager,
    dispatcher,
    history,
    item,
    log,
    clients,
    async connect() {
      const c = await DispatcherClient.connect({
        address: bus.address,
        uid: clientUid,
        timeoutMs: 3000,
      });
      clients.push(c);
      return c;
    },
    async stop() {
      for (const c of clients) c.close();
      manager.shutdown("test over");
      daemonBus.close();
      await bus.stop();
    },
  };
}
