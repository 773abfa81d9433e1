/**
 * Client sessions (Secret Service spec ch. 6–7): each belongs to the connection that opened it
 * and encodes secrets for it — `plain`, or `dh-ietf1024-sha256-aes128-cbc-pkcs7` with a key
 * agreed with that client. The agent terminates sessions itself: values reach the daemon as
 * plain bytes over the system bus and are encoded again for the client (pitfall #23).
 *
 * @module
 */

import { SecretErrors, SESSION_PREFIX } from "../lib/secret_service.ts";
import {
  DH_ALGORITHM,
  dhCodec,
  DhKeyPair,
  PLAIN_ALGORITHM,
  plainCodec,
  SecretFormatError,
  type SessionCodec,
} from "../lib/secret_session.ts";
import { ServiceError } from "./errors.ts";

/** A D-Bus variant as dbus-next represents it. */
export interface VariantLike {
  signature: string;
  value: unknown;
}

/** What `OpenSession` answers: the output variant's signature and value, and the session path. */
export interface OpenedSession {
  path: string;
  output: { signature: "s"; value: "" } | { signature: "ay"; value: Uint8Array };
}

interface Session {
  owner: string;
  codec: SessionCodec;
}

/** The open sessions of every client connection. */
export class SessionTable {
  #sessions = new Map<string, Session>();
  #next = 1;

  /**
   * Opens a session for `owner` (`Service.OpenSession(s algorithm, v input)`).
   *
   * @param owner the client's unique bus name
   * @param algorithm `plain` or `dh-ietf1024-sha256-aes128-cbc-pkcs7`
   * @param input `v(s "")` for plain, `v(ay clientPublicKey)` for DH
   * @throws {ServiceError} `org.freedesktop.DBus.Error.NotSupported` for any other algorithm
   *   (the only error that makes libsecret and secretstorage fall back to plain), `InvalidArgs`
   *   for a bad input
   */
  open(owner: string, algorithm: string, input: VariantLike): OpenedSession {
    let codec: SessionCodec;
    let output: OpenedSession["output"];
    if (algorithm === PLAIN_ALGORITHM) {
      codec = plainCodec;
      output = { signature: "s", value: "" };
    } else if (algorithm === DH_ALGORITHM) {
      if (input?.signature !== "ay") {
        throw new ServiceError(SecretErrors.InvalidArgs, "the DH input must be a byte array");
      }
      const keys = DhKeyPair.generate();
      try {
        codec = dhCodec(keys.deriveKey(new Uint8Array(input.value as Uint8Array)));
      } catch (err) {
        if (err instanceof SecretFormatError) {
          throw new ServiceError(SecretErrors.InvalidArgs, err.message);
        }
        throw err;
      }
      output = { signature: "ay", value: keys.publicKey };
    } else {
      throw new ServiceError(
        SecretErrors.NotSupported,
        `Algorithm ${algorithm} is not supported (use plain or ${DH_ALGORITHM})`,
      );
    }
    const path = `${SESSION_PREFIX}${this.#next++}`;
    this.#sessions.set(path, { owner, codec });
    return { path, output };
  }

  /**
   * The codec of a session the caller may use.
   *
   * @param path the session path the client passed
   * @param caller the client's unique bus name
   * @throws {ServiceError} `org.freedesktop.Secret.Error.NoSession` when there is no such
   *   session or another connection opened it
   */
  codec(path: string, caller: string): SessionCodec {
    const s = this.#sessions.get(path);
    if (!s || s.owner !== caller) {
      throw new ServiceError(SecretErrors.NoSession, `The session ${path} does not exist`);
    }
    return s.codec;
  }

  /** True when `path` is an open session of `caller`. */
  owns(path: string, caller: string): boolean {
    return this.#sessions.get(path)?.owner === caller;
  }

  /**
   * Closes a session (`Session.Close`).
   *
   * @throws {ServiceError} `NoSession` as {@link codec}
   */
  close(path: string, caller: string): void {
    this.codec(path, caller);
    this.#sessions.delete(path);
  }

  /** Closes every session of a connection that left the bus. */
  dropOwner(owner: string): void {
    for (const [path, s] of this.#sessions) if (s.owner === owner) this.#sessions.delete(path);
  }

  /** True when the connection has an open session. */
  hasOwner(owner: string): boolean {
    for (const s of this.#sessions.values()) if (s.owner === owner) return true;
    return false;
  }

  /** The session paths a connection owns (for introspection). */
  pathsOf(owner: string): string[] {
    return [...this.#sessions].filter(([, s]) => s.owner === owner).map(([p]) => p);
  }

  /** Closes every session. */
  clear(): void {
    this.#sessions.clear();
  }
}
