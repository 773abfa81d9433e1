/**
 * The secrets-dispatcher wire protocol: bus names, object paths, interfaces, error names and the
 * JSON shapes exchanged on the admin interface. Every component imports these from here; nothing
 * else spells a name.
 *
 * Architecture: see DESIGN.md §4 (buses and names) and §5 (request lifecycle).
 *
 * @module
 */

/** Prefix of the daemon's well-known name on the system bus; the desktop user's uid follows. */
export const DISPATCHER_NAME_PREFIX = "org.secretsdispatcher.Dispatcher1.u";
/** Object path of the dispatcher on the system bus. */
export const DISPATCHER_PATH = "/org/secretsdispatcher/Dispatcher1";
/** Interface with the request methods (the only one the desktop user may call). */
export const DISPATCHER_IFACE = "org.secretsdispatcher.Dispatcher1";
/** Parent path of the per-request objects. */
export const REQUEST_PATH_PREFIX = "/org/secretsdispatcher/Dispatcher1/request/";
/** Interface of a per-request object: `Cancel()` and the unicast `Completed` signal. */
export const REQUEST_IFACE = "org.secretsdispatcher.Request1";

/** Well-known name of the daemon's admin service on the companion bus. */
export const ADMIN_NAME = "org.secretsdispatcher.Admin1";
/** Object path of the admin service on the companion bus. */
export const ADMIN_PATH = "/org/secretsdispatcher/Admin1";
/** Admin interface (approve, deny, list, history). Exists only on the companion bus. */
export const ADMIN_IFACE = "org.secretsdispatcher.Admin1";

/** D-Bus error names the daemon answers with. */
export const Errors = {
  /** The caller's uid is not the desktop user this daemon serves. */
  AccessDenied: "org.secretsdispatcher.Error.AccessDenied",
  /** A malformed argument (unknown payload type, bad key spec, oversized payload...). */
  InvalidArgs: "org.secretsdispatcher.Error.InvalidArgs",
  /** No request with that id (or id prefix). */
  NoSuchRequest: "org.secretsdispatcher.Error.NoSuchRequest",
  /** The id prefix matches more than one request. */
  AmbiguousId: "org.secretsdispatcher.Error.AmbiguousId",
  /** The approval named a digest that is not the request's content digest. */
  DigestMismatch: "org.secretsdispatcher.Error.DigestMismatch",
  /** The request is no longer pending (already decided, expired or cancelled). */
  NotPending: "org.secretsdispatcher.Error.NotPending",
  /** Too many pending requests from this caller. */
  LimitExceeded: "org.secretsdispatcher.Error.LimitExceeded",
  /** Something failed inside the daemon; the text says what. */
  Failed: "org.secretsdispatcher.Error.Failed",
  /** The secret store (the backend's collection) is locked; nothing can be read or written. */
  StoreLocked: "org.secretsdispatcher.Error.StoreLocked",
  /** No Secret Service backend answers on the companion bus. */
  StoreUnavailable: "org.secretsdispatcher.Error.StoreUnavailable",
  /** The collection or item named does not exist in the backend. */
  NoSuchObject: "org.secretsdispatcher.Error.NoSuchObject",
  /** `GetSecrets` on a request that is not approved, or whose read window has closed. */
  NotApproved: "org.secretsdispatcher.Error.NotApproved",
  /** `UnlockStore`: the password did not unlock the store. */
  WrongPassword: "org.secretsdispatcher.Error.WrongPassword",
  /** `UnlockStore`: this backend cannot be unlocked with a password from here. */
  NotSupported: "org.secretsdispatcher.Error.NotSupported",
} as const;

/** Kinds of request (DESIGN.md §5). */
export type RequestKind =
  | "sign.commit"
  | "sign.tag"
  | "sign.push"
  | "secret.read"
  | "secret.write"
  | "secret.delete";

/**
 * States of a request. `pending` is the only open state; the others are final
 * (`approved` is transient: it becomes `done` or `failed` once the operation ran).
 */
export type RequestState =
  | "pending"
  | "approved"
  | "denied"
  | "expired"
  | "cancelled"
  | "done"
  | "failed";

/** Outcome carried by the `Completed` signal: a final state. */
export type Outcome = Exclude<RequestState, "pending" | "approved">;

/** True for states after which nothing more happens to a request. */
export function isFinal(state: RequestState): boolean {
  return state !== "pending" && state !== "approved";
}

