/**
 * The switch lock on a real VT: a holder program (`tests/fixtures/vt_holder.ts`) runs under
 * `setsid -c` with `/dev/tty8` as stdin, so tty8 is its controlling terminal as under systemd,
 * and holds it with `VtGuard`. The test asks `chvt` (kbd) to switch away and reads the VT state
 * itself (through a separate `vt_holder.ts query`, not the holder's word).
 *
 * Needs root, `/dev/tty8`, `chvt` (kbd), `setsid`, `timeout` and `ps`; skipped with the reason
 * otherwise. It stops before touching tty8 when a process has it as controlling terminal or it is
 * in `VT_PROCESS` (root's `setsid -c` would steal it from a running console). The machine's VT
 * state is put back: the VT that was in front at the start is in front at the end.
 *
 * @module
 */

import assert from "node:assert/strict";
import { DEFAULT_LIBC_PATH } from "../deploy/permissions.ts";
import { VT_AUTO, VT_PROCESS } from "../console/vt.ts";

import { chvt, HOLDER, query, TTY, tty8Owners, vtSkipReason as skipReason } from "./vt_support.ts";

type Event = Record<string, unknown> & { event: string };

/** The holder under `setsid -c` on tty8, with its command FIFO and its JSON event lines. */
class Holder {
  readonly child: Deno.ChildProcess;
  readonly stderr: Promise<string>;
  #events: Event[] = [];
  #waiters: (() => void)[] = [];
  #writer: Deno.FsFile | null = null;
  #fifo: string;
  #ended = false;
  pid = 0;

