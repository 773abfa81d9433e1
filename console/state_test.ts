import assert from "node:assert/strict";
import type { RequestView } from "../lib/protocol.ts";
import {
  approvalCode,
  ARM_MS,
  CODE_ALPHABET,
  CODE_LENGTH,
  DENY_ALL_REASON,
  DENY_REASON,
  type Effect,
  initialState,
  parseKeys,
  type UiState,
} from "./state.ts";
import { hostileCommit, pushRequest, step, summaries, tagRequest } from "./test_support.ts";

const NOW = 1_700_000_000_000;

const SIZE = { cols: 100, rows: 30 };

function start(requests: RequestView[]): UiState {
  let s = initialState("unix:path=/x", NOW, SIZE);
  s = step(s, { type: "connection", status: "connected" }).state;
  return step(s, { type: "list", at: NOW - 10_000, requests: summaries(requests) }).state;
}

let clock = NOW;

/** Presses keys (each ARM_MS + 1 after the previous, on a clock that only moves forward). */
function press(s: UiState, keys: string[], from = clock): { state: UiState; effects: Effect[] } {
  const effects: Effect[] = [];
  clock = Math.max(clock, from);
  for (const k of keys) {
    clock += ARM_MS + 1;
    const r = step(s, { type: "key", key: k, at: clock });
    s = r.state;
    effects.push(...r.effects);
  }
  return { state: s, effects };
}

Deno.test("parseKeys: printable, control and escape sequences", () => {
  assert.deepEqual(parseKeys("jkA y"), ["j", "k", "A", "<space>", "y"]);
  assert.deepEqual(parseKeys("\x1b[A\x1b[B\x1bOA\x1b[5~\x1b[6~\x1b[H\x1b[4~"), [
    "<up>",
    "<down>",
    "<up>",
    "<pageup>",
    "<pagedown>",
    "<home>",
    "<end>",
  ]);
  assert.deepEqual(parseKeys("\r\n\x7f\x03\t"), [
    "<enter>",
    "<enter>",
    "<backspace>",
    "<ctrl-c>",
    "<tab>",
  ]);
  assert.deepEqual(parseKeys("\x1b"), ["<esc>"]);
  assert.deepEqual(parseKeys("\x1bx"), ["<unknown>"]);
  assert.deepEqual(parseKeys("\x1b[1;5A"), ["<up>"]);
  assert.deepEqual(parseKeys("\x1b[200~"), ["<unknown>"]);
  assert.deepEqual(parseKeys("\x1b["), ["<unknown>"]);
  assert.deepEqual(parseKeys("\x01é"), ["<unknown>", "é"]);
});

Deno.test("selection is kept by id when requests arrive or leave", () => {
  const [a, b, c] = [hostileCommit(NOW), tagRequest(NOW), pushRequest(NOW)];
  let s = start([a, b]);
  assert.equal(s.selectedId, a.id);
  s = press(s, ["j"]).state;
  assert.equal(s.selectedId, b.id);
  // a new request arrives (even at the front): the selection stays on b
  s = step(s, { type: "list", at: NOW - 10_000, requests: summaries([c, a, b]) }).state;
  assert.equal(s.selectedId, b.id);
  // b leaves: the next one after it in the old order, else the previous
  s = step(s, { type: "list", at: NOW - 10_000, requests: summaries([c, a]) }).state;
  assert.equal(s.selectedId, a.id);
  s = step(s, { type: "list", at: NOW - 10_000, requests: summaries([]) }).state;
  assert.equal(s.selectedId, null);
  s = step(s, { type: "list", at: NOW - 10_000, requests: summaries([b]) }).state;
  assert.equal(s.selectedId, b.id);
});

Deno.test("list navigation clamps", () => {
  let s = start([hostileCommit(NOW), tagRequest(NOW), pushRequest(NOW)]);
  s = press(s, ["k", "k"]).state;
  assert.equal(s.selectedId, hostileCommit().id);
  s = press(s, ["G"]).state;
  assert.equal(s.selectedId, pushRequest().id);
  s = press(s, ["<down>", "<pagedown>"]).state;
  assert.equal(s.selectedId, pushRequest().id);
  s = press(s, ["g"]).state;
  assert.equal(s.selectedId, hostileCommit().id);
});

