/**
 * The console's screen model: a pure function from {@link UiState} and a terminal size to the
 * rows to draw. Outside strings are escaped by `describe.ts` (or here, for status texts); the only
 * escape sequences in the output are our own SGR styles added by `toAnsi`.
 *
 * Layout: row 0 title bar; row 1 the console phrase; then the screen's body; the second-last row
 * is the status line (or a confirm question); the last row lists the keys (and the scroll
 * position).
 *
 * The store passphrase prompt (screen `unlock`) is drawn as a screen of its own that names no
 * request and shows no approval code; what is typed is never shown, only a fixed mask once
 * anything is typed (never the length).
 *
 * @module
 */

import { escapeLine } from "../lib/sanitize.ts";
import type { HistoryEntry, RequestView } from "../lib/protocol.ts";
import { describeHistoryEntry, describeRequest, formatCountdown, shortId } from "./describe.ts";
import { cell, type Line, padRow, pushAll, type Seg, seg, toAnsi, wrapLine } from "./text.ts";
import {
  DENY_RULE_CHOICES,
  grantChoices,
  promptAvailable,
  promptCreates,
  storeBlocks,
  storeLockedHint,
  type UiState,
} from "./state.ts";
import { approvalCode } from "./approval_code.ts";

/** Terminal size in character cells. */
export interface Size {
  cols: number;
  rows: number;
}

/** Smallest terminal the console draws in; smaller ones get a "too small" notice. */
export const MIN_SIZE: Size = { cols: 30, rows: 9 };

/** Hint shown when the daemon cannot be reached. */
export const START_HINT = "is the daemon running? start it with `deno task daemon`";

/** Rows available for scrolled content on `screen` (list rows, detail rows, history entries). */
export function pageSize(size: Size, _screen: UiState["screen"]): number {
  // title + phrase + (column header | request header) + status + keys
  return Math.max(1, size.rows - 5);
}

/** Wrapped detail rows by view object and width: a 10 000-line body is wrapped once. */
const detailCache = new WeakMap<RequestView, { cols: number; rows: Seg[][] }>();

/**
 * The detail view of `view` wrapped to `cols` columns: every field, every body line, nothing cut.
 * The rows do not depend on the time (the countdown is in the header row), so they are computed
 * once per view object and width.
 *
 * @param view the request
 * @param cols terminal width
 */
export function detailRows(view: RequestView, cols: number): Seg[][] {
  const hit = detailCache.get(view);
  if (hit && hit.cols === cols) return hit.rows;
  let lines;
  try {
    lines = describeRequest(view, null);
  } catch (err) {
    lines = [{ segs: [seg(`cannot show this request: ${escapeLine(String(err))}`, "error")] }];
  }
  const rows: Seg[][] = [];
  for (const l of lines) pushAll(rows, wrapLine(l, Math.max(1, cols)));
  detailCache.set(view, { cols, rows });
  return rows;
}

function titleBar(state: UiState, cols: number): Seg[] {
  const where = state.screen === "detail"
    ? "request"
    : state.screen === "history"
    ? "history"
    : state.screen === "rules"
    ? "grants and rules"
    : state.screen === "unlock"
    ? (promptCreates(state) ? "create the secret store" : "unlock the secret store")
    : "pending requests";
  const conn = state.conn.status === "connected"
    ? `${state.requests.length} pending`
    : state.conn.status === "connecting"
    ? "connecting..."
    : "DAEMON UNREACHABLE";
  const d = new Date(state.now);
  const clock = [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) =>
    String(n).padStart(2, "0")
  ).join(":");
  // (The prompt's own title says that the store is locked.)
  const store = state.store === null || state.conn.status !== "connected" ||
      state.screen === "unlock"
    ? ""
    : state.store.consoleLock
    ? " | LOCKED ON THE CONSOLE"
    : state.store.creates
    ? " | NO STORE YET"
    : state.store.state === "locked"
    ? " | STORE LOCKED"
    : state.store.state === "unavailable"
    ? " | STORE UNAVAILABLE"
    : "";
  // The VT lock comes first: on an 80-column VT the end of the bar may be cut.
  const vt = state.vt.status === "held"
    ? ` | VT ${state.vt.vt} held`
    : state.vt.status === "off"
    ? " | NO VT LOCK"
    : "";
  const left = ` secrets-dispatcher${vt} | ${where} | ${conn}${store}`;
  const gap = Math.max(1, cols - left.length - clock.length - 1);
  return padRow(
    [seg(
      left + " ".repeat(gap) + clock + " ",
      state.conn.status === "unreachable" || store !== "" ? "error" : "title",
    )],
    cols,
    "title",
  );
}