/** Who is asking, as established by the daemon itself (D-Bus credentials and `ps`). */
export interface VerifiedCaller {
  /** Unique bus name of the calling connection, e.g. `:1.42`. */
  busName: string;
  /** Uid from `GetConnectionUnixUser`. */
  uid: number;
  /** Pid from `GetConnectionUnixProcessID`, or null when the bus could not tell. */
  pid: number | null;
  /** The command line as ps(1) shows it (arguments joined by spaces, one element), or null. */
  cmdline: string[] | null;
  /** The executable, when the daemon can read it; null otherwise (always, for now: Deno refuses
   * `/proc/<pid>/exe` without `--allow-all`). */
  exe: string | null;
}

/** A changed file as reported by the signer: git's name-status letter and the path. */
export interface ChangedFile {
  /** `A` added, `M` modified, `D` deleted, `T` type changed. */
  status: string;
  /** Path relative to the repository root (raw, unescaped). */
  path: string;
}

/** Context the signer reports. Untrusted: always shown marked "reported". */
export interface SignContext {
  /** Repository work tree (or git dir for a bare repo). */
  repo?: string;
  /** Branch, e.g. `main`, or `(detached)`. */
  branch?: string;
  /** Files changed between the payload's tree and its first parent. */
  files?: ChangedFile[];
  /** True when the file list was cut at the signer's limit. */
  filesTruncated?: boolean;
  /** Rebase progress such as `2/3 onto 1a2b3c4`, when one is running. */
  rebase?: string;
  /** Why the file list is missing, when it is. */
  filesError?: string;
}

/** A parsed identity line (`author`, `committer`, `tagger`, `pusher`). */
export interface Ident {
  name: string;
  email: string;
  /** Seconds since the epoch. */
  time: number;
  /** Offset as written, e.g. `+0200`. */
  tz: string;
}

/** One header of a git object as it appears in the payload (continuations joined with `\n`). */
export interface Header {
  key: string;
  value: string;
}

/** What a signing payload says, parsed by the daemon from the exact bytes that will be signed. */
export type SignContent =
  | {
    type: "commit";
    tree: string;
    parents: string[];
    author: Ident | null;
    committer: Ident | null;
    /** Value of the `encoding` header, or null for UTF-8. */
    encoding: string | null;
    /** Headers other than tree/parent/author/committer/encoding (mergetag, unknown ones). */
    extraHeaders: Header[];
    subject: string;
    body: string;
  }
  | {
    type: "tag";
    object: string;
    objectType: string;
    tag: string;
    tagger: Ident | null;
    extraHeaders: Header[];
    subject: string;
    body: string;
  }
  | {
    type: "push";
    version: string;
    pusher: Ident | null;
    pushee: string;
    nonce: string;
    extraHeaders: Header[];
    /** One entry per ref update. */
    updates: { old: string; new: string; ref: string }[];
  };

/** The display-ready view of a signing request. */
export interface SignDetails {
  /** Key spec exactly as the signer received it (`-u`). */
  keySpec: string;
  /** Fingerprint the spec resolved to in the companion's keyring; null if it could not. */
  keyFingerprint: string | null;
  /** User id of that key, for display. */
  keyUid: string | null;
  /** Why the key could not be resolved, when it could not. */
  keyError: string | null;
  /** Payload size in bytes. */
  payloadSize: number;
  content: SignContent;
  reported: SignContext;
}

/**
 * One request as the admin interface returns it (JSON over `s`). All strings are raw: whoever
 * displays them must escape them (see `lib/sanitize.ts`).
 */
export interface RequestView {
  /** Opaque id: 32 lowercase hex characters. */
  id: string;
  kind: RequestKind;
  state: RequestState;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** When a pending request expires, milliseconds since the epoch. */
  expiresAt: number;
  /** When it reached its final state, or null. */
  decidedAt: number | null;
  /** Hex SHA-256 over what is shown; an approval must name it. */
  digest: string;
  caller: VerifiedCaller;
  /** Present for `sign.*` kinds. */
  sign?: SignDetails;
  /** Present for `secret.*` kinds. */
  secret?: SecretDetails;
  /** Short human text about the outcome (gpg error, who cancelled...), or null. */
  message: string | null;
}

