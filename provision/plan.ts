/**
 * The provisioning plan for one desktop user: the ordered list of idempotent steps that
 * `--dry-run` prints, `--check` checks, the real run applies and `--uninstall` undoes in reverse.
 * One function builds it for every mode, so what is printed is what is done.
 *
 * @module
 */

import {
  agentDesktopEntry,
  agentLauncherScript,
  agentUserUnit,
  gpgWrapperScript,
} from "../deploy/autostart.ts";
import { companionBusConfig, dispatcherPolicy } from "../deploy/dbus.ts";
import { type Deployment, enabledUnits, NOLOGIN_SHELL } from "../deploy/layout.ts";
import { polkitRule } from "../deploy/polkit.ts";
import { pamHelperScript, pamProfile } from "../deploy/pam.ts";
import { systemUnits, tmpfilesConf } from "../deploy/units.ts";
import { generatePhrase } from "../console/phrase.ts";
import type { Host, PathInfo } from "./host.ts";
import {
  cachedModules,
  codeStep,
  denoBinaryStep,
  denoDirStep,
  type SourceFile,
} from "./install.ts";
import { fail, pass, skip, type Status, type Step, step } from "./step.ts";
import {
  companionUserStep,
  dirStep,
  enableStep,
  execAs,
  fileStep,
  generatedFileStep,
  gitConfigStep,
  needsSystemd,
  octal,
  under,
  userFileStep,
  userSymlinkStep,
  visibleStat,
} from "./steps.ts";

/** What the plan needs besides the deployment. */
export interface PlanOptions {
  /** The source tree (this repository) and its files to install. */
  source: { dir: string; files: SourceFile[] };
  /** The Deno binary to pin (the one running provisioning). */
  denoSource: string;
  /** Set the desktop user's git `gpg.program` (`--no-git-config` turns it off). */
  gitConfig: boolean;
  /** Install the PAM hand-off (`--no-pam` turns it off). */
  pam: boolean;
  /** Other desktop users provisioned on this machine (their machine-wide needs stay). */
  otherUsers: string[];
  /** Proxy and CA settings for `deno install` (see NETWORK_ENV in install.ts). */
  networkEnv?: Record<string, string>;
  /** A pre-filled Deno cache to copy into the `DENO_DIR` instead of downloading (`--deno-dir-from`). */
  denoDirSeed?: string;
}

/** The plan: steps in apply order, and what runs after the last undo. */
export interface Plan {
  steps: Step[];
  /** Runs once after an uninstall (e.g. `systemctl daemon-reload`). */
  afterUndo(): Promise<void>;
}

/** The JSON record of what was provisioned (`/etc/secrets-dispatcher/<user>/provision.json`). */
export interface ProvisionRecord {
  user: string;
  uid: number;
  home: string;
  vt: number;
  backend: Deployment["backend"];
  gitConfig: boolean;
  pam: boolean;
}

/** The record's exact text for a deployment. */
export function recordText(d: Deployment, options: { gitConfig: boolean; pam: boolean }): string {
  const record: ProvisionRecord = {
    user: d.user,
    uid: d.uid,
    home: d.home,
    vt: d.vt,
    backend: d.backend,
    gitConfig: options.gitConfig,
    pam: options.pam,
  };
  return `${JSON.stringify(record, null, 2)}\n`;
}

/** The runtime dir's extra check: safe ancestors, and only the companion gets in. */
async function reachableByCompanionOnly(host: Host, d: Deployment): Promise<string | null> {
  let cur = d.runtimeDir.replace(/\/[^/]+$/, "");
  while (cur !== "") {
    const info = await visibleStat(host, under(host, cur));
    if (info && info !== "hidden" && (info.uid !== 0 || info.mode & 0o022)) {
      return `${cur} is ${info.uid}:${info.gid} ${octal(info.mode)}: writable by others than root`;
    }
    cur = cur.replace(/\/[^/]+$/, "");
  }
  const dir = under(host, d.runtimeDir);
  const sock = await host.stat(`${dir}/bus`);
  const companion = await host.getUser(d.companion);
  if (sock && companion && sock.uid !== companion.uid) {
    return `${d.companionBusSocket} is owned by uid ${sock.uid}, not ${d.companion}`;
  }
  const outsider = await execAs(host, { name: d.user, home: "/" }, ["test", "-x", dir]);
  if (outsider.code === 0) return `${d.user} can enter ${d.runtimeDir}`;
  const inside = await execAs(host, { name: d.companion, home: "/" }, [
    "sh",
    "-c",
    'test -x "$1" && test -w "$1"',
    "sh",
    dir,
  ]);
  if (inside.code !== 0) return `${d.companion} cannot use ${d.runtimeDir}`;
  return null;
}

