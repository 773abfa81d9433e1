import assert from "node:assert/strict";
import type { AdminStoreStatus, RequestView } from "../lib/protocol.ts";
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
  passphraseAccepts,
  type UiEvent,
  type UiState,
} from "./state.ts";
import { render } from "./render.ts";
import {
  hostileCommit,
  pushRequest,
  secretRead,
  step,
  summaries,
  tagRequest,
} from "./test_support.ts";

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

// ---- the secret store: locked, the passphrase prompt, requests waiting for it ----------------

const LOCKED: AdminStoreStatus = {
  state: "locked",
  message: 'the store\x1b[2J "Login" is locked',
  consoleLock: false,
  passwordUnlock: true,
  creates: false,
};
const UNLOCKED: AdminStoreStatus = {
  state: "unlocked",
  message: "the store is unlocked",
  consoleLock: false,
  passwordUnlock: null,
  creates: false,
};

/** The screen as plain text. */
function screen(s: UiState): string {
  // deno-lint-ignore no-control-regex
  return render(s, s.size).map((l) => l.replace(/\x1b\[[0-9;]*m/g, "")).join("\n");
}

/** The store answers `store` now (on the test clock). */
function storeIs(s: UiState, store: AdminStoreStatus): { state: UiState; effects: Effect[] } {
  clock += 1;
  return step(s, { type: "store", store, at: clock });
}

/** A key on the prompt, as main.ts reports it after applying it to the passphrase buffer. */
function pass(
  s: UiState,
  key: Extract<UiEvent, { type: "passphrase" }>["key"],
  empty: boolean,
): { state: UiState; effects: Effect[] } {
  clock += ARM_MS + 1;
  return step(s, { type: "passphrase", key, empty, at: clock });
}

Deno.test("store locked: the prompt opens by itself, once; it shows no request and no code", () => {
  const view = tagRequest(NOW);
  let r = storeIs(start([view]), LOCKED);
  assert.equal(r.state.screen, "unlock");
  assert.deepEqual(r.effects, [{ type: "flushInput" }], "it appeared by itself: input armed");
  assert.equal(r.state.inputBlockedUntil, clock + ARM_MS);
  const text = screen(r.state);
  assert.match(text, /unlock the secret store/);
  assert.match(text, /UNLOCK THE SECRET STORE/);
  assert.match(text, /store: the store\\x1b\[2J "Login" is locked/, "the message, escaped");
  assert.match(text, /store passphrase: \(nothing typed\)/);
  assert.match(text, /it approves no request/);
  assert.match(text, /1 request pending; Esc with nothing typed shows them/);
  assert.doesNotMatch(text, new RegExp(approvalCode(view.id, view.digest).split("").join(" ")));
  assert.doesNotMatch(text, /5e6f7a8b|approve:/, "no request on this screen");
  // Decoded keys do nothing here (main.ts sends passphrase events instead).
  assert.deepEqual(press(r.state, ["d", "q", "D"]).effects, []);
  // Esc with nothing typed: back to the list, which says how to come back.
  r = pass(r.state, "esc", true);
  assert.equal(r.state.screen, "list");
  assert.match(r.state.status!.text, /stays locked; p types its passphrase/);
  assert.match(
    screen(r.state),
    /STORE LOCKED +secret requests cannot be approved until it is unlocked; p: type the store passphrase/,
  );
  assert.match(screen(r.state), / p unlock the store /, "the key is listed");
  // It does not come back by itself ...
  r = storeIs(r.state, LOCKED);
  assert.equal(r.state.screen, "list");
  // ... but p opens it.
  r = press(r.state, ["p"]);
  assert.equal(r.state.screen, "unlock");
  // Once the store was unlocked and locks again, it opens by itself again.
  r = storeIs(pass(r.state, "esc", true).state, UNLOCKED);
  r = storeIs(r.state, LOCKED);
  assert.equal(r.state.screen, "unlock");
});

Deno.test("the prompt: a fixed mask, Esc and Ctrl-U clear, Enter sends; a wrong passphrase may be retried", () => {
  let s = storeIs(start([]), LOCKED).state;
  assert.ok(!passphraseAccepts(s, clock), "nothing taken within the arming delay");
  assert.ok(passphraseAccepts(s, clock + ARM_MS));
  // Enter with nothing typed sends nothing.
  let r = pass(s, "enter", true);
  assert.deepEqual(r.effects, []);
  assert.match(r.state.status!.text, /type the store passphrase, then press Enter/);
  r = pass(r.state, "text", false);
  const one = screen(r.state);
  assert.match(one, /store passphrase: \*{8}/);
  r = pass(r.state, "text", false);
  assert.equal(screen(r.state), one, "more typing: the very same screen (no length shown)");
  r = pass(r.state, "esc", true);
  assert.equal(r.state.screen, "unlock", "Esc with something typed only clears");
  assert.match(screen(r.state), /store passphrase: \(nothing typed\)/);
  r = pass(pass(r.state, "text", false).state, "clear", true);
  assert.equal(r.state.unlock.typed, false, "Ctrl-U clears");
  r = pass(pass(r.state, "text", false).state, "enter", false);
  assert.deepEqual(r.effects, [{ type: "unlockStore" }]);
  s = r.state;
  assert.ok(s.unlock.busy);
  assert.ok(!passphraseAccepts(s, clock + 10_000), "nothing taken while it is in flight");
  assert.match(screen(s), /store passphrase: \(unlocking\.\.\.\)/);
  // Wrong: the prompt stays, says so, takes a new try.
  r = step(s, { type: "unlockResult", outcome: "wrong", text: "no", at: clock });
  assert.equal(r.state.screen, "unlock");
  assert.deepEqual(r.effects, [{ type: "refresh" }]);
  assert.match(screen(r.state), /wrong passphrase: the store is still locked\. Type it again\./);
  assert.ok(passphraseAccepts(r.state, clock + 1));
  // Right: back to the list, input armed (the list appeared), the store re-read.
  r = pass(pass(r.state, "text", false).state, "enter", false);
  r = step(r.state, { type: "unlockResult", outcome: "ok", text: null, at: clock });
  assert.equal(r.state.screen, "list");
  assert.match(r.state.status!.text, /the secret store is unlocked/);
  assert.deepEqual(r.effects, [{ type: "flushInput" }, { type: "refresh" }]);
  assert.equal(r.state.inputBlockedUntil, clock + ARM_MS);
});

Deno.test("the prompt: refused keys, a store unlocked elsewhere, a lost daemon", () => {
  let s = storeIs(start([]), LOCKED).state;
  let r = pass(pass(s, "text", false).state, "refused", true);
  assert.equal(r.state.unlock.typed, false);
  assert.match(r.state.status!.text, /what was typed is cleared, type it again/);
  // A request arriving does not interrupt typing (the prompt decides nothing).
  s = pass(r.state, "text", false).state;
  r = step(s, { type: "list", at: clock, requests: summaries([hostileCommit(NOW)]) });
  assert.deepEqual(r.effects, []);
  assert.ok(r.state.unlock.typed);
  assert.match(screen(r.state), /1 request pending/);
  // The PAM hand-off (or ctl unlock) opened the store: the prompt goes away by itself.
  r = storeIs(r.state, UNLOCKED);
  assert.equal(r.state.screen, "list");
  assert.equal(r.state.unlock.typed, false);
  assert.match(r.state.status!.text, /the secret store is unlocked/);
  assert.deepEqual(r.effects, [{ type: "flushInput" }]);
  // Whoever was typing the passphrase goes on typing: no letter of it reaches the list (d would
  // deny), however long it goes on, until a pause.
  let at = clock;
  for (const k of "passwordpassword") {
    at += ARM_MS - 50;
    const x = step(r.state, { type: "key", key: k, at });
    assert.deepEqual(x.effects, [], k);
    assert.match(x.state.status!.text, /keys are ignored until you stop typing/);
    r = x;
  }
  r = step(r.state, { type: "key", key: "h", at: at + ARM_MS + 1 });
  assert.equal(r.state.screen, "history", "after a pause, keys work again");
  assert.equal(r.state.blockWhileTyping, false);
  r = step(r.state, { type: "key", key: "<esc>", at: at + ARM_MS + 2 });
  // The daemon goes away while the prompt is shown: back to the list, prompt again later.
  s = storeIs(r.state, LOCKED).state;
  assert.equal(s.screen, "unlock");
  s = step(s, { type: "connection", status: "unreachable", error: "gone" }).state;
  assert.equal(s.screen, "list");
  s = step(s, { type: "connection", status: "connected" }).state;
  assert.equal(storeIs(s, LOCKED).state.screen, "unlock");
});

Deno.test("no prompt for a store that takes no passphrase here, nor for the console's own lock", () => {
  let r = storeIs(start([]), { ...LOCKED, passwordUnlock: false });
  assert.equal(r.state.screen, "list");
  assert.match(
    screen(r.state),
    /STORE LOCKED .*opens only with its own\s+tools \(no passphrase here\)/,
  );
  r = press(r.state, ["p"]);
  assert.equal(r.state.screen, "list");
  assert.match(r.state.status!.text, /cannot take a passphrase here/);
  assert.doesNotMatch(screen(r.state), / p unlock the store /);
  r = storeIs(r.state, { ...LOCKED, consoleLock: true, passwordUnlock: null });
  assert.equal(r.state.screen, "list");
  const text = screen(r.state);
  assert.match(text, /LOCKED ON THE CONSOLE/);
  assert.match(text, /every request is refused until U lifts the lock/);
  // Lifting the console's lock leaves the store itself locked: now the prompt comes.
  r = storeIs(r.state, LOCKED);
  assert.equal(r.state.screen, "unlock");
  // Unlocked: p has nothing to do.
  r = press(storeIs(r.state, UNLOCKED).state, ["p"]);
  assert.equal(r.state.screen, "list");
  assert.match(r.state.status!.text, /not locked: nothing to unlock/);
});

Deno.test("a secret request on a locked store: 'STORE LOCKED', no code, not approvable; approvable once unlocked", () => {
  const secret = secretRead(NOW);
  const commit = hostileCommit(NOW);
  let s = storeIs(start([secret, commit]), LOCKED).state;
  s = pass(s, "esc", true).state; // to the list
  const list = screen(s).split("\n");
  assert.match(list.find((l) => l.includes("3c4d5e6f"))!, /STORE LOCKED read "Mail password"/);
  assert.doesNotMatch(list.find((l) => l.includes("1a2b3c4d"))!, /STORE LOCKED/);
  // Its detail view: the store's state instead of the code, and the code refused.
  let r = press(s, ["<enter>"]);
  assert.equal(r.state.detail?.id, secret.id);
  const code = codeKeys(secret);
  const text = screen(r.state);
  assert.match(
    text,
    /THE SECRET STORE IS LOCKED: this request cannot be approved until it is unlocked; Esc, then p:\s+type the store passphrase/,
  );
  assert.doesNotMatch(text, new RegExp(code.join(" ").toUpperCase()));
  r = press(r.state, code);
  assert.deepEqual(r.effects, []);
  assert.match(r.state.status!.text, /cannot approve: the secret store is locked/);
  r = press(r.state, ["y"]);
  assert.match(r.state.status!.text, /cannot approve: the secret store is locked/);
  // A signing request does not need the store: its code works.
  r = press(press(r.state, ["<esc>", "j", "<enter>"]).state, codeKeys(commit));
  assert.deepEqual(r.effects, [{ type: "approve", id: commit.id, digest: commit.digest }]);
  // The store opens while the secret request is on screen: its code appears, armed.
  r = press(
    step(r.state, { type: "decision", id: commit.id, action: "approve", error: null }).state,
    ["k", "<enter>"],
  );
  assert.equal(r.state.detail?.id, secret.id);
  r = storeIs(r.state, UNLOCKED);
  assert.equal(r.state.detail!.armedUntil, clock + ARM_MS);
  assert.match(screen(r.state), new RegExp(`approve: type ${code.join(" ").toUpperCase()}`));
  const early = step(r.state, { type: "key", key: code[0], at: clock + 1 });
  assert.match(early.state.status!.text, /too fast/);
  r = press(r.state, code);
  assert.deepEqual(r.effects, [{ type: "approve", id: secret.id, digest: secret.digest }]);
});

const CREATES: AdminStoreStatus = {
  state: "locked",
  message:
    "the secret store has no keyring yet: the first unlock with a store passphrase creates it",
  consoleLock: false,
  passwordUnlock: true,
  creates: true,
};

Deno.test("a store without a keyring: the prompt creates it, asks twice, refuses an empty passphrase, starts over on a mismatch", () => {
  let r = storeIs(start([]), CREATES);
  assert.equal(r.state.screen, "unlock");
  let text = screen(r.state);
  assert.match(text, /create the secret store \|/);
  assert.match(text, /CREATE THE SECRET STORE/);
  assert.match(
    text,
    /Create the secret store: choose a passphrase, press Enter, then type it again/,
  );
  assert.match(text, /new passphrase: \(nothing typed\)/);
  assert.match(text, /type it again: +\(after Enter\)/);
  assert.match(text, /it approves no request/);
  assert.match(text.split("\n").at(-1)!, /Enter next /);
  // An empty passphrase is refused.
  r = pass(r.state, "enter", true);
  assert.deepEqual(r.effects, []);
  assert.match(r.state.status!.text, /an empty passphrase is refused/);
  assert.equal(r.state.unlock.step, "first");
  // The first typing, then Enter: on to typing it again (nothing sent yet).
  r = pass(pass(r.state, "text", false).state, "enter", false);
  assert.deepEqual(r.effects, []);
  assert.equal(r.state.unlock.step, "confirm");
  assert.equal(r.state.unlock.typed, false);
  assert.match(r.state.status!.text, /now type the same passphrase again/);
  text = screen(r.state);
  assert.match(text, /new passphrase: \(typed/);
  assert.match(text, /type it again: +\(nothing typed\)/);
  assert.match(text.split("\n").at(-1)!, /Enter create .*Esc start over/);
  r = pass(r.state, "enter", true);
  assert.deepEqual(r.effects, [], "nothing typed again: nothing sent");
  assert.match(r.state.status!.text, /type the same passphrase again/);
  r = pass(pass(r.state, "text", false).state, "enter", false);
  assert.deepEqual(r.effects, [{ type: "unlockStore", create: true }]);
  assert.ok(r.state.unlock.busy);
  assert.match(screen(r.state), /type it again: +\(creating\.\.\.\)/);
  // main.ts found the two different: back to the first passphrase, nothing sent.
  r = step(r.state, { type: "unlockResult", outcome: "mismatch", text: null, at: clock });
  assert.deepEqual(r.effects, []);
  assert.equal(r.state.screen, "unlock");
  assert.equal(r.state.unlock.step, "first");
  assert.equal(r.state.unlock.busy, false);
  assert.equal(r.state.status!.text, "the two passphrases differ");
  assert.match(screen(r.state), /the two passphrases differ: nothing was created/);
  assert.match(screen(r.state), /new passphrase: \(nothing typed\)/);
  // Esc with nothing typed again goes back one step; from the first, to the list.
  r = pass(pass(pass(r.state, "text", false).state, "enter", false).state, "esc", true);
  assert.equal(r.state.unlock.step, "first");
  assert.match(r.state.status!.text, /start over: choose a passphrase/);
  r = pass(r.state, "esc", true);
  assert.equal(r.state.screen, "list");
  assert.match(r.state.status!.text, /not created yet; p creates it/);
  text = screen(r.state);
  assert.match(text.split("\n")[0], /\| NO STORE YET/);
  assert.match(text, /NO SECRET STORE YET +secrets can be neither stored nor read until it is/);
  assert.match(text, /p: create it with\s+a passphrase/);
  assert.match(text, / p create the store /);
  // p, the pair typed alike: created.
  r = press(r.state, ["p"]);
  assert.equal(r.state.screen, "unlock");
  r = pass(pass(r.state, "text", false).state, "enter", false);
  r = pass(pass(r.state, "text", false).state, "enter", false);
  assert.deepEqual(r.effects, [{ type: "unlockStore", create: true }]);
  r = step(r.state, { type: "unlockResult", outcome: "ok", text: null, at: clock });
  assert.equal(r.state.screen, "list");
  assert.equal(r.state.status!.text, "the secret store is created and unlocked");
  assert.deepEqual(r.effects, [{ type: "flushInput" }, { type: "refresh" }]);
});

Deno.test("creating: a failure starts over; a store created elsewhere meanwhile clears what was typed", () => {
  let s = storeIs(start([]), CREATES).state;
  s = pass(pass(s, "text", false).state, "enter", false).state;
  s = pass(pass(s, "text", false).state, "enter", false).state;
  let r = step(s, { type: "unlockResult", outcome: "failed", text: "no answer", at: clock });
  assert.equal(r.state.unlock.step, "first");
  assert.match(screen(r.state), /the store was not created: no answer/);
  // Half-way through, the store turns into one to unlock (it was created and locked elsewhere).
  s = pass(pass(r.state, "text", false).state, "enter", false).state;
  r = storeIs(s, LOCKED);
  assert.equal(r.state.screen, "unlock");
  assert.equal(r.state.unlock.step, "first");
  assert.equal(r.state.unlock.typed, false);
  assert.match(r.state.status!.text, /the store changed meanwhile/);
  assert.match(screen(r.state), /UNLOCK THE SECRET STORE/);
});
