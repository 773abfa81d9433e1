/**
 * Secret Service operations as the desktop agent asks for them: metadata answered at once (and
 * logged), reads, writes and deletes turned into requests that wait for a human, and the values
 * of an approved read handed to the connection that asked, within the read window.
 *
 * Everything the agent sends is untrusted input (it runs as the desktop user): paths, sizes,
 * attributes and the {@link ClientReport} are checked here, and the reported client pid is looked
 * up with `ps` by the daemon itself ({@link ClientCheck}).
 *
 * @module
 */

import {
  type ClientCheck,
  type ClientReport,
  type CollectionInfo,
  Errors,
  type ItemInfo,
  MAX_SECRET_BYTES,
  type RequestKind,
  type SecretDetails,
  type SecretOperation,
  type VerifiedCaller,
} from "../lib/protocol.ts";
import { aliasFromPath, isCollectionPath, isItemPath } from "../lib/secret_service.ts";
import {
  BackendError,
  type BackendStatus,
  hasNoKeyring,
  NO_KEYRING_TEXT,
  NoSuchObjectError,
  type SecretBackend,
  type SecretValue,
  StoreLockedError,
  StoreUnavailableError,
} from "./backend.ts";
import type { ProcReader } from "./proc.ts";
import { digestFields, RequestError, type RequestManager } from "./requests.ts";

/** Most items one read request may name. */
export const MAX_READ_ITEMS = 256;
/** Most attributes an item may carry. */
const MAX_ATTRIBUTES = 64;
/** Longest attribute name or value, label, or content type, in UTF-16 code units. */
const MAX_STRING = 4096;

/**
 * Who made a call: the verified connection that sent it (normally the desktop agent's, but any
 * process of the desktop user may call the daemon itself) and the client it reports.
 */
export interface Asker {
  /** The sender as the bus identified it (uid, pid) and `ps` showed it. */
  caller: VerifiedCaller;
  /** Unique name of the sending connection on the system bus. */
  requester: string;
  /** What the sender reports about the program asking (unverified; see {@link ClientCheck}). */
  client: ClientReport;
}

/** Options of {@link SecretRequests}. */
export interface SecretRequestsOptions {
  manager: RequestManager;
  /** The desktop user's uid (the reported client must run as it to be consistent). */
  clientUid: number;
  proc: ProcReader;
  /** One line per metadata call and request (never a value). */
  log?: (line: string) => void;
}

/** The daemon's Secret Service side, independent of D-Bus. */
export class SecretRequests {
  #backend: SecretBackend;
  #manager: RequestManager;
  #clientUid: number;
  #proc: ProcReader;
  #log: (line: string) => void;

  /**
   * @param backend the store
   * @param options request manager, served uid, process reader, logger
   */
  constructor(backend: SecretBackend, options: SecretRequestsOptions) {
    this.#backend = backend;
    this.#manager = options.manager;
    this.#clientUid = options.clientUid;
    this.#proc = options.proc;
    this.#log = options.log ?? (() => {});
  }

  /**
   * The store's state. Never throws: an unreachable backend is `unavailable`; while the console's
   * lock is on it is `locked`; a store without a keyring yet is `locked` with `noKeyring`.
   */
  async status(): Promise<BackendStatus> {
    if (this.#manager.locked) {
      return {
        state: "locked",
        message: "locked on the console: every request is refused until it is unlocked there " +
          "(or with ctl unlock)",
      };
    }
    try {
      return await this.#backend.status();
    } catch (err) {
      return { state: "unavailable", message: errorMessage(err) };
    }
  }

