import assert from "node:assert/strict";
import { claimDemoDir, DEMO_MARKER, shellQuote } from "./demo_dir.ts";

const names = async (dir: string) =>
  (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();

Deno.test("the demo takes a new, empty or demo directory, and empties it under its lock", async () => {
  const base = await Deno.makeTempDir({ prefix: "sd-demo-dir-" });
  try {
    // A new directory (and its parents).
    const fresh = `${base}/a/demo`;
    let lock = await claimDemoDir(fresh);
    assert.deepEqual(await names(fresh), [DEMO_MARKER]);
    assert.equal((await Deno.stat(fresh)).mode! & 0o777, 0o700);
    assert.equal(await Deno.readTextFile(`${fresh}/${DEMO_MARKER}`), `${Deno.pid}\n`);
    await Deno.mkdir(`${fresh}/repo/.git`, { recursive: true });
    await Deno.writeTextFile(`${fresh}/env`, "old\n");
    lock.close();
    // The same directory again: a demo's, so what the last demo left is deleted.
    lock = await claimDemoDir(fresh);
    assert.deepEqual(await names(fresh), [DEMO_MARKER]);
    lock.close();
    // An empty directory.
    const empty = `${base}/empty`;
    await Deno.mkdir(empty, { mode: 0o755 });
    (await claimDemoDir(empty)).close();
    assert.deepEqual(await names(empty), [DEMO_MARKER]);
    assert.equal((await Deno.stat(empty)).mode! & 0o777, 0o700);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("SD_DEMO_DIR=<a directory with other things in it> deletes nothing", async () => {
  const base = await Deno.makeTempDir({ prefix: "sd-demo-dir-" });
  try {
    const precious = `${base}/precious`;
    await Deno.mkdir(`${precious}/photos`, { recursive: true });
    await Deno.writeTextFile(`${precious}/photos/1.jpg`, "x");
    await Deno.writeTextFile(`${precious}/notes.txt`, "keep me\n");
    // An `env` that is not the one a demo wrote for this directory does not make it a demo's.
    await Deno.writeTextFile(`${precious}/env`, `export SD_DEMO_DIR=${shellQuote("/elsewhere")}\n`);
    await assert.rejects(
      () => claimDemoDir(precious),
      new RegExp(
        `^Error: ${precious} is not empty and is not a demo directory \\(no demo\\.lock\\)`,
      ),
    );
    assert.deepEqual(await names(precious), ["env", "notes.txt", "photos"]);
    assert.equal(await Deno.readTextFile(`${precious}/photos/1.jpg`), "x");
    // A file is no directory.
    await assert.rejects(
      () => claimDemoDir(`${precious}/notes.txt`),
      /notes\.txt is not a directory/,
    );
    assert.equal(await Deno.readTextFile(`${precious}/notes.txt`), "keep me\n");
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});

Deno.test("a directory an earlier demo made (no marker yet) is still the demo's", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sd-demo-dir-" });
  try {
    await Deno.mkdir(`${dir}/repo`);
    await Deno.writeTextFile(
      `${dir}/env`,
      `export DBUS_SYSTEM_BUS_ADDRESS='unix:path=/x'\nexport SD_DEMO_DIR=${
        shellQuote(await Deno.realPath(dir))
      }\ncd '/x/repo'\n`,
    );
    (await claimDemoDir(dir)).close();
    assert.deepEqual(await names(dir), [DEMO_MARKER]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a second demo in the same directory is refused before it deletes anything", async () => {
  const dir = await Deno.makeTempDir({ prefix: "sd-demo-dir-" });
  let child: Deno.ChildProcess | undefined;
  try {
    // The first demo, in another process, holds the directory and has started writing into it.
    const script = `${dir}.holder.ts`;
    await Deno.writeTextFile(
      script,
      `import { claimDemoDir } from ${
        JSON.stringify(new URL("./demo_dir.ts", import.meta.url).href)
      };
const lock = await claimDemoDir(Deno.args[0]);
await Deno.writeTextFile(Deno.args[0] + "/env", "running\\n");
console.log("claimed");
await Deno.stdin.read(new Uint8Array(1));
lock.close();
`,
    );
    child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--no-prompt", `--allow-read=${dir}`, `--allow-write=${dir}`, script, dir],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.getReader();
    const first = await reader.read();
    assert.equal(new TextDecoder().decode(first.value), "claimed\n");
    const pid = child.pid;
    await assert.rejects(
      () => claimDemoDir(dir),
      new RegExp(`^Error: a demo \\(pid ${pid}\\) is already running in ${dir}; stop it first$`),
    );
    assert.deepEqual(await names(dir), ["demo.lock", "env"]);
    assert.equal(await Deno.readTextFile(`${dir}/env`), "running\n");
    // Once the first demo has ended, the directory is free (and emptied) again.
    await child.stdin.close();
    await reader.cancel();
    assert.equal((await child.status).code, 0);
    child = undefined;
    const mine = await claimDemoDir(dir);
    try {
      assert.deepEqual(await names(dir), [DEMO_MARKER]);
      // Within one process too: the lock belongs to an open marker, not to a process.
      await Deno.writeTextFile(`${dir}/env`, "mine\n");
      await assert.rejects(() => claimDemoDir(dir), /is already running/);
      assert.equal(await Deno.readTextFile(`${dir}/env`), "mine\n");
    } finally {
      mine.close();
    }
    (await claimDemoDir(dir)).close();
    await Deno.remove(script);
  } finally {
    if (child) {
      child.kill("SIGKILL");
      await child.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a demo.lock that is a symlink is refused; its target is left as it was", async () => {
  const base = await Deno.makeTempDir({ prefix: "sd-demo-dir-test-" });
  try {
    const dir = `${base}/demo`;
    await Deno.mkdir(dir);
    await Deno.writeTextFile(`${base}/precious`, "keep me\n");
    await Deno.symlink(`${base}/precious`, `${dir}/demo.lock`);
    await assert.rejects(claimDemoDir(dir), /demo\.lock is not a plain file/);
    assert.equal(await Deno.readTextFile(`${base}/precious`), "keep me\n");
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});
