import assert from "node:assert/strict";
import { AdminClient, AdminError, AdminUnreachableError, BAD_REPLY_ERROR } from "./admin_client.ts";
import { Errors } from "./protocol.ts";
import {
  FakeAdmin,
  hostileCommit,
  startTestBus,
  tagRequest,
  toSummary,
} from "../console/test_support.ts";

Deno.test("AdminClient against a fake admin service", async (t) => {
  const bus = await startTestBus();
  let fake: FakeAdmin;
  let client: AdminClient;
  try {
    fake = await FakeAdmin.start(bus.address, [hostileCommit(), tagRequest()]);
    client = await AdminClient.connect(bus.address, { timeoutMs: 3000, callTimeoutMs: 1000 });
  } catch (err) {
    await bus.stop();
    throw err;
  }
  try {
    await t.step("list", async () => {
      const list = await client.list();
      assert.deepEqual(list.map((r) => r.kind), ["sign.commit", "sign.tag"]);
      assert.deepEqual(list[0], toSummary(hostileCommit(list[0].createdAt + 10_000)));
      assert.equal(list[0].summary, "Innocent change\x1b[2J\x1b[H", "raw, as the daemon keeps it");
    });
    await t.step("get by prefix, errors as AdminError", async () => {
      const r = await client.get("1a2b3c4d");
      assert.equal(r.id, hostileCommit().id);
      await assert.rejects(client.get("ffff"), (e: unknown) => {
        assert.ok(e instanceof AdminError);
        assert.equal(e.dbusName, Errors.NoSuchRequest);
        assert.match(e.text, /no request ffff/);
        return true;
      });
    });
    await t.step("Changed signal", async () => {
      const seen: [string, string][] = [];
      const off = await client.onChanged((id, state) => seen.push([id, state]));
      fake.emitChanged("abc", "pending");
      const r = hostileCommit();
      await assert.rejects(
        client.approve(r.id, "00"),
        (e: unknown) => e instanceof AdminError && e.dbusName === Errors.DigestMismatch,
      );
      await client.approve(r.id, r.digest);
      await assert.rejects(
        client.deny(r.id, "x"),
        (e: unknown) => e instanceof AdminError && e.dbusName === Errors.NotPending,
      );
      for (let i = 0; i < 100 && seen.length < 2; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.deepEqual(seen, [["abc", "pending"], [r.id, "approved"]]);
      off();
      assert.deepEqual(
        fake.calls.filter((c) => c.member === "Approve").map((c) => c.body),
        [[r.id, "00"], [r.id, r.digest]],
      );
    });
    await t.step("history", async () => {
      fake.history = [{
        at: 1,
        id: "x",
        kind: "sign.commit",
        event: "created",
        summary: "s",
        callerUid: 1,
        callerPid: null,
        digest: "d",
      }];
      assert.deepEqual(await client.history(5), fake.history);
      assert.deepEqual(fake.calls.at(-1), { member: "History", body: [5] });
    });
    await t.step("status: the console's lock, password unlocking, creating; checked", async () => {
      fake.status = {
        state: "locked",
        message: "m",
        consoleLock: false,
        passwordUnlock: true,
        creates: true,
      };
      assert.deepEqual(await client.status(), fake.status);
      fake.status = { state: "locked", message: "from an older daemon" };
      assert.deepEqual(await client.status(), {
        state: "locked",
        message: "from an older daemon",
        consoleLock: false,
        passwordUnlock: null,
        creates: false,
      });
      for (
        const bad of [
          { state: "open", message: "m" },
          { state: "locked", message: "m", consoleLock: "yes" },
          { state: "locked", message: "m", passwordUnlock: 1 },
          { state: "locked", message: "m", passwordUnlock: true, creates: "yes" },
          null,
        ]
      ) {
        fake.status = bad;
        await assert.rejects(
          client.status(),
          (e: unknown) => e instanceof AdminError && e.dbusName === BAD_REPLY_ERROR,
          JSON.stringify(bad),
        );
      }
    });
    await t.step("a call that gets no answer times out", async () => {
      fake.hang.add("List");
      const t0 = Date.now();
      await assert.rejects(
        client.list(),
        (e: unknown) =>
          e instanceof AdminUnreachableError &&
          /did not answer/.test(e.message),
      );
      assert.ok(Date.now() - t0 < 3000);
      fake.hang.delete("List");
      assert.equal((await client.list()).length, 1);
    });
    await t.step("no owner of the admin name -> unreachable", async () => {
      fake.stop();
      await new Promise((r) => setTimeout(r, 100));
      await assert.rejects(
        client.list(),
        (e: unknown) =>
          e instanceof AdminUnreachableError &&
          /ServiceUnknown/.test(e.message),
      );
    });
    await t.step(
      "bus goes away -> pending calls reject, onClose fires",
      async () => {
        const closed = new Promise<AdminUnreachableError>((resolve) => client.onClose(resolve));
        const fake2 = await FakeAdmin.start(bus.address, [tagRequest()]);
        fake2.hang.add("List");
        const call = assert.rejects(
          client.list(),
          (e: unknown) =>
            e instanceof AdminUnreachableError &&
            /lost the companion bus/.test(e.message),
        );
        await new Promise((r) => setTimeout(r, 100));
        await bus.stop();
        await call;
        assert.ok((await closed) instanceof AdminUnreachableError);
        assert.ok(client.closed);
        await assert.rejects(client.list(), AdminUnreachableError);
        fake2.stop();
      },
    );
  } finally {
    client.close();
    await bus.stop().catch(() => {});
  }
});

Deno.test("connect fails clearly on a missing socket", async () => {
  await assert.rejects(
    AdminClient.connect("unix:path=/tmp/sd-nonexistent-dir/sd-test.sock", {
      timeoutMs: 2000,
    }),
    (e: unknown) => {
      assert.ok(e instanceof AdminUnreachableError);
      assert.equal(e.address, "unix:path=/tmp/sd-nonexistent-dir/sd-test.sock");
      assert.match(e.message, /ENOENT|No such file|Requires net access/);
      return true;
    },
  );
});

Deno.test("connect fails clearly on a bad address", async () => {
  await assert.rejects(AdminClient.connect("nonsense"), AdminUnreachableError);
  await assert.rejects(
    AdminClient.connect("tcp6:host=x"),
    /unknown address type/,
  );
});

Deno.test("connect times out on a socket that never answers", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/silent.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const accepted: Deno.Conn[] = [];
  const acceptLoop = (async () => {
    for await (const c of listener) accepted.push(c);
  })();
  try {
    const t0 = Date.now();
    await assert.rejects(
      AdminClient.connect(`unix:path=${path}`, { timeoutMs: 300 }),
      (e: unknown) =>
        e instanceof AdminUnreachableError &&
        /no answer within 300 ms/.test(e.message),
    );
    assert.ok(Date.now() - t0 < 2000);
  } finally {
    listener.close();
    await acceptLoop.catch(() => {});
    for (const c of accepted) c.close();
    await Deno.remove(dir, { recursive: true });
  }
});
