import assert from "node:assert/strict";
import { psProcReader } from "./proc.ts";

Deno.test("psProcReader: uid, command line and start time of a real process; null when gone", async () => {
  const child = new Deno.Command("sleep", { args: ["30"], stdout: "null", stderr: "null" })
    .spawn();
  try {
    const info = await psProcReader().info(child.pid);
    assert.ok(info);
    assert.equal(info.uid, Deno.uid());
    assert.match(info.cmdline?.[0] ?? "", /^(\/usr\/bin\/)?sleep 30$/);
    // ps -o lstart in the C locale: the start time that tells a reused pid from the first owner.
    assert.match(info.started ?? "", /^[A-Z][a-z]{2} [A-Z][a-z]{2} \d{1,2} \d\d:\d\d:\d\d \d{4}$/);
    const again = await psProcReader().info(child.pid);
    assert.equal(again?.started, info.started);
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
  assert.equal(await psProcReader().info(child.pid), null);
  assert.equal(await psProcReader().info(-1), null);
});
