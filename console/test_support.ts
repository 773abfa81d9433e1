/**
 * Test-only helpers (imported by `*_test.ts` files, never by an entrypoint): a private
 * `dbus-daemon`, a fake admin service built on dbus-next's `addMethodHandler`, and hostile
 * fixture requests.
 *
 * Tests using the bus need `--allow-run=dbus-daemon --allow-read --allow-write --allow-net
 * --allow-sys=uid --allow-env`.
 *
 * @module
 */

import dbus from "dbus-next";
import { type UiEvent, type UiState, type Update, update } from "./state.ts";
import { summarize } from "../lib/payload.ts";
import {
  ADMIN_IFACE,
  ADMIN_NAME,
  ADMIN_PATH,
  Errors,
  type HistoryEntry,
  type RequestSummary,
  type RequestView,
  type RuleView,
  summaryOf,
} from "../lib/protocol.ts";

/** The summary the daemon would list for `view` (its one-line summary is derived as it does). */
export function toSummary(view: RequestView): RequestSummary {
  const sec = view.secret;
  const line = sec
    ? `${sec.operation} "${sec.label ?? sec.items[0]?.label ?? ""}"`
    : view.sign
    ? summarize(view.sign.content)
    : view.message ?? "";
  return summaryOf(view, line);
}

/** A private session-type dbus-daemon listening on a socket in a fresh temp dir. */
export interface TestBus {
  /** D-Bus address, `unix:path=...`. */
  address: string;
  /** Socket path. */
  socket: string;
  /** Stops the daemon and removes the temp dir. */
  stop(): Promise<void>;
}

