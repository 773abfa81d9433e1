/**
 * The console's state machine: a pure reducer from (state, event) to (state, effects). Keys,
 * daemon replies, signals and clock ticks are events; the effects (approve, deny, refresh...) are
 * carried out by `main.ts`, which feeds their outcome back as events. No I/O here.
 *
 * Key bindings (shown on screen by `render.ts`):
 *
 * | screen | keys |
 * |---|---|
 * | list | `Up`/`k`, `Down`/`j`, `PgUp`, `PgDn`, `Home`/`g`, `End`/`G` select; `Enter`/`Space`/`Right`/`l` open; `d` deny the selected request; `D` deny all; `h` history; `R` grants and rules; `L`/`U` lock/unlock; `p` type the store passphrase; `r` refresh; `q` quit |
 * | detail | `Up`/`k`, `Down`/`j`, `PgUp`/`b`, `PgDn`/`Space`, `Home`/`g`, `End`/`G` scroll; type the approval code to approve; `d` deny; `+` grant; `r` deny rule; `Esc`/`q`/`Left`/`Backspace` back |
 * | confirm question | `y` yes; any other key cancels |
 * | history | scroll keys as in detail; `r` reload; `Esc`/`q`/`h`/`Left` back |
 * | store passphrase | text is the passphrase (never shown); `Enter` unlocks (creating: goes on to typing it again, then creates); `Backspace` erases; `Esc`/`Ctrl-U` clear; `Esc` with nothing typed back one step (to the list) |
 *
 * `Ctrl-C` quits from anywhere. Decision keys typed within {@link ARM_MS} of the screen showing
 * new content are discarded, so type-ahead cannot approve something the user has not seen.
 *
 * The store passphrase prompt ({@link UiState.unlock}): when the store itself is locked and its
 * backend can be unlocked with a passphrase (`AdminStoreStatus.passwordUnlock`), the list gives
 * way to the prompt by itself (once: after `Esc` it stays on the list, where `p` opens it again,
 * until the store was unlocked). The prompt is a screen of its own, titled and worded so that it
 * cannot be taken for an approval: it shows no request and no approval code, and no key on it
 * decides a request. The passphrase itself never enters this state: `main.ts` keeps it in a
 * `PassphraseBuffer` (`passphrase.ts`) and tells the reducer only whether anything is typed. A
 * store that opens (by the prompt, the PAM hand-off or `ctl unlock`) closes the prompt; when it
 * opened another way while something was typed, keys are ignored until the typing pauses for the
 * arming delay ({@link UiState.blockWhileTyping}), so that the rest of a passphrase never acts on
 * the list. Requests that arrive do not interrupt the prompt (it decides nothing). A store that
 * cannot be unlocked with a passphrase (`NotSupported`) never shows it.
 *
 * A store without a keyring yet (`AdminStoreStatus.creates`) gets the same prompt worded for
 * creating it: a new passphrase is typed twice ({@link UnlockState.step}); an empty one is
 * refused; `main.ts` compares the two buffers and sends the passphrase only when they match,
 * otherwise both are zeroed and the prompt starts over ("the two passphrases differ").
 *
 * Pending secret requests and a locked store: while the store is locked, every `secret.*`
 * request shows "store locked" in the list and in its detail view, which shows no approval code
 * and refuses one: approving would only make the read or write fail. It stays pending (deny
 * still works) and can be approved once the store is unlocked. Signing requests do not need the
 * store and are not affected.
 *
 * @module
 */

