import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import {
  BadReplyError,
  Bus,
  BusUnavailableError,
  CallTimeoutError,
  DBusCallError,
  type Message,
  missingBusPermissions,
} from "./dbus.ts";
import { startTestBus } from "../console/test_support.ts";

const ROOT = fileURLToPath(new URL("..", import.meta.url));

Deno.test("Bus: calls, reply checks, timeouts and the end of the connection", async (t) => {
  const testBus = await startTestBus();
  const buses: Bus[] = [];
  try {
    const bus = await Bus.connect(testBus.address, { timeoutMs: 3000, callTimeoutMs: 200 });
    buses.push(bus);
    assert.equal(bus.callTimeoutMs, 200);
    assert.match(bus.uniqueName, /^:\d+\.\d+$/);

    await t.step("replySignature: a matching reply is returned, another is refused", async () => {
      const [id] = await bus.callBus("GetId", "", [], { replySignature: "s" });
      assert.match(String(id), /^[0-9a-f]{32}$/);
      await assert.rejects(bus.callBus("GetId", "", [], { replySignature: "u" }), (e: unknown) => {
        assert.ok(e instanceof BadReplyError);
        assert.equal(e.expected, "u");
        assert.equal(e.actual, "s");
        assert.match(e.message, /GetId on org\.freedesktop\.DBus: reply signature "s"/);
        return true;
      });
    });

    await t.step("an error reply is a DBusCallError with name and text", async () => {
      await assert.rejects(bus.callBus("GetNameOwner", "s", ["org.example.Nobody"]), (e) => {
        assert.ok(e instanceof DBusCallError);
        assert.equal(e.dbusName, "org.freedesktop.DBus.Error.NameHasNoOwner");
        assert.ok(e.text.length > 0);
        assert.equal(e.message, `${e.dbusName}: ${e.text}`);
        return true;
      });
    });

    // A peer that owns a name and never answers its method calls.
    const silent = await Bus.connect(testBus.address, { timeoutMs: 3000 });
    buses.push(silent);
    silent.raw.addMethodHandler((_msg: Message) => true);
    await silent.requestName("org.example.Silent");
    const silentCall = {
      destination: "org.example.Silent",
      path: "/org/example/Silent",
      interface: "org.example.Silent",
      member: "Wait",
    };
    const handlers = () =>
      Object.keys((bus.raw as unknown as { _methodReturnHandlers: object })._methodReturnHandlers);

    await t.step(
      "a call times out (connection default), and its reply handler is dropped",
      async () => {
        const t0 = Date.now();
        await assert.rejects(bus.call(silentCall), (e: unknown) => {
          assert.ok(e instanceof CallTimeoutError);
          assert.ok(e instanceof BusUnavailableError);
          assert.equal(e.timeoutMs, 200);
          assert.match(e.message, /no reply within 200 ms/);
          return true;
        });
        assert.ok(Date.now() - t0 < 2000);
        assert.deepEqual(handlers(), []);
        await assert.rejects(
          bus.call(silentCall, { timeoutMs: 50 }),
          (e: unknown) => e instanceof CallTimeoutError && e.timeoutMs === 50,
        );
        assert.equal(bus.closed, false);
      },
    );

    await t.step("the bus going away rejects pending calls and runs onClose", async () => {
      const reasons: string[] = [];
      bus.onClose((why) => reasons.push(why));
      const pending = bus.call(silentCall, { timeoutMs: 10_000 });
      const rejected = assert.rejects(pending, (e: unknown) => {
        assert.ok(e instanceof BusUnavailableError);
        assert.ok(!(e instanceof CallTimeoutError));
        assert.match(e.message, /connection to .* ended/);
        return true;
      });
      await new Promise((r) => setTimeout(r, 50));
      await testBus.stop();
      await rejected;
      assert.equal(bus.closed, true);
      assert.equal(reasons.length, 1);
      await assert.rejects(bus.callBus("GetId"), /is closed/);
      const late: string[] = [];
      bus.onClose((why) => late.push(why));
      assert.deepEqual(late, ["closed"]);
    });
  } finally {
    for (const b of buses) b.close();
    await testBus.stop().catch(() => {});
  }
});

