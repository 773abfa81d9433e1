/**
 * `ctl`: the admin CLI of secrets-dispatcher, for the same operations as the console.
 *
 * ```
 * ctl [--bus <address>] list [--json]
 * ctl [--bus <address>] show <id> [--json]
 * ctl [--bus <address>] approve <id> [--digest <hex>] [--grant-minutes <n> | --grant-signatures <n>] [--json]
 * ctl [--bus <address>] deny <id> [--reason <text>] [--rule [--rule-minutes <n>]] [--json]
 * ctl [--bus <address>] history [--limit <n>] [--json]
 * ctl [--bus <address>] rules [--json]
 * ctl [--bus <address>] revoke <rule id>
 * ctl [--bus <address>] lock | unlock
 * ctl [--bus <address>] status [--json]
 * ```
 *
 * `--grant-minutes` goes with secret.read requests and `--grant-signatures` with sign.commit ones:
 * the other one, or both, is a usage error and approves nothing.
 *
 * `<id>` may be any unique prefix (at least 4 hex characters) of a request id. The address
 * defaults to `$SD_COMPANION_BUS_ADDRESS`. Human output is escaped (lib/sanitize.ts); `--json`
 * prints the daemon's RequestView / arrays as they are, with characters that a terminal could
 * interpret written as `\uXXXX` JSON escapes (same value, safe to print).
 *
 * Exit codes: {@link EXIT_OK} 0; {@link EXIT_REFUSED} 1 when the daemon said no (NoSuchRequest,
 * NotPending, DigestMismatch...); {@link EXIT_UNREACHABLE} 2 when the daemon cannot be reached (or
 * no address is known); {@link EXIT_USAGE} 64 for a bad command line.
 *
 * Permissions: `--allow-env=SD_COMPANION_BUS_ADDRESS --allow-read=<sock> --allow-write=<sock>
 * --allow-net=unix:<sock> --allow-sys=uid`.
 *
 * @module
 */

import { Command, CommanderError, Option } from "@commander-js/extra-typings";
import { AdminClient, AdminError, AdminUnreachableError } from "../lib/admin_client.ts";
import {
  Errors,
  MAX_GRANT_MINUTES,
  MAX_GRANT_SIGNATURES,
  MAX_PASSWORD_BYTES,
  type RequestSummary,
  type RequestView,
  type RuleView,
} from "../lib/protocol.ts";
import { escapeLine, escapeMultiline } from "../lib/sanitize.ts";
import {
  describeHistoryEntry,
  describeRequest,
  formatCountdown,
  formatTime,
  shortDigest,
  shortId,
  summarize,
} from "./describe.ts";
import { START_HINT } from "./render.ts";
import { toAnsi } from "./text.ts";

/** Success. */
export const EXIT_OK = 0;
/** The daemon answered with an error (the text says which). */
export const EXIT_REFUSED = 1;
/** The daemon could not be reached. */
export const EXIT_UNREACHABLE = 2;
/** Bad command line (EX_USAGE). */
export const EXIT_USAGE = 64;

/** Environment variable holding the companion bus address. */
export const ADDRESS_ENV = "SD_COMPANION_BUS_ADDRESS";
/** Reason sent by `deny` without `--reason`. */
export const DEFAULT_DENY_REASON = "denied with ctl";

/** Where `ctl` writes and reads its environment (replaced in tests). */
export interface CtlIo {
  /** Writes to stdout. */
  out(text: string): void;
  /** Writes to stderr. */
  err(text: string): void;
  /** Reads an environment variable; undefined when unset or not permitted. */
  env(name: string): string | undefined;
  /** Connect timeout, ms. */
  connectTimeoutMs?: number;
  /** Standard input (`ctl unlock --password-stdin`); default `Deno.stdin.readable`. */
  stdin?: () => ReadableStream<Uint8Array>;
  /** Waits `ms` (tests replace it); default a timer. */
  sleep?: (ms: number) => Promise<void>;
}

/**
 * Reads `stream` to EOF into one buffer; null when it holds more than `max` bytes (everything
 * read is zeroed then).
 */
async function readAll(
  stream: ReadableStream<Uint8Array>,
  max: number,
): Promise<Uint8Array | null> {
  const buf = new Uint8Array(max);
  let n = 0;
  for await (const chunk of stream) {
    if (n + chunk.length > max) {
      buf.fill(0);
      chunk.fill(0);
      return null;
    }
    buf.set(chunk, n);
    chunk.fill(0);
    n += chunk.length;
  }
  return buf.subarray(0, n);
}

