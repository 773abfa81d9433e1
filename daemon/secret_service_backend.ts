/**
 * The daemon's secret store over D-Bus: a Secret Service client of whatever backend owns
 * `org.freedesktop.secrets` on the companion bus (gnome-keyring in tests and the demo; any
 * spec-compliant service in production). Nothing here is specific to one backend.
 *
 * Sources: "Secret Service API Draft 0.2" (specifications.freedesktop.org/secret-service-spec),
 * ch. 3 (objects), 6 (sessions), 7 (transfer of secrets), 8 (locking), 9 (prompts), 15 (errors);
 * measured backend behaviour in `shared/reference/secret-service.md` §1.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import {
  BadReplyError,
  Bus,
  BusUnavailableError,
  type CallSpec,
  CallTimeoutError,
  DBusCallError,
  errorText,
  type Message,
  MessageType,
  nameOwnerChangedRule,
  Variant,
} from "../lib/dbus.ts";
import type { CollectionInfo, ItemInfo } from "../lib/protocol.ts";
import {
  collectionOf,
  Iface,
  NULL_PATH,
  Props,
  SecretErrors,
  SECRETS_NAME,
  SERVICE_PATH,
  SESSION_COLLECTION,
} from "../lib/secret_service.ts";
import {
  DH_ALGORITHM,
  dhCodec,
  DhKeyPair,
  PLAIN_ALGORITHM,
  plainCodec,
  SecretFormatError,
  type SessionCodec,
} from "../lib/secret_session.ts";
import {
  BackendError,
  type BackendStatus,
  chooseStore,
  NoSuchObjectError,
  type SecretBackend,
  type SecretValue,
  StoreLockedError,
  storeStatusOf,
  StoreUnavailableError,
} from "./backend.ts";

/** Default timeout of each call to the backend, in milliseconds. */
export const DEFAULT_BACKEND_CALL_TIMEOUT_MS = 5_000;

/** Default time a backend prompt may take to complete, in milliseconds. */
export const DEFAULT_PROMPT_TIMEOUT_MS = 30_000;

/** How many metadata reads run at once when listing many items. */
const METADATA_CONCURRENCY = 16;

/** Options of {@link SecretServiceBackend}. */
export interface SecretServiceBackendOptions {
  /**
   * Session algorithm for transferring secrets (spec ch. 7): `plain` (default; the companion
   * bus is private to the companion user) or `dh` (`dh-ietf1024-sha256-aes128-cbc-pkcs7`).
   * There is no fallback: a backend refusing the algorithm fails the call with
   * {@link BackendError}.
   */
  algorithm?: "plain" | "dh";
  /** Timeout of each D-Bus call to the backend, in ms (default 5000). */
  callTimeoutMs?: number;
  /** Time a backend prompt (`Prompt` → `Completed`) may take, in ms (default 30000). */
  promptTimeoutMs?: number;
  /** Receives one line per notable event (session opened or dropped, prompts). Never a value. */
  log?: (line: string) => void;
}

/** A backend session this connection opened. */
interface Session {
  path: string;
  codec: SessionCodec;
}

/** A prompt waiting for its `Completed` signal. */
interface PromptWaiter {
  resolve(result: { dismissed: boolean; result: unknown }): void;
  reject(err: Error): void;
}

/** The backend answered `NoSession` for our session (internal: triggers one reopen). */
class SessionLostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SessionLostError";
  }
}

/** D-Bus error names meaning "nothing serves this name / the peer is gone". */
const UNAVAILABLE_ERRORS = new Set([
  "org.freedesktop.DBus.Error.ServiceUnknown",
  "org.freedesktop.DBus.Error.NameHasNoOwner",
  "org.freedesktop.DBus.Error.NoReply",
  "org.freedesktop.DBus.Error.Timeout",
  "org.freedesktop.DBus.Error.TimedOut",
  "org.freedesktop.DBus.Error.Disconnected",
  "org.freedesktop.DBus.Error.NoServer",
  "org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
]);

