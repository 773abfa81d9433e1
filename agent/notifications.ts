/**
 * A client of the desktop's notification server, `org.freedesktop.Notifications` on the session
 * bus (Desktop Notifications Specification 1.2): `Notify`, `CloseNotification`, and the
 * `ActionInvoked` and `NotificationClosed` signals of the server that owns the name now.
 *
 * Every call has its own timeout ({@link NOTIFY_TIMEOUT_MS}); a missing server is an error the
 * caller may ignore (the agent works without notifications). Signals are only taken from the
 * connection that owns the name (watched with `NameOwnerChanged`); when another server takes
 * over, the ids of the old one mean nothing and {@link NotifierEvents.serverChanged} says so.
 *
 * @module
 */

import { type Bus, type Message, MessageType, nameOwnerChangedRule, Variant } from "../lib/dbus.ts";

/** The notification server's well-known name, object path and interface (spec 1.2). */
export const NOTIFICATIONS_NAME = "org.freedesktop.Notifications";
/** Object path of the notification server. */
export const NOTIFICATIONS_PATH = "/org/freedesktop/Notifications";
/** Interface of the notification server. */
export const NOTIFICATIONS_IFACE = "org.freedesktop.Notifications";

/** Timeout of each call to the notification server, in milliseconds. */
export const NOTIFY_TIMEOUT_MS = 2000;

/** Urgency levels of the `urgency` hint (byte): low, normal, critical. */
export const Urgency = { Low: 0, Normal: 1, Critical: 2 } as const;

/** `NotificationClosed` reasons (spec 1.2, "Signals"). */
export const ClosedReason = { Expired: 1, Dismissed: 2, Closed: 3, Undefined: 4 } as const;

/** One notification to show. */
export interface NotificationSpec {
  /** One line, plain text (the spec does not allow markup here). */
  summary: string;
  /**
   * The body; the server may interpret a small markup subset, so text from outside must have
   * `&`, `<` and `>` escaped (see {@link escapeBodyMarkup}).
   */
  body: string;
  /** Action key and label pairs, e.g. `["deny", "Deny"]` (empty for none). */
  actions: string[];
  /** `urgency` hint: 0 low, 1 normal, 2 critical. */
  urgency: 0 | 1 | 2;
}

/** Shows and closes notifications; the agent's notices use it (tests use a fake). */
export interface Notifier {
  /**
   * Shows `spec` (`Notify`), replacing notification `replacesId` when it is not 0.
   *
   * @returns the server's id of the notification
   * @throws {Error} when there is no server or it does not answer in time
   */
  notify(spec: NotificationSpec, replacesId?: number): Promise<number>;
  /**
   * Closes a notification (`CloseNotification`).
   *
   * @throws {Error} when there is no server or it does not answer in time
   */
  close(id: number): Promise<void>;
}

/** What the server tells about the notifications. */
export interface NotifierEvents {
  /** The user chose an action (`ActionInvoked`). */
  action(id: number, key: string): void;
  /** A notification went away (`NotificationClosed`); `reason` is a {@link ClosedReason}. */
  closed(id: number, reason: number): void;
  /** The server changed or left: every id it gave is void. */
  serverChanged(): void;
}

/**
 * Escapes the three characters the specification's body markup gives a meaning to (`&`, `<`,
 * `>`); nothing else (spec 1.2, "Markup": servers without markup support show the text as is,
 * and other entities are not part of the subset).
 */