  /**
   * Every collection (logged).
   *
   * @throws {RequestError} `StoreUnavailable`
   */
  collections(asker: Asker): Promise<CollectionInfo[]> {
    this.#note(asker, "listed the collections");
    return backendCall(() => this.#backend.collections());
  }

  /**
   * The collection an alias names, or null (logged).
   *
   * @throws {RequestError} `InvalidArgs`, `StoreUnavailable`
   */
  readAlias(name: string, asker: Asker): Promise<string | null> {
    if (!/^[A-Za-z0-9_]{1,255}$/.test(name)) {
      throw new RequestError(Errors.InvalidArgs, "an alias is 1-255 letters, digits or _");
    }
    this.#note(asker, `read alias ${name}`);
    return backendCall(() => this.#backend.readAlias(name));
  }

  /**
   * Items matching `attributes` (subset match, exact strings), logged with the attribute names.
   *
   * @param collection a collection or alias path, or null for every collection
   * @throws {RequestError} `InvalidArgs`, `NoSuchObject`, `StoreUnavailable`
   */
  async searchItems(
    attributes: Record<string, string>,
    options: { collection: string | null; asker: Asker },
  ): Promise<ItemInfo[]> {
    checkAttributes(attributes);
    const collection = options.collection === null
      ? null
      : await this.#collection(options.collection);
    const found = await backendCall(() => this.#backend.searchItems(attributes, collection));
    this.#note(
      options.asker,
      `searched ${collection ?? "all collections"} by [${
        Object.keys(attributes).join(", ")
      }]: ${found.length} item(s)`,
    );
    return found;
  }

  /**
   * Metadata of items; unknown ones are left out (logged).
   *
   * @throws {RequestError} `InvalidArgs`, `StoreUnavailable`
   */
  async getItems(paths: string[], asker: Asker): Promise<ItemInfo[]> {
    checkItemPaths(paths);
    const items = await backendCall(() => this.#backend.getItems(paths));
    this.#note(asker, `read metadata of ${paths.length} item(s)`);
    return items;
  }

  /**
   * A request to read the values of `items`.
   *
   * @returns the request id
   * @throws {RequestError} `InvalidArgs`, `NoSuchObject`, `StoreLocked`, `StoreUnavailable`,
   *   `LimitExceeded`
   */
  async requestRead(items: string[], asker: Asker): Promise<string> {
    this.#precheck(asker);
    if (items.length === 0) throw new RequestError(Errors.InvalidArgs, "no items to read");
    checkItemPaths(items);
    const unique = [...new Set(items)];
    const infos = await this.#existing(unique);
    await this.#requireUnlocked(infos.map((i) => i.collection));
    const backend = this.#backend;
    return this.#submit("read", asker, {
      details: { items: infos, collection: await this.#collectionRef(infos[0].collection) },
      summary: `read ${describeItems(infos)}`,
      perform: async () => {
        // Still there, and the store still open? The values themselves go out with GetSecrets.
        const now = await backendCall(() => backend.getItems(unique));
        if (now.length !== unique.length) throw new Error("an item was deleted meanwhile");
        return { items: unique, readable: unique };
      },
    });
  }

  /**
   * A request to store a new item (or, with `replace`, overwrite the one with the same
   * attributes) in `collection` (a collection or alias path).
   *
   * @throws {RequestError} as {@link requestRead}
   */
  async requestCreateItem(
    collection: string,
    item: {
      label: string;
      attributes: Record<string, string>;
      secret: SecretValue;
      replace: boolean;
      asker: Asker;
    },
  ): Promise<string> {
    this.#precheck(item.asker);
    checkString("label", item.label);
    checkAttributes(item.attributes);
    checkSecret(item.secret);
    const path = await this.#collection(collection);
    await this.#requireUnlocked([path]);
    // What a replace would overwrite is part of what the human decides on.
    const replaced = item.replace
      ? await backendCall(() => this.#backend.searchItems(item.attributes, path))
      : [];
    const backend = this.#backend;
    const { label, attributes, secret, replace } = item;
    return this.#submit("create", item.asker, {
      details: {
        items: replaced,
        collection: await this.#collectionRef(path),
        label,
        attributes,
        replace,
        secretSize: secret.value.length,
        contentType: secret.contentType,
      },
      summary: `${replaced.length > 0 ? "replace" : "create"} "${label}"`,
      perform: async () => {
        const created = await backendCall(() =>
          backend.createItem(path, { label, attributes, secret, replace })
        );
        return { item: created, readable: [created] };
      },
    });
  }

  /**
   * A request to replace an item's value.
   *
   * @throws {RequestError} as {@link requestRead}
   */
  async requestSetSecret(
    item: string,
    options: { secret: SecretValue; asker: Asker },
  ): Promise<string> {
    this.#precheck(options.asker);
    checkItemPaths([item]);
    checkSecret(options.secret);
    const [info] = await this.#existing([item]);
    await this.#requireUnlocked([info.collection]);
    const backend = this.#backend;
    const secret = options.secret;
    return this.#submit("set-secret", options.asker, {
      details: {
        items: [info],
        collection: await this.#collectionRef(info.collection),
        secretSize: secret.value.length,
        contentType: secret.contentType,
      },
      summary: `set the secret of "${info.label}"`,
      perform: async () => {
        await backendCall(() => backend.setSecret(item, secret));
        return { readable: [item] };
      },
    });
  }

  /**
   * A request to change an item's label and/or attributes.
   *
   * @throws {RequestError} as {@link requestRead}
   */
  async requestSetProperties(
    item: string,
    options: { label?: string; attributes?: Record<string, string>; asker: Asker },
  ): Promise<string> {
    this.#precheck(options.asker);
    checkItemPaths([item]);
    if (options.label === undefined && options.attributes === undefined) {
      throw new RequestError(Errors.InvalidArgs, "nothing to change: give Label or Attributes");
    }
    if (options.label !== undefined) checkString("label", options.label);
    if (options.attributes !== undefined) checkAttributes(options.attributes);
    const [info] = await this.#existing([item]);
    await this.#requireUnlocked([info.collection]);
    const backend = this.#backend;
    const props = {
      ...(options.label !== undefined ? { label: options.label } : {}),
      ...(options.attributes !== undefined ? { attributes: options.attributes } : {}),
    };
    return this.#submit("set-properties", options.asker, {
      details: {
        items: [info],
        collection: await this.#collectionRef(info.collection),
        ...props,
      },
      summary: `change ${Object.keys(props).join(" and ")} of "${info.label}"`,
      perform: async () => {
        await backendCall(() => backend.setProperties(item, props));
        return {};
      },
    });
  }

  /**
   * A request to delete an item.
   *
   * @throws {RequestError} as {@link requestRead}
   */
  async requestDelete(item: string, asker: Asker): Promise<string> {
    this.#precheck(asker);
    checkItemPaths([item]);
    const [info] = await this.#existing([item]);
    await this.#requireUnlocked([info.collection]);
    const backend = this.#backend;
    return this.#submit("delete", asker, {
      details: { items: [info], collection: await this.#collectionRef(info.collection) },
      summary: `delete "${info.label}"`,
      perform: async () => {
        await backendCall(() => backend.deleteItem(item));
        return {};
      },
    });
  }

  /**
   * The values of `items` for the connection that made request `id`, while its read window is
   * open (see `RequestManager.readable`).
   *
   * @throws {RequestError} `NoSuchRequest`, `NotApproved`, `StoreLocked`, `NoSuchObject`,
   *   `StoreUnavailable`
   */
  async getSecrets(
    id: string,
    options: { requester: string; items: string[] },
  ): Promise<Map<string, SecretValue>> {
    checkItemPaths(options.items);
    this.#manager.readable(id, options.requester, options.items);
    const values = await backendCall(() => this.#backend.getSecrets(options.items));
    this.#log(`request ${id.slice(0, 8)}: handed ${values.size} value(s) to ${options.requester}`);
    return values;
  }

  async #submit(
    operation: SecretOperation,
    asker: Asker,
    spec: {
      details: Omit<SecretDetails, "operation" | "client" | "clientCheck">;
      summary: string;
      perform: () => Promise<{ item?: string; items?: string[]; readable?: string[] }>;
    },
  ): Promise<string> {
    const clientCheck = await this.#check(asker.client);
    const secret: SecretDetails = {
      operation,
      ...spec.details,
      client: asker.client,
      clientCheck,
    };
    const kind: RequestKind = operation === "read"
      ? "secret.read"
      : operation === "delete"
      ? "secret.delete"
      : "secret.write";
    const id = await this.#manager.submit({
      kind,
      caller: asker.caller,
      requester: asker.requester,
      limitKey: limitKey(asker),
      secret,
      digest: digestFields([
        ["kind", kind],
        ["secret", JSON.stringify(secret)],
        ["caller", JSON.stringify(asker.caller)],
      ]),
      summary: spec.summary,
      perform: spec.perform,
      facts: {
        // Grants and deny rules key on what the daemon saw itself, never on the report alone:
        // the program as ps confirmed the report, and (read grants, in the manager) the verified
        // connection that sent the request, which a copied report cannot forge.
        client: clientCheck.consistent && clientCheck.pid !== null && clientCheck.cmdline
          ? {
            pid: clientCheck.pid,
            cmdline: clientCheck.cmdline.join(" "),
            started: clientCheck.started,
          }
          : null,
        items: secret.items.map((i) => i.path),
      },
    });
    this.#log(
      `request ${id.slice(0, 8)} ${kind} (${operation}) for client pid ${
        asker.client.pid ?? "?"
      } via ${asker.requester}`,
    );
    return id;
  }

  /** A flood is refused before the store is asked anything. */
  #precheck(asker: Asker): void {
    this.#manager.checkCapacity(limitKey(asker));
  }

  /** The report checked against ps; `started` (ps lstart) stays in the daemon, for grant keys. */
  async #check(client: ClientReport): Promise<ClientCheck & { started: string | null }> {
    const none = { uid: null, cmdline: null, consistent: false, started: null };
    if (client.pid === null) return { pid: null, ...none };
    const info = await this.#proc.info(client.pid);
    if (!info) return { pid: client.pid, ...none };
    const consistent = info.uid === this.#clientUid && client.cmdline !== null &&
      info.cmdline !== null && !client.cmdlineCut &&
      info.cmdline.join(" ") === psArgs(client.cmdline);
    return {
      pid: client.pid,
      uid: info.uid,
      cmdline: info.cmdline,
      consistent,
      started: info.started,
    };
  }

  /**
   * A collection path, resolving an alias path; checks that it exists.
   *
   * @throws {RequestError} `NoSuchObject`; `StoreLocked` for an alias that is not set while the
   *   store has no keyring yet (the default collection does not exist until it is created)
   */
  async #collection(path: string): Promise<string> {
    const alias = aliasFromPath(path);
    if (alias !== null) {
      const target = await backendCall(() => this.#backend.readAlias(alias));
      if (target === null) {
        const all = await backendCall(() => this.#backend.collections());
        if (hasNoKeyring(all.map((c) => c.path))) throw noKeyring();
        throw new RequestError(Errors.NoSuchObject, `no collection ${path}`);
      }
      return target;
    }
    if (!isCollectionPath(path)) {
      throw new RequestError(Errors.InvalidArgs, `not a collection path: ${path}`);
    }
    const all = await backendCall(() => this.#backend.collections());
    if (!all.some((c) => c.path === path)) {
      throw new RequestError(Errors.NoSuchObject, `no collection ${path}`);
    }
    return path;
  }

  async #collectionRef(path: string): Promise<{ path: string; label: string } | null> {
    const all = await backendCall(() => this.#backend.collections());
    const c = all.find((c) => c.path === path);
    return c ? { path: c.path, label: c.label } : null;
  }

  async #existing(paths: string[]): Promise<ItemInfo[]> {
    const infos = await backendCall(() => this.#backend.getItems(paths));
    const missing = paths.filter((p) => !infos.some((i) => i.path === p));
    if (missing.length > 0) {
      throw new RequestError(Errors.NoSuchObject, `no such item: ${missing.join(", ")}`);
    }
    return infos;
  }

  /**
   * Refuses a request on a locked collection, and every request while the store has no keyring
   * yet (nothing is written into gnome-keyring's in-memory `session` collection then, nor read
   * from it: the console shows the store as locked).
   *
   * @throws {RequestError} `StoreLocked`, `StoreUnavailable`
   */
  async #requireUnlocked(collections: string[]): Promise<void> {
    const all = await backendCall(() => this.#backend.collections());
    if (hasNoKeyring(all.map((c) => c.path))) throw noKeyring();
    const locked = all.filter((c) => collections.includes(c.path) && c.locked);
    if (locked.length > 0) {
      throw new RequestError(
        Errors.StoreLocked,
        `store locked: the collection "${
          locked[0].label
        }" is locked; it opens with its password (the login password, or ctl unlock --password-stdin as the companion)`,
      );
    }
  }

  #note(asker: Asker, what: string): void {
    const c = asker.client;
    this.#log(
      `metadata: client pid ${c.pid ?? "?"} (${c.exe ?? "unknown program"}) ${what}`,
    );
  }
}