  constructor(fifo: string) {
    this.#fifo = fifo;
    this.child = new Deno.Command("/bin/sh", {
      args: [
        "-c",
        `exec /usr/bin/setsid -w -c "$@" < ${TTY}`,
        "sh",
        Deno.execPath(),
        "run",
        "--no-prompt",
        `--allow-ffi=${DEFAULT_LIBC_PATH}`,
        `--allow-read=${fifo}`,
        HOLDER,
        "serve",
        fifo,
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.stderr = new Response(this.child.stderr).text();
    this.#read();
  }

  async #read() {
    let buffered = "";
    for await (const chunk of this.child.stdout.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        this.#events.push(JSON.parse(buffered.slice(0, nl)));
        buffered = buffered.slice(nl + 1);
        for (const w of this.#waiters.splice(0)) w();
      }
    }
    this.#ended = true;
    for (const w of this.#waiters.splice(0)) w();
  }

  /** The next event named `name` (earlier events of other names are dropped). */
  async next(name: string, timeoutMs = 10_000): Promise<Event> {
    const end = Date.now() + timeoutMs;
    while (true) {
      const i = this.#events.findIndex((e) => e.event === name || e.event === "error");
      if (i >= 0) {
        const [e] = this.#events.splice(0, i + 1).slice(-1);
        if (e.event === "error") throw new Error(`holder: ${JSON.stringify(e)}`);
        return e;
      }
      if (this.#ended) {
        throw new Error(`holder ended before "${name}": ${await this.stderr}`);
      }
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for "${name}"`);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        timer = setTimeout(resolve, left);
      });
      clearTimeout(timer);
    }
  }

  async ready(): Promise<Event> {
    const e = await this.next("ready");
    this.pid = e.pid as number;
    this.#writer = await Deno.open(this.#fifo, { write: true });
    return e;
  }

  async send(command: string, reply: string): Promise<Event> {
    assert.ok(this.#writer, "ready() first");
    await this.#writer.write(new TextEncoder().encode(command + "\n"));
    return await this.next(reply);
  }

  closeInput(): void {
    try {
      this.#writer?.close();
    } catch { /* closed */ }
    this.#writer = null;
  }

  /** Closes its input (it then exits) and waits for it; see {@link exited}. */
  async stop(): Promise<Deno.CommandStatus> {
    this.closeInput();
    return await this.exited();
  }

  /** Waits for the holder to end, killing it after 3 s. */
  async exited(): Promise<Deno.CommandStatus> {
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 3_000);
    const status = await this.child.status;
    clearTimeout(timer);
    await this.stderr;
    return status;
  }
}

const reason = skipReason();
if (reason) console.log(`vt_real_test: skipped: ${reason}`);

Deno.test({
  name: `real VT: VtGuard holds ${TTY} against chvt, releases, restores VT_AUTO${
    reason ? ` (skipped: ${reason})` : ""
  }`,
  ignore: reason !== null,
  async fn(t) {
    const owners = await tty8Owners();
    assert.deepEqual(
      owners,
      [],
      `${TTY} is the controlling terminal of ${owners}: not touching it`,
    );
    const before = await query();
    assert.equal(before.mode, VT_AUTO, `${TTY} is already in VT_PROCESS: someone holds it`);
    const start = before.active;
    const other = start === 8 ? 1 : start;
    const dir = await Deno.makeTempDir({ prefix: "vt_real_test_" });
    const holders: Holder[] = [];
    const spawn = async () => {
      const fifo = `${dir}/cmd${holders.length}`;
      const mk = await new Deno.Command("mkfifo", { args: ["-m", "600", fifo] }).output();
      assert.equal(mk.code, 0, "mkfifo");
      const h = new Holder(fifo);
      holders.push(h);
      const ready = await h.ready();
      assert.equal(ready.vt, 8, "the holder finds its VT with fstat(0)");
      assert.equal(ready.mode, VT_AUTO);
      return h;
    };
    try {
      const holder = await spawn();

      await t.step("held: chvt away is refused", async () => {
        assert.equal((await holder.send("hold 30000", "hold")).ok, true);
        const focus = await holder.send("focus", "focus");
        assert.equal(focus.ok, true);
        let q = await query();
        assert.equal(q.active, 8);
        assert.deepEqual([q.mode, q.relsig, q.acqsig], [VT_PROCESS, 12, 12], "SIGUSR2 both");
        assert.equal(await chvt(other, 2.5), 124, "chvt hangs: the switch was refused");
        q = await query();
        assert.equal(q.active, 8, "tty8 still in front after chvt");
        const stats = await holder.send("stats", "stats");
        assert.ok((stats.refused as number) >= 1, `refused ${stats.refused}`);
        assert.equal(stats.held, true);
      });

      await t.step("released: chvt away goes through", async () => {
        await holder.send("release", "release");
        assert.equal((await query()).mode, VT_AUTO);
        assert.equal(await chvt(other, 5), 0);
        assert.equal((await query()).active, other);
      });

      await t.step("the hold ends by itself at its deadline", async () => {
        await holder.send("hold 2500", "hold");
        assert.equal((await holder.send("focus", "focus")).ok, true);
        assert.equal(await chvt(other, 1), 124, "refused before the deadline");
        assert.equal((await query()).active, 8);
        await holder.next("autoRelease", 5_000);
        assert.equal((await query()).mode, VT_AUTO);
        assert.equal(await chvt(other, 5), 0, "allowed after the deadline");
        assert.equal((await query()).active, other);
      });

      await t.step("focus remembers the VT in front, returnFocus goes back to it", async () => {
        await holder.send("hold 30000", "hold");
        const focus = await holder.send("focus", "focus");
        assert.deepEqual([focus.ok, focus.previous], [true, other]);
        assert.equal((await query()).active, 8);
        await holder.send("release", "release");
        assert.equal((await holder.send("return", "return")).result, "returned");
        assert.equal((await query()).active, other);
      });

      await t.step("SIGTERM while held: VT_AUTO restored at exit", async () => {
        await holder.send("hold 30000", "hold");
        assert.equal((await holder.send("focus", "focus")).ok, true);
        assert.equal((await query()).mode, VT_PROCESS);
        Deno.kill(holder.pid, "SIGTERM");
        // Wait for the signal's exit before closing the command FIFO: end of input makes the
        // holder exit 0 by itself, which would race the signal on a loaded machine.
        const status = await holder.exited();
        holder.closeInput();
        assert.equal(status.code, 143);
        // Checked before any switch request: the kernel's own reset only happens at the next one.
        const q = await query();
        assert.equal(q.mode, VT_AUTO);
        assert.equal(q.active, 8);
        assert.equal(await chvt(other, 5), 0);
      });

      await t.step("uncaught error while held: VT_AUTO restored", async () => {
        const h = await spawn();
        await h.send("hold 30000", "hold");
        assert.equal((await h.send("focus", "focus")).ok, true);
        assert.equal((await query()).mode, VT_PROCESS);
        await h.send("crash", "crash");
        const status = await h.exited();
        assert.equal(status.code, 1);
        assert.match(await h.stderr, /deliberate uncaught error/);
        const q = await query();
        assert.equal(q.mode, VT_AUTO);
        assert.equal(await chvt(other, 5), 0);
      });
    } finally {
      for (const h of holders) await h.stop();
      // Put the machine back: a dead holder's VT_PROCESS is reset by the kernel at this switch.
      if ((await query()).active !== start) await chvt(start, 5);
      await Deno.remove(dir, { recursive: true });
    }
    assert.equal((await query()).active, start, "the VT in front at the start is in front again");
  },
});
