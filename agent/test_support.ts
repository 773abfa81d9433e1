/**
 * Test-only helpers for the agent (imported by `agent/*_test.ts`, never by an entrypoint): an
 * in-memory {@link FakePort} standing in for the approval daemon, whose requests the test
 * approves or denies, and a private "desktop" session bus with the agent serving on it.
 *
 * Tests need `--allow-run --allow-read --allow-write --allow-net --allow-sys --allow-env`.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { Bus, BusUnavailableError, type Message, MessageType, Variant } from "../lib/dbus.ts";
import { RequestRefusedError } from "../lib/dispatcher_client.ts";
import {
  type ClientReport,
  type CollectionInfo,
  DISPATCHER_IFACE,
  DISPATCHER_PATH,
  DISPATCHER_SIGNALS,
  dispatcherName,
  Errors,
  type ItemInfo,
  type Outcome,
  type PendingSummary,
  READ_WINDOW_MS,
  REQUEST_IFACE,
  requestIdFromPath,
  requestPath,
  type StoreStatus,
} from "../lib/protocol.ts";
import { COLLECTION_PREFIX } from "../lib/secret_service.ts";
import { startTestBus, type TestBus } from "../console/test_support.ts";
import { type AgentHandle, type AgentOptions, startAgent } from "./agent.ts";
import type {
  CreateItemRequest,
  DaemonListener,
  DispatcherPort,
  PendingRequest,
  RequestCompletion,
  SecretValue,
} from "./port.ts";

/** The default collection of a fresh {@link FakePort}. */
export const LOGIN = `${COLLECTION_PREFIX}login`;

/** Kinds of request the fake records. */
export type FakeKind = "read" | "create" | "set-secret" | "set-properties" | "delete";

/** One request raised at the fake; the test decides it. */
export class FakeRequest implements PendingRequest {
  readonly id: string;
  readonly path: string;
  readonly kind: FakeKind;
  /** The items concerned (read: all; others: the one item; create: none until done). */
  readonly items: string[];
  readonly client: ClientReport;
  /** The outcome, or `pending`. */
  state: Outcome | "pending" = "pending";
  /** How often `GetSecrets` was called on it. */
  getSecretsCalls = 0;
  readonly completed: Promise<RequestCompletion>;
  #resolve!: (c: RequestCompletion) => void;
  #port: FakePort;
  #apply: () => Partial<RequestCompletion>;
  #approvedAt = 0;
  #readable: string[] = [];

