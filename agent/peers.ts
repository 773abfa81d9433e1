/**
 * Noticing that a client connection left the session bus: one `NameOwnerChanged` match rule
 * per watched unique name (D-Bus specification, "Match Rules", `arg0`), added when the client
 * first holds state at the agent (a session, a prompt, a request, an approval) and removed when
 * it holds none, so a long-lived agent does not pile up rules (pitfall #25).
 *
 * @module
 */

import { type Bus, type Message, MessageType, nameOwnerChangedRule } from "../lib/dbus.ts";

/** Time allowed to the bus calls made here, in milliseconds. */
const CALL_TIMEOUT_MS = 3000;

/** Watches client connections and reports each one's departure once. */
export class PeerWatch {
  #bus: Bus;
  #onGone: (name: string) => void;
  #watched = new Map<string, Promise<void>>();
  #listener: (msg: Message) => void;

  /**
   * @param bus the session bus
   * @param onGone called once for each watched connection that left the bus
   */
  constructor(bus: Bus, onGone: (name: string) => void) {
    this.#bus = bus;
    this.#onGone = onGone;
    this.#listener = (msg) => {
      if (
        msg.type === MessageType.SIGNAL && msg.sender === "org.freedesktop.DBus" &&
        msg.member === "NameOwnerChanged" && msg.signature === "sss"
      ) {
        const [name, , newOwner] = msg.body as string[];
        if (newOwner === "" && this.#watched.has(name)) this.#gone(name);
      }
    };
    bus.raw.on("message", this.#listener);
  }

  /** True while `name` is watched. */
  watching(name: string): boolean {
    return this.#watched.has(name);
  }

  /**
   * Starts watching a unique name (once). If the connection left before the rule was in place,
   * the departure is reported all the same.
   *
   * @param name a unique name such as `:1.42`
   */
  watch(name: string): Promise<void> {
    let w = this.#watched.get(name);
    if (!w) {
      w = this.#add(name);
      this.#watched.set(name, w);
    }
    return w;
  }

  async #add(name: string): Promise<void> {
    try {
      await this.#bus.addMatch(nameOwnerChangedRule(name), { timeoutMs: CALL_TIMEOUT_MS });
      const [has] = await this.#bus.callBus("NameHasOwner", "s", [name], {
        timeoutMs: CALL_TIMEOUT_MS,
      });
      if (has === false) queueMicrotask(() => this.#gone(name));
    } catch {
      // The bus did not answer: treat the client as gone rather than keep state forever.
      queueMicrotask(() => this.#gone(name));
    }
  }

  #gone(name: string): void {
    if (!this.#watched.has(name)) return;
    this.unwatch(name);
    this.#onGone(name);
  }

  /** Stops watching a name (its match rule is removed in the background). */
  unwatch(name: string): void {
    const w = this.#watched.get(name);
    if (!w) return;
    this.#watched.delete(name);
    w.then(() =>
      this.#bus.callBus("RemoveMatch", "s", [nameOwnerChangedRule(name)], {
        timeoutMs: CALL_TIMEOUT_MS,
      })
    ).catch(() => {});
  }

  /** The names watched now. */
  names(): string[] {
    return [...this.#watched.keys()];
  }

  /** Stops listening (the match rules go with the connection). */
  close(): void {
    this.#bus.raw.removeListener("message", this.#listener);
    this.#watched.clear();
  }
}
