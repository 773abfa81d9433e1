/**
 * The Deno signer: what `gpg.program` runs for a signing call (the front script
 * `sign/gpg_front.sh` sends everything else to the local gpg before Deno starts).
 *
 * Usage (by the front): `main.ts --git-dir D --common-dir C --work-tree W -- <gpg argv>`.
 *
 * Contract with git (shared/reference/git-gpg-program.md §7): read stdin to EOF; stdout gets
 * exactly the armored signature ending in one `\n`; the `--status-fd` descriptor gets gpg's
 * status lines including `[GNUPG:] SIG_CREATED `; progress goes to the terminal only (through
 * the front's note FIFO, `--tty-note`).
 * Exit codes: 0 signed; 1 denied, expired, cancelled or failed (with `[GNUPG:] FAILURE sign`);
 * 2 when the daemon cannot be reached or misbehaves, or the call is not one we handle.
 * While it waits, a signal (SIGINT, SIGTERM, SIGHUP) or losing its parent (the front script,
 * checked with `Deno.ppid`) withdraws the request (`Request1.Cancel`) before it exits.
 *
 * Permissions: the system bus socket, read-only access to the git dirs, the note FIFO
 * (deploy/permissions.ts). No `--allow-run`.
 *
 * @module
 */

import { CallTimeoutError, errorText, systemBusAddress } from "../lib/dbus.ts";
import {
  DispatcherClient,
  type PendingRequest,
  type RequestCompletion,
  RequestRefusedError,
} from "../lib/dispatcher_client.ts";
import { parsePayload, summarize } from "../lib/payload.ts";
import { dispatcherName, SHORT_ID_LENGTH } from "../lib/protocol.ts";
import { escapeLine } from "../lib/sanitize.ts";
import { ArgsError, parseSignArgs } from "./args.ts";
import { collectContext, type RepoLocation } from "./context.ts";

/** Exit code: signed. */
export const EXIT_SIGNED = 0;
/** Exit code: denied, expired, cancelled, or gpg failed in the companion. */
export const EXIT_REFUSED = 1;
/** Exit code: daemon unreachable or misbehaving, or an unsupported call. */
export const EXIT_UNAVAILABLE = 2;

/** Longest the signer waits for a decision before giving up (the daemon expires requests sooner). */
const MAX_WAIT_MS = 15 * 60 * 1000;

/**
 * How often the signer checks, while it waits, that its parent (the front script) is still
 * there. `Deno.ppid` asks the kernel each time (no permission needed); a parent killed with
 * SIGKILL leaves the signer with another one.
 */
const PARENT_CHECK_MS = 500;

const encoder = new TextEncoder();

/** Parses the front's own options, then the gpg argv after `--`. */
function splitArgs(
  args: string[],
): { repo: RepoLocation; ttyNote: string | null; gpgArgs: string[] } {
  const sep = args.indexOf("--");
  if (sep < 0) throw new ArgsError("internal: the front script passes `--` before gpg's arguments");
  const own = args.slice(0, sep);
  const get = (name: string) => {
    const i = own.indexOf(name);
    if (i < 0 || i + 1 >= own.length) throw new ArgsError(`internal: missing ${name}`);
    return own[i + 1];
  };
  return {
    repo: {
      gitDir: get("--git-dir"),
      commonDir: get("--common-dir"),
      workTree: get("--work-tree"),
    },
    ttyNote: own.includes("--tty-note") ? get("--tty-note") : null,
    gpgArgs: args.slice(sep + 1),
  };
}

/**
 * The `[GNUPG:]` status writer for the `--status-fd` descriptor (1 or 2; git uses 2). A reader
 * that went away (git was killed) is ignored.
 */
function statusWriter(fd: number | null): (text: string) => void {
  const out = fd === 1 ? Deno.stdout : Deno.stderr;
  return (t) => tryWriteAll(out, encoder.encode(t));
}

/** {@link writeAll}, ignoring a closed reader (the message then has nobody to read it). */
function tryWriteAll(w: { writeSync(p: Uint8Array): number }, data: Uint8Array): void {
  try {
    writeAll(w, data);
  } catch { /* broken pipe: git is gone */ }
}

function writeAll(w: { writeSync(p: Uint8Array): number }, data: Uint8Array): void {
  let off = 0;
  while (off < data.length) off += w.writeSync(data.subarray(off));
}