/**
 * The per-install phrase (`phrase.ts`), on every screen: the user recognises the real console by
 * it. Without one, a warning in its place.
 */
function phraseRow(state: UiState, cols: number): Seg[] {
  const p = state.phrase;
  if (p.phrase === null) {
    return padRow([
      seg(" NO CONSOLE PHRASE ", "error"),
      seg(` ${escapeLine(p.warning ?? "")}`, "error"),
    ], cols);
  }
  const segs = [seg(" phrase: ", "dim"), seg(escapeLine(p.phrase), "phrase")];
  if (p.warning !== null) segs.push(seg(`  ${escapeLine(p.warning)}`, "warn"));
  else segs.push(seg("  (approvals only ever appear under your phrase)", "dim"));
  return padRow(segs, cols);
}

function unreachableText(state: UiState): string {
  return `daemon unreachable at ${escapeLine(state.conn.address)}` +
    (state.conn.error ? `: ${escapeLine(state.conn.error)}` : "");
}

function statusRow(state: UiState, cols: number): Seg[] {
  if (state.confirm) {
    const c = state.confirm;
    const question = c.kind === "denyAll"
      ? `DENY ALL ${c.ids.length} PENDING REQUEST${c.ids.length === 1 ? "" : "S"}? `
      : c.kind === "lock"
      ? "LOCK: end every pending request and refuse secret requests until unlocked? "
      : "UNLOCK: accept secret requests again? ";
    return padRow([
      seg(question, "warn"),
      seg("[y]", "key"),
      seg(" yes  ", "warn"),
      seg("[any other key]", "key"),
      seg(" no", "warn"),
    ], cols);
  }
  if (state.conn.status === "unreachable" && state.screen !== "list") {
    return padRow([seg(unreachableText(state), "error")], cols);
  }
  if (state.status) return padRow([seg(escapeLine(state.status.text), state.status.tone)], cols);
  if (state.vt.status === "off" && state.vt.note !== null) {
    return padRow([seg(escapeLine(state.vt.note), "warn")], cols);
  }
  return padRow([], cols);
}

function keysRow(parts: [string, string][], prefix: Seg[], cols: number): Seg[] {
  const segs: Seg[] = [...prefix];
  for (const [k, what] of parts) {
    segs.push(seg(` ${k}`, "key"), seg(` ${what} `, "dim"));
  }
  return padRow(segs, cols);
}

const COL = { mark: 2, id: 10, kind: 13, caller: 19, expires: 9 };

/** The row above the list while the store is locked: what it means and what opens it. */
function storeBanner(state: UiState): Seg[] | null {
  if (state.conn.status !== "connected" || state.store?.state !== "locked") return null;
  if (state.store.consoleLock) {
    return [
      seg(" LOCKED ON THE CONSOLE ", "error"),
      seg(" every request is refused until U lifts the lock", "warn"),
    ];
  }
  if (state.store.creates) {
    return [
      seg(" NO SECRET STORE YET ", "error"),
      seg(
        ` secrets can be neither stored nor read until it is created; ${storeLockedHint(state)}`,
        "warn",
      ),
    ];
  }
  return [
    seg(" STORE LOCKED ", "error"),
    seg(
      ` secret requests cannot be approved until it is unlocked; ${storeLockedHint(state)}`,
      "warn",
    ),
  ];
}