/** Starts a private dbus-daemon (type session, everyone may own and send anything). */
export async function startTestBus(): Promise<TestBus> {
  if (Deno.permissions.querySync({ name: "net" }).state !== "granted") {
    // `--allow-net=unix` does not cover unix sockets: Deno only takes exact `unix:<path>` entries,
    // and these sockets live in fresh temp dirs.
    throw new Error("bus tests need a bare --allow-net (to reach sockets in temp dirs)");
  }
  const dir = await Deno.makeTempDir({ prefix: "sd-console-test-" });
  const socket = `${dir}/bus.sock`;
  const config = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=${socket}</listen>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="false"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`;
  await Deno.writeTextFile(`${dir}/bus.conf`, config);
  const child = new Deno.Command("dbus-daemon", {
    args: ["--nofork", "--nopidfile", `--config-file=${dir}/bus.conf`],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 200; i++) {
    try {
      await Deno.stat(socket);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 10));
    }
  }
  return {
    address: `unix:path=${socket}`,
    socket,
    async stop() {
      try {
        child.kill("SIGTERM");
      } catch {
        // already gone
      }
      await child.status;
      await Deno.remove(dir, { recursive: true });
    },
  };
}

type Bus = ReturnType<typeof dbus.sessionBus>;
type DbusMessage = InstanceType<typeof dbus.Message>;

/** A fake daemon admin service: in-memory requests, records calls, can be told to hang. */
export class FakeAdmin {
  /** Pending and finished requests by id. */
  readonly requests = new Map<string, RequestView>();
  /** History returned by `History`. */
  history: HistoryEntry[] = [];
  /** Every call received: member and body. */
  readonly calls: { member: string; body: unknown[] }[] = [];
  /** Members that never get an answer. */
  readonly hang = new Set<string>();
  /** What `Status` answers (any JSON value, to test the client's checks). */
  status: unknown = { state: "unlocked", message: "test store" };
  /** Errors `UnlockStore` answers, one per call, before it succeeds (D-Bus error names). */
  unlockStoreErrors: string[] = [];
  /** Passwords `UnlockStore` received (bytes as sent). */
  readonly unlockPasswords: Uint8Array[] = [];
  readonly #bus: Bus;

  private constructor(bus: Bus) {
    this.#bus = bus;
  }

  /** Connects to `address`, owns {@link ADMIN_NAME} and serves the admin interface. */
  static async start(
    address: string,
    requests: RequestView[] = [],
  ): Promise<FakeAdmin> {
    const bus = dbus.sessionBus({ busAddress: address });
    bus.on("error", () => {});
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`fake admin: cannot connect to ${address}`)),
          5000,
        );
        bus.on("connect", () => resolve());
      });
    } finally {
      clearTimeout(timer);
    }
    const fake = new FakeAdmin(bus);
    for (const r of requests) fake.requests.set(r.id, structuredClone(r));
    bus.addMethodHandler((msg: DbusMessage) => fake.#handle(msg));
    await bus.requestName(ADMIN_NAME, 0);
    return fake;
  }

  #reply(msg: DbusMessage, signature = "", body: unknown[] = []): void {
    this.#bus.send(dbus.Message.newMethodReturn(msg, signature, body));
  }

  #error(msg: DbusMessage, name: string, text: string): void {
    // dbus-next types say newError takes a string; it takes the Message being answered.
    this.#bus.send(dbus.Message.newError(msg as unknown as string, name, text));
  }

  #find(msg: DbusMessage, prefix: string): RequestView | null {
    const hits = [...this.requests.values()].filter((r) => r.id.startsWith(prefix));
    if (prefix.length < 4 || hits.length === 0) {
      this.#error(msg, Errors.NoSuchRequest, `no request ${prefix}`);
      return null;
    }
    if (hits.length > 1) {
      this.#error(
        msg,
        Errors.AmbiguousId,
        `${prefix} matches ${hits.length} requests`,
      );
      return null;
    }
    return hits[0];
  }

  #handle(msg: DbusMessage): boolean {
    if (msg.interface !== ADMIN_IFACE || msg.path !== ADMIN_PATH) return false;
    this.calls.push({ member: msg.member, body: msg.body });
    if (this.hang.has(msg.member)) return true;
    const body = msg.body as unknown[];
    switch (msg.member) {
      case "List":
        this.#reply(msg, "s", [
          JSON.stringify(
            [...this.requests.values()].filter((r) => r.state === "pending").map(toSummary),
          ),
        ]);
        return true;
      case "Get": {
        const r = this.#find(msg, body[0] as string);
        if (r) this.#reply(msg, "s", [JSON.stringify(r)]);
        return true;
      }
      case "Approve":
      case "Deny": {
        const [id, arg] = body as [string, string];
        const r = this.requests.get(id);
        if (!r) this.#error(msg, Errors.NoSuchRequest, `no request ${id}`);
        else if (r.state !== "pending") {
          this.#error(msg, Errors.NotPending, `request is ${r.state}`);
        } else if (msg.member === "Approve" && arg !== r.digest) {
          this.#error(
            msg,
            Errors.DigestMismatch,
            "digest does not match the request",
          );
        } else {
          r.state = msg.member === "Approve" ? "approved" : "denied";
          r.decidedAt = Date.now();
          this.#reply(msg);
          this.emitChanged(id, r.state);
        }
        return true;
      }
      case "ApproveWithGrant": {
        const [id, digest, options] = body as [string, string, string];
        const r = this.requests.get(id);
        if (!r) this.#error(msg, Errors.NoSuchRequest, `no request ${id}`);
        else if (r.state !== "pending") {
          this.#error(msg, Errors.NotPending, `request is ${r.state}`);
        } else if (digest !== r.digest) {
          this.#error(msg, Errors.DigestMismatch, "digest does not match the request");
        } else {
          r.state = "approved";
          r.decidedAt = Date.now();
          const rule: RuleView = {
            id: `g${id.slice(0, 8)}`,
            type: r.kind === "secret.read" ? "read-grant" : "rebase-grant",
            description: `test grant ${options}`,
            createdAt: Date.now(),
            expiresAt: null,
            remaining: null,
            uses: 0,
            fromRequest: id,
          };
          this.#reply(msg, "s", [JSON.stringify(rule)]);
          this.emitChanged(id, r.state);
        }
        return true;
      }
      case "Status":
        this.#reply(msg, "s", [JSON.stringify(this.status)]);
        return true;
      case "UnlockStore": {
        this.unlockPasswords.push(new Uint8Array(body[0] as Uint8Array));
        const err = this.unlockStoreErrors.shift();
        if (err) this.#error(msg, err, `test: ${err.split(".").at(-1)}`);
        else this.#reply(msg);
        return true;
      }
      case "History": {
        const limit = (body[0] as number) || 100;
        this.#reply(msg, "s", [JSON.stringify(this.history.slice(-limit))]);
        return true;
      }
    }
    return false;
  }

  /** Emits `Changed(id, state)`. */
  emitChanged(id: string, state: string): void {
    this.#bus.send(
      dbus.Message.newSignal(ADMIN_PATH, ADMIN_IFACE, "Changed", "ss", [
        id,
        state,
      ]),
    );
  }

  /** Disconnects from the bus. */
  stop(): void {
    this.#bus.disconnect();
    (this.#bus as unknown as { _connection: { stream: { destroy(): void } } })
      ._connection.stream
      .destroy();
  }
}

/** Hex id of `n` repeated, for fixtures. */
export function fixtureId(hex: string): string {
  return hex.repeat(32).slice(0, 32);
}

/** Hostile strings: each must be visible (escaped) and inert in any output. */
export const HOSTILE = {
  clear: "\x1b[2J\x1b[H",
  fakeApproved: "\x1b[32mAPPROVED\x1b[0m by admin",
  oscTitle: "\x1b]0;owned title\x07",
  bidiFile: "src/\u202Etxt.exe",
  zeroWidth: "ma\u200Bin",
  c1: "\u009b2J",
} as const;

/** A pending `sign.commit` request full of hostile content. */
export function hostileCommit(now = Date.now()): RequestView {
  return {
    id: fixtureId("1a2b3c4d"),
    kind: "sign.commit",
    state: "pending",
    createdAt: now - 10_000,
    expiresAt: now + 290_000,
    decidedAt: null,
    digest: "d1".repeat(32),
    caller: {
      busName: ":1.42",
      uid: 1000,
      pid: 4242,
      cmdline: ["git", "commit", "-m", `fix${HOSTILE.clear}`],
      exe: "/usr/bin/git",
    },
    sign: {
      keySpec: "ABCDEF0123456789",
      keyFingerprint: "0123456789ABCDEF0123456789ABCDEF01234567",
      keyUid: "Alice Example <alice@example.org>",
      keyError: null,
      payloadSize: 1234,
      content: {
        type: "commit",
        tree: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        parents: ["a".repeat(40), "b".repeat(40)],
        author: {
          name: `Mallory${HOSTILE.oscTitle}`,
          email: "m@evil.example",
          time: 1700000000,
          tz: "+0200",
        },
        committer: {
          name: "Alice",
          email: "alice@example.org",
          time: 1700000100,
          tz: "-0130",
        },
        encoding: null,
        extraHeaders: [{
          key: "mergetag",
          value: "object 123\ntype commit\ntag v1\x1b[31m",
        }],
        subject: `Innocent change${HOSTILE.clear}`,
        body: [
          "This looks fine.",
          "",
          HOSTILE.fakeApproved,
          `title: ${HOSTILE.oscTitle}`,
          `c1: ${HOSTILE.c1}`,
          "a very long line " + "word ".repeat(60) + "END-OF-LONG-LINE",
          ...Array.from({ length: 60 }, (_, i) => `body line ${i + 1}`),
          "LAST BODY LINE",
        ].join("\n"),
      },
      reported: {
        repo: "/home/alice/src/project",
        branch: HOSTILE.zeroWidth,
        files: [
          { status: "M", path: "README.md" },
          { status: "A", path: HOSTILE.bidiFile },
        ],
        rebase: "2/3 onto 1a2b3c4",
      },
    },
    message: null,
  };
}

/** A pending `sign.tag` request. */
export function tagRequest(now = Date.now()): RequestView {
  return {
    id: fixtureId("5e6f7a8b"),
    kind: "sign.tag",
    state: "pending",
    createdAt: now - 5_000,
    expiresAt: now + 60_000,
    decidedAt: null,
    digest: "e2".repeat(32),
    caller: {
      busName: ":1.43",
      uid: 1000,
      pid: null,
      cmdline: null,
      exe: null,
    },
    sign: {
      keySpec: "alice@example.org",
      keyFingerprint: null,
      keyUid: null,
      keyError: "no secret key",
      payloadSize: 200,
      content: {
        type: "tag",
        object: "c".repeat(40),
        objectType: "commit",
        tag: "v1.0",
        tagger: {
          name: "Alice",
          email: "alice@example.org",
          time: 1700000000,
          tz: "+0000",
        },
        extraHeaders: [],
        subject: "Release 1.0",
        body: "",
      },
      reported: {},
    },
    message: null,
  };
}

/** A pending `sign.push` request. */
export function pushRequest(now = Date.now()): RequestView {
  return {
    id: fixtureId("9c0d1e2f"),
    kind: "sign.push",
    state: "pending",
    createdAt: now - 1_000,
    expiresAt: now + 120_000,
    decidedAt: null,
    digest: "f3".repeat(32),
    caller: {
      busName: ":1.44",
      uid: 1000,
      pid: 77,
      cmdline: ["git", "push"],
      exe: "/usr/bin/git",
    },
    sign: {
      keySpec: "alice",
      keyFingerprint: "F".repeat(40),
      keyUid: "Alice",
      keyError: null,
      payloadSize: 300,
      content: {
        type: "push",
        version: "0.1",
        pusher: {
          name: "Alice",
          email: "alice@example.org",
          time: 1700000000,
          tz: "+0000",
        },
        pushee: "git@example.org:repo.git",
        nonce: "1700000000-abcdef",
        extraHeaders: [],
        updates: [{
          old: "0".repeat(40),
          new: "d".repeat(40),
          ref: "refs/heads/main",
        }],
      },
      reported: { repo: "/home/alice/src/project" },
    },
    message: null,
  };
}

/** A pending `secret.read` request of secret-tool for one item ("Mail password"). */
export function secretRead(now = Date.now()): RequestView {
  return {
    id: fixtureId("3c4d5e6f"),
    kind: "secret.read",
    state: "pending",
    createdAt: now - 2_000,
    expiresAt: now + 100_000,
    decidedAt: null,
    digest: "c4".repeat(32),
    caller: { busName: ":1.5", uid: 1000, pid: 900, cmdline: ["deno run agent"], exe: null },
    secret: {
      operation: "read",
      items: [{
        path: "/org/freedesktop/secrets/collection/login/1",
        collection: "/org/freedesktop/secrets/collection/login",
        label: "Mail password",
        attributes: { service: "mail", user: "alice" },
        created: 1_700_000_000,
        modified: 1_700_000_000,
      }],
      collection: { path: "/org/freedesktop/secrets/collection/login", label: "Login" },
      client: {
        busName: ":1.77",
        pid: 4242,
        uid: 1000,
        exe: "/usr/bin/secret-tool",
        cmdline: ["secret-tool", "lookup", "service", "mail"],
        cwd: "/home/alice",
      },
      clientCheck: {
        pid: 4242,
        uid: 1000,
        cmdline: ["secret-tool lookup service mail"],
        consistent: true,
      },
    },
    message: null,
  };
}

/** Full views by id: what the fake `Get` of {@link step} answers. */
const VIEWS = new Map<string, RequestView>();

/** The summaries `List` would return for `views` (and remembers the views for {@link step}). */
export function summaries(views: RequestView[]): RequestSummary[] {
  for (const v of views) VIEWS.set(v.id, v);
  return views.map(toSummary);
}

/**
 * {@link update}, answering a `load` effect at once with the view remembered by
 * {@link summaries} (as main.ts does through `Get`). `now` stands in for events without a time.
 */
export function step(s: UiState, e: UiEvent, now = 1_700_000_000_000): Update {
  const r = update(s, e);
  const load = r.effects.find((x) => x.type === "load");
  if (!load || load.type !== "load" || !VIEWS.has(load.id)) return r;
  const at = "at" in e ? e.at : now;
  const r2 = update(r.state, { type: "detail", view: VIEWS.get(load.id)!, at });
  return { state: r2.state, effects: [...r.effects.filter((x) => x !== load), ...r2.effects] };
}