  /** @internal made by {@link FakePort} */
  constructor(
    port: FakePort,
    init: {
      kind: FakeKind;
      items: string[];
      client: ClientReport;
      apply: () => Partial<RequestCompletion>;
    },
  ) {
    this.#port = port;
    this.id = crypto.randomUUID().replaceAll("-", "");
    this.path = requestPath(this.id);
    this.kind = init.kind;
    this.items = init.items;
    this.client = init.client;
    this.#apply = init.apply;
    this.completed = new Promise((resolve) => this.#resolve = resolve);
  }

  /** What the daemon would announce about it (`RequestPending`). */
  get summary(): PendingSummary {
    const kind = this.kind === "read"
      ? "secret.read"
      : this.kind === "delete"
      ? "secret.delete"
      : "secret.write";
    const label = this.items.map((i) => this.#port.items.get(i)?.info.label ?? i)[0] ?? "new";
    return {
      id: this.id,
      kind,
      summary: `${this.kind} "${label}"`,
      program: this.client.exe ?? "?",
    };
  }

  /** The human approves: the operation runs on the fake store and the request is `done`. */
  approve(): void {
    if (this.state !== "pending") throw new Error(`request ${this.kind} is ${this.state}`);
    this.#port.announceEnd(this.id, "approved");
    const result = this.#apply();
    this.state = "done";
    this.#approvedAt = Date.now();
    this.#readable = this.kind === "read" ? this.items : result.item ? [result.item] : this.items;
    this.#resolve({ outcome: "done", status: "", message: "", ...result });
  }

  /** The human denies. */
  deny(): void {
    this.#finish("denied", "denied on the console");
  }

  #finish(outcome: Outcome, message: string): void {
    if (this.state !== "pending") return;
    this.state = outcome;
    this.#port.announceEnd(this.id, outcome);
    this.#resolve({ outcome, status: "", message });
  }

  /** `Request1.Cancel`. */
  cancel(): Promise<void> {
    this.#finish("cancelled", "cancelled by the requester");
    return Promise.resolve();
  }

  /** `Request1.GetSecrets`: values of approved items within the read window. */
  getSecrets(items: string[]): Promise<Map<string, SecretValue>> {
    this.getSecretsCalls++;
    if (this.state !== "done" || Date.now() - this.#approvedAt > this.#port.windowMs) {
      return Promise.reject(new RequestRefusedError(Errors.NotApproved, "not approved"));
    }
    const out = new Map<string, SecretValue>();
    for (const i of items) {
      const stored = this.#port.items.get(i);
      if (stored && this.#readable.includes(i)) out.set(i, { ...stored.secret });
    }
    return Promise.resolve(out);
  }
}

/** A stored item of the fake. */
export interface FakeItem {
  info: ItemInfo;
  secret: SecretValue;
}

/** An in-memory approval daemon: metadata answered at once, requests decided by the test. */
export class FakePort implements DispatcherPort {
  /** Collections, by path. */
  readonly collectionList: CollectionInfo[] = [
    { path: LOGIN, label: "Login", locked: false, created: 1_700_000_000, modified: 1_700_000_000 },
  ];
  /** Aliases → collection path. */
  readonly aliases = new Map<string, string>([["default", LOGIN]]);
  /** Items, by path. */
  readonly items = new Map<string, FakeItem>();
  /** Every request raised, in order. */
  readonly requests: FakeRequest[] = [];
  /** The client report of every call, in order, with the member name. */
  readonly calls: { member: string; client: ClientReport | null }[] = [];
  /** The store state reported. */
  status: StoreStatus = { state: "unlocked", message: "test store" };
  /** Ids passed to `denyOwn`, in order. */
  readonly deniedOwn: string[] = [];
  #down = false;
  #listeners = new Set<DaemonListener>();
  /** Decides each new request at once (null leaves it to the test). */
  autoDecide: ((r: FakeRequest) => "approve" | "deny" | null) | null = null;
  /** The approval window of `GetSecrets`, ms. */
  windowMs = READ_WINDOW_MS;
  #next = 1;
  #waiters: { pred: (r: FakeRequest) => boolean; resolve: (r: FakeRequest) => void }[] = [];

  /** Adds an item; returns its path. */
  addItem(
    label: string,
    attributes: Record<string, string>,
    value: string,
    collection = LOGIN,
  ): string {
    const path = `${collection}/${this.#next++}`;
    const now = Math.floor(Date.now() / 1000);
    this.items.set(path, {
      info: { path, collection, label, attributes: { ...attributes }, created: now, modified: now },
      secret: { value: new TextEncoder().encode(value), contentType: "text/plain" },
    });
    return path;
  }

  /** When true, every call fails as if the daemon were not running (listeners are told). */
  get down(): boolean {
    return this.#down;
  }
  set down(value: boolean) {
    if (value === this.#down) return;
    this.#down = value;
    for (const l of this.#listeners) {
      l.reachable(!value, value ? "the daemon is not running (test)" : "");
      if (!value) l.synced(this.pendingSummaries());
    }
  }

  /** What the daemon would list as pending (`ListPending`). */
  pendingSummaries(): PendingSummary[] {
    return this.requests.filter((r) => r.state === "pending").map((r) => r.summary);
  }

  /** @internal tells the listeners a request stopped waiting */
  announceEnd(id: string, state: string): void {
    for (const l of this.#listeners) l.ended(id, state);
  }

  /** `DenyOwn`: denies a pending request. */
  denyOwn(id: string): Promise<void> {
    this.#check("DenyOwn", null);
    this.deniedOwn.push(id);
    const r = this.requests.find((r) => r.id === id);
    if (!r) return Promise.reject(new RequestRefusedError(Errors.NoSuchRequest, "no request"));
    if (r.state !== "pending") {
      return Promise.reject(new RequestRefusedError(Errors.NotPending, `it is ${r.state}`));
    }
    r.deny();
    return Promise.resolve();
  }

  /** See {@link DispatcherPort.listen}: told at once, synchronously, like a subscription. */
  listen(listener: DaemonListener): () => void {
    this.#listeners.add(listener);
    listener.reachable(!this.#down, this.#down ? "the daemon is not running (test)" : "");
    if (!this.#down) listener.synced(this.pendingSummaries());
    return () => this.#listeners.delete(listener);
  }

  /** The next request raised that matches `pred` (one already raised and pending counts). */
  nextRequest(pred: (r: FakeRequest) => boolean = () => true): Promise<FakeRequest> {
    const pending = this.requests.find((r) => r.state === "pending" && pred(r));
    if (pending) return Promise.resolve(pending);
    return new Promise((resolve) => this.#waiters.push({ pred, resolve }));
  }

  #check(member: string, client: ClientReport | null): void {
    this.calls.push({ member, client });
    if (this.#down) {
      throw new BusUnavailableError("the daemon is not running (nobody owns the test name)");
    }
  }

  #raise(
    kind: FakeKind,
    items: string[],
    client: ClientReport,
    apply: () => Partial<RequestCompletion>,
  ): Promise<PendingRequest> {
    if (this.status.state === "locked") {
      return Promise.reject(new RequestRefusedError(Errors.StoreLocked, "the store is locked"));
    }
    const r = new FakeRequest(this, { kind, items, client, apply });
    this.requests.push(r);
    for (const l of this.#listeners) l.pending(r.summary);
    const decision = this.autoDecide?.(r);
    if (decision === "approve") r.approve();
    else if (decision === "deny") r.deny();
    for (const w of [...this.#waiters]) {
      if (w.pred(r)) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve(r);
        break;
      }
    }
    return Promise.resolve(r);
  }

  #item(path: string): FakeItem {
    const item = this.items.get(path);
    if (!item) throw new RequestRefusedError(Errors.NoSuchObject, `no item ${path}`);
    return item;
  }

  storeStatus(): Promise<StoreStatus> {
    this.#check("StoreStatus", null);
    return Promise.resolve({ ...this.status });
  }

  collections(client: ClientReport): Promise<CollectionInfo[]> {
    this.#check("Collections", client);
    return Promise.resolve(this.collectionList.map((c) => ({ ...c })));
  }

  readAlias(name: string, client: ClientReport): Promise<string | null> {
    this.#check("ReadAlias", client);
    return Promise.resolve(this.aliases.get(name) ?? null);
  }

  searchItems(
    attributes: Record<string, string>,
    options: { collection?: string | null; client: ClientReport },
  ): Promise<ItemInfo[]> {
    this.#check("SearchItems", options.client);
    const c = options.collection ?? null;
    if (c !== null && !this.collectionList.some((x) => x.path === c)) {
      return Promise.reject(new RequestRefusedError(Errors.NoSuchObject, `no collection ${c}`));
    }
    return Promise.resolve(
      [...this.items.values()].filter((i) =>
        (c === null || i.info.collection === c) &&
        Object.entries(attributes).every(([k, v]) => i.info.attributes[k] === v)
      ).map((i) => structuredClone(i.info)),
    );
  }

  getItems(paths: string[], client: ClientReport): Promise<ItemInfo[]> {
    this.#check("GetItems", client);
    return Promise.resolve(
      paths.flatMap((p) => this.items.has(p) ? [structuredClone(this.items.get(p)!.info)] : []),
    );
  }

  requestRead(items: string[], client: ClientReport): Promise<PendingRequest> {
    this.#check("RequestRead", client);
    for (const i of items) this.#item(i);
    return this.#raise("read", items, client, () => ({ items }));
  }

  requestCreateItem(collection: string, request: CreateItemRequest): Promise<PendingRequest> {
    this.#check("RequestCreateItem", request.client);
    return this.#raise("create", [], request.client, () => {
      const same = request.replace
        ? [...this.items.values()].find((i) =>
          i.info.collection === collection &&
          JSON.stringify(Object.entries(i.info.attributes).sort()) ===
            JSON.stringify(Object.entries(request.attributes).sort())
        )
        : undefined;
      const path = same?.info.path ??
        this.addItem(request.label, request.attributes, "", collection);
      const item = this.items.get(path)!;
      item.info.label = request.label;
      item.secret = {
        value: request.secret.value.slice(),
        contentType: request.secret.contentType,
      };
      return { item: path };
    });
  }

  requestSetSecret(
    item: string,
    request: { secret: SecretValue; client: ClientReport },
  ): Promise<PendingRequest> {
    this.#check("RequestSetSecret", request.client);
    this.#item(item);
    return this.#raise("set-secret", [item], request.client, () => {
      this.#item(item).secret = {
        value: request.secret.value.slice(),
        contentType: request.secret.contentType,
      };
      return {};
    });
  }