function writeAll(file: { writeSync(p: Uint8Array): number }, text: string): void {
  const bytes = new TextEncoder().encode(text);
  let off = 0;
  while (off < bytes.length) off += file.writeSync(bytes.subarray(off));
}

/** The real stdout/stderr/environment. */
export const denoIo: CtlIo = {
  out: (t) => writeAll(Deno.stdout, t),
  err: (t) => writeAll(Deno.stderr, t),
  env: (name) => {
    try {
      return Deno.env.get(name);
    } catch {
      return undefined;
    }
  },
};

const UNSAFE_IN_JSON = new RegExp(
  String
    .raw`[\p{Cc}\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}[\p{Zs}--[\x20]]]`,
  "gv",
);

/**
 * JSON text of `value`, with every character a terminal could interpret or hide written as a
 * `\uXXXX` escape (still the same JSON value).
 */
export function safeJson(value: unknown): string {
  // JSON.stringify escapes C0 controls inside strings itself, so a raw "\n" here is layout.
  return JSON.stringify(value, null, 2).replace(UNSAFE_IN_JSON, (ch) => {
    if (ch === "\n") return ch;
    let out = "";
    for (let i = 0; i < ch.length; i++) {
      out += `\\u${ch.charCodeAt(i).toString(16).padStart(4, "0")}`;
    }
    return out;
  });
}

/** Thrown by actions to end with a given exit code and message. */
class Exit extends Error {
  constructor(readonly code: number, message: string) {
    super(message);
  }
}

function listTable(list: RequestSummary[], now: number): string {
  if (list.length === 0) return "no pending requests\n";
  const rows = list.map((v) => [
    shortId(v.id),
    escapeLine(String(v.kind)),
    `uid ${v.callerUid}${v.callerPid !== null ? ` pid ${v.callerPid}` : ""}`,
    formatCountdown(v.expiresAt, now),
    escapeLine(v.summary),
  ]);
  const head = ["ID", "KIND", "CALLER", "EXPIRES", "SUMMARY"];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n") + "\n";
}

function showText(view: RequestView, now: number): string {
  return describeRequest(view, now).map((l) => toAnsi(l.segs, false)).join("\n") + "\n";
}

function oneLine(view: RequestView): string {
  return `${shortId(view.id)} (${escapeLine(String(view.kind))}) "${summarize(view)}", digest ${
    shortDigest(view.digest)
  }`;
}

/** `g1a2b3c4d read-grant: <description> (expires ..., used n)`, escaped. */
function ruleLine(r: RuleView): string {
  const until = r.expiresAt === null ? "until revoked" : `until ${formatTime(r.expiresAt)}`;
  const left = r.remaining !== null ? `, ${r.remaining} left` : "";
  return `${escapeLine(r.id)} ${escapeLine(r.type)}: ${
    escapeLine(r.description)
  } (${until}${left}, ` +
    `used ${r.uses}, from request ${shortId(r.fromRequest)})`;
}

function parseCount(value: string): number {
  if (!/^\d{1,6}$/.test(value)) {
    throw new CommanderError(
      EXIT_USAGE,
      "ctl.badNumber",
      `expected a whole number, got ${escapeLine(value)}`,
    );
  }
  return Number(value);
}

/** The options that make a grant with an approval, by the request kind each one is for. */
const GRANT_OPTIONS = {
  "secret.read": { option: "--grant-minutes", what: `1-${MAX_GRANT_MINUTES} minutes` },
  "sign.commit": {
    option: "--grant-signatures",
    what: `1-${MAX_GRANT_SIGNATURES} signatures continuing it`,
  },
} as const;

/** Which grant option fits which request kind, for error messages. */
const GRANT_HELP = `${GRANT_OPTIONS["secret.read"].option} is for secret.read requests, ` +
  `${GRANT_OPTIONS["sign.commit"].option} for sign.commit requests`;

/** An argument parser for a grant option: a whole number in 1..max. */
function grantCount(option: string, max: number, unit: string): (value: string) => number {
  return (value) => {
    if (!/^\d{1,6}$/.test(value) || Number(value) < 1 || Number(value) > max) {
      throw new CommanderError(
        EXIT_USAGE,
        "ctl.badGrant",
        `${option} takes 1-${max} ${unit}, got ${escapeLine(value)}`,
      );
    }
    return Number(value);
  };
}

