/**
 * The console's state machine: a pure reducer from (state, event) to (state, effects). Keys,
 * daemon replies, signals and clock ticks are events; the effects (approve, deny, refresh...) are
 * carried out by `main.ts`, which feeds their outcome back as events. No I/O here.
 *
 * Key bindings (shown on screen by `render.ts`):
 *
 * | screen | keys |
 * |---|---|
 * | list | `Up`/`k`, `Down`/`j`, `PgUp`, `PgDn`, `Home`/`g`, `End`/`G` select; `Enter`/`Space`/`Right`/`l` open; `d` deny the selected request; `h` history; `r` refresh; `q` quit |
 * | detail | `Up`/`k`, `Down`/`j`, `PgUp`/`b`, `PgDn`/`Space`, `Home`/`g`, `End`/`G` scroll; `A` (shift-a) then `y` approve; `d` deny; `Esc`/`q`/`Left`/`Backspace` back |
 * | approve prompt | `y` approve what is shown; any other key cancels |
 * | history | scroll keys as in detail; `r` reload; `Esc`/`q`/`h`/`Left` back |
 *
 * `Ctrl-C` quits from anywhere. Decision keys (`A`, `d` in the detail view, `y`) typed within
 * {@link ARM_MS} of the screen showing new content are discarded, so type-ahead cannot approve
 * something the user has not seen.
 *
 * @module
 */

import type {
  DenyRuleOptions,
  GrantOptions,
  HistoryEntry,
  RequestState,
  RequestSummary,
  RequestView,
  RuleView,
  StoreStatus,
} from "../lib/protocol.ts";
import type { Style } from "./text.ts";
import type { PhraseInfo } from "./phrase.ts";
import { approvalCode, CODE_ALPHABET } from "./approval_code.ts";

export { approvalCode, CODE_ALPHABET, CODE_LENGTH } from "./approval_code.ts";
import { detailRows, historyRows, pageSize } from "./render.ts";

/**
 * Arming delay, ms: keys typed within this time after the screen changed by itself (a request
 * arrived, left or changed; the console's VT came to the front) are discarded, and so are
 * decision keys typed this soon after the user opened a request. Configurable with
 * `SD_CONSOLE_ARM_MS` (see `main.ts`).
 */
export const ARM_MS = 750;
/** How long a status message stays on screen, ms. */
export const STATUS_MS = 6_000;
/** Reason sent with a denial made on the console. */
export const DENY_REASON = "denied on the console";
/** Reason sent with each denial of "deny all pending". */
export const DENY_ALL_REASON = "denied on the console (deny all pending)";

/** A key: a printable character as itself, or a name in angle brackets such as `<up>`. */
export type Key = string;

/** Daemon connection as the UI knows it. */
export interface ConnState {
  status: "connecting" | "connected" | "unreachable";
  /** Bus address tried (raw). */
  address: string;
  /** Last connection error (raw), when unreachable. */
  error: string | null;
}

/** The detail view of one request. */
export interface DetailState {
  /** The request's id. */
  id: string;
  /** The list entry it was opened from. */
  summary: RequestSummary;
  /**
   * The full request as fetched with `Get` (null while loading); its digest is what an approval
   * names.
   */
  view: RequestView | null;
  /** Why `Get` failed (raw), or null. */
  error: string | null;
  /** First wrapped row shown. */
  scroll: number;
  /** Set when the request left the pending state (its new state, raw) or the list. */
  gone: string | null;
  /** Set when the daemon now shows a different digest for this id: approval is refused. */
  changed: boolean;
  /** Decision keys are discarded before this time (ms since the epoch). */
  armedUntil: number;
  /** The letters of the approval code typed so far (uppercase). */
  typed: string;
  /** Index into {@link grantChoices} (`+` cycles it): what an approval also grants (0: none). */
  grant: number;
  /** Index into {@link DENY_RULE_CHOICES}: what a denial also makes (0: no rule). */
  rule: number;
}

