import assert from "node:assert/strict";
import { handOver, MAX_PASSWORD_BYTES, readToken } from "./pam_unlock.ts";

function streamOf(...chunks: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(
    chunks.map((c) => (typeof c === "string" ? new TextEncoder().encode(c) : c)),
  );
}

const text = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

Deno.test("readToken stops at pam_exec's NUL terminator or EOF, across chunks", async () => {
  assert.equal(text(await readToken(streamOf("pass", "word\0ignored"))), "password");
  assert.equal(text(await readToken(streamOf("no terminator"))), "no terminator");
  assert.equal(text(await readToken(streamOf("\0"))), "");
  assert.equal(text(await readToken(streamOf("ümlaut €\n\0"))), "ümlaut €\n");
});

Deno.test("readToken refuses oversized input instead of cutting it", async () => {
  assert.equal(
    (await readToken(streamOf("x".repeat(MAX_PASSWORD_BYTES))))!.length,
    MAX_PASSWORD_BYTES,
  );
  assert.equal(await readToken(streamOf("x".repeat(MAX_PASSWORD_BYTES), "y")), null);
  assert.equal(await readToken(streamOf("abc"), 2), null);
});

Deno.test("handOver writes exactly the token to the socket and closes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sd-unlock-" });
  try {
    const path = `${dir}/s.sock`;
    const listener = Deno.listen({ transport: "unix", path });
    const received = (async () => {
      const conn = await listener.accept();
      const chunks: Uint8Array[] = [];
      for await (const c of conn.readable) chunks.push(c);
      return new Uint8Array(chunks.flatMap((c) => [...c]));
    })();
    const token = new Uint8Array([0x70, 0x77, 0x00, 0xff, 0x0a]);
    await handOver(path, token);
    assert.deepEqual(await received, token);
    listener.close();

    await assert.rejects(() => handOver(`${dir}/missing.sock`, token));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the helper program exits 0 when handed over, 1 when not, and prints nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sd-unlock-" });
  try {
    const path = `${dir}/s.sock`;
    const module = new URL("./pam_unlock.ts", import.meta.url).pathname;
    const run = async (stdin: string, sock = path) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--no-prompt",
          `--allow-read=${sock}`,
          `--allow-write=${sock}`,
          `--allow-net=unix:${sock}`,
          module,
          sock,
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(stdin));
      await w.close();
      const out = await child.output();
      return {
        code: out.code,
        output: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
      };
    };
    const listener = Deno.listen({ transport: "unix", path });
    const received = (async () => {
      const conn = await listener.accept();
      return new TextDecoder().decode(
        new Uint8Array((await Array.fromAsync(conn.readable)).flatMap((c) => [...c])),
      );
    })();
    const ok = await run("correct horse\0");
    assert.deepEqual(ok, { code: 0, output: "" });
    assert.equal(await received, "correct horse");
    listener.close();

    assert.deepEqual(await run("pw\0", `${dir}/gone.sock`), { code: 1, output: "" });
    assert.deepEqual(await run("\0"), { code: 1, output: "" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
