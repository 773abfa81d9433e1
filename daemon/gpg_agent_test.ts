import assert from "node:assert/strict";
import { Stack } from "../dev/harness.ts";
import { RealGpg } from "./gpg.ts";

Deno.test("forgetPassphrases: with a running gpg-agent, and with none", async () => {
  const stack = await Stack.temp("sd-gpg-");
  try {
    const key = await stack.gnupgHome("gnupg");
    const gpg = new RealGpg({ gpg: "/usr/bin/gpg", gnupgHome: key.home });
    // gpgconf --kill ran for none yet: make sure no agent runs, then forget (nothing to do).
    await new Deno.Command("gpgconf", { args: ["--homedir", key.home, "--kill", "gpg-agent"] })
      .output();
    await gpg.forgetPassphrases();
    // Start the agent, then forget: RELOADAGENT answers OK.
    const start = await new Deno.Command("gpg-connect-agent", {
      args: ["/bye"],
      env: { GNUPGHOME: key.home },
    }).output();
    assert.ok(start.success);
    await gpg.forgetPassphrases();
    const broken = new RealGpg({
      gpg: "/usr/bin/gpg",
      gpgConnectAgent: "/bin/false",
      gnupgHome: key.home,
    });
    await assert.rejects(broken.forgetPassphrases(), /RELOADAGENT failed/);
  } finally {
    await stack.destroy();
  }
});
