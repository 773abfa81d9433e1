import assert from "node:assert/strict";
import { escapeLine } from "../lib/sanitize.ts";
import {
  charWidth,
  displayWidth,
  fitRow,
  padRow,
  type Seg,
  seg,
  toAnsi,
  wrapLine,
} from "./text.ts";

const plain = (rows: Seg[][]) => rows.map((r) => toAnsi(r, false));

Deno.test("display width", () => {
  assert.equal(displayWidth("abc"), 3);
  assert.equal(displayWidth("日本"), 4);
  assert.equal(displayWidth("😀"), 2);
  assert.equal(displayWidth("e\u0301"), 1);
  assert.equal(charWidth("\u0301"), 0);
});

Deno.test("wrapLine keeps every character, breaks at spaces, never splits escapes", () => {
  const text = escapeLine("alpha beta \x1b[2J gamma \u202e delta epsilon zeta eta theta");
  const rows = plain(wrapLine({ segs: [seg(text)], cont: [seg("  ")] }, 12));
  for (const r of rows) assert.ok(displayWidth(r) <= 12, r);
  assert.equal(rows.map((r, i) => (i ? r.slice(2) : r)).join(""), text);
  assert.ok(rows.every((r) => !/\\$|\\x1$|\\u\{20$/.test(r)));
  assert.deepEqual(plain(wrapLine({ segs: [seg("abcdefgh")] }, 3)), ["abc", "def", "gh"]);
  assert.deepEqual(plain(wrapLine({ segs: [] }, 5)), [""]);
  // a wide character wider than the row still goes somewhere
  assert.deepEqual(plain(wrapLine({ segs: [seg("日本")] }, 1)), ["日", "本"]);
});

Deno.test("fitRow marks cuts, padRow pads exactly", () => {
  assert.equal(toAnsi(fitRow([seg("abcdefghij")], 6), false), "abc...");
  assert.equal(toAnsi(fitRow([seg("abc")], 6), false), "abc");
  assert.equal(toAnsi(padRow([seg("ab")], 5), false), "ab   ");
  assert.equal(displayWidth(toAnsi(padRow([seg("日本語")], 5), false)), 5);
});

Deno.test("toAnsi styles our segments and defuses stray control characters", () => {
  assert.equal(toAnsi([seg("x", "label"), seg("y")]), "\x1b[1mx\x1b[0my");
  // a segment that (by a bug) holds a raw ESC never emits it
  assert.equal(toAnsi([seg("a\x1b[2Jb\u202e")], false), "a\\x1b[2Jb\\u{202e}");
});