export function escapeBodyMarkup(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** {@link Notifier} over the session bus. */
export class DesktopNotifications implements Notifier {
  #bus: Bus;
  #events: NotifierEvents;
  #appName: string;
  #icon: string;
  #owner: string | null = null;
  /** Owner changes seen (a change during `start` wins over its `GetNameOwner`). */
  #ownerChanges = 0;
  #listener: (msg: Message) => void;
  #stopped = false;

  /**
   * @param bus the desktop session bus
   * @param options `events` to report to; `appName` (default `secrets-dispatcher`) and `icon`
   *   (a freedesktop icon name, default `dialog-password`)
   */
  constructor(
    bus: Bus,
    options: { events: NotifierEvents; appName?: string; icon?: string },
  ) {
    this.#bus = bus;
    this.#events = options.events;
    this.#appName = options.appName ?? "secrets-dispatcher";
    this.#icon = options.icon ?? "dialog-password";
    this.#listener = (msg) => this.#onMessage(msg);
  }

  /**
   * Starts listening: match rules for the server's signals and its owner changes, then asks who
   * owns the name now (none is fine: a server may be activated by the first `Notify`).
   *
   * @throws {BusUnavailableError} when the session bus does not answer
   */
  async start(): Promise<void> {
    this.#bus.raw.on("message", this.#listener);
    await this.#bus.addMatch(
      `type='signal',sender='${NOTIFICATIONS_NAME}',path='${NOTIFICATIONS_PATH}',` +
        `interface='${NOTIFICATIONS_IFACE}'`,
      { timeoutMs: NOTIFY_TIMEOUT_MS },
    );
    await this.#bus.addMatch(nameOwnerChangedRule(NOTIFICATIONS_NAME), {
      timeoutMs: NOTIFY_TIMEOUT_MS,
    });
    const seen = this.#ownerChanges;
    try {
      const [owner] = await this.#bus.callBus("GetNameOwner", "s", [NOTIFICATIONS_NAME], {
        timeoutMs: NOTIFY_TIMEOUT_MS,
      });
      if (this.#ownerChanges === seen) this.#owner = String(owner);
    } catch { /* no server yet */ }
  }

  /** Stops listening (the match rules go with the connection). */
  stop(): void {
    this.#stopped = true;
    this.#bus.raw.removeListener("message", this.#listener);
  }

  /** See {@link Notifier.notify}: `expire_timeout` 0 (never expires), no `transient` hint. */
  async notify(spec: NotificationSpec, replacesId = 0): Promise<number> {
    const [id] = await this.#bus.call({
      destination: NOTIFICATIONS_NAME,
      path: NOTIFICATIONS_PATH,
      interface: NOTIFICATIONS_IFACE,
      member: "Notify",
      signature: "susssasa{sv}i",
      body: [
        this.#appName,
        replacesId,
        this.#icon,
        spec.summary,
        spec.body,
        spec.actions,
        { urgency: new Variant("y", spec.urgency) },
        0,
      ],
    }, { timeoutMs: NOTIFY_TIMEOUT_MS, replySignature: "u" });
    return Number(id);
  }

  /** See {@link Notifier.close}. */
  async close(id: number): Promise<void> {
    await this.#bus.call({
      destination: NOTIFICATIONS_NAME,
      path: NOTIFICATIONS_PATH,
      interface: NOTIFICATIONS_IFACE,
      member: "CloseNotification",
      signature: "u",
      body: [id],
    }, { timeoutMs: NOTIFY_TIMEOUT_MS });
  }

  #onMessage(msg: Message): void {
    if (this.#stopped || msg.type !== MessageType.SIGNAL) return;
    if (
      msg.sender === "org.freedesktop.DBus" && msg.member === "NameOwnerChanged" &&
      msg.signature === "sss" && (msg.body as string[])[0] === NOTIFICATIONS_NAME
    ) {
      const [, , newOwner] = msg.body as string[];
      this.#owner = newOwner || null;
      this.#ownerChanges++;
      this.#events.serverChanged();
      return;
    }
    if (
      msg.interface !== NOTIFICATIONS_IFACE || msg.path !== NOTIFICATIONS_PATH ||
      this.#owner === null || msg.sender !== this.#owner
    ) return;
    // Handled on the next turn of the event loop: the server's reply to `Notify` (which tells
    // the id) may arrive in the same read as this signal, and the code awaiting that reply runs
    // only after the signals of that read were dispatched. Timers keep the signals' order.
    if (msg.member === "ActionInvoked" && msg.signature === "us") {
      const [id, key] = msg.body as [number, string];
      setTimeout(() => this.#stopped || this.#events.action(Number(id), String(key)), 0);
    } else if (msg.member === "NotificationClosed" && msg.signature === "uu") {
      const [id, reason] = msg.body as [number, number];
      setTimeout(() => this.#stopped || this.#events.closed(Number(id), Number(reason)), 0);
    }
  }
}
