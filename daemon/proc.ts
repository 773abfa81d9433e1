/**
 * Facts about a process on this machine, as the companion user can learn them. Deno refuses
 * every `/proc/<pid>/…` path without `--allow-all`, so the daemon asks `ps` (procps, ps(1)).
 *
 * @module
 */

/** What the daemon can establish about a calling process. */
export interface ProcessInfo {
  /** Real uid owning the process. */
  uid: number;
  /** Its command line as `ps` shows it (arguments joined by spaces), or null. */
  cmdline: string[] | null;
  /** Its executable, or null when it cannot be read (another uid's `/proc/<pid>/exe`). */
  exe: string | null;
}

/** Reads facts about a process; replaceable in tests. */
export interface ProcReader {
  /** Facts about `pid`, or null when the process is gone. */
  info(pid: number): Promise<ProcessInfo | null>;
}

/**
 * {@link ProcReader} through `ps` (procps, ps(1)): Deno refuses every `/proc/<pid>/…` path
 * without `--allow-all`, so the daemon asks `ps` (besides gpg and gpg-connect-agent, its only `--allow-run`).
 */
export function psProcReader(ps = "/usr/bin/ps"): ProcReader {
  return {
    async info(pid) {
      if (!Number.isSafeInteger(pid) || pid <= 0) return null;
      try {
        const out = await new Deno.Command(ps, {
          args: ["-ww", "-o", "uid=", "-o", "args=", "-p", String(pid)],
          env: { LC_ALL: "C" },
          clearEnv: true,
          stdin: "null",
          stdout: "piped",
          stderr: "null",
        }).output();
        if (!out.success) return null;
        const m = new TextDecoder().decode(out.stdout).match(/^\s*(\d+)\s+(.*)$/s);
        if (!m) return null;
        return { uid: Number(m[1]), cmdline: [m[2].replace(/\n$/, "")], exe: null };
      } catch {
        return null;
      }
    },
  };
}
