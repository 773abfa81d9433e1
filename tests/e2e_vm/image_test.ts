import assert from "node:assert/strict";
import { GUEST_SHARE, imageKey, runnerUnit } from "./image.ts";
import { summarize } from "./results.ts";

Deno.test("e2e image: the cache key follows the mirror; the runner only runs when asked", async () => {
  const a = await imageKey("http://deb.debian.org/debian");
  assert.match(a, /^[0-9a-f]{16}$/);
  assert.equal(await imageKey("http://deb.debian.org/debian"), a);
  assert.notEqual(await imageKey("http://mirror.example/debian"), a);
  const unit = runnerUnit();
  // A normal boot of the image (no sd_e2e=1 on the kernel command line) does not run it.
  assert.match(unit, /^ConditionKernelCommandLine=sd_e2e=1$/m);
  assert.match(unit, /^SuccessAction=poweroff$/m);
  assert.match(unit, /^FailureAction=poweroff$/m);
  assert.ok(unit.includes(`host0 ${GUEST_SHARE}`));
  assert.doesNotMatch(unit, /--allow-all|\s-A\s/);
});

Deno.test("e2e results: one line per step, evidence only under failures", () => {
  const { lines, failed } = summarize([
    { name: "boots", ok: true, seconds: 1.25, detail: "fine" },
    {
      name: "approves",
      ok: false,
      seconds: 3,
      detail: "timed out",
      evidence: { "VT 8 (/dev/vcs8)": "line 1\nline 2" },
    },
  ]);
  assert.equal(failed, 1);
  assert.deepEqual(lines, [
    "PASS boots (1.3 s): fine",
    "FAIL approves (3.0 s): timed out",
    "  --- VT 8 (/dev/vcs8) ---",
    "  line 1",
    "  line 2",
  ]);
});
