/**
 * `sudo deno task provision --user alice`: sets up secrets-dispatcher for one desktop user, as
 * root, non-interactively: the only question it ever asks is the user, when `--user` is missing
 * and stdin is a terminal (every other choice has a default or the recorded value).
 *
 * ```
 * provision --user <name> [--vt <n>] [--backend gnome-keyring|gopass|<command>]
 *           [--git-config | --no-git-config] [--pam | --no-pam] [--root <dir>]
 *           [--deno-dir-from <dir>] [--allow-system-user]
 *           [--dry-run | --check | --uninstall [--purge]]
 * ```
 *
 * - default: applies every step of the plan whose check fails (idempotent), printing the plan
 *   first; the same plan `--dry-run` prints.
 * - `--dry-run`: prints the plan and what a run would do now; changes nothing.
 * - `--check`: PASS/FAIL/SKIP per step, the fixing command under each FAIL.
 * - `--uninstall`: undoes every step in reverse; keeps the secret store (the companion's home,
 *   owned by root from then on) unless `--purge`; keeps the machine-wide code and PAM files
 *   while other users remain provisioned.
 * - `--root <dir>`: writes and checks system files under `<dir>` (images, tests). Users are
 *   real; the desktop user's own files go to her real home.
 * - `--allow-system-user`: provisions a desktop user whose uid is below `UID_MIN` of
 *   `/etc/login.defs` (default 1000), which is otherwise refused as a system account
 *   (`messagebus`, `www-data`...); `--uninstall` needs no override.
 * - `--deno-dir-from <dir>`: fills the units' `DENO_DIR` from this pre-filled Deno cache (made by
 *   `DENO_DIR=<dir> deno install --frozen --entrypoint ...` on a machine with the npm registry)
 *   instead of downloading: for machines without network, and VM images.
 *
 * `--vt`, `--backend`, `--[no-]git-config` and `--[no-]pam` default to what the last run
 * recorded in `/etc/secrets-dispatcher/<user>/provision.json`, then to VT 8, gnome-keyring, on,
 * on; an option given on the command line overrides the record (`--pam` after a run with
 * `--no-pam` installs the hand-off, and the record says so from then on).
 *
 * Exit codes: 0 done / all checks pass; 1 a step failed, a check failed or needs manual
 * action; 2 usage or configuration error (not root, unknown or system user, bad option).
 *
 * Permissions (`deno task provision`): see deno.json; runs only `useradd`, `usermod`,
 * `userdel`, `getent`, `runuser`, `chown`, `stat`, `install`, `systemctl`, `systemd-analyze`,
 * `pam-auth-update`; the pinned Deno runs through `runuser -u root` (Deno refuses writes to a
 * binary named in `--allow-run`, and provisioning replaces this one).
 *
 * @module
 */

import { Command, CommanderError, InvalidArgumentError, Option } from "@commander-js/extra-typings";
import {
  type Backend,
  checkPlainPath,
  checkUserName,
  CONFIG_BASE,
  type Deployment,
  deployment,
} from "../deploy/layout.ts";
import { type Host, LOGIN_DEFS, RealHost } from "./host.ts";
import { NETWORK_ENV, sourceFiles } from "./install.ts";
import { buildPlan, type Plan, type ProvisionRecord } from "./plan.ts";
import { apply, check, dryRun, type Print, uninstall } from "./run.ts";

/** Done, or every check passed. */
export const EXIT_OK = 0;
/** A step or a check failed, or something needs manual action. */
export const EXIT_FAILED = 1;
/** Usage or configuration error. */
export const EXIT_USAGE = 2;

/** The repository (source tree) this file belongs to. */
export const SOURCE_DIR = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The kernel's overflow uid, `nobody` on Debian: never a desktop user. */
export const OVERFLOW_UID = 65534;

/** Default console VT. */
export const DEFAULT_VT = 8;

/** Program paths tried for `--backend gopass`, first existing wins. */
export const GOPASS_CANDIDATES = [
  "/usr/local/bin/gopass-secret-service",
  "/usr/bin/gopass-secret-service",
];

/**
 * The backend from its `--backend` spelling.
 *
 * @param exists tells whether a program path exists (for gopass)
 * @throws {Error} for a relative command
 */