/** A grant an approval can make, with its label for the screen. */
export interface GrantChoice {
  label: string;
  options: GrantOptions | null;
}

/** The grants `+` cycles through on the detail view of a request of `kind`. */
export function grantChoices(kind: string): GrantChoice[] {
  const none = { label: "no grant", options: null };
  if (kind === "secret.read") {
    return [
      none,
      ...[2, 10, 60].map((m) => ({
        label: `this program may read these items for ${m} min`,
        options: { minutes: m },
      })),
    ];
  }
  if (kind === "sign.commit") {
    return [
      none,
      ...[5, 20, 100].map((n) => ({
        label: `the next ${n} signatures continuing this commit`,
        options: { signatures: n },
      })),
    ];
  }
  return [none];
}

/** The deny rules `r` cycles through on the detail view. */
export const DENY_RULE_CHOICES: readonly { label: string; options: DenyRuleOptions | null }[] = [
  { label: "no rule", options: null },
  { label: "deny requests like this for 60 min", options: { minutes: 60 } },
  { label: "deny requests like this until revoked", options: { minutes: 0 } },
];

/** A question answered with `y` (anything else cancels): deny all, lock, unlock. */
export type ConfirmState =
  | {
    kind: "denyAll";
    /** The ids pending when the question was asked: exactly these are denied. */
    ids: string[];
    armedUntil: number;
  }
  | { kind: "lock" | "unlock"; armedUntil: number };

/** Everything the screen shows. */
export interface UiState {
  /** Current time, ms since the epoch (from tick events). */
  now: number;
  size: { cols: number; rows: number };
  screen: "list" | "detail" | "history" | "rules";
  conn: ConnState;
  /** Pending requests as last listed (summaries), oldest first. */
  requests: RequestSummary[];
  /** True once a list arrived on the current connection. */
  loaded: boolean;
  /** Selected request in the list, kept by id so arrivals never move it. */
  selectedId: string | null;
  detail: DetailState | null;
  confirm: ConfirmState | null;
  /** The grants and deny rules screen. */
  rules: { list: RuleView[]; selected: number; loading: boolean; error: string | null };
  history: {
    entries: HistoryEntry[];
    /** First (wrapped) row shown; null means "at the end" (newest). */
    scroll: number | null;
    loading: boolean;
    /** Raw error text of the last load, if it failed. */
    error: string | null;
  };
  /** Last status message; `text` is raw (escaped by the renderer). */
  status: { text: string; tone: Style; at: number } | null;
  /** A decision in flight. */
  busy: { id: string; action: "approve" | "deny" } | null;
  /** The secret store's state, once known (raw message). */
  store: StoreStatus | null;
  /** The VT switch lock: `held` (switching away refused), `free`, or `off` (no VT control). */
  vt: { status: "held" | "free" | "off"; vt: number; note: string | null };
  /** Every key but Ctrl-C is discarded before this time (ms since the epoch). */
  inputBlockedUntil: number;
  /** The arming delay in use, ms ({@link ARM_MS} unless configured). */
  armMs: number;
  /** The per-install phrase shown on every screen, or why there is none (`phrase.ts`). */
  phrase: PhraseInfo;
  quit: boolean;
}

/** Inputs of the reducer. */
export type UiEvent =
  | { type: "key"; key: Key; at: number }
  | { type: "tick"; now: number }
  | { type: "resize"; cols: number; rows: number }
  | { type: "list"; requests: RequestSummary[]; at: number }
  /** `Get` returned the full request for the detail view. */
  | { type: "detail"; view: RequestView; at: number }
  /** `Get` failed for the detail view (raw text). */
  | { type: "detailError"; id: string; error: string }
  | { type: "store"; store: StoreStatus }
  | { type: "changed"; id: string; state: RequestState | string }
  | { type: "connection"; status: ConnState["status"]; error?: string | null }
  | { type: "history"; entries: HistoryEntry[] }
  | { type: "historyError"; error: string }
  | { type: "decision"; id: string; action: "approve" | "deny"; error: string | null }
  /** The VT lock changed (from `vt_sync.ts`). */
  | { type: "vt"; status: UiState["vt"]["status"]; vt: number; note: string | null }
  /** An ioctl failed (raw text). */
  | { type: "vtError"; error: string }
  /** A message for the status line (raw text). */
  | { type: "notice"; text: string; tone: Style }
  /** The grants and deny rules (`Rules`). */
  | { type: "rules"; list: RuleView[] }
  | { type: "rulesError"; error: string }
  /** The console's VT came to the front for a new request (input was flushed). */
  | { type: "focused"; at: number };

