import assert from "node:assert/strict";
import { FakeAdmin, startTestBus, tagRequest } from "../console/test_support.ts";
import { exec } from "../dev/exec.ts";
import { denoDir } from "../dev/harness.ts";
import { busArgument, pathsFromEnv } from "./run.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("busArgument finds ctl's --bus wherever commander would", () => {
  assert.equal(busArgument(["list"]), undefined);
  assert.equal(busArgument(["--bus", "unix:path=/a", "list"]), "unix:path=/a");
  assert.equal(busArgument(["list", "--json", "--bus=unix:path=/b"]), "unix:path=/b");
  assert.equal(
    busArgument(["--bus", "unix:path=/a", "list", "--bus", "unix:path=/c"]),
    "unix:path=/c",
  );
  assert.equal(busArgument(["list", "--bus"]), "");
  assert.equal(busArgument(["deny", "1a2b", "--", "--bus", "unix:path=/d"]), undefined);
});

Deno.test("ctl's --bus names the companion socket in the flags, in place of the environment", () => {
  const env = (vars: Record<string, string>) => (name: string) => vars[name];
  // No SD_COMPANION_BUS_ADDRESS: --bus alone is enough.
  const alone = pathsFromEnv("ctl", env({}), ["--bus", "unix:path=/run/x/bus", "list"]);
  assert.equal(alone.companionBusSocket, "/run/x/bus");
  // Another address in the environment: --bus wins, as it does in ctl itself.
  const both = pathsFromEnv(
    "ctl",
    env({ SD_COMPANION_BUS_ADDRESS: "unix:path=/run/env/bus" }),
    ["list", "--bus=unix:path=/run/arg/bus,guid=0123"],
  );
  assert.equal(both.companionBusSocket, "/run/arg/bus");
  assert.equal(
    pathsFromEnv("ctl", env({ SD_COMPANION_BUS_ADDRESS: "unix:path=/run/env/bus" }), ["list"])
      .companionBusSocket,
    "/run/env/bus",
  );
  // Only addresses whose socket can go into --allow-net=unix:<path>.
  for (const bad of ["unix:abstract=/tmp/dbus-x", "tcp:host=localhost,port=1", ""]) {
    assert.throws(
      () => pathsFromEnv("ctl", env({}), ["--bus", bad, "list"]),
      /--bus takes a unix:path=<socket> address here/,
    );
  }
  // The other entrypoints take no --bus: theirs comes from the environment only.
  assert.throws(
    () => pathsFromEnv("console", env({}), ["--bus", "unix:path=/run/x/bus"]),
    /SD_COMPANION_BUS_ADDRESS is not set/,
  );
  assert.throws(
    () => pathsFromEnv("ctl", env({}), ["list"]),
    /SD_COMPANION_BUS_ADDRESS is not set/,
  );
});

Deno.test("deno task ctl --bus reaches that bus with no or another SD_COMPANION_BUS_ADDRESS", async () => {
  const bus = await startTestBus();
  let fake: FakeAdmin | undefined;
  try {
    fake = await FakeAdmin.start(bus.address, [tagRequest()]);
    const base = {
      PATH: `${Deno.execPath().replace(/\/[^/]*$/, "")}:/usr/bin:/bin`,
      HOME: Deno.env.get("HOME") ?? "/",
      DENO_DIR: await denoDir(),
    };
    const task = (args: string[], env: Record<string, string>) =>
      exec(Deno.execPath(), ["task", "-q", "--config", `${ROOT}/deno.json`, "ctl", ...args], {
        env: { ...base, ...env },
        cwd: ROOT,
        timeoutMs: 60_000,
      });
    const envs: Record<string, string>[] = [
      {},
      { SD_COMPANION_BUS_ADDRESS: "unix:path=/tmp/sd-no-such-dir/bus" },
    ];
    for (const env of envs) {
      const r = await task(["--bus", bus.address, "list"], env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^ID +KIND/);
      assert.match(r.stdout, /5e6f7a8b +sign\.tag/);
    }
    const abstract = await task(["--bus", "unix:abstract=/tmp/sd-x", "list"], {});
    assert.equal(abstract.code, 2);
    assert.match(abstract.stderr, /deno task ctl: --bus takes a unix:path=<socket> address here/);
  } finally {
    fake?.stop();
    await bus.stop();
  }
});