/** `systemd-analyze verify` of the unit files (check only). */
function verifyUnitsStep(host: Host, d: Deployment): Step {
  const files = Object.keys(systemUnits(d)).map((u) => `${d.unitDir}/${u}`);
  return step({
    id: "verify-units",
    title: `unit files pass systemd-analyze verify`,
    actions: [`systemd-analyze verify --man=no ${files.join(" ")}`],
    checkOnly: true,
    fix: "read the errors above; the unit templates are in deploy/units.ts",
    async check(): Promise<Status> {
      if (host.root !== "") {
        return skip("--root is set: verify needs the programs at their real paths");
      }
      for (const f of files) {
        if ((await host.stat(f)) === null) return skip(`${f} is not written yet`);
      }
      const r = await host.exec("systemd-analyze", ["verify", "--man=no", ...files]);
      const bad = r.stderr.split("\n").filter((l) =>
        /Unknown key|Unknown section|Failed to|Invalid|not executable|Missing|bad-setting/i.test(l)
      );
      if (r.code !== 0 || bad.length) {
        return fail((bad.length ? bad : r.stderr.trim().split("\n")).join("; "));
      }
      return pass();
    },
  });
}

/** `systemctl daemon-reload` when the manager has stale unit files. */
function reloadStep(host: Host, units: string[]): Step {
  return step({
    id: "daemon-reload",
    title: "systemd has loaded the current unit files",
    actions: ["systemctl daemon-reload"],
    async check() {
      const no = needsSystemd(host);
      if (no) return no;
      const r = await host.exec("systemctl", [
        "show",
        "-p",
        "NeedDaemonReload",
        "--value",
        ...units,
      ]);
      return r.stdout.split("\n").some((l) => l.trim() === "yes")
        ? fail("unit files changed on disk since the last reload")
        : pass();
    },
    async apply() {
      if (needsSystemd(host)) return;
      const r = await host.exec("systemctl", ["daemon-reload"]);
      if (r.code !== 0) throw new Error(`daemon-reload: ${r.stderr.trim()}`);
    },
  });
}

/** pam-auth-update enables the profile (real root only). */
function pamEnableStep(host: Host, d: Deployment): Step {
  const commonAuth = "/etc/pam.d/common-auth";
  return step({
    id: "pam-enabled",
    title: `PAM hand-off active: ${commonAuth} runs ${d.pamHelper} in its Additional block`,
    actions: ["pam-auth-update --package --enable secrets-dispatcher"],
    undoActions: ["pam-auth-update --package --remove secrets-dispatcher"],
    shared: true,
    fix: "pam-auth-update --enable secrets-dispatcher (--force if common-auth was edited by hand)",
    async check() {
      if (host.root !== "") {
        return skip("--root is set: pam-auth-update only edits the real /etc/pam.d");
      }
      const text = await Deno.readTextFile(commonAuth).catch(() => "");
      return pamLinePlaced(text, d.pamHelper);
    },
    async apply() {
      if (host.root !== "") return;
      const r = await host.exec(
        "pam-auth-update",
        ["--package", "--enable", "secrets-dispatcher"],
        {
          env: { DEBIAN_FRONTEND: "noninteractive" },
        },
      );
      if (r.code !== 0) throw new Error(`pam-auth-update: ${r.stderr.trim()}`);
    },
    async undo() {
      if (host.root !== "") return;
      const text = await Deno.readTextFile(commonAuth).catch(() => "");
      if (!text.includes(d.pamHelper)) return;
      const r = await host.exec(
        "pam-auth-update",
        ["--package", "--remove", "secrets-dispatcher"],
        {
          env: { DEBIAN_FRONTEND: "noninteractive" },
        },
      );
      if (r.code !== 0) throw new Error(`pam-auth-update --remove: ${r.stderr.trim()}`);
    },
  });
}

/**
 * Whether `common-auth` runs the helper only after a successful primary module: its line must
 * come after the `requisite pam_deny.so` that ends Debian's primary block.
 */
export function pamLinePlaced(commonAuth: string, helper: string): Status {
  const lines = commonAuth.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const ours = lines.findIndex((l) => l.includes("pam_exec.so") && l.includes(helper));
  if (ours < 0) return fail("the helper is not in common-auth");
  const deny = lines.findIndex((l) => /^auth\s+requisite\s+pam_deny\.so/.test(l));
  if (deny < 0 || ours < deny) {
    return fail("the helper runs before pam_deny: wrong passwords would reach it");
  }
  if (!/expose_authtok/.test(lines[ours])) return fail("the helper line lacks expose_authtok");
  return pass();
}