function listBody(state: UiState, cols: number, height: number): Seg[][] {
  const rows: Seg[][] = [];
  const banner = storeBanner(state);
  if (banner) {
    for (const r of wrapLine({ segs: banner, cont: [seg("  ")] }, cols)) rows.push(padRow(r, cols));
  }
  const header = " ".repeat(COL.mark) + cell("ID", COL.id) + cell("KIND", COL.kind) +
    cell("CALLER", COL.caller) +
    cell("EXPIRES", COL.expires) + "SUMMARY";
  rows.push(padRow([seg(header, "label")], cols));
  const body = height - rows.length;
  if (!state.loaded) {
    if (state.conn.status === "unreachable") {
      for (
        const r of wrapLine(
          { segs: [seg(unreachableText(state), "error")], cont: [seg("  ")] },
          cols,
        )
      ) {
        rows.push(padRow(r, cols));
      }
      rows.push(padRow([seg(`retrying every 2 s; ${START_HINT}`, "warn")], cols));
    } else {
      rows.push(
        padRow(
          [seg(`connecting to the daemon at ${escapeLine(state.conn.address)}...`, "dim")],
          cols,
        ),
      );
    }
  } else if (state.requests.length === 0) {
    rows.push(padRow([seg("no pending requests", "dim")], cols));
  } else {
    const n = state.requests.length;
    const idx = Math.max(0, state.requests.findIndex((r) => r.id === state.selectedId));
    const overflow = n > body;
    const visible = overflow ? Math.max(1, body - 1) : body;
    const offset = overflow ? Math.min(Math.max(0, idx - visible + 1), n - visible) : 0;
    for (const r of state.requests.slice(offset, offset + visible)) {
      const selected = r.id === state.selectedId;
      const countdown = formatCountdown(r.expiresAt, state.now);
      const fixed = (selected ? "> " : "  ") + cell(shortId(r.id), COL.id) +
        cell(escapeLine(String(r.kind)), COL.kind) +
        cell(`uid ${r.callerUid}${r.callerPid !== null ? ` pid ${r.callerPid}` : ""}`, COL.caller) +
        cell(countdown, COL.expires);
      const style = selected ? "selected" : "plain";
      const segs = [seg(fixed, style)];
      if (storeBlocks(state, r.kind)) segs.push(seg("STORE LOCKED", "error"), seg(" ", style));
      segs.push(seg(escapeLine(r.summary), style));
      rows.push(padRow(segs, cols, style));
    }
    if (overflow) {
      rows.push(
        padRow([
          seg(
            `(requests ${offset + 1}-${offset + visible} of ${n}; more ${
              offset > 0 ? "above" : ""
            }${offset > 0 && offset + visible < n ? " and " : ""}${
              offset + visible < n ? "below" : ""
            })`,
            "dim",
          ),
        ], cols),
      );
    }
  }
  return rows;
}

function rulesBody(state: UiState, cols: number, height: number): Seg[][] {
  const r = state.rules;
  const rows: Seg[][] = [
    padRow([
      seg("GRANTS AND DENY RULES (made here or with ctl; a daemon restart forgets them)", "label"),
    ], cols),
  ];
  if (r.error !== null) {
    rows.push(padRow([seg(`cannot load them: ${escapeLine(r.error)}`, "error")], cols));
  }
  if (r.list.length === 0) {
    rows.push(padRow([seg(r.loading ? "loading..." : "none", "dim")], cols));
    return rows;
  }
  for (const [i, rule] of r.list.entries()) {
    const selected = i === r.selected;
    const until = rule.expiresAt === null
      ? "until revoked"
      : `expires in ${formatCountdown(rule.expiresAt, state.now)}`;
    const left = rule.remaining !== null ? `, ${rule.remaining} left` : "";
    const line = {
      segs: [
        seg(`${selected ? "> " : "  "}${escapeLine(rule.id)} `, selected ? "selected" : "plain"),
        seg(escapeLine(rule.type), rule.type === "deny" ? "error" : "warn"),
        seg(` ${escapeLine(rule.description)} (${until}${left}, used ${rule.uses})`),
      ],
      cont: [seg("    ")],
    };
    for (const row of wrapLine(line, cols)) {
      if (rows.length >= height) break;
      rows.push(padRow(row, cols));
    }
  }
  return rows;
}

