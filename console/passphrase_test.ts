import assert from "node:assert/strict";
import { PassphraseBuffer, type PromptKey, promptKeys } from "./passphrase.ts";

const enc = (s: string) => new TextEncoder().encode(s);

/** The keys, with text shown as the string it encodes. */
function keys(input: string | Uint8Array): (string | { text: string })[] {
  return promptKeys(typeof input === "string" ? enc(input) : input).map((k: PromptKey) =>
    k.type === "text" ? { text: new TextDecoder().decode(k.bytes) } : k.type
  );
}

Deno.test("PassphraseBuffer: append, erase a whole UTF-8 character, clear, take", () => {
  const b = new PassphraseBuffer(new Uint8Array(16));
  assert.equal(b.empty, true);
  assert.ok(b.append(enc("pä")));
  assert.ok(b.append(enc("ß€")));
  assert.equal(b.empty, false);
  b.eraseLast(); // € is three bytes
  b.eraseLast(); // ß is two
  assert.equal(new TextDecoder().decode(b.take()), "pä");
  assert.equal(b.empty, true, "take empties it");
  assert.ok(b.append(enc("x")));
  b.clear();
  assert.equal(b.empty, true);
  b.eraseLast(); // nothing to erase: no error
  assert.equal(b.take().length, 0);
});

Deno.test("PassphraseBuffer: what does not fit is refused whole, nothing is cut", () => {
  const b = new PassphraseBuffer(new Uint8Array(4));
  assert.ok(b.append(enc("abc")));
  assert.equal(b.append(enc("de")), false);
  assert.equal(new TextDecoder().decode(b.take()), "abc");
});

Deno.test("PassphraseBuffer: erased, cleared and taken bytes are zeroed in its storage", () => {
  const storage = new Uint8Array(8);
  const b = new PassphraseBuffer(storage);
  b.append(enc("secret"));
  b.eraseLast();
  assert.deepEqual([...storage], [...enc("secre"), 0, 0, 0]);
  const out = b.take();
  assert.equal(new TextDecoder().decode(out), "secre");
  assert.deepEqual([...storage], Array(8).fill(0), "take() zeroes the storage");
  b.append(enc("pw"));
  b.clear();
  assert.deepEqual([...storage], Array(8).fill(0), "clear() zeroes the storage");
  // take() returns a copy: zeroing it is the caller's job.
  out.fill(0);
  assert.deepEqual([...out], [0, 0, 0, 0, 0]);
});

Deno.test("promptKeys: text runs, Enter, Backspace, Ctrl-U, Ctrl-C, Esc; escape sequences ignored", () => {
  assert.deepEqual(keys("hunter2\r"), [{ text: "hunter2" }, "enter"]);
  assert.deepEqual(keys("ab\x7fc\bd\n"), [
    { text: "ab" },
    "erase",
    { text: "c" },
    "erase",
    { text: "d" },
    "enter",
  ]);
  assert.deepEqual(keys("x\x15y"), [{ text: "x" }, "clear", { text: "y" }]);
  assert.deepEqual(keys("\x03"), ["ctrl-c"]);
  assert.deepEqual(keys("\x1b"), ["esc"], "a lone ESC at the end of a read is Escape");
  assert.deepEqual(keys("a\x1b[Ab\x1bOBc\x1b[5~d"), [
    { text: "a" },
    "ignored",
    { text: "b" },
    "ignored",
    { text: "c" },
    "ignored",
    { text: "d" },
  ], "cursor keys are not text");
  assert.deepEqual(keys("\x1bx\x1bä!"), ["ignored", "ignored", { text: "!" }], "Alt+key");
  assert.deepEqual(keys("\t\x01pä ss"), ["ignored", "ignored", { text: "pä ss" }]);
  assert.deepEqual(keys("\x1b["), ["ignored"], "a cut-off sequence is not text");
});

Deno.test("promptKeys: text is a view into the input, not a copy", () => {
  const input = enc("pw\r");
  const [text] = promptKeys(input);
  assert.equal(text.type, "text");
  input.fill(0);
  assert.deepEqual([...(text as { bytes: Uint8Array }).bytes], [0, 0]);
});

Deno.test("PassphraseBuffer.matches: the same bytes only, whatever was erased before", () => {
  const a = new PassphraseBuffer(new Uint8Array(16));
  const b = new PassphraseBuffer(new Uint8Array(16));
  assert.ok(a.matches(b), "both empty");
  a.append(enc("pässword"));
  b.append(enc("pässwor"));
  assert.ok(!a.matches(b), "a prefix is not a match");
  b.append(enc("d"));
  assert.ok(a.matches(b));
  b.append(enc("x"));
  b.eraseLast();
  assert.ok(a.matches(b), "an erased typo leaves no trace");
  b.clear();
  b.append(enc("passwörd"));
  assert.ok(!a.matches(b));
  assert.ok(!a.matches(new PassphraseBuffer(new Uint8Array(32))), "another capacity");
});