/**
 * Type, owner and mode of a device node, from stat(1): Deno refuses to stat `/dev/*` without
 * `--allow-all`.
 */
export async function deviceInfo(host: Host, path: string): Promise<PathInfo | null> {
  const r = await host.exec("stat", ["-c", "%u %g %a %F", path]);
  if (r.code !== 0) return null;
  const [uid, gid, mode, ...type] = r.stdout.trim().split(" ");
  const kind = type.join(" ") === "character special file" ? "char" : "other";
  return { uid: Number(uid), gid: Number(gid), mode: parseInt(mode, 8), kind };
}

/** The programs the units run besides Deno exist and the companion may run them (check only). */
function programsStep(host: Host, d: Deployment): Step {
  const programs = [d.dbusDaemon, d.backend.argv[0], d.gpg];
  return step({
    id: "programs",
    title: `${d.companion} can run ${programs.join(", ")}`,
    actions: [],
    checkOnly: true,
    fix:
      `install the missing program (Debian: apt-get install dbus-daemon gnome-keyring gnupg), or pick another --backend`,
    async check() {
      if (!(await host.getUser(d.companion))) return fail(`no user ${d.companion} yet`);
      const missing: string[] = [];
      for (const p of programs) {
        const r = await execAs(host, { name: d.companion, home: "/" }, ["test", "-x", p]);
        if (r.code !== 0) missing.push(p);
      }
      return missing.length ? fail(`cannot run ${missing.join(", ")}`) : pass();
    },
  });
}

/** The console's VT: who can open and read it (check only). */
function ttyStep(host: Host, d: Deployment): Step {
  return step({
    id: "tty",
    title:
      `${d.tty}: no access for others; ${d.user} not in group tty (which reads /dev/vcs${d.vt})`,
    actions: [],
    checkOnly: true,
    // Every fix only takes access away: never a chown to group tty or a chmod that adds bits
    // (a tty that is root 0600 stays so).
    fix: `chown root ${d.tty}; chmod o-rwx ${d.tty}; gpasswd -d ${d.user} tty`,
    async check() {
      const otherVt = "provision again with --vt <n> of a VT this machine has (ls /dev/tty[0-9]*)";
      const info = await deviceInfo(host, d.tty);
      if (info === null) {
        return fail(`${d.tty} does not exist (no VT ${d.vt} on this machine)`, otherVt);
      }
      if (info.kind !== "char") return fail(`${d.tty} is a ${info.kind}`, otherVt);
      const companion = await host.getUser(d.companion);
      if (info.uid !== 0 && info.uid !== companion?.uid) {
        return fail(
          `${d.tty} is owned by uid ${info.uid}, not root or ${d.companion}`,
          `chown root ${d.tty}`,
        );
      }
      if (info.mode & 0o007) {
        return fail(`${d.tty} is ${octal(info.mode)}: others have access`, `chmod o-rwx ${d.tty}`);
      }
      if ((await host.groupMembers("tty")).includes(d.user)) {
        return fail(
          `${d.user} is in group tty and can read the console's screen`,
          `gpasswd -d ${d.user} tty   # applies from ${d.user}'s next login`,
        );
      }
      return pass(`${info.uid}:${info.gid} ${octal(info.mode)}`);
    },
  });
}

/**
 * The PAM hand-off socket listens (from now on, not only from the next boot), and the companion's
 * units are running while the desktop user is logged in.
 */