/**
 * One pending request as the admin `List` returns it: enough to list it, hold the VT until its
 * deadline and tell whether it changed. The full {@link RequestView} comes from `Get`. Strings
 * are raw (escape before display).
 */
export interface RequestSummary {
  /** Opaque id: 32 lowercase hex characters. */
  id: string;
  kind: RequestKind;
  state: RequestState;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** When it expires, milliseconds since the epoch. */
  expiresAt: number;
  /** One line (commit subject, `read "label"`...), at most {@link SUMMARY_MAX} characters. */
  summary: string;
  /** Uid of the calling connection (verified by the daemon). */
  callerUid: number;
  /** Pid of the calling connection, or null. */
  callerPid: number | null;
  /** The content digest: the same as the full view's. */
  digest: string;
}

/** Longest {@link RequestSummary.summary} and history summary, in UTF-16 code units. */
export const SUMMARY_MAX = 200;

/**
 * A one-line summary cut to {@link SUMMARY_MAX}: line breaks become spaces, a longer text ends
 * with `… (<n> chars)`.
 */
export function capSummary(s: string): string {
  const line = s.replace(/[\r\n]+/g, " ");
  return line.length > SUMMARY_MAX ? `${line.slice(0, SUMMARY_MAX)}… (${line.length} chars)` : line;
}

/** The {@link RequestSummary} of a full view, given its one-line summary (raw). */
export function summaryOf(view: RequestView, summary: string): RequestSummary {
  return {
    id: view.id,
    kind: view.kind,
    state: view.state,
    createdAt: view.createdAt,
    expiresAt: view.expiresAt,
    summary: capSummary(summary),
    callerUid: view.caller.uid,
    callerPid: view.caller.pid,
    digest: view.digest,
  };
}

/** An entry of the append-only history (one JSON object per line in `history.jsonl`). */
export interface HistoryEntry {
  /** Milliseconds since the epoch. */
  at: number;
  id: string;
  kind: RequestKind;
  /** `created` or the state the request entered. */
  event: "created" | RequestState;
  /** One-line summary (commit subject, tag name...), raw. */
  summary: string;
  callerUid: number;
  callerPid: number | null;
  digest: string;
  message?: string | null;
  /** The grant or deny rule that decided the request without a human, when one did. */
  rule?: string | null;
}

/**
 * A grant or deny rule, made on the console (or with `ctl`) and kept by the daemon in memory
 * (a restart forgets them all). All strings are raw.
 *
 * - `read-grant`: "this program may read these items for N minutes": later `secret.read`
 *   requests sent by the same verified connection (unique bus name, uid and pid from the bus;
 *   normally the desktop agent's, so the grant ends when the agent restarts), for the same
 *   client process (pid and command line as the daemon itself saw them with `ps`) and a subset
 *   of the same items, are approved without asking.
 * - `rebase-grant`: "the next N signatures continuing this rebase": a `sign.commit` request with
 *   the same caller uid and key whose first parent is the commit the daemon just signed (predicted
 *   from the signature) is approved without asking, N times at most.
 * - `deny`: requests of the same kind from the same caller uid and program (secret requests:
 *   same items too; signing: same key) are denied without asking.
 */
export interface RuleView {
  /** `g` or `r` followed by 8 hex characters. */
  id: string;
  type: "read-grant" | "rebase-grant" | "deny";
  /** What it allows or denies, in words (raw). */
  description: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  /** When it stops applying (ms since the epoch), or null for "until revoked" (deny rules). */
  expiresAt: number | null;
  /** Signatures left (rebase grants), else null. */
  remaining: number | null;
  /** Requests it decided so far. */
  uses: number;
  /** The request it was made with. */
  fromRequest: string;
}

/** Longest read grant (`GrantOptions.minutes`, secret.read), minutes. */
export const MAX_GRANT_MINUTES = 60;
/** Most further signatures one rebase grant (`GrantOptions.signatures`, sign.commit) allows. */
export const MAX_GRANT_SIGNATURES = 100;

/**
 * Options of `ApproveWithGrant` (JSON). Exactly one is given, the one of the request's kind: the
 * other is refused (`InvalidArgs`), not ignored.
 */
export interface GrantOptions {
  /** `secret.read`: how long the read grant lasts, minutes (1–60). */
  minutes?: number;
  /** `sign.commit`: how many further signatures continuing the rebase (1–100). */
  signatures?: number;
}

