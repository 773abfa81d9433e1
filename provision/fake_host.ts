/**
 * A {@link Host} for tests that need no root: users live in memory, ownership changes are
 * recorded instead of made, and the current user stands in for root (files it creates look
 * root-owned). Files are real (under a temporary root prefix) and every other command runs for
 * real (`systemctl --root`, `deno install`, `git`, `sh`), as the current user.
 *
 * `runuser -u <user> -- …` runs the command as the current user, except two probes whose answer
 * depends on the user: `test -x <dir>` and `sh -c 'test -x "$1" && test -w "$1"' sh <dir>`, which
 * are answered from the recorded owner and mode bits. Files written by our `sh -c` helpers as a
 * user are recorded as that user's.
 *
 * @module
 */

import {
  execClean,
  type ExecOptions,
  type ExecResult,
  type Host,
  lstatInfo,
  type PasswdEntry,
  type PathInfo,
} from "./host.ts";

/** The fake. */
export class FakeHost implements Host {
  readonly root: string;
  readonly systemdRunning = false;
  /** Users by name. */
  readonly users = new Map<string, PasswdEntry>();
  /** Members of groups by name. */
  readonly groups = new Map<string, string[]>();
  /** Every command run, as `cmd arg…` lines. */
  readonly log: string[] = [];
  /** What {@link uidMin} answers (`UID_MIN` of login.defs). */
  loginUidMin = 1000;
  #owners = new Map<string, { uid: number; gid: number }>();
  #nextSystemUid = 990;
  #me = Deno.uid() ?? 0;

  /** @param root the temporary root prefix */
  constructor(root: string) {
    this.root = root.replace(/\/+$/, "");
  }

  /** Adds a user (as useradd would). */
  addUser(entry: PasswdEntry): void {
    this.users.set(entry.name, entry);
  }

  getUser(name: string): Promise<PasswdEntry | null> {
    return Promise.resolve(this.users.get(name) ?? null);
  }

  uidMin(): Promise<number> {
    return Promise.resolve(this.loginUidMin);
  }

  groupMembers(group: string): Promise<string[]> {
    return Promise.resolve(this.groups.get(group) ?? []);
  }

  chown(path: string, uid: number, gid: number): Promise<void> {
    if (uid === 0 && gid === 0) this.#owners.delete(path);
    else this.#owners.set(path, { uid, gid });
    return Promise.resolve();
  }

  async stat(path: string): Promise<PathInfo | null> {
    const info = await lstatInfo(path);
    if (info === null) return null;
    const owner = this.#owners.get(path);
    if (owner) return { ...info, ...owner };
    if (info.uid === this.#me) return { ...info, uid: 0, gid: 0 };
    return info;
  }

  async #chownTree(path: string, uid: number, gid: number): Promise<void> {
    await this.chown(path, uid, gid);
    const info = await lstatInfo(path);
    if (info?.kind !== "dir") return;
    for await (const e of Deno.readDir(path)) await this.#chownTree(`${path}/${e.name}`, uid, gid);
  }

  async #may(user: PasswdEntry, dir: string, bits: number): Promise<boolean> {
    const info = await this.stat(dir);
    if (!info) return false;
    const shift = info.uid === user.uid ? 6 : info.gid === user.gid ? 3 : 0;
    return ((info.mode >> shift) & bits) === bits;
  }

  async exec(cmd: string, args: string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.log.push([cmd, ...args].join(" "));
    const ok = (stdout = ""): ExecResult => ({ code: 0, stdout, stderr: "" });
    const bad = (stderr: string): ExecResult => ({ code: 1, stdout: "", stderr });
    const flag = (name: string) => args[args.indexOf(name) + 1];
    switch (cmd) {
      case "useradd": {
        const name = args[args.length - 1];
        if (this.users.has(name)) return bad(`useradd: user '${name}' already exists`);
        const uid = this.#nextSystemUid--;
        this.addUser({ name, uid, gid: uid, home: flag("--home-dir"), shell: flag("--shell") });
        return ok();
      }
      case "usermod": {
        const u = this.users.get(args[args.length - 1]);
        if (!u) return bad("usermod: no such user");
        u.home = flag("--home");
        u.shell = flag("--shell");
        return ok();
      }
      case "userdel":
        return this.users.delete(args[args.length - 1]) ? ok() : bad("userdel: no such user");
      case "chown": {
        const [uid, gid] = args[args.length - 2].split(":").map(Number);
        const path = args[args.length - 1];
        if (args.includes("-R")) await this.#chownTree(path, uid, gid);
        else await this.chown(path, uid, gid);
        return ok();
      }
      case "runuser": {
        const user = args[1] === "root"
          ? { name: "root", uid: 0, gid: 0, home: "/root", shell: "/bin/sh" }
          : this.users.get(args[1]);
        if (!user) return bad(`runuser: user ${args[1]} does not exist`);
        const argv = args.slice(args.indexOf("--") + 1);
        // Skip "/usr/bin/env -i VAR=…" to the command itself.
        let i = argv[0] === "/usr/bin/env" ? 2 : 0;
        const env: Record<string, string> = {};
        for (; i < argv.length && /^[A-Z_]+=/.test(argv[i]); i++) {
          const [k, ...v] = argv[i].split("=");
          env[k] = v.join("=");
        }
        const command = argv.slice(i);
        if (command[0] === "test" && command[1] === "-x") {
          // Programs outside the root prefix are looked at as they are.
          if (!command[2].startsWith(this.root)) {
            return await execClean("test", ["-x", command[2]]);
          }
          return (await this.#may(user, command[2], 1)) ? ok() : bad("");
        }
        if (command[0] === "stat" && command[2] === "%u %F") {
          const info = await this.stat(command[3]);
          if (!info) return bad("stat: cannot stat");
          const type = { file: "regular file", dir: "directory", symlink: "symbolic link" };
          return ok(`${info.uid} ${type[info.kind as keyof typeof type] ?? info.kind}\n`);
        }
        if (command[0] === "sh" && command[2] === 'test -x "$1" && test -w "$1"') {
          return (await this.#may(user, command[4], 3)) ? ok() : bad("");
        }
        const r = await execClean(command[0], command.slice(1), { ...options, env });
        if (r.code === 0 && command[0] === "sh" && command[2]?.includes("mkdir -p")) {
          await this.chown(command[command.length - 1], user.uid, user.gid);
        }
        return r;
      }
      default:
        return await execClean(cmd, args, options);
    }
  }
}

/**
 * The differences between two tree snapshots (path → description), sorted: `+ path` added,
 * `- path` removed, `~ path` changed. Shared by the provisioning tests.
 */
export function treeDiff(before: Map<string, string>, after: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of after) {
    if (before.get(k) !== v) out.push(`${before.has(k) ? "~" : "+"} ${k}`);
  }
  for (const k of before.keys()) if (!after.has(k)) out.push(`- ${k}`);
  return out.sort();
}