/** The approval code of `view`, as keys (lowercase: the code is case-insensitive). */
function codeKeys(view: RequestView): string[] {
  return [...approvalCode(view.id, view.digest).toLowerCase()];
}

Deno.test("approval codes: 3 letters, none bound on the detail view, per request and digest", () => {
  const a = approvalCode(hostileCommit().id, hostileCommit().digest);
  assert.match(a, new RegExp(`^[${CODE_ALPHABET}]{${CODE_LENGTH}}$`));
  for (const bound of "jkbgGdqhaynJKBDQHAYN") {
    assert.ok(!CODE_ALPHABET.includes(bound.toUpperCase()), bound);
  }
  // Different requests (and another digest of the same id) get different codes, mostly.
  const codes = new Set(
    Array.from({ length: 200 }, (_, i) => approvalCode(`${i}`.padStart(32, "0"), "d1")),
  );
  assert.ok(codes.size > 150, `${codes.size} distinct codes of 200`);
  assert.notEqual(approvalCode("ab".repeat(16), "1"), approvalCode("ab".repeat(16), "2"));
});

Deno.test("approve: only by typing the request's code, with the digest of the view shown", () => {
  const view = hostileCommit(NOW);
  let s = start([view, tagRequest(NOW)]);
  // Nothing approves from the list: not A, y, Enter+y, nor the code itself.
  let r = press(s, ["A", "y", ...codeKeys(view)]);
  assert.deepEqual(r.effects, []);
  assert.equal(r.state.screen, "list");
  // Open it: habitual keys do not approve.
  r = press(s, ["<enter>", "A", "y", "<enter>", "<esc>"]);
  assert.deepEqual(r.effects, []);
  r = press(s, ["<enter>"]);
  assert.equal(r.state.screen, "detail");
  r = press(r.state, ["A", "y", "<enter>"]);
  assert.deepEqual(r.effects, []);
  assert.match(r.state.status!.text, /to approve, type the code [A-Z] [A-Z] [A-Z]/);
  const [c1, c2, c3] = codeKeys(view);
  r = press(r.state, [c1, c2]);
  assert.deepEqual(r.effects, []);
  assert.equal(r.state.detail!.typed, (c1 + c2).toUpperCase());
  r = press(r.state, [c3]);
  assert.deepEqual(r.effects, [{ type: "approve", id: view.id, digest: view.digest }]);
  s = r.state;
  assert.deepEqual(s.busy, { id: view.id, action: "approve" });
  // typing it again does nothing while busy
  assert.deepEqual(press(s, codeKeys(view)).effects, []);
  // success: back to the list, status, refresh
  r = step(s, { type: "decision", id: view.id, action: "approve", error: null });
  assert.equal(r.state.screen, "list");
  assert.equal(r.state.busy, null);
  assert.match(r.state.status!.text, /approved 1a2b3c4d/);
  assert.deepEqual(r.effects, [{ type: "refresh" }]);
});

Deno.test("a wrong letter starts the code over; another request's code does not approve", () => {
  const view = hostileCommit(NOW);
  const other = tagRequest(NOW);
  const code = codeKeys(view);
  const wrong = [...CODE_ALPHABET.toLowerCase()].find((l) => l !== code[1])!;
  let r = press(start([view]), ["<enter>", code[0], wrong]);
  assert.deepEqual(r.effects, []);
  assert.equal(r.state.detail!.typed, "");
  assert.match(r.state.status!.text, /wrong letter/);
  r = press(r.state, code);
  assert.deepEqual(r.effects, [{ type: "approve", id: view.id, digest: view.digest }]);
  if (codeKeys(other).join("") !== code.join("")) {
    r = press(start([view]), ["<enter>", ...codeKeys(other)]);
    assert.ok(!r.effects.some((e) => e.type === "approve"));
  }
});

Deno.test("arming: decision keys right after the detail opened are discarded", () => {
  const view = hostileCommit(NOW);
  let s = start([view]);
  s = step(s, { type: "key", key: "<enter>", at: NOW }).state;
  const code = codeKeys(view);
  // the code typed 100 ms after the detail opened: ignored, and it has to start over
  let r = step(s, { type: "key", key: code[0], at: NOW + 100 });
  assert.equal(r.state.detail!.typed, "");
  assert.match(r.state.status!.text, /too fast/);
  // d too
  r = step(r.state, { type: "key", key: "d", at: NOW + 200 });
  assert.deepEqual(r.effects, []);
  s = r.state;
  for (const [i, k] of code.entries()) {
    r = step(s, { type: "key", key: k, at: NOW + ARM_MS + 1 + i });
    s = r.state;
  }
  assert.deepEqual(r.effects, [{ type: "approve", id: view.id, digest: view.digest }]);
});