function runningStep(host: Host, d: Deployment): Step {
  const units = [d.units.companion, d.units.bus, d.units.backend, d.units.daemon, d.units.console];
  const socket = d.units.unlockSocket;
  const userUnit = `user@${d.uid}.service`;
  return step({
    id: "running",
    title:
      `${socket} listens; companion units run while ${d.user} is logged in (${userUnit} active)`,
    actions: [
      `systemctl start ${socket}`,
      `systemctl start ${units.join(" ")} (only while ${userUnit} is active)`,
    ],
    undoActions: [`systemctl stop ${units.join(" ")} ${socket}`],
    async check() {
      const no = needsSystemd(host);
      if (no) return no;
      const sock = await host.exec("systemctl", ["is-active", socket]);
      if (sock.stdout.trim() !== "active") {
        return fail(`${socket} is ${sock.stdout.trim() || "unknown"}: no PAM hand-off possible`);
      }
      const u = await host.exec("systemctl", ["is-active", userUnit]);
      if (u.stdout.trim() !== "active") {
        return pass(`${d.user} is not logged in: they start at her next login`);
      }
      const r = await host.exec("systemctl", ["is-active", ...units]);
      const states = r.stdout.trim().split("\n");
      const down = units.filter((_, i) => states[i] !== "active");
      return down.length ? fail(`not active: ${down.join(" ")}`) : pass();
    },
    async apply() {
      if (needsSystemd(host)) return;
      const sock = await host.exec("systemctl", ["start", socket]);
      if (sock.code !== 0) throw new Error(`systemctl start ${socket}: ${sock.stderr.trim()}`);
      const u = await host.exec("systemctl", ["is-active", userUnit]);
      if (u.stdout.trim() !== "active") return;
      const r = await host.exec("systemctl", ["start", ...units]);
      if (r.code !== 0) throw new Error(`systemctl start: ${r.stderr.trim()}`);
    },
    async undo() {
      if (needsSystemd(host)) return;
      await host.exec("systemctl", ["stop", ...units, socket]);
    },
  });
}

