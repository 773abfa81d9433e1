/**
 * The desktop agent's service on a session bus connection: owns `org.freedesktop.secrets`,
 * answers every method call through {@link SecretService} (always a reply, never a stack trace,
 * never an unbounded wait), sends prompts' `Completed` unicast to their owners, and drops a
 * client's sessions, prompts, approvals and pending requests when it leaves the bus.
 *
 * It also keeps the desktop's notifications about pending requests and about an unreachable
 * daemon (`notices.ts` through `org.freedesktop.Notifications` on the same bus).
 *
 * `startAgent` is what `agent/main.ts` runs and what integration tests start with their own bus
 * connections and port (the real daemon through `DaemonPort`, or a fake).
 *
 * @module
 */

import { type Bus, type Message, MessageType, peerCredentials, Variant } from "../lib/dbus.ts";
import { READ_WINDOW_MS } from "../lib/protocol.ts";
import { Iface, SecretErrors, SECRETS_NAME } from "../lib/secret_service.ts";
import { Approvals } from "./approvals.ts";
import { ClientReports, type ProcReader, readProcFacts } from "./client_info.ts";
import { ServiceError, toServiceError } from "./errors.ts";
import { NoticeBoard, type NoticeBoardOptions } from "./notices.ts";
import { DesktopNotifications } from "./notifications.ts";
import { PeerWatch } from "./peers.ts";
import type { DispatcherPort } from "./port.ts";
import { PromptTable } from "./prompts.ts";
import { type Call, type Reply, SecretService } from "./service.ts";
import { SessionTable } from "./sessions.ts";

/** Default time `GetSecret(s)`, `SetSecret` and `Properties.Set` wait for the human, ms. */
export const DEFAULT_READ_WAIT_MS = 20_000;

/**
 * Extra time after the wait before a call is answered `Failed` by the watchdog, ms: room for
 * one more daemon call (4 s), so that with the default wait every call is answered within 24 s,
 * before the ~25 s clients give up.
 */
const WATCHDOG_SLACK_MS = 4_000;

/** `RequestName` flags (D-Bus specification, "Message Bus Messages"). */
const REPLACE_EXISTING = 2;
const DO_NOT_QUEUE = 4;

/** Options of {@link startAgent}. */
export interface AgentOptions {
  /** The desktop session bus connection to serve on (the caller keeps owning it). */
  sessionBus: Bus;
  /** The approval daemon. */
  port: DispatcherPort;
  /**
   * How long `GetSecret(s)`, `SetSecret` and `Properties.Set` wait for the human before
   * answering `IsLocked`, ms (default {@link DEFAULT_READ_WAIT_MS}, below the ~25 s client
   * timeout).
   */
  readWaitMs?: number;
  /** How long an approval lasts, ms (default `READ_WINDOW_MS`). */
  windowMs?: number;
  /** Take the name from its current owner (`REPLACE_EXISTING`). */
  replace?: boolean;
  /** The uid whose processes' /proc facts are reported (default: the agent's own). */
  agentUid?: number;
  /** Reads /proc facts of a pid (default: `readlink`/`cat` subprocesses). */
  readProc?: ProcReader;
  /** Receives log lines (default: stderr). Never given a secret value. */
  log?: (line: string) => void;
  /**
   * Desktop notifications about pending requests and an unreachable daemon, through
   * `org.freedesktop.Notifications` on the session bus (default true).
   */
  notifications?: boolean;
  /** The VT the console runs on, named in the notifications (default 8). */
  vt?: number;
  /** Timing of the notifications (`settleMs`, `downGraceMs`, `maxOpen`; see `notices.ts`). */
  noticeTiming?: Pick<NoticeBoardOptions, "settleMs" | "downGraceMs" | "maxOpen">;
}

/** A running agent. */
export interface AgentHandle {
  /** Resolves with the reason when the agent lost its name or its session bus. */
  readonly lost: Promise<string>;
  /** Stops serving: withdraws pending requests, releases the name. Leaves the bus open. */
  stop(): Promise<void>;
}