Deno.test("arming: a change on screen discards every key for the delay and flushes input", () => {
  const [a, b] = [hostileCommit(NOW), tagRequest(NOW)];
  let s = press(start([a]), ["<enter>"], NOW).state;
  const code = codeKeys(a);
  s = press(s, [code[0]]).state;
  assert.equal(s.detail!.typed, code[0].toUpperCase());
  // a new request arrives while the code is half typed
  const at = clock + 5;
  const r = step(s, { type: "list", at, requests: summaries([a, b]) });
  assert.deepEqual(r.effects, [{ type: "flushInput" }]);
  assert.equal(r.state.inputBlockedUntil, at + ARM_MS);
  assert.equal(r.state.detail!.typed, "", "the half-typed code is forgotten");
  s = r.state;
  for (const k of [code[1], "d", "j", "q"]) {
    const x = step(s, { type: "key", key: k, at: at + 10 });
    assert.deepEqual(x.effects, [], k);
    assert.equal(x.state.screen, "detail");
    assert.match(x.state.status!.text, /ignored/);
  }
  // the same list again is no change: no new block
  assert.deepEqual(
    step(s, { type: "list", at: at + 5_000, requests: summaries([a, b]) }).effects,
    [],
  );
  // Ctrl-C always quits
  assert.deepEqual(step(s, { type: "key", key: "<ctrl-c>", at: at + 1 }).effects, [{
    type: "quit",
  }]);
  // focus (the VT came to the front) blocks too
  const f = step(s, { type: "focused", at: at + 20_000 });
  assert.equal(f.state.inputBlockedUntil, at + 20_000 + ARM_MS);
  assert.deepEqual(f.effects, [{ type: "flushInput" }]);
  // the configured delay is used
  const custom = initialState("x", NOW, SIZE, { armMs: 2_000 });
  assert.equal(step(custom, { type: "focused", at: NOW }).state.inputBlockedUntil, NOW + 2_000);
});

Deno.test("a request that leaves or changes cannot be approved", () => {
  const view = hostileCommit(NOW);
  let s = press(start([view, tagRequest(NOW)]), ["<enter>"]).state;
  // Changed(id, expired) while it is shown
  let r = step(s, { type: "changed", id: view.id, state: "expired" });
  assert.deepEqual(r.effects, [{ type: "refresh" }]);
  assert.equal(r.state.detail?.gone, "expired");
  r = press(r.state, codeKeys(view));
  assert.deepEqual(r.effects, []);
  assert.match(r.state.status!.text, /cannot approve: the request is expired/);
  // it disappears from the list
  s = step(s, { type: "list", at: NOW - 10_000, requests: summaries([tagRequest(NOW)]) }).state;
  assert.equal(s.detail?.gone, "no longer pending");
  // same id, different digest
  s = press(start([view]), ["<enter>"]).state;
  s = step(s, {
    type: "list",
    at: NOW - 10_000,
    requests: summaries([{ ...view, digest: "ff".repeat(32) }]),
  })
    .state;
  assert.ok(s.detail?.changed);
  r = press(s, codeKeys(view));
  assert.deepEqual(r.effects, []);
  assert.match(r.state.status!.text, /changed since it was opened/);
});

Deno.test("deny all pending: D, then y, denies exactly the requests listed when D was pressed", () => {
  const [a, b, c] = [hostileCommit(NOW), tagRequest(NOW), pushRequest(NOW)];
  let r = press(start([a, b]), ["D"]);
  assert.deepEqual(r.effects, []);
  assert.deepEqual(r.state.confirm, {
    kind: "denyAll",
    ids: [a.id, b.id],
    armedUntil: clock + ARM_MS,
  });
  // a y right away is too fast
  const early = step(r.state, { type: "key", key: "y", at: clock + 10 });
  assert.deepEqual(early.effects, []);
  // c arrives meanwhile; it is not denied unseen
  const s =
    step(r.state, { type: "list", at: clock - 100_000, requests: summaries([a, b, c]) }).state;
  r = press(s, ["y"], clock + 100_000);
  assert.deepEqual(r.effects, [
    { type: "deny", id: a.id, reason: DENY_ALL_REASON },
    { type: "deny", id: b.id, reason: DENY_ALL_REASON },
    { type: "refresh" },
  ]);
  assert.equal(r.state.confirm, null);
  // any other key cancels
  r = press(start([a, b]), ["D", "n"]);
  assert.deepEqual(r.effects, []);
  assert.equal(r.state.confirm, null);
  assert.match(r.state.status!.text, /cancelled/);
  // nothing pending: nothing to ask
  assert.equal(press(start([]), ["D"]).state.confirm, null);
});