/** Options of `DenyWithRule` (JSON). */
export interface DenyRuleOptions {
  /** How long the deny rule lasts, minutes (1–1440); 0 or absent: until revoked. */
  minutes?: number;
}

/**
 * What a `secret.*` request does to the store. `read` reads item values; `create` stores a new
 * item (or replaces one with the same attributes when `replace` is set); `set-secret` replaces an
 * item's value; `set-properties` changes its label or attributes; `delete` removes it.
 */
export type SecretOperation = "read" | "create" | "set-secret" | "set-properties" | "delete";

/** The public metadata of one item (never its value). Times are seconds since the epoch. */
export interface ItemInfo {
  /** The backend's object path, e.g. `/org/freedesktop/secrets/collection/login/3`. */
  path: string;
  /** Path of the collection holding it. */
  collection: string;
  label: string;
  attributes: Record<string, string>;
  created: number;
  modified: number;
}

/** The public metadata of one collection. Times are seconds since the epoch. */
export interface CollectionInfo {
  path: string;
  label: string;
  locked: boolean;
  created: number;
  modified: number;
}

/**
 * The desktop program behind a Secret Service call, as the agent reports it (untrusted: the
 * agent runs as the desktop user). The agent takes the pid from `GetConnectionCredentials` on
 * its bus and reads the rest from `/proc/<pid>`.
 */
export interface ClientReport {
  /** Unique name of the program's connection on the desktop session bus, e.g. `:1.42`. */
  busName: string;
  pid: number | null;
  uid: number | null;
  /** Target of `/proc/<pid>/exe`. */
  exe: string | null;
  /** `/proc/<pid>/cmdline`, split at NUL. */
  cmdline: string[] | null;
  /** Set by the daemon when it cut a long command line (it keeps 256 arguments of 4096 each). */
  cmdlineCut?: boolean;
  /** Target of `/proc/<pid>/cwd`. */
  cwd: string | null;
}

/** What the daemon established itself about the reported client pid (ps, as the companion). */
export interface ClientCheck {
  /** The pid checked, or null when none was reported. */
  pid: number | null;
  /** The uid that runs it, or null when the process is gone. */
  uid: number | null;
  /** Its command line as ps shows it (arguments joined by spaces, one element), or null. */
  cmdline: string[] | null;
  /**
   * True when the process exists, runs as the desktop user and its command line as `ps` shows
   * it equals the reported one shown the same way (joined by spaces, bytes outside printable
   * ASCII as `?`); false when the report was cut.
   */
  consistent: boolean;
}

/** The display-ready view of a `secret.*` request. Label, attributes, paths are raw strings. */
export interface SecretDetails {
  operation: SecretOperation;
  /** The existing items concerned (all of them for `read`; the one item otherwise; none for create). */
  items: ItemInfo[];
  /** The collection written to (`create`) or holding the items, when known. */
  collection: { path: string; label: string } | null;
  /** The new label (`create`, `set-properties` when it changes). */
  label?: string;
  /** The new attributes (`create`, `set-properties` when they change). */
  attributes?: Record<string, string>;
  /** `create` only: replace an item with the same attributes. */
  replace?: boolean;
  /** Size in bytes of the value to be written (`create`, `set-secret`). Never the value. */
  secretSize?: number;
  /** Content type of the value to be written. */
  contentType?: string;
  /** Reported by the agent. */
  client: ClientReport;
  /** Checked by the daemon. */
  clientCheck: ClientCheck;
}

/** State of the secret store as the daemon sees its backend. */
export interface StoreStatus {
  /**
   * `unlocked`: usable; `locked`: its collection is locked, or it has no keyring yet (only
   * gnome-keyring's in-memory `session` collection, which never counts); `unavailable`: no
   * backend.
   */
  state: "unlocked" | "locked" | "unavailable";
  /** Human text: which backend, which collection, what to do. */
  message: string;
}

/**
 * What the admin `Status` returns: the {@link StoreStatus} plus what the console needs to offer
 * unlocking the store on its VT. (The system bus's `StoreStatus` carries `state` and `message`
 * only.)
 */