/** Where notes for the person at the terminal go: the front's FIFO, copied to `/dev/tty`. */
let noteFile: Deno.FsFile | null = null;

/**
 * Opens the note FIFO. Read-write, because opening a FIFO read-write never blocks, even when
 * its reader is gone (Deno refuses `/dev/tty` itself without `--allow-all`).
 */
function openNotes(path: string | null): void {
  if (!path) return;
  try {
    noteFile = Deno.openSync(path, { read: true, write: true });
  } catch { /* no notes then */ }
}

/** Writes one line for the terminal, if there is one. Never to stdout. */
function ttyNote(line: string): void {
  if (!noteFile) return;
  try {
    writeAll(noteFile, encoder.encode(`secrets-dispatcher: ${line}\n`));
  } catch { /* the terminal went away */ }
}

async function readStdin(): Promise<Uint8Array> {
  return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
}

/**
 * The line for a request that ended without a signature: `request <id> <outcome>: <message>`,
 * without repeating the outcome when the daemon's message already starts with it
 * (`denied: not mine`, `denied by rule …`).
 *
 * @param shortId the request's short id
 * @param c the completion (`outcome` and `message`)
 */
export function outcomeLine(
  shortId: string,
  c: Pick<RequestCompletion, "outcome" | "message">,
): string {
  const message = c.message.trim();
  if (!message) return `request ${shortId} ${c.outcome}`;
  if (message === c.outcome || [":", " "].some((sep) => message.startsWith(c.outcome + sep))) {
    return `request ${shortId} ${message}`;
  }
  return `request ${shortId} ${c.outcome}: ${message}`;
}

/** Checks that the daemon's reply is one armored signature block; returns it with one final `\n`. */
export function normalizeSignature(sig: Uint8Array): Uint8Array {
  const text = new TextDecoder("utf-8", { fatal: true }).decode(sig).replace(/\r\n/g, "\n");
  const begin = "-----BEGIN PGP SIGNATURE-----";
  const end = "-----END PGP SIGNATURE-----";
  const trimmed = text.replace(/\n+$/, "");
  if (!trimmed.startsWith(begin) || !trimmed.endsWith(end) || trimmed.indexOf(begin, 1) >= 0) {
    throw new Error("the daemon returned something that is not one armored signature");
  }
  return encoder.encode(trimmed + "\n");
}

