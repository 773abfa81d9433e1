/**
 * The whole stack for Secret Service work, shared by the integration tests, the demo and the
 * benchmarks: the signing stack of `harness.ts` (system-like bus with the real policy, companion
 * bus, daemon, companion GnuPG home) plus gnome-keyring as the backend on the companion bus, a
 * private desktop session bus with a recording notification server, and the agent owning
 * `org.freedesktop.secrets` there, started with its production permission flags.
 *
 * @module
 */

import { denoArgs, type Paths } from "../deploy/permissions.ts";
import { Bus } from "../lib/dbus.ts";
import { type BusInfo, denoDir, ROOT, type SignStack, signStack, waitFor } from "./harness.ts";
import {
  type NotificationEvent,
  type NotificationServer,
  startNotificationServer,
} from "./notification_server.ts";

/** The password the test and demo keyrings are created and unlocked with. */
export const DEMO_KEYRING_PASSWORD = "demo keyring password";

/** A running full stack. */
export interface SecretStack extends SignStack {
  /** The desktop user's session bus, where the agent serves the Secret Service. */
  desktopBus: BusInfo;
  /** The backend (gnome-keyring) on the companion bus. */
  keyring: { home: string; child: Deno.ChildProcess; stop(): Promise<void> };
  /** The agent process. */
  agent: Deno.ChildProcess;
  /** The recording `org.freedesktop.Notifications` server on the desktop bus (in this process). */
  notifications: NotificationServer;
  /** Stops the daemon (SIGTERM, then SIGKILL after 3 s). */
  stopDaemon(): Promise<void>;
  /** Starts the daemon again with the same buses, key, state dir and TTL (updates `daemon`). */
  startDaemon(): Promise<void>;
  /** Environment for Secret Service clients (`secret-tool`, python) on the desktop bus. */
  clientEnv: Record<string, string>;
  /** Stops gnome-keyring and starts it again with the same home and password (or none). */
  restartKeyring(): Promise<void>;
  /**
   * Starts (another) agent with production flags; resolves once it says `ready`.
   *
   * @throws {Error} naming its exit status and holding its log when it exits first
   */
  startAgent(options?: { name?: string; args?: string[] }): Promise<Deno.ChildProcess>;
}

/**
 * A session-bus config without service dirs (so nothing is activated behind our back: a missing
 * `org.freedesktop.secrets` stays missing) and an allow-all policy, like a desktop session bus.
 * Source: shared/reference/secret-service.md §2.1.
 */
export function desktopBusConfig(socket: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`;
}

/**
 * Starts the full stack in a fresh dir (or `dir`).
 *
 * @param options `dir` to work in; `ttlSeconds` of pending requests; `agent: false` to leave
 *   the agent out (a test then starts it with `startAgent`); `loginKeyring: false` starts
 *   gnome-keyring without a login keyring (a fresh companion: the first `UnlockStore` creates
 *   it); `onNotification` sees each event of the notification server (the demo logs them)
 * @throws {Error} with the failing component's log when something does not start
 */
export async function secretStack(
  options: {
    dir?: string;
    ttlSeconds?: number;
    agent?: boolean;
    loginKeyring?: boolean;
    onNotification?: (e: NotificationEvent) => void;
  } = {},
): Promise<SecretStack> {
  const password = options.loginKeyring === false ? null : DEMO_KEYRING_PASSWORD;
  const s = await signStack({ dir: options.dir, ttlSeconds: options.ttlSeconds });
  const { stack } = s;
  let notifications: NotificationServer | undefined;
  try {
    const keyring = await stack.gnomeKeyring({ bus: s.companionBus, password });
    const base = `${stack.dir}/desktop`;
    await Deno.mkdir(base, { recursive: true, mode: 0o700 });
    const socket = `${base}/bus`;
    await Deno.writeTextFile(`${base}/bus.conf`, desktopBusConfig(socket));
    await stack.spawn("desktop-bus", "dbus-daemon", [
      `--config-file=${base}/bus.conf`,
      "--nofork",
      "--nopidfile",
    ]);
    await waitFor("desktop bus socket", async () => {
      try {
        await Deno.lstat(socket);
        return true;
      } catch {
        return false;
      }
    }, 10_000);
    const desktopBus: BusInfo = { address: `unix:path=${socket}`, socket };
    notifications = await startNotificationServer(desktopBus.address, {
      onEvent: options.onNotification,
    });
    const dir = denoDir();
    const startAgent = async (
      o: { name?: string; args?: string[] } = {},
    ): Promise<Deno.ChildProcess> => {
      const name = o.name ?? "agent";
      const paths: Paths = {
        systemBusSocket: s.systemBus.socket,
        companionBusSocket: s.companionBus.socket,
        sessionBusSocket: socket,
        stateDir: "",
        gpg: "/usr/bin/gpg",
        gitDirs: [],
      };
      const before = (await stack.log(name)).length;
      const child = await stack.spawn(
        name,
        Deno.execPath(),
        [...denoArgs("agent", { paths, root: ROOT }), ...(o.args ?? [])],
        {
          clearEnv: true,
          env: {
            PATH: "/usr/bin:/bin",
            DBUS_SESSION_BUS_ADDRESS: desktopBus.address,
            DBUS_SYSTEM_BUS_ADDRESS: s.systemBus.address,
            SD_DISPATCHER_UID: String(Deno.uid()),
            DENO_DIR: await dir,
          },
        },
      );
      let exited: number | null = null;
      child.status.then((st) => exited = st.code);
      try {
        await waitFor("the agent to get ready", async () => {
          if (exited !== null) throw new Error(`the agent exited with status ${exited}`);
          return (await stack.log(name)).slice(before).includes("ready: serving");
        }, 30_000);
      } catch (err) {
        throw new Error(`${(err as Error).message}\n--- ${name} log ---\n${await stack.log(name)}`);
      }
      return child;
    };
    const agent = options.agent === false ? null : await startAgent();
    const clientEnv = {
      PATH: "/usr/bin:/bin",
      HOME: stack.dir,
      LC_ALL: "C.UTF-8",
      DBUS_SESSION_BUS_ADDRESS: desktopBus.address,
    };
    const daemonOptions = {
      systemBus: s.systemBus,
      companionBus: s.companionBus,
      clientUid: Deno.uid()!,
      gnupgHome: s.key.home,
      ttlSeconds: options.ttlSeconds,
    };
    const full: SecretStack = {
      ...s,
      desktopBus,
      keyring,
      agent: agent as Deno.ChildProcess,
      notifications,
      clientEnv,
      startAgent,
      stopDaemon: () => stack.stopProcess(full.daemon),
      async startDaemon() {
        full.daemon = await stack.daemon(daemonOptions);
      },
      async close() {
        notifications?.stop();
        await s.close();
      },
      async restartKeyring() {
        await full.keyring.stop();
        full.keyring = await stack.gnomeKeyring({
          bus: s.companionBus,
          password,
          home: keyring.home,
        });
      },
    };
    return full;
  } catch (err) {
    notifications?.stop();
    await s.close();
    throw err;
  }
}

/** Locks the store's login collection, as its own timeout or tools would. */
export async function lockStore(s: SecretStack): Promise<void> {
  const bus = await Bus.connect(s.companionBus.address);
  try {
    await bus.call({
      destination: "org.freedesktop.secrets",
      path: "/org/freedesktop/secrets",
      interface: "org.freedesktop.Secret.Service",
      member: "Lock",
      signature: "ao",
      body: [["/org/freedesktop/secrets/collection/login"]],
    });
  } finally {
    bus.close();
  }
}