/** Another program owns `org.freedesktop.secrets`. */
export class NameTakenError extends Error {
  /** The owner's unique name, pid and command line, as far as they could be found. */
  readonly owner: { busName: string | null; pid: number | null; cmdline: string[] | null };
  /**
   * @param owner who owns the name
   * @param options `replaceTried`: the name was asked for with `REPLACE_EXISTING` (the owner
   *   does not allow replacement)
   */
  constructor(owner: NameTakenError["owner"], options: { replaceTried: boolean }) {
    const who = owner.busName === null ? "another connection" : [
      `connection ${owner.busName}`,
      owner.pid === null
        ? ""
        : ` (pid ${owner.pid}${owner.cmdline ? `: ${owner.cmdline.join(" ")}` : ""})`,
    ].join("");
    super(
      `${SECRETS_NAME} is already owned by ${who}; ` +
        (options.replaceTried
          ? "it does not allow replacement: stop it first"
          : "stop it or start with --replace"),
    );
    this.name = "NameTakenError";
    this.owner = owner;
  }
}

/**
 * Starts serving the Secret Service on `sessionBus` and takes `org.freedesktop.secrets`
 * (without queueing; with `replace`, taking it over).
 *
 * @returns the running agent
 * @throws {NameTakenError} when another connection owns the name
 * @throws {BusUnavailableError} when the bus does not answer
 */
