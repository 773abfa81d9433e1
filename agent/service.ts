/**
 * The Secret Service as the agent serves it (spec "Secret Service API Draft 0.2"; measured
 * client behaviour in reference secret-service.md): every call from a client connection is
 * answered here, forwarding metadata to the daemon and turning the spec's locking model into
 * the human's approval.
 *
 * - An item is locked for a client connection until the human approved that connection's read
 *   of it (`Item.Locked`, the `locked` list of `SearchItems`). One exception, for libsecret's
 *   clear (below): a connection that has no session cannot read any value, so to it
 *   `Service.SearchItems` lists every match as unlocked and `Item.Locked` is false; a
 *   `GetSecret(s)` it makes after opening a session still raises a request and waits for it. `Unlock` answers with a prompt
 *   whose `Prompt()` raises a read request; `GetSecret(s)` of an item not yet approved raises
 *   (or joins) one itself and waits up to `readWaitMs` for the decision.
 * - Writes never ride on a read approval: `CreateItem` and `Item.Delete` answer with a prompt
 *   that raises the write request; `SetSecret` and `Properties.Set` (no prompt in the spec)
 *   raise it and wait up to `readWaitMs`, withdrawing it when no decision came.
 * - Object paths are the backend's, as the daemon reports them; alias paths
 *   (`/org/freedesktop/secrets/aliases/<name>`) act as the collection they name.
 * - Collections are not created from here: `CreateCollection` answers with the collection its
 *   alias already names, `IsLocked` with the store's message for the `default` alias while the
 *   store is locked (a store without a keyring yet: libsecret creates the default collection
 *   this way when it finds none, and then shows that message), `NotSupported` otherwise.
 *
 * Client behaviour this relies on, verified by the tests in `agent/` (libsecret 0.20.5's
 * secret-tool, python3-secretstorage 3.3.3):
 * - Both handle the prompt `CreateItem` returns and wait for `Completed` with no time limit
 *   (checked with a 30 s decision), so creating never uses the bounded wait.
 * - `secret-tool lookup` and `search --unlock` unlock the locked search results through a
 *   prompt; plain `search` calls `GetSecrets` on locked items (the bounded wait).
 * - secretstorage checks `Item.Locked` before `get_secret()`/`delete()` and raises
 *   `LockedException`: its callers must `unlock()` first (python-keyring does).
 * - libsecret's clear (`secret-tool clear`, `git credential-libsecret erase`, NetworkManager,
 *   GNOME Online Accounts) searches without opening a session and deletes only the results
 *   listed as unlocked (libsecret secret-password.c, `on_delete_searched`): hence the exception
 *   above, so clearing reaches `Item.Delete`, whose prompt asks the human. Clients that search
 *   before they open a session and then read (`git credential-libsecret get`) read through the
 *   bounded wait instead of a prompt.
 * - libsecret turns a dismissed prompt into "nothing stored/found" without an error; hence a
 *   refusal within the wait is also the error of `Prompt()` (see `prompts.ts`).
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { Variant } from "../lib/dbus.ts";
import { RequestRefusedError } from "../lib/dispatcher_client.ts";
import {
  type ClientReport,
  type CollectionInfo,
  Errors,
  type ItemInfo,
  MAX_SECRET_BYTES,
  type Outcome,
} from "../lib/protocol.ts";
import {
  ALIAS_PREFIX,
  aliasFromPath,
  COLLECTION_PREFIX,
  collectionOf,
  Iface,
  isCollectionPath,
  isItemPath,
  NULL_PATH,
  PROMPT_PREFIX,
  Props,
  SecretErrors,
  type SecretStruct,
  SERVICE_PATH,
  SESSION_PREFIX,
} from "../lib/secret_service.ts";
import type { Approvals } from "./approvals.ts";
import { bounded, TIMEOUT } from "./bounded.ts";
import type { ClientReports } from "./client_info.ts";
import { noSuchObject, ServiceError, toServiceError } from "./errors.ts";
import { introspectXml, type NodeKind } from "./introspect.ts";
import type { DispatcherPort, PendingRequest, RequestCompletion, SecretValue } from "./port.ts";
import type { PromptResult, PromptTable, PromptWork } from "./prompts.ts";
import type { SessionTable, VariantLike } from "./sessions.ts";

/** A method call as the service sees it (the fields of a dbus-next message it uses). */
export interface Call {
  /** The caller's unique name. */
  sender: string;
  path: string;
  /** May be missing: D-Bus allows calls without an interface. */
  interface?: string;
  member: string;
  signature: string;
  body: unknown[];
  /**
   * When the call arrived, ms since the epoch (default: when `handle` saw it). Waits for the
   * human end `readWaitMs` after it, however long the calls before them took.
   */
  receivedAt?: number;
}