/**
 * D-Bus error names meaning "no such object": the spec's `NoSuchObject`, KeePassXC's
 * `UnknownObject`, and GDBus's `UnknownMethod`/`UnknownInterface` (gnome-keyring answers
 * `UnknownMethod` "Object does not exist at path …" for a missing item or collection, and
 * "No such interface …" for a path of the wrong kind).
 */
const NO_SUCH_OBJECT_ERRORS = new Set([
  SecretErrors.NoSuchObject,
  "org.freedesktop.DBus.Error.UnknownObject",
  "org.freedesktop.DBus.Error.UnknownInterface",
  SecretErrors.UnknownMethod,
]);

/**
 * {@link SecretBackend} over the Secret Service D-Bus API, as a client on an existing bus
 * connection (the daemon's companion bus connection; this class never opens or closes it).
 *
 * - Owns one backend session (`Service.OpenSession`), opened on first use, reopened once when
 *   the backend answers `org.freedesktop.Secret.Error.NoSession`, and dropped when the owner of
 *   `org.freedesktop.secrets` changes, so a restarted backend works again on the next call.
 * - Every call has a timeout; no owner, `ServiceUnknown`/`NameHasNoOwner`, a timeout or a closed
 *   connection become {@link StoreUnavailableError}. `IsLocked` (and items that `GetSecrets`
 *   silently leaves out because they are locked) become {@link StoreLockedError}; unknown paths
 *   {@link NoSuchObjectError}; any other error reply {@link BackendError}.
 * - Backend prompts (`CreateItem`, `Item.Delete`) are run with `Prompt("")` and awaited up to
 *   `promptTimeoutMs`; a dismissed prompt is a {@link BackendError}.
 *
 * Secret values are never logged and never put into error messages.
 *
 * @example
 * ```ts
 * const backend = new SecretServiceBackend(companionBus, { algorithm: "dh" });
 * await backend.start();
 * const status = await backend.status(); // { state: "unlocked", message: "..." }
 * ```
 */
export class SecretServiceBackend implements SecretBackend {
  #bus: Bus;
  #algorithm: "plain" | "dh";
  #callTimeoutMs: number;
  #promptTimeoutMs: number;
  #log: (line: string) => void;
  #session: Promise<Session> | null = null;
  #prompts = new Map<string, PromptWaiter>();
  /** Unique name of the backend's connection, when known (from NameOwnerChanged / GetNameOwner). */
  #owner: string | null = null;
  #started: Promise<void> | null = null;
  #listener = (msg: Message) => this.#onMessage(msg);

