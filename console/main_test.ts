import assert from "node:assert/strict";
import { VT_AUTO, VT_PROCESS, type VtControl, VtError } from "./vt.ts";
import {
  type ConsoleApp,
  type ConsoleSignal,
  focusEnabled,
  resolveAddress,
  runApp,
  setupVt,
} from "./main.ts";
import { harness, settle } from "./app_fakes.ts";
import { render } from "./render.ts";
import { approvalCode } from "./approval_code.ts";
import { FakeEvents, FakeSignals, FakeVt } from "./vt_fakes.ts";
import { hostileCommit, tagRequest } from "./test_support.ts";
import { Screen } from "./terminal.ts";
import { RecordingTerminal } from "./app_fakes.ts";

Deno.test("console address: --bus, --bus=, errors", () => {
  assert.deepEqual(resolveAddress(["--bus", "unix:path=/a"]), { address: "unix:path=/a" });
  assert.deepEqual(resolveAddress(["--bus=unix:path=/b"]), { address: "unix:path=/b" });
  assert.match((resolveAddress(["--bus"]) as { error: string }).error, /needs an address/);
  assert.match(
    (resolveAddress(["--what\x1b"]) as { error: string }).error,
    /unknown argument: --what\\x1b/,
  );
  assert.match((resolveAddress(["--help"]) as { error: string }).error, /usage: console/);
});

Deno.test("SD_CONSOLE_FOCUS: on unless 0/false/no/off", () => {
  for (const v of [undefined, "", "1", "yes", "on"]) assert.equal(focusEnabled(v), true, `${v}`);
  for (const v of ["0", "false", "NO", " off "]) assert.equal(focusEnabled(v), false, v);
});

