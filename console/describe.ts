/**
 * Turns RequestViews and HistoryEntries into display lines: every outside string is escaped here
 * (lib/sanitize.ts), our own labels are constants. Shared by the TUI (`render.ts`) and `ctl`.
 *
 * Outside content that spans several lines is shown behind a `| ` gutter, so nothing in a commit
 * message can pass for a label or a status line of the console.
 *
 * @module
 */

import { summarize as summarizeContent } from "../lib/payload.ts";
import { escapeLine, escapeMultiline } from "../lib/sanitize.ts";
import {
  type Header,
  type HistoryEntry,
  type Ident,
  type RequestView,
  type SecretDetails,
  SHORT_ID_LENGTH,
  type SignContent,
} from "../lib/protocol.ts";
import { type Line, pushAll, type Seg, seg, type Style } from "./text.ts";

/** Width of the label column in the detail view. */
export const LABEL_WIDTH = 14;
/** Hex characters of the digest shown as its short form. */
export const SHORT_DIGEST_LENGTH = 16;
const INDENT = "  ";
const GUTTER = "| ";

/** The short id of a request (first {@link SHORT_ID_LENGTH} characters), escaped. */
export function shortId(id: string): string {
  return escapeLine(String(id).slice(0, SHORT_ID_LENGTH));
}

/** The short form of a digest, escaped. */
export function shortDigest(digest: string): string {
  return escapeLine(String(digest).slice(0, SHORT_DIGEST_LENGTH));
}

/**
 * Time left until `expiresAt`, as `m:ss` (or `h:mm:ss`); `expired` when past.
 *
 * @param expiresAt ms since the epoch
 * @param now ms since the epoch
 */