function detailHeader(state: UiState, cols: number): Seg[] {
  const d = state.detail!;
  const s = d.summary;
  const v = d.view;
  const segs: Seg[] = [seg(`REQUEST ${shortId(s.id)} ${escapeLine(String(s.kind))} `, "heading")];
  if (d.gone !== null) segs.push(seg(` NO LONGER PENDING: ${escapeLine(d.gone)} `, "error"));
  else if (d.changed) segs.push(seg(" CHANGED SINCE OPENED: go back and reopen ", "error"));
  else {
    segs.push(seg(` expires in ${formatCountdown(s.expiresAt, state.now)} `, "warn"));
    if (storeBlocks(state, s.kind)) segs.push(seg(" STORE LOCKED: not approvable ", "error"));
    else if (v !== null) {
      const code = approvalCode(v.id, v.digest);
      segs.push(seg(" approve: type "), seg([...code].join(" "), "key"));
      if (d.typed !== "") segs.push(seg(` (typed ${[...d.typed].join(" ")})`, "ok"));
    }
  }
  segs.push(seg(` ${escapeLine(s.summary)}`));
  return padRow(segs, cols);
}

/** History entries wrapped to `cols` columns (one entry may take several rows). */
export function historyRows(entries: HistoryEntry[], cols: number): Seg[][] {
  return entries.flatMap((e) =>
    wrapLine({ segs: describeHistoryEntry(e), cont: [seg(" ".repeat(21))] }, cols)
  );
}

function historyBody(state: UiState, cols: number, height: number): { rows: Seg[][]; pos: string } {
  const h = state.history;
  const rows: Seg[][] = [
    padRow([
      seg(
        "TIME                 ID        KIND         EVENT     CALLER               SUMMARY",
        "label",
      ),
    ], cols),
  ];
  const body = height - 1;
  if (h.error !== null) {
    rows.push(padRow([seg(`cannot load the history: ${escapeLine(h.error)}`, "error")], cols));
  }
  if (h.entries.length === 0) {
    rows.push(padRow([seg(h.loading ? "loading..." : "no history", "dim")], cols));
    return { rows, pos: "" };
  }
  const all = historyRows(h.entries, cols);
  const page = body - rows.length + 1;
  const max = Math.max(0, all.length - page);
  const start = Math.min(h.scroll ?? max, max);
  const shown = all.slice(start, start + page);
  for (const r of shown) rows.push(padRow(r, cols));
  const end = start + shown.length;
  return {
    rows,
    pos: `lines ${start + 1}-${end} of ${all.length}${end < all.length ? " (more below)" : ""}`,
  };
}

/** Shown in place of the passphrase once anything is typed: the same whatever the length. */
export const PASSPHRASE_MASK = "********";

/** The passphrase field: busy, the fixed mask, or nothing typed. */
function maskSeg(typed: boolean, busy: boolean, busyText: string): Seg {
  return busy
    ? seg(busyText, "dim")
    : typed
    ? seg(PASSPHRASE_MASK, "key")
    : seg("(nothing typed)", "dim");
}

/** The store's own message on the passphrase screens (escaped: it comes from the backend). */
function storeLine(state: UiState): Line {
  return {
    segs: [seg("store: ", "label"), seg(escapeLine(state.store?.message ?? ""))],
    cont: [seg("       ")],
  };
}

/** The prompt's lines when it creates the store: a new passphrase, typed twice. */
function createLines(state: UiState): { segs: Seg[]; cont?: Seg[] }[] {
  const u = state.unlock;
  const first = u.step === "first";
  return [
    { segs: [seg(" CREATE THE SECRET STORE ", "heading")] },
    {
      segs: [seg(
        "The secret store has no keyring yet: no secret can be stored or read until it is created.",
        "warn",
      )],
    },
    storeLine(state),
    { segs: [] },
    {
      segs: [seg(
        "Create the secret store: choose a passphrase, press Enter, then type it again and " +
          "press Enter. An empty passphrase is refused.",
      )],
    },
    {
      segs: [seg(
        "Choose your login password if logging in should unlock the store. Nothing is shown " +
          "while you type.",
      )],
    },
    {
      segs: [seg(
        "This creates the store only: it approves no request. Requests are approved on their " +
          "own screen, with their approval code.",
        "dim",
      )],
    },
    { segs: [] },
    {
      segs: [
        seg("  new passphrase: ", "label"),
        first ? maskSeg(u.typed, false, "") : seg("(typed)", "dim"),
      ],
    },
    {
      segs: [
        seg("  type it again:  ", "label"),
        first ? seg("(after Enter)", "dim") : maskSeg(u.typed, u.busy, "(creating...)"),
      ],
    },
    { segs: [] },
  ];
}