/** The refusal of a secret request while the store has no keyring yet. */
function noKeyring(): RequestError {
  return new RequestError(
    Errors.StoreLocked,
    `store locked: ${NO_KEYRING_TEXT} (typed on the console, or ctl unlock --password-stdin as ` +
      `the companion)`,
  );
}

/** What the flood limit counts for a request the agent forwards: one desktop client. */
function limitKey(asker: Asker): string {
  return `${asker.requester} ${asker.client.busName}`;
}

/**
 * An argument vector as `ps -o args` shows it in the C locale (procps `escape_str`): joined by
 * spaces, every byte outside printable ASCII (0x20-0x7e) of the UTF-8 encoding shown as `?`.
 */
export function psArgs(argv: string[]): string {
  const bytes = new TextEncoder().encode(argv.join(" "));
  let out = "";
  for (const b of bytes) out += b >= 0x20 && b <= 0x7e ? String.fromCharCode(b) : "?";
  return out;
}

/** Runs a backend call, turning its errors into the D-Bus errors of the daemon. */
async function backendCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw backendError(err);
  }
}

/** The {@link RequestError} for an error of the backend. */
export function backendError(err: unknown): unknown {
  if (err instanceof RequestError) return err;
  if (err instanceof StoreLockedError) {
    return new RequestError(Errors.StoreLocked, `store locked: ${err.message}`);
  }
  if (err instanceof StoreUnavailableError) {
    return new RequestError(Errors.StoreUnavailable, `secret store unavailable: ${err.message}`);
  }
  if (err instanceof NoSuchObjectError) return new RequestError(Errors.NoSuchObject, err.message);
  if (err instanceof BackendError) return new RequestError(Errors.Failed, err.message);
  return err;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function checkString(what: string, s: string): void {
  if (typeof s !== "string" || s.length > MAX_STRING) {
    throw new RequestError(Errors.InvalidArgs, `${what} must be a string of at most ${MAX_STRING}`);
  }
}

function checkAttributes(attributes: Record<string, string>): void {
  const entries = Object.entries(attributes);
  if (entries.length > MAX_ATTRIBUTES) {
    throw new RequestError(Errors.InvalidArgs, `at most ${MAX_ATTRIBUTES} attributes`);
  }
  for (const [k, v] of entries) {
    checkString("an attribute name", k);
    checkString("an attribute value", v);
  }
}

function checkItemPaths(paths: string[]): void {
  if (paths.length > MAX_READ_ITEMS) {
    throw new RequestError(Errors.InvalidArgs, `at most ${MAX_READ_ITEMS} items at once`);
  }
  const bad = paths.find((p) => !isItemPath(p));
  if (bad !== undefined) throw new RequestError(Errors.InvalidArgs, `not an item path: ${bad}`);
}

function checkSecret(secret: SecretValue): void {
  if (secret.value.length > MAX_SECRET_BYTES) {
    throw new RequestError(
      Errors.InvalidArgs,
      `a secret of ${secret.value.length} bytes exceeds the limit of ${MAX_SECRET_BYTES}`,
    );
  }
  checkString("the content type", secret.contentType);
}

function describeItems(items: ItemInfo[]): string {
  const first = `"${items[0].label}"`;
  return items.length === 1 ? first : `${first} and ${items.length - 1} more`;
}

/** Most arguments of a reported command line kept; the rest is counted. */
const MAX_ARGS = 256;

/** `s` cut to {@link MAX_STRING} code units, saying how much was left out. */
function cut(s: string): { text: string; cut: boolean } {
  if (s.length <= MAX_STRING) return { text: s, cut: false };
  return {
    text: `${s.slice(0, MAX_STRING)}… (${s.length - MAX_STRING} more characters)`,
    cut: true,
  };
}

/**
 * Validates a {@link ClientReport} sent by the agent (JSON). Unknown fields are dropped. Long
 * strings and long command lines are cut (and `cmdlineCut` set), not refused: programs with a
 * long class path must still be served.
 *
 * @throws {RequestError} `InvalidArgs` for anything that is not a well-formed report
 */
export function parseClientReport(json: string): ClientReport {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new RequestError(Errors.InvalidArgs, "client is not valid JSON");
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new RequestError(Errors.InvalidArgs, "client must be a JSON object");
  }
  const r = raw as Record<string, unknown>;
  const bad = (field: string) =>
    new RequestError(Errors.InvalidArgs, `client.${field} is malformed`);
  const str = (k: string): string | null => {
    if (r[k] === undefined || r[k] === null) return null;
    if (typeof r[k] !== "string") throw bad(k);
    return cut(r[k] as string).text;
  };
  const num = (k: string): number | null => {
    if (r[k] === undefined || r[k] === null) return null;
    if (!Number.isSafeInteger(r[k]) || (r[k] as number) < 0) throw bad(k);
    return r[k] as number;
  };
  let cmdline: string[] | null = null;
  let cmdlineCut = false;
  if (r.cmdline !== undefined && r.cmdline !== null) {
    if (!Array.isArray(r.cmdline) || !r.cmdline.every((a) => typeof a === "string")) {
      throw bad("cmdline");
    }
    const args = r.cmdline as string[];
    cmdline = args.slice(0, MAX_ARGS).map((a) => {
      const c = cut(a);
      cmdlineCut ||= c.cut;
      return c.text;
    });
    if (args.length > MAX_ARGS) {
      cmdline.push(`… (${args.length - MAX_ARGS} more arguments)`);
      cmdlineCut = true;
    }
  }
  const busName = str("busName");
  if (busName === null) throw bad("busName");
  return {
    busName,
    pid: num("pid"),
    uid: num("uid"),
    exe: str("exe"),
    cmdline,
    ...(cmdlineCut ? { cmdlineCut } : {}),
    cwd: str("cwd"),
  };
}