export async function parseBackend(
  spec: string,
  exists: (path: string) => Promise<boolean>,
): Promise<Backend> {
  if (spec === "gnome-keyring") {
    return {
      kind: "gnome-keyring",
      argv: ["/usr/bin/gnome-keyring-daemon", "--foreground", "--components=secrets"],
    };
  }
  if (spec === "gopass") {
    for (const p of GOPASS_CANDIDATES) {
      if (await exists(p)) return { kind: "gopass", argv: [p] };
    }
    return { kind: "gopass", argv: [GOPASS_CANDIDATES[1]] };
  }
  const argv = spec.trim().split(/\s+/);
  if (!argv[0]?.startsWith("/")) {
    throw new Error(
      `--backend must be gnome-keyring, gopass or an absolute command line, got ${spec}`,
    );
  }
  return { kind: "command", argv };
}

/** Where provisioning writes and what it tells the user. */
export interface ProvisionIo {
  print: Print;
  /** The host to act on, for a root prefix ("" = the real root). */
  host(root: string): Promise<Host>;
  /** The effective uid (0 required). */
  uid(): number | null;
  /** The Deno binary to pin. */
  denoPath(): string;
  /** The source tree to install. */
  sourceDir: string;
  /** An environment variable of the caller (proxies and CAs for `deno install`), if allowed. */
  env(name: string): string | undefined;
  /**
   * Asks the person at the terminal for a missing choice (the line typed, trimmed), or null when
   * there is no terminal (stdin not a tty): provisioning then never waits for input.
   */
  ask?(question: string): string | null;
}

/** The real io. */
export const realIo: ProvisionIo = {
  print: (line) => console.log(line),
  host: (root) => RealHost.create(root),
  uid: () => Deno.uid(),
  denoPath: () => Deno.execPath(),
  sourceDir: SOURCE_DIR,
  env: (name) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined;
    }
  },
  ask: (question) => {
    if (!Deno.stdin.isTerminal()) return null;
    return prompt(question)?.trim() ?? null;
  },
};

async function readRecord(host: Host, user: string): Promise<ProvisionRecord | null> {
  try {
    return JSON.parse(
      await Deno.readTextFile(`${host.root}${CONFIG_BASE}/${user}/provision.json`),
    ) as ProvisionRecord;
  } catch {
    return null;
  }
}

async function otherProvisionedUsers(host: Host, user: string): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(`${host.root}${CONFIG_BASE}`)) {
      if (!e.isDirectory || e.name === user) continue;
      const rec = await host.stat(`${host.root}${CONFIG_BASE}/${e.name}/provision.json`);
      if (rec?.kind === "file") out.push(e.name);
    }
  } catch { /* no base dir */ }
  return out.sort();
}

/** Everything one invocation resolved. */
export interface Resolved {
  host: Host;
  deployment: Deployment;
  plan: Plan;
  otherUsers: string[];
  /** The command that re-runs this provisioning (the generic fix). */
  fixCommand: string;
  header: string;
}

/** Options as parsed from the command line. */
export interface CliOptions {
  user: string;
  vt?: number;
  backend?: string;
  gitConfig?: boolean;
  pam?: boolean;
  root?: string;
  uninstall?: boolean;
  /** `--deno-dir-from`: an absolute path to a pre-filled Deno cache. */
  denoDirFrom?: string;
  /** `--allow-system-user`: accept a desktop user below `UID_MIN`. */
  allowSystemUser?: boolean;
}

/**
 * Resolves the options into a deployment and its plan (read-only).
 *
 * @throws {Error} for an unknown user or a bad option
 */
