/**
 * The desktop notifications of the agent: what waits for the human on the VT, and whether the
 * approval daemon can be reached. It turns the daemon's request events (through the
 * `DaemonListener` of `port.ts`) into calls to a {@link Notifier}.
 *
 * Rules (issue 6, Desktop Notifications Specification 1.2):
 * - One notification per pending request, naming the operation, the item label or commit
 *   subject, the program asking and the short request id, and where to approve ("Approve on VT
 *   8: Ctrl+Alt+F8"). Critical urgency, never expiring; its only action is "Deny" (approval
 *   happens only on the VT). It is closed when the request is decided, expires or is withdrawn.
 * - At most `maxOpen` (3) at once: when more requests wait, their notifications give way to one
 *   "N requests waiting" notification, updated in place (`replaces_id`) until none waits. A
 *   burst is gathered for `settleMs` before anything is shown.
 * - A notification the user dismissed is not shown again for the same request.
 * - When the daemon cannot be reached for `downGraceMs`, one notification says so and what to
 *   do, once per outage (not one per failed call); it is closed when the daemon is back.
 * - Every string from outside is shown with control, bidi and invisible characters as visible
 *   escapes (`lib/sanitize.ts`); in the body `&`, `<` and `>` are escaped for the markup and
 *   nothing else. No secret value ever reaches this module (the daemon's summaries hold labels
 *   and subjects only).
 *
 * @module
 */

import type { PendingSummary } from "../lib/protocol.ts";
import { SHORT_ID_LENGTH } from "../lib/protocol.ts";
import { escapeLine } from "../lib/sanitize.ts";
import {
  ClosedReason,
  escapeBodyMarkup,
  type NotificationSpec,
  type Notifier,
  type NotifierEvents,
  Urgency,
} from "./notifications.ts";
import type { DaemonListener } from "./port.ts";

/** Default number of request notifications open at once before they are gathered into one. */
export const DEFAULT_MAX_OPEN = 3;
/** Default time a burst of changes is gathered before notifications are updated, ms. */
export const DEFAULT_SETTLE_MS = 150;
/** Default time the daemon must stay unreachable before the notification says so, ms. */
export const DEFAULT_DOWN_GRACE_MS = 3000;
/** How many requests the gathered notification lists by name. */
const LISTED = 3;

/** Options of {@link NoticeBoard}. */
export interface NoticeBoardOptions {
  notifier: Notifier;
  /** Denies a pending request by id (the daemon's `DenyOwn`). */
  deny(id: string): Promise<void>;
  /** The VT the console runs on (named in the text), default 8. */
  vt?: number;
  /** Most request notifications open at once, default {@link DEFAULT_MAX_OPEN}. */
  maxOpen?: number;
  /** Gathering time for a burst, ms, default {@link DEFAULT_SETTLE_MS}. */
  settleMs?: number;
  /** Time the daemon must stay unreachable before saying so, ms, default {@link DEFAULT_DOWN_GRACE_MS}. */
  downGraceMs?: number;
  /** One line for the agent's log. */
  log?: (line: string) => void;
}

/**
 * Keeps the desktop's notifications in line with the pending requests and the daemon's
 * reachability. Feed it the daemon's events ({@link DaemonListener}) and the server's
 * ({@link NotifierEvents}).
 */
export class NoticeBoard implements DaemonListener, NotifierEvents {
  #notifier: Notifier;
  #deny: (id: string) => Promise<void>;
  #vt: number;
  #maxOpen: number;
  #settleMs: number;
  #graceMs: number;
  #log: (line: string) => void;

  /** Pending requests, in the order they became known. */
  #requests = new Map<string, PendingSummary>();
  /** Request id → id of its own notification. */
  #shown = new Map<string, number>();
  /** Requests whose notification the user dismissed. */
  #dismissed = new Set<string>();
  /** More than `maxOpen` waited: one gathered notification until none waits. */
  #gathered = false;
  #gatherId: number | null = null;
  #gatherText = "";
  /** The requests the gathered notification covered when the user dismissed it. */
  #gatherDismissed: Set<string> | null = null;

  /** Why the daemon is unreachable, and whether that lasted `downGraceMs`; null while it answers. */
  #down: { why: string; due: boolean } | null = null;
  #downId: number | null = null;
  /** The outage was announced (even if the user dismissed the notice since). */
  #downTold = false;
  #downTimer: ReturnType<typeof setTimeout> | undefined;

  #timer: ReturnType<typeof setTimeout> | undefined;
  #dirty = false;
  #running: Promise<void> | null = null;
  #failing = false;
  #stopped = false;

