/**
 * Who is asking: the {@link ClientReport} of a client connection on the desktop session bus.
 * pid and uid come from the bus daemon (`GetConnectionCredentials`, D-Bus specification
 * "Message Bus Messages"); the executable, command line and working directory from
 * `/proc/<pid>` — only for processes of the agent's own uid (another user's /proc facts are
 * neither readable nor ours to report).
 *
 * Deno 2.9.6 refuses every `/proc/<pid>/...` path unless the program has `--allow-all`, so the
 * facts are read by `/usr/bin/readlink` and `/usr/bin/cat` run as subprocesses with a clean
 * environment and a short timeout (the agent's only `--allow-run`). The pid can be reused after
 * the client exits (pitfall #27); the report is taken once per connection, while it is alive.
 *
 * @module
 */

import { type Bus, peerCredentials } from "../lib/dbus.ts";
import type { ClientReport } from "../lib/protocol.ts";

/** Time allowed to each `/proc` reading subprocess, in milliseconds. */
const PROC_TIMEOUT_MS = 2000;
/** How long an unused report stays cached for a connection nobody watches, in milliseconds. */
const CACHE_IDLE_MS = 60_000;

/** What `/proc/<pid>` says about a process; null for what could not be read. */
export interface ProcFacts {
  exe: string | null;
  cmdline: string[] | null;
  cwd: string | null;
}

/** Reads the {@link ProcFacts} of a pid. */
export type ProcReader = (pid: number) => Promise<ProcFacts>;

/** Runs one program on `/proc/<pid>/<entry>` and returns its stdout, or null on any failure. */
async function runOn(program: string, args: string[]): Promise<Uint8Array | null> {
  try {
    const out = await new Deno.Command(program, {
      args,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(PROC_TIMEOUT_MS),
    }).output();
    return out.success ? out.stdout : null;
  } catch {
    return null;
  }
}

/**
 * Reads `/proc/<pid>/exe`, `cmdline` (split at NUL) and `cwd` through `/usr/bin/readlink` and
 * `/usr/bin/cat`. Needs `--allow-run=/usr/bin/readlink,/usr/bin/cat`; never throws.
 *
 * @param pid a process id
 */
export async function readProcFacts(pid: number): Promise<ProcFacts> {
  if (!Number.isSafeInteger(pid) || pid <= 0) return { exe: null, cmdline: null, cwd: null };
  const dir = `/proc/${pid}`;
  const link = async (entry: string) => {
    const out = await runOn("/usr/bin/readlink", ["--", `${dir}/${entry}`]);
    return out === null ? null : new TextDecoder().decode(out).replace(/\n$/, "");
  };
  const [exe, cwd, raw] = await Promise.all([
    link("exe"),
    link("cwd"),
    runOn("/usr/bin/cat", ["--", `${dir}/cmdline`]),
  ]);
  let cmdline: string[] | null = null;
  if (raw !== null && raw.length > 0) {
    const text = new TextDecoder().decode(raw);
    cmdline = (text.endsWith("\0") ? text.slice(0, -1) : text).split("\0");
  }
  return { exe, cmdline, cwd };
}

/** pid and uid of a connection: `GetConnectionCredentials`, or the older single calls. */
async function connectionCredentials(
  bus: Bus,
  name: string,
): Promise<{ pid: number | null; uid: number | null }> {
  try {
    const [creds] = await bus.callBus("GetConnectionCredentials", "s", [name], {
      timeoutMs: 2000,
      replySignature: "a{sv}",
    });
    const c = creds as Record<string, { value: unknown }>;
    const num = (v: { value: unknown } | undefined) => v === undefined ? null : Number(v.value);
    return { pid: num(c.ProcessID), uid: num(c.UnixUserID) };
  } catch {
    try {
      return await peerCredentials(bus, name);
    } catch {
      return { pid: null, uid: null };
    }
  }
}

/** Builds and caches the {@link ClientReport} of each client connection. */
export class ClientReports {
  #bus: Bus;
  #agentUid: number;
  #readProc: ProcReader;
  #cache = new Map<string, { report: Promise<ClientReport>; usedAt: number }>();

  /**
   * @param bus the session bus the clients are on
   * @param options `agentUid` (the uid whose processes' /proc facts are reported), `readProc`
   *   (default {@link readProcFacts})
   */
  constructor(bus: Bus, options: { agentUid: number; readProc?: ProcReader }) {
    this.#bus = bus;
    this.#agentUid = options.agentUid;
    this.#readProc = options.readProc ?? readProcFacts;
  }

  /**
   * The report for a client connection (cached per connection). Never throws: what cannot be
   * established is null.
   *
   * @param busName the client's unique name, e.g. `:1.42`
   */
  report(busName: string): Promise<ClientReport> {
    const hit = this.#cache.get(busName);
    if (hit) {
      hit.usedAt = Date.now();
      return hit.report;
    }
    const report = this.#build(busName);
    this.#cache.set(busName, { report, usedAt: Date.now() });
    return report;
  }

  /** Drops the cached report of a connection that left the bus. */
  forget(busName: string): void {
    this.#cache.delete(busName);
  }

  /**
   * Drops reports unused for a minute, except those of `keep` (connections still watched).
   *
   * @param keep whether a connection's report must stay
   */
  sweep(keep: (busName: string) => boolean): void {
    const limit = Date.now() - CACHE_IDLE_MS;
    for (const [name, entry] of this.#cache) {
      if (entry.usedAt < limit && !keep(name)) this.#cache.delete(name);
    }
  }

  async #build(busName: string): Promise<ClientReport> {
    const { pid, uid } = await connectionCredentials(this.#bus, busName);
    const facts = pid !== null && uid === this.#agentUid
      ? await this.#readProc(pid)
      : { exe: null, cmdline: null, cwd: null };
    return { busName, pid, uid, ...facts };
  }
}
