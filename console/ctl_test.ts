import assert from "node:assert/strict";
import { Errors } from "../lib/protocol.ts";
import {
  ADDRESS_ENV,
  type CtlIo,
  DEFAULT_DENY_REASON,
  EXIT_OK,
  EXIT_REFUSED,
  EXIT_UNREACHABLE,
  EXIT_USAGE,
  main,
  safeJson,
} from "./ctl.ts";
import {
  FakeAdmin,
  hostileCommit,
  pushRequest,
  secretRead,
  startTestBus,
  tagRequest,
  toSummary,
} from "./test_support.ts";

/** Anything a terminal could interpret, in output meant for a terminal. */
const FORBIDDEN = new RegExp(
  String
    .raw`[[\p{Cc}--[\n]]\p{Cf}\p{Cs}\p{Co}\p{Cn}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}[\p{Zs}--[\x20]]]`,
  "v",
);

function captureIo(env: Record<string, string> = {}): CtlIo & { stdout: string; stderr: string } {
  const io = {
    stdout: "",
    stderr: "",
    out(t: string) {
      io.stdout += t;
    },
    err(t: string) {
      io.stderr += t;
    },
    env: (name: string) => env[name],
    connectTimeoutMs: 2000,
  };
  return io;
}

async function run(args: string[], env: Record<string, string> = {}) {
  const io = captureIo(env);
  const code = await main(args, io);
  assert.ok(!FORBIDDEN.test(io.stdout), `unsafe stdout ${JSON.stringify(io.stdout)}`);
  assert.ok(!FORBIDDEN.test(io.stderr), `unsafe stderr ${JSON.stringify(io.stderr)}`);
  return { code, out: io.stdout, err: io.stderr };
}

