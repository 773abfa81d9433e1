/**
 * Rendering tests through a terminal emulator: the console's own output bytes (a ConsoleApp on a
 * fake VT, clock and daemon, drawing on a terminal that records what it writes) go into
 * `@xterm/headless`, and the assertions are about the screen a person would see: hostile
 * request content must show up inert, escaped and complete, and never move, clear, retitle or
 * overwrite the console's own rows.
 *
 * @module
 */

import assert from "node:assert/strict";
import type { RequestView } from "../lib/protocol.ts";
import { consoleOnXterm, type Harness, type XtermScreen } from "./app_fakes.ts";
import { approvalCode } from "./approval_code.ts";
import { hostileCommit } from "./test_support.ts";

/** The fake clock's start (`vt_fakes.ts`): fixtures are made at this time. */
const NOW = 1_700_000_000_000;
const ROWS = 30;

/** Presses keys on the console (after the arming delay). */
async function press(h: Harness, keys: string): Promise<void> {
  await h.advance(800);
  h.app.feed(new TextEncoder().encode(keys));
  await h.advance(100);
}

/** The console's own frame rows that no content may ever overwrite. */
function assertFrame(lines: string[]): void {
  assert.match(lines[0], /^ secrets-dispatcher \| /, `title row: ${lines[0]}`);
  assert.match(lines[1], /^ (phrase: |NO CONSOLE PHRASE)/, `phrase row: ${lines[1]}`);
}

/** Visits every page of the open detail view; returns all rows seen, in order, without repeats. */
async function allPages(
  h: Harness,
  screen: XtermScreen,
  settle: () => Promise<void>,
): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < 2_000; i++) {
    await settle();
    const lines = screen.lines();
    assertFrame(lines);
    const keys = lines.at(-1)!;
    const m = /^lines (\d+)-(\d+) of (\d+)/.exec(keys);
    assert.ok(m, `position shown: ${keys}`);
    const [from, to] = [Number(m[1]), Number(m[2])];
    const body = lines.slice(3, 3 + (to - from + 1));
    for (let k = seen.length - (from - 1); k < body.length; k++) if (k >= 0) seen.push(body[k]);
    if (to === Number(m[3])) {
      assert.match(keys, /\(end\)/);
      break;
    }
    h.app.feed(new TextEncoder().encode("\x1b[6~")); // PgDn
  }
  return seen;
}