  requestSetProperties(
    item: string,
    request: { label?: string; attributes?: Record<string, string>; client: ClientReport },
  ): Promise<PendingRequest> {
    this.#check("RequestSetProperties", request.client);
    this.#item(item);
    return this.#raise("set-properties", [item], request.client, () => {
      const info = this.#item(item).info;
      if (request.label !== undefined) info.label = request.label;
      if (request.attributes !== undefined) info.attributes = { ...request.attributes };
      return {};
    });
  }

  requestDelete(item: string, client: ClientReport): Promise<PendingRequest> {
    this.#check("RequestDelete", client);
    this.#item(item);
    return this.#raise("delete", [item], client, () => {
      this.items.delete(item);
      return {};
    });
  }
}

/** A private desktop bus with the agent serving on it. */
export interface AgentFixture {
  bus: TestBus;
  port: FakePort;
  agent: AgentHandle;
  /** The agent's own connection. */
  agentBus: Bus;
  /** Log lines the agent wrote. */
  logs: string[];
  /** Environment for a client program on this bus (clean: no SECRET_BACKEND, own HOME). */
  env: Record<string, string>;
  /** Opens another client connection (closed by {@link stop}). */
  connect(): Promise<Bus>;
  stop(): Promise<void>;
}

/**
 * Starts a private session-type bus (no service dirs, allow-all policy) and the agent on it
 * with a {@link FakePort}.
 *
 * @param options `readWaitMs` for the agent (default 3000), `port` to use (default a new fake),
 *   `notifications` (default off) with their `noticeTiming`, and `beforeAgent` to run on the
 *   bus before the agent starts (e.g. a notification server)
 */
