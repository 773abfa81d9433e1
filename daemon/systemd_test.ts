import assert from "node:assert/strict";
import { startTestBus } from "../console/test_support.ts";
import { Bus, DBusCallError, type Message } from "../lib/dbus.ts";
import { readConfig } from "./main.ts";
import { stopUnit, SYSTEMD } from "./systemd.ts";

Deno.test("stopUnit asks systemd's manager to stop the unit and returns the job", async () => {
  const bus = await startTestBus();
  const systemd = await Bus.connect(bus.address);
  const client = await Bus.connect(bus.address);
  try {
    const calls: unknown[][] = [];
    systemd.raw.addMethodHandler((msg: Message) => {
      if (msg.interface !== SYSTEMD.manager || msg.path !== SYSTEMD.path) return false;
      calls.push([msg.member, msg.signature, ...(msg.body as unknown[])]);
      const [unit] = msg.body as string[];
      if (unit === "secrets-dispatcher-companion@alice.target") {
        systemd.reply(msg, "o", ["/org/freedesktop/systemd1/job/42"]);
      } else {
        systemd.replyError(msg, "org.freedesktop.DBus.Error.AccessDenied", "Access denied");
      }
      return true;
    });
    await systemd.requestName(SYSTEMD.name);
    assert.equal(
      await stopUnit(client, "secrets-dispatcher-companion@alice.target"),
      "/org/freedesktop/systemd1/job/42",
    );
    await assert.rejects(
      stopUnit(client, "dbus.service"),
      (e) => e instanceof DBusCallError && e.dbusName === "org.freedesktop.DBus.Error.AccessDenied",
    );
    assert.deepEqual(calls, [
      ["StopUnit", "ss", "secrets-dispatcher-companion@alice.target", "replace"],
      ["StopUnit", "ss", "dbus.service", "replace"],
    ]);
  } finally {
    systemd.close();
    client.close();
    await bus.stop();
  }
});

Deno.test("SD_LOCK_STOP_UNIT must be a unit name", () => {
  const base: Record<string, string> = {
    SD_CLIENT_UID: "1000",
    SD_COMPANION_BUS_ADDRESS: "unix:path=/run/x/bus",
    SD_STATE_DIR: "/var/lib/x",
  };
  const read = (extra: Record<string, string>) => readConfig((n) => ({ ...base, ...extra })[n]);
  assert.equal(read({}).lockStopUnit, undefined);
  assert.equal(
    read({ SD_LOCK_STOP_UNIT: "secrets-dispatcher-companion@alice.target" }).lockStopUnit,
    "secrets-dispatcher-companion@alice.target",
  );
  for (const bad of ["../x.target", "a b.target", "x.socket", "x;rm.service"]) {
    assert.throws(() => read({ SD_LOCK_STOP_UNIT: bad }), /SD_LOCK_STOP_UNIT/, bad);
  }
});
