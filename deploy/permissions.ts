/**
 * The permission table: the one source of truth for every entrypoint's Deno flags
 * (DESIGN.md §7). `deno.json` tasks reach it through `deploy/run.ts`, the signer's front script
 * carries a copy that a test keeps in sync, and the tests and demo spawn components with
 * {@link denoArgs}. Production flags are exact paths: sockets, the state dir, gpg, libc.
 *
 * @module
 */

/** The entrypoints that run as separate processes. */
export type Entrypoint = "daemon" | "sign" | "console" | "ctl" | "agent";

/** Everything a flag may name. Unused fields may be left out for entrypoints that ignore them. */
export interface Paths {
  /** Socket of the system bus (`/run/dbus/system_bus_socket` in production). */
  systemBusSocket: string;
  /** Socket of the companion's private bus (`/run/secrets-dispatcher/<user>/bus`). */
  companionBusSocket: string;
  /** Socket of the desktop session bus (`/run/user/<uid>/bus`; agent only). */
  sessionBusSocket?: string;
  /** The daemon's state dir (history). */
  stateDir: string;
  /** The gpg binary the daemon runs after approval (it also runs `/usr/bin/ps` about callers). */
  gpg: string;
  /** The repository's git dir and, for linked worktrees, its common dir (signer only). */
  gitDirs: string[];
  /** The FIFO through which the signer's notes reach the terminal (signer only). */
  ttyNote?: string;
  /** The console's per-install phrase file (`console/phrase.ts`); console only, optional. */
  phraseFile?: string;
  /**
   * The libc the console `dlopen`s for its VT ioctls, exactly as `console/vt.ts` opens it
   * (Deno compares `--allow-ffi` paths as strings). Default {@link DEFAULT_LIBC_PATH}.
   */
  libc?: string;
}

/** The console's libc: the first of `LIBC_CANDIDATES` in `console/vt.ts` (Debian, x86_64). */
export const DEFAULT_LIBC_PATH = "/lib/x86_64-linux-gnu/libc.so.6";

/** One row of the table. */
export interface EntrypointSpec {
  /** Module path relative to the repository root. */
  module: string;
  /** What it is, for the README table. */
  description: string;
  /** Environment variables it reads (its `--allow-env` list). */
  env: string[];
  /** The permission flags, without `--no-prompt`/`--cached-only`. */
  flags(paths: Paths): string[];
  /** True for long-running services: they get {@link SERVICE_V8_FLAGS}. */
  service?: boolean;
}

const list = (items: string[]) => items.join(",");

/** Flags to reach one unix-socket bus: Deno needs read, write and `unix:` net on the path. */
function busFlags(sockets: string[]): { read: string[]; write: string[]; net: string[] } {
  return { read: sockets, write: sockets, net: sockets.map((s) => `unix:${s}`) };
}

/** Flags of an admin client: the companion bus socket only. */
function companionClientFlags(p: Paths, env: string[]): string[] {
  const bus = busFlags([p.companionBusSocket]);
  return [
    `--allow-env=${list(env)}`,
    `--allow-read=${list(bus.read)}`,
    `--allow-write=${list(bus.write)}`,
    `--allow-net=${list(bus.net)}`,
    "--allow-sys=uid",
  ];
}

/** The gpg-connect-agent beside a gpg binary (the daemon's lock clears the agent's cache). */
export function gpgConnectAgent(gpg: string): string {
  return `${gpg.replace(/[^/]*$/, "")}gpg-connect-agent`;
}