export async function agentFixture(
  options: {
    readWaitMs?: number;
    port?: FakePort;
    notifications?: boolean;
    noticeTiming?: AgentOptions["noticeTiming"];
    beforeAgent?: (address: string) => Promise<void>;
  } = {},
): Promise<AgentFixture> {
  const bus = await startTestBus();
  const port = options.port ?? new FakePort();
  const clients: Bus[] = [];
  const logs: string[] = [];
  let agentBus: Bus | undefined;
  try {
    await options.beforeAgent?.(bus.address);
    agentBus = await Bus.connect(bus.address);
    const agent = await startAgent({
      sessionBus: agentBus,
      port,
      readWaitMs: options.readWaitMs ?? 3000,
      log: (line) => logs.push(line),
      notifications: options.notifications ?? false,
      noticeTiming: options.noticeTiming,
    });
    const home = await Deno.makeTempDir({ prefix: "sd-agent-home-" });
    return {
      bus,
      port,
      agent,
      agentBus,
      logs,
      env: {
        DBUS_SESSION_BUS_ADDRESS: bus.address,
        PATH: "/usr/bin:/bin",
        HOME: home,
        LC_ALL: "C.UTF-8",
      },
      async connect() {
        const c = await Bus.connect(bus.address);
        clients.push(c);
        return c;
      },
      async stop() {
        for (const c of clients) c.close();
        await agent.stop();
        agentBus!.close();
        await bus.stop();
        await Deno.remove(home, { recursive: true }).catch(() => {});
      },
    };
  } catch (err) {
    agentBus?.close();
    await bus.stop();
    throw err;
  }
}

