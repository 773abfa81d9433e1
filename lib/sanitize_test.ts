import assert from "node:assert/strict";
import {
  escapeForDisplay,
  escapeLine,
  escapeMultiline,
  isPlain,
  MAX_COMBINING_RUN,
} from "./sanitize.ts";

/** Anything a terminal could interpret, or that is invisible, outside what we allow. */
const FORBIDDEN = new RegExp(
  String
    .raw`[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}[\p{Zs}--[\x20]]]`,
  "v",
);

Deno.test("plain text is unchanged", () => {
  for (
    const s of [
      "",
      "hello world",
      "Fix: café, naïve, Ωμέγα, 日本語, emoji 😀",
      "a-b_c.d/e",
      "\ufffd",
    ]
  ) {
    assert.equal(escapeLine(s), s);
    assert.equal(escapeMultiline(s), s);
    assert.ok(isPlain(s));
  }
});

Deno.test("backslash is doubled so escapes cannot be faked", () => {
  assert.equal(escapeLine("\\x1b[2J"), "\\\\x1b[2J");
  assert.equal(escapeLine("\\"), "\\\\");
  // the real ESC and a typed "\x1b" look different
  assert.notEqual(escapeLine("\x1b"), escapeLine("\\x1b"));
  assert.ok(!isPlain("a\\b"));
});