/**
 * The store passphrase prompt: why it is there, the (never shown) passphrase, the outcome of the
 * last attempt, and what waits meanwhile. Names no request and shows no approval code.
 */
function unlockBody(state: UiState, cols: number, height: number): Seg[][] {
  const u = state.unlock;
  const lines: { segs: Seg[]; cont?: Seg[] }[] = promptCreates(state) ? createLines(state) : [
    { segs: [seg(" UNLOCK THE SECRET STORE ", "heading")] },
    {
      segs: [seg(
        "The secret store is locked: no secret can be read or written until it is unlocked.",
        "warn",
      )],
    },
    storeLine(state),
    { segs: [] },
    {
      segs: [seg(
        "Type the store passphrase (its keyring password, usually your login password), then Enter.",
      )],
    },
    { segs: [seg("Nothing is shown while you type.")] },
    {
      segs: [seg(
        "This unlocks the store only: it approves no request. Requests are approved on their " +
          "own screen, with their approval code.",
        "dim",
      )],
    },
    { segs: [] },
    {
      segs: [
        seg("  store passphrase: ", "label"),
        u.busy
          ? seg("(unlocking...)", "dim")
          : u.typed
          ? seg(PASSPHRASE_MASK, "key")
          : seg("(nothing typed)", "dim"),
      ],
    },
    { segs: [] },
  ];
  if (u.error !== null) {
    lines.push({ segs: [seg(escapeLine(u.error), "error")], cont: [seg("  ")] });
  }
  const n = state.requests.length;
  if (n > 0) {
    const secrets = state.requests.filter((r) => r.kind.startsWith("secret.")).length;
    lines.push({
      segs: [seg(
        `${n} request${n === 1 ? "" : "s"} pending` +
          (secrets > 0 ? ` (${secrets} for secrets: approvable once the store is unlocked)` : "") +
          "; Esc with nothing typed shows them",
        "warn",
      )],
    });
  }
  const rows: Seg[][] = [];
  for (const l of lines) {
    for (const r of wrapLine({ segs: l.segs, cont: l.cont ?? [] }, cols)) {
      if (rows.length >= height) return rows;
      rows.push(padRow(r, cols));
    }
  }
  return rows;
}

/**
 * The screen as rows of styled segments (exactly `size.rows` rows, each exactly `size.cols`
 * columns wide). Exposed for tests; {@link render} adds the SGR codes.
 */
