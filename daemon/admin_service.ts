/**
 * The admin interface `org.secretsdispatcher.Admin1` on the companion bus: list, get, approve,
 * deny, history, grants and deny rules, the lock, the store's status and unlocking, and the
 * `Changed` signal. It exists only there: nothing reachable from the
 * system bus can approve anything (DESIGN.md §4). Members and signatures: `ADMIN_MEMBERS` in
 * `lib/protocol.ts`.
 *
 * @module
 */

import { type Bus, type Message, MessageType, peerCredentials } from "../lib/dbus.ts";
import {
  ADMIN_IFACE,
  ADMIN_MEMBERS,
  ADMIN_NAME,
  ADMIN_PATH,
  type AdminStoreStatus,
  type DenyRuleOptions,
  Errors,
  type GrantOptions,
  type RequestView,
} from "../lib/protocol.ts";
import { type BackendStatus, StoreUnavailableError } from "./backend.ts";
import type { HistorySink } from "./history.ts";
import { type StoreUnlocker, UnlockNotSupportedError, WrongPasswordError } from "./store_unlock.ts";
import { RequestError, type RequestManager } from "./requests.ts";

/**
 * Largest admin reply, in UTF-16 code units of JSON; the companion bus allows 128 MiB messages
 * (deploy/dbus.ts), and a code unit can take up to 3 bytes of UTF-8.
 */
const MAX_REPLY_CHARS = 40 * 1024 * 1024;

/** The options argument of `ApproveWithGrant`/`DenyWithRule`: a JSON object. */
function parseOptions(arg: unknown): Record<string, unknown> {
  try {
    const v = JSON.parse(String(arg));
    if (typeof v === "object" && v !== null && !Array.isArray(v)) return v;
  } catch { /* below */ }
  throw new RequestError(Errors.InvalidArgs, "options must be a JSON object");
}

/** Serves the admin interface. */
export class AdminService {
  #bus: Bus;
  #manager: RequestManager;
  #history: HistorySink;
  #adminUid: number;
  #log: (line: string) => void;
  #status: (() => Promise<BackendStatus>) | null;
  #unlocker: StoreUnlocker | null;
  #onLock: (() => Promise<string[]>) | null;

  /**
   * @param bus the companion bus connection
   * @param options the request manager, the history, the only uid allowed to call (the
   *   companion's own), the secret store's status (never throwing), its unlocker, what else a
   *   lock does (`onLock`: lock the store, forget gpg passphrases; returns what failed), and a
   *   logger
   */
  constructor(
    bus: Bus,
    options: {
      manager: RequestManager;
      history: HistorySink;
      adminUid: number;
      status?: () => Promise<BackendStatus>;
      unlocker?: StoreUnlocker;
      onLock?: () => Promise<string[]>;
      log?: (line: string) => void;
    },
  ) {
    this.#bus = bus;
    this.#manager = options.manager;
    this.#history = options.history;
    this.#adminUid = options.adminUid;
    this.#log = options.log ?? (() => {});
    this.#status = options.status ?? null;
    this.#unlocker = options.unlocker ?? null;
    this.#onLock = options.onLock ?? null;
  }

  /**
   * Owns the admin name and starts answering.
   *
   * @throws {Error} when another daemon already owns the name
   */
  async start(): Promise<void> {
    this.#bus.raw.addMethodHandler((msg: Message) => this.#dispatch(msg));
    await this.#bus.requestName(ADMIN_NAME);
  }

  /** Broadcasts `Changed(id, state)` on the companion bus. */
  changed(view: RequestView): void {
    this.#signalChanged(view.id, view.state);
  }

  /** Broadcasts `Changed("", "store")`: the store's lock state may have changed. */
  storeChanged(): void {
    this.#signalChanged("", "store");
  }