export function formatCountdown(expiresAt: number, now: number): string {
  const ms = expiresAt - now;
  if (!Number.isFinite(ms)) return "?";
  if (ms <= 0) return "expired";
  // Nearest second: a 5-minute request seen a moment before the screen's clock ticks shows 5:00.
  const left = Math.round(ms / 1000);
  const h = Math.floor(left / 3600);
  const m = Math.floor((left % 3600) / 60);
  const s = String(left % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function pad2(n: number): string {
  return String(n).padStart(2, "0");
}

/** A local date-time `YYYY-MM-DD HH:MM:SS` for ms since the epoch. */
export function formatTime(ms: number): string {
  if (!Number.isFinite(ms)) return "?";
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad2(d.getMonth() + 1)}-${pad2(d.getDate())} ` +
    `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`;
}

/** A git identity's date in its own offset, e.g. `2023-11-14 23:13:20 +0200`. Escaped. */
export function formatIdentDate(time: number, tz: string): string {
  const m = /^([+-])(\d\d)(\d\d)$/.exec(String(tz));
  if (!m || !Number.isFinite(time)) {
    const utc = Number.isFinite(time) ? new Date(time * 1000).toISOString() : "?";
    return `${escapeLine(utc)} (offset ${escapeLine(String(tz))})`;
  }
  const offsetMin = (m[1] === "-" ? -1 : 1) * (Number(m[2]) * 60 + Number(m[3]));
  const d = new Date((time + offsetMin * 60) * 1000);
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ` +
    `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())} ${m[0]}`;
}

/** `Name <email>  date`, escaped; `(none)` for a missing identity. */
export function formatIdent(ident: Ident | null | undefined): string {
  if (!ident) return "(none)";
  return `${escapeLine(String(ident.name))} <${escapeLine(String(ident.email))}>  ` +
    formatIdentDate(ident.time, ident.tz);
}

/** One-line summary of a request for lists (commit subject, tag name...), escaped. */
export function summarize(view: RequestView): string {
  const sec = view.secret;
  if (sec) {
    const items = Array.isArray(sec.items) ? sec.items : [];
    const label = sec.label ?? items[0]?.label ?? "";
    const more = items.length > 1 ? ` and ${items.length - 1} more` : "";
    return escapeLine(`${sec.operation} "${label}"${more}`);
  }
  const c = view.sign?.content;
  if (!c) return escapeLine(view.message ?? "");
  try {
    return escapeLine(summarizeContent(c));
  } catch {
    return "(unknown content)";
  }
}

/** `uid 1000 pid 42`, for lists. */
export function formatCallerShort(view: RequestView): string {
  const c = view.caller;
  return `uid ${c?.uid ?? "?"}` + (c?.pid != null ? ` pid ${c.pid}` : "");
}

// ---- line builders --------------------------------------------------------------------------

function labelCell(label: string): string {
  return `${INDENT}${(label + ":").padEnd(LABEL_WIDTH - 1)} `;
}

/** A `Label: value` line; `value` must be escaped already. */
function field(label: string, value: string, style: Style = "plain"): Line {
  return {
    segs: [seg(labelCell(label), "label"), seg(value, style)],
    cont: [seg(" ".repeat(INDENT.length + LABEL_WIDTH))],
  };
}

/** A line with our own text. */
function text(t: string, style: Style = "plain"): Line {
  return { segs: [seg(t, style)], cont: [seg(INDENT)] };
}

function heading(t: string, style: Style = "heading"): Line {
  return { segs: [seg(t, style)] };
}

const BLANK: Line = { segs: [] };

/** Raw multi-line outside text behind the gutter; one Line per source line. */
function block(raw: string, style: Style = "plain"): Line[] {
  const gutter = [seg(INDENT + INDENT), seg(GUTTER, "dim")];
  return escapeMultiline(String(raw)).split("\n").map((l) => ({
    segs: [...gutter, seg(l, style)],
    cont: gutter,
  }));
}

/** A field whose raw value may hold newlines: one line when it has none, else a block. */
function multiField(label: string, raw: string): Line[] {
  const s = String(raw);
  if (!s.includes("\n")) return [field(label, escapeLine(s))];
  return [field(label, `(${s.split("\n").length} lines)`, "dim"), ...block(s)];
}

function headers(list: Header[] | undefined): Line[] {
  const out: Line[] = [];
  for (const h of list ?? []) {
    pushAll(out, multiField(`Header ${escapeLine(String(h.key))}`, h.value));
  }
  return out;
}

function fingerprint(fpr: string): string {
  const s = escapeLine(fpr);
  return /^[0-9A-Fa-f]{40}$/.test(fpr) ? s.replace(/(.{4})(?!$)/g, "$1 ") : s;
}

function isZeroOid(oid: string): boolean {
  return /^0+$/.test(oid);
}

function contentLines(c: SignContent, size: number): Line[] {
  const out: Line[] = [];
  const what = c.type === "commit"
    ? "COMMIT"
    : c.type === "tag"
    ? "TAG"
    : c.type === "push"
    ? "PUSH CERTIFICATE"
    : "PAYLOAD";
  out.push(
    heading(`${what} (parsed by the daemon from the exact ${size} bytes that will be signed)`),
  );
  switch (c.type) {
    case "commit": {
      out.push(field("Tree", escapeLine(String(c.tree))));
      const parents = Array.isArray(c.parents) ? c.parents : [];
      if (parents.length === 0) out.push(field("Parents", "none: root commit", "warn"));
      for (const [i, p] of parents.entries()) {
        out.push(field(parents.length > 1 ? `Parent ${i + 1}` : "Parent", escapeLine(String(p))));
      }
      if (parents.length > 1) {
        out.push(text(`${INDENT}(merge commit: ${parents.length} parents)`, "warn"));
      }
      out.push(field("Author", formatIdent(c.author)));
      out.push(field("Committer", formatIdent(c.committer)));
      out.push(
        c.encoding == null
          ? field("Encoding", "UTF-8 (default)")
          : field("Encoding", escapeLine(String(c.encoding)), "warn"),
      );
      pushAll(out, headers(c.extraHeaders));
      out.push(field("Subject", escapeLine(String(c.subject))));
      pushAll(out, bodyLines(c.body));
      break;
    }
    case "tag":
      out.push(field("Tag", escapeLine(String(c.tag))));
      out.push(field("Object", escapeLine(String(c.object))));
      out.push(field("Object type", escapeLine(String(c.objectType))));
      out.push(field("Tagger", formatIdent(c.tagger)));
      pushAll(out, headers(c.extraHeaders));
      out.push(field("Subject", escapeLine(String(c.subject))));
      pushAll(out, bodyLines(c.body));
      break;
    case "push": {
      out.push(field("Pusher", formatIdent(c.pusher)));
      out.push(field("Pushee", escapeLine(String(c.pushee))));
      out.push(field("Nonce", escapeLine(String(c.nonce))));
      out.push(field("Version", escapeLine(String(c.version))));
      pushAll(out, headers(c.extraHeaders));
      const updates = Array.isArray(c.updates) ? c.updates : [];
      out.push(field("Updates", `${updates.length}`));
      for (const u of updates) {
        const ref = escapeLine(String(u.ref));
        const what = isZeroOid(String(u.old))
          ? `create ${escapeLine(String(u.new))}`
          : isZeroOid(String(u.new))
          ? `DELETE (was ${escapeLine(String(u.old))})`
          : `${escapeLine(String(u.old))} -> ${escapeLine(String(u.new))}`;
        out.push({
          segs: [seg(INDENT + INDENT), seg(GUTTER, "dim"), seg(`${ref}: ${what}`)],
          cont: [seg(INDENT + INDENT), seg(GUTTER, "dim")],
        });
      }
      break;
    }
    default:
      out.push(
        text(
          `${INDENT}(unknown payload type ${escapeLine(String((c as { type: unknown }).type))})`,
          "warn",
        ),
      );
  }
  return out;
}

function bodyLines(body: string): Line[] {
  const s = String(body ?? "");
  if (s === "") return [field("Body", "(empty)", "dim")];
  // A newline ends a line (as git writes messages); only a body without one at its end gets a note.
  const ended = s.endsWith("\n");
  const text = ended ? s.slice(0, -1) : s;
  const n = text.split("\n").length;
  return [
    field(
      "Body",
      `${n} line${n === 1 ? "" : "s"}${ended ? "" : " (no newline at the end)"}:`,
      "dim",
    ),
    ...block(text),
  ];
}

function cmdline(args: string[] | null | undefined): Line[] {
  if (!args) return [field("Cmdline", "(not readable)", "dim")];
  if (args.length === 1 && /\s/.test(args[0])) {
    // What ps shows: the arguments joined by spaces (their boundaries are unknown).
    return [
      field("Cmdline", "as ps shows it (arguments joined by spaces):", "verified"),
      ...block(args[0], "verified"),
    ];
  }
  const simple = args.every((a) => a !== "" && !/[\s"'\\]/.test(a) && escapeLine(a) === a);
  if (simple) return [field("Cmdline", args.join(" "), "verified")];
  const out = [field("Cmdline", `${args.length} arguments:`, "verified")];
  for (const [i, a] of args.entries()) {
    out.push({
      segs: [
        seg(INDENT + INDENT),
        seg(GUTTER, "dim"),
        seg(`[${i}] `, "dim"),
        seg(a === "" ? "(empty)" : escapeLine(a), a === "" ? "dim" : "verified"),
      ],
      cont: [seg(INDENT + INDENT), seg(GUTTER, "dim")],
    });
  }
  return out;
}

const OPERATION_TITLES: Record<string, string> = {
  "read": "READ A SECRET",
  "create": "STORE A SECRET",
  "set-secret": "REPLACE A SECRET VALUE",
  "set-properties": "CHANGE A SECRET'S LABEL OR ATTRIBUTES",
  "delete": "DELETE A SECRET",
};

function attributeLines(label: string, attrs: Record<string, string> | undefined): Line[] {
  const entries = Object.entries(attrs ?? {});
  const out = [field(label, entries.length === 0 ? "(none)" : `${entries.length}:`)];
  for (const [k, v] of entries.sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0)) {
    out.push({
      segs: [
        seg(INDENT + INDENT),
        seg(GUTTER, "dim"),
        seg(`${escapeLine(String(k))} = ${escapeLine(String(v))}`),
      ],
      cont: [seg(INDENT + INDENT), seg(GUTTER, "dim")],
    });
  }
  return out;
}

function secretLines(sec: SecretDetails): Line[] {
  const out: Line[] = [];
  out.push(heading("SECRET STORE (as the daemon read it from the store)"));
  out.push(field("Operation", escapeLine(String(sec.operation)), "warn"));
  if (sec.collection) {
    out.push(
      field(
        "Collection",
        `${escapeLine(String(sec.collection.label))}  (${escapeLine(String(sec.collection.path))})`,
      ),
    );
  }
  if (sec.operation === "create") {
    out.push(field("New label", escapeLine(String(sec.label ?? ""))));
    pushAll(out, attributeLines("Attributes", sec.attributes));
    out.push(
      field(
        "Replace",
        sec.replace
          ? (sec.items.length > 0
            ? `yes: overwrites ${sec.items.length} existing item(s) listed below`
            : "yes, but no item has these attributes: a new item")
          : "no: a new item",
        sec.replace && sec.items.length > 0 ? "warn" : "plain",
      ),
    );
  }
  if (sec.secretSize != null) {
    out.push(
      field(
        "Value",
        `${sec.secretSize} bytes, ${escapeLine(String(sec.contentType ?? ""))} (never shown)`,
      ),
    );
  }
  if (sec.operation === "set-properties") {
    if (sec.label !== undefined) out.push(field("New label", escapeLine(String(sec.label))));
    if (sec.attributes !== undefined) pushAll(out, attributeLines("New attrs", sec.attributes));
  }
  const items = Array.isArray(sec.items) ? sec.items : [];
  for (const [i, item] of items.entries()) {
    out.push(BLANK);
    out.push(heading(items.length > 1 ? `ITEM ${i + 1} of ${items.length}` : "ITEM"));
    out.push(field("Label", escapeLine(String(item.label))));
    out.push(field("Path", escapeLine(String(item.path))));
    pushAll(out, attributeLines("Attributes", item.attributes));
    out.push(field("Created", formatTime(Number(item.created) * 1000)));
    out.push(field("Modified", formatTime(Number(item.modified) * 1000)));
  }
  return out;
}

/**
 * The program a secret request names: as the caller reports it, then as far as the daemon could
 * check it with ps. A consistent report only says that such a process exists; it does not show
 * that this process (or the desktop agent) sent the request: the caller did.
 */
function clientLines(sec: SecretDetails, caller: RequestView["caller"] | undefined): Line[] {
  const out: Line[] = [];
  const r = sec.client ?? {};
  const k = sec.clientCheck ?? {};
  out.push(
    heading(
      "PROGRAM ASKING -- REPORTED BY THE CALLER (unverified: any process of the desktop user " +
        "can send any report)",
      "reported",
    ),
  );
  const opt = (label: string, v: unknown) =>
    field(
      label,
      v != null ? escapeLine(String(v)) : "(not reported)",
      v != null ? "reported" : "dim",
    );
  out.push(opt("Exe", r.exe));
  if (Array.isArray(r.cmdline)) {
    out.push(field("Cmdline", `${r.cmdline.length} arguments:`, "reported"));
    for (const [i, a] of r.cmdline.entries()) {
      out.push({
        segs: [
          seg(INDENT + INDENT),
          seg(GUTTER, "dim"),
          seg(`[${i}] `, "dim"),
          seg(a === "" ? "(empty)" : escapeLine(String(a)), a === "" ? "dim" : "reported"),
        ],
        cont: [seg(INDENT + INDENT), seg(GUTTER, "dim")],
      });
    }
  } else out.push(opt("Cmdline", null));
  out.push(opt("Cwd", r.cwd));
  out.push(opt("Pid", r.pid));
  out.push(opt("Uid", r.uid));
  out.push(opt("Bus name", r.busName));
  out.push(sentBy(r.pid, caller?.pid));
  out.push(BLANK);
  out.push(
    heading(
      "PROGRAM ASKING -- CHECKED by the daemon with ps (consistency only, not who sent it)",
      "verified",
    ),
  );
  if (k.pid == null) out.push(field("Pid", "none reported: nothing to check", "warn"));
  else if (k.uid == null) {
    out.push(field("Pid", `${k.pid}: NO SUCH PROCESS (it exited, or the pid is made up)`, "error"));
  } else {
    out.push(field("Pid", String(k.pid), "verified"));
    out.push(field("Runs as uid", String(k.uid), "verified"));
    pushAll(out, cmdline(k.cmdline));
  }
  out.push(
    k.consistent
      ? field(
        "Consistent",
        "yes: the reported pid runs as the desktop user with the reported command line",
        "verified",
      )
      : field("Consistent", "NO: the report does not match what the daemon sees", "error"),
  );
  return out;
}

/** Whether the reported program sent the request itself or the caller relays its report. */
function sentBy(reportedPid: unknown, callerPid: number | null | undefined): Line {
  if (callerPid == null) return field("Sent by", "the caller (its pid is unknown)", "dim");
  if (reportedPid == null) {
    return field("Sent by", `the caller, pid ${callerPid}, naming no pid`, "warn");
  }
  return reportedPid === callerPid
    ? field("Sent by", `this program itself: the caller has the same pid ${callerPid}`)
    : field(
      "Sent by",
      `another process: the caller, pid ${callerPid}, reports this program (pid ${
        escapeLine(String(reportedPid))
      })`,
    );
}

/**
 * The full description of a request, as logical lines (to be wrapped by the caller). Nothing is
 * left out: every field of the view appears.
 *
 * @param view the request (raw, from the daemon)
 * @param now ms since the epoch, for a countdown in the State line; null for none (the TUI shows
 *   the countdown in its header, so the lines stay the same from second to second)
 */
export function describeRequest(view: RequestView, now: number | null): Line[] {
  const out: Line[] = [];
  const kind = escapeLine(String(view.kind));
  const title = view.kind === "sign.commit"
    ? "SIGN A COMMIT"
    : view.kind === "sign.tag"
    ? "SIGN A TAG"
    : view.kind === "sign.push"
    ? "SIGN A PUSH CERTIFICATE"
    : view.secret
    ? (OPERATION_TITLES[String(view.secret.operation)] ?? "SECRET STORE OPERATION")
    : "REQUEST";
  out.push(heading(`${title} (${kind})`));
  out.push(field("Id", escapeLine(String(view.id))));
  const state = escapeLine(String(view.state));
  out.push(
    view.state === "pending"
      ? field(
        "State",
        now === null
          ? `pending, expires at ${formatTime(view.expiresAt)}`
          : `pending, expires in ${formatCountdown(view.expiresAt, now)} (at ${
            formatTime(view.expiresAt)
          })`,
      )
      : field(
        "State",
        state + (view.decidedAt != null ? ` (at ${formatTime(view.decidedAt)})` : ""),
        "warn",
      ),
  );
  out.push(field("Created", formatTime(view.createdAt)));
  out.push(field("Digest", `${shortDigest(view.digest)} (sha256 of what is shown)`));
  if (view.message != null) pushAll(out, multiField("Message", view.message));
  out.push(BLANK);

  const sign = view.sign;
  if (sign) {
    out.push(heading("KEY"));
    out.push(field("Key spec", escapeLine(String(sign.keySpec))));
    if (sign.keyFingerprint != null) {
      out.push(field("Fingerprint", fingerprint(String(sign.keyFingerprint)), "verified"));
      out.push(
        field("Key uid", sign.keyUid != null ? escapeLine(String(sign.keyUid)) : "(unknown)"),
      );
    } else {
      out.push(field("Fingerprint", "NOT RESOLVED", "error"));
    }
    if (sign.keyError != null) {
      out.push(field("Key error", escapeLine(String(sign.keyError)), "error"));
    }
    out.push(BLANK);
    pushAll(out, contentLines(sign.content, sign.payloadSize));
    out.push(BLANK);
  } else if (view.secret) {
    pushAll(out, secretLines(view.secret));
    out.push(BLANK);
  } else {
    out.push(text(`No further details for ${kind} requests.`, "dim"));
    out.push(BLANK);
  }

  const c = view.caller;
  out.push(
    heading(
      "CALLER -- VERIFIED: the connection that sent the request (uid, pid from the bus; " +
        "command line from ps)",
      "verified",
    ),
  );
  out.push(field("Uid", String(c?.uid ?? "?"), "verified"));
  out.push(
    field("Pid", c?.pid != null ? String(c.pid) : "(unknown)", c?.pid != null ? "verified" : "dim"),
  );
  out.push(
    field(
      "Exe",
      c?.exe != null ? escapeLine(String(c.exe)) : "(not readable)",
      c?.exe != null ? "verified" : "dim",
    ),
  );
  pushAll(out, cmdline(c?.cmdline));
  out.push(field("Bus name", escapeLine(String(c?.busName ?? "?")), "verified"));
  if (view.secret) {
    out.push(
      text(
        "Normally the desktop agent, relaying for the program below; the daemon cannot tell " +
          "whether it is. Its report is only checked against ps.",
        "dim",
      ),
    );
    out.push(BLANK);
    pushAll(out, clientLines(view.secret, c));
  }

  if (sign) {
    const r = sign.reported ?? {};
    out.push(BLANK);
    out.push(
      heading(
        "REPORTED BY THE SIGNER (unverified: the desktop side can fake all of this)",
        "reported",
      ),
    );
    out.push(
      field(
        "Repo",
        r.repo != null ? escapeLine(String(r.repo)) : "(not reported)",
        r.repo != null ? "reported" : "dim",
      ),
    );
    out.push(
      field(
        "Branch",
        r.branch != null ? escapeLine(String(r.branch)) : "(not reported)",
        r.branch != null ? "reported" : "dim",
      ),
    );
    if (r.rebase != null) out.push(field("Rebase", escapeLine(String(r.rebase)), "reported"));
    const files = Array.isArray(r.files) ? r.files : null;
    if (files) {
      out.push(
        field(
          "Files",
          `${files.length} changed${r.filesTruncated ? " (LIST CUT at the signer's limit)" : ""}`,
          "reported",
        ),
      );
      for (const f of files) {
        out.push({
          segs: [
            seg(INDENT + INDENT),
            seg(GUTTER, "dim"),
            seg(`${escapeLine(String(f.status))} ${escapeLine(String(f.path))}`, "reported"),
          ],
          cont: [seg(INDENT + INDENT), seg(GUTTER, "dim")],
        });
      }
    } else {
      out.push(field("Files", "(not reported)", "dim"));
    }
    if (r.filesError != null) {
      out.push(field("Files error", escapeLine(String(r.filesError)), "reported"));
    }
  }
  return out;
}

/**
 * One history entry as a single escaped line: time, short id, kind, event, caller, summary and
 * message.
 */
export function describeHistoryEntry(e: HistoryEntry): Seg[] {
  const event = escapeLine(String(e.event));
  const style: Style = e.event === "approved" || e.event === "done"
    ? "ok"
    : e.event === "denied" || e.event === "failed"
    ? "error"
    : e.event === "created"
    ? "plain"
    : "warn";
  const caller = `uid ${e.callerUid ?? "?"}${e.callerPid != null ? ` pid ${e.callerPid}` : ""}`;
  const segs = [
    seg(`${formatTime(e.at)}  ${shortId(e.id)}  ${escapeLine(String(e.kind)).padEnd(12)} `),
    seg(event.padEnd(9), style),
    seg(` ${caller.padEnd(20)} ${escapeLine(String(e.summary ?? ""))}`),
  ];
  if (e.message != null && e.message !== "") {
    segs.push(seg(`  (${escapeLine(String(e.message))})`, "dim"));
  }
  if (e.rule != null) segs.push(seg(`  [rule ${escapeLine(String(e.rule))}]`, "warn"));
  return segs;
}
