/**
 * The approval daemon (runs as the companion user, `deno task daemon`): signs after approval,
 * and is the Secret Service client of the backend (`org.freedesktop.secrets`) on the companion
 * bus for the desktop agent's reads and writes.
 *
 * Configuration comes from the environment (a systemd unit or `.demo/env` sets it):
 *
 * | variable | meaning | default |
 * |---|---|---|
 * | `SD_CLIENT_UID` | uid of the desktop user served | required |
 * | `DBUS_SYSTEM_BUS_ADDRESS` | system bus | `unix:path=/run/dbus/system_bus_socket` |
 * | `SD_COMPANION_BUS_ADDRESS` | the companion's private bus | required |
 * | `SD_STATE_DIR` | history and state | required |
 * | `GNUPGHOME` | the companion's keyring | gpg's default |
 * | `SD_GPG` | gpg binary | `/usr/bin/gpg` |
 * | `SD_REQUEST_TTL` | lifetime of a pending request, seconds | 300 |
 *
 * Exit codes: 0 after SIGINT/SIGTERM, 1 on a configuration error or when a bus connection ends.
 *
 * @module
 */

import { Bus, errorText, systemBusAddress } from "../lib/dbus.ts";
import { AdminService } from "./admin_service.ts";
import { RealGpg } from "./gpg.ts";
import { FileHistory } from "./history.ts";
import { psProcReader } from "./proc.ts";
import { RequestManager } from "./requests.ts";
import { SecretRequests } from "./secret_requests.ts";
import { SecretServiceBackend } from "./secret_service_backend.ts";
import { MasterPasswordUnlocker } from "./store_unlock.ts";
import { DispatcherService } from "./system_service.ts";
import { stopUnit, UNIT_NAME } from "./systemd.ts";

/** Daemon configuration, read from the environment. */
export interface DaemonConfig {
  clientUid: number;
  systemBus: string;
  companionBus: string;
  stateDir: string;
  gnupgHome?: string;
  gpg: string;
  ttlMs: number;
  /**
   * `SD_LOCK_STOP_UNIT`: the unit the lock stops (the companion target, which takes this daemon,
   * the console, the store and the companion bus with it); none in the demo and tests.
   */
  lockStopUnit?: string;
}

/**
 * Reads {@link DaemonConfig} from an environment lookup.
 *
 * @throws {Error} naming the variable that is missing or malformed
 */
export function readConfig(env: (name: string) => string | undefined): DaemonConfig {
  const need = (name: string) => {
    const v = env(name);
    if (!v) throw new Error(`${name} is not set`);
    return v;
  };
  const uid = Number(need("SD_CLIENT_UID"));
  if (!Number.isSafeInteger(uid) || uid < 0) throw new Error("SD_CLIENT_UID must be a uid");
  const ttl = Number(env("SD_REQUEST_TTL") ?? "300");
  if (!(ttl > 0 && ttl <= 86400)) throw new Error("SD_REQUEST_TTL must be 1..86400 seconds");
  const lockStopUnit = env("SD_LOCK_STOP_UNIT") || undefined;
  if (lockStopUnit !== undefined && !UNIT_NAME.test(lockStopUnit)) {
    throw new Error("SD_LOCK_STOP_UNIT must be a systemd unit name (.target or .service)");
  }
  return {
    clientUid: uid,
    systemBus: systemBusAddress(env),
    companionBus: need("SD_COMPANION_BUS_ADDRESS"),
    stateDir: need("SD_STATE_DIR"),
    gnupgHome: env("GNUPGHOME") || undefined,
    gpg: env("SD_GPG") || "/usr/bin/gpg",
    ttlMs: ttl * 1000,
    lockStopUnit,
  };
}

function log(line: string): void {
  console.error(`secrets-dispatcher daemon: ${line}`);
}

/** Runs the daemon until a signal or a lost bus. Returns the exit code. */
export async function main(): Promise<number> {
  let config: DaemonConfig;
  try {
    config = readConfig((n) => Deno.env.get(n));
  } catch (err) {
    log(`configuration error: ${errorText(err)}`);
    return 1;
  }
  const history = await FileHistory.open(config.stateDir);
  const gpg = new RealGpg({ gpg: config.gpg, gnupgHome: config.gnupgHome });

  let systemBus: Bus;
  let companionBus: Bus;
  try {
    systemBus = await Bus.connect(config.systemBus);
    companionBus = await Bus.connect(config.companionBus);
  } catch (err) {
    log(errorText(err));
    return 1;
  }

  // The manager reports to the two services, which are built around it.
  const services: { dispatcher?: DispatcherService; admin?: AdminService } = {};
  const manager = new RequestManager({
    gpg,
    history,
    ttlMs: config.ttlMs,
    onChanged: (view) => {
      services.admin?.changed(view);
      services.dispatcher?.changed(view);
    },
    onCompleted: (id, requester, completion) => {
      log(`request ${id.slice(0, 8)} ${completion.outcome}`);
      services.dispatcher?.complete(id, requester, completion);
    },
  });
  const proc = psProcReader();
  const backend = new SecretServiceBackend(companionBus, { log });
  const secrets = new SecretRequests(backend, {
    manager,
    clientUid: config.clientUid,
    proc,
    log,
  });
  const dispatcher = new DispatcherService(systemBus, manager, {
    clientUid: config.clientUid,
    proc,
    secrets,
    log,
  });
  const admin = new AdminService(companionBus, {
    manager,
    history,
    adminUid: Deno.uid() ?? 0,
    status: () => secrets.status(),
    unlocker: new MasterPasswordUnlocker(companionBus),
    onLock: async () => {
      const problems: string[] = [];
      await backend.lockAll().catch((e) => problems.push(`the store: ${errorText(e)}`));
      await gpg.forgetPassphrases().catch((e) => problems.push(`gpg-agent: ${errorText(e)}`));
      if (config.lockStopUnit) {
        // Last: this process is one of the units that stop.
        try {
          await stopUnit(systemBus, config.lockStopUnit);
          log(`lock: stopping ${config.lockStopUnit}`);
        } catch (e) {
          problems.push(`stopping ${config.lockStopUnit}: ${errorText(e)}`);
        }
      }
      return problems;
    },
    log,
  });
  Object.assign(services, { dispatcher, admin });
  try {
    await backend.start();
    await admin.start();
    await dispatcher.start();
  } catch (err) {
    log(errorText(err));
    systemBus.close();
    companionBus.close();
    return 1;
  }
  log(`serving uid ${config.clientUid}; ready`);

  const { promise: stopped, resolve: stop } = Promise.withResolvers<number>();
  const onSignal = () => stop(0);
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  systemBus.onClose((why) => {
    log(`system bus connection ended (${why})`);
    stop(1);
  });
  companionBus.onClose((why) => {
    log(`companion bus connection ended (${why})`);
    stop(1);
  });
  const code = await stopped;
  manager.shutdown("the daemon is stopping");
  await new Promise((r) => setTimeout(r, 50)); // let the Completed signals go out
  await history.close();
  systemBus.close();
  companionBus.close();
  Deno.removeSignalListener("SIGINT", onSignal);
  Deno.removeSignalListener("SIGTERM", onSignal);
  return code;
}

if (import.meta.main) Deno.exit(await main());
