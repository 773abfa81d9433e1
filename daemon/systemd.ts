/**
 * The one call the daemon makes to systemd: stopping the companion target when the console or
 * `ctl` locks (`org.freedesktop.systemd1.Manager.StopUnit(ss) -> o`, org.freedesktop.systemd1(5)).
 * systemd asks polkit (action `org.freedesktop.systemd1.manage-units`); the rule provisioning
 * writes (`deploy/polkit.ts`) lets the companion user stop exactly that target.
 *
 * @module
 */

import type { Bus } from "../lib/dbus.ts";

/** systemd's bus name, object path and manager interface. */
export const SYSTEMD = {
  name: "org.freedesktop.systemd1",
  path: "/org/freedesktop/systemd1",
  manager: "org.freedesktop.systemd1.Manager",
} as const;

/** Unit names the daemon accepts for `SD_LOCK_STOP_UNIT` (systemd.unit(5) name characters). */
export const UNIT_NAME = /^[A-Za-z0-9:_.\\@-]+\.(target|service)$/;

/**
 * Queues a stop job for `unit` (mode `replace`) and returns the job's object path. systemd
 * answers once the job is queued; the units stop afterwards (this process too, when it is one of
 * them: it gets SIGTERM).
 *
 * @throws {import("../lib/dbus.ts").DBusCallError} e.g. `org.freedesktop.DBus.Error.AccessDenied`
 *   or `...InteractiveAuthorizationRequired` when polkit says no, `NoSuchUnit`
 * @throws {import("../lib/dbus.ts").BusUnavailableError} when the system bus is gone
 */
export async function stopUnit(bus: Bus, unit: string): Promise<string> {
  const [job] = await bus.call({
    destination: SYSTEMD.name,
    path: SYSTEMD.path,
    interface: SYSTEMD.manager,
    member: "StopUnit",
    signature: "ss",
    body: [unit, "replace"],
  }, { replySignature: "o" });
  return job as string;
}