/** The table. */
export const ENTRYPOINTS: Record<Entrypoint, EntrypointSpec> = {
  daemon: {
    service: true,
    module: "daemon/main.ts",
    description:
      "approval daemon (companion user): serves the system bus and the admin interface, runs gpg",
    env: [
      "DBUS_SYSTEM_BUS_ADDRESS",
      "SD_COMPANION_BUS_ADDRESS",
      "SD_CLIENT_UID",
      "SD_STATE_DIR",
      "SD_GPG",
      "SD_REQUEST_TTL",
      "SD_LOCK_STOP_UNIT",
      "GNUPGHOME",
    ],
    flags(p) {
      const bus = busFlags([p.systemBusSocket, p.companionBusSocket]);
      return [
        `--allow-env=${list(this.env)}`,
        `--allow-read=${list([...bus.read, p.stateDir])}`,
        `--allow-write=${list([...bus.write, p.stateDir])}`,
        `--allow-net=${list(bus.net)}`,
        `--allow-run=${list([p.gpg, gpgConnectAgent(p.gpg), "/usr/bin/ps"])}`,
        "--allow-sys=uid",
      ];
    },
  },
  sign: {
    module: "sign/main.ts",
    description:
      "the Deno signer behind the gpg.program front (desktop user): sends signing requests",
    env: ["DBUS_SYSTEM_BUS_ADDRESS", "SD_DISPATCHER_UID"],
    flags(p) {
      const bus = busFlags([p.systemBusSocket]);
      return [
        `--allow-env=${list(this.env)}`,
        `--allow-read=${list([...bus.read, ...p.gitDirs, ...(p.ttyNote ? [p.ttyNote] : [])])}`,
        `--allow-write=${list([...bus.write, ...(p.ttyNote ? [p.ttyNote] : [])])}`,
        `--allow-net=${list(bus.net)}`,
        "--allow-sys=uid",
      ];
    },
  },
  console: {
    service: true,
    module: "console/main.ts",
    description: "the trusted console (companion user, on its VT): shows and decides requests",
    env: [
      "SD_COMPANION_BUS_ADDRESS",
      "SD_CONSOLE_FOCUS",
      "SD_CONSOLE_ARM_MS",
      "SD_CONSOLE_PHRASE_FILE",
    ],
    flags(p) {
      // FFI to libc for the VT ioctls on fd 0 (console/vt.ts); fd 0 itself needs no flag. The
      // phrase file is the only file it reads.
      const flags = companionClientFlags(p, this.env);
      if (p.phraseFile) {
        const i = flags.findIndex((f) => f.startsWith("--allow-read="));
        flags[i] = `${flags[i]},${p.phraseFile}`;
      }
      return [...flags, `--allow-ffi=${p.libc ?? DEFAULT_LIBC_PATH}`];
    },
  },
  ctl: {
    module: "console/ctl.ts",
    description: "admin CLI (companion user): list, show, approve, deny, history",
    env: ["SD_COMPANION_BUS_ADDRESS"],
    flags(p) {
      return companionClientFlags(p, this.env);
    },
  },
  agent: {
    service: true,
    module: "agent/main.ts",
    description: "desktop agent (desktop user): serves the Secret Service, forwards to the daemon",
    env: ["DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS", "SD_DISPATCHER_UID"],
    flags(p) {
      // Deno refuses /proc/<pid>/... without --allow-all: the agent runs readlink and cat instead.
      const bus = busFlags([p.systemBusSocket, p.sessionBusSocket ?? ""].filter((s) => s !== ""));
      return [
        `--allow-env=${list(this.env)}`,
        `--allow-read=${list(bus.read)}`,
        `--allow-write=${list(bus.write)}`,
        `--allow-net=${list(bus.net)}`,
        "--allow-run=/usr/bin/readlink,/usr/bin/cat",
        "--allow-sys=uid",
      ];
    },
  },
};

/**
 * The full `deno` argument vector for an entrypoint: `run --no-prompt --cached-only --frozen <flags>
 * <module>`.
 *
 * @param entry which entrypoint
 * @param options `paths` for the flags, `root` the repository (or install) dir the module path
 *   is resolved against, and `config` the `deno.json` to use (defaults to `<root>/deno.json`)
 */
export function denoArgs(
  entry: Entrypoint,
  options: { paths: Paths; root: string; config?: string },
): string[] {
  const spec = ENTRYPOINTS[entry];
  return [
    "run",
    "--no-prompt",
    "--cached-only",
    "--frozen",
    `--config=${options.config ?? `${options.root}/deno.json`}`,
    ...(spec.service ? [`--v8-flags=${SERVICE_V8_FLAGS.join(",")}`] : []),
    ...spec.flags(options.paths),
    `${options.root}/${spec.module}`,
  ];
}

/**
 * V8 flags of the long-running services (daemon, agent, console): a 1 MB young generation and
 * V8's memory-saving mode keep their resident memory flat (measured by `deno task bench`: with
 * V8's defaults the agent grew by about 60 MB over 1000 approved requests before levelling off,
 * with these by under 10 MB) at a small cost in speed. Source: `deno run --v8-flags=--help`.
 */
export const SERVICE_V8_FLAGS = ["--max-semi-space-size=1", "--optimize-for-size"];

/** Placeholder paths used to show the table to people (README). */
export const PLACEHOLDER_PATHS: Paths = {
  systemBusSocket: "<system bus socket>",
  companionBusSocket: "<companion bus socket>",
  sessionBusSocket: "<session bus socket>",
  stateDir: "<state dir>",
  gpg: "/usr/bin/gpg",
  gitDirs: ["<git dir>", "<common git dir>"],
  ttyNote: "<note FIFO>",
  phraseFile: "<phrase file>",
};

/** The permission table as Markdown, for the README (a test keeps the README in sync). */
export function permissionTableMarkdown(): string {
  const rows = Object.entries(ENTRYPOINTS).map(([name, spec]) =>
    `| \`${name}\` | \`${spec.module}\` | ${spec.description} | ${
      spec.flags(PLACEHOLDER_PATHS).map((f) => `\`${f}\``).join("<br>")
    } |`
  );
  return [
    "| entrypoint | module | what it is | flags (besides `--no-prompt --cached-only --frozen`) |",
    "|---|---|---|---|",
    ...rows,
  ].join("\n");
}