  /**
   * @param bus an open connection to the bus the backend is on (the companion bus)
   * @param options session `algorithm`, `callTimeoutMs`, `promptTimeoutMs`, `log`; see
   *   {@link SecretServiceBackendOptions}
   */
  constructor(bus: Bus, options: SecretServiceBackendOptions = {}) {
    this.#bus = bus;
    this.#algorithm = options.algorithm ?? "plain";
    if (this.#algorithm !== "plain" && this.#algorithm !== "dh") {
      throw new RangeError(`unknown session algorithm ${String(this.#algorithm)}`);
    }
    this.#callTimeoutMs = options.callTimeoutMs ?? DEFAULT_BACKEND_CALL_TIMEOUT_MS;
    this.#promptTimeoutMs = options.promptTimeoutMs ?? DEFAULT_PROMPT_TIMEOUT_MS;
    this.#log = options.log ?? (() => {});
    bus.raw.on("message", this.#listener);
    bus.onClose((why) => {
      this.#session = null;
      this.#failPrompts(new StoreUnavailableError(`the companion bus connection ended (${why})`));
    });
  }

  /**
   * Subscribes to owner changes of `org.freedesktop.secrets` (to drop the session of a backend
   * that went away) and to prompt `Completed` signals, and learns the current owner. Safe to
   * call more than once; the other methods call it themselves when it has not succeeded yet.
   *
   * @throws {StoreUnavailableError} when the bus does not answer in time or the connection is
   *   gone (a backend that is not running is fine: it is picked up when it appears)
   */
  start(): Promise<void> {
    this.#started ??= this.#start().catch((err) => {
      this.#started = null;
      throw err;
    });
    return this.#started;
  }

  async #start(): Promise<void> {
    const timeoutMs = this.#callTimeoutMs;
    try {
      await this.#bus.addMatch(nameOwnerChangedRule(SECRETS_NAME), { timeoutMs });
      // Some backends broadcast Completed (gnome-keyring sends it unicast, which needs no rule).
      await this.#bus.addMatch(
        `type='signal',sender='${SECRETS_NAME}',interface='${Iface.Prompt}',member='Completed'`,
        { timeoutMs },
      );
    } catch (err) {
      throw this.#mapError(err, "subscribing to the secret store's signals");
    }
    try {
      const [owner] = await this.#bus.callBus("GetNameOwner", "s", [SECRETS_NAME], {
        timeoutMs,
      });
      this.#owner = String(owner);
    } catch (err) {
      if (err instanceof DBusCallError) this.#owner = null; // not running now
      else throw this.#mapError(err, "asking who owns org.freedesktop.secrets");
    }
  }

  /**
   * Stops listening on the bus and closes the backend session (best effort). The bus connection
   * stays open; the object must not be used afterwards.
   */
  async close(): Promise<void> {
    this.#bus.raw.removeListener("message", this.#listener);
    this.#failPrompts(new StoreUnavailableError("the secret store client was closed"));
    const session = this.#session;
    this.#session = null;
    if (!session || this.#bus.closed) return;
    try {
      const s = await session;
      await this.#bus.call({
        destination: SECRETS_NAME,
        path: s.path,
        interface: Iface.Session,
        member: "Close",
      }, { timeoutMs: this.#callTimeoutMs });
    } catch { /* the backend or the session is gone already */ }
  }

  /**
   * The store's state: the collection `ReadAlias("default")` names or, without it, the first
   * collection ({@link chooseStore}: gnome-keyring's in-memory `session` collection never
   * counts); `locked` with `noKeyring` when there is no other collection. Never throws: a
   * backend that does not answer (or has no collection at all) is reported as `unavailable`,
   * with the reason in `message`.
   */
  async status(): Promise<BackendStatus> {
    try {
      await this.start();
      const alias = await this.readAlias("default");
      const choice = chooseStore(
        alias,
        alias !== null && alias !== SESSION_COLLECTION ? [] : await this.#collectionPaths(),
      );
      if (choice.kind !== "default" && choice.kind !== "first") return storeStatusOf(choice);
      const [label, locked] = await Promise.all([
        this.#getProperty(choice.path, Iface.Collection, "Label"),
        this.#getProperty(choice.path, Iface.Collection, "Locked"),
      ]);
      return storeStatusOf(choice, { label: asString(label), locked: locked === true });
    } catch (err) {
      return { state: "unavailable", message: errorText(err) };
    }
  }

  /**
   * Every collection with its metadata (`Service.Collections`, then `Properties.GetAll` on each).
   * Collections that disappear meanwhile are left out.
   *
   * @throws {StoreUnavailableError}, {@link BackendError}
   */
  async collections(): Promise<CollectionInfo[]> {
    await this.start();
    const paths = await this.#collectionPaths();
    const infos = await mapLimit(paths, METADATA_CONCURRENCY, async (path) => {
      try {
        const props = await this.#getAll(path, Iface.Collection);
        return {
          path,
          label: asString(props.Label),
          locked: props.Locked === true,
          created: seconds(props.Created),
          modified: seconds(props.Modified),
        };
      } catch (err) {
        if (err instanceof NoSuchObjectError) return null;
        throw err;
      }
    });
    return infos.filter((c): c is CollectionInfo => c !== null);
  }

  /**
   * `Service.Lock` on every collection. A backend answering with a prompt (spec ch. 8 allows it)
   * is left to its prompt: the collections it locked at once are locked.
   *
   * @throws {StoreUnavailableError}, {@link BackendError}
   */
  async lockAll(): Promise<void> {
    await this.start();
    const paths = await this.#collectionPaths();
    if (paths.length === 0) return;
    await this.#call({
      destination: SECRETS_NAME,
      path: SERVICE_PATH,
      interface: Iface.Service,
      member: "Lock",
      signature: "ao",
      body: [paths],
    }, { replySignature: "aoo", what: "locking the store" });
  }

  /**
   * `Service.ReadAlias(name)`: the collection path, or null when the alias is not set.
   *
   * @throws {StoreUnavailableError}, {@link BackendError}
   */
  async readAlias(name: string): Promise<string | null> {
    await this.start();
    const [path] = await this.#call({
      destination: SECRETS_NAME,
      path: SERVICE_PATH,
      interface: Iface.Service,
      member: "ReadAlias",
      signature: "s",
      body: [name],
    }, { replySignature: "o", what: `reading the alias "${name}"` });
    return path === NULL_PATH ? null : String(path);
  }

  /**
   * Items whose attributes include all of `attributes` (exact strings; `{}` matches every item):
   * `Service.SearchItems` (unlocked and locked results together) or, for one collection,
   * `Collection.SearchItems`; then the metadata of each (see {@link getItems}).
   *
   * @param collection a collection path, or null for every collection
   * @throws {NoSuchObjectError} for an unknown collection
   * @throws {StoreUnavailableError}, {@link BackendError}
   */
  async searchItems(
    attributes: Record<string, string>,
    collection: string | null,
  ): Promise<ItemInfo[]> {
    await this.start();
    let paths: string[];
    if (collection === null) {
      const [unlocked, locked] = await this.#call({
        destination: SECRETS_NAME,
        path: SERVICE_PATH,
        interface: Iface.Service,
        member: "SearchItems",
        signature: "a{ss}",
        body: [attributes],
      }, { replySignature: "aoao", what: "searching items" });
      paths = [...(unlocked as string[]), ...(locked as string[])];
    } else {
      const [found] = await this.#call({
        destination: SECRETS_NAME,
        path: collection,
        interface: Iface.Collection,
        member: "SearchItems",
        signature: "a{ss}",
        body: [attributes],
      }, { replySignature: "ao", what: `searching items in ${collection}` });
      paths = found as string[];
    }
    return await this.getItems([...new Set(paths)]);
  }

  /**
   * Metadata of the given items (`Properties.GetAll` of `org.freedesktop.Secret.Item`: Label,
   * Attributes, Created, Modified; times in seconds), in the same order; unknown paths are left
   * out. Attributes are readable while an item is locked.
   *
   * @throws {StoreUnavailableError}, {@link BackendError}
   */
  async getItems(paths: string[]): Promise<ItemInfo[]> {
    await this.start();
    const infos = await mapLimit(paths, METADATA_CONCURRENCY, async (path) => {
      try {
        const props = await this.#getAll(path, Iface.Item);
        return {
          path,
          collection: collectionOf(path),
          label: asString(props.Label),
          attributes: asAttributes(props.Attributes),
          created: seconds(props.Created),
          modified: seconds(props.Modified),
        };
      } catch (err) {
        if (err instanceof NoSuchObjectError) return null;
        throw err;
      }
    });
    return infos.filter((i): i is ItemInfo => i !== null);
  }

  /**
   * The values of the given items (`Service.GetSecrets` in this object's session). Backends may
   * leave locked or unknown items out of the reply without an error (gnome-keyring does); each
   * left-out item is then checked through its `Locked` property.
   *
   * @returns path → value and content type (as the backend reports it)
   * @throws {NoSuchObjectError} when any of them does not exist
   * @throws {StoreLockedError} when any of them is locked (and all exist)
   * @throws {StoreUnavailableError}, {@link BackendError}
   */
  async getSecrets(paths: string[]): Promise<Map<string, SecretValue>> {
    await this.start();
    const wanted = [...new Set(paths)];
    const out = new Map<string, SecretValue>();
    if (wanted.length === 0) return out;
    const [secrets, session] = await this.#withSession(async (session) => {
      const [reply] = await this.#call({
        destination: SECRETS_NAME,
        path: SERVICE_PATH,
        interface: Iface.Service,
        member: "GetSecrets",
        signature: "aoo",
        body: [wanted, session.path],
      }, { replySignature: "a{o(oayays)}", what: "reading secrets" });
      return [reply as Record<string, unknown[]>, session] as const;
    });
    const missing: string[] = [];
    for (const path of wanted) {
      const secret = secrets[path];
      if (secret === undefined) missing.push(path);
      else out.set(path, decodeSecret(session.codec, secret, path));
    }
    if (missing.length === 0) return out;
    const locked: string[] = [];
    for (const path of missing) {
      // NoSuchObjectError propagates from here.
      const isLocked = await this.#getProperty(path, Iface.Item, "Locked");
      if (isLocked === true) locked.push(path);
    }
    if (locked.length > 0) {
      throw new StoreLockedError(
        `${plural(locked.length, "item is", "items are")} locked in the secret store ` +
          `(${locked.join(", ")}): the store must be unlocked first`,
      );
    }
    throw new BackendError(
      `the secret store returned no value for ${missing.join(", ")} although ` +
        `${plural(missing.length, "it exists and is", "they exist and are")} not locked`,
    );
  }

  /**
   * `Collection.CreateItem` with the label, attributes and the value encoded for this object's
   * session. When the backend answers with a prompt instead of an item, the prompt is run and
   * its result is the item.
   *
   * @returns the item's path (with `replace`, the path of the item that was overwritten)
   * @throws {StoreLockedError} when the collection is locked
   * @throws {NoSuchObjectError} for an unknown collection
   * @throws {BackendError} when the backend refuses, or its prompt is dismissed
   * @throws {StoreUnavailableError}
   */
  async createItem(
    collection: string,
    item: {
      label: string;
      attributes: Record<string, string>;
      secret: SecretValue;
      replace: boolean;
    },
  ): Promise<string> {
    await this.start();
    const what = `creating an item in ${collection}`;
    const [path, prompt] = await this.#withSession(async (session) =>
      await this.#call({
        destination: SECRETS_NAME,
        path: collection,
        interface: Iface.Collection,
        member: "CreateItem",
        signature: "a{sv}(oayays)b",
        body: [
          {
            [Props.ItemLabel]: new Variant("s", item.label),
            [Props.ItemAttributes]: new Variant("a{ss}", item.attributes),
          },
          encodeSecret(session, item.secret),
          item.replace,
        ],
      }, { replySignature: "oo", what })
    );
    if (path !== NULL_PATH) return String(path);
    if (prompt === NULL_PATH) throw new BackendError(`${what}: the store returned no item`);
    const result = await this.#runPrompt(String(prompt), what);
    if (typeof result !== "string" || result === NULL_PATH) {
      throw new BackendError(`${what}: the store's prompt completed without an item`);
    }
    return result;
  }

  /**
   * `Item.SetSecret` with the value encoded for this object's session.
   *
   * @throws {StoreLockedError}, {@link NoSuchObjectError}, {@link BackendError},
   *   {@link StoreUnavailableError}
   */
  async setSecret(item: string, secret: SecretValue): Promise<void> {
    await this.start();
    await this.#withSession(async (session) => {
      await this.#call({
        destination: SECRETS_NAME,
        path: item,
        interface: Iface.Item,
        member: "SetSecret",
        signature: "(oayays)",
        body: [encodeSecret(session, secret)],
      }, { replySignature: "", what: `setting the secret of ${item}` });
    });
  }

  /**
   * Changes an item's `Label` (`s`) and/or `Attributes` (`a{ss}`) with
   * `org.freedesktop.DBus.Properties.Set`; nothing is sent when both are left out.
   *
   * @throws {StoreLockedError}, {@link NoSuchObjectError}, {@link BackendError},
   *   {@link StoreUnavailableError}
   */
  async setProperties(
    item: string,
    props: { label?: string; attributes?: Record<string, string> },
  ): Promise<void> {
    await this.start();
    const set = async (name: string, value: InstanceType<typeof Variant>) => {
      await this.#call({
        destination: SECRETS_NAME,
        path: item,
        interface: Iface.Properties,
        member: "Set",
        signature: "ssv",
        body: [Iface.Item, name, value],
      }, { replySignature: "", what: `setting the ${name} of ${item}` });
    };
    if (props.label !== undefined) await set("Label", new Variant("s", props.label));
    if (props.attributes !== undefined) {
      await set("Attributes", new Variant("a{ss}", props.attributes));
    }
  }

  /**
   * `Item.Delete`; a returned prompt is run.
   *
   * @throws {StoreLockedError}, {@link NoSuchObjectError}, {@link BackendError} (also for a
   *   dismissed prompt), {@link StoreUnavailableError}
   */
  async deleteItem(item: string): Promise<void> {
    await this.start();
    const what = `deleting ${item}`;
    const [prompt] = await this.#call({
      destination: SECRETS_NAME,
      path: item,
      interface: Iface.Item,
      member: "Delete",
    }, { replySignature: "o", what });
    if (prompt !== NULL_PATH) await this.#runPrompt(String(prompt), what);
  }

  // --- sessions ---------------------------------------------------------------------------

  /** Runs `fn` in the session, reopening it once when the backend says it does not know it. */
  async #withSession<T>(fn: (session: Session) => Promise<T>): Promise<T> {
    const first = this.#currentSession();
    const session = await first;
    try {
      return await fn(session);
    } catch (err) {
      if (!(err instanceof SessionLostError)) throw err;
      this.#log(`secret store: session ${session.path} is gone (${err.message}); reopening`);
      if (this.#session === first) this.#session = null;
      const second = this.#currentSession();
      const again = await second;
      try {
        return await fn(again);
      } catch (err2) {
        if (err2 instanceof SessionLostError) {
          if (this.#session === second) this.#session = null;
          throw new BackendError(`the secret store rejected a fresh session: ${err2.message}`);
        }
        throw err2;
      }
    }
  }

  #currentSession(): Promise<Session> {
    if (this.#session === null) {
      const opening = this.#openSession();
      this.#session = opening;
      opening.catch(() => {
        if (this.#session === opening) this.#session = null;
      });
    }
    return this.#session;
  }

  async #openSession(): Promise<Session> {
    const dh = this.#algorithm === "dh" ? DhKeyPair.generate() : null;
    const algorithm = dh ? DH_ALGORITHM : PLAIN_ALGORITHM;
    const input = dh ? new Variant("ay", Buffer.from(dh.publicKey)) : new Variant("s", "");
    const [output, path] = await this.#call({
      destination: SECRETS_NAME,
      path: SERVICE_PATH,
      interface: Iface.Service,
      member: "OpenSession",
      signature: "sv",
      body: [algorithm, input],
    }, { replySignature: "vo", what: `opening a ${algorithm} session` });
    let codec = plainCodec;
    if (dh) {
      const v = output as { signature?: string; value?: unknown };
      if (v.signature !== "ay" || !(v.value instanceof Uint8Array)) {
        throw new BackendError(
          `the secret store answered OpenSession(${algorithm}) with a "${v.signature}" output`,
        );
      }
      try {
        codec = dhCodec(dh.deriveKey(new Uint8Array(v.value)));
      } catch (err) {
        throw new BackendError(`the secret store's DH key is unusable: ${errorText(err)}`);
      }
    }
    this.#log(`secret store: opened ${algorithm} session ${path}`);
    return { path: String(path), codec };
  }

  // --- prompts ----------------------------------------------------------------------------

  /**
   * Runs a backend prompt (spec ch. 9): `Prompt("")`, then waits for `Completed`.
   *
   * @returns the prompt's result value (unwrapped from its variant)
   * @throws {BackendError} when it is dismissed; {@link StoreUnavailableError} when it does not
   *   complete within `promptTimeoutMs` (it is then dismissed) or the backend goes away
   */
  async #runPrompt(prompt: string, what: string): Promise<unknown> {
    const { promise, resolve, reject } = Promise.withResolvers<
      { dismissed: boolean; result: unknown }
    >();
    this.#prompts.set(prompt, { resolve, reject });
    let timer: ReturnType<typeof setTimeout> | undefined;
    this.#log(`secret store: ${what} needs prompt ${prompt}`);
    try {
      await this.#call({
        destination: SECRETS_NAME,
        path: prompt,
        interface: Iface.Prompt,
        member: "Prompt",
        signature: "s",
        body: [""],
      }, { replySignature: "", what: `${what}: starting prompt ${prompt}` });
      const outcome = await Promise.race([
        promise,
        new Promise<never>((_, rej) => {
          timer = setTimeout(
            () =>
              rej(
                new StoreUnavailableError(
                  `${what}: the secret store's prompt did not complete within ` +
                    `${this.#promptTimeoutMs} ms`,
                ),
              ),
            this.#promptTimeoutMs,
          );
        }),
      ]);
      if (outcome.dismissed) {
        this.#log(`secret store: prompt ${prompt} was dismissed`);
        throw new BackendError(`${what}: the secret store's prompt was dismissed`);
      }
      return outcome.result;
    } catch (err) {
      if (err instanceof StoreUnavailableError && !this.#bus.closed) {
        // Best effort: do not leave a prompt up that nobody waits for.
        this.#call({
          destination: SECRETS_NAME,
          path: prompt,
          interface: Iface.Prompt,
          member: "Dismiss",
        }, { what: `dismissing prompt ${prompt}` }).catch(() => {});
      }
      throw err;
    } finally {
      clearTimeout(timer);
      this.#prompts.delete(prompt);
    }
  }

  #failPrompts(err: Error): void {
    for (const waiter of this.#prompts.values()) waiter.reject(err);
    this.#prompts.clear();
  }

  #onMessage(msg: Message): void {
    if (msg.type !== MessageType.SIGNAL) return;
    if (
      msg.sender === "org.freedesktop.DBus" && msg.interface === "org.freedesktop.DBus" &&
      msg.member === "NameOwnerChanged" && msg.body?.[0] === SECRETS_NAME
    ) {
      const newOwner = String(msg.body[2] ?? "") || null;
      this.#owner = newOwner;
      this.#session = null;
      this.#log(
        newOwner
          ? `secret store: org.freedesktop.secrets is now owned by ${newOwner}; session dropped`
          : "secret store: org.freedesktop.secrets has no owner any more; session dropped",
      );
      this.#failPrompts(
        new StoreUnavailableError("the secret store went away while its prompt was open"),
      );
      return;
    }
    if (msg.interface === Iface.Prompt && msg.member === "Completed" && msg.path) {
      const waiter = this.#prompts.get(msg.path);
      if (!waiter) return;
      // Only the backend's own connection may complete its prompts.
      if (this.#owner !== null && msg.sender !== this.#owner) return;
      const [dismissed, result] = msg.body ?? [];
      const value = (result as { value?: unknown } | undefined)?.value;
      waiter.resolve({ dismissed: dismissed === true, result: value });
    }
  }

  // --- calls and errors -------------------------------------------------------------------

  async #getProperty(path: string, iface: string, name: string): Promise<unknown> {
    const [v] = await this.#call({
      destination: SECRETS_NAME,
      path,
      interface: Iface.Properties,
      member: "Get",
      signature: "ss",
      body: [iface, name],
    }, { replySignature: "v", what: `reading ${name} of ${path}` });
    return (v as { value?: unknown }).value;
  }

  async #getAll(path: string, iface: string): Promise<Record<string, unknown>> {
    const [dict] = await this.#call({
      destination: SECRETS_NAME,
      path,
      interface: Iface.Properties,
      member: "GetAll",
      signature: "s",
      body: [iface],
    }, { replySignature: "a{sv}", what: `reading the properties of ${path}` });
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(dict as Record<string, { value?: unknown }>)) {
      out[k] = v?.value;
    }
    return out;
  }

  async #collectionPaths(): Promise<string[]> {
    const value = await this.#getProperty(SERVICE_PATH, Iface.Service, "Collections");
    return Array.isArray(value) ? value.map(String) : [];
  }

  /** One call with this backend's timeout; every failure comes out mapped (see {@link #mapError}). */
  async #call(
    spec: CallSpec,
    options: { replySignature?: string; what: string },
  ): Promise<unknown[]> {
    try {
      return await this.#bus.call(spec, {
        timeoutMs: this.#callTimeoutMs,
        replySignature: options.replySignature,
      });
    } catch (err) {
      throw this.#mapError(err, options.what);
    }
  }

  #mapError(err: unknown, what: string): Error {
    if (err instanceof DBusCallError) {
      const name = err.dbusName;
      const text = err.text ? `: ${err.text}` : "";
      if (name === SecretErrors.IsLocked) {
        return new StoreLockedError(
          `${what}: the secret store is locked (${name}${text}); the store must be unlocked first`,
        );
      }
      if (name === SecretErrors.NoSession) return new SessionLostError(`${name}${text}`);
      if (NO_SUCH_OBJECT_ERRORS.has(name)) {
        return new NoSuchObjectError(
          `${what}: no such object in the secret store (${name}${text})`,
        );
      }
      if (UNAVAILABLE_ERRORS.has(name)) {
        return new StoreUnavailableError(
          `${what}: the secret store is not running (nobody answers for ${SECRETS_NAME} on ` +
            `the companion bus: ${name}${text})`,
          { cause: err },
        );
      }
      return new BackendError(`${what}: the secret store refused (${name}${text})`);
    }
    if (err instanceof CallTimeoutError) {
      return new StoreUnavailableError(
        `${what}: the secret store did not answer within ${err.timeoutMs} ms`,
        { cause: err },
      );
    }
    if (err instanceof BusUnavailableError) {
      return new StoreUnavailableError(
        `${what}: the companion bus is unavailable (${err.message})`,
        { cause: err },
      );
    }
    if (err instanceof BadReplyError) return new BackendError(`${what}: ${err.message}`);
    if (
      err instanceof StoreUnavailableError || err instanceof StoreLockedError ||
      err instanceof NoSuchObjectError || err instanceof BackendError
    ) return err;
    return new BackendError(`${what}: ${errorText(err)}`);
  }
}