export async function resolve(options: CliOptions, io: ProvisionIo): Promise<Resolved> {
  checkUserName(options.user);
  const root = (options.root ?? "").replace(/\/+$/, "");
  if (root) {
    checkPlainPath(root, "--root");
    // The task's flags name the real system paths only: refuse before any step (the first
    // makes a real user) rather than fail half way.
    for (const name of ["read", "write"] as const) {
      if (Deno.permissions.querySync({ name, path: `${root}${CONFIG_BASE}` }).state !== "granted") {
        throw new Error(
          `--root ${root}: this run may not ${name} there (deno task provision allows the real ` +
            `system paths only); --root is for images and tests, run with --allow-${name}=${root}`,
        );
      }
    }
  }
  const host = await io.host(root);
  const record = await readRecord(host, options.user);
  const passwd = await host.getUser(options.user);
  if (passwd && passwd.uid === 0) throw new Error("refusing to provision root");
  if (passwd && !options.uninstall && !options.allowSystemUser) {
    const uidMin = await host.uidMin();
    // 65534 is the overflow uid (nobody): above UID_MIN, yet nobody's desktop.
    if (passwd.uid < uidMin || passwd.uid === OVERFLOW_UID) {
      throw new Error(
        `${options.user} has uid ${passwd.uid}, ${
          passwd.uid === OVERFLOW_UID
            ? "the overflow uid"
            : `below UID_MIN ${uidMin} (${LOGIN_DEFS})`
        }: a system ` +
          `account, not a desktop user; --allow-system-user provisions it anyway`,
      );
    }
  }
  if (!passwd && !(options.uninstall && record)) {
    throw new Error(`no user ${options.user}: create the desktop user first`);
  }
  const exists = async (p: string) => (await host.stat(p)) !== null;
  const backend = options.backend
    ? await parseBackend(options.backend, exists)
    : record?.backend ?? await parseBackend("gnome-keyring", exists);
  const gitConfig = options.gitConfig ?? record?.gitConfig ?? true;
  const pam = options.pam ?? record?.pam ?? true;
  const d = deployment({
    user: options.user,
    uid: passwd?.uid ?? record!.uid,
    home: passwd?.home ?? record!.home,
    vt: options.vt ?? record?.vt ?? DEFAULT_VT,
    backend,
  });
  if (options.denoDirFrom !== undefined) checkPlainPath(options.denoDirFrom, "--deno-dir-from");
  const otherUsers = await otherProvisionedUsers(host, d.user);
  const files = await sourceFiles(io.sourceDir);
  const plan = buildPlan(host, d, {
    source: { dir: io.sourceDir, files },
    denoSource: io.denoPath(),
    gitConfig,
    pam,
    otherUsers,
    denoDirSeed: options.denoDirFrom,
    networkEnv: Object.fromEntries(
      NETWORK_ENV.flatMap((k) => {
        const v = io.env(k);
        return v ? [[k, v]] : [];
      }),
    ),
  });
  const backendArg = backend.kind === "command" ? `'${backend.argv.join(" ")}'` : backend.kind;
  const fixCommand = [
    "sudo deno task provision",
    `--user ${d.user}`,
    `--vt ${d.vt}`,
    `--backend ${backendArg}`,
    gitConfig ? "" : "--no-git-config",
    pam ? "" : "--no-pam",
    options.allowSystemUser ? "--allow-system-user" : "",
    root ? `--root ${root}` : "",
  ].filter(Boolean).join(" ");
  const header =
    `secrets-dispatcher provisioning of ${d.user} (uid ${d.uid}): companion ${d.companion}, ` +
    `console on ${d.tty}, backend ${backend.argv.join(" ")}, root ${root || "/"}` +
    (host.systemdRunning ? "" : " (no systemd manager: systemd items are skipped)");
  return { host, deployment: d, plan, otherUsers, fixCommand, header };
}

/**
 * Runs provisioning with `args` (without the program name).
 *
 * @returns the exit code ({@link EXIT_OK}, {@link EXIT_FAILED}, {@link EXIT_USAGE})
 */