/** Builds the plan (see the module doc). Reads nothing but what `options` holds. */
export function buildPlan(host: Host, d: Deployment, options: PlanOptions): Plan {
  const steps: Step[] = [];
  const add = (...s: Step[]) => steps.push(...s);
  const desktop = { name: d.user, home: d.home, uid: d.uid };
  const hasAgent = options.source.files.some((f) => f.rel === "agent/main.ts");
  const units = systemUnits(d);

  // The companion and its store.
  add(
    companionUserStep(host, {
      name: d.companion,
      home: d.companionHome,
      shell: NOLOGIN_SHELL,
      comment: `secrets-dispatcher companion of ${d.user}`,
    }),
    dirStep(host, {
      path: d.stateBase,
      mode: 0o755,
      what: "base of the stores",
      undo: "remove-if-empty",
    }),
    dirStep(host, {
      path: d.companionHome,
      mode: 0o700,
      owner: d.companion,
      what: "the secret store (companion home)",
      undo: "store",
    }),
    dirStep(host, {
      path: d.stateDir,
      mode: 0o700,
      owner: d.companion,
      what: "daemon state dir",
      undo: "in-store",
    }),
    dirStep(host, {
      path: d.gnupgHome,
      mode: 0o700,
      owner: d.companion,
      what: "companion GnuPG home",
      undo: "in-store",
    }),
  );

  // Its runtime dir (the companion bus socket), now and at every boot.
  add(
    fileStep(host, {
      path: d.tmpfilesFile,
      content: tmpfilesConf(d),
      mode: 0o644,
      what: "runtime dir at boot (tmpfiles.d)",
    }),
    dirStep(host, {
      path: d.runtimeBase,
      mode: 0o755,
      what: "base of the runtime dirs",
      undo: "remove-if-empty",
    }),
    dirStep(host, {
      path: d.runtimeDir,
      mode: 0o700,
      owner: d.companion,
      what: "companion bus dir, reachable by the companion only",
      undo: "remove",
      extraCheck: () => reachableByCompanionOnly(host, d),
    }),
  );

  // The code, the pinned Deno, the scripts, the read-only DENO_DIR (machine-wide).
  const installDirs = [d.installDir, `${d.installDir}/bin`, `${d.installDir}/libexec`];
  for (const path of installDirs) {
    add(dirStep(host, { path, mode: 0o755, what: "install dir", undo: "remove-if-empty" }));
  }
  const pamConfig = { installDir: d.installDir, pamHelper: d.pamHelper };
  add(
    codeStep(host, d, options.source),
    denoBinaryStep(host, d, { source: options.denoSource }),
    fileStep(host, {
      path: d.gpgWrapper,
      content: gpgWrapperScript(d),
      mode: 0o755,
      what: "git gpg.program wrapper",
      shared: true,
    }),
  );
  if (hasAgent) {
    add(
      fileStep(host, {
        path: d.agentLauncher,
        content: agentLauncherScript(d),
        mode: 0o755,
        what: "agent launcher",
        shared: true,
      }),
    );
  }
  if (options.pam) {
    add(
      fileStep(host, {
        path: d.pamHelper,
        content: pamHelperScript(pamConfig),
        mode: 0o755,
        what: "PAM helper",
        shared: true,
      }),
    );
  }
  add(denoDirStep(host, d, {
    modules: cachedModules(options.source.files),
    networkEnv: options.networkEnv,
    seed: options.denoDirSeed,
  }));

  // Configuration and units.
  add(
    dirStep(host, {
      path: d.configBase,
      mode: 0o755,
      what: "configuration base",
      undo: "remove-if-empty",
    }),
    dirStep(host, {
      path: d.configDir,
      mode: 0o755,
      what: "configuration",
      undo: "remove-if-empty",
    }),
    fileStep(host, {
      path: d.companionBusConfig,
      content: companionBusConfig({ socket: d.companionBusSocket, user: d.companion }),
      mode: 0o644,
      what: "companion bus configuration",
    }),
    generatedFileStep(host, {
      path: d.phraseFile,
      owner: d.companion,
      mode: 0o400,
      what: "console phrase (shown on every console screen; readable by the companion only)",
      generate: () => `${generatePhrase()}\n`,
    }),
  );
  for (const [name, text] of Object.entries(units)) {
    add(
      fileStep(host, {
        path: `${d.unitDir}/${name}`,
        content: text,
        mode: 0o644,
        what: "systemd unit",
      }),
    );
  }
  add(
    verifyUnitsStep(host, d),
    enableStep(host, enabledUnits(d), "companion units"),
    reloadStep(host, Object.keys(units).filter((u) => !u.endsWith("@.service"))),
  );

  // The polkit rule: the companion may stop its target (the lock), the user may start it again.
  add(fileStep(host, {
    path: d.polkitRuleFile,
    content: polkitRule(d),
    mode: 0o644,
    what: "polkit rule (the lock stops the companion; the user may start it again)",
  }));

  // The system bus policy, after the users exist (dbus-daemon ignores unknown users' rules).
  add(fileStep(host, {
    path: d.policyFile,
    content: dispatcherPolicy({ user: d.user, uid: d.uid, companionUser: d.companion }),
    mode: 0o644,
    what: "D-Bus system policy",
    afterActions: ["systemctl reload dbus.service (when systemd runs it)"],
    async after() {
      if (!host.systemdRunning) return; // dbus-daemon also notices the change by inotify
      const active = await host.exec("systemctl", ["is-active", "dbus.service"]);
      if (active.stdout.trim() === "active") {
        await host.exec("systemctl", ["reload", "dbus.service"]);
      }
    },
  }));

  if (options.pam) {
    add(
      fileStep(host, {
        path: d.pamProfile,
        content: pamProfile(pamConfig),
        mode: 0o644,
        what: "PAM profile (pam-auth-update)",
        shared: true,
      }),
      pamEnableStep(host, d),
    );
  }
  add(programsStep(host, d), ttyStep(host, d));

  // The desktop side, written as the desktop user.
  if (hasAgent) {
    const reloadUser = async () => {
      if (!host.systemdRunning) return;
      const u = await host.exec("systemctl", ["is-active", `user@${d.uid}.service`]);
      if (u.stdout.trim() === "active") {
        await host.exec("systemctl", ["--user", "-M", `${d.user}@`, "daemon-reload"]);
      }
    };
    add(
      userFileStep(host, {
        user: desktop,
        path: `${d.userUnitDir}/${d.units.agent}`,
        content: agentUserUnit(d),
        what: "agent systemd --user unit",
        after: reloadUser,
      }),
      userSymlinkStep(host, {
        user: desktop,
        path: `${d.userUnitDir}/graphical-session.target.wants/${d.units.agent}`,
        target: `${d.userUnitDir}/${d.units.agent}`,
        what: "agent unit enabled for graphical-session.target",
      }),
      userFileStep(host, {
        user: desktop,
        path: d.autostartFile,
        content: agentDesktopEntry(d),
        what: "agent XDG autostart entry",
      }),
    );
  }
  if (options.gitConfig) add(gitConfigStep(host, { user: desktop, program: d.gpgWrapper }));
  add(runningStep(host, d));
  add(fileStep(host, {
    path: d.record,
    content: recordText(d, { gitConfig: options.gitConfig, pam: options.pam }),
    mode: 0o644,
    what: "provisioning record",
  }));

  return {
    steps,
    async afterUndo() {
      if (host.systemdRunning) await host.exec("systemctl", ["daemon-reload"]);
    },
  };
}

/** Checks a plan without applying anything: for tests and `--check`. */
export async function checkAll(plan: Plan): Promise<{ step: Step; status: Status }[]> {
  const out = [];
  for (const s of plan.steps) out.push({ step: s, status: await safeCheck(s) });
  return out;
}

/** A step's check; an exception becomes a failure. */
export async function safeCheck(s: Step): Promise<Status> {
  try {
    return await s.check();
  } catch (err) {
    return fail(`check failed: ${(err as Error).message}`);
  }
}
