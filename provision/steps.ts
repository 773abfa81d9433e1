/**
 * Builders of the generic steps provisioning is made of: files and directories with an owner
 * and a mode, the companion user, systemd enablement, and files in the desktop user's home
 * (written as her, never as root: she controls that directory).
 *
 * Every path given to these builders is a final path ("/etc/…"); the host's root prefix is
 * added here, for system paths only. Paths in the desktop user's home are never prefixed.
 *
 * @module
 */

import type { Host, PathInfo } from "./host.ts";
import { fail, pass, skip, type Status, type Step, step } from "./step.ts";

/** Owner of a path: `root` or a user name resolved at check/apply time. */
export type Owner = string;

/** Octal text of a mode, e.g. `0700`. */
export function octal(mode: number): string {
  return `0${mode.toString(8).padStart(3, "0")}`;
}

/** The prefixed path of a system path. */
export function under(host: Host, path: string): string {
  return `${host.root}${path}`;
}

/** uid and gid of an owner name (`root` is 0:0), or null when the user does not exist. */
export async function ownerIds(
  host: Host,
  owner: Owner,
): Promise<{ uid: number; gid: number } | null> {
  if (owner === "root") return { uid: 0, gid: 0 };
  const u = await host.getUser(owner);
  return u ? { uid: u.uid, gid: u.gid } : null;
}

/** Checks type, owner and mode of an existing path; null when all match. */
async function mismatch(
  host: Host,
  info: PathInfo,
  want: { kind: PathInfo["kind"]; owner: Owner; mode: number },
): Promise<string | null> {
  if (info.kind !== want.kind) return `is a ${info.kind}, expected a ${want.kind}`;
  const ids = await ownerIds(host, want.owner);
  if (!ids) return `its owner ${want.owner} does not exist`;
  if (info.uid !== ids.uid || info.gid !== ids.gid) {
    return `owned by ${info.uid}:${info.gid}, expected ${want.owner} (${ids.uid}:${ids.gid})`;
  }
  if (info.mode !== want.mode) return `mode ${octal(info.mode)}, expected ${octal(want.mode)}`;
  return null;
}

/** Creates the missing ancestors of a prefixed path as root:root 0755. */
export async function ensureParents(host: Host, prefixed: string): Promise<void> {
  const parts = prefixed.split("/").slice(0, -1);
  let cur = "";
  for (const part of parts.slice(1)) {
    cur += `/${part}`;
    if (cur.length <= host.root.length) continue;
    const info = await visibleStat(host, cur);
    if (info === "hidden") continue;
    if (info === null) {
      await Deno.mkdir(cur);
      await Deno.chmod(cur, 0o755);
      await host.chown(cur, 0, 0);
    } else if (info.kind !== "dir") {
      throw new Error(`${cur} is not a directory`);
    }
  }
}

/**
 * {@link Host.stat}, or `"hidden"` for a path outside the `--allow-read` list of the provision
 * task (`/etc`, `/usr`, `/run` themselves): those exist on every system and are not ours.
 */
export async function visibleStat(host: Host, path: string): Promise<PathInfo | null | "hidden"> {
  try {
    return await host.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotCapable) return "hidden";
    throw err;
  }
}

/** Writes a file atomically (temp file in the same dir, then rename) with owner and mode. */
export async function writeFileAtomic(
  host: Host,
  prefixed: string,
  content: string | Uint8Array,
  options: { mode: number; uid: number; gid: number },
): Promise<void> {
  await ensureParents(host, prefixed);
  const tmp = `${prefixed}.sd-new`;
  await Deno.remove(tmp).catch(() => {});
  const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o600 });
  try {
    const bytes = typeof content === "string" ? new TextEncoder().encode(content) : content;
    let off = 0;
    while (off < bytes.length) off += await file.write(bytes.subarray(off));
    await file.sync();
  } finally {
    file.close();
  }
  await host.chown(tmp, options.uid, options.gid);
  await Deno.chmod(tmp, options.mode);
  await Deno.rename(tmp, prefixed);
  // Ownership moved with the rename; saying it for the final path too keeps hosts that track
  // owners by path (the tests' fake host) right.
  await host.chown(prefixed, options.uid, options.gid);
}