export async function main(args: string[], io: ProvisionIo = realIo): Promise<number> {
  const program = new Command("provision")
    .description("set up secrets-dispatcher for one desktop user (as root)")
    .option("--user <name>", "the desktop user (must exist; asked for when missing on a terminal)")
    .addOption(
      new Option("--vt <n>", "VT of the approval console (7..63; default 8)").argParser((v) => {
        const n = Number(v);
        if (!Number.isInteger(n)) throw new InvalidArgumentError(`needs a number, got ${v}`);
        return n;
      }),
    )
    .option("--backend <spec>", "gnome-keyring (default), gopass, or an absolute command line")
    // Both spellings: a recorded --no-git-config or --no-pam is undone with the positive one.
    .option(
      "--git-config",
      "set the user's git gpg.program (the default; overrides a recorded --no-git-config)",
    )
    .option(
      "--no-git-config",
      "do not set the user's git gpg.program (later runs keep this until --git-config)",
    )
    .option(
      "--pam",
      "install the PAM password hand-off (the default; overrides a recorded --no-pam)",
    )
    .option(
      "--no-pam",
      "do not install the PAM password hand-off (later runs keep this until --pam)",
    )
    .option(
      "--allow-system-user",
      "accept a desktop user whose uid is below UID_MIN of /etc/login.defs (a system account)",
    )
    .option("--root <dir>", "write system files under this prefix (images, tests)")
    .option(
      "--deno-dir-from <dir>",
      "fill the DENO_DIR from this pre-filled Deno cache (no download; offline machines)",
    )
    .option("--dry-run", "print the plan; change nothing")
    .option("--check", "check every item; exit 1 on any FAIL")
    .option("--uninstall", "remove everything provisioning made (keeps the secret store)")
    .option("--purge", "with --uninstall: also remove the secret store")
    .exitOverride()
    .configureOutput({
      writeOut: (t) => io.print(t.replace(/\n$/, "")),
      writeErr: (t) => io.print(t.replace(/\n$/, "")),
      getOutHasColors: () => false,
      getErrHasColors: () => false,
      getOutHelpWidth: () => 100,
      getErrHelpWidth: () => 100,
    });
  // Commander keeps option values on the program; the explicit-set test decides defaults.
  let opts;
  try {
    program.parse(args, { from: "user" });
    opts = program.opts();
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT_OK : EXIT_USAGE;
    throw err;
  }
  if (opts.user === undefined) {
    // The one choice without a default: asked for only when a person is at a terminal.
    const answer = io.ask?.("desktop user to provision (--user):") ?? null;
    if (!answer) {
      io.print("provision: --user <name> is required (no terminal to ask on, or no answer)");
      return EXIT_USAGE;
    }
    opts.user = answer;
  }
  const modes = [opts.dryRun && !opts.uninstall, opts.check, opts.uninstall].filter(Boolean);
  if (modes.length > 1) {
    io.print(
      "provision: --dry-run, --check and --uninstall exclude each other (--dry-run may go with --uninstall)",
    );
    return EXIT_USAGE;
  }
  if (opts.purge && !opts.uninstall) {
    io.print("provision: --purge only goes with --uninstall");
    return EXIT_USAGE;
  }
  if (io.uid() !== 0) {
    io.print("provision: must run as root (sudo deno task provision --user <name>)");
    return EXIT_USAGE;
  }
  let r: Resolved;
  try {
    r = await resolve({
      user: opts.user,
      vt: opts.vt,
      backend: opts.backend,
      gitConfig: program.getOptionValueSource("gitConfig") === "cli" ? opts.gitConfig : undefined,
      pam: program.getOptionValueSource("pam") === "cli" ? opts.pam : undefined,
      root: opts.root,
      uninstall: opts.uninstall,
      denoDirFrom: opts.denoDirFrom,
      allowSystemUser: opts.allowSystemUser,
    }, io);
  } catch (err) {
    io.print(`provision: ${(err as Error).message}`);
    return EXIT_USAGE;
  }
  if (opts.uninstall) {
    const keepShared = r.otherUsers.length > 0;
    const header = `${r.header}\nUninstall${opts.purge ? " with --purge" : ""}${
      keepShared ? ` (machine-wide files kept for ${r.otherUsers.join(", ")})` : ""
    }:`;
    if (opts.dryRun) {
      const { renderUndoPlan } = await import("./run.ts");
      for (const l of renderUndoPlan(r.plan, header, { keepShared })) io.print(l);
      return EXIT_OK;
    }
    return await uninstall(r.plan, {
      header,
      print: io.print,
      purge: opts.purge ?? false,
      keepShared,
    });
  }
  if (opts.dryRun) return await dryRun(r.plan, { header: r.header, print: io.print });
  if (opts.check) return await check(r.plan, { print: io.print, fixCommand: r.fixCommand });
  return await apply(r.plan, { header: r.header, print: io.print });
}

if (import.meta.main) Deno.exit(await main(Deno.args));