import type {
  AdminStoreStatus,
  DenyRuleOptions,
  GrantOptions,
  HistoryEntry,
  RequestState,
  RequestSummary,
  RequestView,
  RuleView,
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

/**
 * The store passphrase prompt. Never holds the passphrase (see the module doc): only whether
 * anything is typed, so that the screen can show a fixed mask.
 */
export interface UnlockState {
  /** True while something is typed (the screen shows a fixed mask, never the length). */
  typed: boolean;
  /** An `UnlockStore` call is in flight: input is discarded until it answers. */
  busy: boolean;
  /** Why the last attempt failed (raw: escaped by the renderer), or null. */
  error: string | null;
  /** The user left the prompt with `Esc`: it does not open by itself until the store opened. */
  dismissed: boolean;
  /**
   * Creating the store (`AdminStoreStatus.creates`): `first` while the new passphrase is typed,
   * `confirm` while it is typed again (`main.ts` then types into a second buffer). Always
   * `first` when unlocking.
   */
  step: "first" | "confirm";
}

/** Everything the screen shows. */
export interface UiState {
  /** Current time, ms since the epoch (from tick events). */
  now: number;
  size: { cols: number; rows: number };
  screen: "list" | "detail" | "history" | "rules" | "unlock";
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
  store: AdminStoreStatus | null;
  /** The store passphrase prompt (screen `unlock`). */
  unlock: UnlockState;
  /** The VT switch lock: `held` (switching away refused), `free`, or `off` (no VT control). */
  vt: { status: "held" | "free" | "off"; vt: number; note: string | null };
  /** Every key but Ctrl-C is discarded before this time (ms since the epoch). */
  inputBlockedUntil: number;
  /**
   * While set, each key discarded by {@link inputBlockedUntil} pushes it on by the arming delay:
   * input stays blocked until the typing pauses. Set when the passphrase prompt closed by itself
   * while something was typed (the rest of a passphrase must not reach the list); cleared by the
   * first key taken after the pause.
   */
  blockWhileTyping: boolean;
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
  /** `Status` answered (`at`: when it arrived). */
  | { type: "store"; store: AdminStoreStatus; at: number }
  /**
   * A key on the passphrase prompt, already applied to the passphrase buffer by `main.ts` when
   * {@link passphraseAccepts} said so: `text` appended, `erase` erased, `clear` and `esc`
   * cleared it; `full`: the text did not fit; `refused`: not accepted now (input blocked or an
   * unlock in flight; the buffer was cleared). `empty`: the buffer is empty now.
   */
  | {
    type: "passphrase";
    key: "text" | "erase" | "clear" | "esc" | "enter" | "full" | "refused";
    empty: boolean;
    at: number;
  }
  /**
   * `UnlockStore` answered: `ok`; `wrong` (`WrongPassword`); `unsupported` (`NotSupported`);
   * `failed` (anything else); or it was not called: `mismatch` (creating, the two passphrases
   * typed differ; both buffers were zeroed). `text`: the error text (raw), null when `ok` or
   * `mismatch`.
   */
  | {
    type: "unlockResult";
    outcome: "ok" | "wrong" | "unsupported" | "failed" | "mismatch";
    text: string | null;
    at: number;
  }
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
  /**
   * Send the passphrase typed so far with `UnlockStore` (and zero it). With `create`: the store
   * is created with it, so it is sent only when the second buffer holds the same bytes
   * (otherwise `unlockResult` `mismatch`); both buffers are zeroed either way.
   */
  | { type: "unlockStore"; create?: true }
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
    unlock: { typed: false, busy: false, error: null, dismissed: false, step: "first" },
    vt: { status: "off", vt: 0, note: null },
    inputBlockedUntil: 0,
    blockWhileTyping: false,
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

// ---- the store ------------------------------------------------------------------------------

/**
 * True when the passphrase prompt can be offered: connected, the store itself locked (not only
 * the console's lock), and its backend unlockable with a passphrase.
 */
export function promptAvailable(state: UiState): boolean {
  const st = state.store;
  return state.conn.status === "connected" && st !== null && st.state === "locked" &&
    !st.consoleLock && st.passwordUnlock === true;
}

/** True when the prompt would create the store (it has no keyring yet), not unlock it. */
export function promptCreates(state: UiState): boolean {
  return state.store?.creates === true;
}

/** True when a request of `kind` cannot be approved now: it needs the store, which is locked. */
export function storeBlocks(state: UiState, kind: string): boolean {
  return kind.startsWith("secret.") && state.conn.status === "connected" &&
    state.store?.state === "locked";
}

/**
 * What opens a locked store, in words.
 *
 * @param where `list`: said on the list; `detail`: said elsewhere (the way back is named)
 */
export function storeLockedHint(state: UiState, where: "list" | "detail" = "list"): string {
  const st = state.store;
  const back = where === "list" ? "" : "Esc, then ";
  if (st?.consoleLock) return `${back}U: lift the console's lock`;
  if (promptAvailable(state)) {
    return promptCreates(state)
      ? `${back}p: create it with a passphrase`
      : `${back}p: type the store passphrase`;
  }
  if (st?.passwordUnlock === false) return "it opens only with its own tools (no passphrase here)";
  return "it must be unlocked first";
}

/**
 * Whether a key typed at `at` may go into the passphrase buffer: the prompt is on screen, no
 * unlock is in flight, and input is not blocked by the arming delay. `main.ts` asks before it
 * touches the buffer.
 */
export function passphraseAccepts(state: UiState, at: number): boolean {
  return state.screen === "unlock" && !state.quit && !state.unlock.busy &&
    at >= state.inputBlockedUntil;
}

/** The prompt, opened (by the user with `p`, or by itself when the store is found locked). */
function openPrompt(state: UiState): UiState {
  return {
    ...state,
    screen: "unlock",
    detail: null,
    confirm: null,
    unlock: { ...state.unlock, typed: false, dismissed: false, step: "first" },
  };
}

/** Back to the list from the prompt (`main.ts` zeroes the buffer when the screen changes). */
function leavePrompt(state: UiState, dismissed: boolean): UiState {
  return {
    ...state,
    screen: "list",
    unlock: { ...state.unlock, typed: false, dismissed, step: "first" },
  };
}

function onStore(state: UiState, store: AdminStoreStatus, at: number): Update {
  const wasLocked = state.store?.state === "locked";
  let next: UiState = { ...state, store };
  const opened = wasLocked && store.state !== "locked";
  if (store.state === "unlocked") {
    next = { ...next, unlock: { ...next.unlock, dismissed: false, error: null } };
  }
  if (state.screen === "unlock" && !promptAvailable(next)) {
    // Someone may be typing the passphrase: the rest of it must not become list keys.
    next = { ...leavePrompt(next, next.unlock.dismissed), blockWhileTyping: state.unlock.typed };
    if (store.state === "unlocked") next = withStatus(next, "the secret store is unlocked", "ok");
    return armInput(next, at);
  }
  if (
    state.screen === "list" && state.confirm === null && !state.unlock.dismissed &&
    promptAvailable(next) && !promptAvailable(state)
  ) {
    return armInput(openPrompt(next), at);
  }
  if (state.screen === "unlock" && promptCreates(state) !== promptCreates(next)) {
    // Created or gone meanwhile: what was typed was meant for the other question.
    next = withStatus(
      { ...next, unlock: { ...next.unlock, typed: false, step: "first", error: null } },
      "the store changed meanwhile: what was typed is cleared, type it again",
      "warn",
    );
    return armInput(next, at);
  }
  // A secret request on screen whose approval code appears now: that is new content.
  const d = next.detail;
  if (opened && next.screen === "detail" && d && storeBlocks(state, d.summary.kind)) {
    next = { ...next, detail: { ...d, armedUntil: Math.max(d.armedUntil, at + state.armMs) } };
  }
  return { state: next, effects: [] };
}

function onPassphrase(
  state: UiState,
  event: Extract<UiEvent, { type: "passphrase" }>,
): Update {
  if (state.screen !== "unlock") return { state, effects: [] };
  const u = state.unlock;
  const typed = !event.empty;
  switch (event.key) {
    case "text":
    case "erase":
      return { state: { ...state, unlock: { ...u, typed } }, effects: [] };
    case "clear":
      return {
        state: withStatus({ ...state, unlock: { ...u, typed } }, "cleared: type it again"),
        effects: [],
      };
    case "full":
      return {
        state: withStatus(
          { ...state, unlock: { ...u, typed } },
          "too long: that key was not taken (Esc clears)",
          "warn",
        ),
        effects: [],
      };
    case "refused":
      return {
        state: withStatus(
          { ...state, unlock: { ...u, typed } },
          u.busy
            ? "unlocking: wait for the answer"
            : "key ignored: the screen just changed; what was typed is cleared, type it again",
          "warn",
        ),
        effects: [],
      };
    case "esc":
      if (u.typed) {
        return {
          state: withStatus({ ...state, unlock: { ...u, typed } }, "cleared: type it again"),
          effects: [],
        };
      }
      if (u.step === "confirm") {
        return {
          state: withStatus(
            { ...state, unlock: { ...u, typed: false, step: "first" } },
            "start over: choose a passphrase",
          ),
          effects: [],
        };
      }
      return {
        state: withStatus(
          leavePrompt(state, true),
          promptCreates(state)
            ? "the store is not created yet; p creates it"
            : "the store stays locked; p types its passphrase",
          "warn",
        ),
        effects: [],
      };
    case "enter":
      if (u.busy) return { state, effects: [] };
      if (promptCreates(state)) return onCreateEnter(state);
      if (!u.typed) {
        return {
          state: withStatus(state, "type the store passphrase, then press Enter", "warn"),
          effects: [],
        };
      }
      return {
        state: withStatus(
          { ...state, unlock: { ...u, typed: false, busy: true, error: null } },
          "unlocking the store...",
        ),
        effects: [{ type: "unlockStore" }],
      };
  }
}

/** `Enter` on the prompt that creates the store: on to the second typing, or create. */
function onCreateEnter(state: UiState): Update {
  const u = state.unlock;
  if (!u.typed) {
    return {
      state: withStatus(
        state,
        u.step === "first"
          ? "an empty passphrase is refused: choose a passphrase, then press Enter"
          : "type the same passphrase again, then press Enter (Esc starts over)",
        "warn",
      ),
      effects: [],
    };
  }
  if (u.step === "first") {
    return {
      state: withStatus(
        { ...state, unlock: { ...u, typed: false, step: "confirm", error: null } },
        "now type the same passphrase again, then press Enter",
      ),
      effects: [],
    };
  }
  return {
    state: withStatus(
      { ...state, unlock: { ...u, typed: false, busy: true, error: null } },
      "creating the store...",
    ),
    effects: [{ type: "unlockStore", create: true }],
  };
}

function onUnlockResult(
  state: UiState,
  event: Extract<UiEvent, { type: "unlockResult" }>,
): Update {
  // Whatever happened, a store being created starts over from the first passphrase.
  const u = { ...state.unlock, busy: false, step: "first" as const };
  const creating = promptCreates(state);
  if (event.outcome === "ok") {
    // UnlockStore succeeded: the store is open (and the console's lock lifted); the refresh
    // below brings the daemon's own words.
    const store: AdminStoreStatus = {
      state: "unlocked",
      message: creating
        ? "created with the passphrase typed here"
        : "unlocked with the passphrase typed here",
      consoleLock: false,
      passwordUnlock: null,
      creates: false,
    };
    let next: UiState = {
      ...state,
      store,
      unlock: { ...u, typed: false, error: null, dismissed: false },
    };
    if (next.screen === "unlock") next = leavePrompt(next, false);
    next = withStatus(
      next,
      creating ? "the secret store is created and unlocked" : "the secret store is unlocked",
      "ok",
    );
    const armed = armInput(next, event.at);
    return { state: armed.state, effects: [...armed.effects, { type: "refresh" }] };
  }
  if (event.outcome === "mismatch") {
    return {
      state: withStatus(
        {
          ...state,
          unlock: {
            ...u,
            typed: false,
            error: "the two passphrases differ: nothing was created. Choose a passphrase again.",
          },
        },
        "the two passphrases differ",
        "error",
      ),
      effects: [],
    };
  }
  const error = creating
    ? `the store was not created: ${event.text ?? "unknown error"}`
    : event.outcome === "wrong"
    ? "wrong passphrase: the store is still locked. Type it again."
    : event.outcome === "unsupported"
    ? `this store cannot be unlocked with a passphrase here: ${event.text ?? ""}`
    : `the store was not unlocked: ${event.text ?? "unknown error"}`;
  return {
    state: withStatus(
      { ...state, unlock: { ...u, typed: false, error } },
      event.outcome === "wrong" && !creating
        ? "wrong passphrase: the store is still locked"
        : error,
      "error",
    ),
    effects: [{ type: "refresh" }],
  };
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
    case "p":
      if (promptAvailable(state)) {
        return { state: { ...openPrompt(state), status: null }, effects: [] };
      }
      return {
        state: withStatus(
          state,
          state.store?.state !== "locked"
            ? "the secret store is not locked: nothing to unlock"
            : `the store cannot take a passphrase here: ${storeLockedHint(state)}`,
          "warn",
        ),
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
  if (storeBlocks(state, d.view.kind)) {
    return reset(
      `cannot approve: the secret store is locked; ${storeLockedHint(state, "detail")}`,
      "error",
    );
  }
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
          storeBlocks(state, d.summary.kind)
            ? `cannot approve: the secret store is locked; ${storeLockedHint(state, "detail")}`
            : `to approve, type the code ${spaced(approvalCode(d.view!.id, d.view!.digest))}`,
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
        if (state.blockWhileTyping) {
          return {
            state: withStatus(
              {
                ...state,
                inputBlockedUntil: Math.max(state.inputBlockedUntil, event.at + state.armMs),
              },
              "the store opened meanwhile: keys are ignored until you stop typing",
              "warn",
            ),
            effects: [],
          };
        }
        return {
          state: withStatus(state, "key ignored: the screen just changed, read it first", "warn"),
          effects: [],
        };
      }
      if (state.blockWhileTyping) state = { ...state, blockWhileTyping: false };
      if (state.screen === "detail" && state.detail) {
        return onKeyDetail(state, state.detail, event.key, event.at);
      }
      if (state.screen === "history") return onKeyHistory(state, event.key);
      // The prompt takes raw bytes (passphrase events), never decoded keys.
      if (state.screen === "unlock") return { state, effects: [] };
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
      // The prompt shows no request and decides none: what arrives does not interrupt typing.
      return arm && state.screen !== "unlock"
        ? armInput(next, event.at)
        : { state: next, effects: [] };
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
      return onStore(state, event.store, event.at);
    case "passphrase":
      return onPassphrase(state, event);
    case "unlockResult":
      return onUnlockResult(state, event);
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
        const next: UiState = {
          ...state,
          conn,
          requests: [],
          loaded: false,
          busy: null,
          confirm: null,
          // Unknown until the daemon answers again (and then the prompt may open by itself).
          store: null,
          unlock: { ...state.unlock, busy: false },
        };
        return {
          state: state.screen === "unlock" ? leavePrompt(next, state.unlock.dismissed) : next,
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
