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
  /**
   * When it started, as `ps -o lstart` shows it (`Mon Nov 30 06:50:01 2026`, seconds, LC_ALL=C),
   * or null when unknown. With the pid it names one process: a later process that gets the same
   * pid (pids are reused) started later.
   */
  started: string | null;
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
          args: ["-ww", "-o", "uid=", "-o", "lstart=", "-o", "args=", "-p", String(pid)],
          env: { LC_ALL: "C" },
          clearEnv: true,
          stdin: "null",
          stdout: "piped",
          stderr: "null",
        }).output();
        if (!out.success) return null;
        // uid, then lstart (always five fields in the C locale), then the arguments.
        const m = new TextDecoder().decode(out.stdout).match(
          /^\s*(\d+)\s+(\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}) (.*)$/s,
        );
        if (!m) return null;
        return {
          uid: Number(m[1]),
          cmdline: [m[3].replace(/\n$/, "")],
          exe: null,
          started: m[2].replace(/ +/g, " "),
        };
      } catch {
        return null;
      }
    },
  };
}