export async function startAgent(options: AgentOptions): Promise<AgentHandle> {
  const bus = options.sessionBus;
  const log = options.log ?? ((line: string) => console.error(`secrets-dispatcher agent: ${line}`));
  const readWaitMs = options.readWaitMs ?? DEFAULT_READ_WAIT_MS;
  const agentUid = options.agentUid ?? Deno.uid() ?? -1;
  const readProc = options.readProc ?? readProcFacts;

  const sessions = new SessionTable();
  const approvals = new Approvals({ windowMs: options.windowMs ?? READ_WINDOW_MS });
  const reports = new ClientReports(bus, { agentUid, readProc });
  const prompts = new PromptTable((owner, path, r) => {
    try {
      bus.sendSignal({
        path,
        interface: Iface.Prompt,
        member: "Completed",
        signature: "bv",
        body: [r.dismissed, new Variant(r.result.signature, r.result.value)],
      }, { destination: owner });
    } catch { /* the bus is gone */ }
  }, { holdMs: readWaitMs });
  const peers = new PeerWatch(bus, (name) => {
    sessions.dropOwner(name);
    reports.forget(name);
    Promise.all([prompts.dropOwner(name), approvals.dropClient(name)]).catch(() => {});
  });
  const busy = (name: string) =>
    sessions.hasOwner(name) || prompts.hasOwner(name) || approvals.busy(name);

  const service = new SecretService({
    port: options.port,
    reports,
    sessions,
    prompts,
    approvals,
    watch: (client) => peers.watch(client),
    emit: (signal) => {
      try {
        bus.sendSignal(signal);
      } catch { /* the bus is gone */ }
    },
    machineId: async () => {
      const [id] = await bus.call({
        destination: "org.freedesktop.DBus",
        path: "/org/freedesktop/DBus",
        interface: Iface.Peer,
        member: "GetMachineId",
      }, { timeoutMs: 2000 });
      return String(id);
    },
    readWaitMs,
    log,
  });

  // Calls being answered, each with its watchdog.
  const inFlight = new Map<Message, ReturnType<typeof setTimeout>>();
  const answer = (msg: Message, reply: Reply | ServiceError) => {
    const timer = inFlight.get(msg);
    if (timer === undefined) return; // already answered
    clearTimeout(timer);
    inFlight.delete(msg);
    if (reply instanceof ServiceError) bus.replyError(msg, reply.dbusName, reply.message);
    else bus.reply(msg, reply.signature, reply.body);
    reply.after?.();
  };
  const onCall = (msg: Message): boolean => {
    if (msg.type !== MessageType.METHOD_CALL) return false;
    const receivedAt = Date.now();
    inFlight.set(
      msg,
      setTimeout(() =>
        answer(
          msg,
          new ServiceError(
            SecretErrors.Failed,
            "secrets-dispatcher: the agent did not finish in time",
          ),
        ), readWaitMs + WATCHDOG_SLACK_MS),
    );
    const call: Call = {
      sender: String(msg.sender),
      path: String(msg.path),
      interface: msg.interface ?? undefined,
      member: String(msg.member),
      signature: msg.signature ?? "",
      body: msg.body ?? [],
      receivedAt,
    };
    service.handle(call).then(
      (reply) => answer(msg, reply),
      (err) => {
        const e = toServiceError(err);
        if (e.internal) {
          log(`internal error in ${call.interface}.${call.member}: ${(err as Error)?.message}`);
        }
        answer(msg, e);
      },
    );
    return true;
  };
  bus.raw.addMethodHandler(onCall);

  const { promise: lost, resolve: loseWith } = Promise.withResolvers<string>();
  const onSignal = (msg: Message) => {
    if (
      msg.type === MessageType.SIGNAL && msg.sender === "org.freedesktop.DBus" &&
      msg.member === "NameLost" && (msg.body as string[])[0] === SECRETS_NAME
    ) loseWith(`lost the name ${SECRETS_NAME} to another program`);
  };
  bus.raw.on("message", onSignal);
  bus.onClose((why) => loseWith(`the session bus connection ended (${why})`));

  const sweeper = setInterval(() => {
    approvals.sweep();
    for (const name of peers.names()) if (!busy(name)) peers.unwatch(name);
    reports.sweep((name) => peers.watching(name));
  }, 1000);

  // Notifications: the board follows the daemon's events and the server's.
  const events = {
    action: (id: number, key: string) => board?.action(id, key),
    closed: (id: number, reason: number) => board?.closed(id, reason),
    serverChanged: () => board?.serverChanged(),
  };
  const notifier = options.notifications === false
    ? null
    : new DesktopNotifications(bus, { events });
  const board = notifier === null ? null : new NoticeBoard({
    notifier,
    deny: (id) => options.port.denyOwn(id),
    vt: options.vt,
    log,
    ...options.noticeTiming,
  });
  let unlisten = () => {};

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    unlisten();
    await board?.stop();
    notifier?.stop();
    clearInterval(sweeper);
    bus.raw.removeMethodHandler(onCall);
    bus.raw.removeListener("message", onSignal);
    peers.close();
    for (const msg of [...inFlight.keys()]) {
      answer(
        msg,
        new ServiceError(SecretErrors.Failed, "secrets-dispatcher: the agent is stopping"),
      );
    }
    sessions.clear();
    await Promise.all([
      prompts.clear(),
      ...approvals.clients().map((c) => approvals.dropClient(c)),
    ]);
    await bus.callBus("ReleaseName", "s", [SECRETS_NAME], { timeoutMs: 2000 }).catch(() => {});
  };

  try {
    const flags = DO_NOT_QUEUE | (options.replace ? REPLACE_EXISTING : 0);
    const [reply] = await bus.callBus("RequestName", "su", [SECRETS_NAME, flags], {
      timeoutMs: 5000,
    });
    if (reply !== 1 && reply !== 4) {
      throw await nameTaken(bus, { readProc, replaceTried: options.replace ?? false });
    }
  } catch (err) {
    await stop();
    throw err;
  }
  if (notifier && board) {
    try {
      await notifier.start();
    } catch (err) {
      log(`notifications: cannot watch the notification server (${(err as Error).message})`);
    }
    unlisten = options.port.listen(board);
  }
  return { lost, stop };
}

/** Who owns the name, for the error message. */
async function nameTaken(
  bus: Bus,
  options: { readProc: ProcReader; replaceTried: boolean },
): Promise<NameTakenError> {
  let busName: string | null = null;
  let pid: number | null = null;
  let cmdline: string[] | null = null;
  try {
    const [owner] = await bus.callBus("GetNameOwner", "s", [SECRETS_NAME], { timeoutMs: 2000 });
    busName = String(owner);
    pid = (await peerCredentials(bus, busName)).pid;
    if (pid !== null) cmdline = (await options.readProc(pid)).cmdline;
  } catch { /* gone meanwhile, or not ours to read */ }
  return new NameTakenError({ busName, pid, cmdline }, options);
}