/** A method return to send: signature and body. */
export interface Reply {
  signature: string;
  body: unknown[];
  /** Runs right after the reply was sent (e.g. a prompt's `Completed`). */
  after?: () => void;
}

/** A signal to broadcast (changes made through the agent). */
export interface SignalOut {
  path: string;
  interface: string;
  member: string;
  signature: string;
  body: unknown[];
}

/** What the service works with; the tables are shared with the agent's bookkeeping. */
export interface ServiceContext {
  port: DispatcherPort;
  reports: ClientReports;
  sessions: SessionTable;
  prompts: PromptTable;
  approvals: Approvals;
  /** Starts watching a client connection (so its state is dropped when it leaves). */
  watch(client: string): Promise<void>;
  /** Broadcasts a signal. */
  emit(signal: SignalOut): void;
  /** The bus daemon's machine id (`Peer.GetMachineId`). */
  machineId(): Promise<string>;
  /** How long `GetSecret(s)`, `SetSecret` and `Properties.Set` wait for the human, ms. */
  readWaitMs: number;
  /** One line for the log (never a secret value). */
  log(line: string): void;
}

/** In-signatures of the methods of each interface (spec ch. 14, D-Bus specification). */
const METHODS: Record<string, Record<string, string>> = {
  [Iface.Service]: {
    OpenSession: "sv",
    CreateCollection: "a{sv}s",
    SearchItems: "a{ss}",
    Unlock: "ao",
    Lock: "ao",
    GetSecrets: "aoo",
    ReadAlias: "s",
    SetAlias: "so",
  },
  [Iface.Collection]: { Delete: "", SearchItems: "a{ss}", CreateItem: "a{sv}(oayays)b" },
  [Iface.Item]: { Delete: "", GetSecret: "o", SetSecret: "(oayays)" },
  [Iface.Session]: { Close: "" },
  [Iface.Prompt]: { Prompt: "s", Dismiss: "" },
  [Iface.Properties]: { Get: "ss", GetAll: "s", Set: "ssv" },
  [Iface.Introspectable]: { Introspect: "" },
  [Iface.Peer]: { Ping: "", GetMachineId: "" },
};

const STANDARD: string[] = [Iface.Properties, Iface.Introspectable, Iface.Peer];

/** The Secret Service interface of each kind of node. */
const KIND_IFACE: Record<NodeKind, string | null> = {
  none: null,
  service: Iface.Service,
  collection: Iface.Collection,
  item: Iface.Item,
  session: Iface.Session,
  prompt: Iface.Prompt,
};

/** Parent nodes that exist only so the tree can be walked. */
const PARENTS: Record<string, string[]> = {
  "/": ["org"],
  "/org": ["freedesktop"],
  "/org/freedesktop": ["secrets"],
};

const isLocked = (text: string) => new ServiceError(SecretErrors.IsLocked, text);
const deniedOnConsole = () =>
  new ServiceError(SecretErrors.AccessDenied, "secrets-dispatcher: denied on the console");

/** A short description of a client for the log. */
function describe(r: ClientReport): string {
  const program = r.exe ?? r.cmdline?.[0] ?? "?";
  return `${r.busName} (pid ${r.pid ?? "?"}, ${program})`;
}

/** Serves the Secret Service calls of every client connection. */
export class SecretService {
  #ctx: ServiceContext;

  /** @param ctx the port, the tables and the hooks to use */
  constructor(ctx: ServiceContext) {
    this.#ctx = ctx;
  }