Deno.test("C0, DEL, C1 and ESC sequences become visible", () => {
  assert.equal(escapeLine("\x1b[2J\x1b[H"), "\\x1b[2J\\x1b[H");
  assert.equal(escapeLine("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
  assert.equal(
    escapeLine("\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\"),
    "\\x1b]8;;http://evil\\x1b\\\\link\\x1b]8;;\\x1b\\\\",
  );
  assert.equal(escapeLine("\x00\x01\x7f"), "\\x00\\x01\\x7f");
  assert.equal(escapeLine("\u009b31m\u0085\u0090"), "\\x9b31m\\x85\\x90");
  assert.equal(escapeLine("a\tb\rc\nd"), "a\\tb\\rc\\nd");
  assert.equal(escapeLine("\b\b\bAPPROVED"), "\\x08\\x08\\x08APPROVED");
  for (let cp = 0; cp < 0x20; cp++) {
    assert.ok(!FORBIDDEN.test(escapeLine(String.fromCharCode(cp))));
  }
  for (let cp = 0x7f; cp < 0xa0; cp++) {
    const e = escapeLine(String.fromCharCode(cp));
    assert.match(e, /^\\x[0-9a-f]{2}$/);
  }
});

Deno.test("multiline keeps newlines only", () => {
  assert.equal(
    escapeMultiline("line 1\nline 2\r\n\x1b[31mred"),
    "line 1\nline 2\\r\n\\x1b[31mred",
  );
  assert.equal(escapeMultiline("\u2028\u2029"), "\\u{2028}\\u{2029}");
  assert.equal(escapeMultiline("a\tb"), "a\\tb");
});

Deno.test("bidi controls are escaped", () => {
  const bidi = [
    0x202a,
    0x202b,
    0x202c,
    0x202d,
    0x202e,
    0x2066,
    0x2067,
    0x2068,
    0x2069,
    0x200e,
    0x200f,
    0x061c,
  ];
  for (const cp of bidi) {
    assert.equal(
      escapeLine(String.fromCodePoint(cp)),
      `\\u{${cp.toString(16)}}`,
    );
  }
  // the classic "txt.exe" trick
  assert.equal(escapeLine("invoice\u202Egpj.exe"), "invoice\\u{202e}gpj.exe");
});

Deno.test("zero-width, invisible, tag and variation characters are escaped", () => {
  const invisible = [
    0x200b,
    0x200c,
    0x200d,
    0x2060,
    0x2061,
    0x2062,
    0x2063,
    0x2064,
    0xfeff,
    0x00ad,
    0x180e,
    0x034f,
    0xfe0f,
    0xfe00,
    0xe0100,
    0xe0000,
    0xe0041,
    0xe007f,
    0x115f,
    0x1160,
    0x3164,
    0xffa0,
    0x2028,
    0x2029,
    0x00a0,
    0x2007,
    0x202f,
    0x3000,
    0xe000,
    0xf8ff,
    0x10ffff,
    0xfff9,
  ];
  for (const cp of invisible) {
    const e = escapeLine(`a${String.fromCodePoint(cp)}b`);
    assert.equal(
      e,
      `a\\u{${cp.toString(16)}}b`.replace("\\u{ad}", "\\xad").replace(
        "\\u{a0}",
        "\\xa0",
      ),
      `U+${cp.toString(16)}`,
    );
  }
  // ASCII smuggled in tag characters is exposed
  const tags = [..."ok"].map((c) => String.fromCodePoint(0xe0000 + c.charCodeAt(0))).join("");
  assert.equal(escapeLine(`hi${tags}`), "hi\\u{e006f}\\u{e006b}");
});

Deno.test("lone surrogates are escaped", () => {
  assert.equal(escapeLine("a\ud800b\udfffc"), "a\\u{d800}b\\u{dfff}c");
  assert.equal(escapeLine("😀"), "😀");
});

Deno.test("combining marks: kept on a base, escaped when stacked or baseless", () => {
  assert.equal(escapeLine("e\u0301"), "e\u0301");
  const zalgo = "e" + "\u0301".repeat(MAX_COMBINING_RUN + 2);
  assert.equal(
    escapeLine(zalgo),
    "e" + "\u0301".repeat(MAX_COMBINING_RUN) + "\\u{301}\\u{301}",
  );
  assert.equal(escapeLine("\u0301x"), "\\u{301}x");
  assert.equal(escapeLine("\x1b\u0301"), "\\x1b\\u{301}");
  assert.equal(escapeMultiline("a\n\u0301"), "a\n\\u{301}");
});

Deno.test("hostile strings never leave a forbidden character", () => {
  const hostile = [
    "\x1b[2J\x1b[HAPPROVED by admin\x1b[8m",
    "\x1b]0;title\x07\x1b]52;c;Zm9v\x07",
    "\x9b2J\x9d0;x\x9c",
    "ok\u202e\u2066\u200bdone\ufeff",
    "\u{e0001}\u{e0020}\u{e007f}",
    "a\u0000b\u0007c\u007fd\u0080e\u009ff",
    "\ud83d",
    String.fromCodePoint(...Array.from({ length: 0x200 }, (_, i) => i)),
  ];
  for (const s of hostile) {
    for (const e of [escapeLine(s), escapeForDisplay(s)]) {
      assert.ok(!FORBIDDEN.test(e), JSON.stringify(e));
      assert.ok(!e.includes("\n"));
    }
    const m = escapeMultiline(s);
    assert.ok(!FORBIDDEN.test(m.replaceAll("\n", "")), JSON.stringify(m));
  }
});

Deno.test("escaping is injective on a sample (different inputs look different)", () => {
  const inputs = [
    "\\",
    "\\\\",
    "\x1b",
    "\\x1b",
    "\\e",
    "\n",
    "\\n",
    "\u202e",
    "\\u{202e}",
    "\u00a0",
    " ",
  ];
  const seen = new Map<string, string>();
  for (const s of inputs) {
    const e = escapeLine(s);
    assert.ok(
      !seen.has(e),
      `${JSON.stringify(s)} and ${JSON.stringify(seen.get(e))} both show as ${e}`,
    );
    seen.set(e, s);
  }
});

Deno.test("every bidi control, zero-width, invisible and blank character is a visible escape", () => {
  const named = [
    ...Array.from({ length: 5 }, (_, i) => 0x202a + i), // LRE RLE PDF LRO RLO
    ...Array.from({ length: 4 }, (_, i) => 0x2066 + i), // LRI RLI FSI PDI
    0x200e, // LRM
    0x200f, // RLM
    0x061c, // ALM
    0x200b, // ZWSP
    0x200c, // ZWNJ
    0x200d, // ZWJ
    0x2060, // WJ
    0x2061, // invisible function application
    0x2064, // invisible plus
    0xfeff, // BOM / ZWNBSP
    0x00ad, // soft hyphen
    0x034f, // CGJ
    0x180e, // Mongolian vowel separator
    0x115f, // Hangul choseong filler
    0x3164, // Hangul filler
    0xffa0, // halfwidth Hangul filler
    0xfe0f, // variation selector 16
    0xe0001, // language tag
    0xe0041, // tag latin A
    0x2800, // braille pattern blank
    0x1d159, // musical symbol null notehead
    0x00a0, // no-break space
    0x3000, // ideographic space
    0x2028, // line separator
    0x2029, // paragraph separator
  ];
  for (const cp of named) {
    const e = escapeLine(`a${String.fromCodePoint(cp)}b`);
    assert.equal(
      e,
      `a\\u{${cp.toString(16)}}b`.replace(/\\u\{(a0|ad)\}/, "\\x$1"),
      cp.toString(16),
    );
  }
});
