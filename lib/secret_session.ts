/**
 * Transfer of secrets in a Secret Service session (spec "Secret Service API Draft 0.2", ch. 7):
 * the `plain` algorithm and `dh-ietf1024-sha256-aes128-cbc-pkcs7`.
 *
 * The DH recipe (verified against gnome-keyring both ways, reference secret-service.md §1.8):
 * RFC 2409 §6.2 Second Oakley Group (1024-bit MODP, generator 2); the shared secret is
 * left-padded to 128 bytes; HKDF-SHA256 (RFC 5869) with empty salt and info gives the 16-byte
 * AES key; each secret is AES-128-CBC with PKCS#7 padding and a fresh 16-byte IV carried in the
 * Secret's `parameters`. Crypto is `node:crypto` (a well-kept library), nothing hand-made.
 *
 * @module
 */

import {
  createCipheriv,
  createDecipheriv,
  createDiffieHellman,
  getDiffieHellman,
  hkdfSync,
  randomBytes,
} from "node:crypto";
import { Buffer } from "node:buffer";

/** The `plain` algorithm name. */
export const PLAIN_ALGORITHM = "plain";
/** The DH algorithm name. */
export const DH_ALGORITHM = "dh-ietf1024-sha256-aes128-cbc-pkcs7";

/** Length of the MODP group 2 prime, bytes. */
const PRIME_BYTES = 128;

/** A secret value that cannot be decoded (wrong IV length, bad padding, ...). */
export class SecretFormatError extends Error {
  /** @param message what is wrong (never the value) */
  constructor(message: string) {
    super(message);
    this.name = "SecretFormatError";
  }
}

/** One side of a DH key agreement. */
export class DhKeyPair {
  #dh: ReturnType<typeof createDiffieHellman>;
  #prime: bigint;
  /** Our public key, unsigned big-endian (may be shorter than 128 bytes). */
  readonly publicKey: Uint8Array;

  private constructor() {
    const group = getDiffieHellman("modp2");
    this.#dh = createDiffieHellman(group.getPrime(), Buffer.from([2]));
    this.#prime = BigInt(`0x${group.getPrime().toString("hex")}`);
    this.publicKey = new Uint8Array(this.#dh.generateKeys());
  }

  /** A fresh key pair. */
  static generate(): DhKeyPair {
    return new DhKeyPair();
  }

  /**
   * Derives the 16-byte AES key from the peer's public key.
   *
   * @param peerPublic unsigned big-endian, any length up to 128 bytes (leading zeros may be left
   *   out by the peer)
   * @throws {SecretFormatError} when the key is empty, too long or degenerate (not in
   *   2..p-2, NIST SP 800-56A r3 §5.6.2.3.1: 0, 1 and p-1 would fix the shared secret)
   */
  deriveKey(peerPublic: Uint8Array): Uint8Array {
    if (peerPublic.length === 0 || peerPublic.length > PRIME_BYTES) {
      throw new SecretFormatError(`bad DH public key length ${peerPublic.length}`);
    }
    const y = BigInt(`0x${Buffer.from(peerPublic).toString("hex")}`);
    if (y < 2n || y > this.#prime - 2n) {
      throw new SecretFormatError("degenerate DH public key (must be in 2..p-2)");
    }
    let shared: Buffer;
    try {
      shared = this.#dh.computeSecret(Buffer.from(peerPublic));
    } catch (err) {
      throw new SecretFormatError(`bad DH public key: ${(err as Error).message}`);
    }
    const ikm = Buffer.alloc(PRIME_BYTES);
    shared.copy(ikm, PRIME_BYTES - shared.length);
    return new Uint8Array(hkdfSync("sha256", ikm, Buffer.alloc(0), Buffer.alloc(0), 16));
  }
}

/** How secrets are encoded in one session. */
export interface SessionCodec {
  /** `plain` or {@link DH_ALGORITHM}. */
  readonly algorithm: string;
  /** Encodes a value: returns `parameters` and `value` for the Secret struct. */
  encode(plain: Uint8Array): { parameters: Uint8Array; value: Uint8Array };
  /**
   * Decodes a Secret's `parameters` and `value`.
   *
   * @throws {SecretFormatError} when they are not valid for this session
   */
  decode(parameters: Uint8Array, value: Uint8Array): Uint8Array;
}

/** The `plain` codec: parameters empty, value as is. */
export const plainCodec: SessionCodec = {
  algorithm: PLAIN_ALGORITHM,
  encode: (plain) => ({ parameters: new Uint8Array(), value: plain }),
  decode(parameters, value) {
    if (parameters.length !== 0) {
      throw new SecretFormatError("a plain session's secret must have empty parameters");
    }
    return value;
  },
};

/** The DH codec for a derived 16-byte key: AES-128-CBC, PKCS#7, fresh IV per secret. */
export function dhCodec(key: Uint8Array): SessionCodec {
  if (key.length !== 16) throw new RangeError("AES-128 key must be 16 bytes");
  const k = Buffer.from(key);
  return {
    algorithm: DH_ALGORITHM,
    encode(plain) {
      const iv = randomBytes(16);
      const c = createCipheriv("aes-128-cbc", k, iv);
      const value = Buffer.concat([c.update(plain), c.final()]);
      return { parameters: new Uint8Array(iv), value: new Uint8Array(value) };
    },
    decode(parameters, value) {
      if (parameters.length !== 16) {
        throw new SecretFormatError("the IV (secret parameters) must be 16 bytes");
      }
      if (value.length === 0 || value.length % 16 !== 0) {
        throw new SecretFormatError("the encrypted value must be a non-empty multiple of 16 bytes");
      }
      try {
        const d = createDecipheriv("aes-128-cbc", k, Buffer.from(parameters));
        return new Uint8Array(Buffer.concat([d.update(value), d.final()]));
      } catch {
        throw new SecretFormatError("the secret was transferred or encrypted in an invalid way");
      }
    },
  };
}