/** The `(oayays)` struct for `secret`, encoded for `session`. */
function encodeSecret(session: Session, secret: SecretValue): unknown[] {
  const { parameters, value } = session.codec.encode(secret.value);
  return [session.path, Buffer.from(parameters), Buffer.from(value), secret.contentType];
}

/** Decodes a `(oayays)` reply struct; a value that does not decode is a {@link BackendError}. */
function decodeSecret(codec: SessionCodec, secret: unknown[], path: string): SecretValue {
  const [, parameters, value, contentType] = secret as [string, Uint8Array, Uint8Array, string];
  try {
    const plain = codec.decode(new Uint8Array(parameters), new Uint8Array(value));
    return { value: new Uint8Array(plain), contentType: String(contentType) };
  } catch (err) {
    if (err instanceof SecretFormatError) {
      throw new BackendError(
        `the secret store sent an undecodable value for ${path}: ${err.message}`,
      );
    }
    throw err;
  }
}

/** A D-Bus `t` (bigint) or number timestamp as a number of seconds; 0 when absent. */
function seconds(v: unknown): number {
  if (typeof v === "bigint") return Number(v);
  if (typeof v === "number") return v;
  return 0;
}

function asString(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function asAttributes(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (v && typeof v === "object") {
    for (const [k, val] of Object.entries(v as Record<string, unknown>)) out[k] = String(val);
  }
  return out;
}

function plural(n: number, one: string, many: string): string {
  return n === 1 ? `1 ${one}` : `${n} ${many}`;
}

/** `Promise.all(items.map(fn))` with at most `limit` calls in flight; results keep their order. */
async function mapLimit<T, R>(
  items: T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