Deno.test("Bus.connect fails at once when the peer hangs up during the handshake", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/hangup.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  // Reads the client's AUTH line, then hangs up cleanly (no error on the client's side: only
  // the end of the stream tells it).
  const acceptLoop = (async () => {
    for await (const c of listener) {
      await c.read(new Uint8Array(256));
      await new Promise((r) => setTimeout(r, 20));
      c.close();
    }
  })();
  try {
    const t0 = Date.now();
    await assert.rejects(
      Bus.connect(`unix:path=${path}`, { timeoutMs: 5000 }),
      (e: unknown) => {
        assert.ok(e instanceof BusUnavailableError);
        assert.ok(e.message.startsWith(`cannot connect to unix:path=${path}: `), e.message);
        assert.match(e.message, /the bus closed the connection$/);
        return true;
      },
    );
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  } finally {
    listener.close();
    await acceptLoop.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("Bus.connect: not a socket, bad address", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      Bus.connect(`unix:path=${dir}`),
      new RegExp(`cannot connect to unix:path=${dir}: ${dir} is not a socket`),
    );
    await assert.rejects(Bus.connect(`unix:path=${dir}/none`), /ENOENT/);
    await assert.rejects(Bus.connect("tcp6:host=x"), /cannot connect to tcp6:host=x: .*unknown/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("missingBusPermissions: nothing missing under this test's flags", () => {
  assert.deepEqual(missingBusPermissions("unix:path=/tmp/some.sock"), []);
  assert.deepEqual(missingBusPermissions("tcp:host=localhost,port=1"), []);
});

/** Runs Bus.connect in a child Deno with `flags`; returns what it printed. */
async function connectWith(flags: string[], address: string): Promise<string> {
  const dir = await Deno.makeTempDir();
  try {
    const script = `${dir}/connect.ts`;
    await Deno.writeTextFile(
      script,
      `import { Bus, missingBusPermissions } from ${
        JSON.stringify(new URL("./dbus.ts", import.meta.url).href)
      };
console.log(JSON.stringify(missingBusPermissions(${JSON.stringify(address)})));
try {
  (await Bus.connect(${JSON.stringify(address)}, { timeoutMs: 3000 })).close();
  console.log("connected");
} catch (e) {
  console.log(e.name + ": " + e.message);
}
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", "--cached-only", `--config=${ROOT}deno.json`, ...flags, script],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, text);
    return text;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("Bus.connect names a missing permission instead of hanging or crashing", async () => {
  const testBus = await startTestBus();
  try {
    const sock = testBus.socket;
    const read = `--allow-read=${ROOT},${sock}`;
    const noSys = await connectWith(
      [read, `--allow-write=${sock}`, `--allow-net=unix:${sock}`],
      testBus.address,
    );
    assert.match(noSys, /^\["--allow-sys=uid"\]$/m);
    assert.match(
      noSys,
      /BusUnavailableError: cannot connect to .*: missing Deno permission --allow-sys=uid /,
    );

    const noNet = await connectWith(
      [read, `--allow-write=${sock}`, "--allow-sys=uid"],
      testBus.address,
    );
    assert.ok(noNet.includes(`missing Deno permission --allow-net=unix:${sock} (`), noNet);

    const noWriteNoNet = await connectWith([read, "--allow-sys=uid"], testBus.address);
    assert.ok(
      noWriteNoNet.includes(
        `missing Deno permission --allow-write=${sock} --allow-net=unix:${sock}`,
      ),
      noWriteNoNet,
    );

    const all = await connectWith(
      [read, `--allow-write=${sock}`, `--allow-net=unix:${sock}`, "--allow-sys=uid"],
      testBus.address,
    );
    assert.match(all, /^\[\]\nconnected\n$/);
  } finally {
    await testBus.stop();
  }
});