Deno.test("deny from the list and from the detail view", () => {
  const [a, b] = [hostileCommit(NOW), tagRequest(NOW)];
  let r = press(start([a, b]), ["j", "d"]);
  assert.deepEqual(r.effects, [{ type: "deny", id: b.id, reason: DENY_REASON }]);
  r = step(r.state, {
    type: "decision",
    id: b.id,
    action: "deny",
    error: "org.x.NotPending: too late",
  });
  assert.match(r.state.status!.text, /deny 5e6f7a8b failed: org\.x\.NotPending: too late/);
  assert.equal(r.state.status!.tone, "error");
  r = press(start([a, b]), ["<enter>", "d"]);
  assert.deepEqual(r.effects, [{ type: "deny", id: a.id, reason: DENY_REASON }]);
  r = step(r.state, { type: "decision", id: a.id, action: "deny", error: null });
  assert.equal(r.state.screen, "list");
});

Deno.test("detail scrolling clamps to the content", () => {
  let s = press(start([hostileCommit(NOW)]), ["<enter>"]).state;
  s = press(s, ["k", "<pageup>"]).state;
  assert.equal(s.detail!.scroll, 0);
  s = press(s, ["G"]).state;
  const end = s.detail!.scroll;
  assert.ok(end > 0);
  s = press(s, ["j", "<pagedown>", "<space>"]).state;
  assert.equal(s.detail!.scroll, end);
  s = press(s, ["k"]).state;
  assert.equal(s.detail!.scroll, end - 1);
  // a wider terminal has fewer rows: scroll is clamped on resize
  s = step(s, { type: "resize", cols: 400, rows: 300 }).state;
  assert.equal(s.detail!.scroll, 0);
  s = press(s, ["<esc>"]).state;
  assert.equal(s.screen, "list");
  assert.equal(s.detail, null);
});

Deno.test("history, refresh and quit", () => {
  let r = press(start([]), ["h"]);
  assert.equal(r.state.screen, "history");
  assert.deepEqual(r.effects, [{ type: "loadHistory" }]);
  r = step(r.state, { type: "historyError", error: "boom" });
  assert.equal(r.state.history.error, "boom");
  r = press(r.state, ["q"]);
  assert.equal(r.state.screen, "list");
  assert.deepEqual(press(r.state, ["r"]).effects, [{ type: "refresh" }]);
  r = press(r.state, ["q"]);
  assert.ok(r.state.quit);
  assert.deepEqual(r.effects, [{ type: "quit" }]);
  const c = press(press(start([hostileCommit(NOW)]), ["<enter>"]).state, ["<ctrl-c>"]);
  assert.deepEqual(c.effects, [{ type: "quit" }]);
});

Deno.test("connection states", () => {
  let s = start([hostileCommit(NOW)]);
  s = step(s, { type: "connection", status: "unreachable", error: "gone" }).state;
  assert.equal(s.conn.status, "unreachable");
  assert.deepEqual(s.requests, []);
  const r = step(s, { type: "connection", status: "connected" });
  assert.deepEqual(r.effects, [{ type: "refresh" }]);
  s =
    step(r.state, { type: "list", at: NOW - 10_000, requests: summaries([tagRequest(NOW)]) }).state;
  assert.equal(s.conn.status, "connected");
  assert.equal(s.selectedId, tagRequest().id);
});

Deno.test("status messages expire on tick", () => {
  let s = press(start([]), ["A"]).state;
  assert.ok(s.status);
  s = step(s, { type: "tick", now: NOW + 2 * ARM_MS }).state;
  assert.ok(s.status);
  s = step(s, { type: "tick", now: NOW + 60_000 }).state;
  assert.equal(s.status, null);
});