/**
 * Why `option` (a grant option) cannot go with a request of `kind`, or null when it can.
 *
 * @param shortId the request's short id, for the message
 */
function grantMismatch(option: string, kind: string, shortId: string): string | null {
  const fitting = GRANT_OPTIONS[kind as keyof typeof GRANT_OPTIONS];
  if (fitting?.option === option) return null;
  if (!fitting) {
    return `no grant can be made from ${shortId}, a ${escapeLine(kind)} request (${GRANT_HELP})`;
  }
  return `${option} does not fit ${shortId}, a ${kind} request: ${fitting.option} <n> grants ` +
    `${fitting.what} (${GRANT_HELP})`;
}

function parseLimit(value: string): number {
  if (!/^\d+$/.test(value) || Number(value) > 0xffffffff) {
    throw new CommanderError(
      EXIT_USAGE,
      "ctl.badLimit",
      `--limit must be a number, got ${escapeLine(value)}`,
    );
  }
  return Number(value);
}

/**
 * Runs `ctl` with `args` (without the program name).
 *
 * @param args command-line arguments, e.g. `["approve", "1a2b3c4d"]`
 * @param io output and environment (default: the real ones)
 * @returns the exit code ({@link EXIT_OK}, {@link EXIT_REFUSED}, {@link EXIT_UNREACHABLE},
 *   {@link EXIT_USAGE})
 */
