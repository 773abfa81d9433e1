/**
 * The errors the agent answers Secret Service clients with, and the mapping from what can go
 * wrong behind it (the daemon refusing, the daemon gone, a badly encoded secret) to error names
 * clients recognise (reference secret-service.md §1.10 and pitfalls #1, #21).
 *
 * @module
 */

import { BusUnavailableError, CallTimeoutError } from "../lib/dbus.ts";
import { RequestRefusedError } from "../lib/dispatcher_client.ts";
import { Errors } from "../lib/protocol.ts";
import { SecretErrors } from "../lib/secret_service.ts";
import { SecretFormatError } from "../lib/secret_session.ts";

/** An error reply to send: a D-Bus error name and a text without internals or secret values. */
export class ServiceError extends Error {
  /** The D-Bus error name, e.g. `org.freedesktop.Secret.Error.NoSuchObject`. */
  readonly dbusName: string;
  /** True when it stands for a bug in the agent (worth a log line). */
  readonly internal: boolean;
  /** Runs right after the error reply was sent (e.g. a prompt's `Completed`). */
  after?: () => void;
  /**
   * @param dbusName the D-Bus error name
   * @param text what the client is told
   * @param options `internal`: it stands for a bug (default false)
   */
  constructor(dbusName: string, text: string, options: { internal?: boolean } = {}) {
    super(text);
    this.name = "ServiceError";
    this.dbusName = dbusName;
    this.internal = options.internal ?? false;
  }
}

/** `org.freedesktop.Secret.Error.NoSuchObject` for a path the agent does not serve. */
export function noSuchObject(path: string): ServiceError {
  return new ServiceError(SecretErrors.NoSuchObject, `No such secret item or collection: ${path}`);
}

/** The text every client sees when the approval daemon cannot be reached. */
export const DAEMON_DOWN_TEXT =
  "secrets-dispatcher: the approval daemon is not running or does not answer";

/** Error names of daemon refusals and what the client is told instead. */
const REFUSALS: Record<string, [name: string, text: string]> = {
  [Errors.StoreLocked]: [SecretErrors.IsLocked, "the secret store is locked"],
  [Errors.NotApproved]: [SecretErrors.IsLocked, "not approved (or the approval has expired)"],
  [Errors.NoSuchObject]: [SecretErrors.NoSuchObject, "no such secret item or collection"],
  [Errors.InvalidArgs]: [SecretErrors.InvalidArgs, "invalid arguments"],
  [Errors.AccessDenied]: [SecretErrors.AccessDenied, "access denied"],
  [Errors.StoreUnavailable]: [SecretErrors.Failed, "the secret store is not available"],
  [Errors.LimitExceeded]: [SecretErrors.Failed, "too many pending requests"],
};

/**
 * The error reply for anything thrown while serving a call. {@link ServiceError}s pass through;
 * daemon refusals map to the Secret Service names (`StoreLocked` → `IsLocked`, `NoSuchObject` →
 * `NoSuchObject`, ...); an unreachable daemon is `org.freedesktop.DBus.Error.Failed` with
 * {@link DAEMON_DOWN_TEXT}; a secret that does not decode is `InvalidArgs`. Anything else is a
 * bug: `Failed` with a fixed text (the stack trace is never sent).
 *
 * @param err the thrown value
 * @returns the error to reply with
 */
export function toServiceError(err: unknown): ServiceError {
  if (err instanceof ServiceError) return err;
  if (err instanceof RequestRefusedError) {
    const [name, text] = REFUSALS[err.dbusName] ??
      [SecretErrors.Failed, "the approval daemon refused the request"];
    // The daemon's own text says what happened; the fixed text stands in when it has none.
    return new ServiceError(name, `secrets-dispatcher: ${err.message || text}`);
  }
  if (err instanceof CallTimeoutError) {
    return new ServiceError(
      SecretErrors.Failed,
      `secrets-dispatcher: the approval daemon did not answer in time (busy or hung): ${err.message}`,
    );
  }
  if (err instanceof BusUnavailableError) {
    return new ServiceError(SecretErrors.Failed, `${DAEMON_DOWN_TEXT} (${err.message})`);
  }
  if (err instanceof SecretFormatError) {
    return new ServiceError(
      SecretErrors.InvalidArgs,
      `The secret was transferred or encrypted in an invalid way: ${err.message}`,
    );
  }
  return new ServiceError(SecretErrors.Failed, "secrets-dispatcher: internal error in the agent", {
    internal: true,
  });
}