/** Work for `main.ts` to do. */
export type Effect =
  | { type: "approve"; id: string; digest: string; grant?: GrantOptions }
  | { type: "deny"; id: string; reason: string; rule?: DenyRuleOptions }
  | { type: "loadRules" }
  | { type: "revoke"; id: string }
  | { type: "refresh" }
  /** Fetch the full request with `Get` for the detail view. */
  | { type: "load"; id: string }
  | { type: "lock" }
  | { type: "unlock" }
  /** Discard terminal input not read yet (`tcflush`). */
  | { type: "flushInput" }
  | { type: "loadHistory" }
  | { type: "quit" };

/** Result of {@link update}. */
export interface Update {
  state: UiState;
  effects: Effect[];
}

/** The state before anything is known. */
export function initialState(
  address: string,
  now: number,
  size = { cols: 80, rows: 24 },
  options: { armMs?: number; phrase?: PhraseInfo } = {},
): UiState {
  return {
    now,
    size,
    screen: "list",
    conn: { status: "connecting", address, error: null },
    requests: [],
    loaded: false,
    selectedId: null,
    detail: null,
    confirm: null,
    history: { entries: [], scroll: null, loading: false, error: null },
    rules: { list: [], selected: 0, loading: false, error: null },
    status: null,
    busy: null,
    store: null,
    vt: { status: "off", vt: 0, note: null },
    inputBlockedUntil: 0,
    armMs: options.armMs ?? ARM_MS,
    phrase: options.phrase ?? { phrase: null, warning: "no console phrase configured" },
    quit: false,
  };
}

/**
 * Blocks input for the arming delay from `at`, forgets a half-typed approval code, and asks for
 * pending input to be flushed.
 */
function armInput(state: UiState, at: number): Update {
  return {
    state: {
      ...state,
      inputBlockedUntil: Math.max(state.inputBlockedUntil, at + state.armMs),
      detail: state.detail && state.detail.typed !== ""
        ? { ...state.detail, typed: "" }
        : state.detail,
    },
    effects: [{ type: "flushInput" }],
  };
}

/** True when the pending requests differ in ids or digests (what the screen shows changed). */
function requestsDiffer(a: RequestSummary[], b: RequestSummary[]): boolean {
  if (a.length !== b.length) return true;
  return a.some((r, i) => r.id !== b[i].id || r.digest !== b[i].digest);
}

// ---- keys -----------------------------------------------------------------------------------

const CSI_KEYS: Record<string, Key> = {
  A: "<up>",
  B: "<down>",
  C: "<right>",
  D: "<left>",
  H: "<home>",
  F: "<end>",
  "1~": "<home>",
  "7~": "<home>",
  "4~": "<end>",
  "8~": "<end>",
  "5~": "<pageup>",
  "6~": "<pagedown>",
  "3~": "<delete>",
  Z: "<backtab>",
};

/**
 * Splits raw terminal input into keys. Printable characters map to themselves; known escape
 * sequences (CSI and SS3 cursor/paging keys) to names like `<up>`; unknown sequences to
 * `<unknown>`; a lone ESC to `<esc>`.
 *
 * @param input decoded terminal input (one read's worth)
 */
