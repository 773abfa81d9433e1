// The notification rules of notices.ts against a recording fake Notifier: one per request, closed
// when it ends, a burst gathered into one updated in place, dismissals respected, Deny wired to
// the daemon, one notice per outage, escaping.

import assert from "node:assert/strict";
import type { PendingSummary } from "../lib/protocol.ts";
import { NoticeBoard } from "./notices.ts";
import type { NotificationSpec, Notifier } from "./notifications.ts";

class FakeNotifier implements Notifier {
  calls: (
    | { op: "notify"; id: number; replaces: number; spec: NotificationSpec }
    | { op: "close"; id: number }
  )[] = [];
  open = new Map<number, NotificationSpec>();
  fail = false;
  #next = 1;
  notify(spec: NotificationSpec, replacesId = 0): Promise<number> {
    if (this.fail) return Promise.reject(new Error("ServiceUnknown: no server"));
    const id = replacesId || this.#next++;
    this.calls.push({ op: "notify", id, replaces: replacesId, spec });
    this.open.set(id, spec);
    return Promise.resolve(id);
  }
  close(id: number): Promise<void> {
    if (this.fail) return Promise.reject(new Error("ServiceUnknown: no server"));
    this.calls.push({ op: "close", id });
    this.open.delete(id);
    return Promise.resolve();
  }
  ops(): string[] {
    return this.calls.map((c) =>
      c.op === "notify" ? `notify ${c.id}/${c.replaces}` : `close ${c.id}`
    );
  }
}

let n = 0;
function req(summary = 'read "Mail"', program = "/usr/bin/secret-tool"): PendingSummary {
  n++;
  return {
    id: n.toString(16).padStart(8, "0") + "f".repeat(24),
    kind: "secret.read",
    summary,
    program,
  };
}

function setup(options: { maxOpen?: number; downGraceMs?: number } = {}) {
  const notifier = new FakeNotifier();
  const denied: string[] = [];
  const logs: string[] = [];
  const board = new NoticeBoard({
    notifier,
    deny: (id) => {
      denied.push(id);
      return Promise.resolve();
    },
    vt: 8,
    settleMs: 5,
    downGraceMs: options.downGraceMs ?? 30,
    maxOpen: options.maxOpen,
    log: (l) => logs.push(l),
  });
  return { notifier, board, denied, logs };
}

Deno.test("a pending request gets one notification, closed when it ends", async () => {
  const { notifier, board } = setup();
  const r = req('read "Mail <b>&</b> password"', "/usr/bin/secret-tool");
  board.synced([]);
  board.pending(r);
  board.pending(r); // a repeat changes nothing
  await board.settled();
  assert.deepEqual(notifier.ops(), ["notify 1/0"]);
  const spec = notifier.open.get(1)!;
  assert.equal(spec.summary, 'Read "Mail <b>&</b> password"', "the summary is plain text");
  assert.equal(
    spec.body,
    "Asked by /usr/bin/secret-tool\n" +
      `Request ${r.id.slice(0, 8)}. Approve on VT 8: Ctrl+Alt+F8`,
  );
  assert.deepEqual(spec.actions, ["deny", "Deny"]);
  assert.equal(spec.urgency, 2);
  board.ended(r.id, "approved");
  await board.settled();
  assert.deepEqual(notifier.ops(), ["notify 1/0", "close 1"]);
  assert.equal(notifier.open.size, 0);
});

