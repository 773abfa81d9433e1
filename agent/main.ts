/**
 * The desktop agent (runs as the desktop user): serves `org.freedesktop.secrets` on the session
 * bus and forwards every operation to the approval daemon on the system bus. It keeps no secret
 * store.
 *
 * Usage: `deno task agent [--replace] [--read-wait=SECONDS] [--vt=N] [--no-notifications]`
 * - `--replace`: take `org.freedesktop.secrets` from the program that owns it (gnome-keyring...)
 *   when that program allows it. Without it the agent starts only when nobody owns the name.
 * - `--read-wait`: how long a `GetSecret`/`SetSecret` without a prompt waits for the human
 *   (default 20, below the ~25 s client call timeout).
 * - `--vt`: the VT of the approval console, named in notifications (default 8).
 * - `--no-notifications`: no desktop notifications.
 *
 * While it runs it keeps a subscription to the daemon's request events (reconnecting with
 * backoff when the daemon or the system bus goes away) and shows a desktop notification for each
 * request waiting for approval, and one when the daemon cannot be reached.
 *
 * Environment: `DBUS_SESSION_BUS_ADDRESS` (required), `DBUS_SYSTEM_BUS_ADDRESS` (default the
 * standard system bus), `SD_DISPATCHER_UID` (whose dispatcher to use; default the own uid).
 * Permissions (deploy/permissions.ts, "agent"): the two bus sockets,
 * `--allow-run=/usr/bin/readlink,/usr/bin/cat` (to read /proc of callers), `--allow-sys=uid`.
 *
 * Writes one line containing `ready` to stderr once serving. Exit status: 0 after SIGINT or
 * SIGTERM; 1 when the session bus or the name is lost, or the agent cannot start; 2 for bad
 * usage; {@link EXIT_NAME_TAKEN} (3) when another program owns `org.freedesktop.secrets` (the
 * message names it): a service manager should not restart it then.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Bus, errorText, systemBusAddress } from "../lib/dbus.ts";
import { SECRETS_NAME } from "../lib/secret_service.ts";
import { DEFAULT_READ_WAIT_MS, NameTakenError, startAgent } from "./agent.ts";
import { CachedPort } from "./cached_port.ts";
import { DaemonPort } from "./daemon_port.ts";

const log = (line: string) => console.error(`secrets-dispatcher agent: ${line}`);

/** Exit status when another program owns `org.freedesktop.secrets` (see the module doc). */
export const EXIT_NAME_TAKEN = 3;

/** Runs the agent until a signal or a loss; returns the exit status. */
async function main(args: string[]): Promise<number> {
  let replace: boolean;
  let notifications: boolean;
  let readWaitMs = DEFAULT_READ_WAIT_MS;
  let vt = 8;
  try {
    const { values } = parseArgs({
      args,
      options: {
        replace: { type: "boolean" },
        "read-wait": { type: "string" },
        vt: { type: "string" },
        "no-notifications": { type: "boolean" },
      },
      strict: true,
      allowPositionals: false,
    });
    replace = values.replace ?? false;
    notifications = !values["no-notifications"];
    if (values.vt !== undefined) {
      vt = Number(values.vt);
      if (!Number.isInteger(vt) || vt < 1 || vt > 63) throw new Error("--vt takes 1..63");
    }
    if (values["read-wait"] !== undefined) {
      const s = Number(values["read-wait"]);
      if (!Number.isFinite(s) || s <= 0 || s > 600) {
        throw new Error("--read-wait takes 1..600 seconds");
      }
      readWaitMs = s * 1000;
    }
  } catch (err) {
    log(
      `${errorText(err)}\nusage: agent/main.ts [--replace] [--read-wait=SECONDS] [--vt=N] ` +
        "[--no-notifications]",
    );
    return 2;
  }
  const sessionAddress = Deno.env.get("DBUS_SESSION_BUS_ADDRESS");
  if (!sessionAddress) {
    log("DBUS_SESSION_BUS_ADDRESS is not set (run the agent inside the desktop session)");
    return 2;
  }
  const uidText = Deno.env.get("SD_DISPATCHER_UID");
  const uid = uidText ? Number(uidText) : Deno.uid()!;
  if (!Number.isSafeInteger(uid) || uid < 0) {
    log(`SD_DISPATCHER_UID must be a uid, got ${uidText}`);
    return 2;
  }

  let bus: Bus;
  try {
    bus = await Bus.connect(sessionAddress);
  } catch (err) {
    log(errorText(err));
    return 1;
  }
  const daemon = new DaemonPort({
    address: systemBusAddress((n) => Deno.env.get(n)),
    uid,
    log,
  });
  const port = new CachedPort(daemon);
  let handle;
  try {
    handle = await startAgent({
      sessionBus: bus,
      port,
      replace,
      readWaitMs,
      log,
      notifications,
      vt,
    });
  } catch (err) {
    daemon.close();
    bus.close();
    if (err instanceof NameTakenError) {
      log(err.message);
      return EXIT_NAME_TAKEN;
    }
    log(`cannot start: ${errorText(err)}`);
    return 1;
  }
  log(`ready: serving ${SECRETS_NAME} on ${sessionAddress}`);
  if (!notifications) {
    // Nothing listens to the daemon then: say once whether it can be reached.
    port.storeStatus().then(
      (s) => log(`secret store ${s.state}`),
      (err) => log(`clients get an error until the daemon is reachable (${errorText(err)})`),
    );
  }

  const { promise: signalled, resolve } = Promise.withResolvers<string>();
  const onSignal = (name: string) => () => resolve(name);
  const listeners = [["SIGINT", onSignal("SIGINT")], ["SIGTERM", onSignal("SIGTERM")]] as const;
  for (const [sig, fn] of listeners) Deno.addSignalListener(sig, fn);
  const end = await Promise.race([
    signalled.then((sig) => ({ status: 0, why: `${sig}: stopping` })),
    handle.lost.then((why) => ({ status: 1, why })),
  ]);
  log(end.why);
  for (const [sig, fn] of listeners) Deno.removeSignalListener(sig, fn);
  await handle.stop();
  daemon.close();
  bus.close();
  return end.status;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