async function readIfFile(host: Host, prefixed: string): Promise<string | null> {
  const info = await host.stat(prefixed);
  if (info?.kind !== "file") return null;
  return await Deno.readTextFile(prefixed);
}

/** Removes a prefixed path if it exists (recursively when asked). */
export async function removePath(prefixed: string, recursive = false): Promise<void> {
  try {
    await Deno.remove(prefixed, { recursive });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** Removes a directory if it exists and is empty. */
export async function removeIfEmpty(prefixed: string): Promise<void> {
  try {
    await Deno.remove(prefixed);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    if (
      (err as Error).message.includes("not empty") ||
      (err as { code?: string }).code === "ENOTEMPTY"
    ) return;
    throw err;
  }
}

/** Options of {@link fileStep}. */
export interface FileSpec {
  /** Final path. */
  path: string;
  /** The exact content. */
  content: string;
  /** Permission bits. */
  mode: number;
  /** Owner (default root). */
  owner?: Owner;
  /** What the file is, for the title. */
  what: string;
  /** Machine-wide (see {@link Step.shared}). */
  shared?: boolean;
  /** Runs after the file was written or removed (e.g. a reload). */
  after?: (event: "written" | "removed") => Promise<void>;
  /** Extra plan lines for {@link after}. */
  afterActions?: string[];
}

/** A system file with exact content, owner and mode. Undo removes it. */
export function fileStep(host: Host, spec: FileSpec): Step {
  const owner = spec.owner ?? "root";
  const path = under(host, spec.path);
  return step({
    id: `file:${spec.path}`,
    title: `${spec.what}: ${spec.path} (${owner} ${octal(spec.mode)})`,
    actions: [`write ${spec.path} (${owner} ${octal(spec.mode)})`, ...(spec.afterActions ?? [])],
    undoActions: [`rm -f ${spec.path}`, ...(spec.afterActions ?? [])],
    shared: spec.shared,
    async check(): Promise<Status> {
      const info = await host.stat(path);
      if (info === null) return fail("missing");
      const bad = await mismatch(host, info, { kind: "file", owner, mode: spec.mode });
      if (bad) return fail(bad);
      if (await readIfFile(host, path) !== spec.content) {
        return fail("content differs from what provisioning writes (edited or outdated)");
      }
      return pass();
    },
    async apply() {
      const ids = await ownerIds(host, owner);
      if (!ids) throw new Error(`cannot write ${spec.path}: user ${owner} does not exist`);
      await writeFileAtomic(host, path, spec.content, { mode: spec.mode, ...ids });
      await spec.after?.("written");
    },
    async undo() {
      if (await host.stat(path) === null) return;
      await removePath(path);
      await spec.after?.("removed");
    },
  });
}

/**
 * A file made once with generated content (the console phrase, `console/phrase.ts`): created
 * when missing or empty, kept as it is afterwards (a new phrase would look like a fake console).
 */
export function generatedFileStep(
  host: Host,
  spec: { path: string; owner: string; mode: number; what: string; generate: () => string },
): Step {
  const path = under(host, spec.path);
  const where = `${spec.path} (${spec.owner} ${octal(spec.mode)})`;
  return step({
    id: `file:${spec.path}`,
    title: `${spec.what}: ${where}, made once`,
    actions: [`write ${where} with new random words, unless it holds some already`],
    undoActions: [`rm -f ${spec.path}`],
    async check(): Promise<Status> {
      const info = await host.stat(path);
      if (info === null) return fail("missing");
      const bad = await mismatch(host, info, { kind: "file", owner: spec.owner, mode: spec.mode });
      if (bad) return fail(bad);
      if (((await readIfFile(host, path)) ?? "").trim() === "") return fail("empty");
      return pass();
    },
    async apply() {
      const ids = await ownerIds(host, spec.owner);
      if (!ids) throw new Error(`cannot write ${spec.path}: user ${spec.owner} does not exist`);
      const old = (await host.stat(path)) ? await readIfFile(host, path) : null;
      const content = old && old.trim() !== "" ? old : spec.generate();
      await writeFileAtomic(host, path, content, { mode: spec.mode, ...ids });
    },
    async undo() {
      if (await host.stat(path) === null) return;
      await removePath(path);
    },
  });
}

/** What undo does with a directory. */
export type DirUndo =
  /** remove it with its contents */
  | "remove"
  /** remove it when empty (shared parents) */
  | "remove-if-empty"
  /** the secret store: keep it, owned by root:root 0700, unless `--purge` */
  | "store"
  /** inside the store: nothing (the store's undo decides) */
  | "in-store";

/** Options of {@link dirStep}. */
export interface DirSpec {
  path: string;
  mode: number;
  owner?: Owner;
  what: string;
  undo: DirUndo;
  /** Extra checks once type, owner and mode are right (null: fine). */
  extraCheck?: () => Promise<string | null>;
}

/** A system directory with owner and mode. */
export function dirStep(host: Host, spec: DirSpec): Step {
  const owner = spec.owner ?? "root";
  const path = under(host, spec.path);
  const undoActions = {
    "remove": [`rm -rf ${spec.path}`],
    "remove-if-empty": [`rmdir ${spec.path} (if empty)`],
    "store": [
      `keep ${spec.path} as root:root 0700 (the secret store), or with --purge: rm -rf ${spec.path}`,
    ],
    "in-store": [],
  }[spec.undo];
  return step({
    id: `dir:${spec.path}`,
    title: `${spec.what}: ${spec.path} (${owner} ${octal(spec.mode)})`,
    actions: [`mkdir ${spec.path}; chmod ${octal(spec.mode)}; chown ${owner}`],
    undoActions,
    async check(): Promise<Status> {
      const info = await host.stat(path);
      if (info === null) return fail("missing");
      const bad = await mismatch(host, info, { kind: "dir", owner, mode: spec.mode });
      if (bad) return fail(bad);
      const extra = await spec.extraCheck?.();
      return extra ? fail(extra) : pass();
    },
    async apply() {
      const ids = await ownerIds(host, owner);
      if (!ids) throw new Error(`cannot make ${spec.path}: user ${owner} does not exist`);
      await ensureParents(host, path);
      const info = await host.stat(path);
      if (info === null) {
        await Deno.mkdir(path);
      } else if (info.kind !== "dir") {
        throw new Error(`${spec.path} exists and is a ${info.kind}; remove it first`);
      }
      if (spec.undo === "store" && info && info.uid !== ids.uid) {
        // A store kept by an earlier --uninstall (root-owned): give it to the new companion.
        const r = await host.exec("chown", ["-R", "-h", `${ids.uid}:${ids.gid}`, path]);
        if (r.code !== 0) throw new Error(`chown -R ${spec.path}: ${r.stderr.trim()}`);
      }
      await Deno.chmod(path, spec.mode);
      await host.chown(path, ids.uid, ids.gid);
    },
    async undo(options) {
      if (await host.stat(path) === null) return;
      switch (spec.undo) {
        case "remove":
          await removePath(path, true);
          break;
        case "remove-if-empty":
          await removeIfEmpty(path);
          break;
        case "store":
          if (options.purge) {
            await removePath(path, true);
          } else {
            const r = await host.exec("chown", ["-R", "-h", "0:0", path]);
            if (r.code !== 0) throw new Error(`chown -R ${spec.path}: ${r.stderr.trim()}`);
            await Deno.chmod(path, 0o700);
          }
          break;
        case "in-store":
          break;
      }
    },
  });
}

/**
 * The companion user: a regular user (uid from the login range, as the issue asks, so it is a
 * person's account like alice's, not a service's) with a locked password, the nologin shell and
 * its home in the store. Display managers hide it (nologin is not in /etc/shells).
 */
export function companionUserStep(
  host: Host,
  spec: { name: string; home: string; shell: string; comment: string },
): Step {
  const useradd = [
    "--user-group",
    "--no-create-home",
    "--home-dir",
    spec.home,
    "--shell",
    spec.shell,
    "--comment",
    spec.comment,
    spec.name,
  ];
  return step({
    id: "user",
    title: `companion user ${spec.name} (regular user, shell ${spec.shell}, home ${spec.home})`,
    actions: [`useradd ${useradd.map((a) => (a.includes(" ") ? `'${a}'` : a)).join(" ")}`],
    undoActions: [`userdel ${spec.name}`],
    async check() {
      const u = await host.getUser(spec.name);
      if (!u) return fail(`no user ${spec.name}`);
      if (u.home !== spec.home) return fail(`home is ${u.home}, expected ${spec.home}`);
      if (u.shell !== spec.shell) return fail(`shell is ${u.shell}, expected ${spec.shell}`);
      return pass(`uid ${u.uid}`);
    },
    async apply() {
      const exists = await host.getUser(spec.name);
      const r = exists
        ? await host.exec("usermod", ["--home", spec.home, "--shell", spec.shell, spec.name])
        : await host.exec("useradd", useradd);
      if (r.code !== 0) throw new Error(`creating ${spec.name}: ${r.stderr.trim()}`);
    },
    async undo() {
      if (!(await host.getUser(spec.name))) return;
      const r = await host.exec("userdel", [spec.name]);
      if (r.code !== 0) throw new Error(`userdel ${spec.name}: ${r.stderr.trim()}`);
    },
  });
}

/** `systemctl` arguments for unit-file operations on the host's root (works offline). */
export function systemctlRoot(host: Host): string[] {
  return host.systemdRunning ? [] : [`--root=${host.root || "/"}`];
}

/** Units enabled with `systemctl enable` (symlinks per their `[Install]` sections). */
export function enableStep(host: Host, units: string[], what: string): Step {
  const root = systemctlRoot(host);
  return step({
    id: `enable:${units.join(",")}`,
    title: `${what} enabled: ${units.join(" ")}`,
    actions: [`systemctl ${[...root, "enable", ...units].join(" ")}`],
    undoActions: [`systemctl ${[...root, "disable", ...units].join(" ")}`],
    async check() {
      const bad: string[] = [];
      for (const unit of units) {
        const r = await host.exec("systemctl", [...root, "is-enabled", unit]);
        const state = r.stdout.trim();
        if (state !== "enabled") bad.push(`${unit} (${state || "no unit file"})`);
      }
      return bad.length ? fail(`not enabled: ${bad.join("; ")}`) : pass();
    },
    async apply() {
      const r = await host.exec("systemctl", [...root, "enable", ...units]);
      if (r.code !== 0) throw new Error(`systemctl enable: ${r.stderr.trim()}`);
    },
    async undo() {
      const present: string[] = [];
      for (const unit of units) {
        const r = await host.exec("systemctl", [...root, "is-enabled", unit]);
        if (["enabled", "disabled", "static", "indirect"].includes(r.stdout.trim())) {
          present.push(unit);
        }
      }
      if (present.length === 0) return;
      const r = await host.exec("systemctl", [...root, "disable", ...present]);
      if (r.code !== 0) throw new Error(`systemctl disable: ${r.stderr.trim()}`);
    },
  });
}

/** Runs a command as `user` with a clean environment (runuser(1); HOME set to `home`). */
export function execAs(
  host: Host,
  user: { name: string; home: string },
  argv: string[],
  options: { stdin?: string } = {},
) {
  return host.exec("runuser", [
    "-u",
    user.name,
    "--",
    "/usr/bin/env",
    "-i",
    `HOME=${user.home}`,
    "PATH=/usr/bin:/bin",
    "LC_ALL=C",
    ...argv,
  ], options);
}

/** A reason to skip steps in the desktop user's home, or null when she and her home exist. */
async function homeMissing(host: Host, user: { name: string; home: string }) {
  const u = await host.getUser(user.name);
  if (!u) return `user ${user.name} does not exist`;
  const r = await execAs(host, user, ["test", "-d", user.home]);
  return r.code === 0 ? null : `${user.home} does not exist`;
}

/**
 * Owner uid and file type of a path in the desktop user's home, looked at by her (stat(1)): root
 * does not walk directories she controls. Null when it does not exist.
 */
async function statAs(
  host: Host,
  user: { name: string; home: string },
  path: string,
): Promise<{ uid: number; kind: string } | null> {
  const r = await execAs(host, user, ["stat", "-c", "%u %F", path]);
  if (r.code !== 0) return null;
  const [uid, ...type] = r.stdout.trim().split(" ");
  return { uid: Number(uid), kind: type.join(" ") };
}

/**
 * A file in the desktop user's home, written by her (runuser), never by root: she controls every
 * directory there, and root following her symlinks would write anywhere.
 */
export function userFileStep(
  host: Host,
  spec: {
    user: { name: string; home: string; uid: number };
    path: string;
    content: string;
    what: string;
    after?: () => Promise<void>;
  },
): Step {
  const dir = spec.path.replace(/\/[^/]+$/, "");
  return step({
    id: `user-file:${spec.path}`,
    title: `${spec.what}: ${spec.path} (written as ${spec.user.name})`,
    actions: [`as ${spec.user.name}: mkdir -p ${dir}; write ${spec.path} (0644)`],
    undoActions: [
      `as ${spec.user.name}: rm -f ${spec.path}; rmdir the emptied parent dirs below the home`,
    ],
    async check() {
      const missing = await homeMissing(host, spec.user);
      if (missing) return fail(missing);
      const info = await statAs(host, spec.user, spec.path);
      if (info === null) return fail("missing");
      if (info.kind !== "regular file") return fail(`is a ${info.kind}, expected a file`);
      if (info.uid !== spec.user.uid) {
        return fail(`owned by uid ${info.uid}, not ${spec.user.name}`);
      }
      const r = await execAs(host, spec.user, ["cat", spec.path]);
      if (r.code !== 0 || r.stdout !== spec.content) return fail("content differs");
      return pass();
    },
    async apply() {
      const missing = await homeMissing(host, spec.user);
      if (missing) throw new Error(missing);
      const r = await execAs(host, spec.user, [
        "sh",
        "-c",
        'umask 022 && mkdir -p "$1" && cat >"$2.sd-new" && mv -f "$2.sd-new" "$2"',
        "sh",
        dir,
        spec.path,
      ], { stdin: spec.content });
      if (r.code !== 0) throw new Error(`writing ${spec.path}: ${r.stderr.trim()}`);
      await spec.after?.();
    },
    undo: () => removeFromHome(host, spec.user, spec.path),
  });
}

/** A symlink in the desktop user's home, made by her. */
export function userSymlinkStep(
  host: Host,
  spec: {
    user: { name: string; home: string; uid: number };
    path: string;
    target: string;
    what: string;
  },
): Step {
  const dir = spec.path.replace(/\/[^/]+$/, "");
  return step({
    id: `user-link:${spec.path}`,
    title: `${spec.what}: ${spec.path} -> ${spec.target}`,
    actions: [`as ${spec.user.name}: mkdir -p ${dir}; ln -sfn ${spec.target} ${spec.path}`],
    undoActions: [
      `as ${spec.user.name}: rm -f ${spec.path}; rmdir the emptied parent dirs below the home`,
    ],
    async check() {
      const missing = await homeMissing(host, spec.user);
      if (missing) return fail(missing);
      const info = await statAs(host, spec.user, spec.path);
      if (info === null) return fail("missing");
      if (info.kind !== "symbolic link") return fail(`is a ${info.kind}, expected a symlink`);
      const target = (await execAs(host, spec.user, ["readlink", spec.path])).stdout.trim();
      return target === spec.target ? pass() : fail(`points to ${target}`);
    },
    async apply() {
      const missing = await homeMissing(host, spec.user);
      if (missing) throw new Error(missing);
      const r = await execAs(host, spec.user, [
        "sh",
        "-c",
        'mkdir -p "$1" && ln -sfn "$2" "$3"',
        "sh",
        dir,
        spec.target,
        spec.path,
      ]);
      if (r.code !== 0) throw new Error(`linking ${spec.path}: ${r.stderr.trim()}`);
    },
    undo: () => removeFromHome(host, spec.user, spec.path),
  });
}

/** Undo of a file or link in the user's home: removes it (as her), then the emptied parents. */
async function removeFromHome(
  host: Host,
  user: { name: string; home: string; uid: number },
  path: string,
): Promise<void> {
  if (await homeMissing(host, user)) return;
  const r = await execAs(host, user, ["rm", "-f", path]);
  if (r.code !== 0) throw new Error(`removing ${path}: ${r.stderr.trim()}`);
  await removeEmptyParents(host, user, path);
}

/**
 * Removes, as `user`, the parent dirs of `path` that are now empty, from the deepest up to (not
 * including) the home: the XDG dirs provisioning had to create (`~/.config/autostart`,
 * `~/.config/systemd/user/...`). `rmdir` refuses a dir that still holds anything, so nothing of
 * the user's is removed.
 */
async function removeEmptyParents(
  host: Host,
  user: { name: string; home: string; uid: number },
  path: string,
): Promise<void> {
  const home = user.home.replace(/\/+$/, "");
  if (home === "" || !path.startsWith(`${home}/`)) return;
  // The parents strictly below the home, deepest first; never the home itself.
  const dirs: string[] = [];
  for (let d = path.slice(0, path.lastIndexOf("/")); d.length > home.length;) {
    dirs.push(d);
    d = d.slice(0, d.lastIndexOf("/"));
  }
  for (const d of dirs) {
    if ((await execAs(host, user, ["rmdir", "--", d])).code !== 0) return;
  }
}

/** The desktop user's global git `gpg.program`, set by her (runuser + git config --global). */
export function gitConfigStep(
  host: Host,
  spec: { user: { name: string; home: string; uid: number }; program: string },
): Step {
  const get = ["git", "config", "--global", "--get", "gpg.program"];
  return step({
    id: "git-config",
    title: `git gpg.program of ${spec.user.name} is ${spec.program}`,
    actions: [`as ${spec.user.name}: git config --global gpg.program ${spec.program}`],
    undoActions: [
      `as ${spec.user.name}: git config --global --unset gpg.program (only if it is ours; an empty ~/.gitconfig goes too)`,
    ],
    async check() {
      const missing = await homeMissing(host, spec.user);
      if (missing) return fail(missing);
      const r = await execAs(host, spec.user, get);
      const value = r.stdout.trim();
      if (value === spec.program) return pass();
      return fail(value ? `gpg.program is ${value}` : "gpg.program is not set");
    },
    async apply() {
      const missing = await homeMissing(host, spec.user);
      if (missing) throw new Error(missing);
      const r = await execAs(host, spec.user, [
        "git",
        "config",
        "--global",
        "gpg.program",
        spec.program,
      ]);
      if (r.code !== 0) throw new Error(`git config: ${r.stderr.trim()}`);
    },
    async undo() {
      if (await homeMissing(host, spec.user)) return;
      const r = await execAs(host, spec.user, get);
      if (r.stdout.trim() !== spec.program) return;
      // An empty ~/.gitconfig left by --unset was ours alone: remove it too.
      const u = await execAs(host, spec.user, [
        "sh",
        "-c",
        'git config --global --unset gpg.program && { [ -s "$HOME/.gitconfig" ] || rm -f "$HOME/.gitconfig"; }',
      ]);
      if (u.code !== 0) throw new Error(`git config --unset: ${u.stderr.trim()}`);
    },
  });
}

/** A step that only applies where systemd runs as PID 1 on the real root. */
export function needsSystemd(host: Host): Status | null {
  if (host.systemdRunning) return null;
  if (host.root !== "") return skip("--root is set: no systemd manager acts on that tree");
  return skip("systemd is not PID 1 here (no /run/systemd/system): no manager to ask");
}