export function parseKeys(input: string): Key[] {
  const keys: Key[] = [];
  const chars = [...input];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i];
    if (ch === "\x1b") {
      const next = chars[i + 1];
      if (next === "[" || next === "O") {
        let j = i + 2;
        let params = "";
        while (j < chars.length && /[0-9;?]/.test(chars[j])) params += chars[j++];
        if (j >= chars.length) {
          keys.push("<unknown>");
          i = j - 1;
          continue;
        }
        const final = chars[j];
        const code = final === "~" ? `${params.split(";")[0]}~` : final;
        keys.push(
          (next === "O" && params === "" || next === "[") && CSI_KEYS[code]
            ? CSI_KEYS[code]
            : "<unknown>",
        );
        i = j;
        continue;
      }
      if (next === undefined) {
        keys.push("<esc>");
        continue;
      }
      // ESC + key: Alt-modified key; not bound.
      keys.push("<unknown>");
      i++;
      continue;
    }
    switch (ch) {
      case "\r":
      case "\n":
        keys.push("<enter>");
        break;
      case "\x7f":
      case "\b":
        keys.push("<backspace>");
        break;
      case "\x03":
        keys.push("<ctrl-c>");
        break;
      case "\t":
        keys.push("<tab>");
        break;
      case " ":
        keys.push("<space>");
        break;
      default:
        keys.push(ch < " " ? "<unknown>" : ch);
    }
  }
  return keys;
}

// ---- reducer --------------------------------------------------------------------------------

function withStatus(state: UiState, text: string, tone: Style = "plain"): UiState {
  return { ...state, status: { text, tone, at: state.now } };
}

function selectedIndex(state: UiState): number {
  return state.requests.findIndex((r) => r.id === state.selectedId);
}

function keepSelection(
  old: RequestSummary[],
  next: RequestSummary[],
  selected: string | null,
): string | null {
  const ids = new Set(next.map((r) => r.id));
  if (selected !== null && ids.has(selected)) return selected;
  if (selected !== null) {
    // The selected request left: take the next one that is still there, else the previous one.
    const at = old.findIndex((r) => r.id === selected);
    if (at >= 0) {
      for (let i = at + 1; i < old.length; i++) if (ids.has(old[i].id)) return old[i].id;
      for (let i = at - 1; i >= 0; i--) if (ids.has(old[i].id)) return old[i].id;
    }
  }
  return next[0]?.id ?? null;
}

function detailMaxScroll(state: UiState, d: DetailState): number {
  if (!d.view) return 0;
  const total = detailRows(d.view, state.size.cols).length;
  return Math.max(0, total - pageSize(state.size, "detail"));
}

function historyMaxScroll(state: UiState): number {
  const rows = historyRows(state.history.entries, state.size.cols).length;
  return Math.max(0, rows - pageSize(state.size, "history"));
}

/** Scroll delta for a navigation key, or null when the key does not scroll. */
function scrollDelta(key: Key, page: number): number | "home" | "end" | null {
  switch (key) {
    case "<up>":
    case "k":
      return -1;
    case "<down>":
    case "j":
      return 1;
    case "<pageup>":
    case "b":
      return -page;
    case "<pagedown>":
    case "<space>":
      return page;
    case "<home>":
    case "g":
      return "home";
    case "<end>":
    case "G":
      return "end";
  }
  return null;
}

function applyScroll(current: number, delta: number | "home" | "end", max: number): number {
  if (delta === "home") return 0;
  if (delta === "end") return max;
  return Math.min(max, Math.max(0, current + delta));
}

function openDetail(state: UiState, at: number): Update {
  const summary = state.requests.find((r) => r.id === state.selectedId);
  if (!summary) return { state: withStatus(state, "no request selected"), effects: [] };
  return {
    state: {
      ...state,
      screen: "detail",
      detail: {
        id: summary.id,
        summary,
        view: null,
        error: null,
        scroll: 0,
        gone: null,
        changed: false,
        armedUntil: at + state.armMs,
        typed: "",
        grant: 0,
        rule: 0,
      },
      confirm: null,
    },
    effects: [{ type: "load", id: summary.id }],
  };
}