/** Runs the signer; returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const parent = Deno.ppid;
  let status = statusWriter(2);
  const fail = (code: number, message: string, gpgCode = 0) => {
    status(`[GNUPG:] FAILURE sign ${gpgCode}\n`);
    tryWriteAll(Deno.stderr, encoder.encode(`secrets-dispatcher: ${message}\n`));
    ttyNote(message);
    return code;
  };
  let repo: RepoLocation;
  let keySpec: string;
  try {
    const split = splitArgs(args);
    repo = split.repo;
    openNotes(split.ttyNote);
    const parsed = parseSignArgs(split.gpgArgs);
    status = statusWriter(parsed.statusFd);
    if (parsed.statusFd !== null && parsed.statusFd !== 1 && parsed.statusFd !== 2) {
      return fail(EXIT_UNAVAILABLE, `--status-fd ${parsed.statusFd} is not supported (1 or 2)`);
    }
    keySpec = parsed.keySpec;
  } catch (err) {
    if (err instanceof ArgsError) return fail(EXIT_UNAVAILABLE, err.message);
    throw err;
  }

  const payload = await readStdin(); // to EOF first: git fails with EPIPE otherwise
  let content = null;
  let summary = "";
  try {
    content = parsePayload(payload);
    summary = summarize(content);
  } catch { /* the daemon refuses it with a clear message */ }
  const context = await collectContext(repo, content);

  const uidText = Deno.env.get("SD_DISPATCHER_UID");
  const uid = uidText ? Number(uidText) : Deno.uid();
  if (uid === null || !Number.isSafeInteger(uid)) {
    return fail(EXIT_UNAVAILABLE, "cannot tell my uid");
  }
  const address = systemBusAddress((n) => Deno.env.get(n));
  const where = `the secrets-dispatcher daemon ${dispatcherName(uid)} on ${address}`;
  const unreachable = (why: string) =>
    fail(
      EXIT_UNAVAILABLE,
      `cannot reach ${where}: ${why}. Is it running? ` +
        `(production: systemctl status secrets-dispatcher-daemon@$USER; ` +
        `demo: deno task demo, then source .demo/env)`,
    );
  // It owns its bus name (connect found it) but did not answer: running, yet stopped or hung.
  const unanswered = (err: CallTimeoutError) =>
    fail(
      EXIT_UNAVAILABLE,
      `${where} did not answer within ${Math.round(err.timeoutMs / 1000)} s: it is running ` +
        `(it owns its bus name) but busy, hung or stopped ` +
        `(production: systemctl status secrets-dispatcher-daemon@$USER)`,
    );

  let client: DispatcherClient;
  let request: PendingRequest;
  try {
    client = await DispatcherClient.connect({ address, uid, timeoutMs: 4000 });
  } catch (err) {
    return unreachable(errorText(err));
  }
  try {
    request = await client.requestSign(payload, { keySpec, context });
  } catch (err) {
    client.close();
    if (err instanceof RequestRefusedError) {
      return fail(EXIT_REFUSED, `the daemon refused the request: ${err.message}`, 17);
    }
    if (err instanceof CallTimeoutError) return unanswered(err);
    return unreachable(errorText(err));
  }
  const shortId = request.id.slice(0, SHORT_ID_LENGTH);
  ttyNote(
    `waiting for approval on VT 8, request ${shortId}${summary ? ` (${escapeLine(summary)})` : ""}`,
  );

  // Ctrl-C in the terminal reaches us (git's process group): withdraw the request. So does the
  // front's watcher (SIGTERM) when git goes away, and a front that goes away itself.
  const { promise: interrupted, resolve: interrupt } = Promise.withResolvers<string>();
  const handlers: [Deno.Signal, () => void][] = (["SIGINT", "SIGTERM", "SIGHUP"] as const).map(
    (sig) => [sig, () => interrupt(sig)],
  );
  for (const [sig, h] of handlers) Deno.addSignalListener(sig, h);
  const parentCheck = setInterval(() => {
    if (Deno.ppid !== parent) interrupt("the front script went away");
  }, PARENT_CHECK_MS);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const result = await Promise.race([
    request.completed.then(
      (c) => ({ kind: "completed" as const, c }),
      (err) => ({ kind: "gone" as const, why: errorText(err) }),
    ),
    interrupted.then((sig) => ({ kind: "interrupted" as const, sig })),
    new Promise<{ kind: "timeout" }>((r) => {
      timer = setTimeout(() => r({ kind: "timeout" }), MAX_WAIT_MS);
    }),
  ]);
  clearTimeout(timer);
  clearInterval(parentCheck);
  for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);

  if (result.kind === "gone") {
    client.close();
    return fail(EXIT_UNAVAILABLE, `request ${shortId}: ${result.why}`);
  }
  if (result.kind !== "completed") {
    await request.cancel();
    client.close();
    return fail(
      EXIT_REFUSED,
      result.kind === "interrupted"
        ? `request ${shortId} cancelled (${result.sig})`
        : `request ${shortId} timed out`,
    );
  }
  client.close();
  const c = result.c;
  if (c.outcome === "done" && c.signature) {
    let sig: Uint8Array;
    try {
      sig = normalizeSignature(c.signature);
    } catch (err) {
      return fail(EXIT_UNAVAILABLE, errorText(err));
    }
    if (!/(^|\n)\[GNUPG:\] SIG_CREATED /.test(c.status)) {
      return fail(EXIT_UNAVAILABLE, "the daemon's gpg status has no SIG_CREATED line");
    }
    writeAll(Deno.stdout, sig);
    status(c.status.endsWith("\n") ? c.status : c.status + "\n");
    ttyNote(`request ${shortId} approved and signed`);
    return EXIT_SIGNED;
  }
  if (c.outcome === "failed") {
    if (c.status) status(c.status.endsWith("\n") ? c.status : c.status + "\n");
    return fail(EXIT_REFUSED, `request ${shortId}: signing failed in the companion: ${c.message}`);
  }
  return fail(EXIT_REFUSED, outcomeLine(shortId, c));
}

if (import.meta.main) Deno.exit(await main(Deno.args));
