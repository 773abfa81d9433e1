import assert from "node:assert/strict";
import { SecretErrors } from "../lib/secret_service.ts";
import { DH_ALGORITHM, dhCodec, DhKeyPair, SecretFormatError } from "../lib/secret_session.ts";
import { ServiceError } from "./errors.ts";
import { SessionTable } from "./sessions.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

function throwsName(fn: () => unknown, name: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof ServiceError, String(e));
    assert.equal(e.dbusName, name);
    return true;
  });
}

Deno.test("SessionTable: plain passes values through; DH agrees a key with the client both ways", () => {
  const t = new SessionTable();
  const plain = t.open(":1.1", "plain", { signature: "s", value: "" });
  assert.deepEqual(plain.output, { signature: "s", value: "" });
  const p = t.codec(plain.path, ":1.1");
  assert.deepEqual(p.encode(enc("x")), { parameters: new Uint8Array(), value: enc("x") });
  assert.throws(() => p.decode(new Uint8Array(16), enc("x")), SecretFormatError);

  const client = DhKeyPair.generate();
  const dh = t.open(":1.1", DH_ALGORITHM, { signature: "ay", value: client.publicKey });
  assert.notEqual(dh.path, plain.path);
  assert.equal(dh.output.signature, "ay");
  const clientCodec = dhCodec(client.deriveKey(dh.output.value as Uint8Array));
  const serverCodec = t.codec(dh.path, ":1.1");
  const up = clientCodec.encode(enc("from the client ✓"));
  assert.equal(dec(serverCodec.decode(up.parameters, up.value)), "from the client ✓");
  const down = serverCodec.encode(enc("to the client"));
  assert.equal(down.parameters.length, 16);
  assert.equal(dec(clientCodec.decode(down.parameters, down.value)), "to the client");
  // Another session, another key.
  const other = t.open(":1.1", DH_ALGORITHM, { signature: "ay", value: client.publicKey });
  assert.throws(
    () => t.codec(other.path, ":1.1").decode(up.parameters, up.value),
    SecretFormatError,
  );
});

Deno.test("SessionTable: unknown algorithms are NotSupported; bad DH input is InvalidArgs", () => {
  const t = new SessionTable();
  throwsName(
    () =>
      t.open(":1.1", "dh-ietf1024-sha1-aes128-cbc-pkcs7", {
        signature: "ay",
        value: new Uint8Array(128),
      }),
    "org.freedesktop.DBus.Error.NotSupported",
  );
  throwsName(
    () => t.open(":1.1", DH_ALGORITHM, { signature: "s", value: "" }),
    SecretErrors.InvalidArgs,
  );
  throwsName(
    () => t.open(":1.1", DH_ALGORITHM, { signature: "ay", value: new Uint8Array() }),
    SecretErrors.InvalidArgs,
  );
  throwsName(
    () => t.open(":1.1", DH_ALGORITHM, { signature: "ay", value: new Uint8Array(129).fill(1) }),
    SecretErrors.InvalidArgs,
  );
  assert.equal(t.hasOwner(":1.1"), false, "failed opens leave nothing behind");
});

Deno.test("SessionTable: a session is its owner's; dropOwner closes all of them", () => {
  const t = new SessionTable();
  const a = t.open(":1.1", "plain", { signature: "s", value: "" });
  const b = t.open(":1.2", "plain", { signature: "s", value: "" });
  throwsName(() => t.codec(a.path, ":1.2"), SecretErrors.NoSession);
  throwsName(() => t.close(a.path, ":1.2"), SecretErrors.NoSession);
  throwsName(() => t.codec("/org/freedesktop/secrets/session/99", ":1.1"), SecretErrors.NoSession);
  assert.deepEqual(t.pathsOf(":1.1"), [a.path]);
  t.dropOwner(":1.1");
  assert.equal(t.hasOwner(":1.1"), false);
  throwsName(() => t.codec(a.path, ":1.1"), SecretErrors.NoSession);
  assert.equal(t.owns(b.path, ":1.2"), true);
  t.close(b.path, ":1.2");
  assert.equal(t.owns(b.path, ":1.2"), false);
});
