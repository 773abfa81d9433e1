/**
 * The PAM helper's Deno half (run by `libexec/pam-unlock`, see `deploy/pam.ts`): reads the login
 * password pam_exec(8) writes to stdin with `expose_authtok` (terminated by NUL, or EOF), writes
 * exactly those bytes to the root-only unlock socket and closes the connection. It never prints
 * or logs the password; buffers are zeroed after use.
 *
 * Usage: `pam_unlock.ts <socket>`. Permissions: `--allow-read=<socket> --allow-write=<socket>
 * --allow-net=unix:<socket>`, nothing else.
 *
 * Exit codes: 0 handed over; 1 not handed over (no socket, timeout, empty or oversized password);
 * 2 usage. The calling script ignores them: login never depends on this.
 *
 * @module
 */

/** Longest password handed over, bytes (longer input is refused, not cut). */
export const MAX_PASSWORD_BYTES = 4096;
/** Time limit of the whole hand-off, ms: the login waits for pam_exec. */
export const TIMEOUT_MS = 3000;

/**
 * Reads `stream` up to the first NUL byte or EOF.
 *
 * @returns the bytes before the NUL, or null when there are more than `max`
 */
export async function readToken(
  stream: ReadableStream<Uint8Array>,
  max = MAX_PASSWORD_BYTES,
): Promise<Uint8Array | null> {
  const buf = new Uint8Array(max + 1);
  let n = 0;
  const reader = stream.getReader();
  try {
    while (true) {
      const { value, done } = await reader.read();
      if (done) break;
      const nul = value.indexOf(0);
      const part = nul >= 0 ? value.subarray(0, nul) : value;
      if (n + part.length > max) {
        value.fill(0);
        buf.fill(0);
        return null;
      }
      buf.set(part, n);
      n += part.length;
      value.fill(0);
      if (nul >= 0) break;
    }
  } finally {
    reader.releaseLock();
  }
  const out = buf.slice(0, n);
  buf.fill(0);
  return out;
}

/**
 * Writes `token` to the unix socket at `path` and closes the connection.
 *
 * @throws {Error} when the socket cannot be reached or written within `timeoutMs`
 */
export async function handOver(
  path: string,
  token: Uint8Array,
  options: { timeoutMs?: number } = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? TIMEOUT_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let conn: Deno.UnixConn | undefined;
  const work = (async () => {
    conn = await Deno.connect({ transport: "unix", path });
    let off = 0;
    while (off < token.length) off += await conn.write(token.subarray(off));
    await conn.closeWrite();
  })();
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("timed out")), timeoutMs);
  });
  try {
    await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
    try {
      conn?.close();
    } catch { /* closed */ }
    work.catch(() => {});
  }
}

async function main(args: string[]): Promise<number> {
  if (args.length !== 1 || !args[0].startsWith("/")) return 2;
  const token = await readToken(Deno.stdin.readable);
  if (token === null || token.length === 0) return 1;
  try {
    await handOver(args[0], token);
    return 0;
  } catch {
    return 1;
  } finally {
    token.fill(0);
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
