/**
 * A small recording notification server for private desktop buses (tests and the demo): it owns
 * `org.freedesktop.Notifications` and implements the server side of the Desktop Notifications
 * Specification 1.2 (`Notify`, `CloseNotification`, `GetCapabilities`, `GetServerInformation`;
 * signals `NotificationClosed` and `ActionInvoked`), keeping every call it got so a test can
 * assert the exact arguments, and telling an `onEvent` hook (the demo prints to a log file).
 *
 * Not a desktop: nothing is drawn, notifications never expire by themselves, and a test plays
 * the user with {@link NotificationServer.invokeAction} and {@link NotificationServer.dismiss}.
 *
 * @module
 */

import { Bus, type Message, MessageType } from "../lib/dbus.ts";

const NAME = "org.freedesktop.Notifications";
const PATH = "/org/freedesktop/Notifications";
const IFACE = "org.freedesktop.Notifications";

/** One `Notify` call as the server received it. */
export interface NotifyCall {
  /** The id the server answered with. */
  id: number;
  appName: string;
  replacesId: number;
  appIcon: string;
  summary: string;
  body: string;
  /** Action key and label pairs, as sent. */
  actions: string[];
  /** Hints: name → `{signature, value}` of the variant. */
  hints: Record<string, { signature: string; value: unknown }>;
  expireTimeout: number;
  /** Unique name of the connection that called. */
  sender: string;
}

/** What happened at the server, in order. */
export type NotificationEvent =
  | { type: "notify"; call: NotifyCall }
  | { type: "close"; id: number; sender: string }
  | { type: "closed"; id: number; reason: number }
  | { type: "action"; id: number; key: string };

/** A running recording server. */
export interface NotificationServer {
  /** Every event so far, in order. */
  readonly events: NotificationEvent[];
  /** Every `Notify` call so far. */
  readonly notified: NotifyCall[];
  /** The notifications open now (shown and not closed), in the order shown. */
  open(): NotifyCall[];
  /** The most notifications that were open at the same time so far. */
  peak(): number;
  /** The user clicks an action: `ActionInvoked(id, key)` (then the server closes it, reason 2). */
  invokeAction(id: number, key: string): void;
  /** The user dismisses a notification: `NotificationClosed(id, 2)`. */
  dismiss(id: number): void;
  /** Leaves the bus. */
  stop(): void;
}

/**
 * Starts the server on the bus at `address` and takes `org.freedesktop.Notifications`.
 *
 * @param address a D-Bus address (`unix:path=...`)
 * @param options `onEvent` receives each event as it happens
 * @throws {Error} when the name is already owned
 * @throws {BusUnavailableError} when the bus cannot be reached
 */
export async function startNotificationServer(
  address: string,
  options: { onEvent?: (e: NotificationEvent) => void } = {},
): Promise<NotificationServer> {
  const bus = await Bus.connect(address);
  const events: NotificationEvent[] = [];
  const notified: NotifyCall[] = [];
  const shown = new Map<number, NotifyCall>();
  let next = 1;
  let peak = 0;
  const record = (e: NotificationEvent) => {
    events.push(e);
    try {
      options.onEvent?.(e);
    } catch { /* a hook's problem */ }
  };
  const signal = (member: string, signature: string, body: unknown[]) => {
    try {
      bus.sendSignal({ path: PATH, interface: IFACE, member, signature, body });
    } catch { /* closed */ }
  };
  const closed = (id: number, reason: number) => {
    if (!shown.delete(id)) return;
    record({ type: "closed", id, reason });
    signal("NotificationClosed", "uu", [id, reason]);
  };
  bus.raw.addMethodHandler((msg: Message) => {
    if (msg.type !== MessageType.METHOD_CALL || msg.path !== PATH) return false;
    const b = msg.body ?? [];
    switch (`${msg.interface}.${msg.member}`) {
      case `${IFACE}.Notify`: {
        if (msg.signature !== "susssasa{sv}i") {
          bus.replyError(msg, "org.freedesktop.DBus.Error.InvalidArgs", `got ${msg.signature}`);
          return true;
        }
        const replacesId = Number(b[1]);
        const id = replacesId !== 0 && shown.has(replacesId) ? replacesId : next++;
        const call: NotifyCall = {
          id,
          appName: String(b[0]),
          replacesId,
          appIcon: String(b[2]),
          summary: String(b[3]),
          body: String(b[4]),
          actions: (b[5] as string[]).map(String),
          hints: Object.fromEntries(
            Object.entries(b[6] as Record<string, { signature: string; value: unknown }>)
              .map(([k, v]) => [k, { signature: v.signature, value: v.value }]),
          ),
          expireTimeout: Number(b[7]),
          sender: String(msg.sender),
        };
        notified.push(call);
        shown.set(id, call);
        peak = Math.max(peak, shown.size);
        record({ type: "notify", call });
        bus.reply(msg, "u", [id]);
        return true;
      }
      case `${IFACE}.CloseNotification`: {
        const id = Number(b[0]);
        record({ type: "close", id, sender: String(msg.sender) });
        bus.reply(msg);
        closed(id, 3);
        return true;
      }
      case `${IFACE}.GetCapabilities`:
        bus.reply(msg, "as", [["actions", "body", "body-markup"]]);
        return true;
      case `${IFACE}.GetServerInformation`:
        bus.reply(msg, "ssss", ["recording server", "secrets-dispatcher", "0", "1.2"]);
        return true;
    }
    return false;
  });
  await bus.requestName(NAME);
  return {
    events,
    notified,
    open: () => [...shown.values()],
    peak: () => peak,
    invokeAction(id, key) {
      record({ type: "action", id, key });
      signal("ActionInvoked", "us", [id, key]);
      closed(id, 2);
    },
    dismiss: (id) => closed(id, 2),
    stop: () => bus.close(),
  };
}
