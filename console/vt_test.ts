import assert from "node:assert/strict";
import { DEFAULT_LIBC_PATH, ENTRYPOINTS } from "../deploy/permissions.ts";
import {
  decodeVtMode,
  decodeVtState,
  encodeVtMode,
  ERRNO,
  LIBC_CANDIDATES,
  openLibcVt,
  SIGUSR2_NUMBER,
  VT_AUTO,
  VT_PROCESS,
  VtError,
  vtNumberFromRdev,
} from "./vt.ts";
import { VtGuard, type VtGuardOptions } from "./vt_guard.ts";

// ---------------------------------------------------------------------------------------------
import { drive, FakeClock, FakeEvents, FakeSignals, FakeVt } from "./vt_fakes.ts";

function setup(options: VtGuardOptions = {}) {
  const signals = new FakeSignals();
  const vt = new FakeVt(signals);
  const clock = new FakeClock();
  const events = new FakeEvents();
  const errors: unknown[] = [];
  const guard = new VtGuard(vt, {
    clock,
    signals,
    events,
    onError: (e) => errors.push(e),
    ...options,
  });
  return { signals, vt, clock, events, errors, guard };
}

/** Awaits `promise` while driving the fake clock in `stepMs` steps (polling loops sleep on it). */
// ---------------------------------------------------------------------------------------------
// vt.ts: encoding, decoding, libc loading

Deno.test("vt_mode for VT_SETMODE carries SIGUSR2 as relsig and acqsig, never SIGUSR1", () => {
  assert.equal(SIGUSR2_NUMBER, 12);
  const process = encodeVtMode("process");
  assert.deepEqual([...process], [VT_PROCESS, 0, 12, 0, 12, 0, 0, 0]);
  assert.deepEqual(decodeVtMode(process), {
    mode: VT_PROCESS,
    waitv: 0,
    relsig: 12,
    acqsig: 12,
    frsig: 0,
  });
  assert.deepEqual([...encodeVtMode("auto")], [VT_AUTO, 0, 0, 0, 0, 0, 0, 0]);
});

Deno.test("vt_stat decodes little-endian active, signal and state", () => {
  const buf = new Uint8Array([8, 0, 0, 0, 0x43, 0x01]);
  assert.deepEqual(decodeVtState(buf), { active: 8, signal: 0, state: 323 });
  // With an offset into a larger buffer.
  const big = new Uint8Array(10);
  big.set([1, 0, 0, 0, 3, 0], 4);
  assert.deepEqual(decodeVtState(big.subarray(4)), { active: 1, signal: 0, state: 3 });
});

Deno.test("VT number from st_rdev: /dev/tty1–63 only", () => {
  const makedev = (major: number, minor: number) =>
    (BigInt(major & 0xfff) << 8n) | BigInt(minor & 0xff) | (BigInt(minor & ~0xff) << 12n) |
    (BigInt(major & ~0xfff) << 32n);
  assert.equal(vtNumberFromRdev(1032n), 8); // measured: fstat of /dev/tty8 on this machine
  assert.equal(vtNumberFromRdev(makedev(4, 1)), 1);
  assert.equal(vtNumberFromRdev(makedev(4, 63)), 63);
  assert.equal(vtNumberFromRdev(makedev(4, 0)), null); // /dev/tty0, "the current VT"
  assert.equal(vtNumberFromRdev(makedev(4, 64)), null); // /dev/ttyS0
  assert.equal(vtNumberFromRdev(makedev(136, 3)), null); // /dev/pts/3
  assert.equal(vtNumberFromRdev(makedev(5, 0)), null); // /dev/tty
  assert.equal(vtNumberFromRdev(259n), null); // measured: /dev/null is 1:3
  assert.equal(vtNumberFromRdev(makedev(4 + 4096, 8)), null); // high major bits count
});

