/**
 * The real console entrypoint on a real VT: `console/main.ts` runs with its production permission
 * flags under `setsid -c` with `/dev/tty8` as stdin and stdout (so tty8 is its controlling
 * terminal, as under systemd's `TTYPath=`), against a real daemon stack (`dev/harness.ts`) with a
 * pending signing request. The test proves, by reading the VT state through a separate process
 * and the screen through `/dev/vcs8`:
 *
 * - the request is on screen (with the phrase) and VT 8 was brought to the front;
 * - VT 8 is in `VT_PROCESS` with SIGUSR2 for both signals, and `chvt 1` is refused (hangs);
 * - after the request is decided through the admin interface, the VT is in `VT_AUTO` again, the
 *   VT in front before is back, and `chvt` goes through;
 * - after SIGTERM the console has exited and left the VT in `VT_AUTO`.
 *
 * Needs root, `/dev/tty8`, `chvt`, `setsid`, `timeout`, `ps`; skipped with the reason otherwise,
 * and (like `vt_real_test.ts`) refuses to touch tty8 while something holds it.
 *
 * @module
 */

import assert from "node:assert/strict";
import { denoArgs } from "../deploy/permissions.ts";
import { denoDir, ROOT, signStack, waitFor } from "../dev/harness.ts";
import { DispatcherClient } from "../lib/dispatcher_client.ts";
import { VT_AUTO, VT_PROCESS } from "../console/vt.ts";
import { approvalCode } from "../console/approval_code.ts";
import { chvt, query, TTY, tty8Owners, vtSkipReason } from "./vt_support.ts";

const PAYLOAD = new TextEncoder().encode(
  "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n" +
    "author A U Thor <a@example.test> 1700000000 +0100\n" +
    "committer A U Thor <a@example.test> 1700000000 +0100\n\n" +
    "held on the real VT\x1b[2J\n\nbody\n",
);

/** The text on VT 8's screen (`/dev/vcs8`: rows of `cols` characters, no newlines). */
async function vcs8(): Promise<string> {
  const out = await new Deno.Command("/usr/bin/cat", { args: ["/dev/vcs8"], stdout: "piped" })
    .output();
  assert.equal(out.code, 0, "cat /dev/vcs8");
  return new TextDecoder("latin1").decode(out.stdout);
}

const reason = vtSkipReason();
if (reason) console.log(`console_vt_real_test: skipped: ${reason}`);

