/**
 * The local stack shared by the integration tests, the demo and the benchmarks: private
 * `dbus-daemon`s (a system-like bus carrying the real policy from `deploy/`, and a companion
 * bus), a throwaway GnuPG home with a generated key, and the daemon started with exactly the
 * production permission flags from `deploy/permissions.ts`. Cleanup stops only the processes
 * this stack started.
 *
 * @module
 */

import { companionBusConfig, dispatcherPolicy } from "../deploy/dbus.ts";
import { denoArgs, type Paths } from "../deploy/permissions.ts";
import { AdminClient, AdminError } from "../lib/admin_client.ts";
import { Bus } from "../lib/dbus.ts";
import { Errors, type RequestView } from "../lib/protocol.ts";
import { exec } from "./exec.ts";

export { exec, type ExecResult } from "./exec.ts";

/** The repository root (where `deno.json` is). */
export const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** A running private bus. */
export interface BusInfo {
  address: string;
  socket: string;
}

/** A GnuPG home with one secret key. */
export interface GnupgHome {
  home: string;
  fingerprint: string;
  /** The key's user id, e.g. `Demo Signer <demo@example.test>`. */
  uid: string;
}

/** Runs a command to completion; throws with its stderr when it fails. */
export async function run(
  cmd: string,
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; stdin?: Uint8Array | string } = {},
): Promise<{ stdout: string; stderr: string }> {
  const r = await exec(cmd, args, { ...options, inheritEnv: true });
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  }
  return r;
}

let cachedDenoDir: string | undefined;

/** Deno's cache dir (`deno info --json` → `denoDir`), for children whose HOME differs. */
export async function denoDir(): Promise<string> {
  if (cachedDenoDir === undefined) {
    const { stdout } = await run(Deno.execPath(), ["info", "--json"]);
    cachedDenoDir = JSON.parse(stdout).denoDir as string;
  }
  return cachedDenoDir;
}

/** Waits until `check` returns true, polling every 20 ms. */
export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * A config for a system-like bus: Debian's `system.conf` defaults (deny own and method calls,
 * allow replies and signals) with our policy files in an included dir.
 * Source: /usr/share/dbus-1/system.conf, shared/reference/vt-pam-systemd-vm.md §5.
 */
export function systemLikeBusConfig(socket: string, includeDir: string): string {
  return `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=${socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>
  <includedir>${includeDir}</includedir>
</busconfig>
`;
}

/** Processes and files of one local stack. */
export class Stack {
  /** Work dir of this stack. */
  readonly dir: string;
  #children: { name: string; child: Deno.ChildProcess }[] = [];
  #gnupgHomes: string[] = [];

  /** @param dir an existing, empty-or-reusable work dir */
  constructor(dir: string) {
    this.dir = dir;
  }

  /** Makes a stack in a fresh temporary dir. */
  static async temp(prefix = "sd-test-"): Promise<Stack> {
    return new Stack(await Deno.makeTempDir({ prefix }));
  }

