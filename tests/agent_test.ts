/**
 * The desktop agent on the real stack (dev/secret_stack.ts: the real daemon behind the real
 * system-bus policy, gnome-keyring, the agent with its production flags) with a recording
 * notification server on the private desktop bus: notifications for secret reads and git
 * signatures, closed on decision, gathered in a burst, Deny through DenyOwn; the daemon
 * restarted, stopped with SIGSTOP, and absent at the agent's start; a second agent refused.
 */

import assert from "node:assert/strict";
import type { NotifyCall } from "../dev/notification_server.ts";
import { type SecretStack, secretStack } from "../dev/secret_stack.ts";
import { SECRETS_NAME } from "../lib/secret_service.ts";
import type { RequestSummary } from "../lib/protocol.ts";
import { Approver, type Decide, exec, waitForHistory } from "./support.ts";
import { Bus } from "../lib/dbus.ts";

const approveAll: Decide = () => "approve";

function secretTool(s: SecretStack, args: string[], stdin?: string) {
  return exec("secret-tool", args, { env: s.clientEnv, stdin });
}

/** Starts a client in the background; its result when it ends, and how long it took. */
function background(s: SecretStack, cmd: string, args: string[], env = s.clientEnv) {
  const started = Date.now();
  return exec(cmd, args, { env, timeoutMs: 60_000 }).then((r) => ({
    ...r,
    ms: Date.now() - started,
  }));
}

