import assert from "node:assert/strict";
import type { RequestView } from "../lib/protocol.ts";
import {
  ARM_MS,
  DENY_REASON,
  type Effect,
  initialState,
  parseKeys,
  type UiState,
  update,
} from "./state.ts";
import { hostileCommit, pushRequest, tagRequest } from "./test_support.ts";

const NOW = 1_700_000_000_000;
const SIZE = { cols: 100, rows: 30 };

function start(requests: RequestView[]): UiState {
  let s = initialState("unix:path=/x", NOW, SIZE);
  s = update(s, { type: "connection", status: "connected" }).state;
  return update(s, { type: "list", at: NOW - 10_000, requests }).state;
}

let clock = NOW;

/** Presses keys (each ARM_MS + 1 after the previous, on a clock that only moves forward). */
function press(s: UiState, keys: string[], from = clock): { state: UiState; effects: Effect[] } {
  const effects: Effect[] = [];
  clock = Math.max(clock, from);
  for (const k of keys) {
    clock += ARM_MS + 1;
    const r = update(s, { type: "key", key: k, at: clock });
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
  s = update(s, { type: "list", at: NOW - 10_000, requests: [c, a, b] }).state;
  assert.equal(s.selectedId, b.id);
  // b leaves: the next one after it in the old order, else the previous
  s = update(s, { type: "list", at: NOW - 10_000, requests: [c, a] }).state;
  assert.equal(s.selectedId, a.id);
  s = update(s, { type: "list", at: NOW - 10_000, requests: [] }).state;
  assert.equal(s.selectedId, null);
  s = update(s, { type: "list", at: NOW - 10_000, requests: [b] }).state;
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

Deno.test("approve: A then y, with the digest of the view that is displayed", () => {
  const view = hostileCommit(NOW);
  let s = start([view, tagRequest(NOW)]);
  // A in the list does not approve
  let r = press(s, ["A", "y"]);
  assert.deepEqual(r.effects, []);
  assert.equal(r.state.screen, "list");
  // open, then A, then y
  r = press(s, ["<enter>", "A"]);
  assert.equal(r.state.screen, "detail");
  assert.deepEqual(r.state.confirm?.digest, view.digest);
  r = press(r.state, ["y"]);
  assert.deepEqual(r.effects, [{ type: "approve", id: view.id, digest: view.digest }]);
  s = r.state;
  assert.deepEqual(s.busy, { id: view.id, action: "approve" });
  // a second y does nothing while busy
  assert.deepEqual(press(s, ["A", "y"]).effects, []);
  // success: back to the list, status, refresh
  r = update(s, { type: "decision", id: view.id, action: "approve", error: null });
  assert.equal(r.state.screen, "list");
  assert.equal(r.state.busy, null);
  assert.match(r.state.status!.text, /approved 1a2b3c4d/);
  assert.deepEqual(r.effects, [{ type: "refresh" }]);
});

Deno.test("approve prompt: any other key cancels", () => {
  let s = press(start([hostileCommit(NOW)]), ["<enter>", "A"]).state;
  assert.ok(s.confirm);
  const r = press(s, ["n"]);
  assert.equal(r.state.confirm, null);
  assert.deepEqual(r.effects, []);
  s = press(r.state, ["A", "<enter>"]).state;
  assert.equal(s.confirm, null);
  assert.equal(s.screen, "detail");
});

Deno.test("arming: decision keys right after new content are discarded", () => {
  const view = hostileCommit(NOW);
  let s = start([view]);
  s = update(s, { type: "key", key: "<enter>", at: NOW }).state;
  // A 100 ms after the detail opened: ignored
  s = update(s, { type: "key", key: "A", at: NOW + 100 }).state;
  assert.equal(s.confirm, null);
  assert.match(s.status!.text, /too fast/);
  // d too
  let r = update(s, { type: "key", key: "d", at: NOW + 200 });
  assert.deepEqual(r.effects, []);
  // later A works, but a y typed right after it is discarded
  s = update(r.state, { type: "key", key: "A", at: NOW + ARM_MS + 1 }).state;
  assert.ok(s.confirm);
  r = update(s, { type: "key", key: "y", at: NOW + ARM_MS + 50 });
  assert.deepEqual(r.effects, []);
  assert.ok(r.state.confirm, "the prompt stays");
  r = update(r.state, { type: "key", key: "y", at: NOW + 2 * ARM_MS + 10 });
  assert.deepEqual(r.effects, [{ type: "approve", id: view.id, digest: view.digest }]);
});

Deno.test("a request that leaves or changes cannot be approved", () => {
  const view = hostileCommit(NOW);
  let s = press(start([view, tagRequest(NOW)]), ["<enter>"]).state;
  // Changed(id, expired) while it is shown
  let r = update(s, { type: "changed", id: view.id, state: "expired" });
  assert.deepEqual(r.effects, [{ type: "refresh" }]);
  assert.equal(r.state.detail?.gone, "expired");
  r = press(r.state, ["A", "y"]);
  assert.deepEqual(r.effects, []);
  assert.match(r.state.status!.text, /cannot approve: the request is expired/);
  // it disappears from the list
  s = update(s, { type: "list", at: NOW - 10_000, requests: [tagRequest(NOW)] }).state;
  assert.equal(s.detail?.gone, "no longer pending");
  // same id, different digest
  s = press(start([view]), ["<enter>"]).state;
  s =
    update(s, { type: "list", at: NOW - 10_000, requests: [{ ...view, digest: "ff".repeat(32) }] })
      .state;
  assert.ok(s.detail?.changed);
  r = press(s, ["A", "y"]);
  assert.deepEqual(r.effects, []);
  assert.match(r.state.status!.text, /changed since it was opened/);
  // the prompt is withdrawn when the request leaves while it is up
  s = press(start([view]), ["<enter>", "A"]).state;
  assert.ok(s.confirm);
  s = update(s, { type: "changed", id: view.id, state: "cancelled" }).state;
  assert.equal(s.confirm, null);
  assert.deepEqual(press(s, ["y"]).effects, []);
});

Deno.test("deny from the list and from the detail view", () => {
  const [a, b] = [hostileCommit(NOW), tagRequest(NOW)];
  let r = press(start([a, b]), ["j", "d"]);
  assert.deepEqual(r.effects, [{ type: "deny", id: b.id, reason: DENY_REASON }]);
  r = update(r.state, {
    type: "decision",
    id: b.id,
    action: "deny",
    error: "org.x.NotPending: too late",
  });
  assert.match(r.state.status!.text, /deny 5e6f7a8b failed: org\.x\.NotPending: too late/);
  assert.equal(r.state.status!.tone, "error");
  r = press(start([a, b]), ["<enter>", "d"]);
  assert.deepEqual(r.effects, [{ type: "deny", id: a.id, reason: DENY_REASON }]);
  r = update(r.state, { type: "decision", id: a.id, action: "deny", error: null });
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
  s = update(s, { type: "resize", cols: 400, rows: 300 }).state;
  assert.equal(s.detail!.scroll, 0);
  s = press(s, ["<esc>"]).state;
  assert.equal(s.screen, "list");
  assert.equal(s.detail, null);
});

Deno.test("history, refresh and quit", () => {
  let r = press(start([]), ["h"]);
  assert.equal(r.state.screen, "history");
  assert.deepEqual(r.effects, [{ type: "loadHistory" }]);
  r = update(r.state, { type: "historyError", error: "boom" });
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
  s = update(s, { type: "connection", status: "unreachable", error: "gone" }).state;
  assert.equal(s.conn.status, "unreachable");
  assert.deepEqual(s.requests, []);
  const r = update(s, { type: "connection", status: "connected" });
  assert.deepEqual(r.effects, [{ type: "refresh" }]);
  s = update(r.state, { type: "list", at: NOW - 10_000, requests: [tagRequest(NOW)] }).state;
  assert.equal(s.conn.status, "connected");
  assert.equal(s.selectedId, tagRequest().id);
});

Deno.test("status messages expire on tick", () => {
  let s = press(start([]), ["A"]).state;
  assert.ok(s.status);
  s = update(s, { type: "tick", now: NOW + 2 * ARM_MS }).state;
  assert.ok(s.status);
  s = update(s, { type: "tick", now: NOW + 60_000 }).state;
  assert.equal(s.status, null);
});