export interface AdminStoreStatus extends StoreStatus {
  /**
   * True while the console's lock (`Lock`) is on: `state` is then `locked` whatever the store
   * itself says, and `Unlock` (or `UnlockStore`) lifts it.
   */
  consoleLock: boolean;
  /**
   * Whether `UnlockStore` can open the store with its passphrase: `true` when the store itself is
   * locked and its backend offers password unlocking (gnome-keyring's master-password
   * interface); `false` when it is locked and the backend does not (`UnlockStore` would answer
   * `NotSupported`: it opens only with the backend's own tools); `null` when the question does
   * not arise (unlocked, unavailable, or only the console's lock is on) or the backend did not
   * answer it.
   */
  passwordUnlock: boolean | null;
  /**
   * True when the store has no keyring yet and `UnlockStore` would create it with the
   * passphrase (`state` `locked`, `passwordUnlock` `true`): the console then asks for a new
   * passphrase, twice. False otherwise, and from a daemon that does not send it (an older one).
   */
  creates: boolean;
}

/**
 * How long an approved read (or the read-back of an approved write) may fetch the item values
 * with `Request1.GetSecrets`, in milliseconds: long enough for libsecret's double read, short
 * enough that an approval is not a standing grant.
 */
export const READ_WINDOW_MS = 10_000;

/**
 * Longest store password `ctl unlock --password-stdin` and the console's passphrase prompt take,
 * in bytes (longer input is refused, not cut).
 */
export const MAX_PASSWORD_BYTES = 4096;

/** Largest secret value accepted for writing, in bytes (1 MiB). */
export const MAX_SECRET_BYTES = 1024 * 1024;

/** Length of the short id shown to people (`ctl` accepts any unique prefix). */
export const SHORT_ID_LENGTH = 8;

/** Default lifetime of a pending request, in milliseconds (5 minutes). */
export const DEFAULT_REQUEST_TTL_MS = 5 * 60 * 1000;

/**
 * Largest payload the daemon accepts, in bytes (1 MiB). Every pending request travels whole to
 * the console, JSON-escaped (up to 6 bytes per byte), so this bounds the admin replies.
 */
export const MAX_PAYLOAD_BYTES = 1024 * 1024;

/** The well-known name the daemon serving `uid` owns on the system bus. */
export function dispatcherName(uid: number): string {
  if (!Number.isSafeInteger(uid) || uid < 0) throw new RangeError(`bad uid ${uid}`);
  return `${DISPATCHER_NAME_PREFIX}${uid}`;
}

/** The object path of request `id`. */
export function requestPath(id: string): string {
  return REQUEST_PATH_PREFIX + id;
}

/** The request id in a request object path, or null if the path is not one. */
export function requestIdFromPath(path: string): string | null {
  if (!path.startsWith(REQUEST_PATH_PREFIX)) return null;
  const id = path.slice(REQUEST_PATH_PREFIX.length);
  return /^[0-9a-f]{32}$/.test(id) ? id : null;
}

/**
 * Members of {@link ADMIN_IFACE} on the companion bus, with their D-Bus signatures.
 * JSON travels as `s` because these are our own structured records, not a standard interface.
 *
 * - `List() → s`: JSON {@link RequestSummary}`[]` of the pending requests, oldest first (small:
 *   fetch each request's details with `Get`).
 * - `Get(s id) → s`: JSON `RequestView`; `id` may be a unique prefix (≥ 4 hex chars) of a
 *   pending or recently finished request. Errors: `NoSuchRequest`, `AmbiguousId`.
 * - `Approve(s id, s digest)`: full id and the `digest` of what was shown. Errors:
 *   `NoSuchRequest`, `DigestMismatch`, `NotPending`.
 * - `Deny(s id, s reason)`: full id. Errors: `NoSuchRequest`, `NotPending`.
 * - `History(u limit) → s`: JSON `HistoryEntry[]`, newest last, at most `limit` (0 = 100).
 * - `Status() → s`: JSON {@link AdminStoreStatus} of the secret store: its state (`locked` while
 *   the console's lock is on, and while the store has no keyring yet), whether the console's
 *   lock is on, whether `UnlockStore` can open it with a passphrase (the console offers its
 *   passphrase prompt only then), and whether that passphrase would create it (`creates`).
 * - `UnlockStore(ay password)`: unlocks the store's collection (the one the `default` alias
 *   names; without it, the first collection, as `Status` reports it) with these bytes or, when
 *   the store has no keyring yet (no collection but gnome-keyring's `session` one), creates one
 *   with them and sets the `default` alias to it; lifts the console's lock; never logged.
 *   Errors: `WrongPassword` (also for an empty password), `NotSupported` (the backend has no
 *   master-password interface), `StoreUnavailable`. Emits `Changed("", "store")`.
 * - `ApproveWithGrant(s id, s digest, s options) → s`: approves like `Approve` and makes a grant
 *   from the request ({@link GrantOptions} in, {@link RuleView} out). Errors: as `Approve`, and
 *   `InvalidArgs` when no grant can be made from this request (kind, the other kind's option,
 *   unverified program).
 * - `DenyWithRule(s id, s reason, s options) → s`: denies like `Deny` and makes a deny rule
 *   ({@link DenyRuleOptions} in, {@link RuleView} out).
 * - `Rules() → s`: JSON {@link RuleView}`[]` of the grants and deny rules in force.
 * - `Revoke(s id)`: ends a grant or rule. Errors: `NoSuchRequest` (no such rule).
 * - `Lock()`: ends every pending request (denied), drops every grant and open read window, and
 *   refuses new requests with `StoreLocked` until `Unlock()`. Emits `Changed("", "store")`.
 * - `Unlock()`: accepts requests again. Emits `Changed("", "store")`.
 * - signal `Changed(s id, s state)`: a request was created or changed state; with an empty `id`
 *   and `state` `store`, the store's lock state may have changed (re-read `Status`). The store can
 *   also lock or unlock behind the daemon's back (its own timeout, its own tools): poll `Status`.
 */
