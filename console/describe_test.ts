import assert from "node:assert/strict";
import { describeRequest, formatCountdown } from "./describe.ts";
import { hostileCommit } from "./test_support.ts";

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