Deno.test("ctl against a fake daemon", async (t) => {
  const bus = await startTestBus();
  const commit = hostileCommit();
  let fake: FakeAdmin;
  try {
    fake = await FakeAdmin.start(bus.address, [commit, tagRequest(), pushRequest()]);
  } catch (err) {
    await bus.stop();
    throw err;
  }
  const env = { [ADDRESS_ENV]: bus.address };
  try {
    await t.step("list (human, escaped)", async () => {
      const r = await run(["list"], env);
      assert.equal(r.code, EXIT_OK, r.err);
      assert.match(r.out, /^ID +KIND +CALLER +EXPIRES +SUMMARY\n/);
      assert.match(
        r.out,
        /1a2b3c4d {2}sign\.commit {2}uid 1000 pid 4242 +\d:\d\d +Innocent change\\x1b\[2J\\x1b\[H\n/,
      );
      assert.match(r.out, /9c0d1e2f {2}sign\.push/);
    });
    await t.step("list --json is the RequestSummary array; show --json the full view", async () => {
      const r = await run(["list", "--json"], env);
      assert.equal(r.code, EXIT_OK);
      assert.deepEqual(JSON.parse(r.out), [...fake.requests.values()].map(toSummary));
      assert.ok(r.out.includes("\\u001b[2J"), "ESC written as a JSON escape");
      assert.ok(!r.out.includes("body line 1"), "no details in the list");
      const show = await run(["show", "1a2b", "--json"], env);
      assert.deepEqual(JSON.parse(show.out), fake.requests.get(hostileCommit().id));
      assert.ok(show.out.includes("\\u202e"), "bidi written as a JSON escape");
    });
    await t.step("--bus works before and after the command; env not needed", async () => {
      assert.equal((await run(["--bus", bus.address, "list"])).code, EXIT_OK);
      assert.equal((await run(["list", "--bus", bus.address])).code, EXIT_OK);
    });
    await t.step("show by prefix", async () => {
      const r = await run(["show", "1a2b"], env);
      assert.equal(r.code, EXIT_OK, r.err);
      assert.match(r.out, /Subject: +Innocent change\\x1b\[2J\\x1b\[H/);
      assert.match(r.out, /\| A src\/\\u\{202e\}txt\.exe/);
      assert.match(r.out, /LAST BODY LINE/);
      const j = await run(["show", "1a2b", "--json"], env);
      assert.deepEqual(JSON.parse(j.out), commit);
    });
    await t.step("show: no such request -> exit 1 with the daemon's text", async () => {
      const r = await run(["show", "ffff"], env);
      assert.equal(r.code, EXIT_REFUSED);
      assert.equal(r.err, "ctl: NoSuchRequest: no request ffff\n");
      fake.requests.set("1a2b".padEnd(32, "f"), { ...tagRequest(), id: "1a2b".padEnd(32, "f") });
      const amb = await run(["show", "1a2b"], env);
      assert.equal(amb.code, EXIT_REFUSED);
      assert.match(amb.err, /AmbiguousId/);
      fake.requests.delete("1a2b".padEnd(32, "f"));
    });
    await t.step("approve: Get then Approve(full id, digest)", async () => {
      fake.calls.length = 0;
      const bad = await run(["approve", "1a2b3c4d", "--digest", "00000000"], env);
      assert.equal(bad.code, EXIT_REFUSED);
      assert.match(bad.err, /not approved: the request's digest is d1d1d1d1d1d1d1d1/);
      assert.ok(!fake.calls.some((c) => c.member === "Approve"));
      const r = await run(["approve", "1a2b3c4d", "--digest", "D1D1D1D1"], env);
      assert.equal(r.code, EXIT_OK, r.err);
      assert.equal(
        r.out,
        `approved 1a2b3c4d (sign.commit) "Innocent change\\x1b[2J\\x1b[H", digest d1d1d1d1d1d1d1d1\n`,
      );
      assert.deepEqual(fake.calls.filter((c) => c.member === "Approve").map((c) => c.body), [[
        commit.id,
        commit.digest,
      ]]);
      const again = await run(["approve", "1a2b3c4d"], env);
      assert.equal(again.code, EXIT_REFUSED);
      assert.equal(again.err, "ctl: NotPending: request is approved\n");
    });
    await t.step("deny with reason, --json", async () => {
      const r = await run(["deny", "5e6f", "--reason", "not me", "--json"], env);
      assert.equal(r.code, EXIT_OK, r.err);
      assert.equal(JSON.parse(r.out).id, tagRequest().id);
      assert.deepEqual(fake.calls.at(-1), { member: "Deny", body: [tagRequest().id, "not me"] });
      await run(["deny", "9c0d"], env);
      assert.deepEqual(fake.calls.at(-1), {
        member: "Deny",
        body: [pushRequest().id, DEFAULT_DENY_REASON],
      });
    });
    await t.step("history", async () => {
      fake.history = [
        {
          at: 0,
          id: commit.id,
          kind: "sign.commit",
          event: "created",
          summary: "x\x1b]0;t\x07",
          callerUid: 1,
          callerPid: 2,
          digest: "d",
        },
        {
          at: 1,
          id: commit.id,
          kind: "sign.commit",
          event: "approved",
          summary: "x",
          callerUid: 1,
          callerPid: null,
          digest: "d",
        },
      ];
      const r = await run(["history", "--limit", "5"], env);
      assert.equal(r.code, EXIT_OK, r.err);
      assert.deepEqual(fake.calls.at(-1), { member: "History", body: [5] });
      assert.match(r.out, /1a2b3c4d {2}sign\.commit +created +uid 1 pid 2 +x\\x1b\]0;t\\x07\n/);
      assert.equal(r.out.split("\n").length, 3);
      const j = await run(["history", "--json"], env);
      assert.deepEqual(JSON.parse(j.out), fake.history);
      assert.deepEqual(fake.calls.at(-1), { member: "History", body: [0] });
    });
    await t.step("status: what the store is and what opens (or creates) it", async () => {
      fake.status = {
        state: "locked",
        message: "the secret store has no keyring yet",
        consoleLock: false,
        passwordUnlock: true,
        creates: true,
      };
      let r = await run(["status"], env);
      assert.equal(r.code, EXIT_OK, r.err);
      assert.equal(
        r.out,
        "store locked: the secret store has no keyring yet\n" +
          "it has no keyring yet: the first passphrase typed on the console (twice), or given " +
          "to `ctl unlock --password-stdin`, creates it\n",
      );
      assert.equal(JSON.parse((await run(["status", "--json"], env)).out).creates, true);
      fake.status = { state: "locked", message: "m", passwordUnlock: true };
      r = await run(["status"], env);
      assert.match(r.out, /^store locked: m\nit opens with its passphrase/);
    });
    await t.step("usage errors -> 64, help -> 0", async () => {
      const bogus = await run(["bogus\x1b[2J"], env);
      assert.equal(bogus.code, EXIT_USAGE);
      assert.match(bogus.err, /unknown command 'bogus\\x1b\[2J'/);
      assert.equal((await run(["show"], env)).code, EXIT_USAGE);
      assert.equal((await run(["history", "--limit", "-1"], env)).code, EXIT_USAGE);
      assert.equal((await run(["approve", "1a2b", "--digest", "xyz"], env)).code, EXIT_USAGE);
      const h = await run(["--help"], env);
      assert.equal(h.code, EXIT_OK);
      assert.match(h.out, /Usage: ctl/);
    });
    await t.step("daemon not on the bus -> exit 2 with the hint", async () => {
      fake.stop();
      await new Promise((r) => setTimeout(r, 100));
      const r = await run(["list"], env);
      assert.equal(r.code, EXIT_UNREACHABLE);
      assert.match(r.err, /cannot reach the daemon at unix:path=/);
      assert.match(r.err, /start it with `deno task daemon`/);
    });
  } finally {
    await bus.stop();
  }
});

Deno.test("ctl approve: each grant option goes with its request kind, never both", async () => {
  const bus = await startTestBus();
  let fake: FakeAdmin | undefined;
  try {
    fake = await FakeAdmin.start(bus.address, [hostileCommit(), secretRead(), tagRequest()]);
    const env = { [ADDRESS_ENV]: bus.address };
    const decided = () =>
      fake!.calls.filter((c) => c.member === "Approve" || c.member === "ApproveWithGrant");
    const help =
      "(--grant-minutes is for secret.read requests, --grant-signatures for sign.commit requests)";
    const refused = async (args: string[], err: string) => {
      const r = await run(["approve", ...args], env);
      assert.equal(r.code, EXIT_USAGE, r.err);
      assert.equal(r.err, `ctl: ${err}\n`);
      assert.equal(r.out, "");
      assert.deepEqual(decided(), [], "nothing approved");
    };
    // The option of the other kind: named, with the one that fits (not the daemon's "a rebase
    // grant covers 1-100 signatures").
    await refused(
      ["1a2b3c4d", "--grant-minutes", "5"],
      "not approved: --grant-minutes does not fit 1a2b3c4d, a sign.commit request: " +
        `--grant-signatures <n> grants 1-100 signatures continuing it ${help}`,
    );
    await refused(
      ["3c4d", "--grant-signatures", "3"],
      "not approved: --grant-signatures does not fit 3c4d5e6f, a secret.read request: " +
        `--grant-minutes <n> grants 1-60 minutes ${help}`,
    );
    await refused(
      ["5e6f", "--grant-minutes", "5"],
      `not approved: no grant can be made from 5e6f7a8b, a sign.tag request ${help}`,
    );
    // Both: one would have been ignored; refused before anything is asked.
    fake.calls.length = 0;
    await refused(
      ["1a2b", "--grant-signatures", "3", "--grant-minutes", "3"],
      `--grant-minutes and --grant-signatures exclude each other: a request takes the grant of ` +
        `its kind ${help}`,
    );
    assert.deepEqual(fake.calls, []);
    // Out of range, by the option's own limit.
    await refused(
      ["1a2b", "--grant-signatures", "0"],
      "--grant-signatures takes 1-100 signatures (sign.commit requests), got 0",
    );
    await refused(
      ["3c4d", "--grant-minutes", "61"],
      "--grant-minutes takes 1-60 minutes (secret.read requests), got 61",
    );
    // The fitting option makes the grant.
    let r = await run(["approve", "1a2b", "--grant-signatures", "3"], env);
    assert.equal(r.code, EXIT_OK, r.err);
    assert.deepEqual(decided().map((c) => c.body[2]), ['{"signatures":3}']);
    r = await run(["approve", "3c4d", "--grant-minutes", "5"], env);
    assert.equal(r.code, EXIT_OK, r.err);
    assert.deepEqual(decided().map((c) => c.body[2]), ['{"signatures":3}', '{"minutes":5}']);
    assert.match(r.out, /^approved 3c4d5e6f \(secret\.read\)/);
  } finally {
    fake?.stop();
    await bus.stop();
  }
});

Deno.test("ctl: no address or a dead socket -> exit 2", async () => {
  const none = await run(["list"]);
  assert.equal(none.code, EXIT_UNREACHABLE);
  assert.match(none.err, /no bus address: pass --bus <address> or set SD_COMPANION_BUS_ADDRESS/);
  const dead = await run(["list", "--bus", "unix:path=/tmp/sd-nonexistent-dir/sd.sock"]);
  assert.equal(dead.code, EXIT_UNREACHABLE);
  assert.match(
    dead.err,
    /cannot reach the daemon at unix:path=\/tmp\/sd-nonexistent-dir\/sd\.sock: .*(ENOENT|Requires net access)/,
  );
  assert.match(dead.err, /is the daemon running\? start it with `deno task daemon`/);
});

Deno.test("safeJson keeps the value and hides nothing", () => {
  const v = { s: "a\x1b[2J\u202e\u200b\x9b\u2028b", n: 1 };
  const text = safeJson(v);
  assert.deepEqual(JSON.parse(text), v);
  assert.ok(!FORBIDDEN.test(text));
  assert.ok(text.includes("\\u202e") && text.includes("\\u009b") && text.includes("\\u2028"));
  assert.equal(Errors.NotPending.split(".").at(-1), "NotPending");
});

Deno.test("ctl unlock --wait also waits for the store behind a running daemon", async () => {
  const bus = await startTestBus();
  const fake = await FakeAdmin.start(bus.address, []);
  try {
    const env = { [ADDRESS_ENV]: bus.address };
    const stdin = () => ReadableStream.from([new TextEncoder().encode("pw\n")]);
    // The backend is still starting twice, then the store opens.
    fake.unlockStoreErrors = [Errors.StoreUnavailable, Errors.StoreUnavailable];
    const ok = captureIo(env);
    const sleep = () => new Promise<void>((r) => setTimeout(r, 10));
    assert.equal(
      await main(["unlock", "--password-stdin", "--wait", "5"], { ...ok, stdin, sleep }),
      0,
    );
    assert.match(ok.stdout, /store unlocked/);
    assert.deepEqual(fake.unlockPasswords.map((p) => new TextDecoder().decode(p)), [
      "pw",
      "pw",
      "pw",
    ]);
    // A wrong password is not retried: it fails at once.
    fake.unlockStoreErrors = [Errors.WrongPassword];
    const wrong = captureIo(env);
    assert.notEqual(
      await main(["unlock", "--password-stdin", "--wait", "5"], { ...wrong, stdin, sleep }),
      0,
    );
    assert.equal(fake.unlockPasswords.length, 4);
    // Without --wait an unavailable store is an error at once.
    fake.unlockStoreErrors = [Errors.StoreUnavailable];
    const once = captureIo(env);
    assert.notEqual(await main(["unlock", "--password-stdin"], { ...once, stdin, sleep }), 0);
    assert.equal(fake.unlockPasswords.length, 5);
  } finally {
    fake.stop();
    await bus.stop();
  }
});

Deno.test("ctl unlock reads the password only from stdin, bounded, and waits for the daemon", async () => {
  const stdin = (text: string | Uint8Array) => () =>
    ReadableStream.from([typeof text === "string" ? new TextEncoder().encode(text) : text]);
  const env = { [ADDRESS_ENV]: "unix:path=/nonexistent/sd-test-bus" };
  // Without --password-stdin, unlock only ends the console's lock: stdin is not read.
  const io = captureIo(env);
  let read = false;
  assert.equal(
    await main(["unlock"], {
      ...io,
      stdin: () => {
        read = true;
        return stdin("pw\n")();
      },
    }),
    EXIT_UNREACHABLE,
  );
  assert.equal(read, false);

  const big = captureIo(env);
  const tooLong = new Uint8Array(4097).fill(0x61);
  assert.equal(
    await main(["unlock", "--password-stdin"], { ...big, stdin: stdin(tooLong) }),
    EXIT_USAGE,
  );
  assert.match(big.stderr, /longer than 4096 bytes/);

  // No daemon: tries until --wait runs out (each try 0.5 s apart), then says it is unreachable.
  const waiting = captureIo(env);
  let slept = 0;
  const code = await main(["unlock", "--password-stdin", "--wait", "1"], {
    ...waiting,
    stdin: stdin("pw\n"),
    sleep: (ms) => {
      slept += ms;
      return new Promise((r) => setTimeout(r, ms));
    },
  });
  assert.equal(code, EXIT_UNREACHABLE);
  assert.ok(slept >= 500, "it waited before giving up");
  assert.doesNotMatch(waiting.stderr + waiting.stdout, /pw/);
});