function screenText(app: ConsoleApp): string {
  // deno-lint-ignore no-control-regex
  return render(app.state, app.state.size).map((l) => l.replace(/\x1b\[[0-9;]*m/g, "")).join(
    "\n",
  );
}

Deno.test("a new request holds the VT (VT_PROCESS, SIGUSR2), brings it to the front, flushes input", async () => {
  const h = await harness();
  assert.equal(h.vt.mode.mode, VT_AUTO, "nothing pending: VT_AUTO");
  assert.equal(h.vt.active, 2);
  const now = h.clock.now();
  h.admin.add(hostileCommit(now));
  await h.advance(500);
  assert.equal(h.vt.mode.mode, VT_PROCESS);
  assert.deepEqual([h.vt.mode.relsig, h.vt.mode.acqsig], [12, 12], "SIGUSR2 both ways");
  assert.equal(h.vt.active, 8, "VT 8 brought to the front");
  assert.ok(h.vt.calls.includes("flushInput"), "pending input flushed");
  const hold = h.vt.calls.indexOf("setMode(process)");
  const activate = h.vt.calls.indexOf("activate(8)");
  assert.ok(hold >= 0 && hold < activate, "held before the switch to it");
  assert.match(screenText(h.app), /VT 8 held/);
  // Someone asks to switch away (chvt, Alt+F2, logind): refused.
  h.vt.requestSwitch(1);
  h.signals.flush();
  assert.equal(h.vt.active, 8);
  assert.deepEqual(h.signals.unhandled, []);
  h.app.stop();
});

Deno.test("after the decision the VT is released and the previous VT comes back", async () => {
  const h = await harness({ requests: [hostileCommit(Date.now())] });
  await h.advance(300);
  assert.equal(h.vt.active, 8);
  assert.equal(h.vt.mode.mode, VT_PROCESS);
  // Decided elsewhere (ctl): the list empties.
  h.admin.setState(hostileCommit().id, "approved");
  await h.advance(300);
  assert.equal(h.vt.mode.mode, VT_AUTO, "released");
  assert.equal(h.vt.active, 2, "back to the VT in front before");
  assert.doesNotMatch(screenText(h.app), /VT 8 held/);
  // Now a switch goes through.
  h.vt.requestSwitch(3);
  h.signals.flush();
  assert.equal(h.vt.active, 3);
  h.app.stop();
});

Deno.test("two requests: held until both are decided; a user who left is not moved back", async () => {
  const now = Date.now();
  const h = await harness({ requests: [hostileCommit(now)] });
  await h.advance(200);
  h.admin.add(tagRequest(now));
  await h.advance(200);
  h.admin.setState(hostileCommit().id, "denied");
  await h.advance(200);
  assert.equal(h.vt.mode.mode, VT_PROCESS, "one still pending: still held");
  assert.equal(h.vt.active, 8);
  h.admin.setState(tagRequest().id, "denied");
  await h.advance(200);
  assert.equal(h.vt.mode.mode, VT_AUTO);
  assert.equal(h.vt.active, 2);
  h.app.stop();
});

Deno.test("the hold ends at the request's deadline and is not taken again for it", async () => {
  const h = await harness();
  const now = h.clock.now();
  const view = { ...hostileCommit(now), expiresAt: now + 5_000 };
  h.admin.add(view);
  await h.advance(300);
  assert.equal(h.app.vtSync!.status.heldUntil, now + 5_000);
  assert.equal(h.vt.mode.mode, VT_PROCESS);
  // The daemon has not expired it yet (still listed), but the deadline passed.
  await h.advance(5_000);
  assert.equal(h.vt.mode.mode, VT_AUTO, "released at the deadline");
  await h.advance(4_000); // two more polls of the same list
  assert.equal(h.vt.mode.mode, VT_AUTO, "the same request does not hold again");
  // A new request holds again.
  h.admin.add(tagRequest(h.clock.now()));
  await h.advance(300);
  assert.equal(h.vt.mode.mode, VT_PROCESS);
  h.app.stop();
  assert.equal(h.vt.mode.mode, VT_AUTO, "stop() restores VT_AUTO");
  assert.ok(h.vt.closed);
});

Deno.test("SD_CONSOLE_FOCUS=0: held but not brought to the front", async () => {
  const h = await harness({ focus: false, requests: [hostileCommit(Date.now())] });
  await h.advance(300);
  assert.equal(h.vt.mode.mode, VT_PROCESS);
  assert.equal(h.vt.active, 2);
  assert.ok(!h.vt.calls.some((c) => c.startsWith("activate")));
  h.app.stop();
});

Deno.test("after a restart the still-pending requests are shown and held at once", async () => {
  const now = Date.now();
  const first = await harness({ requests: [hostileCommit(now), tagRequest(now)] });
  await first.advance(300);
  first.app.stop();
  assert.equal(first.vt.mode.mode, VT_AUTO);
  // A new console process against the same daemon.
  const second = await harness({ admin: first.admin });
  await second.advance(300);
  assert.deepEqual(second.app.state.requests.map((r) => r.id), [
    hostileCommit().id,
    tagRequest().id,
  ]);
  assert.equal(second.vt.mode.mode, VT_PROCESS);
  assert.match(screenText(second.app), /1a2b3c4d/);
  second.app.stop();
});

Deno.test("keys typed right after a new request came to the front are discarded", async () => {
  const h = await harness();
  h.admin.add(hostileCommit(h.clock.now()));
  await h.advance(100, 10);
  assert.equal(h.vt.active, 8);
  h.app.feed(new TextEncoder().encode("d"));
  await settle();
  assert.ok(!h.admin.calls.some((c) => c.member === "deny"), "the d was discarded");
  assert.match(h.app.state.status?.text ?? "", /ignored/);
  await h.advance(1_000);
  h.app.feed(new TextEncoder().encode("d"));
  await h.advance(200);
  assert.ok(h.admin.calls.some((c) => c.member === "deny"), "after the delay d denies");
  h.app.stop();
});

Deno.test("not a virtual console: no lock, the status line says so, input is still flushed", async () => {
  const h = await harness({ vt: false, requests: [hostileCommit(Date.now())] });
  await h.advance(300);
  assert.equal(h.app.vtSync, null);
  assert.equal(h.vt.mode.mode, VT_AUTO);
  assert.ok(h.vt.calls.includes("flushInput"), "tcflush on the terminal all the same");
  const text = screenText(h.app);
  assert.match(text, /NO VT LOCK/);
  assert.match(text, /not on a virtual console: switching away is not prevented/);
  h.app.stop();
});

Deno.test("setupVt: ENOTTY runs without a lock, EPERM on a VT is fatal, no libc is a note", () => {
  const signals = new FakeSignals();
  const notVt = new FakeVt(signals);
  notVt.vtNumber = () => {
    throw new VtError("fstat(0)", { errno: 25 });
  };
  const a = setupVt({ open: () => notVt });
  assert.equal(a.guard, null);
  assert.match(a.note!, /not on a virtual console/);
  a.flushInput();
  assert.ok(notVt.calls.includes("flushInput"));
  a.dispose();
  assert.ok(notVt.closed);

  const noCtty = new FakeVt(signals);
  noCtty.failSetMode = new VtError("VT_SETMODE(VT_AUTO)", { errno: 1 });
  assert.throws(
    () => setupVt({ open: () => noCtty, guardOptions: { signals, events: new FakeEvents() } }),
    /VT_SETMODE.*EPERM/,
  );
  assert.ok(noCtty.closed);

  const none = setupVt({
    open: (): VtControl => {
      throw new Error("cannot load libc");
    },
  });
  assert.equal(none.guard, null);
  assert.match(none.note!, /no VT control \(cannot load libc\)/);
});

Deno.test("runApp: listens to SIGINT/SIGTERM/SIGHUP/SIGWINCH only (never SIGUSR1); SIGTERM restores VT_AUTO", async () => {
  const h = await harness({ requests: [hostileCommit(Date.now())] });
  await h.advance(300);
  assert.equal(h.vt.mode.mode, VT_PROCESS);
  const added: string[] = [];
  const listeners = new Map<string, () => void>();
  const signals = {
    add(s: ConsoleSignal, l: () => void) {
      added.push(s);
      listeners.set(s, l);
    },
    remove(s: ConsoleSignal) {
      listeners.delete(s);
    },
  };
  const reads: ((n: number | null) => void)[] = [];
  const done = runApp(h.app, {
    screen: new Screen(new RecordingTerminal()),
    vt: h.setup,
    signals,
    events: new FakeEvents(),
    input: { read: () => new Promise((r) => reads.push(r)) },
  });
  await settle();
  assert.deepEqual(added.sort(), ["SIGHUP", "SIGINT", "SIGTERM", "SIGWINCH"]);
  assert.deepEqual(h.signals.everAdded, ["SIGUSR2"], "the guard: SIGUSR2 only");
  listeners.get("SIGTERM")!();
  assert.equal(await done, 0);
  assert.equal(h.vt.mode.mode, VT_AUTO);
  assert.ok(h.vt.closed);
  assert.equal(listeners.size, 0, "listeners removed");
  for (const r of reads) r(null);
});

Deno.test("no console or lib source ever names SIGUSR1 as a signal to listen to", async () => {
  const offenders: string[] = [];
  for (const dir of ["console", "lib", "daemon", "sign", "agent"]) {
    const base = new URL(`../${dir}/`, import.meta.url);
    for await (const e of Deno.readDir(base)) {
      if (!e.isFile || !e.name.endsWith(".ts") || e.name.endsWith("_test.ts")) continue;
      const text = await Deno.readTextFile(new URL(e.name, base));
      if (/addSignalListener\(\s*["'`]SIGUSR1/.test(text) || /\bsignal\s*\(\s*10\b/.test(text)) {
        offenders.push(`${dir}/${e.name}`);
      }
    }
  }
  assert.deepEqual(offenders, []);
});

Deno.test("grants and rules on the console: + then the code approves with a grant, r then d denies with a rule, R lists, x revokes, L/U lock", async () => {
  const h = await harness();
  const view = hostileCommit(h.clock.now());
  h.admin.add(view);
  await h.advance(1_000);
  const type = async (keys: string) => {
    for (const k of keys) {
      h.app.feed(new TextEncoder().encode(k));
      await h.advance(20, 10);
    }
  };
  await type("\r");
  await h.advance(1_000);
  await type("+");
  assert.match(
    screenText(h.app),
    /APPROVING ALSO GRANTS: the next 5 signatures continuing this commit/,
  );
  await type(approvalCode(view.id, view.digest).toLowerCase());
  await h.advance(200);
  assert.deepEqual(h.admin.calls.find((c) => c.member === "approveWithGrant")?.args, [
    view.id,
    view.digest,
    { signatures: 5 },
  ]);
  const tag = tagRequest(h.clock.now());
  h.admin.add(tag);
  await h.advance(1_000);
  await type("\r");
  await h.advance(1_000);
  await type("+");
  assert.match(h.app.state.status!.text, /no grants for sign\.tag/);
  await type("rr");
  assert.match(
    screenText(h.app),
    /DENYING ALSO MAKES A RULE: deny requests like this until revoked/,
  );
  await type("d");
  await h.advance(200);
  assert.deepEqual(h.admin.calls.find((c) => c.member === "denyWithRule")?.args, [
    tag.id,
    "denied on the console",
    { minutes: 0 },
  ]);
  await h.advance(1_000);
  await type("R");
  await h.advance(100);
  const text = screenText(h.app);
  assert.match(text, /grants and rules/);
  assert.match(text, /> g00000000 read-grant/);
  await type("jx");
  await h.advance(100);
  assert.deepEqual(h.admin.calls.find((c) => c.member === "revoke")?.args, ["g00000001"]);
  assert.deepEqual(h.app.state.rules.list.map((r) => r.id), ["g00000000"]);
  assert.match(screenText(h.app), /revoked g00000001/);
  await type("\x1b");
  await h.advance(100);
  // Lock needs a y.
  await type("L");
  assert.match(screenText(h.app), /LOCK: end every pending request/);
  await h.advance(1_000);
  await type("y");
  await h.advance(100);
  assert.ok(h.admin.locked);
  await type("U");
  await h.advance(1_000);
  await type("n");
  assert.ok(h.admin.locked, "any other key cancels");
  await type("U");
  await h.advance(1_000);
  await type("y");
  await h.advance(100);
  assert.equal(h.admin.locked, false);
  h.app.stop();
});