Deno.test("outside text: markup escaped in the body only, controls and bidi made visible", async () => {
  const { notifier, board } = setup();
  board.pending({
    id: "a".repeat(32),
    kind: "sign.commit",
    summary: 'commit "fix \u202eevil\u001b[31m"',
    program: "git in /tmp/<x>&y",
  });
  await board.settled();
  const spec = notifier.open.get(1)!;
  assert.equal(spec.summary, 'Sign commit "fix \\u{202e}evil\\x1b[31m"');
  assert.match(spec.body, /^Asked by git in \/tmp\/&lt;x&gt;&amp;y\n/);
  assert.doesNotMatch(spec.body, /&quot;|&#/, "nothing but & < > is escaped");
});

Deno.test("a burst over maxOpen is gathered into one notification, updated in place", async () => {
  const { notifier, board } = setup({ maxOpen: 3 });
  const [a, b] = [req(), req()];
  board.pending(a);
  board.pending(b);
  await board.settled();
  assert.deepEqual(notifier.ops(), ["notify 1/0", "notify 2/0"]);
  const more = [req('delete "X"'), req(), req(), req()];
  for (const r of more) board.pending(r);
  await board.settled();
  // The two single ones give way to one gathered notification.
  assert.deepEqual(notifier.ops().slice(2), ["close 1", "close 2", "notify 3/0"]);
  let gathered = notifier.open.get(3)!;
  assert.equal(notifier.open.size, 1);
  assert.equal(gathered.summary, "6 requests waiting for approval");
  assert.equal(
    gathered.body,
    [
      `${a.id.slice(0, 8)} Read "Mail" (secret-tool)`,
      `${b.id.slice(0, 8)} Read "Mail" (secret-tool)`,
      `${more[0].id.slice(0, 8)} Delete "X" (secret-tool)`,
      "… and 3 more",
      "Approve on VT 8: Ctrl+Alt+F8",
    ].join("\n"),
  );
  assert.deepEqual(gathered.actions, [], "no Deny on the gathered notification");
  // Decisions update it in place (replaces_id), down to one, then it closes.
  for (const r of [a, b, ...more.slice(0, 3)]) board.ended(r.id, "denied");
  await board.settled();
  assert.deepEqual(notifier.ops().slice(5), ["notify 3/3"]);
  gathered = notifier.open.get(3)!;
  assert.equal(gathered.summary, "1 request waiting for approval");
  board.ended(more[3].id, "expired");
  await board.settled();
  assert.deepEqual(notifier.ops().slice(6), ["close 3"]);
  assert.equal(notifier.open.size, 0);
  // Calm again: single notifications.
  board.pending(req());
  await board.settled();
  assert.deepEqual(notifier.ops().slice(7), ["notify 4/0"]);
});

Deno.test("dismissed notifications stay dismissed; Deny denies that request", async () => {
  const { notifier, board, denied } = setup();
  const [a, b] = [req(), req()];
  board.pending(a);
  board.pending(b);
  await board.settled();
  board.closed(1, 2); // the user dismissed a's notification
  board.pending(req());
  await board.settled();
  assert.deepEqual(notifier.ops(), ["notify 1/0", "notify 2/0", "notify 3/0"]);
  board.action(2, "default"); // clicking the body does nothing
  board.action(2, "deny");
  await new Promise((r) => setTimeout(r, 0));
  assert.deepEqual(denied, [b.id]);
  board.action(99, "deny"); // not ours
  assert.deepEqual(denied, [b.id]);
});

Deno.test("a resync replaces what was known; a new server gets everything again", async () => {
  const { notifier, board } = setup();
  const [a, b, c] = [req(), req(), req()];
  board.synced([a, b]);
  await board.settled();
  board.synced([b, c]); // a ended while the daemon was out of reach
  await board.settled();
  assert.deepEqual(notifier.ops(), ["notify 1/0", "notify 2/0", "close 1", "notify 3/0"]);
  board.serverChanged();
  await board.settled();
  assert.deepEqual(notifier.ops().slice(4), ["notify 4/0", "notify 5/0"]);
});

Deno.test("the daemon out of reach: one notice per outage, after the grace time, closed when back", async () => {
  const { notifier, board, logs } = setup({ downGraceMs: 40 });
  board.reachable(false, "the daemon is not running (nobody owns it)");
  board.reachable(false, "still not");
  await board.settled();
  assert.deepEqual(notifier.ops(), [], "not during the grace time");
  await new Promise((r) => setTimeout(r, 80));
  await board.settled();
  assert.deepEqual(notifier.ops(), ["notify 1/0"]);
  const notice = notifier.open.get(1)!;
  assert.match(notice.summary, /approval daemon is not running/);
  assert.match(notice.body, /systemctl status secrets-dispatcher-daemon@\$USER/);
  assert.match(notice.body, /still not/);
  assert.equal(notice.urgency, 1);
  for (let i = 0; i < 5; i++) board.reachable(false, "failed call");
  await new Promise((r) => setTimeout(r, 80));
  await board.settled();
  assert.deepEqual(notifier.ops(), ["notify 1/0"], "once per outage");
  board.reachable(true, "");
  await board.settled();
  assert.deepEqual(notifier.ops(), ["notify 1/0", "close 1"]);
  // A short blip within the grace time shows nothing.
  board.reachable(false, "restarting");
  board.reachable(true, "");
  await new Promise((r) => setTimeout(r, 80));
  await board.settled();
  assert.deepEqual(notifier.ops(), ["notify 1/0", "close 1"]);
  assert.equal(logs.filter((l) => l.includes("cannot be reached")).length, 1);
});

Deno.test("no notification server: logged once, retried on the next change", async () => {
  const { notifier, board, logs } = setup();
  notifier.fail = true;
  board.pending(req());
  board.pending(req());
  await board.settled();
  board.pending(req());
  await board.settled();
  assert.equal(logs.filter((l) => l.startsWith("cannot show notifications")).length, 1);
  notifier.fail = false;
  board.pending(req());
  await board.settled();
  assert.equal(notifier.open.size, 1, "gathered: four are waiting");
  assert.ok(logs.includes("notifications work again"));
  await board.stop();
  assert.equal(notifier.open.size, 0, "stop closes what it opened");
});