Deno.test("openLibcVt names the --allow-ffi flag when no libc can be loaded", () => {
  assert.throws(
    () => openLibcVt({ libcPaths: ["/nonexistent/libc.so.6"] }),
    (err: Error) => {
      assert.match(err.message, /--allow-ffi=<one of \/nonexistent\/libc\.so\.6>/);
      assert.match(err.message, /tried: \/nonexistent\/libc\.so\.6 \(/);
      return true;
    },
  );
});

const ffiGranted = Deno.permissions.querySync({ name: "ffi", path: DEFAULT_LIBC_PATH })
  .state === "granted";

Deno.test({
  name: "real libc: errno is read back (ENOTTY on /dev/null), close is idempotent",
  ignore: !ffiGranted,
  fn() {
    const vt = openLibcVt({ device: "/dev/null" });
    try {
      assert.throws(() => vt.getState(), (err: unknown) => {
        assert.ok(err instanceof VtError);
        assert.equal(err.errno, ERRNO.ENOTTY);
        assert.equal(err.op, "VT_GETSTATE");
        assert.match(err.message, /ENOTTY \(Inappropriate ioctl for device\)/);
        return true;
      });
      assert.throws(() => vt.vtNumber(), (err: unknown) => {
        assert.ok(err instanceof VtError);
        assert.match(err.message, /not a numbered virtual console/);
        return true;
      });
      assert.throws(() => vt.activate(0), RangeError);
      assert.throws(() => vt.activate(64), RangeError);
    } finally {
      vt.close();
      vt.close();
    }
    assert.throws(() => openLibcVt({ device: "/nonexistent/tty" }), (err: unknown) => {
      assert.ok(err instanceof VtError);
      assert.equal(err.errno, ERRNO.ENOENT);
      return true;
    });
  },
});

Deno.test("the console's --allow-ffi names exactly a libc that vt.ts looks for", () => {
  const flags = ENTRYPOINTS.console.flags({
    systemBusSocket: "/s",
    companionBusSocket: "/c",
    stateDir: "",
    gpg: "",
    gitDirs: [],
  });
  const ffi = flags.filter((f) => f.startsWith("--allow-ffi"));
  assert.deepEqual(ffi, [`--allow-ffi=${DEFAULT_LIBC_PATH}`]);
  assert.equal(LIBC_CANDIDATES[0], DEFAULT_LIBC_PATH);
  // Other entrypoints get no FFI.
  for (const [name, spec] of Object.entries(ENTRYPOINTS)) {
    if (name === "console") continue;
    const f = spec.flags({
      systemBusSocket: "/s",
      companionBusSocket: "/c",
      stateDir: "/d",
      gpg: "/g",
      gitDirs: [],
    });
    assert.ok(!f.some((x) => x.startsWith("--allow-ffi")), name);
  }
});

Deno.test("no VT module ever names SIGUSR1 as a signal to listen to or send", async () => {
  const root = new URL("..", import.meta.url);
  for (const file of ["console/vt.ts", "console/vt_guard.ts", "tests/fixtures/vt_holder.ts"]) {
    const source = await Deno.readTextFile(new URL(file, root));
    assert.doesNotMatch(source, /["'`]SIGUSR1["'`]/, `${file} names SIGUSR1 as a string`);
    for (const m of source.matchAll(/addSignalListener\(\s*([^,)]+)/g)) {
      assert.ok(["signal"].includes(m[1].trim()), `${file}: addSignalListener(${m[1]})`);
    }
  }
});

// ---------------------------------------------------------------------------------------------
// VtGuard

Deno.test("start: finds its VT, sets VT_AUTO, listens to SIGUSR2 only (no SIGUSR1)", () => {
  const { guard, vt, signals, events } = setup();
  assert.throws(() => guard.hold(Date.now() + 1000), /before start/);
  guard.start();
  guard.start(); // idempotent
  assert.equal(guard.ownVt, 8);
  assert.deepEqual(vt.calls, ["vtNumber", "setMode(auto)"]);
  assert.deepEqual(signals.everAdded, ["SIGUSR2"]);
  assert.equal(events.count("unload"), 1);
  assert.equal(events.count("error"), 1);
  guard.dispose();
});

Deno.test("start fails cleanly when fd 0 is not the controlling terminal", () => {
  const { guard, vt, signals } = setup();
  vt.failSetMode = new VtError("VT_SETMODE(VT_AUTO)", { errno: ERRNO.EPERM });
  assert.throws(() => guard.start(), (e: unknown) => e instanceof VtError && e.errno === 1);
  assert.equal(signals.count(), 0);
  guard.dispose();
  assert.ok(vt.closed);
});

Deno.test("hold: VT_PROCESS, every switch away refused with VT_RELDISP(0)", () => {
  const { guard, vt, signals, clock, errors } = setup();
  guard.start();
  vt.active = 8;
  assert.equal(guard.hold(clock.now() + 60_000), true);
  assert.equal(guard.held, true);
  assert.deepEqual(guard.mode(), { mode: VT_PROCESS, waitv: 0, relsig: 12, acqsig: 12, frsig: 0 });
  for (const target of [1, 2, 3, 1]) {
    vt.requestSwitch(target); // chvt, Alt+Fn, logind SwitchTo
    signals.flush();
    assert.equal(vt.active, 8, `switch to ${target} refused`);
    assert.equal(vt.pendingNewVt, -1, "the kernel forgot the request");
  }
  assert.deepEqual(vt.calls.filter((c) => c.startsWith("relDisp")), Array(4).fill("relDisp(0)"));
  assert.deepEqual(guard.stats, { refused: 4, allowed: 0, notPending: 0 });
  assert.deepEqual(signals.unhandled, []);
  assert.deepEqual(errors, []);
  guard.dispose();
});

Deno.test("release: VT_AUTO again, switches go through", () => {
  const { guard, vt, signals, clock } = setup();
  guard.start();
  vt.active = 8;
  guard.hold(clock.now() + 60_000);
  guard.release();
  assert.equal(guard.held, false);
  assert.equal(guard.heldUntil, null);
  assert.equal(vt.mode.mode, VT_AUTO);
  assert.equal(clock.timers.size, 0, "the deadline timer is gone");
  vt.requestSwitch(1);
  signals.flush();
  assert.equal(vt.active, 1);
  guard.release(); // no-op when not held
  assert.equal(vt.calls.filter((c) => c === "setMode(auto)").length, 2); // start + release
  guard.dispose();
});

Deno.test("a release request still in flight when the hold ends is answered VT_RELDISP(1)", () => {
  const { guard, vt, signals, clock, errors } = setup();
  guard.start();
  vt.active = 8;
  guard.hold(clock.now() + 60_000);
  vt.requestSwitch(3); // the signal is queued, not yet delivered
  // Without VT_SETMODE in between (e.g. it failed), the late answer allows the switch.
  vt.failSetMode = new VtError("VT_SETMODE(VT_AUTO)", { errno: ERRNO.EIO });
  assert.throws(() => guard.release(), VtError);
  assert.equal(guard.held, false);
  signals.flush();
  assert.equal(vt.active, 3);
  assert.deepEqual(guard.stats, { refused: 0, allowed: 1, notPending: 0 });
  // With VT_SETMODE(VT_AUTO) the kernel drops the request: the late answer gets EINVAL, ignored.
  vt.active = 8;
  guard.hold(clock.now() + 60_000);
  vt.requestSwitch(3);
  guard.release();
  signals.flush();
  assert.equal(vt.active, 8);
  assert.deepEqual(guard.stats, { refused: 0, allowed: 1, notPending: 1 });
  assert.deepEqual(errors, []);
  guard.dispose();
});

Deno.test("the hold ends by itself at the request's deadline", () => {
  let autoReleased = 0;
  const { guard, vt, signals, clock } = setup({ onAutoRelease: () => autoReleased++ });
  guard.start();
  vt.active = 8;
  const deadline = clock.now() + 30_000;
  guard.hold(deadline);
  assert.equal(guard.heldUntil, deadline);
  clock.advance(29_999);
  vt.requestSwitch(1);
  signals.flush();
  assert.equal(vt.active, 8, "still held 1 ms before the deadline");
  assert.equal(autoReleased, 0);
  clock.advance(1);
  assert.equal(guard.held, false);
  assert.equal(vt.mode.mode, VT_AUTO);
  assert.equal(autoReleased, 1);
  vt.requestSwitch(1);
  signals.flush();
  assert.equal(vt.active, 1);
  guard.dispose();
});

Deno.test("hold: a later call replaces the deadline; past deadlines and maxHoldMs", () => {
  const { guard, vt, clock } = setup({ maxHoldMs: 120_000 });
  guard.start();
  const now = clock.now();
  assert.equal(guard.hold(now), false, "a deadline that is not in the future");
  assert.equal(guard.hold(Number.NaN), false);
  assert.equal(guard.held, false);
  assert.equal(vt.mode.mode, VT_AUTO);
  guard.hold(now + 10_000);
  guard.hold(now + 50_000); // another request on screen
  assert.equal(guard.heldUntil, now + 50_000);
  assert.equal(clock.timers.size, 1);
  assert.equal(vt.calls.filter((c) => c === "setMode(process)").length, 1);
  clock.advance(10_000);
  assert.equal(guard.held, true, "the first deadline no longer applies");
  guard.hold(now + 3_600_000);
  assert.equal(guard.heldUntil, clock.now() + 120_000, "capped at maxHoldMs");
  clock.advance(120_000);
  assert.equal(guard.held, false);
  guard.dispose();
});

Deno.test("hold does not count as held when VT_SETMODE fails", () => {
  const { guard, vt, clock } = setup();
  guard.start();
  vt.failSetMode = new VtError("VT_SETMODE(VT_PROCESS)", { errno: ERRNO.EPERM });
  assert.throws(() => guard.hold(clock.now() + 1000), VtError);
  assert.equal(guard.held, false);
  assert.equal(clock.timers.size, 0);
  guard.dispose();
});

Deno.test("focus brings the VT forward, flushes input; returnFocus goes back", async () => {
  const { guard, vt, signals, clock } = setup();
  guard.start();
  vt.active = 2;
  guard.hold(clock.now() + 60_000);
  assert.equal(await drive(clock, guard.focus()), true);
  assert.equal(vt.active, 8);
  assert.equal(guard.previousVt, 2);
  signals.flush(); // the acquire signal: EINVAL (no release pending), ignored
  assert.deepEqual(guard.stats, { refused: 0, allowed: 0, notPending: 1 });
  const i = vt.calls.indexOf("activate(8)");
  assert.ok(i >= 0 && vt.calls.indexOf("flushInput") > i, "input flushed after the switch");
  await assert.rejects(() => guard.returnFocus(), /release\(\) before returnFocus/);
  guard.release();
  assert.equal(await drive(clock, guard.returnFocus()), "returned");
  assert.equal(vt.active, 2);
  assert.equal(guard.previousVt, null);
  assert.equal(await drive(clock, guard.returnFocus()), "none");
  guard.dispose();
});

Deno.test("focus when already in front: nothing to return to", async () => {
  const { guard, vt, clock } = setup();
  guard.start();
  vt.active = 8;
  assert.equal(await drive(clock, guard.focus()), true);
  assert.equal(guard.previousVt, null);
  assert.ok(!vt.calls.some((c) => c.startsWith("activate")));
  assert.equal(await drive(clock, guard.returnFocus()), "none");
  assert.equal(vt.active, 8);
  guard.dispose();
});

Deno.test("focus gives up at focusTimeoutMs when the kernel ignores the switch", async () => {
  const { guard, vt, clock } = setup({ focusTimeoutMs: 500, pollMs: 50 });
  guard.start();
  vt.active = 2;
  vt.stuck = true; // e.g. VT 2 is graphical in VT_AUTO, or another VT_PROCESS owner refuses
  const start = clock.now();
  assert.equal(await drive(clock, guard.focus()), false);
  assert.ok(clock.now() - start >= 500 && clock.now() - start < 560, `${clock.now() - start}`);
  assert.equal(guard.previousVt, null);
  assert.ok(!vt.calls.includes("flushInput"));
  guard.dispose();
});

Deno.test("focus polls until a slow switch happens", async () => {
  const { guard, vt, clock } = setup({ focusTimeoutMs: 2_000, pollMs: 50 });
  guard.start();
  vt.active = 2;
  vt.stuck = true;
  clock.setTimeout(() => {
    vt.stuck = false;
    vt.requestSwitch(8);
  }, 300);
  assert.equal(await drive(clock, guard.focus()), true);
  assert.equal(vt.active, 8);
  assert.equal(guard.previousVt, 2);
  guard.dispose();
});

Deno.test("returnFocus leaves a user who already moved on alone; times out if refused", async () => {
  const { guard, vt, clock } = setup({ focusTimeoutMs: 300 });
  guard.start();
  vt.active = 2;
  await drive(clock, guard.focus());
  guard.release();
  vt.requestSwitch(5); // the user went to VT 5 themselves
  assert.equal(await drive(clock, guard.returnFocus()), "elsewhere");
  assert.equal(vt.active, 5);

  vt.requestSwitch(1);
  await drive(clock, guard.focus());
  assert.equal(guard.previousVt, 1);
  vt.stuck = true;
  assert.equal(await drive(clock, guard.returnFocus()), "timeout");
  guard.dispose();
});

Deno.test("dispose restores VT_AUTO, removes every listener, closes the VT; idempotent", () => {
  const { guard, vt, signals, events, clock } = setup({ exitSignals: ["SIGTERM", "SIGINT"] });
  guard.start();
  vt.active = 8;
  guard.hold(clock.now() + 60_000);
  guard.dispose();
  guard.dispose();
  assert.equal(vt.mode.mode, VT_AUTO);
  assert.equal(vt.closed, true);
  assert.equal(signals.count(), 0);
  assert.equal(events.count("unload"), 0);
  assert.equal(events.count("error"), 0);
  assert.equal(clock.timers.size, 0);
  assert.equal(guard.disposed, true);
  assert.equal(guard.held, false);
  // The last VT call is VT_AUTO, and SIGUSR2 was listened to until then.
  assert.deepEqual(vt.calls.slice(-2), ["setMode(auto)", "close"]);
  assert.throws(() => guard.hold(clock.now() + 1000), /after dispose/);
  assert.throws(() => guard.start(), /after dispose/);
  guard.release(); // harmless
});

Deno.test("dispose reports a failing VT_SETMODE instead of throwing", () => {
  const { guard, vt, errors, clock } = setup();
  guard.start();
  guard.hold(clock.now() + 1000);
  vt.failSetMode = new VtError("VT_SETMODE(VT_AUTO)", { errno: ERRNO.EIO });
  guard.dispose();
  assert.equal(errors.length, 1);
  assert.ok(vt.closed);
});

Deno.test("VT_AUTO is restored on unload and on an uncaught error", () => {
  for (const type of ["unload", "error"]) {
    const { guard, vt, events, clock } = setup();
    guard.start();
    guard.hold(clock.now() + 60_000);
    assert.equal(vt.mode.mode, VT_PROCESS);
    events.dispatchEvent(new Event(type));
    assert.equal(vt.mode.mode, VT_AUTO, type);
    assert.equal(guard.disposed, true, type);
  }
});

Deno.test("exitSignals: VT_AUTO restored, then exit with 128 + signal number", () => {
  const exits: number[] = [];
  const { guard, vt, signals, clock } = setup({
    exitSignals: ["SIGTERM", "SIGINT", "SIGHUP"],
    exit: (code) => exits.push(code),
  });
  guard.start();
  assert.deepEqual(signals.everAdded, ["SIGUSR2", "SIGTERM", "SIGINT", "SIGHUP"]);
  guard.hold(clock.now() + 60_000);
  signals.queue.push("SIGTERM");
  signals.flush();
  assert.deepEqual(exits, [143]);
  assert.equal(vt.mode.mode, VT_AUTO);
  assert.ok(vt.closed);
  assert.equal(signals.count(), 0);
});

Deno.test("errors other than EINVAL in the signal handler go to onError", () => {
  const { guard, vt, signals, clock, errors } = setup();
  guard.start();
  vt.active = 8;
  guard.hold(clock.now() + 60_000);
  vt.relDisp = () => {
    throw new VtError("VT_RELDISP(0)", { errno: ERRNO.EPERM });
  };
  vt.requestSwitch(1);
  signals.flush();
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]), /VT_RELDISP\(0\) failed: EPERM/);
  guard.dispose();
});

Deno.test("real SIGUSR2 from the kernel side reaches the guard through Deno.addSignalListener", async () => {
  // Default signal source and globalThis events; the VT is the fake.
  const signals = new FakeSignals(); // only used by the fake kernel to record numbers
  const vt = new FakeVt(signals);
  const guard = new VtGuard(vt, { onError: (e) => assert.fail(String(e)) });
  guard.start();
  try {
    vt.active = 8;
    guard.hold(Date.now() + 10_000);
    vt.requestSwitch(1); // the fake kernel records the pending request and relsig 12
    assert.deepEqual(signals.queue, ["SIGUSR2"]);
    Deno.kill(Deno.pid, "SIGUSR2"); // what the kernel does: kill_pid(vt_pid, relsig, 1)
    const end = Date.now() + 5_000;
    while (guard.stats.refused === 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(guard.stats.refused, 1);
    assert.equal(vt.active, 8);
  } finally {
    guard.dispose();
  }
  assert.equal(vt.mode.mode, VT_AUTO);
});