  /** @param options the notifier, the deny hook, the VT and the timing */
  constructor(options: NoticeBoardOptions) {
    this.#notifier = options.notifier;
    this.#deny = options.deny;
    this.#vt = options.vt ?? 8;
    this.#maxOpen = options.maxOpen ?? DEFAULT_MAX_OPEN;
    this.#settleMs = options.settleMs ?? DEFAULT_SETTLE_MS;
    this.#graceMs = options.downGraceMs ?? DEFAULT_DOWN_GRACE_MS;
    this.#log = options.log ?? (() => {});
  }

  // ---- the daemon's side (DaemonListener) -------------------------------------------------

  /** What waits now, after a (re)subscription: replaces everything known. */
  synced(pending: PendingSummary[]): void {
    const ids = new Set(pending.map((p) => p.id));
    for (const id of [...this.#requests.keys()]) if (!ids.has(id)) this.#forget(id);
    for (const p of pending) if (!this.#requests.has(p.id)) this.#requests.set(p.id, p);
    this.#schedule();
  }

  /** A request started to wait. */
  pending(request: PendingSummary): void {
    if (this.#requests.has(request.id)) return;
    this.#requests.set(request.id, request);
    this.#schedule();
  }

  /** A request stopped waiting. */
  ended(id: string, _state: string): void {
    if (!this.#requests.has(id)) return;
    this.#forget(id);
    this.#schedule();
  }

  /** The daemon became reachable or not. */
  reachable(up: boolean, why: string): void {
    if (up) {
      clearTimeout(this.#downTimer);
      this.#down = null;
      this.#downTold = false;
    } else if (this.#down === null) {
      const down = { why, due: false };
      this.#down = down;
      this.#downTimer = setTimeout(() => {
        down.due = true;
        this.#schedule();
      }, this.#graceMs);
    } else {
      this.#down.why = why;
      return;
    }
    this.#schedule();
  }

  // ---- the notification server's side (NotifierEvents) -----------------------------------

  /** The user chose an action: `deny` on a request's notification denies that request. */
  action(id: number, key: string): void {
    if (key !== "deny") return;
    const request = [...this.#shown].find(([, n]) => n === id)?.[0];
    if (request === undefined || !this.#requests.has(request)) return;
    this.#log(`request ${short(request)}: denied from its notification`);
    this.#deny(request).catch((err) =>
      this.#log(`cannot deny ${short(request)}: ${err instanceof Error ? err.message : err}`)
    );
  }

  /** A notification went away on the server's side. */
  closed(id: number, reason: number): void {
    if (reason === ClosedReason.Closed) return; // our own CloseNotification
    const request = [...this.#shown].find(([, n]) => n === id)?.[0];
    if (request !== undefined) {
      this.#shown.delete(request);
      this.#dismissed.add(request);
    } else if (id === this.#gatherId) {
      this.#gatherId = null;
      this.#gatherDismissed = new Set(this.#requests.keys());
    } else if (id === this.#downId) {
      this.#downId = null;
    }
  }

  /** The notification server changed: its ids are void; show everything again. */
  serverChanged(): void {
    this.#shown.clear();
    this.#gatherId = null;
    this.#gatherText = "";
    this.#downId = null;
    if (this.#down) this.#downTold = false;
    this.#schedule();
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  /** Resolves once every change so far is on the server (for tests and for `stop`). */
  async settled(): Promise<void> {
    while (this.#timer !== undefined || this.#running) {
      if (this.#timer !== undefined) {
        clearTimeout(this.#timer);
        this.#timer = undefined;
        this.#kick();
      }
      await this.#running;
    }
  }

  /** Closes every notification it opened and stops. */
  async stop(): Promise<void> {
    this.#requests.clear();
    this.#down = null;
    clearTimeout(this.#downTimer);
    this.#schedule();
    await this.settled();
    this.#stopped = true;
  }

  // ---- rendering ---------------------------------------------------------------------------

  #forget(id: string): void {
    this.#requests.delete(id);
    this.#dismissed.delete(id);
  }

  #schedule(): void {
    if (this.#stopped) return;
    this.#dirty = true;
    if (this.#timer === undefined && !this.#running) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#kick();
      }, this.#settleMs);
    }
  }

  #kick(): void {
    if (this.#running) return;
    this.#running = (async () => {
      while (this.#dirty) {
        this.#dirty = false;
        await this.#render();
      }
    })().finally(() => this.#running = null);
  }

  /** Makes the server show what the state says; errors are logged once per failing streak. */
  async #render(): Promise<void> {
    try {
      await this.#renderDown();
      await this.#renderRequests();
      if (this.#failing) this.#log("notifications work again");
      this.#failing = false;
    } catch (err) {
      if (!this.#failing) {
        this.#log(
          `cannot show notifications (${
            err instanceof Error ? err.message : err
          }); continuing without`,
        );
      }
      this.#failing = true;
    }
  }

  async #renderDown(): Promise<void> {
    if (this.#down?.due && !this.#downTold) {
      this.#downTold = true;
      this.#downId = await this.#notifier.notify(this.#downNotice(this.#down!.why));
      this.#log("notified: the approval daemon cannot be reached");
    } else if (this.#down === null && this.#downId !== null) {
      const id = this.#downId;
      this.#downId = null;
      await this.#notifier.close(id);
    }
  }

  async #renderRequests(): Promise<void> {
    const n = this.#requests.size;
    if (n === 0) this.#gathered = false;
    else if (n > this.#maxOpen) this.#gathered = true;

    // Notifications of requests that are gone, or all of them once gathered.
    for (const [request, id] of [...this.#shown]) {
      if (this.#gathered || !this.#requests.has(request)) {
        this.#shown.delete(request);
        await this.#notifier.close(id);
      }
    }
    if (!this.#gathered) {
      if (this.#gatherId !== null) {
        const id = this.#gatherId;
        this.#gatherId = null;
        await this.#notifier.close(id);
      }
      this.#gatherText = "";
      this.#gatherDismissed = null;
      for (const [id, p] of [...this.#requests]) {
        if (this.#shown.has(id) || this.#dismissed.has(id)) continue;
        const nid = await this.#notifier.notify(this.#requestNotice(p));
        this.#shown.set(id, nid);
        if (!this.#requests.has(id)) this.#dirty = true; // ended meanwhile: closed next round
      }
      return;
    }
    const covered = this.#gatherDismissed;
    if (covered && [...this.#requests.keys()].every((id) => covered.has(id))) return;
    const spec = this.#gatherNotice();
    const text = `${spec.summary}\n${spec.body}`;
    if (this.#gatherId !== null && text === this.#gatherText) return;
    this.#gatherId = await this.#notifier.notify(spec, this.#gatherId ?? 0);
    this.#gatherText = text;
    this.#gatherDismissed = null;
  }

  #whereToApprove(): string {
    return `Approve on VT ${this.#vt}: Ctrl+Alt+F${this.#vt}`;
  }

  #requestNotice(p: PendingSummary): NotificationSpec {
    return {
      summary: title(p),
      body: escapeBodyMarkup(
        `Asked by ${escapeLine(p.program)}\n` +
          `Request ${short(p.id)}. ${this.#whereToApprove()}`,
      ),
      actions: ["deny", "Deny"],
      urgency: Urgency.Critical,
    };
  }

  #gatherNotice(): NotificationSpec {
    const all = [...this.#requests.values()];
    const lines = all.slice(0, LISTED).map((p) =>
      `${short(p.id)} ${title(p)} (${escapeLine(basename(p.program))})`
    );
    if (all.length > LISTED) lines.push(`… and ${all.length - LISTED} more`);
    lines.push(this.#whereToApprove());
    return {
      summary: `${all.length} ${all.length === 1 ? "request" : "requests"} waiting for approval`,
      body: escapeBodyMarkup(lines.join("\n")),
      actions: [],
      urgency: Urgency.Critical,
    };
  }

  #downNotice(why: string): NotificationSpec {
    return {
      summary:
        "Secrets and signatures unavailable: the approval daemon is not running or not answering",
      body: escapeBodyMarkup(
        "Programs asking for a secret or a signature get an error until it is back; " +
          "the agent reconnects by itself.\n" +
          "Check it: systemctl status secrets-dispatcher-daemon@$USER " +
          "(the demo: restart deno task demo).\n" +
          `(${escapeLine(why)})`,
      ),
      actions: [],
      urgency: Urgency.Normal,
    };
  }
}

/** The notification title of a request: the operation and its object, one visible line. */
function title(p: PendingSummary): string {
  const what = escapeLine(p.summary);
  const text = p.kind.startsWith("sign.") ? `sign ${what}` : what;
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function short(id: string): string {
  return id.slice(0, SHORT_ID_LENGTH);
}

function basename(program: string): string {
  const first = program.split(" ")[0];
  return first.slice(first.lastIndexOf("/") + 1) || program;
}