export async function main(args: string[], io: CtlIo = denoIo): Promise<number> {
  let client: AdminClient | null = null;
  let address = "";

  const program = new Command("ctl")
    .description(
      "secrets-dispatcher admin CLI: list, show, approve and deny requests; grants, rules, lock",
    )
    .addOption(new Option("--bus <address>", `companion bus address (default: $${ADDRESS_ENV})`))
    .exitOverride()
    .configureOutput({
      writeOut: io.out,
      writeErr: io.err,
      // Commander would read CLICOLOR_FORCE etc. (an env permission) and the terminal width.
      getOutHasColors: () => false,
      getErrHasColors: () => false,
      getOutHelpWidth: () => 80,
      getErrHelpWidth: () => 80,
      // Usage errors quote the command line: escape it like everything else.
      outputError: (text, write) => write(escapeMultiline(text)),
    })
    .showHelpAfterError(false);

  const connect = async (): Promise<AdminClient> => {
    address = program.opts().bus ?? io.env(ADDRESS_ENV) ?? "";
    if (!address) {
      throw new Exit(
        EXIT_UNREACHABLE,
        `no bus address: pass --bus <address> or set ${ADDRESS_ENV}`,
      );
    }
    client = await AdminClient.connect(address, { timeoutMs: io.connectTimeoutMs });
    return client;
  };
  const print = (text: string) => io.out(text);

  program.command("list")
    .description("list the pending requests")
    .option("--json", "print the RequestSummary array as JSON (details: show <id> --json)")
    .action(async (opts) => {
      const views = await (await connect()).list();
      print(opts.json ? safeJson(views) + "\n" : listTable(views, Date.now()));
    });

  program.command("show")
    .description("show one request in full")
    .argument("<id>", "request id or unique prefix")
    .option("--json", "print the RequestView as JSON")
    .action(async (id, opts) => {
      const view = await (await connect()).get(id);
      print(opts.json ? safeJson(view) + "\n" : showText(view, Date.now()));
    });

  program.command("approve")
    .description("approve a request (as it is now: run `show` first)")
    .argument("<id>", "request id or unique prefix")
    .option("--digest <hex>", "only approve if the request's digest starts with this (from `show`)")
    .option(
      "--grant-minutes <n>",
      `secret.read requests only: also let this program read these items for n minutes ` +
        `(1-${MAX_GRANT_MINUTES})`,
      grantCount("--grant-minutes", MAX_GRANT_MINUTES, "minutes (secret.read requests)"),
    )
    .option(
      "--grant-signatures <n>",
      `sign.commit requests only: also approve the next n signatures continuing this rebase ` +
        `(1-${MAX_GRANT_SIGNATURES})`,
      grantCount("--grant-signatures", MAX_GRANT_SIGNATURES, "signatures (sign.commit requests)"),
    )
    .option("--json", "print the approved RequestView as JSON")
    .action(async (id, opts) => {
      if (opts.grantMinutes !== undefined && opts.grantSignatures !== undefined) {
        throw new CommanderError(
          EXIT_USAGE,
          "ctl.grantBoth",
          `--grant-minutes and --grant-signatures exclude each other: a request takes the grant ` +
            `of its kind (${GRANT_HELP})`,
        );
      }
      const grantOption = opts.grantMinutes !== undefined
        ? "--grant-minutes"
        : opts.grantSignatures !== undefined
        ? "--grant-signatures"
        : null;
      const c = await connect();
      const view = await c.get(id);
      const mismatch = grantOption && grantMismatch(grantOption, view.kind, shortId(view.id));
      if (mismatch) throw new Exit(EXIT_USAGE, `not approved: ${mismatch}`);
      if (opts.digest !== undefined) {
        const want = opts.digest.toLowerCase();
        if (!/^[0-9a-f]{8,}$/.test(want)) {
          throw new CommanderError(
            EXIT_USAGE,
            "ctl.badDigest",
            "--digest needs at least 8 hex characters",
          );
        }
        if (!view.digest.startsWith(want)) {
          throw new Exit(
            EXIT_REFUSED,
            `not approved: the request's digest is ${shortDigest(view.digest)}, not ${
              escapeLine(want)
            }; show it again`,
          );
        }
      }
      if (opts.grantMinutes !== undefined || opts.grantSignatures !== undefined) {
        const rule = await c.approveWithGrant(view.id, view.digest, {
          ...(opts.grantMinutes !== undefined ? { minutes: opts.grantMinutes } : {}),
          ...(opts.grantSignatures !== undefined ? { signatures: opts.grantSignatures } : {}),
        });
        print(
          opts.json
            ? safeJson({ request: view, grant: rule }) + "\n"
            : `approved ${oneLine(view)}\ngrant ${ruleLine(rule)}\n`,
        );
        return;
      }
      await c.approve(view.id, view.digest);
      print(opts.json ? safeJson(view) + "\n" : `approved ${oneLine(view)}\n`);
    });

  program.command("deny")
    .description("deny a request")
    .argument("<id>", "request id or unique prefix")
    .option("--reason <text>", "why (recorded in the history)", DEFAULT_DENY_REASON)
    .option("--rule", "also deny requests like this one from now on (see `rules`)")
    .option("--rule-minutes <n>", "the rule lasts n minutes (default: until revoked)", parseCount)
    .option("--json", "print the denied RequestView as JSON")
    .action(async (id, opts) => {
      const c = await connect();
      const view = await c.get(id);
      if (opts.rule || opts.ruleMinutes !== undefined) {
        const rule = await c.denyWithRule(view.id, opts.reason, { minutes: opts.ruleMinutes });
        print(
          opts.json
            ? safeJson({ request: view, rule }) + "\n"
            : `denied ${oneLine(view)}\nrule ${ruleLine(rule)}\n`,
        );
        return;
      }
      await c.deny(view.id, opts.reason);
      print(opts.json ? safeJson(view) + "\n" : `denied ${oneLine(view)}\n`);
    });

  program.command("rules")
    .description("list the grants and deny rules in force")
    .option("--json", "print the RuleView array as JSON")
    .action(async (opts) => {
      const rules = await (await connect()).rules();
      if (opts.json) print(safeJson(rules) + "\n");
      else if (rules.length === 0) print("no grants or deny rules\n");
      else print(rules.map((r) => ruleLine(r)).join("\n") + "\n");
    });

  program.command("revoke")
    .description("end a grant or deny rule")
    .argument("<rule>", "rule id (from `rules`)")
    .action(async (rule) => {
      await (await connect()).revoke(rule);
      print(`revoked ${escapeLine(rule)}\n`);
    });

  program.command("lock")
    .description(
      "lock: deny every pending request, drop every grant, refuse requests until `unlock`",
    )
    .action(async () => {
      await (await connect()).lock();
      print("locked: pending requests denied, grants dropped, new requests refused\n");
    });

  program.command("status")
    .description("show the secret store's state (unlocked, locked, unavailable)")
    .option("--json", "print the AdminStoreStatus as JSON")
    .action(async (opts) => {
      const st = await (await connect()).status();
      if (opts.json) {
        print(safeJson(st) + "\n");
        return;
      }
      print(`store ${st.state}: ${escapeLine(st.message)}\n`);
      if (st.consoleLock) print("the console's lock is on: `ctl unlock` (or U on the console)\n");
      else if (st.creates) {
        print(
          "it has no keyring yet: the first passphrase typed on the console (twice), or given to " +
            "`ctl unlock --password-stdin`, creates it\n",
        );
      } else if (st.passwordUnlock === true) {
        print(
          "it opens with its passphrase: typed on the console, or `ctl unlock --password-stdin`\n",
        );
      } else if (st.passwordUnlock === false) {
        print("this store cannot be unlocked with a passphrase from here: use its own tools\n");
      }
    });

  program.command("unlock")
    .description(
      "end the lock (requests are accepted again); with --password-stdin also unlock the secret " +
        "store with a password read from stdin to EOF (one final newline is dropped), creating " +
        "its default collection with it when there is none",
    )
    .option("--password-stdin", "read the store's password from stdin (never from argv)")
    .option(
      "--wait <seconds>",
      "wait up to this long for the daemon and its store to appear (the PAM hand-off arrives " +
        "before they start)",
      (v) => {
        if (!/^\d+$/.test(v) || Number(v) > 600) {
          throw new CommanderError(EXIT_USAGE, "ctl.badWait", "--wait takes 0..600 seconds");
        }
        return Number(v);
      },
      0,
    )
    .action(async (opts) => {
      if (!opts.passwordStdin) {
        await (await connect()).unlock();
        print("unlocked\n");
        return;
      }
      const raw = await readAll((io.stdin ?? (() => Deno.stdin.readable))(), MAX_PASSWORD_BYTES);
      if (raw === null) {
        throw new Exit(EXIT_USAGE, `the password is longer than ${MAX_PASSWORD_BYTES} bytes`);
      }
      const end = raw.length > 0 && raw[raw.length - 1] === 0x0a ? raw.length - 1 : raw.length;
      const password = raw.subarray(0, end);
      const sleep = io.sleep ?? ((ms: number) => new Promise((r) => setTimeout(r, ms)));
      const deadline = Date.now() + opts.wait * 1000;
      try {
        for (;;) {
          try {
            await (await connect()).unlockStore(password);
            break;
          } catch (err) {
            // The daemon not there yet, or there before the store it fronts (both start with
            // the login): wait for either within --wait.
            const starting = err instanceof AdminUnreachableError ||
              (err instanceof AdminError && err.dbusName === Errors.StoreUnavailable);
            if (!starting || Date.now() >= deadline) throw err;
            (client as AdminClient | null)?.close();
            client = null;
            await sleep(500);
          }
        }
      } finally {
        raw.fill(0);
      }
      print("store unlocked\n");
    });

  program.command("history")
    .description("show the decision history, newest last")
    .option("--limit <n>", "at most n entries (0 = the daemon's default, 100)", parseLimit, 0)
    .option("--json", "print the HistoryEntry array as JSON")
    .action(async (opts) => {
      const entries = await (await connect()).history(opts.limit);
      if (opts.json) print(safeJson(entries) + "\n");
      else if (entries.length === 0) print("no history\n");
      else {print(
          entries.map((e) => toAnsi(describeHistoryEntry(e), false).trimEnd()).join("\n") + "\n",
        );}
    });

  try {
    await program.parseAsync(args, { from: "user" });
    return EXIT_OK;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.exitCode === 0) return EXIT_OK; // --help, --version
      if (err.code.startsWith("ctl.")) io.err(`ctl: ${err.message}\n`);
      return EXIT_USAGE;
    }
    if (err instanceof Exit) {
      io.err(`ctl: ${err.message}\n`);
      return err.code;
    }
    if (err instanceof AdminError) {
      const name = err.dbusName.split(".").at(-1) ?? err.dbusName;
      io.err(`ctl: ${escapeLine(name)}: ${escapeLine(err.text)}\n`);
      return EXIT_REFUSED;
    }
    if (err instanceof AdminUnreachableError) {
      io.err(
        `ctl: cannot reach the daemon at ${escapeLine(err.address || address)}: ${
          escapeLine(err.message)
        }\n` +
          `ctl: ${START_HINT}\n`,
      );
      return EXIT_UNREACHABLE;
    }
    io.err(`ctl: unexpected error: ${escapeLine(String(err))}\n`);
    return EXIT_REFUSED;
  } finally {
    (client as AdminClient | null)?.close();
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
