/**
 * Runs a command to completion with captured output and an optional time limit: the one helper
 * the dev tools, tests and the VM end-to-end runner share.
 *
 * @module
 */

/** What a finished command left: exit code (137 when killed at the time limit) and output. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
  stdoutBytes: Uint8Array;
}

/** Runs a command and returns its exit code and output (never throws on failure). */
export async function exec(
  cmd: string,
  args: string[],
  options: {
    env?: Record<string, string>;
    /** Keep the parent's environment under `env` (default: only `env` when given). */
    inheritEnv?: boolean;
    cwd?: string;
    stdin?: Uint8Array | string;
    /** Kill the command (SIGKILL) after this many ms; it then exits 137. Default: no limit. */
    timeoutMs?: number;
  } = {},
): Promise<ExecResult> {
  const child = new Deno.Command(cmd, {
    args,
    env: options.env,
    clearEnv: options.env !== undefined && !options.inheritEnv,
    cwd: options.cwd,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(
      typeof options.stdin === "string" ? new TextEncoder().encode(options.stdin) : options.stdin,
    );
    await w.close().catch(() => {});
  }
  const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, options.timeoutMs);
  const out = await child.output().finally(() => clearTimeout(timer));
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
    stdoutBytes: out.stdout,
  };
}