function denyAll(state: UiState, ids: string[]): Update {
  const effects: Effect[] = ids.map((id) => ({ type: "deny", id, reason: DENY_ALL_REASON }));
  return {
    state: withStatus(
      { ...state, confirm: null },
      `denying ${ids.length} request${ids.length === 1 ? "" : "s"}...`,
    ),
    effects: [...effects, { type: "refresh" }],
  };
}

/** The `y`/other answer to a {@link ConfirmState} question. */
function onConfirmKey(state: UiState, c: ConfirmState, key: Key, at: number): Update {
  if (key !== "y") {
    return { state: withStatus({ ...state, confirm: null }, "cancelled"), effects: [] };
  }
  if (at < c.armedUntil) {
    return {
      state: withStatus(state, "too fast: key ignored; read the question, then press y", "warn"),
      effects: [],
    };
  }
  switch (c.kind) {
    case "denyAll":
      return denyAll(state, c.ids);
    case "lock":
    case "unlock":
      return {
        state: withStatus({ ...state, confirm: null }, `${c.kind}ing...`),
        effects: [{ type: c.kind }],
      };
  }
}

function deny(state: UiState, id: string, rule?: DenyRuleOptions): Update {
  if (state.busy) {
    return { state: withStatus(state, "a decision is still in progress", "warn"), effects: [] };
  }
  return {
    state: withStatus({ ...state, busy: { id, action: "deny" } }, `denying ${id.slice(0, 8)}...`),
    effects: [{ type: "deny", id, reason: DENY_REASON, ...(rule ? { rule } : {}) }],
  };
}

function onKeyRules(state: UiState, key: Key): Update {
  const r = state.rules;
  const n = r.list.length;
  switch (key) {
    case "<up>":
    case "k":
      return {
        state: { ...state, rules: { ...r, selected: Math.max(0, r.selected - 1) } },
        effects: [],
      };
    case "<down>":
    case "j":
      return {
        state: {
          ...state,
          rules: { ...r, selected: Math.min(Math.max(0, n - 1), r.selected + 1) },
        },
        effects: [],
      };
    case "x": {
      const rule = r.list[r.selected];
      if (!rule) return { state: withStatus(state, "nothing to revoke"), effects: [] };
      return {
        state: withStatus(state, `revoking ${rule.id}...`),
        effects: [{ type: "revoke", id: rule.id }],
      };
    }
    case "r":
      return {
        state: { ...state, rules: { ...r, loading: true } },
        effects: [{ type: "loadRules" }],
      };
    case "<esc>":
    case "q":
    case "<left>":
    case "<backspace>":
      return { state: { ...state, screen: "list" }, effects: [] };
  }
  return { state, effects: [] };
}

function onKeyList(state: UiState, key: Key, at: number): Update {
  const n = state.requests.length;
  const idx = selectedIndex(state);
  const move = (to: number): Update => ({
    state: n === 0
      ? state
      : { ...state, selectedId: state.requests[Math.min(n - 1, Math.max(0, to))].id },
    effects: [],
  });
  const delta = scrollDelta(key, pageSize(state.size, "list"));
  if (delta !== null && key !== "<space>") {
    if (delta === "home") return move(0);
    if (delta === "end") return move(n - 1);
    return move((idx < 0 ? 0 : idx) + delta);
  }
  switch (key) {
    case "<enter>":
    case "<space>":
    case "<right>":
    case "l":
      return openDetail(state, at);
    case "d":
      if (!state.selectedId) {
        return { state: withStatus(state, "no request selected"), effects: [] };
      }
      return deny(state, state.selectedId);
    case "D":
      if (n === 0) return { state: withStatus(state, "nothing to deny"), effects: [] };
      return {
        state: {
          ...state,
          confirm: {
            kind: "denyAll",
            ids: state.requests.map((r) => r.id),
            armedUntil: at + state.armMs,
          },
          status: null,
        },
        effects: [],
      };
    case "A":
    case "a":
      return {
        state: withStatus(state, "open the request (Enter), read it, then type its approval code"),
        effects: [],
      };
    case "h":
      return {
        state: {
          ...state,
          screen: "history",
          history: { ...state.history, loading: true, scroll: null },
        },
        effects: [{ type: "loadHistory" }],
      };
    case "r":
      return { state: withStatus(state, "refreshing"), effects: [{ type: "refresh" }] };
    case "R":
      return {
        state: { ...state, screen: "rules", rules: { ...state.rules, loading: true } },
        effects: [{ type: "loadRules" }],
      };
    case "L":
    case "U":
      return {
        state: {
          ...state,
          confirm: { kind: key === "L" ? "lock" : "unlock", armedUntil: at + state.armMs },
          status: null,
        },
        effects: [],
      };
    case "q":
      return { state: { ...state, quit: true }, effects: [{ type: "quit" }] };
  }
  return { state, effects: [] };
}

