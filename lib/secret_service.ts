/**
 * Names and shapes of the freedesktop Secret Service API, shared by the daemon (a client of the
 * backend on the companion bus) and the agent (a server on the desktop session bus).
 *
 * Source: "Secret Service API Draft 0.2" (specifications.freedesktop.org/secret-service-spec),
 * chapters 3 (objects), 7 (transfer of secrets), 12 (object paths) and 15 (errors); measured
 * client behaviour in `shared/reference/secret-service.md`.
 *
 * @module
 */

/** Well-known bus name of a Secret Service. */
export const SECRETS_NAME = "org.freedesktop.secrets";
/** Object path of the Service object. */
export const SERVICE_PATH = "/org/freedesktop/secrets";
/** Parent path of collections; an item is `<collection path>/<item>`. */
export const COLLECTION_PREFIX = "/org/freedesktop/secrets/collection/";
/** Parent path of aliases: `/org/freedesktop/secrets/aliases/default` is the default collection. */
export const ALIAS_PREFIX = "/org/freedesktop/secrets/aliases/";
/** Parent path of sessions. */
export const SESSION_PREFIX = "/org/freedesktop/secrets/session/";
/** Parent path of prompts (not fixed by the spec; gnome-keyring uses the same). */
export const PROMPT_PREFIX = "/org/freedesktop/secrets/prompt/";
/** The null object path: "no prompt", "no collection". */
export const NULL_PATH = "/";
/**
 * gnome-keyring's `session` collection (also its `session` alias): kept in memory only, lost when
 * gnome-keyring stops, and always unlocked. A gnome-keyring without a login keyring yet lists
 * only this one. It never counts as the store.
 */
export const SESSION_COLLECTION = `${COLLECTION_PREFIX}session`;

/** Interface names (spec ch. 14). */
export const Iface = {
  Service: "org.freedesktop.Secret.Service",
  Collection: "org.freedesktop.Secret.Collection",
  Item: "org.freedesktop.Secret.Item",
  Session: "org.freedesktop.Secret.Session",
  Prompt: "org.freedesktop.Secret.Prompt",
  Properties: "org.freedesktop.DBus.Properties",
  Introspectable: "org.freedesktop.DBus.Introspectable",
  Peer: "org.freedesktop.DBus.Peer",
} as const;

/**
 * Error names clients recognise (spec ch. 15 plus the D-Bus ones libsecret and secretstorage
 * map; see reference §1.10 and pitfall #1).
 */
export const SecretErrors = {
  IsLocked: "org.freedesktop.Secret.Error.IsLocked",
  NoSession: "org.freedesktop.Secret.Error.NoSession",
  NoSuchObject: "org.freedesktop.Secret.Error.NoSuchObject",
  /** Unsupported session algorithm: the only error that makes libsecret fall back to `plain`. */
  NotSupported: "org.freedesktop.DBus.Error.NotSupported",
  InvalidArgs: "org.freedesktop.DBus.Error.InvalidArgs",
  AccessDenied: "org.freedesktop.DBus.Error.AccessDenied",
  Failed: "org.freedesktop.DBus.Error.Failed",
  UnknownMethod: "org.freedesktop.DBus.Error.UnknownMethod",
  NoReply: "org.freedesktop.DBus.Error.NoReply",
} as const;

/** Fully qualified property names used in `CreateItem`/`CreateCollection` property bags. */
export const Props = {
  ItemLabel: "org.freedesktop.Secret.Item.Label",
  ItemAttributes: "org.freedesktop.Secret.Item.Attributes",
  CollectionLabel: "org.freedesktop.Secret.Collection.Label",
} as const;

/**
 * A Secret as it travels on the bus (spec ch. 7, struct `(oayays)`): the session it is encoded
 * for, algorithm parameters (the AES IV for DH sessions, empty for `plain`), the possibly
 * encrypted value, and its content type.
 */
export type SecretStruct = [
  session: string,
  parameters: Uint8Array,
  value: Uint8Array,
  contentType: string,
];

/** True when `path` is a collection path (`/org/freedesktop/secrets/collection/<c>`). */
export function isCollectionPath(path: string): boolean {
  return /^\/org\/freedesktop\/secrets\/collection\/[A-Za-z0-9_]+$/.test(path);
}

/** True when `path` is an item path (`/org/freedesktop/secrets/collection/<c>/<i>`). */
export function isItemPath(path: string): boolean {
  return /^\/org\/freedesktop\/secrets\/collection\/[A-Za-z0-9_]+\/[A-Za-z0-9_]+$/.test(path);
}

/** The collection path an item path belongs to (no check that it is an item path). */
export function collectionOf(itemPath: string): string {
  return itemPath.slice(0, itemPath.lastIndexOf("/"));
}

/** The alias name in an alias path, or null (`/org/freedesktop/secrets/aliases/default` → `default`). */
export function aliasFromPath(path: string): string | null {
  if (!path.startsWith(ALIAS_PREFIX)) return null;
  const name = path.slice(ALIAS_PREFIX.length);
  return /^[A-Za-z0-9_]+$/.test(name) ? name : null;
}
