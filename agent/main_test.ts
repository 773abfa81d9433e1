// The agent as a process, with exactly its production permission flags (deploy/permissions.ts):
// a private desktop bus, a private bus standing in for the system bus with a fake daemon
// speaking the real protocol, and real secret-tool runs.

import assert from "node:assert/strict";
import { startTestBus, type TestBus } from "../console/test_support.ts";
import { Bus } from "../lib/dbus.ts";
import { SECRETS_NAME } from "../lib/secret_service.ts";
import { denoArgs } from "../deploy/permissions.ts";
import { denoDir, ROOT } from "../dev/harness.ts";
import { FakePort, runClient, serveFakeDaemon } from "./test_support.ts";

const UID = Deno.uid()!;

/** A running agent process and what it wrote to stderr. */
interface AgentProcess {
  child: Deno.ChildProcess;
  stderr(): string;
  /** Resolves once a line says `ready`; rejects if the process exits first. */
  ready: Promise<void>;
  status: Promise<Deno.CommandStatus>;
}

async function spawnAgent(
  desktop: TestBus,
  system: TestBus,
  args: string[] = [],
): Promise<AgentProcess> {
  const argv = denoArgs("agent", {
    root: ROOT,
    paths: {
      systemBusSocket: system.socket,
      sessionBusSocket: desktop.socket,
      companionBusSocket: "",
      stateDir: "",
      gpg: "",
      gitDirs: [],
    },
  });
  const child = new Deno.Command(Deno.execPath(), {
    args: [...argv, ...args],
    clearEnv: true,
    env: {
      PATH: "/usr/bin:/bin",
      DBUS_SESSION_BUS_ADDRESS: desktop.address,
      DBUS_SYSTEM_BUS_ADDRESS: system.address,
      SD_DISPATCHER_UID: String(UID),
      DENO_DIR: await denoDir(),
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  let text = "";
  const { promise: ready, resolve, reject } = Promise.withResolvers<void>();
  const status = child.status;
  (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (/ready: serving/.test(text)) resolve();
    }
  })().catch(() => {});
  status.then((s) => reject(new Error(`the agent exited (${s.code}): ${text}`)));
  ready.catch(() => {});
  return { child, stderr: () => text, ready, status };
}

function env(desktop: TestBus): Record<string, string> {
  return { DBUS_SESSION_BUS_ADDRESS: desktop.address, PATH: "/usr/bin:/bin", HOME: "/nonexistent" };
}

Deno.test("the agent process serves secret-tool through the daemon protocol and stops on SIGTERM", async () => {
  const desktop = await startTestBus();
  const system = await startTestBus();
  const port = new FakePort();
  port.autoDecide = () => "approve";
  const daemon = await serveFakeDaemon(system.address, port, UID);
  const agent = await spawnAgent(desktop, system);
  const cwd = await Deno.makeTempDir({ prefix: "sd-agent-cwd-" });
  try {
    await agent.ready;
    const store = await runClient("secret-tool", ["store", "--label=L", "service", "demo"], {
      env: env(desktop),
      stdin: "hunter2",
    });
    assert.equal(store.code, 0, store.stderr);
    const child = new Deno.Command("secret-tool", {
      args: ["lookup", "service", "demo"],
      env: env(desktop),
      clearEnv: true,
      cwd,
    });
    const lookup = await child.output();
    assert.equal(new TextDecoder().decode(lookup.stdout), "hunter2");

    // Who asked, as the agent found out with its narrow permissions (readlink and cat).
    const read = port.requests[1];
    assert.equal(read.kind, "read");
    assert.equal(read.client.exe, "/usr/bin/secret-tool");
    assert.deepEqual(read.client.cmdline, ["/usr/bin/secret-tool", "lookup", "service", "demo"]);
    assert.equal(read.client.cwd, await Deno.realPath(cwd));
    assert.equal(read.client.uid, UID);
    assert.ok(read.client.pid! > 0);

    agent.child.kill("SIGTERM");
    assert.equal((await agent.status).code, 0);
    assert.doesNotMatch(agent.stderr(), /hunter2/, "no secret value in the log");
  } finally {
    try {
      agent.child.kill("SIGKILL");
    } catch { /* exited */ }
    await agent.status;
    daemon.stop();
    await desktop.stop();
    await system.stop();
    await Deno.remove(cwd);
  }
});

Deno.test("the agent process: name taken, --replace, no daemon yet, bus gone", async () => {
  const desktop = await startTestBus();
  const system = await startTestBus();
  const squatter = await Bus.connect(desktop.address);
  const agents: AgentProcess[] = [];
  let daemon = null;
  try {
    // The squatter allows replacement (flags ALLOW_REPLACEMENT | DO_NOT_QUEUE).
    assert.deepEqual(await squatter.callBus("RequestName", "su", [SECRETS_NAME, 1 | 4]), [1]);
    const refused = await spawnAgent(desktop, system);
    agents.push(refused);
    assert.equal((await refused.status).code, 3);
    assert.match(
      refused.stderr(),
      new RegExp(`already owned by connection ${squatter.uniqueName} \\(pid ${Deno.pid}: .*deno`),
    );
    assert.match(refused.stderr(), /start with --replace/);

    // --replace takes the name; the agent serves although no daemon runs yet.
    const agent = await spawnAgent(desktop, system, ["--replace"]);
    agents.push(agent);
    await agent.ready;
    const [owner] = await squatter.callBus("GetNameOwner", "s", [SECRETS_NAME]);
    assert.notEqual(owner, squatter.uniqueName);
    const down = await runClient("secret-tool", ["lookup", "k", "v"], { env: env(desktop) });
    assert.equal(down.code, 1);
    assert.match(down.stderr, /the approval daemon is not running/);

    // The daemon comes: the next call reaches it.
    const port = new FakePort();
    port.addItem("Item", { k: "v" }, "late");
    port.autoDecide = () => "approve";
    daemon = await serveFakeDaemon(system.address, port, UID);
    const up = await runClient("secret-tool", ["lookup", "k", "v"], { env: env(desktop) });
    assert.deepEqual([up.code, up.stdout], [0, "late"]);

    // The session bus goes away: the agent exits 1 and says why.
    squatter.close();
    await desktop.stop();
    assert.equal((await agent.status).code, 1);
    assert.match(agent.stderr(), /session bus connection ended/);
  } finally {
    for (const a of agents) {
      try {
        a.child.kill("SIGKILL");
      } catch { /* exited */ }
      await a.status;
    }
    squatter.close();
    daemon?.stop();
    await desktop.stop().catch(() => {});
    await system.stop();
  }
});