function spaced(code: string): string {
  return [...code].join(" ");
}

/** A letter of the approval code typed on the detail view (its request is loaded). */
function onCodeLetter(
  state: UiState,
  d: DetailState & { view: RequestView },
  letter: string,
  at: number,
): Update {
  const code = approvalCode(d.view.id, d.view.digest);
  const reset = (text: string, tone: Style): Update => ({
    state: withStatus({ ...state, detail: { ...d, typed: "" } }, text, tone),
    effects: [],
  });
  if (at < d.armedUntil) return reset("too fast: key ignored (new content on screen)", "warn");
  if (letter !== code[d.typed.length]) {
    return reset(`wrong letter: the approval code is ${spaced(code)}; start again`, "error");
  }
  const typed = d.typed + letter;
  if (typed.length < code.length) {
    return { state: { ...state, detail: { ...d, typed }, status: null }, effects: [] };
  }
  if (d.gone !== null) return reset(`cannot approve: the request is ${d.gone}`, "error");
  if (d.changed) {
    return reset(
      "cannot approve: the request changed since it was opened; go back and reopen it",
      "error",
    );
  }
  if (state.busy) return reset("a decision is still in progress", "warn");
  const grant = grantChoices(d.view.kind)[d.grant]?.options ?? null;
  return {
    state: withStatus(
      { ...state, detail: { ...d, typed: "" }, busy: { id: d.view.id, action: "approve" } },
      `approving ${d.view.id.slice(0, 8)}...`,
    ),
    effects: [{
      type: "approve",
      id: d.view.id,
      digest: d.view.digest,
      ...(grant ? { grant } : {}),
    }],
  };
}

function backToList(state: UiState): UiState {
  return { ...state, screen: "list", detail: null, confirm: null };
}

