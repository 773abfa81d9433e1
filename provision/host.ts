/**
 * The system that provisioning acts on, behind one small interface: commands, user lookups,
 * ownership, and a root prefix for files. The real implementation runs commands with a clean
 * environment (`PATH=/usr/sbin:/usr/bin:/sbin:/bin`, `LC_ALL=C`); tests use a fake for users
 * (`provision/fake_host.ts`) and a temporary root prefix for files.
 *
 * @module
 */

/** What a command did. */
export interface ExecResult {
  /** Exit code (signals give 128 + n). */
  code: number;
  stdout: string;
  stderr: string;
}

/** Options of {@link Host.exec}. */
export interface ExecOptions {
  /** Bytes or text written to stdin, then EOF (default: stdin is /dev/null). */
  stdin?: string | Uint8Array;
  /** Variables added to the clean environment. */
  env?: Record<string, string>;
  /** Working directory. */
  cwd?: string;
}

/** One passwd(5) entry. */
export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

/** Ownership and type of a path (not following a final symlink). */
export interface PathInfo {
  uid: number;
  gid: number;
  /** Permission bits (`0o7777` part of st_mode). */
  mode: number;
  kind: "file" | "dir" | "symlink" | "socket" | "char" | "other";
}

/** The system provisioning acts on. */
export interface Host {
  /** Prefix of every system file path ("" for the real root). Never ends with "/". */
  readonly root: string;
  /**
   * True when systemd runs as PID 1 here (`/run/systemd/system` exists, sd_booted(3)) and the
   * files go to the real root: only then can `systemctl` talk to a manager.
   */
  readonly systemdRunning: boolean;
  /** Runs a command (no shell) and returns its result; never throws for a non-zero exit. */
  exec(cmd: string, args: string[], options?: ExecOptions): Promise<ExecResult>;
  /** The passwd entry of a user (getent passwd), or null. */
  getUser(name: string): Promise<PasswdEntry | null>;
  /** The supplementary members of a group (getent group), empty when there is no such group. */
  groupMembers(group: string): Promise<string[]>;
  /** Changes the owner of a prefixed path (not following a final symlink where possible). */
  chown(path: string, uid: number, gid: number): Promise<void>;
  /** Type, owner and mode of a prefixed path, or null when it does not exist. */
  stat(path: string): Promise<PathInfo | null>;
  /**
   * The lowest uid of regular (human) users: `UID_MIN` of the real `/etc/login.defs` (users are
   * real even under a root prefix), {@link DEFAULT_UID_MIN} when it does not say.
   */
  uidMin(): Promise<number>;
}

/** Where useradd(8) reads `UID_MIN`. */
export const LOGIN_DEFS = "/etc/login.defs";

/** `UID_MIN` when login.defs(5) is missing or does not set it (shadow's own default). */
export const DEFAULT_UID_MIN = 1000;

/** `UID_MIN` from the text of login.defs(5): its first setting, else {@link DEFAULT_UID_MIN}. */
export function parseUidMin(loginDefs: string): number {
  for (const line of loginDefs.split("\n")) {
    const m = /^\s*UID_MIN\s+(\S+)\s*$/.exec(line);
    if (m) return /^\d{1,9}$/.test(m[1]) ? Number(m[1]) : DEFAULT_UID_MIN;
  }
  return DEFAULT_UID_MIN;
}

/** The clean environment of every command provisioning runs. */
export const CLEAN_ENV: Readonly<Record<string, string>> = {
  PATH: "/usr/sbin:/usr/bin:/sbin:/bin",
  LC_ALL: "C",
};

/** Runs a command with a clean environment. Never throws for a non-zero exit. */
export async function execClean(
  cmd: string,
  args: string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      env: { ...CLEAN_ENV, ...options.env },
      clearEnv: true,
      cwd: options.cwd,
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  } catch (err) {
    return { code: 127, stdout: "", stderr: `${cmd}: ${(err as Error).message}` };
  }
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    const bytes = typeof options.stdin === "string"
      ? new TextEncoder().encode(options.stdin)
      : options.stdin;
    await w.write(bytes).catch(() => {});
    await w.close().catch(() => {});
  }
  const out = await child.output();
  return {
    code: out.signal ? 128 : out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Parses one `getent passwd` line. */
export function parsePasswd(line: string): PasswdEntry | null {
  const f = line.trim().split(":");
  if (f.length < 7) return null;
  return { name: f[0], uid: Number(f[2]), gid: Number(f[3]), home: f[5], shell: f[6] };
}

function kindOf(info: Deno.FileInfo): PathInfo["kind"] {
  if (info.isSymlink) return "symlink";
  if (info.isFile) return "file";
  if (info.isDirectory) return "dir";
  if (info.isSocket) return "socket";
  if (info.isCharDevice) return "char";
  return "other";
}

/** Type, owner and mode from Deno.lstat, or null when the path does not exist. */
export async function lstatInfo(path: string): Promise<PathInfo | null> {
  try {
    const info = await Deno.lstat(path);
    return {
      uid: info.uid ?? -1,
      gid: info.gid ?? -1,
      mode: (info.mode ?? 0) & 0o7777,
      kind: kindOf(info),
    };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** True when `/run/systemd/system` exists (sd_booted(3)). */
export async function systemdBooted(): Promise<boolean> {
  return (await lstatInfo("/run/systemd/system"))?.kind === "dir";
}

/** The real system. */
export class RealHost implements Host {
  readonly root: string;
  readonly systemdRunning: boolean;

  /**
   * @param root the file prefix ("" or "/" for the real root)
   * @param systemdRunning whether systemd is PID 1 (see {@link systemdBooted})
   */
  constructor(root: string, systemdRunning: boolean) {
    this.root = root.replace(/\/+$/, "");
    this.systemdRunning = systemdRunning && this.root === "";
  }

  /** A host for `root`, detecting systemd. */
  static async create(root = ""): Promise<RealHost> {
    return new RealHost(root, await systemdBooted());
  }

  exec(cmd: string, args: string[], options?: ExecOptions): Promise<ExecResult> {
    return execClean(cmd, args, options);
  }

  async getUser(name: string): Promise<PasswdEntry | null> {
    const r = await this.exec("getent", ["passwd", name]);
    if (r.code !== 0) return null;
    return parsePasswd(r.stdout.split("\n")[0]);
  }

  async groupMembers(group: string): Promise<string[]> {
    const r = await this.exec("getent", ["group", group]);
    if (r.code !== 0) return [];
    const members = r.stdout.trim().split(":")[3] ?? "";
    return members ? members.split(",") : [];
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    const info = await lstatInfo(path);
    if (info?.kind === "symlink") {
      const r = await this.exec("chown", ["-h", `${uid}:${gid}`, path]);
      if (r.code !== 0) throw new Error(`chown -h ${path}: ${r.stderr.trim()}`);
      return;
    }
    await Deno.chown(path, uid, gid);
  }

  stat(path: string): Promise<PathInfo | null> {
    return lstatInfo(path);
  }

  async uidMin(): Promise<number> {
    try {
      return parseUidMin(await Deno.readTextFile(LOGIN_DEFS));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return DEFAULT_UID_MIN;
      throw err;
    }
  }
}
