import assert from "node:assert/strict";
import { describeRequest, formatCountdown } from "./describe.ts";
import { hostileCommit, secretRead } from "./test_support.ts";
import type { Line } from "./text.ts";

const NOW = 1_700_000_000_000;

const textOf = (lines: Line[]) => lines.map((l) => l.segs.map((s) => s.text).join(""));

Deno.test("secret request: the verified caller is the connection that sent it, the program only its report", () => {
  const view = secretRead(NOW);
  const lines = describeRequest(view, NOW);
  const text = textOf(lines);
  const all = text.join("\n");
  // What is verified, and by what; never that the connection is the desktop agent's.
  const caller = text.indexOf(
    "CALLER -- VERIFIED: the connection that sent the request (uid, pid from the bus; " +
      "command line from ps)",
  );
  assert.ok(caller >= 0, all);
  assert.equal(lines[caller].segs[0].style, "verified");
  assert.doesNotMatch(all, /agent's connection/);
  assert.match(all, /the daemon cannot tell whether it is/);
  // The program: reported by that caller, then checked with ps for consistency only.
  const reported = text.findIndex((t) => t.startsWith("PROGRAM ASKING -- REPORTED BY THE CALLER"));
  const checked = text.findIndex((t) =>
    t.startsWith("PROGRAM ASKING -- CHECKED by the daemon with ps (consistency only")
  );
  assert.ok(caller < reported && reported < checked, all);
  assert.equal(lines[reported].segs[0].style, "reported");
  assert.match(
    all,
    /Sent by: +another process: the caller, pid 900, reports this program \(pid 4242\)/,
  );
  assert.match(
    all,
    /Consistent: +yes: the reported pid runs as the desktop user with the reported command line/,
  );
});

Deno.test("secret request: a program calling the daemon itself is its own caller", () => {
  const view = secretRead(NOW);
  const direct = { ...view, caller: { ...view.caller, pid: 4242 } };
  assert.match(
    textOf(describeRequest(direct, NOW)).join("\n"),
    /Sent by: +this program itself: the caller has the same pid 4242/,
  );
  const unknown = { ...view, caller: { ...view.caller, pid: null } };
  assert.match(
    textOf(describeRequest(unknown, NOW)).join("\n"),
    /Sent by: +the caller \(its pid is unknown\)/,
  );
});

Deno.test("formatCountdown: nearest second, so a fresh 5-minute request shows 5:00", () => {
  const t = 1_700_000_000_000;
  assert.equal(formatCountdown(t + 300_000, t), "5:00");
  // The screen's clock may lag the request by a fraction of a second.
  assert.equal(formatCountdown(t + 300_400, t), "5:00");
  assert.equal(formatCountdown(t + 61_000, t), "1:01");
  assert.equal(formatCountdown(t + 3_725_000, t), "1:02:05");
  assert.equal(formatCountdown(t + 300, t), "0:00");
  assert.equal(formatCountdown(t, t), "expired");
  assert.equal(formatCountdown(t - 5, t), "expired");
  assert.equal(formatCountdown(Number.NaN, t), "?");
});

Deno.test("a commit body's count is of its lines; a missing final newline is said", () => {
  const bodyOf = (body: string) => {
    const view = hostileCommit();
    if (view.sign?.content?.type !== "commit") throw new Error("fixture is not a commit");
    view.sign.content.body = body;
    const lines = describeRequest(view, null).map((l) => l.segs.map((s) => s.text).join(""));
    return lines.slice(lines.findIndex((l) => /^\s*Body:/.test(l))).slice(0, 4);
  };
  assert.match(bodyOf("body line\n")[0], /Body:\s+1 line:$/);
  assert.match(bodyOf("one\ntwo\n")[0], /Body:\s+2 lines:$/);
  assert.match(bodyOf("one\ntwo")[0], /Body:\s+2 lines \(no newline at the end\):$/);
  assert.match(bodyOf("")[0], /Body:\s+\(empty\)$/);
  // Only the text lines follow, not an empty row for the final newline.
  const one = bodyOf("body line\n");
  assert.match(one[1], /body line/);
  assert.doesNotMatch(one[2] ?? "", /^\s*\|\s*$/);
});