function onKeyDetail(state: UiState, d: DetailState, key: Key, at: number): Update {
  const delta = scrollDelta(key, pageSize(state.size, "detail"));
  if (delta !== null) {
    const scroll = applyScroll(d.scroll, delta, detailMaxScroll(state, d));
    return { state: { ...state, detail: { ...d, scroll } }, effects: [] };
  }
  const back = ["<esc>", "q", "<left>", "<backspace>", "h"];
  if (d.view === null && !back.includes(key) && key !== "d") {
    return {
      state: withStatus(state, d.error ? "the request could not be loaded" : "loading...", "warn"),
      effects: [],
    };
  }
  if (key.length === 1 && CODE_ALPHABET.includes(key.toUpperCase())) {
    return onCodeLetter(state, { ...d, view: d.view! }, key.toUpperCase(), at);
  }
  switch (key) {
    case "A":
    case "a":
    case "y":
    case "<enter>":
      return {
        state: withStatus(
          state,
          `to approve, type the code ${spaced(approvalCode(d.view!.id, d.view!.digest))}`,
          "warn",
        ),
        effects: [],
      };
    case "d":
      if (at < d.armedUntil) {
        return {
          state: withStatus(state, "too fast: key ignored (new content on screen)", "warn"),
          effects: [],
        };
      }
      if (d.gone !== null) {
        return {
          state: withStatus(state, `cannot deny: the request is ${d.gone}`, "error"),
          effects: [],
        };
      }
      return deny(state, d.id, DENY_RULE_CHOICES[d.rule]?.options ?? undefined);
    case "+": {
      const choices = grantChoices(d.summary.kind);
      if (choices.length === 1) {
        return {
          state: withStatus(state, `no grants for ${d.summary.kind} requests`, "warn"),
          effects: [],
        };
      }
      const grant = (d.grant + 1) % choices.length;
      return {
        state: withStatus(
          { ...state, detail: { ...d, grant, typed: "" } },
          `on approval: ${choices[grant].label}`,
          grant ? "warn" : "plain",
        ),
        effects: [],
      };
    }
    case "r": {
      const rule = (d.rule + 1) % DENY_RULE_CHOICES.length;
      return {
        state: withStatus(
          { ...state, detail: { ...d, rule } },
          `on denial: ${DENY_RULE_CHOICES[rule].label}`,
          rule ? "warn" : "plain",
        ),
        effects: [],
      };
    }
    case "<esc>":
    case "q":
    case "<left>":
    case "<backspace>":
    case "h":
      return { state: backToList(state), effects: [] };
  }
  return { state, effects: [] };
}

function onKeyHistory(state: UiState, key: Key): Update {
  const max = historyMaxScroll(state);
  const delta = scrollDelta(key, pageSize(state.size, "history"));
  if (delta !== null) {
    const scroll = applyScroll(state.history.scroll ?? max, delta, max);
    return {
      state: { ...state, history: { ...state.history, scroll: scroll >= max ? null : scroll } },
      effects: [],
    };
  }
  switch (key) {
    case "r":
      return {
        state: { ...state, history: { ...state.history, loading: true } },
        effects: [{ type: "loadHistory" }],
      };
    case "<esc>":
    case "q":
    case "h":
    case "<left>":
    case "<backspace>":
      return { state: { ...state, screen: "list" }, effects: [] };
  }
  return { state, effects: [] };
}

/**
 * The reducer. Pure: same state and event give the same result.
 *
 * @param state current state
 * @param event what happened
 * @returns the next state and the effects to carry out
 */