Deno.test("xterm: a commit message that clears the screen and prints a fake approval stays inert", async () => {
  const view = hostileCommit(NOW);
  if (view.sign?.content.type !== "commit") throw new Error("fixture");
  view.sign.content.subject = "fix\x1b[2J\x1b[H\x1b[32;1mAPPROVED\x1b[0m by the console";
  view.sign.content.body = "\x1b[1;1H\x1b[7mREQUEST APPROVED, nothing to do\x1b[0m\r" +
    "\x1b[5A\x1b[10Coverwrite\x1b[s\x1b[u\x1b[?25h\x07\x1b[3J\x1bc";
  const { h, screen, settleScreen } = await consoleOnXterm([view]);
  try {
    await settleScreen();
    let lines = screen.lines();
    assertFrame(lines);
    const list = lines.join("\n");
    // The subject in the list: every escape visible, nothing cleared.
    assert.match(list, /fix\\x1b\[2J\\x1b\[H\\x1b\[32;1mAPPROVED\\x1b\[0m/);
    assert.ok(!lines.some((l) => l.startsWith("APPROVED")), "no fake approval at column 0");
    await press(h, "\r");
    await settleScreen();
    lines = screen.lines();
    assertFrame(lines);
    const all = (await allPages(h, screen, settleScreen)).join("\n");
    assert.match(all, /\| \\x1b\[1;1H\\x1b\[7mREQUEST APPROVED, nothing to do\\x1b\[0m\\r/);
    assert.match(
      all.replace(/ *\n {4}\| /g, ""),
      /\\r\\x1b\[5A\\x1b\[10Coverwrite\\x1b\[s\\x1b\[u\\x1b\[\?25h\\x07\\x1b\[3J\\x1bc/,
    );
    // The cursor stayed hidden, no bell rang, the screen was never reset.
    const core = (screen.term as unknown as {
      _core: { coreService: { isCursorHidden: boolean } };
    })._core;
    assert.equal(core.coreService.isCursorHidden, true, "cursor still hidden");
    assert.equal(screen.bells, 0);
    assert.equal(screen.term.buffer.active.type, "alternate", "still on the console's screen");
  } finally {
    h.app.stop();
  }
});

Deno.test("xterm: OSC title changes and hyperlinks are shown, never executed", async () => {
  const view = hostileCommit(NOW);
  const { h, screen, settleScreen } = await consoleOnXterm([view]);
  try {
    await press(h, "\r");
    const all = (await allPages(h, screen, settleScreen)).join("\n");
    assert.deepEqual(screen.titles, [], "the window title never changed");
    assert.match(all, /Mallory\\x1b\]0;owned title\\x07/);
    assert.match(all, /title: \\x1b\]0;owned title\\x07/);
  } finally {
    h.app.stop();
  }
});

Deno.test("xterm: a file name with a bidi override shows the override as an escape", async () => {
  const view = hostileCommit(NOW);
  const { h, screen, settleScreen } = await consoleOnXterm([view]);
  try {
    await press(h, "\r");
    const all = (await allPages(h, screen, settleScreen)).join("\n");
    assert.match(all, /A src\/\\u\{202e\}txt\.exe/);
    assert.ok(!all.includes("\u202e"), "no raw RLO on screen");
    assert.match(all, /ma\\u\{200b\}in/, "zero-width space visible");
  } finally {
    h.app.stop();
  }
});

Deno.test("xterm: a 10 000-line body pages with its position and is complete to the last line", async () => {
  const view = hostileCommit(NOW);
  if (view.sign?.content.type !== "commit") throw new Error("fixture");
  view.sign.content.body = Array.from({ length: 10_000 }, (_, i) => `body line ${i + 1}`).join(
    "\n",
  );
  const { h, screen, settleScreen } = await consoleOnXterm([view]);
  try {
    await press(h, "\r");
    await settleScreen();
    let lines = screen.lines();
    assert.match(lines.at(-1)!, /^lines 1-25 of 100\d\d \(more below\)/);
    // End: the last page, with the last body line.
    h.app.feed(new TextEncoder().encode("G"));
    await settleScreen();
    lines = screen.lines();
    assertFrame(lines);
    const m = /^lines (\d+)-(\d+) of (\d+) \(end\)/.exec(lines.at(-1)!);
    assert.ok(m, lines.at(-1));
    assert.equal(m[2], m[3]);
    assert.ok(lines.some((l) => /\| body line 10000$/.test(l.trimEnd())), "last line shown");
    // Every line is there, in order (sampled pages around the middle).
    h.app.feed(new TextEncoder().encode("g"));
    await settleScreen();
    for (let i = 0; i < 200; i++) h.app.feed(new TextEncoder().encode("\x1b[6~"));
    await settleScreen();
    lines = screen.lines();
    const shown = lines.flatMap((l) => /\| body line (\d+)$/.exec(l.trimEnd())?.[1] ?? []).map(
      Number,
    );
    assert.ok(shown.length >= 20, `a page of body lines: ${shown}`);
    for (let i = 1; i < shown.length; i++) assert.equal(shown[i], shown[i - 1] + 1);
  } finally {
    h.app.stop();
  }
});

Deno.test("xterm: a 4 KB label of a Secret Service request is shown whole, wrapped", async () => {
  const now = NOW;
  const label = Array.from(
    { length: 4096 / 8 },
    (_, i) => `L${String(i).padStart(4, "0")}\u202e\x1b`,
  )
    .join("").slice(0, 4096);
  const view: RequestView = {
    id: "77".repeat(16),
    kind: "secret.read",
    state: "pending",
    createdAt: now,
    expiresAt: now + 60_000,
    decidedAt: null,
    digest: "ab".repeat(32),
    caller: { busName: ":1.5", uid: 1000, pid: 900, cmdline: ["agent"], exe: null },
    secret: {
      operation: "read",
      items: [{
        path: "/org/freedesktop/secrets/collection/login/1",
        collection: "/org/freedesktop/secrets/collection/login",
        label,
        attributes: { service: "mail\x1b[2J" },
        created: 1_700_000_000,
        modified: 1_700_000_000,
      }],
      collection: { path: "/org/freedesktop/secrets/collection/login", label: "Login" },
      client: {
        busName: ":1.77",
        pid: 4242,
        uid: 1000,
        exe: "/usr/bin/secret-tool",
        cmdline: ["secret-tool", "lookup"],
        cwd: "/home/alice",
      },
      clientCheck: { pid: 4242, uid: 1000, cmdline: ["secret-tool lookup"], consistent: false },
    },
    message: null,
  };
  const { h, screen, settleScreen } = await consoleOnXterm([view]);
  try {
    await press(h, "\r");
    const rows = await allPages(h, screen, settleScreen);
    // The label's rows follow "Label:"; join the wrapped pieces back together.
    const start = rows.findIndex((r) => r.includes("Label:"));
    assert.ok(start >= 0);
    const end = rows.findIndex((r) => /^ *Path:/.test(r));
    assert.ok(end > start + 90, `the label takes ${end - start} rows`);
    const joined = rows.slice(start, end).map((r, i) =>
      (i === 0 ? r.replace(/^ *Label: */, "") : r.replace(/^ {16}/, "")).trimEnd()
    ).join("");
    const expected = label.replaceAll("\u202e", "\\u{202e}").replaceAll("\x1b", "\\x1b");
    assert.equal(joined, expected, "the whole label, escaped, in order");
    assert.match(rows.join("\n"), /service = mail\\x1b\[2J/);
    // The code shown is this request's own.
    assert.match(
      screen.lines()[2],
      new RegExp(approvalCode(view.id, view.digest).split("").join(" ")),
    );
  } finally {
    h.app.stop();
  }
});

Deno.test("xterm: verified facts and reported facts are drawn in different colours", async () => {
  const view = hostileCommit(NOW);
  const { h, screen, settleScreen } = await consoleOnXterm([view]);
  try {
    await press(h, "\r");
    h.app.feed(new TextEncoder().encode("G"));
    await settleScreen();
    const b = screen.term.buffer.active;
    const colourOf = (re: RegExp): number => {
      for (let y = 0; y < ROWS; y++) {
        const text = b.getLine(y)!.translateToString(true);
        const m = re.exec(text);
        if (m) return b.getLine(y)!.getCell(m.index)!.getFgColor();
      }
      throw new Error(`not on screen: ${re}`);
    };
    const verified = colourOf(/CALLER -- VERIFIED/);
    const reported = colourOf(/REPORTED BY THE SIGNER/);
    assert.notEqual(verified, reported);
    assert.equal(verified, 2, "green");
    assert.equal(reported, 3, "yellow");
  } finally {
    h.app.stop();
  }
});
