import assert from "node:assert/strict";
import { escapeLine, escapeMultiline } from "../lib/sanitize.ts";
import type { RequestView } from "../lib/protocol.ts";
import { detailRows, render, renderSegs } from "./render.ts";
import { approvalCode, initialState, type UiState } from "./state.ts";
import { displayWidth, toAnsi } from "./text.ts";
import {
  HOSTILE,
  hostileCommit,
  pushRequest,
  step,
  summaries,
  tagRequest,
} from "./test_support.ts";

const NOW = 1_700_000_000_000;

// Our own SGR styling, which is the only escape sequence render() may emit.
// deno-lint-ignore no-control-regex
const SGR = /\x1b\[[0-9;]*m/g;
/** Any control character (C0, DEL, C1) or invisible/bidi character. */
const FORBIDDEN = new RegExp(
  String
    .raw`[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}[\p{Zs}--[\x20]]]`,
  "v",
);

function stateWith(requests: RequestView[], size = { cols: 100, rows: 30 }): UiState {
  let s = initialState("unix:path=/run/test/bus", NOW, size);
  s = step(s, { type: "connection", status: "connected" }).state;
  return step(s, { type: "list", at: NOW - 10_000, requests: summaries(requests) }).state;
}

function key(s: UiState, k: string, at = NOW + 10_000): UiState {
  return step(s, { type: "key", key: k, at }).state;
}

/** Checks a frame: right row count, exact widths, only our SGR sequences, nothing else. */
function assertSafeFrame(lines: string[], size: { cols: number; rows: number }): string[] {
  assert.equal(lines.length, size.rows);
  return lines.map((l) => {
    const plain = l.replace(SGR, "");
    assert.ok(!FORBIDDEN.test(plain), `control or invisible character in ${JSON.stringify(plain)}`);
    assert.equal(displayWidth(plain), size.cols, `row width of ${JSON.stringify(plain)}`);
    return plain;
  });
}

/** Every frame of the detail view of the first request, paging down to the end. */
function detailFrames(view: RequestView, size: { cols: number; rows: number }): string[][] {
  let s = key(stateWith([view], size), "<enter>");
  assert.equal(s.screen, "detail");
  const frames: string[][] = [];
  for (let i = 0; i < 200; i++) {
    frames.push(assertSafeFrame(render(s, size), size));
    if (frames.at(-1)!.at(-1)!.includes("(end)")) break;
    s = key(s, "<pagedown>");
  }
  return frames;
}

Deno.test("list view: hostile summaries are escaped, rows fit", () => {
  const size = { cols: 100, rows: 20 };
  const s = stateWith([hostileCommit(NOW), tagRequest(NOW), pushRequest(NOW)], size);
  const lines = assertSafeFrame(render(s, size), size);
  const text = lines.join("\n");
  assert.match(
    text,
    /> 1a2b3c4d {2}sign\.commit {2}uid 1000 pid 4242 {2}4:50 +Innocent change\\x1b\[2J\\x1b\[H/,
  );
  assert.match(text, /5e6f7a8b {2}sign\.tag/);
  assert.match(text, /push 1 ref to git@example\.org:repo\.git/);
  assert.match(lines.at(-1)!, /Enter open/);
});

Deno.test("detail view: everything from a hostile commit is shown, escaped, nothing cut", () => {
  const size = { cols: 100, rows: 30 };
  const view = hostileCommit(NOW);
  const frames = detailFrames(view, size);
  assert.ok(frames.length > 2, "long content must scroll");
  const all = frames.map((f) => f.join("\n")).join("\n");
  const c = view.sign!.content;
  assert.equal(c.type, "commit");
  if (c.type !== "commit") return;
  const mustShow = [
    escapeLine(c.subject),
    escapeLine(c.author!.name),
    "m@evil.example",
    "2023-11-15 00:13:20 +0200",
    "2023-11-14 20:45:00 -0130",
    c.tree,
    c.parents[0],
    c.parents[1],
    "Header mergetag",
    ...escapeMultiline(c.extraHeaders[0].value).split("\n"),
    ...escapeMultiline(c.body).split("\n").filter((l) => l.length < 80 && l !== ""),
    "END-OF-LONG-LINE",
    "0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567",
    "Alice Example <alice@example.org>",
    "ABCDEF0123456789",
    "VERIFIED",
    "/usr/bin/git",
    escapeLine(`fix${HOSTILE.clear}`),
    ":1.42",
    "REPORTED BY THE SIGNER (unverified",
    "/home/alice/src/project",
    "ma\\u{200b}in",
    "2/3 onto 1a2b3c4",
    "M README.md",
    "A src/\\u{202e}txt.exe",
    "d1d1d1d1d1d1d1d1",
    "LAST BODY LINE",
  ];
  for (const s of mustShow) assert.ok(all.includes(s), `missing ${JSON.stringify(s)}`);
  // the fake status text is shown as content, escaped, behind the gutter
  assert.ok(all.includes("| \\x1b[32mAPPROVED\\x1b[0m by admin"));
  assert.ok(all.includes("| title: \\x1b]0;owned title\\x07"));
  assert.ok(all.includes("| c1: \\x9b2J"));
  // the long line wraps instead of being cut: all its words are there
  const words = all.match(/\bword\b/g) ?? [];
  assert.equal(words.length, 60);
  // position shown, first and last frame
  assert.match(frames[0].at(-1)!, /^lines 1-25 of \d+ \(more below\)/);
  assert.match(frames.at(-1)!.at(-1)!, /^lines \d+-(\d+) of \1 \(end\)/);
  // the request header stays on screen while scrolling
  for (const f of frames) assert.match(f[2], /^REQUEST 1a2b3c4d sign\.commit/);
});

Deno.test("detail rows never exceed the width and lose nothing when narrow", () => {
  const view = hostileCommit(NOW);
  for (const cols of [30, 41, 80, 200]) {
    const rows = detailRows(view, cols);
    const text = rows.map((r) => toAnsi(r, false)).join("\n");
    for (const r of rows) {
      assert.ok(displayWidth(toAnsi(r, false)) <= cols, `row wider than ${cols}`);
    }
    assert.equal((text.match(/\bword\b/g) ?? []).length, 60, `cols=${cols}`);
    assert.ok(text.includes("LAST BODY LINE"));
    // escapes are never split across rows
    assert.ok(!/\\(\n|x\n|x[0-9a-f]\n|u\{[0-9a-f]*\n)/.test(text), `split escape at cols=${cols}`);
  }
});

Deno.test("detail of tag and push requests", () => {
  const size = { cols: 120, rows: 60 };
  const tag = detailFrames(tagRequest(NOW), size).flat().join("\n");
  assert.match(tag, /Tag: +v1\.0/);
  assert.match(tag, /Object type: +commit/);
  assert.match(tag, /Fingerprint: +NOT RESOLVED/);
  assert.match(tag, /Key error: +no secret key/);
  assert.match(tag, /Pid: +\(unknown\)/);
  const push = detailFrames(pushRequest(NOW), size).flat().join("\n");
  assert.match(push, /Pushee: +git@example\.org:repo\.git/);
  assert.match(push, /refs\/heads\/main: create d{40}/);
  assert.match(push, /Nonce: +1700000000-abcdef/);
});

Deno.test("root commit and unknown kinds", () => {
  const v = hostileCommit(NOW);
  if (v.sign?.content.type === "commit") v.sign.content.parents = [];
  const text = detailRows(v, 100).map((r) => toAnsi(r, false)).join("\n");
  assert.match(text, /Parents: +none: root commit/);
  const secret: RequestView = {
    ...tagRequest(NOW),
    kind: "secret.read",
    sign: undefined,
    message: "item\x1b[2J",
  };
  const t2 = detailRows(secret, 100).map((r) => toAnsi(r, false)).join("\n");
  assert.match(t2, /No further details for secret\.read/);
  assert.match(t2, /Message: +item\\x1b\[2J/);
});

Deno.test("malformed view does not crash the renderer", () => {
  const bad = { ...hostileCommit(NOW), sign: { content: null } } as unknown as RequestView;
  const rows = detailRows(bad, 80).map((r) => toAnsi(r, false));
  assert.ok(rows.some((r) => r.includes("cannot show this request")));
});

Deno.test("the approval code is on the detail screen; the deny-all question on the status line", () => {
  const size = { cols: 100, rows: 30 };
  const view = hostileCommit(NOW);
  const code = [...approvalCode(view.id, view.digest)];
  let s = key(stateWith([view, tagRequest(NOW)], size), "<enter>", NOW);
  let lines = assertSafeFrame(render(s, size), size);
  assert.match(lines[2], new RegExp(`approve: type ${code.join(" ")}`));
  assert.match(lines.at(-1)!, new RegExp(` ${code.join("")} approve `));
  s = key(s, code[0].toLowerCase(), NOW + 1_000);
  lines = assertSafeFrame(render(s, size), size);
  assert.match(lines[2], new RegExp(`\\(typed ${code[0]}\\)`));
  s = key(key(s, "<esc>", NOW + 2_000), "D", NOW + 3_000);
  lines = assertSafeFrame(render(s, size), size);
  assert.match(lines.at(-2)!, /^DENY ALL 2 PENDING REQUESTS\? \[y\] yes {2}\[any other key\] no/);
});

Deno.test("unreachable daemon is shown with the address and the hint", () => {
  const size = { cols: 80, rows: 12 };
  let s = initialState("unix:path=/run/x\x1b[2J", NOW, size);
  s = step(s, { type: "connection", status: "unreachable", error: "connect ENOENT" }).state;
  const text = assertSafeFrame(render(s, size), size).join("\n");
  assert.match(text, /DAEMON UNREACHABLE/);
  assert.match(text, /unix:path=\/run\/x\\x1b\[2J/);
  assert.match(text, /deno task daemon/);
});

Deno.test("history view escapes summaries", () => {
  const size = { cols: 100, rows: 12 };
  let s = stateWith([], size);
  s = key(s, "h");
  s = step(s, {
    type: "history",
    entries: Array.from({ length: 20 }, (_, i) => ({
      at: NOW + i,
      id: hostileCommit().id,
      kind: "sign.commit" as const,
      event: i % 2 ? "approved" as const : "created" as const,
      summary: `entry ${i} ${HOSTILE.clear}`,
      callerUid: 1000,
      callerPid: 42,
      digest: "d",
      message: i === 19 ? "gpg \x07 failed" : null,
    })),
  }).state;
  const lines = assertSafeFrame(render(s, size), size);
  const text = lines.join("\n");
  assert.match(text, /entry 19 \\x1b\[2J\\x1b\[H/);
  assert.match(text, /\(gpg \\x07 failed\)/);
  assert.match(lines.at(-1)!, /^lines 15-21 of 21 \|/);
  const top = assertSafeFrame(render(key(s, "g"), size), size);
  assert.match(top.at(-1)!, /^lines 1-7 of 21 \(more below\)/);
  assert.match(top.join("\n"), /entry 0 /);
});

Deno.test("tiny terminals get a notice, never overflowing rows", () => {
  for (const size of [{ cols: 10, rows: 3 }, { cols: 29, rows: 30 }, { cols: 100, rows: 7 }]) {
    const segs = renderSegs(stateWith([hostileCommit(NOW)], size), size);
    assert.equal(segs.length, size.rows);
    for (const r of segs) assert.ok(displayWidth(toAnsi(r, false)) <= size.cols);
  }
  const lines = render(stateWith([], { cols: 30, rows: 8 }), { cols: 30, rows: 8 });
  assertSafeFrame(lines, { cols: 30, rows: 8 });
});

Deno.test("many requests: the selection stays visible", () => {
  const size = { cols: 80, rows: 10 };
  const many = Array.from(
    { length: 30 },
    (_, i) => ({ ...tagRequest(NOW), id: i.toString(16).padStart(2, "0").repeat(16) }),
  );
  let s = stateWith(many, size);
  for (let i = 0; i < 20; i++) s = key(s, "j");
  const lines = assertSafeFrame(render(s, size), size);
  assert.ok(!lines.some((l) => l.startsWith("  00000000")));
  assert.ok(lines.some((l) => l.startsWith(`> ${many[20].id.slice(0, 8)}`)));
  assert.ok(lines.some((l) => /requests \d+-\d+ of 30/.test(l)));
});

Deno.test("the console phrase is on every screen; without one a warning takes its place", () => {
  const size = { cols: 100, rows: 20 };
  const phrase = { phrase: "otter \x1b[2Jcobalt", warning: null };
  let s = initialState("unix:path=/x", NOW, size, { phrase });
  s = step(s, { type: "connection", status: "connected" }).state;
  s = step(s, { type: "list", at: NOW - 10_000, requests: summaries([hostileCommit(NOW)]) }).state;
  const screens = [s, key(s, "<enter>"), key(s, "h")];
  for (const screen of screens) {
    const lines = assertSafeFrame(render(screen, size), size);
    assert.match(lines[1], /^ phrase: otter \\x1b\[2Jcobalt {2}\(approvals only ever appear/);
  }
  const none = initialState("unix:path=/x", NOW, size, {
    phrase: { phrase: null, warning: "SD_CONSOLE_PHRASE_FILE is not set" },
  });
  const lines = assertSafeFrame(render(none, size), size);
  assert.match(lines[1], /^ NO CONSOLE PHRASE {2}SD_CONSOLE_PHRASE_FILE is not set/);
});