  /**
   * Answers one method call.
   *
   * @returns the reply to send
   * @throws {ServiceError} the error reply to send (anything else thrown is mapped by the
   *   caller with `toServiceError`)
   */
  async handle(call: Call): Promise<Reply> {
    call.receivedAt ??= Date.now();
    const { kind, iface } = this.#route(call);
    const expected = METHODS[iface][call.member];
    if ((call.signature ?? "") !== expected) {
      throw new ServiceError(
        SecretErrors.InvalidArgs,
        `${iface}.${call.member} takes "${expected}", got "${call.signature ?? ""}"`,
      );
    }
    if (iface === Iface.Peer) {
      if (call.member === "Ping") return { signature: "", body: [] };
      return { signature: "s", body: [await this.#ctx.machineId()] };
    }
    if (iface === Iface.Introspectable) {
      return { signature: "s", body: [await this.#introspect(call, kind)] };
    }
    if (kind === "none") throw noSuchObject(call.path);
    if (iface === Iface.Properties) return await this.#properties(call, kind);
    switch (kind) {
      case "service":
        return await this.#service(call);
      case "collection":
        return await this.#collection(call);
      case "item":
        return await this.#item(call);
      case "session":
        this.#ctx.sessions.close(call.path, call.sender);
        return { signature: "", body: [] };
      case "prompt": {
        if (call.member === "Dismiss") {
          await this.#ctx.prompts.dismiss(call.path, call.sender);
          return { signature: "", body: [] };
        }
        const { after } = await this.#ctx.prompts.prompt(call.path, call.sender);
        return { signature: "", body: [], after };
      }
    }
  }

  /**
   * The kind of node a path names (by its shape: existence is checked by each handler) and the
   * interface the call is for.
   */
  #route(call: Call): { kind: NodeKind; iface: string } {
    const p = call.path;
    let kind: NodeKind | null = null;
    if (p === SERVICE_PATH) kind = "service";
    else if (isCollectionPath(p) || aliasFromPath(p) !== null) kind = "collection";
    else if (isItemPath(p)) kind = "item";
    else if (/^\/org\/freedesktop\/secrets\/session\/[0-9]+$/.test(p)) {
      if (!this.#ctx.sessions.owns(p, call.sender)) throw noSuchObject(p);
      kind = "session";
    } else if (/^\/org\/freedesktop\/secrets\/prompt\/[0-9]+$/.test(p)) {
      if (!this.#ctx.prompts.owns(p, call.sender)) throw noSuchObject(p);
      kind = "prompt";
    } else if (p in PARENTS || this.#isListNode(p)) kind = "none";
    if (kind === null) throw noSuchObject(p);
    const own = KIND_IFACE[kind];
    const ifaces = own ? [own, ...STANDARD] : STANDARD;
    const iface = call.interface || ifaces.find((i) => call.member in METHODS[i]);
    if (!iface || !ifaces.includes(iface) || !(call.member in METHODS[iface])) {
      if (kind === "none" && !(iface && STANDARD.includes(iface))) throw noSuchObject(p);
      throw new ServiceError(
        SecretErrors.UnknownMethod,
        `No method ${call.member} in interface ${call.interface || "(none)"} at ${p}`,
      );
    }
    return { kind, iface };
  }

  #isListNode(path: string): boolean {
    return [COLLECTION_PREFIX, ALIAS_PREFIX, SESSION_PREFIX, PROMPT_PREFIX].some((prefix) =>
      path === prefix.slice(0, -1)
    );
  }

  // ---- resolution -------------------------------------------------------------------------

  /** The collection a collection or alias path names. */
  async #collectionAt(path: string, report: ClientReport): Promise<CollectionInfo> {
    const alias = aliasFromPath(path);
    const real = alias === null ? path : await this.#ctx.port.readAlias(alias, report);
    if (real !== null) {
      const info = (await this.#ctx.port.collections(report)).find((c) => c.path === real);
      if (info) return info;
    }
    throw noSuchObject(path);
  }

  /** The item at `path`. */
  async #itemAt(path: string, report: ClientReport): Promise<ItemInfo> {
    const [info] = await this.#ctx.port.getItems([path], report);
    if (!info || info.path !== path) throw noSuchObject(path);
    return info;
  }

  #report(call: Call): Promise<ClientReport> {
    return this.#ctx.reports.report(call.sender);
  }

  // ---- org.freedesktop.Secret.Service -----------------------------------------------------

  async #service(call: Call): Promise<Reply> {
    const { port, sessions, approvals } = this.#ctx;
    const me = call.sender;
    switch (call.member) {
      case "OpenSession": {
        const [algorithm, input] = call.body as [string, VariantLike];
        const opened = sessions.open(me, algorithm, input);
        await this.#ctx.watch(me);
        const out = opened.output.signature === "ay"
          ? new Variant("ay", Buffer.from(opened.output.value))
          : new Variant("s", "");
        return { signature: "vo", body: [out, opened.path] };
      }
      case "CreateCollection": {
        const [, alias] = call.body as [unknown, string];
        if (alias !== "") {
          const existing = await port.readAlias(alias, await this.#report(call));
          if (existing !== null) return { signature: "oo", body: [existing, NULL_PATH] };
          // libsecret asks for the default collection this way when it has none: a store
          // without a keyring yet says so (it is created on the console, not from here).
          const store = alias === "default" ? await port.storeStatus().catch(() => null) : null;
          if (store?.state === "locked") {
            throw new ServiceError(SecretErrors.IsLocked, `secrets-dispatcher: ${store.message}`);
          }
        }
        throw new ServiceError(
          SecretErrors.NotSupported,
          "secrets-dispatcher: collections are created on the companion's store",
        );
      }
      case "SearchItems": {
        const [attributes] = call.body as [Record<string, string>];
        const found = await port.searchItems(attributes, { client: await this.#report(call) });
        const unlocked: string[] = [];
        const locked: string[] = [];
        // Without a session no value can be read: list all as unlocked (see the module doc).
        const canRead = sessions.hasOwner(me);
        for (const i of found) {
          (!canRead || approvals.approved(me, i.path) ? unlocked : locked).push(i.path);
        }
        return { signature: "aoao", body: [unlocked, locked] };
      }
      case "Unlock":
        return await this.#unlock(call, call.body[0] as string[]);
      case "Lock": {
        const objects = call.body[0] as string[];
        const locked: string[] = [];
        const report = await this.#report(call);
        for (const path of objects) {
          if (isItemPath(path)) {
            approvals.revoke(me, (i) => i === path);
            locked.push(path);
          } else if (isCollectionPath(path) || aliasFromPath(path) !== null) {
            const c = await this.#collectionAt(path, report).catch(() => null);
            if (!c) continue;
            approvals.revoke(me, (i) => collectionOf(i) === c.path);
            locked.push(path);
          }
        }
        return { signature: "aoo", body: [locked, NULL_PATH] };
      }
      case "GetSecrets": {
        const [items, session] = call.body as [string[], string];
        const codec = sessions.codec(session, me);
        const report = await this.#report(call);
        const existing = (await port.getItems(items, report)).map((i) => i.path);
        const values = existing.length
          ? await this.#readValues(me, report, { items: existing, deadline: this.#deadline(call) })
          : new Map();
        const out: Record<string, SecretStruct> = {};
        for (const [path, v] of values) out[path] = this.#encode(session, codec, v);
        return { signature: "a{o(oayays)}", body: [out] };
      }
      case "ReadAlias": {
        const [name] = call.body as [string];
        const path = await port.readAlias(name, await this.#report(call));
        return { signature: "o", body: [path ?? NULL_PATH] };
      }
      default: // SetAlias
        throw new ServiceError(
          SecretErrors.NotSupported,
          "secrets-dispatcher: aliases are managed on the companion's store",
        );
    }
  }

  /**
   * `Unlock(ao)`: approved items and collections of an unlocked store are unlocked at once;
   * the other items (and collections of a locked store) get a prompt whose `Prompt()` raises a
   * read request. Unknown paths are left out, as gnome-keyring does.
   */
  async #unlock(call: Call, objects: string[]): Promise<Reply> {
    const { port, approvals } = this.#ctx;
    const me = call.sender;
    const report = await this.#report(call);
    const unlocked: string[] = [];
    const lockedCollections: string[] = [];
    const itemPaths = objects.filter(isItemPath);
    const existing = new Set(
      itemPaths.length ? (await port.getItems(itemPaths, report)).map((i) => i.path) : [],
    );
    const toRead: string[] = [];
    for (const path of objects) {
      if (isItemPath(path)) {
        if (!existing.has(path)) continue;
        if (approvals.approved(me, path)) unlocked.push(path);
        else if (!toRead.includes(path)) toRead.push(path);
      } else if (isCollectionPath(path) || aliasFromPath(path) !== null) {
        const c = await this.#collectionAt(path, report).catch(() => null);
        if (!c) continue;
        if (await this.#collectionLocked(c)) lockedCollections.push(path);
        else unlocked.push(path);
      }
    }
    if (toRead.length === 0 && lockedCollections.length === 0) {
      return { signature: "aoo", body: [unlocked, NULL_PATH] };
    }
    await this.#ctx.watch(me);
    const prompt = this.#ctx.prompts.create(
      me,
      this.#unlockWork(me, report, toRead, lockedCollections),
    );
    return { signature: "aoo", body: [unlocked, prompt] };
  }

  #unlockWork(
    me: string,
    report: ClientReport,
    items: string[],
    collections: string[],
  ): PromptWork {
    const dismissed: PromptResult = { dismissed: true, result: { signature: "ao", value: [] } };
    let request: Promise<PendingRequest> | null = null;
    return {
      dismissed: dismissed.result,
      start: async () => {
        const { port, approvals } = this.#ctx;
        // Collections unlock with the store; the agent cannot unlock it, only report it.
        const storeOpen = async () =>
          collections.length > 0 &&
          (await port.storeStatus().catch(() => null))?.state === "unlocked";
        if (items.length === 0) {
          return {
            outcome: storeOpen().then((open) =>
              open
                ? { dismissed: false, result: { signature: "ao", value: collections } }
                : dismissed
            ),
          };
        }
        const read = await approvals.read(me, items, () => port.requestRead(items, report));
        request = read.request;
        const req = await read.request;
        this.#ctx.log(`read request ${req.id} (unlock prompt) for ${describe(report)}`);
        return {
          outcome: read.result.then(async (r): Promise<PromptResult> => {
            if (!r.approved) return { ...dismissed, error: this.#refusal(r.outcome, r.message) };
            const done = items.filter((i) => r.items.includes(i));
            const value = (await storeOpen()) ? [...done, ...collections] : done;
            return { dismissed: false, result: { signature: "ao", value } };
          }),
        };
      },
      cancel: async () => {
        await request?.then((r) => r.cancel(), () => {});
      },
    };
  }

  async #collectionLocked(c: CollectionInfo): Promise<boolean> {
    if (c.locked) return true;
    return (await this.#ctx.port.storeStatus()).state !== "unlocked";
  }

  // ---- org.freedesktop.Secret.Collection --------------------------------------------------

  async #collection(call: Call): Promise<Reply> {
    const report = await this.#report(call);
    const c = await this.#collectionAt(call.path, report);
    switch (call.member) {
      case "SearchItems": {
        const [attributes] = call.body as [Record<string, string>];
        const found = await this.#ctx.port.searchItems(attributes, {
          collection: c.path,
          client: report,
        });
        return { signature: "ao", body: [found.map((i) => i.path)] };
      }
      case "CreateItem":
        return await this.#createItem(call, c, report);
      default: // Delete
        throw new ServiceError(
          SecretErrors.NotSupported,
          "secrets-dispatcher: collections are deleted on the companion's store",
        );
    }
  }

  /** `CreateItem`: decodes the secret now, answers `("/", prompt)`; the prompt asks the human. */
  async #createItem(call: Call, c: CollectionInfo, report: ClientReport): Promise<Reply> {
    const [props, secret, replace] = call.body as [
      Record<string, VariantLike>,
      SecretStruct,
      boolean,
    ];
    const label = props[Props.ItemLabel];
    const attrs = props[Props.ItemAttributes];
    if (label !== undefined && label.signature !== "s") {
      throw new ServiceError(SecretErrors.InvalidArgs, `${Props.ItemLabel} must be a string`);
    }
    if (attrs !== undefined && attrs.signature !== "a{ss}") {
      throw new ServiceError(SecretErrors.InvalidArgs, `${Props.ItemAttributes} must be a{ss}`);
    }
    const value = this.#decode(call.sender, secret);
    if (await this.#collectionLocked(c)) throw isLocked(`The collection ${c.path} is locked`);
    const request = {
      label: (label?.value as string | undefined) ?? "",
      attributes: (attrs?.value as Record<string, string> | undefined) ?? {},
      secret: value,
      replace,
      client: report,
    };
    const me = call.sender;
    await this.#ctx.watch(me);
    const dismissed: PromptResult = {
      dismissed: true,
      result: { signature: "o", value: NULL_PATH },
    };
    const prompt = this.#ctx.prompts.create(
      me,
      this.#writeWork(me, report, {
        what: "create",
        dismissed,
        raise: () => this.#ctx.port.requestCreateItem(c.path, request),
        done: (req, completion) => {
          const item = completion.item;
          if (!item) return dismissed;
          // The client may read back what it wrote, within the window.
          this.#ctx.approvals.grant(me, [item], req);
          this.#changed(collectionOf(item), "ItemCreated", item);
          return { dismissed: false, result: { signature: "o", value: item } };
        },
      }),
    );
    return { signature: "oo", body: [NULL_PATH, prompt] };
  }

  /** Decodes a client's Secret struct with its session. */
  #decode(caller: string, secret: SecretStruct): SecretValue {
    const [session, parameters, value, contentType] = secret;
    const codec = this.#ctx.sessions.codec(session, caller);
    const plain = codec.decode(new Uint8Array(parameters), new Uint8Array(value));
    if (plain.length > MAX_SECRET_BYTES) {
      throw new ServiceError(
        SecretErrors.InvalidArgs,
        `The secret is larger than ${MAX_SECRET_BYTES} bytes`,
      );
    }
    return { value: plain, contentType };
  }

  #encode(
    session: string,
    codec: ReturnType<SessionTable["codec"]>,
    v: SecretValue,
  ): SecretStruct {
    const { parameters, value } = codec.encode(v.value);
    return [session, Buffer.from(parameters), Buffer.from(value), v.contentType];
  }

  /** A prompt that raises a write request and reports its outcome through `Completed`. */
  #writeWork(
    me: string,
    report: ClientReport,
    op: {
      what: string;
      dismissed: PromptResult;
      raise: () => Promise<PendingRequest>;
      done: (req: PendingRequest, c: RequestCompletion) => PromptResult;
    },
  ): PromptWork {
    let request: PendingRequest | null = null;
    return {
      dismissed: op.dismissed.result,
      start: async () => {
        const req = await op.raise();
        request = req;
        const untrack = this.#ctx.approvals.trackWrite(me, req);
        this.#ctx.log(`${op.what} request ${req.id} (prompt) for ${describe(report)}`);
        return {
          outcome: req.completed.then(
            (c) =>
              c.outcome === "done"
                ? op.done(req, c)
                : { ...op.dismissed, error: this.#refusal(c.outcome, c.message) },
            (err) => ({ ...op.dismissed, error: toServiceError(err) }),
          ).finally(untrack),
        };
      },
      cancel: async () => {
        await request?.cancel();
      },
    };
  }

  // ---- org.freedesktop.Secret.Item --------------------------------------------------------

  async #item(call: Call): Promise<Reply> {
    const me = call.sender;
    const report = await this.#report(call);
    const item = await this.#itemAt(call.path, report);
    switch (call.member) {
      case "GetSecret": {
        const [session] = call.body as [string];
        const codec = this.#ctx.sessions.codec(session, me);
        const v = (await this.#readValues(me, report, {
          items: [item.path],
          deadline: this.#deadline(call),
        })).get(item.path);
        if (!v) throw isLocked(`The item ${item.path} is locked`);
        return { signature: "(oayays)", body: [this.#encode(session, codec, v)] };
      }
      case "SetSecret": {
        const [secret] = call.body as [SecretStruct];
        const value = this.#decode(me, secret);
        const req = await this.#write(me, {
          report,
          what: "set-secret",
          raise: () =>
            this.#ctx.port.requestSetSecret(item.path, { secret: value, client: report }),
          deadline: this.#deadline(call),
        });
        this.#ctx.approvals.grant(me, [item.path], req);
        this.#changed(item.collection, "ItemChanged", item.path);
        return { signature: "", body: [] };
      }
      default: { // Delete
        await this.#ctx.watch(me);
        const dismissed: PromptResult = { dismissed: true, result: { signature: "s", value: "" } };
        const prompt = this.#ctx.prompts.create(
          me,
          this.#writeWork(me, report, {
            what: "delete",
            dismissed,
            raise: () => this.#ctx.port.requestDelete(item.path, report),
            done: () => {
              this.#ctx.approvals.revokeAll((i) => i === item.path);
              this.#changed(item.collection, "ItemDeleted", item.path);
              return { dismissed: false, result: { signature: "s", value: "" } };
            },
          }),
        );
        return { signature: "o", body: [prompt] };
      }
    }
  }

  /** When the waits of `call` for the human end: `readWaitMs` after it arrived, ms. */
  #deadline(call: Call): number {
    return (call.receivedAt ?? Date.now()) + this.#ctx.readWaitMs;
  }

  /**
   * Raises a write request without a prompt and waits up to `readWaitMs` for the decision.
   *
   * @returns the `done` request
   * @throws {ServiceError} AccessDenied "denied on the console"; IsLocked when no decision came
   *   in time (the request is withdrawn: the client was told it failed) or the request expired
   *   or was cancelled; Failed when it failed at the daemon
   */
  async #write(
    me: string,
    op: {
      report: ClientReport;
      what: string;
      raise: () => Promise<PendingRequest>;
      /** When the wait ends, ms since the epoch ({@link #deadline}). */
      deadline: number;
    },
  ): Promise<PendingRequest> {
    await this.#ctx.watch(me);
    const req = await op.raise();
    const untrack = this.#ctx.approvals.trackWrite(me, req);
    this.#ctx.log(`${op.what} request ${req.id} for ${describe(op.report)}`);
    try {
      const c = await bounded(req.completed, Math.max(0, op.deadline - Date.now()));
      if (c === TIMEOUT) {
        await req.cancel();
        throw isLocked(
          `secrets-dispatcher: no decision on the console within ${
            Math.round(this.#ctx.readWaitMs / 1000)
          } s; the request was withdrawn`,
        );
      }
      if (c.outcome === "done") return req;
      throw this.#notDone(c.outcome, c.message);
    } finally {
      untrack();
    }
  }

  /** The error a refused prompt answers `Prompt()` with: only denials and failures have one. */
  #refusal(outcome: Outcome, message: string): ServiceError | undefined {
    return outcome === "denied" || outcome === "failed"
      ? this.#notDone(outcome, message)
      : undefined;
  }

  #notDone(outcome: Outcome, message: string): ServiceError {
    if (outcome === "denied") return deniedOnConsole();
    if (outcome === "failed") {
      return new ServiceError(
        SecretErrors.Failed,
        `secrets-dispatcher: the operation failed${message ? `: ${message}` : ""}`,
      );
    }
    return isLocked(`secrets-dispatcher: the request ${outcome}`);
  }

  /**
   * The values of `items` (existing ones) for the caller: approved items are fetched from the
   * request that approved them; for the others a read request is raised (or the caller's
   * pending one joined) and awaited until `deadline` (`readWaitMs` after the call arrived). An
   * approval whose window closed at the
   * daemon is asked for again once. Items the human left out are missing from the result.
   *
   * @throws {ServiceError} AccessDenied (denied), IsLocked (no decision in time, expired,
   *   cancelled), Failed
   */
  async #readValues(
    me: string,
    report: ClientReport,
    { items, deadline }: { items: string[]; deadline: number },
  ): Promise<Map<string, SecretValue>> {
    const { approvals } = this.#ctx;
    for (let attempt = 0;; attempt++) {
      const missing = items.filter((i) => !approvals.approved(me, i));
      if (missing.length > 0) {
        await this.#ctx.watch(me);
        const read = await approvals.read(
          me,
          missing,
          () => this.#ctx.port.requestRead(missing, report),
        );
        const req = await read.request;
        this.#ctx.log(`read request ${req.id} for ${describe(report)}`);
        const r = await bounded(read.result, Math.max(0, deadline - Date.now()));
        if (r === TIMEOUT) {
          // The request stays pending while the client stays connected: a retry joins it.
          throw isLocked(
            `secrets-dispatcher: not approved yet, waiting for the console (request ${
              req.id.slice(0, 8)
            })`,
          );
        }
        if (!r.approved) throw this.#notDone(r.outcome, r.message);
      }
      const bySource = new Map<PendingRequest, string[]>();
      for (const i of items) {
        const src = approvals.source(me, i);
        if (src) bySource.set(src, [...(bySource.get(src) ?? []), i]);
      }
      const values = new Map<string, SecretValue>();
      let expired = false;
      for (const [src, group] of bySource) {
        try {
          for (const [path, v] of await src.getSecrets(group)) {
            if (group.includes(path)) values.set(path, v);
          }
        } catch (err) {
          if (!(err instanceof RequestRefusedError) || err.dbusName !== Errors.NotApproved) {
            throw err;
          }
          approvals.revoke(me, (i) => group.includes(i));
          expired = true;
        }
      }
      if (!expired || attempt > 0) return values;
    }
  }

  // ---- org.freedesktop.DBus.Properties ----------------------------------------------------

  async #properties(call: Call, kind: NodeKind): Promise<Reply> {
    const own = KIND_IFACE[kind]!;
    const [iface, name] = call.body as [string, string];
    const known = iface === "" || iface === own || STANDARD.includes(iface);
    if (!known) {
      throw new ServiceError(
        SecretErrors.InvalidArgs,
        `No such interface ${iface} at ${call.path}`,
      );
    }
    const mine = iface === "" || iface === own;
    if (call.member === "Set") return await this.#setProperty(call, kind, mine ? name : "");
    const props = mine ? await this.#propertyValues(call, kind) : {};
    if (call.member === "GetAll") return { signature: "a{sv}", body: [props] };
    const v = props[name];
    if (!v) {
      throw new ServiceError(SecretErrors.InvalidArgs, `No such property ${name} on ${iface}`);
    }
    return { signature: "v", body: [v] };
  }

  /** Every property of the node at `call.path`, as variants. Checks that the node exists. */
  async #propertyValues(call: Call, kind: NodeKind): Promise<Record<string, unknown>> {
    const report = await this.#report(call);
    const { port } = this.#ctx;
    switch (kind) {
      case "service":
        return {
          Collections: new Variant("ao", (await port.collections(report)).map((c) => c.path)),
        };
      case "collection": {
        const c = await this.#collectionAt(call.path, report);
        const items = await port.searchItems({}, { collection: c.path, client: report });
        return {
          Items: new Variant("ao", items.map((i) => i.path)),
          Label: new Variant("s", c.label),
          Locked: new Variant("b", await this.#collectionLocked(c)),
          Created: new Variant("t", BigInt(c.created)),
          Modified: new Variant("t", BigInt(c.modified)),
        };
      }
      case "item": {
        const i = await this.#itemAt(call.path, report);
        return {
          // As in SearchItems: a connection without a session sees items unlocked.
          Locked: new Variant(
            "b",
            this.#ctx.sessions.hasOwner(call.sender) &&
              !this.#ctx.approvals.approved(call.sender, i.path),
          ),
          Attributes: new Variant("a{ss}", i.attributes),
          Label: new Variant("s", i.label),
          Created: new Variant("t", BigInt(i.created)),
          Modified: new Variant("t", BigInt(i.modified)),
        };
      }
      default: // sessions and prompts have no properties
        return {};
    }
  }

  /**
   * `Properties.Set`: an item's `Label` or `Attributes` (raises a write request and waits);
   * everything else is read-only here.
   */
  async #setProperty(call: Call, kind: NodeKind, name: string): Promise<Reply> {
    const value = call.body[2] as VariantLike;
    const report = await this.#report(call);
    if (kind === "collection" && name === "Label") {
      await this.#collectionAt(call.path, report);
      throw new ServiceError(
        SecretErrors.NotSupported,
        "secrets-dispatcher: collections are managed on the companion's store",
      );
    }
    if (kind !== "item" || (name !== "Label" && name !== "Attributes")) {
      if (kind === "item") await this.#itemAt(call.path, report);
      throw new ServiceError(
        "org.freedesktop.DBus.Error.PropertyReadOnly",
        `The property ${name || "(unknown)"} is read-only`,
      );
    }
    const item = await this.#itemAt(call.path, report);
    const want = name === "Label" ? "s" : "a{ss}";
    if (value?.signature !== want) {
      throw new ServiceError(SecretErrors.InvalidArgs, `${name} must be of type ${want}`);
    }
    const change = name === "Label"
      ? { label: value.value as string }
      : { attributes: value.value as Record<string, string> };
    await this.#write(call.sender, {
      report,
      what: "set-properties",
      raise: () => this.#ctx.port.requestSetProperties(item.path, { ...change, client: report }),
      deadline: this.#deadline(call),
    });
    this.#changed(item.collection, "ItemChanged", item.path);
    // Values are not broadcast: attributes are sensitive metadata (pitfall #18).
    this.#ctx.emit({
      path: item.path,
      interface: Iface.Properties,
      member: "PropertiesChanged",
      signature: "sa{sv}as",
      body: [Iface.Item, {}, [name]],
    });
    return { signature: "", body: [] };
  }

  /** `ItemCreated/ItemDeleted/ItemChanged` on the collection's real path (+ Items changed). */
  #changed(collection: string, member: string, item: string): void {
    this.#ctx.emit({
      path: collection,
      interface: Iface.Collection,
      member,
      signature: "o",
      body: [item],
    });
    if (member !== "ItemChanged") {
      this.#ctx.emit({
        path: collection,
        interface: Iface.Properties,
        member: "PropertiesChanged",
        signature: "sa{sv}as",
        body: [Iface.Collection, {}, ["Items"]],
      });
    }
  }

  // ---- org.freedesktop.DBus.Introspectable ------------------------------------------------

  async #introspect(call: Call, kind: NodeKind): Promise<string> {
    const p = call.path;
    const me = call.sender;
    const report = await this.#report(call);
    const leaf = (path: string) => path.slice(path.lastIndexOf("/") + 1);
    const { port, sessions, prompts } = this.#ctx;
    if (p in PARENTS) return introspectXml("none", PARENTS[p]);
    switch (kind) {
      case "service": {
        const children = ["collection", "aliases"];
        if (sessions.pathsOf(me).length) children.push("session");
        if (prompts.pathsOf(me).length) children.push("prompt");
        return introspectXml("service", children);
      }
      case "collection": {
        const c = await this.#collectionAt(p, report);
        if (aliasFromPath(p) !== null) return introspectXml("collection", []);
        const items = await port.searchItems({}, { collection: c.path, client: report });
        return introspectXml("collection", items.map((i) => i.path).filter(isItemPath).map(leaf));
      }
      case "item":
        await this.#itemAt(p, report);
        return introspectXml("item", []);
      case "session":
      case "prompt":
        return introspectXml(kind, []);
    }
    // The list nodes under /org/freedesktop/secrets.
    if (p === COLLECTION_PREFIX.slice(0, -1)) {
      const cs = await port.collections(report);
      return introspectXml("none", cs.map((c) => c.path).filter(isCollectionPath).map(leaf));
    }
    if (p === ALIAS_PREFIX.slice(0, -1)) {
      const def = await port.readAlias("default", report);
      return introspectXml("none", def ? ["default"] : []);
    }
    if (p === SESSION_PREFIX.slice(0, -1)) {
      return introspectXml("none", sessions.pathsOf(me).map(leaf));
    }
    return introspectXml("none", prompts.pathsOf(me).map(leaf));
  }
}
