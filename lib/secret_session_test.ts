import assert from "node:assert/strict";
import { dhCodec, DhKeyPair, plainCodec, SecretFormatError } from "./secret_session.ts";

Deno.test("two DH key pairs agree on the key and round-trip a secret", () => {
  const a = DhKeyPair.generate();
  const b = DhKeyPair.generate();
  const ka = a.deriveKey(b.publicKey);
  assert.deepEqual(ka, b.deriveKey(a.publicKey));
  const value = new TextEncoder().encode("s3cr\u00e9t");
  const sent = dhCodec(ka).encode(value);
  assert.equal(sent.parameters.length, 16);
  assert.deepEqual(dhCodec(b.deriveKey(a.publicKey)).decode(sent.parameters, sent.value), value);
});

Deno.test("degenerate or malformed DH public keys are refused", () => {
  const a = DhKeyPair.generate();
  for (const bad of [[], [0], [1], [0, 1], new Array(129).fill(1)]) {
    assert.throws(() => a.deriveKey(new Uint8Array(bad)), SecretFormatError, `key ${bad}`);
  }
  // 2^1024 - 1 lies above p - 2 (the prime is just below 2^1024).
  assert.throws(() => a.deriveKey(new Uint8Array(128).fill(0xff)), SecretFormatError);
  assert.ok(a.deriveKey(new Uint8Array([2])).length === 16, "2 is allowed");
});

Deno.test("plain sessions refuse parameters; DH refuses bad IVs and padding", () => {
  assert.throws(() => plainCodec.decode(new Uint8Array([1]), new Uint8Array()), SecretFormatError);
  const codec = dhCodec(new Uint8Array(16));
  assert.throws(() => codec.decode(new Uint8Array(15), new Uint8Array(16)), SecretFormatError);
  assert.throws(() => codec.decode(new Uint8Array(16), new Uint8Array(15)), SecretFormatError);
  assert.throws(() => codec.decode(new Uint8Array(16), new Uint8Array(16)), SecretFormatError);
});
