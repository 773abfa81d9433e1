/**
 * The launcher behind `deno task daemon|console|ctl|sign|agent`: turns the environment into exact paths,
 * builds the entrypoint's flags from the permission table and runs it, so that `deno.json` never
 * holds a second copy of any flag.
 *
 * Usage: `deno task <entrypoint> [args...]`. Environment: `DBUS_SYSTEM_BUS_ADDRESS`,
 * `SD_COMPANION_BUS_ADDRESS`, `SD_STATE_DIR`, `SD_GPG` (see daemon/main.ts), and for the agent
 * `DBUS_SESSION_BUS_ADDRESS` (see agent/main.ts). `ctl --bus <address>` names the companion bus
 * in place of `SD_COMPANION_BUS_ADDRESS` (a `unix:path=` address: its socket goes into the
 * flags). The signer is run through its front script, which computes the git dirs.
 *
 * @module
 */

import { systemBusAddress, unixSocketPath } from "../lib/dbus.ts";
import { denoArgs, type Entrypoint, ENTRYPOINTS, type Paths } from "./permissions.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/**
 * The value of the last `--bus` option in `ctl`'s arguments (`--bus <address>` or
 * `--bus=<address>`, before any `--`), as ctl's parser takes it; undefined without one, and ""
 * for a `--bus` with no value.
 */
export function busArgument(args: string[]): string | undefined {
  let bus: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") break;
    if (a === "--bus") bus = args[++i] ?? "";
    else if (a.startsWith("--bus=")) bus = a.slice("--bus=".length);
  }
  return bus;
}

/**
 * The paths for the flags, from environment variables, and for `ctl` from its `--bus` option
 * when given ({@link busArgument}): it names the companion bus in place of
 * `SD_COMPANION_BUS_ADDRESS`.
 *
 * @param args the entrypoint's own arguments (only `ctl`'s are looked at)
 * @throws {Error} naming the variable or option that is missing or not a `unix:path=` address
 */
export function pathsFromEnv(
  entry: Entrypoint,
  env: (name: string) => string | undefined,
  args: string[] = [],
): Paths {
  const socketOf = (name: string, address: string | undefined) => {
    if (!address) throw new Error(`${name} is not set (source .demo/env, or set it)`);
    const path = unixSocketPath(address);
    if (!path) throw new Error(`${name} must be a unix:path= address, got ${address}`);
    return path;
  };
  const usesCompanion = entry !== "sign" && entry !== "agent";
  const bus = entry === "ctl" ? busArgument(args) : undefined;
  const companionBusSocket = () => {
    if (bus === undefined) {
      return socketOf("SD_COMPANION_BUS_ADDRESS", env("SD_COMPANION_BUS_ADDRESS"));
    }
    const path = unixSocketPath(bus);
    if (!path) {
      throw new Error(
        `--bus takes a unix:path=<socket> address here (the launcher grants ctl that socket ` +
          `only), got ${bus ? JSON.stringify(bus) : "nothing"}`,
      );
    }
    return path;
  };
  return {
    systemBusSocket: socketOf("DBUS_SYSTEM_BUS_ADDRESS", systemBusAddress(env)),
    companionBusSocket: usesCompanion ? companionBusSocket() : "",
    sessionBusSocket: entry === "agent"
      ? socketOf("DBUS_SESSION_BUS_ADDRESS", env("DBUS_SESSION_BUS_ADDRESS"))
      : undefined,
    stateDir: entry === "daemon" ? (env("SD_STATE_DIR") || fail("SD_STATE_DIR is not set")) : "",
    gpg: env("SD_GPG") || "/usr/bin/gpg",
    gitDirs: [],
    phraseFile: entry === "console" ? env("SD_CONSOLE_PHRASE_FILE") || undefined : undefined,
  };
}

function fail(message: string): never {
  throw new Error(message);
}

async function main(args: string[]): Promise<number> {
  const entry = args[0] as Entrypoint;
  if (!(entry in ENTRYPOINTS)) {
    console.error(`usage: deploy/run.ts <${Object.keys(ENTRYPOINTS).join("|")}> [args...]`);
    return 2;
  }
  let cmd: string;
  let cmdArgs: string[];
  if (entry === "sign") {
    cmd = `${ROOT}/sign/gpg_front.sh`;
    cmdArgs = args.slice(1);
  } else {
    let paths: Paths;
    try {
      paths = pathsFromEnv(entry, (n) => Deno.env.get(n), args.slice(1));
    } catch (err) {
      console.error(`deno task ${entry}: ${(err as Error).message}`);
      return 2;
    }
    cmd = "deno";
    cmdArgs = [...denoArgs(entry, { paths, root: ROOT }), ...args.slice(1)];
  }
  const child = new Deno.Command(cmd, { args: cmdArgs, stdin: "inherit" }).spawn();
  // The terminal's Ctrl-C reaches the child directly (same process group); SIGTERM is passed on.
  const ignore = () => {};
  const forward = () => {
    try {
      child.kill("SIGTERM");
    } catch { /* gone */ }
  };
  Deno.addSignalListener("SIGINT", ignore);
  Deno.addSignalListener("SIGTERM", forward);
  const status = await child.status;
  Deno.removeSignalListener("SIGINT", ignore);
  Deno.removeSignalListener("SIGTERM", forward);
  return status.code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
