/**
 * Helpers for the tests on a real VT (`/dev/tty8`): when they can run, who holds tty8, its
 * state read by a fresh process, and `chvt` with a time limit.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DEFAULT_LIBC_PATH } from "../deploy/permissions.ts";

export const TTY = "/dev/tty8";
export const HOLDER = new URL("./fixtures/vt_holder.ts", import.meta.url).pathname;

/** Exit code of a command, or null when it cannot be run. */
function codeOf(cmd: string, args: string[]): number | null {
  try {
    return new Deno.Command(cmd, { args, stdin: "null", stdout: "null", stderr: "null" })
      .outputSync().code;
  } catch {
    return null;
  }
}

// Deno 2.9 wants --allow-all for any path under /dev, /proc or /sys (even a stat), so those are
// looked at through `test` and `ps`.
export function vtSkipReason(): string | null {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") return "not linux/x86_64";
  if (Deno.uid() !== 0) return "needs root (chvt, VT ioctls on /dev/tty8)";
  for (const tool of ["/usr/bin/chvt", "/usr/bin/setsid", "/usr/bin/timeout", "/usr/bin/ps"]) {
    try {
      Deno.statSync(tool);
    } catch {
      return `${tool} is missing (chvt: package kbd)`;
    }
  }
  if (codeOf("/usr/bin/test", ["-c", TTY]) !== 0) return `${TTY} is missing`;
  try {
    Deno.statSync(DEFAULT_LIBC_PATH);
  } catch {
    return `${DEFAULT_LIBC_PATH} is missing`;
  }
  return null;
}

/** Pids whose controlling terminal is tty8. */
export async function tty8Owners(): Promise<number[]> {
  const out = await new Deno.Command("/usr/bin/ps", { args: ["-e", "-o", "pid=,tty="] }).output();
  assert.equal(out.code, 0, "ps -e");
  return new TextDecoder().decode(out.stdout).split("\n").map((l) => l.trim().split(/\s+/))
    .filter(([, tty]) => tty === "tty8").map(([pid]) => Number(pid));
}

export interface VtQuery {
  active: number;
  mode: number;
  relsig: number;
  acqsig: number;
}

/** VT_GETSTATE and VT_GETMODE of tty8, read by a fresh process. */
export async function query(): Promise<VtQuery> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", `--allow-ffi=${DEFAULT_LIBC_PATH}`, HOLDER, "query", TTY],
    stdin: "null",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `query failed: ${text}${new TextDecoder().decode(out.stderr)}`);
  return JSON.parse(text);
}

/** `timeout <seconds> chvt <vt>`: exit 0 when the switch happened, 124 when chvt hung. */
export async function chvt(vt: number, seconds: number): Promise<number> {
  const out = await new Deno.Command("/usr/bin/timeout", {
    args: [String(seconds), "/usr/bin/chvt", String(vt)],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  return out.code;
}