async function withStack(
  fn: (s: SecretStack) => Promise<void>,
  options: { agent?: boolean } = {},
): Promise<void> {
  const s = await secretStack(options);
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

async function until<T>(
  what: string,
  check: () => T | undefined | false | Promise<T | undefined | false>,
  ms = 15_000,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Waits for a pending request matching `pred` at the console. */
function pendingAt(s: SecretStack, pred: (v: RequestSummary) => boolean = () => true) {
  return until("a pending request", async () => (await s.admin.list()).find(pred));
}

/** The notification shown for request `id` (by its short id in the body). */
function notificationOf(s: SecretStack, id: string): Promise<NotifyCall> {
  return until(
    `the notification of ${id.slice(0, 8)}`,
    () => s.notifications.notified.find((c) => c.body.includes(`Request ${id.slice(0, 8)}`)),
  );
}

function closedBy(s: SecretStack, nid: number): Promise<boolean> {
  return until(
    `CloseNotification(${nid})`,
    () => s.notifications.events.some((e) => e.type === "close" && e.id === nid),
  );
}

async function store(s: SecretStack, label: string, attrs: string[], value: string) {
  const approver = new Approver(s.admin, approveAll);
  try {
    const r = await secretTool(s, ["store", `--label=${label}`, ...attrs], value);
    assert.equal(r.code, 0, r.stderr);
  } finally {
    await approver.stop();
  }
}

Deno.test("notifications: a secret read and a git signature say what waits and where; closed on decision", async () => {
  await withStack(async (s) => {
    await store(s, "Mail password", ["service", "mail"], "hunter2");

    const lookup = background(s, "secret-tool", ["lookup", "service", "mail"]);
    const read = await pendingAt(s);
    const n = await notificationOf(s, read.id);
    assert.equal(n.appName, "secrets-dispatcher");
    assert.equal(n.summary, 'Read "Mail password"');
    assert.equal(
      n.body,
      `Asked by /usr/bin/secret-tool\nRequest ${read.id.slice(0, 8)}. ` +
        "Approve on VT 8: Ctrl+Alt+F8",
    );
    assert.deepEqual(n.actions, ["deny", "Deny"]);
    assert.deepEqual(n.hints, { urgency: { signature: "y", value: 2 } });
    assert.equal(n.expireTimeout, 0);
    assert.equal(n.replacesId, 0);
    await s.admin.approve(read.id, read.digest);
    const r = await lookup;
    assert.equal(r.stdout, "hunter2", r.stderr);
    await closedBy(s, n.id);

    // A git signature from the signer: the commit subject and the repository.
    const repo = await s.repo("notified");
    await Deno.writeTextFile(`${repo}/f`, "x\n");
    await exec("git", ["-C", repo, "add", "f"], { env: s.env });
    const commit = exec("git", ["-C", repo, "commit", "-q", "-S", "-m", "Add f <for the demo>"], {
      env: s.env,
    });
    const sign = await pendingAt(s, (v) => v.kind === "sign.commit");
    const sn = await notificationOf(s, sign.id);
    assert.equal(sn.summary, 'Sign commit "Add f <for the demo>"');
    assert.match(sn.body, new RegExp(`^Asked by git in ${repo}\n`));
    await s.admin.deny(sign.id, "not now");
    assert.notEqual((await commit).code, 0);
    await closedBy(s, sn.id);
    assert.deepEqual(s.notifications.open(), []);

    const everything = JSON.stringify(s.notifications.events) + await s.stack.log("agent") +
      await s.stack.log("daemon");
    assert.doesNotMatch(everything, /hunter2/, "no secret value in a notification or a log");
  });
});

Deno.test("notifications: a burst of lookups is gathered into one; Deny on a notification denies", async () => {
  await withStack(async (s) => {
    for (let i = 0; i < 5; i++) await store(s, `Item ${i}`, ["burst", "b", "n", `${i}`], `v${i}`);
    s.notifications.events.length = 0;
    s.notifications.notified.length = 0;
    const lookups = Array.from(
      { length: 5 },
      (_, i) => background(s, "secret-tool", ["lookup", "burst", "b", "n", `${i}`]),
    );
    await until("5 pending", async () => (await s.admin.list()).length === 5);
    const gathered = await until("one gathered notification", () => {
      const open = s.notifications.open();
      return open.length === 1 && open[0].summary === "5 requests waiting for approval" &&
        open[0];
    });
    assert.deepEqual(gathered.actions, []);
    assert.match(gathered.body, /… and 2 more\nApprove on VT 8: Ctrl\+Alt\+F8$/);
    assert.ok(s.notifications.peak() <= 3, `${s.notifications.peak()} open at once`);
    const approver = new Approver(s.admin, approveAll);
    try {
      for (const [i, r] of (await Promise.all(lookups)).entries()) assert.equal(r.stdout, `v${i}`);
    } finally {
      await approver.stop();
    }
    await until("all closed", () => s.notifications.open().length === 0);

    // Deny from the desktop: the daemon's DenyOwn through the real policy.
    const lookup = background(s, "secret-tool", ["lookup", "burst", "b", "n", "0"]);
    const view = await pendingAt(s);
    const n = await notificationOf(s, view.id);
    s.notifications.invokeAction(n.id, "deny");
    const r = await lookup;
    assert.notEqual(r.code, 0);
    assert.equal(r.stdout, "");
    await waitForHistory(s.admin, (e) => e.id === view.id && e.event === "denied");
    assert.match((await s.admin.get(view.id)).message ?? "", /by the desktop user/);
  });
});

Deno.test("the daemon restarted mid-run: clear errors meanwhile, one notice, then it works again", async () => {
  await withStack(async (s) => {
    await store(s, "Kept", ["k", "restart"], "kept");
    await s.stopDaemon();
    const started = Date.now();
    const down = await secretTool(s, ["lookup", "k", "restart"]);
    assert.notEqual(down.code, 0);
    assert.match(down.stderr, /approval daemon is not running/);
    assert.ok(Date.now() - started < 10_000, "an error, not a hang");
    // The agent keeps its name meanwhile.
    const bus = await Bus.connect(s.desktopBus.address);
    try {
      const [owner] = await bus.callBus("GetNameOwner", "s", [SECRETS_NAME]);
      assert.ok(String(owner).startsWith(":"));
    } finally {
      bus.close();
    }
    const notice = await until(
      "the daemon-down notice",
      () => s.notifications.notified.find((c) => /daemon is not running/.test(c.summary)),
    );
    for (let i = 0; i < 3; i++) await secretTool(s, ["lookup", "k", "restart"]);

    await s.startDaemon();
    await closedBy(s, notice.id);
    assert.equal(
      s.notifications.notified.filter((c) => /daemon is not running/.test(c.summary)).length,
      1,
      "one notice, not one per call",
    );
    // Subscribed again: a new request is notified; and it is served.
    const lookup = background(s, "secret-tool", ["lookup", "k", "restart"]);
    const view = await pendingAt(s);
    await notificationOf(s, view.id);
    await s.admin.approve(view.id, view.digest);
    assert.equal((await lookup).stdout, "kept");
    assert.match(await s.stack.log("agent"), /approval daemon reachable/);
  });
});

/**
 * One `Item.GetSecret` by python-dbus (libdbus) on a DH-less plain session, timed by the client
 * with the usual 25 s call timeout. Prints `waiting` before the call, then the error name (or
 * `GOT`) and the seconds the call took.
 */
const GET_SECRET_PY = `
import sys, time, dbus
bus = dbus.bus.BusConnection(sys.argv[1])
S = "org.freedesktop.secrets"
svc = bus.get_object(S, "/org/freedesktop/secrets", introspect=False)
_, session = svc.OpenSession("plain", dbus.String("", variant_level=1),
                             dbus_interface="org.freedesktop.Secret.Service")
unlocked, locked = svc.SearchItems({sys.argv[2]: sys.argv[3]},
                                   dbus_interface="org.freedesktop.Secret.Service")
item = bus.get_object(S, (unlocked + locked)[0], introspect=False)
print("waiting", flush=True)
t = time.monotonic()
try:
    item.GetSecret(session, dbus_interface="org.freedesktop.Secret.Item", timeout=25)
    print("GOT")
except dbus.exceptions.DBusException as e:
    print(e.get_dbus_name())
print("%.1f" % (time.monotonic() - t))
`;

Deno.test("the daemon stopped with SIGSTOP: errors within the clients' timeout, then it works after SIGCONT", async () => {
  await withStack(async (s) => {
    await store(s, "Frozen", ["k", "stop"], "thawed");
    // A blocking GetSecret (it raises a read request and waits) that the daemon cannot end.
    const blocked = background(s, "python3", [
      "-c",
      GET_SECRET_PY,
      s.desktopBus.address,
      "k",
      "stop",
    ]);
    const view = await pendingAt(s);
    // The agent has the daemon's reply (the request object) before the daemon stops.
    await until(
      "the agent to hold the request",
      async () => (await s.stack.log("agent")).includes(`read request ${view.id}`),
    );
    s.daemon.kill("SIGSTOP");
    try {
      const lookup = await background(s, "secret-tool", ["lookup", "k", "stop"]);
      assert.notEqual(lookup.code, 0);
      assert.match(lookup.stderr, /approval daemon did not answer in time \(busy or hung\)/);
      assert.ok(lookup.ms < 25_000, `lookup answered after ${lookup.ms} ms`);
      const b = await blocked;
      const [name, seconds] = b.stdout.trim().split("\n").slice(-2);
      assert.equal(name, "org.freedesktop.Secret.Error.IsLocked", b.stdout + b.stderr);
      assert.ok(Number(seconds) < 25, `GetSecret answered after ${seconds} s`);
    } finally {
      s.daemon.kill("SIGCONT");
    }
    const approver = new Approver(s.admin, approveAll);
    try {
      const again = await until("a lookup to work again", async () => {
        const r = await secretTool(s, ["lookup", "k", "stop"]);
        return r.code === 0 && r;
      }, 30_000);
      assert.equal(again.stdout, "thawed");
    } finally {
      await approver.stop();
    }
  });
});

Deno.test("the companion absent at the agent's start: one notice; a second agent is refused", async () => {
  await withStack(async (s) => {
    await s.stopDaemon();
    const agent = await s.startAgent();
    const notice = await until(
      "the daemon-down notice",
      () => s.notifications.notified.find((c) => /daemon is not running/.test(c.summary)),
    );
    assert.match(notice.body, /systemctl status secrets-dispatcher-daemon@\$USER/);
    for (let i = 0; i < 3; i++) {
      const r = await secretTool(s, ["lookup", "k", "v"]);
      assert.match(r.stderr, /approval daemon is not running/);
    }
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(s.notifications.notified.length, 1, "exactly one notification");

    // A second agent: refused, naming the first; with --replace too (the agent does not allow it).
    for (const args of [[], ["--replace"]]) {
      const name = `agent-2${args.join("")}`;
      await assert.rejects(s.startAgent({ name, args }), /exited with status 3/);
      const log = await s.stack.log(name);
      assert.match(log, new RegExp(`already owned by connection :[0-9.]+ \\(pid ${agent.pid}: `));
      assert.match(log, args.length ? /does not allow replacement/ : /start with --replace/);
    }

    await s.startDaemon();
    await closedBy(s, notice.id);
    await store(s, "After", ["k", "v"], "fine");
  }, { agent: false });
});
