import assert from "node:assert/strict";
import { resolveAddress } from "./main.ts";

Deno.test("console address: --bus, --bus=, errors", () => {
  assert.deepEqual(resolveAddress(["--bus", "unix:path=/a"]), { address: "unix:path=/a" });
  assert.deepEqual(resolveAddress(["--bus=unix:path=/b"]), { address: "unix:path=/b" });
  assert.match((resolveAddress(["--bus"]) as { error: string }).error, /needs an address/);
  assert.match(
    (resolveAddress(["--what\x1b"]) as { error: string }).error,
    /unknown argument: --what\\x1b/,
  );
  assert.match((resolveAddress(["--help"]) as { error: string }).error, /usage: console/);
});