/** Runs a program with exactly `env`; returns its status and output. */
export async function runClient(
  cmd: string,
  args: string[],
  options: { env: Record<string, string>; stdin?: string },
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(cmd, {
    args,
    env: options.env,
    clearEnv: true,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  // A client that hangs fails its test (SIGKILL, exit 137) instead of stalling the suite.
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, CLIENT_TIMEOUT_MS);
  const out = await child.output().finally(() => clearTimeout(timer));
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr) +
      (out.signal === "SIGKILL" ? `\n(killed after ${CLIENT_TIMEOUT_MS} ms)` : ""),
  };
}

/** Longest a test client may run before it is killed, ms. */
export const CLIENT_TIMEOUT_MS = 60_000;

/** A fake daemon serving a {@link FakePort} on a bus, speaking the system-bus contract. */
export interface FakeDaemon {
  /** The daemon's connection. */
  bus: Bus;
  /** Connections that called `Subscribe`, in order (repeats included). */
  subscriptions: string[];
  /** How many times `ListPending` was called. */
  listCalls: number;
  /** Leaves the bus. */
  stop(): void;
}

/**
 * Serves `port` as the dispatcher of `uid` on the bus at `address`: the members of
 * `DISPATCHER_MEMBERS` and `REQUEST_MEMBERS`, `Completed` sent unicast to the requester,
 * `RequestPending`/`RequestEnded` sent unicast to subscribers. Lets the real `DispatcherClient`
 * (and the agent process) be tested against the wire protocol.
 */