export function renderSegs(state: UiState, size: Size): Seg[][] {
  const { cols, rows } = size;
  if (cols < MIN_SIZE.cols || rows < MIN_SIZE.rows) {
    const out = [
      padRow(
        [seg(`terminal too small (need ${MIN_SIZE.cols}x${MIN_SIZE.rows})`, "warn")],
        Math.max(0, cols),
      ),
    ];
    while (out.length < rows) out.push(padRow([], Math.max(0, cols)));
    return out.slice(0, Math.max(0, rows));
  }
  const out: Seg[][] = [titleBar(state, cols), phraseRow(state, cols)];
  const bodyHeight = rows - 4; // between the phrase and the status line
  let keys: Seg[];
  if (state.screen === "detail" && state.detail) {
    out.push(detailHeader(state, cols));
    // What a decision also does, in its own row so that it is never cut off.
    const d = state.detail;
    const extras: Seg[] = [];
    if (storeBlocks(state, d.summary.kind)) {
      extras.push(
        seg(
          " THE SECRET STORE IS LOCKED: this request cannot be approved until it is unlocked; " +
            `${storeLockedHint(state, "detail")} `,
          "error",
        ),
      );
    }
    const grant = grantChoices(d.summary.kind)[d.grant];
    if (d.grant > 0 && grant) extras.push(seg(` APPROVING ALSO GRANTS: ${grant.label} `, "warn"));
    if (d.rule > 0) {
      extras.push(seg(` DENYING ALSO MAKES A RULE: ${DENY_RULE_CHOICES[d.rule].label} `, "error"));
    }
    const extraRows = extras.length
      ? wrapLine({ segs: extras }, cols).map((r) => padRow(r, cols))
      : [];
    pushAll(out, extraRows);
    const view = state.detail.view;
    const all = view !== null ? detailRows(view, cols) : [[
      state.detail.error !== null
        ? seg(`cannot load the request: ${escapeLine(state.detail.error)}`, "error")
        : seg("loading the request from the daemon...", "dim"),
    ]];
    const page = Math.max(1, bodyHeight - 1 - extraRows.length);
    const start = Math.min(state.detail.scroll, Math.max(0, all.length - page));
    const shown = all.slice(start, start + page);
    for (const r of shown) out.push(padRow(r, cols));
    while (out.length < rows - 2) out.push(padRow([], cols));
    const end = start + shown.length;
    const pos = `lines ${start + 1}-${end} of ${all.length}${
      end < all.length ? " (more below)" : " (end)"
    }`;
    keys = keysRow(
      [
        ["arrows/PgUp/PgDn", "scroll"],
        ...(view !== null && !storeBlocks(state, view.kind)
          ? [[approvalCode(view.id, view.digest), "approve"] as [string, string]]
          : []),
        ["d", "deny"],
        ["+", grantChoices(state.detail.summary.kind)[state.detail.grant]?.label ?? "grant"],
        ["r", DENY_RULE_CHOICES[state.detail.rule].label],
        ["Esc", "back"],
      ],
      [seg(pos, end < all.length ? "warn" : "dim"), seg(" |", "dim")],
      cols,
    );
  } else if (state.screen === "rules") {
    pushAll(out, rulesBody(state, cols, bodyHeight));
    while (out.length < rows - 2) out.push(padRow([], cols));
    keys = keysRow(
      [["Up/Down", "select"], ["x", "revoke"], ["r", "reload"], ["Esc", "back"]],
      [],
      cols,
    );
  } else if (state.screen === "history") {
    const { rows: body, pos } = historyBody(state, cols, bodyHeight);
    pushAll(out, body);
    while (out.length < rows - 2) out.push(padRow([], cols));
    keys = keysRow(
      [["arrows/PgUp/PgDn", "scroll"], ["r", "reload"], ["Esc", "back"]],
      pos ? [seg(pos, "dim"), seg(" |", "dim")] : [],
      cols,
    );
  } else if (state.screen === "unlock") {
    pushAll(out, unlockBody(state, cols, bodyHeight));
    while (out.length < rows - 2) out.push(padRow([], cols));
    const creating = promptCreates(state);
    const confirm = state.unlock.step === "confirm";
    keys = keysRow(
      [
        ["Enter", creating ? (confirm ? "create" : "next") : "unlock"],
        ["Backspace", "erase"],
        ["Esc/Ctrl-U", "clear"],
        [
          "Esc",
          state.unlock.typed ? "clear" : confirm ? "start over" : "back to the list",
        ],
      ],
      [],
      cols,
    );
  } else {
    pushAll(out, listBody(state, cols, bodyHeight));
    while (out.length < rows - 2) out.push(padRow([], cols));
    keys = keysRow(
      [
        ...(promptAvailable(state)
          ? [["p", promptCreates(state) ? "create the store" : "unlock the store"] as [
            string,
            string,
          ]]
          : []),
        ["Up/Down", "select"],
        ["Enter", "open"],
        ["d", "deny"],
        ["D", "deny all"],
        ["h", "history"],
        ["R", "rules"],
        ["L/U", "lock/unlock"],
        ["r", "refresh"],
        ["q", "quit"],
      ],
      [],
      cols,
    );
  }
  out.length = Math.min(out.length, rows - 2);
  out.push(statusRow(state, cols), keys);
  return out;
}

/**
 * The screen as terminal lines: exactly `size.rows` strings, each `size.cols` columns wide, made
 * of escaped text and our own SGR styling.
 *
 * @param state what to show
 * @param size terminal size
 * @param color false for plain text without SGR
 */
export function render(state: UiState, size: Size, color = true): string[] {
  return renderSegs(state, size).map((r) => toAnsi(r, color));
}