  #signalChanged(id: string, state: string): void {
    try {
      this.#bus.sendSignal({
        path: ADMIN_PATH,
        interface: ADMIN_IFACE,
        member: "Changed",
        signature: "ss",
        body: [id, state],
      });
    } catch { /* companion bus gone; main notices */ }
  }

  /**
   * The store's state for `Status`: the console's lock, whether its passphrase can open it, and
   * whether that passphrase would create it (no keyring yet). Never throws.
   */
  async #storeStatus(): Promise<AdminStoreStatus> {
    const consoleLock = this.#manager.locked;
    const base: BackendStatus = this.#status
      ? await this.#status()
      : { state: "unavailable", message: "no secret store is configured" };
    let passwordUnlock: boolean | null = null;
    if (base.state === "locked" && !consoleLock) {
      passwordUnlock = this.#unlocker ? await this.#unlocker.supported().catch(() => null) : false;
    }
    const creates = passwordUnlock === true && base.noKeyring === true;
    return { state: base.state, message: base.message, consoleLock, passwordUnlock, creates };
  }

  #dispatch(msg: Message): boolean {
    if (msg.type !== MessageType.METHOD_CALL || msg.path !== ADMIN_PATH) return false;
    const member = msg.member as keyof typeof ADMIN_MEMBERS;
    const spec = msg.interface === ADMIN_IFACE ? ADMIN_MEMBERS[member] : undefined;
    if (!spec) {
      this.#bus.replyError(
        msg,
        "org.freedesktop.DBus.Error.UnknownMethod",
        `no method ${msg.member}`,
      );
      return true;
    }
    (async () => {
      if ((msg.signature ?? "") !== spec.in) {
        throw new RequestError(Errors.InvalidArgs, `expected (${spec.in}), got (${msg.signature})`);
      }
      const { uid } = await peerCredentials(this.#bus, msg.sender);
      if (uid !== this.#adminUid) {
        throw new RequestError(Errors.AccessDenied, "only the companion user may administer");
      }
      const body = await this.#call(member, msg.body);
      this.#bus.reply(msg, spec.out, body === undefined ? [] : [body]);
    })().catch((err) => {
      if (err instanceof RequestError) this.#bus.replyError(msg, err.dbusName, err.message);
      else {
        this.#log(`admin ${msg.member} failed: ${err instanceof Error ? err.stack : err}`);
        this.#bus.replyError(msg, Errors.Failed, "internal error in the daemon (see its log)");
      }
    });
    return true;
  }

  /** Unlocks the store; logs the outcome, never the password. */
  async #unlock(password: Uint8Array): Promise<void> {
    if (!this.#unlocker) {
      throw new RequestError(Errors.NotSupported, "this daemon has no secret store to unlock");
    }
    let outcome: "unlocked" | "created";
    try {
      outcome = await this.#unlocker.unlock(password);
    } catch (err) {
      if (err instanceof WrongPasswordError) {
        this.#log("unlock: wrong password");
        throw new RequestError(Errors.WrongPassword, err.message);
      }
      if (err instanceof UnlockNotSupportedError) {
        throw new RequestError(Errors.NotSupported, err.message);
      }
      if (err instanceof StoreUnavailableError) {
        throw new RequestError(Errors.StoreUnavailable, err.message);
      }
      throw err;
    }
    this.#manager.unlock(); // the store is open again: so is the console's lock
    this.#log(
      outcome === "created"
        ? "unlock: the secret store had no keyring: created it with the passphrase; unlocked"
        : "unlock: the secret store is unlocked",
    );
    this.storeChanged();
  }

  async #call(member: keyof typeof ADMIN_MEMBERS, args: unknown[]): Promise<string | undefined> {
    switch (member) {
      case "List": {
        const json = JSON.stringify(this.#manager.summaries());
        // The bus disconnects a sender whose message exceeds its limit: refuse instead.
        if (json.length > MAX_REPLY_CHARS) {
          throw new RequestError(
            Errors.LimitExceeded,
            "the pending requests are too large to list at once; deny some by id (ctl deny)",
          );
        }
        return json;
      }
      case "Get":
        return JSON.stringify(this.#manager.get(args[0] as string));
      case "Approve":
        this.#manager.approve(args[0] as string, args[1] as string);
        this.#log(`approved ${(args[0] as string).slice(0, 8)}`);
        return undefined;
      case "Deny":
        this.#manager.deny(args[0] as string, args[1] as string);
        this.#log(`denied ${(args[0] as string).slice(0, 8)}`);
        return undefined;
      case "History": {
        const limit = Number(args[0]) || 100;
        return JSON.stringify(this.#history.tail(Math.min(limit, 2000)));
      }
      case "UnlockStore": {
        const password = new Uint8Array(args[0] as Uint8Array);
        try {
          await this.#unlock(password);
        } finally {
          password.fill(0);
          (args[0] as Uint8Array).fill(0);
        }
        return undefined;
      }
      case "ApproveWithGrant": {
        const rule = this.#manager.approveWithGrant(
          args[0] as string,
          args[1] as string,
          parseOptions(args[2]) as GrantOptions,
        );
        this.#log(`approved ${(args[0] as string).slice(0, 8)} with grant ${rule.id}`);
        return JSON.stringify(rule);
      }
      case "DenyWithRule": {
        const rule = this.#manager.denyWithRule(
          args[0] as string,
          args[1] as string,
          parseOptions(args[2]) as DenyRuleOptions,
        );
        this.#log(`denied ${(args[0] as string).slice(0, 8)} with rule ${rule.id}`);
        return JSON.stringify(rule);
      }
      case "Rules":
        return JSON.stringify(this.#manager.rules());
      case "Revoke":
        this.#manager.revoke(args[0] as string);
        this.#log(`revoked ${args[0]}`);
        return undefined;
      case "Lock":
        this.#manager.lock();
        this.#log("locked on the console");
        for (const problem of await (this.#onLock?.() ?? Promise.resolve([]))) {
          this.#log(`lock: ${problem}`);
        }
        this.storeChanged();
        return undefined;
      case "Unlock":
        this.#manager.unlock();
        this.#log("unlocked on the console");
        this.storeChanged();
        return undefined;
      case "Status":
        return JSON.stringify(await this.#storeStatus());
    }
  }
}