export function update(state: UiState, event: UiEvent): Update {
  switch (event.type) {
    case "key": {
      if (event.key === "<ctrl-c>") {
        return { state: { ...state, quit: true }, effects: [{ type: "quit" }] };
      }
      if (state.confirm && event.at >= state.inputBlockedUntil) {
        return onConfirmKey(state, state.confirm, event.key, event.at);
      }
      if (event.at < state.inputBlockedUntil) {
        return {
          state: withStatus(state, "key ignored: the screen just changed, read it first", "warn"),
          effects: [],
        };
      }
      if (state.screen === "detail" && state.detail) {
        return onKeyDetail(state, state.detail, event.key, event.at);
      }
      if (state.screen === "history") return onKeyHistory(state, event.key);
      if (state.screen === "rules") return onKeyRules(state, event.key);
      return onKeyList(state, event.key, event.at);
    }
    case "tick": {
      const status = state.status && event.now - state.status.at > STATUS_MS ? null : state.status;
      return { state: { ...state, now: event.now, status }, effects: [] };
    }
    case "resize": {
      const next = { ...state, size: { cols: event.cols, rows: event.rows } };
      if (next.detail) {
        next.detail = {
          ...next.detail,
          scroll: Math.min(next.detail.scroll, detailMaxScroll(next, next.detail)),
        };
      }
      return { state: next, effects: [] };
    }
    case "list": {
      const requests = event.requests;
      const arm = requestsDiffer(state.requests, requests);
      const selectedId = keepSelection(state.requests, requests, state.selectedId);
      let detail = state.detail;
      if (detail) {
        const now = requests.find((r) => r.id === detail!.id);
        const shown = detail.view?.digest ?? detail.summary.digest;
        if (!now) detail = { ...detail, gone: detail.gone ?? "no longer pending", typed: "" };
        else if (now.digest !== shown) detail = { ...detail, changed: true, typed: "" };
      }
      const next: UiState = {
        ...state,
        requests,
        selectedId,
        detail,
        loaded: true,
        conn: { ...state.conn, status: "connected", error: null },
      };
      return arm ? armInput(next, event.at) : { state: next, effects: [] };
    }
    case "detail": {
      const d = state.detail;
      if (!d || d.id !== event.view.id) return { state, effects: [] };
      const view = event.view;
      const detail: DetailState = {
        ...d,
        view,
        error: null,
        // What is on screen now is what the arming delay protects.
        armedUntil: Math.max(d.armedUntil, event.at + state.armMs),
        typed: "",
        changed: d.changed || view.digest !== d.summary.digest,
        gone: d.gone ?? (view.state !== "pending" ? String(view.state) : null),
      };
      return { state: { ...state, detail }, effects: [] };
    }
    case "detailError": {
      const d = state.detail;
      if (!d || d.id !== event.id) return { state, effects: [] };
      return {
        state: withStatus(
          { ...state, detail: { ...d, error: event.error } },
          `cannot load ${event.id.slice(0, 8)}: ${event.error}`,
          "error",
        ),
        effects: [],
      };
    }
    case "vt":
      return {
        state: { ...state, vt: { status: event.status, vt: event.vt, note: event.note } },
        effects: [],
      };
    case "vtError":
      return { state: withStatus(state, `VT control: ${event.error}`, "error"), effects: [] };
    case "focused":
      return armInput(state, event.at);
    case "notice":
      return { state: withStatus(state, event.text, event.tone), effects: [] };
    case "rules":
      return {
        state: {
          ...state,
          rules: {
            list: event.list,
            selected: Math.min(state.rules.selected, Math.max(0, event.list.length - 1)),
            loading: false,
            error: null,
          },
        },
        effects: [],
      };
    case "rulesError":
      return {
        state: { ...state, rules: { ...state.rules, loading: false, error: event.error } },
        effects: [],
      };
    case "store":
      return { state: { ...state, store: event.store }, effects: [] };
    case "changed": {
      let next = state;
      const d = state.detail;
      if (d && d.id === event.id && event.state !== "pending") {
        next = { ...next, detail: { ...d, gone: String(event.state), typed: "" } };
      }
      return { state: next, effects: [{ type: "refresh" }] };
    }
    case "connection": {
      const conn: ConnState = { ...state.conn, status: event.status, error: event.error ?? null };
      if (event.status === "unreachable") {
        return {
          state: { ...state, conn, requests: [], loaded: false, busy: null, confirm: null },
          effects: [],
        };
      }
      return {
        state: { ...state, conn },
        effects: event.status === "connected" ? [{ type: "refresh" }] : [],
      };
    }
    case "history":
      return {
        state: {
          ...state,
          history: { ...state.history, entries: event.entries, loading: false, error: null },
        },
        effects: [],
      };
    case "historyError":
      return {
        state: { ...state, history: { ...state.history, loading: false, error: event.error } },
        effects: [],
      };
    case "decision": {
      const verb = event.action === "approve" ? "approved" : "denied";
      const base = { ...state, busy: null };
      if (event.error !== null) {
        return {
          state: withStatus(
            base,
            `${event.action} ${event.id.slice(0, 8)} failed: ${event.error}`,
            "error",
          ),
          effects: [{ type: "refresh" }],
        };
      }
      const back = state.detail?.id === event.id ? backToList(base) : base;
      return {
        state: withStatus(back, `${verb} ${event.id.slice(0, 8)}`, "ok"),
        effects: [{ type: "refresh" }],
      };
    }
  }
}