Deno.test({
  name: `real VT: the console entrypoint on ${TTY} holds it while a request is shown${
    reason ? ` (skipped: ${reason})` : ""
  }`,
  ignore: reason !== null,
  async fn(t) {
    assert.deepEqual(await tty8Owners(), [], `${TTY} is someone's controlling terminal`);
    const before = await query();
    assert.equal(before.mode, VT_AUTO, `${TTY} is already in VT_PROCESS: someone holds it`);
    const start = before.active;
    // The VT the user "works on": the one in front, or VT 1 when that is tty8 itself.
    const desk = start === 8 ? 1 : start;
    if (start === 8) assert.equal(await chvt(desk, 5), 0);

    const s = await signStack();
    let console_: Deno.ChildProcess | null = null;
    let client: DispatcherClient | null = null;
    try {
      const phraseFile = `${s.stack.dir}/console-phrase`;
      await Deno.writeTextFile(phraseFile, "otter cobalt lantern pebble\n", { mode: 0o600 });
      const args = denoArgs("console", {
        root: ROOT,
        paths: {
          systemBusSocket: s.systemBus.socket,
          companionBusSocket: s.companionBus.socket,
          stateDir: "",
          gpg: "",
          gitDirs: [],
          phraseFile,
        },
      });
      const log = `${s.stack.dir}/console.log`;
      console_ = new Deno.Command("/bin/sh", {
        args: [
          "-c",
          `exec /usr/bin/setsid -w -c "$@" < ${TTY} > ${TTY} 2> ${log}`,
          "sh",
          Deno.execPath(),
          ...args,
        ],
        clearEnv: true,
        env: {
          PATH: "/usr/bin:/bin",
          TERM: "linux",
          DENO_DIR: await denoDir(),
          SD_COMPANION_BUS_ADDRESS: s.companionBus.address,
          SD_CONSOLE_PHRASE_FILE: phraseFile,
        },
        stdin: "null",
        stdout: "null",
        stderr: "null",
      }).spawn();
      const exited = console_.status;
      let ended = false;
      exited.then(() => ended = true);
      const logText = async () => await Deno.readTextFile(log).catch(() => "");
      await waitFor("the console to draw on tty8", async () => {
        if (ended) throw new Error(`the console exited: ${await logText()}`);
        return (await vcs8()).includes("secrets-dispatcher");
      }, 30_000);
      assert.equal((await query()).active, desk, "no request yet: not brought to the front");
      assert.equal((await query()).mode, VT_AUTO, "no request yet: not held");

      client = await DispatcherClient.connect({ address: s.systemBus.address, uid: Deno.uid()! });
      const pending = await client.requestSign(PAYLOAD, {
        keySpec: s.key.fingerprint,
        context: { repo: "/work/repo", branch: "main" },
      });
      const id = pending.id;

      await t.step(
        "a pending request: VT 8 in front, held with SIGUSR2, chvt refused",
        async () => {
          await waitFor("VT 8 to be held and in front", async () => {
            const q = await query();
            return q.mode === VT_PROCESS && q.active === 8;
          }, 10_000);
          const q = await query();
          assert.deepEqual([q.relsig, q.acqsig], [12, 12], "SIGUSR2 for both, never SIGUSR1");
          await waitFor(
            "the request on screen",
            async () => (await vcs8()).includes(id.slice(0, 8)),
          );
          const screen = await vcs8();
          assert.match(screen, /phrase: otter cobalt lantern pebble/);
          assert.match(screen, /VT 8 held/);
          assert.match(screen, /held on the real VT\\x1b\[2J/, "the subject, escaped");
          assert.equal(await chvt(desk, 2.5), 124, "chvt hangs: the switch was refused");
          assert.equal((await query()).active, 8, "still on VT 8");
        },
      );

      await t.step(
        "decided through the admin interface: released, back, chvt allowed",
        async () => {
          const view = await s.admin.get(id);
          // What a human would type on the console (shown there); the decision goes through ctl's
          // path here: Approve(id, digest).
          assert.match(approvalCode(view.id, view.digest), /^[A-Z]{3}$/);
          await s.admin.approve(view.id, view.digest);
          const done = await pending.completed;
          assert.equal(done.outcome, "done");
          await waitFor("VT_AUTO and the previous VT back", async () => {
            const q = await query();
            return q.mode === VT_AUTO && q.active === desk;
          }, 10_000);
          assert.equal(await chvt(8, 5), 0, "switching to VT 8 works");
          assert.equal(await chvt(desk, 5), 0, "and away from it: nothing holds it");
          assert.equal((await query()).active, desk);
        },
      );

      await t.step("SIGTERM: the console exits and VT 8 is in VT_AUTO", async () => {
        // Hold it again with a second request, then end the console while held.
        const again = await client!.requestSign(PAYLOAD, {
          keySpec: s.key.fingerprint,
          context: { repo: "/work/repo" },
        });
        await waitFor("held again", async () => (await query()).mode === VT_PROCESS, 10_000);
        const pids = await tty8Owners();
        assert.ok(pids.length > 0, "the console has tty8 as its controlling terminal");
        for (const pid of pids) Deno.kill(pid, "SIGTERM");
        const status = await exited;
        assert.ok(ended);
        assert.equal(status.code, 0, await logText());
        const q = await query();
        assert.equal(q.mode, VT_AUTO, "VT_AUTO restored by the console itself");
        assert.equal(await chvt(desk, 5), 0);
        await again.cancel();
      });
    } finally {
      if (console_) {
        for (const pid of await tty8Owners()) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch { /* gone */ }
        }
        await console_.status;
      }
      client?.close();
      await s.close();
      if ((await query()).active !== start) await chvt(start, 5);
    }
    assert.equal((await query()).active, start, "the VT in front at the start is in front again");
  },
});