export const ADMIN_MEMBERS = {
  List: { in: "", out: "s" },
  Get: { in: "s", out: "s" },
  Approve: { in: "ss", out: "" },
  Deny: { in: "ss", out: "" },
  History: { in: "u", out: "s" },
  Status: { in: "", out: "s" },
  UnlockStore: { in: "ay", out: "" },
  ApproveWithGrant: { in: "sss", out: "s" },
  DenyWithRule: { in: "sss", out: "s" },
  Rules: { in: "", out: "s" },
  Revoke: { in: "s", out: "" },
  Lock: { in: "", out: "" },
  Unlock: { in: "", out: "" },
} as const;

/**
 * Members of {@link DISPATCHER_IFACE} and {@link REQUEST_IFACE} on the system bus.
 *
 * Signing:
 * - `RequestSign(ay payload, s keySpec, s context) → o request`: `context` is a JSON
 *   `SignContext` (reported, untrusted).
 *
 * Secret Service metadata (no approval; every call is logged). `client` is a JSON
 * {@link ClientReport} of the desktop program the agent serves. Item tuples `(oosa{ss}tt)` are
 * path, collection, label, attributes, created, modified ({@link ItemInfo}); collection tuples
 * `(osbtt)` are path, label, locked, created, modified ({@link CollectionInfo}).
 * - `StoreStatus() → (ss)`: state and message ({@link StoreStatus}).
 * - `Collections(s client) → a(osbtt)`.
 * - `ReadAlias(s name, s client) → o`: the collection, or `/` when the alias is not set.
 * - `SearchItems(a{ss} attributes, o collection, s client) → a(oosa{ss}tt)`: subset match of
 *   attributes (exact strings); `collection` `/` searches every collection.
 * - `GetItems(ao items, s client) → a(oosa{ss}tt)`: unknown paths are left out.
 *
 * Secret Service operations needing approval (each returns a request object at once):
 * - `RequestRead(ao items, s client) → o`
 * - `RequestCreateItem(o collection, s label, a{ss} attributes, ay value, s contentType,
 *   b replace, s client) → o`; the `Completed` result carries `item` (`o`).
 * - `RequestSetSecret(o item, ay value, s contentType, s client) → o`
 * - `RequestSetProperties(o item, a{sv} properties, s client) → o`: `Label` (`s`) and/or
 *   `Attributes` (`a{ss}`).
 * - `RequestDelete(o item, s client) → o`
 * Errors: `InvalidArgs`, `NoSuchObject`, `StoreLocked`, `StoreUnavailable`, `LimitExceeded`,
 * `AccessDenied`.
 *
 * Per-request objects:
 * - `Request1.Cancel()`: only the connection that made the request may cancel it.
 * - `Request1.GetSecrets(ao items) → a{o(ays)}`: values and content types, for a `done` read
 *   request (those items) or a `done` create/set-secret (the written item), only to the
 *   connection that made it, within {@link READ_WINDOW_MS} of the approval. Errors:
 *   `NoSuchRequest`, `NotApproved`, `StoreLocked`, `StoreUnavailable`. This reply is the only
 *   message that ever carries a secret value from the daemon, and it is a method return
 *   (unicast by nature).
 * - signal `Request1.Completed(s outcome, a{sv} result)`, sent **unicast** to the requester:
 *   `outcome` is an {@link Outcome}; `result` holds `signature` (`ay`, armored, for a `done`
 *   signing request), `status` (`ay`, gpg status lines), `item` (`o`, for a `done` create),
 *   `items` (`ao`, for a `done` read) and `message` (`s`, human text for anything but `done`).
 *
 * The desktop agent's view of what waits for the human (for its notifications):
 * - `Subscribe() → ()`: the calling connection receives {@link DISPATCHER_SIGNALS}, **unicast**
 *   (with a destination), until it leaves the bus (`NameOwnerChanged`); calling it again is
 *   harmless. At most {@link MAX_SUBSCRIBERS} connections at once (`LimitExceeded`).
 * - `ListPending() → a(ssss)`: every pending request as ({@link PendingSummary}) id, kind,
 *   summary, program, oldest first. Subscribe first, then list: nothing is missed.
 * - `DenyOwn(o request)`: denies a pending request (any of this dispatcher's, which are all the
 *   desktop user's). It only ever denies. Errors: `InvalidArgs` (not a request path),
 *   `NoSuchRequest`, `NotPending`.
 */