export async function serveFakeDaemon(
  address: string,
  port: FakePort,
  uid: number,
): Promise<FakeDaemon> {
  const bus = await Bus.connect(address);
  const requests = new Map<string, { req: FakeRequest; owner: string }>();
  const subscribers = new Set<string>();
  const announce = (member: keyof typeof DISPATCHER_SIGNALS, body: string[]) => {
    for (const destination of subscribers) {
      try {
        bus.sendSignal({
          path: DISPATCHER_PATH,
          interface: DISPATCHER_IFACE,
          member,
          signature: DISPATCHER_SIGNALS[member],
          body,
        }, { destination });
      } catch { /* closed */ }
    }
  };
  const unlisten = port.listen({
    synced() {},
    reachable() {},
    pending: (p) => announce("RequestPending", [p.id, p.kind, p.summary, p.program]),
    ended: (id, state) => announce("RequestEnded", [id, state]),
  });
  const daemon: FakeDaemon = {
    bus,
    subscriptions: [],
    listCalls: 0,
    stop: () => {
      unlisten();
      bus.close();
    },
  };
  const itemTuple = (i: ItemInfo) => [
    i.path,
    i.collection,
    i.label,
    i.attributes,
    BigInt(i.created),
    BigInt(i.modified),
  ];
  const track = (owner: string) => (p: PendingRequest) => {
    const req = p as FakeRequest;
    requests.set(req.path, { req, owner });
    req.completed.then((c) => {
      const result: Record<string, InstanceType<typeof Variant>> = {
        message: new Variant("s", c.message),
      };
      if (c.item) result.item = new Variant("o", c.item);
      if (c.items) result.items = new Variant("ao", c.items);
      bus.sendSignal({
        path: req.path,
        interface: REQUEST_IFACE,
        member: "Completed",
        signature: "sa{sv}",
        body: [c.outcome, result],
      }, { destination: owner });
    });
    return [req.path];
  };
  const handle = async (msg: Message): Promise<[string, unknown[]]> => {
    const b = msg.body as unknown[];
    const client = (i: number) => JSON.parse(b[i] as string) as ClientReport;
    const bytes = (v: unknown) => new Uint8Array(v as Uint8Array);
    if (msg.interface === REQUEST_IFACE) {
      const entry = requests.get(String(msg.path));
      if (!entry || entry.owner !== msg.sender) {
        throw new RequestRefusedError(Errors.NoSuchRequest, "no such request");
      }
      if (msg.member === "Cancel") {
        await entry.req.cancel();
        return ["", []];
      }
      const values = await entry.req.getSecrets(b[0] as string[]);
      const out: Record<string, unknown[]> = {};
      for (const [k, v] of values) out[k] = [Buffer.from(v.value), v.contentType];
      return ["a{o(ays)}", [out]];
    }
    switch (msg.member) {
      case "Subscribe":
        subscribers.add(msg.sender!);
        daemon.subscriptions.push(msg.sender!);
        return ["", []];
      case "ListPending":
        daemon.listCalls++;
        return ["a(ssss)", [
          port.pendingSummaries().map((p) => [p.id, p.kind, p.summary, p.program]),
        ]];
      case "DenyOwn":
        await port.denyOwn(requestIdFromPath(b[0] as string) ?? "");
        return ["", []];
      case "StoreStatus": {
        const s = await port.storeStatus();
        return ["ss", [s.state, s.message]];
      }
      case "Collections":
        return ["a(osbtt)", [
          (await port.collections(client(0))).map((c) => [
            c.path,
            c.label,
            c.locked,
            BigInt(c.created),
            BigInt(c.modified),
          ]),
        ]];
      case "ReadAlias":
        return ["o", [(await port.readAlias(b[0] as string, client(1))) ?? "/"]];
      case "SearchItems": {
        const found = await port.searchItems(b[0] as Record<string, string>, {
          collection: b[1] === "/" ? null : b[1] as string,
          client: client(2),
        });
        return ["a(oosa{ss}tt)", [found.map(itemTuple)]];
      }
      case "GetItems":
        return ["a(oosa{ss}tt)", [
          (await port.getItems(b[0] as string[], client(1))).map(itemTuple),
        ]];
      case "RequestRead":
        return ["o", track(msg.sender!)(await port.requestRead(b[0] as string[], client(1)))];
      case "RequestCreateItem":
        return [
          "o",
          track(msg.sender!)(
            await port.requestCreateItem(b[0] as string, {
              label: b[1] as string,
              attributes: b[2] as Record<string, string>,
              secret: { value: bytes(b[3]), contentType: b[4] as string },
              replace: b[5] as boolean,
              client: client(6),
            }),
          ),
        ];
      case "RequestSetSecret":
        return [
          "o",
          track(msg.sender!)(
            await port.requestSetSecret(b[0] as string, {
              secret: { value: bytes(b[1]), contentType: b[2] as string },
              client: client(3),
            }),
          ),
        ];
      case "RequestSetProperties": {
        const props = b[1] as Record<string, { value: unknown }>;
        return [
          "o",
          track(msg.sender!)(
            await port.requestSetProperties(b[0] as string, {
              label: props.Label?.value as string | undefined,
              attributes: props.Attributes?.value as Record<string, string> | undefined,
              client: client(2),
            }),
          ),
        ];
      }
      case "RequestDelete":
        return ["o", track(msg.sender!)(await port.requestDelete(b[0] as string, client(1)))];
      default:
        throw new RequestRefusedError(Errors.InvalidArgs, `unknown member ${msg.member}`);
    }
  };
  bus.raw.addMethodHandler((msg: Message) => {
    if (msg.type !== MessageType.METHOD_CALL) return false;
    if (msg.path !== DISPATCHER_PATH && !String(msg.path).startsWith(`${DISPATCHER_PATH}/`)) {
      return false;
    }
    if (msg.interface !== DISPATCHER_IFACE && msg.interface !== REQUEST_IFACE) return false;
    handle(msg).then(
      ([sig, body]) => bus.reply(msg, sig, body),
      (err) =>
        bus.replyError(
          msg,
          err instanceof RequestRefusedError ? err.dbusName : Errors.Failed,
          (err as Error).message,
        ),
    );
    return true;
  });
  await bus.requestName(dispatcherName(uid));
  return daemon;
}
