/**
 * The system-bus policy and the daemon's own uid check, with a real second Unix user
 * (root only: the test creates and removes a throwaway user).
 */

import assert from "node:assert/strict";
import { dispatcherPolicy } from "../deploy/dbus.ts";
import { run } from "../dev/harness.ts";
import { DISPATCHER_IFACE, DISPATCHER_PATH, dispatcherName } from "../lib/protocol.ts";
import { exec, IS_ROOT, signStack } from "./support.ts";

const BOB = "sdtest-bob";
const BOB_UID = 61_002;

async function withBob(fn: () => Promise<void>): Promise<void> {
  await exec("userdel", ["-r", BOB]);
  await run("useradd", ["-M", "-u", String(BOB_UID), "-s", "/usr/sbin/nologin", BOB]);
  try {
    await fn();
  } finally {
    await exec("userdel", [BOB]);
  }
}

/** Arguments of each member `sendAs` can call, as python-dbus `append` arguments. */
const PY_ARGS: Record<string, string> = {
  RequestSign: `dbus.ByteArray(b"tree"), "x", "{}", signature="ayss"`,
  Subscribe: "",
  ListPending: "",
  DenyOwn: `dbus.ObjectPath("/org/secretsdispatcher/Dispatcher1/request/${"0".repeat(32)}")`,
};

/**
 * A dispatcher call (default `RequestSign`) made as `user` by python3-dbus (a real libdbus
 * client), optionally without an interface header (legal in D-Bus; an interface-scoped allow
 * must not match it).
 */
function sendAs(
  user: string,
  address: string,
  dest: string,
  iface: string | null = DISPATCHER_IFACE,
  member = "RequestSign",
) {
  const script = `
import sys, dbus, dbus.lowlevel
bus = dbus.bus.BusConnection(sys.argv[1])
msg = dbus.lowlevel.MethodCallMessage(sys.argv[2], sys.argv[3], sys.argv[4] or None, sys.argv[5])
${PY_ARGS[member] ? `msg.append(${PY_ARGS[member]})` : ""}
try:
    bus.send_message_with_reply_and_block(msg, 5)
    print("REPLY")
except dbus.exceptions.DBusException as e:
    print(e.get_dbus_name(), e.get_dbus_message(), file=sys.stderr)
    sys.exit(1)
`;
  return exec("runuser", [
    "-u",
    user,
    "--",
    "python3",
    "-c",
    script,
    address,
    dest,
    DISPATCHER_PATH,
    iface ?? "",
    member,
  ]);
}

Deno.test({
  name: "another uid is refused by the policy, by unique name too, and by the daemon itself",
  ignore: !IS_ROOT,
  async fn() {
    const s = await signStack();
    try {
      await withBob(async () => {
        // Let bob reach the socket (the test dir is private to root otherwise).
        await Deno.chmod(s.stack.dir, 0o755);
        await Deno.chmod(`${s.stack.dir}/system-bus`, 0o755);
        const name = dispatcherName(Deno.uid()!);
        const byName = await sendAs(BOB, s.systemBus.address, name);
        assert.notEqual(byName.code, 0);
        assert.match(byName.stderr, /AccessDenied/);

        const owner = (await run("dbus-send", [
          `--bus=${s.systemBus.address}`,
          "--print-reply=literal",
          "--dest=org.freedesktop.DBus",
          "/org/freedesktop/DBus",
          "org.freedesktop.DBus.GetNameOwner",
          `string:${name}`,
        ])).stdout.trim();
        const byUnique = await sendAs(BOB, s.systemBus.address, owner);
        assert.match(byUnique.stderr, /AccessDenied/);
        const noIface = await sendAs(BOB, s.systemBus.address, name, null);
        assert.match(noIface.stderr, /AccessDenied/);
        // The desktop side's members too: bob can neither listen nor deny.
        for (const member of ["Subscribe", "ListPending", "DenyOwn"]) {
          const r = await sendAs(BOB, s.systemBus.address, name, DISPATCHER_IFACE, member);
          assert.match(r.stderr, /org\.freedesktop\.DBus\.Error\.AccessDenied/, member);
        }

        // Bob cannot own the name either.
        const own = await exec("runuser", [
          "-u",
          BOB,
          "--",
          "dbus-send",
          `--bus=${s.systemBus.address}`,
          "--print-reply",
          "--dest=org.freedesktop.DBus",
          "/org/freedesktop/DBus",
          "org.freedesktop.DBus.RequestName",
          `string:${name}.x`,
          "uint32:4",
        ]);
        assert.match(own.stderr, /AccessDenied/);

        // Loosen the policy to let bob through: the daemon still refuses him by uid.
        await Deno.writeTextFile(
          `${s.stack.dir}/system-bus/system.d/zz-loose.conf`,
          dispatcherPolicy({ user: BOB, uid: Deno.uid()!, companionUser: "root" }),
        );
        let loose = await sendAs(BOB, s.systemBus.address, name);
        const end = Date.now() + 10_000;
        while (
          /org\.freedesktop\.DBus\.Error\.AccessDenied/.test(loose.stderr) && Date.now() < end
        ) {
          await new Promise((r) => setTimeout(r, 200)); // dbus-daemon reloads by inotify
          loose = await sendAs(BOB, s.systemBus.address, name);
        }
        assert.match(loose.stderr, /org\.secretsdispatcher\.Error\.AccessDenied/);
        for (const member of ["Subscribe", "ListPending", "DenyOwn"]) {
          const r = await sendAs(BOB, s.systemBus.address, name, DISPATCHER_IFACE, member);
          assert.match(r.stderr, /org\.secretsdispatcher\.Error\.AccessDenied/, member);
        }
        assert.deepEqual(await s.admin.list(), []);
      });
    } finally {
      await s.close();
    }
  },
});