  /**
   * Spawns a long-running process owned by this stack; its output goes to `<dir>/<name>.log`.
   * With `stdin`, those exact bytes are written to its stdin, then EOF; otherwise stdin is null.
   */
  async spawn(
    name: string,
    cmd: string,
    args: string[],
    options: {
      env?: Record<string, string>;
      clearEnv?: boolean;
      uid?: number;
      gid?: number;
      stdin?: Uint8Array | string;
    } = {},
  ): Promise<Deno.ChildProcess> {
    const child = new Deno.Command(cmd, {
      args,
      env: options.env,
      clearEnv: options.clearEnv,
      uid: options.uid,
      gid: options.gid,
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (options.stdin !== undefined) {
      const w = child.stdin.getWriter();
      const bytes = typeof options.stdin === "string"
        ? new TextEncoder().encode(options.stdin)
        : options.stdin;
      await w.write(bytes).catch(() => {});
      await w.close().catch(() => {});
    }
    // Both streams into one log, each through its own append-mode handle.
    for (const stream of [child.stdout, child.stderr]) {
      const log = await Deno.open(`${this.dir}/${name}.log`, {
        write: true,
        create: true,
        append: true,
      });
      (async () => {
        // A read loop, not pipeTo: pipeTo into a file holds chunks back while the child lives.
        for await (const chunk of stream) await log.write(chunk);
      })().catch(() => {}).finally(() => log.close());
    }
    this.#children.push({ name, child });
    return child;
  }

  /** Text logged so far by a process started with {@link spawn}. */
  async log(name: string): Promise<string> {
    try {
      return await Deno.readTextFile(`${this.dir}/${name}.log`);
    } catch {
      return "";
    }
  }

  /**
   * Starts a system-like bus whose policy dir holds `policies` (file name → content).
   */
  async systemBus(policies: Record<string, string>): Promise<BusInfo> {
    const base = `${this.dir}/system-bus`;
    await Deno.mkdir(`${base}/system.d`, { recursive: true });
    for (const [name, text] of Object.entries(policies)) {
      await Deno.writeTextFile(`${base}/system.d/${name}`, text);
    }
    const socket = `${base}/system_bus_socket`;
    await Deno.writeTextFile(
      `${base}/system.conf`,
      systemLikeBusConfig(socket, `${base}/system.d`),
    );
    return await this.#startBus("system-bus", `${base}/system.conf`, socket);
  }

  /** Starts the companion's private bus; only `user` may connect. */
  async companionBus(user: string): Promise<BusInfo> {
    const base = `${this.dir}/companion`;
    await Deno.mkdir(base, { recursive: true, mode: 0o700 });
    const socket = `${base}/bus`;
    await Deno.writeTextFile(`${base}/bus.conf`, companionBusConfig({ socket, user }));
    return await this.#startBus("companion-bus", `${base}/bus.conf`, socket);
  }

  /**
   * Starts a headless gnome-keyring (`gnome-keyring-daemon --unlock --foreground
   * --components=secrets`) on `bus`, with `password` written byte-exactly to its stdin, and waits
   * until `org.freedesktop.secrets` has an owner there and `ReadAlias("default")` names a
   * collection. A fresh `home` gets a `login` collection, unlocked, with that password; starting
   * again with the same `home` and password reopens it unlocked (shared/reference/secret-service.md
   * §2.1). The process gets a clean environment; `Stack.stop()` stops it.
   *
   * With `password` null it starts without `--unlock`, as the production backend unit does: a
   * fresh `home` then has no login keyring (only the in-memory `session` collection, no `default`
   * alias) until `Admin1.UnlockStore` creates one; it waits only for the name's owner.
   *
   * @param options `bus` to serve on; `password` (or null: no login keyring); `home` (default
   *   `<dir>/keyring-home`, reused across restarts); `name` of the process and its log (default
   *   `gnome-keyring`)
   * @returns the home used, the process, and `stop()` (SIGTERM, then SIGKILL after 3 s)
   * @throws {Error} with the keyring's log when it exits or does not get ready within 10 s
   */
  async gnomeKeyring(options: {
    bus: BusInfo;
    password: string | null;
    home?: string;
    name?: string;
  }): Promise<{ home: string; child: Deno.ChildProcess; stop(): Promise<void> }> {
    const home = options.home ?? `${this.dir}/keyring-home`;
    const name = options.name ?? "gnome-keyring";
    const unlock = options.password !== null;
    await Deno.mkdir(home, { recursive: true, mode: 0o700 });
    // A fresh runtime dir per start (makeTempDir makes it 0700): no stale control socket.
    const runtimeDir = await Deno.makeTempDir({ dir: this.dir, prefix: "xdg-run-" });
    const child = await this.spawn(
      name,
      "gnome-keyring-daemon",
      [...(unlock ? ["--unlock"] : []), "--foreground", "--components=secrets"],
      {
        clearEnv: true,
        env: {
          PATH: "/usr/bin:/bin",
          HOME: home,
          XDG_RUNTIME_DIR: runtimeDir,
          DBUS_SESSION_BUS_ADDRESS: options.bus.address,
        },
        stdin: options.password ?? undefined,
      },
    );
    let exited = false;
    child.status.then(() => exited = true);
    const bus = await Bus.connect(options.bus.address, { timeoutMs: 5000, callTimeoutMs: 2000 });
    try {
      await waitFor(
        unlock
          ? "gnome-keyring to own org.freedesktop.secrets with a default collection"
          : "gnome-keyring to own org.freedesktop.secrets",
        async () => {
          if (exited) throw new Error("gnome-keyring-daemon exited");
          try {
            const [alias] = await bus.call({
              destination: "org.freedesktop.secrets",
              path: "/org/freedesktop/secrets",
              interface: "org.freedesktop.Secret.Service",
              member: "ReadAlias",
              signature: "s",
              body: ["default"],
            });
            return !unlock || alias !== "/";
          } catch {
            return false; // not owned yet, or still starting
          }
        },
      );
    } catch (err) {
      await this.stopProcess(child);
      throw new Error(`${(err as Error).message}\n--- ${name} log ---\n${await this.log(name)}`);
    } finally {
      bus.close();
    }
    return { home, child, stop: () => this.stopProcess(child) };
  }

  async #startBus(name: string, config: string, socket: string): Promise<BusInfo> {
    await Deno.remove(socket).catch(() => {});
    await this.spawn(name, "dbus-daemon", [`--config-file=${config}`, "--nofork", "--nopidfile"]);
    await waitFor(`${name} socket`, () => exists(socket), 10_000);
    return { address: `unix:path=${socket}`, socket };
  }

  /** Makes a GnuPG home holding one passphrase-less ed25519 signing key. */
  async gnupgHome(
    name: string,
    uid = "Demo Signer <signer@example.test>",
  ): Promise<GnupgHome> {
    const home = `${this.dir}/${name}`;
    await Deno.mkdir(home, { recursive: true, mode: 0o700 });
    this.#gnupgHomes.push(home);
    const env = { GNUPGHOME: home, LC_ALL: "C" };
    await run("gpg", [
      "--batch",
      "--passphrase",
      "",
      "--quick-gen-key",
      uid,
      "ed25519",
      "sign",
      "1y",
    ], { env });
    const { stdout } = await run("gpg", ["--batch", "--with-colons", "--list-secret-keys"], {
      env,
    });
    const fpr = stdout.split("\n").find((l) => l.startsWith("fpr:"))?.split(":")[9];
    if (!fpr) throw new Error("gpg made no key");
    return { home, fingerprint: fpr, uid };
  }

  /**
   * Makes a GnuPG home for the desktop user holding only the public part of `key`, marked
   * ultimately trusted, so local `gpg --verify` (git verify-commit) reports a good signature.
   */
  async publicKeyring(name: string, key: GnupgHome): Promise<string> {
    const home = `${this.dir}/${name}`;
    await Deno.mkdir(home, { recursive: true, mode: 0o700 });
    this.#gnupgHomes.push(home);
    const { stdout } = await run("gpg", ["--batch", "--armor", "--export", key.fingerprint], {
      env: { GNUPGHOME: key.home },
    });
    await run("gpg", ["--batch", "--import"], { env: { GNUPGHOME: home }, stdin: stdout });
    await run("gpg", ["--batch", "--import-ownertrust"], {
      env: { GNUPGHOME: home },
      stdin: `${key.fingerprint}:6:\n`,
    });
    return home;
  }

  /**
   * Starts the daemon with the production permission flags for these paths, and waits until it
   * says it is ready.
   *
   * @throws {Error} with the daemon's log when it exits or does not get ready in time
   */
  async daemon(options: {
    systemBus: BusInfo;
    companionBus: BusInfo;
    clientUid: number;
    gnupgHome: string;
    stateDir?: string;
    ttlSeconds?: number;
    name?: string;
  }): Promise<Deno.ChildProcess> {
    const stateDir = options.stateDir ?? `${this.dir}/state`;
    await Deno.mkdir(stateDir, { recursive: true, mode: 0o700 });
    const name = options.name ?? "daemon";
    const paths: Paths = {
      systemBusSocket: options.systemBus.socket,
      companionBusSocket: options.companionBus.socket,
      stateDir,
      gpg: "/usr/bin/gpg",
      gitDirs: [],
    };
    const before = (await this.log(name)).length;
    const child = await this.spawn(
      name,
      Deno.execPath(),
      denoArgs("daemon", { paths, root: ROOT }),
      {
        clearEnv: true,
        env: {
          PATH: "/usr/bin:/bin",
          DBUS_SYSTEM_BUS_ADDRESS: options.systemBus.address,
          SD_COMPANION_BUS_ADDRESS: options.companionBus.address,
          SD_CLIENT_UID: String(options.clientUid),
          SD_STATE_DIR: stateDir,
          GNUPGHOME: options.gnupgHome,
          SD_REQUEST_TTL: String(options.ttlSeconds ?? 300),
          DENO_DIR: await denoDir(),
        },
      },
    );
    let exited = false;
    child.status.then(() => exited = true);
    try {
      await waitFor("the daemon to get ready", async () => {
        if (exited) throw new Error("the daemon exited");
        return (await this.log(name)).slice(before).includes("ready");
      }, 30_000);
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- daemon log ---\n${await this.log(name)}`);
    }
    return child;
  }

  /** Stops one process started by this stack (SIGTERM, then SIGKILL after 3 s). */
  async stopProcess(child: Deno.ChildProcess, signal: Deno.Signal = "SIGTERM"): Promise<void> {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 3000);
    await child.status;
    clearTimeout(timer);
    this.#children = this.#children.filter((c) => c.child !== child);
  }

  /** Stops everything this stack started, newest first, and the gpg-agents of its homes. */
  async stop(): Promise<void> {
    for (const { child } of [...this.#children].reverse()) await this.stopProcess(child);
    for (const home of this.#gnupgHomes) {
      await run("gpgconf", ["--homedir", home, "--kill", "all"]).catch(() => {});
    }
  }

  /** {@link stop}, then removes the work dir. */
  async destroy(): Promise<void> {
    await this.stop();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** A running signing stack for one test. */
export interface SignStack {
  stack: Stack;
  systemBus: BusInfo;
  companionBus: BusInfo;
  key: GnupgHome;
  /** The desktop user's GnuPG home with the public key (for verification). */
  userGnupg: string;
  daemon: Deno.ChildProcess;
  admin: AdminClient;
  /** The signer's path (a symlink to the front script, as the demo installs it). */
  signer: string;
  /** Environment for git and the signer (system bus, GNUPGHOME, no desktop leftovers). */
  env: Record<string, string>;
  /** Makes a new repository configured to sign through the signer. */
  repo(name?: string): Promise<string>;
  /** Stops everything and removes the dir. */
  close(): Promise<void>;
}

/**
 * Starts a signing stack served for the current uid: the system-like bus with the real policy,
 * the companion bus, a companion key, the desktop user's public keyring, the daemon, an admin
 * client, and the signer as `<dir>/bin/secrets-dispatcher-gpg`.
 *
 * @param options `dir` to use (default: a new temp dir), `ttlSeconds` for requests
 */
export async function signStack(
  options: { dir?: string; ttlSeconds?: number } = {},
): Promise<SignStack> {
  const stack = options.dir ? new Stack(options.dir) : await Stack.temp();
  try {
    const uid = Deno.uid()!;
    const user = await currentUser();
    const systemBus = await stack.systemBus({
      [`org.secretsdispatcher.Dispatcher1.u${uid}.conf`]: dispatcherPolicy({
        user,
        uid,
        companionUser: user,
      }),
    });
    const companionBus = await stack.companionBus(user);
    const key = await stack.gnupgHome("companion-gnupg", "Demo Signer <demo@example.test>");
    const userGnupg = await stack.publicKeyring("user-gnupg", key);
    const daemon = await stack.daemon({
      systemBus,
      companionBus,
      clientUid: uid,
      gnupgHome: key.home,
      ttlSeconds: options.ttlSeconds,
    });
    const admin = await AdminClient.connect(companionBus.address);
    await Deno.mkdir(`${stack.dir}/bin`);
    const signer = `${stack.dir}/bin/secrets-dispatcher-gpg`;
    await Deno.symlink(`${ROOT}/sign/gpg_front.sh`, signer);
    const env = {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: stack.dir,
      DBUS_SYSTEM_BUS_ADDRESS: systemBus.address,
      GNUPGHOME: userGnupg,
      LC_ALL: "C",
      GIT_CONFIG_NOSYSTEM: "1",
      DENO_DIR: await denoDir(),
    };
    let n = 0;
    return {
      stack,
      systemBus,
      companionBus,
      key,
      userGnupg,
      daemon,
      admin,
      signer,
      env,
      async repo(name = `repo${n++}`) {
        const dir = `${stack.dir}/${name}`;
        await run("git", ["init", "-q", "-b", "main", dir], { env });
        for (
          const [k, v] of [
            ["user.name", "Demo Signer"],
            ["user.email", "demo@example.test"],
            ["user.signingkey", key.fingerprint],
            ["gpg.program", signer],
          ]
        ) await run("git", ["-C", dir, "config", k, v], { env });
        return dir;
      },
      async close() {
        admin.close();
        await stack.destroy();
      },
    };
  } catch (err) {
    await stack.destroy();
    throw err;
  }
}

/** The human's decision for one request; null leaves it pending. */
export type Decide = (view: RequestView) => "approve" | "deny" | null;

/**
 * Plays the human: polls the pending list through the real admin client, fetches each new request
 * in full (`Get`) and decides it with `decide`, approving with the digest of the view it looked
 * at.
 */
export class Approver {
  /** Every request seen, in order. */
  readonly seen: RequestView[] = [];
  #admin: AdminClient;
  #decide: Decide;
  #pollMs: number;
  #stop = false;
  #wake: (() => void) | null = null;
  #loop: Promise<void>;

  /**
   * @param admin a connected admin client
   * @param decide the decision for each request
   * @param options `pollMs` between list polls (default 25); a `Changed` signal wakes it at once
   */
  constructor(admin: AdminClient, decide: Decide, options: { pollMs?: number } = {}) {
    this.#admin = admin;
    this.#decide = decide;
    this.#pollMs = options.pollMs ?? 25;
    this.#loop = this.#run();
  }

  async #run(): Promise<void> {
    const unsubscribe = await this.#admin.onChanged(() => this.#wake?.());
    const handled = new Set<string>();
    try {
      while (!this.#stop) {
        for (const summary of await this.#admin.list()) {
          if (handled.has(summary.id)) continue;
          // List gives summaries; the human reads the whole request (Get) before deciding.
          const view = await this.#admin.get(summary.id);
          if (view.state !== "pending") continue;
          const d = this.#decide(view);
          if (d === null) continue;
          handled.add(view.id);
          this.seen.push(view);
          try {
            if (d === "approve") await this.#admin.approve(view.id, view.digest);
            else await this.#admin.deny(view.id, "test says no");
          } catch (err) {
            // It ended between the list and the decision (cancelled by its client, expired).
            if (!(err instanceof AdminError && err.dbusName === Errors.NotPending)) throw err;
          }
        }
        await new Promise<void>((r) => {
          const timer = setTimeout(r, this.#pollMs);
          this.#wake = () => {
            clearTimeout(timer);
            r();
          };
        });
      }
    } finally {
      unsubscribe();
    }
  }

  /** Stops deciding. */
  async stop(): Promise<void> {
    this.#stop = true;
    this.#wake?.();
    await this.#loop;
  }
}

/** The current user's name (for bus policies), from `id -un`. */
export async function currentUser(): Promise<string> {
  return (await run("id", ["-un"])).stdout.trim();
}