export const DISPATCHER_MEMBERS = {
  RequestSign: { in: "ayss", out: "o" },
  StoreStatus: { in: "", out: "ss" },
  Collections: { in: "s", out: "a(osbtt)" },
  ReadAlias: { in: "ss", out: "o" },
  SearchItems: { in: "a{ss}os", out: "a(oosa{ss}tt)" },
  GetItems: { in: "aos", out: "a(oosa{ss}tt)" },
  RequestRead: { in: "aos", out: "o" },
  RequestCreateItem: { in: "osa{ss}aysbs", out: "o" },
  RequestSetSecret: { in: "oayss", out: "o" },
  RequestSetProperties: { in: "oa{sv}s", out: "o" },
  RequestDelete: { in: "os", out: "o" },
  Subscribe: { in: "", out: "" },
  ListPending: { in: "", out: "a(ssss)" },
  DenyOwn: { in: "o", out: "" },
} as const;

/**
 * Signals of {@link DISPATCHER_IFACE} at {@link DISPATCHER_PATH}, with their signatures, sent
 * only to the connections that called `Subscribe` and only with a destination (never broadcast):
 * - `RequestPending(s id, s kind, s summary, s program)`: a request now waits for the human
 *   ({@link PendingSummary}).
 * - `RequestEnded(s id, s state)`: it was decided or ended (`approved`, `denied`, `expired`,
 *   `cancelled`, or directly `done`/`failed`); sent once per request.
 */
export const DISPATCHER_SIGNALS = {
  RequestPending: "ssss",
  RequestEnded: "ss",
} as const;

/** Most connections that may `Subscribe` at once (an agent, and one restarting). */
export const MAX_SUBSCRIBERS = 8;

/** Longest `summary` or `program` of a {@link PendingSummary}, in code points. */
export const MAX_SUMMARY_CHARS = 200;

/**
 * What the desktop side learns about a pending request: enough to say what waits and where to
 * approve it, never a secret value, never the signing payload. Strings are raw (one line, cut at
 * {@link MAX_SUMMARY_CHARS}): whoever displays them must escape them.
 */
export interface PendingSummary {
  /** Request id (32 hex). */
  id: string;
  kind: RequestKind;
  /**
   * The operation and its object: `commit "subject"`, `tag "subject"`, `push of 2 refs to
   * <pushee>`, `read "label"`, `store "label"`, `replace "label"`, `change the secret of
   * "label"`, `change the label of "label"`, `delete "label"`.
   */
  summary: string;
  /**
   * Who asks: for secrets the program the agent reported (`/usr/bin/secret-tool`); for
   * signatures `git in <repository>` as the signer reported it, else the verified command line.
   */
  program: string;
}

/** Members of {@link REQUEST_IFACE} (see {@link DISPATCHER_MEMBERS}). */
export const REQUEST_MEMBERS = {
  Cancel: { in: "", out: "" },
  GetSecrets: { in: "ao", out: "a{o(ays)}" },
} as const;
