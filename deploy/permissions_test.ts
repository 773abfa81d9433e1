import assert from "node:assert/strict";
import { denoArgs, ENTRYPOINTS, permissionTableMarkdown } from "./permissions.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("the signer front script carries exactly the table's flags", async () => {
  const front = await Deno.readTextFile(`${ROOT}/sign/gpg_front.sh`);
  const block = front.split("# BEGIN deno flags")[1]?.split("# END deno flags")[0];
  assert.ok(block, "the front script has a generated flags block");
  const args = denoArgs("sign", {
    root: "$root",
    paths: {
      systemBusSocket: "$sock",
      companionBusSocket: "",
      stateDir: "",
      gpg: "",
      gitDirs: ["$git_dir", "$common_dir"],
      ttyNote: "$note",
    },
  });
  // In the script every permission flag and every path is double-quoted.
  const expected = args.map((a) => a.startsWith("--allow-") || a.includes("$") ? `"${a}"` : a);
  const line = block.split("\n").find((l) => l.startsWith('"${SD_DENO:-deno}" '));
  assert.ok(line);
  const words = line.replace(/^"\$\{SD_DENO:-deno\}" /, "").replace(/ \\$/, "").split(" ");
  assert.deepEqual(words, expected);
});

Deno.test("no entrypoint gets broad permissions; the signer never gets --allow-run", () => {
  const paths = {
    systemBusSocket: "/s",
    companionBusSocket: "/c",
    stateDir: "/state",
    gpg: "/usr/bin/gpg",
    gitDirs: ["/repo/.git"],
  };
  for (const [name, spec] of Object.entries(ENTRYPOINTS)) {
    for (const flag of spec.flags(paths)) {
      assert.match(flag, /^--allow-[a-z]+=./, `${name}: ${flag} must be scoped`);
      assert.doesNotMatch(flag, /--allow-all|^-A$/);
    }
  }
  const sign = ENTRYPOINTS.sign.flags(paths);
  assert.ok(!sign.some((f) => f.startsWith("--allow-run")));
  assert.ok(!sign.some((f) => f.startsWith("--allow-write") && f.includes("/repo")));
  assert.ok(ENTRYPOINTS.console.flags(paths).every((f) => !f.includes("/s,") && !f.endsWith("/s")));
});

Deno.test("deno.json tasks use the launcher, never literal permission flags for entrypoints", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  for (const entry of Object.keys(ENTRYPOINTS)) {
    const task: string = config.tasks[entry];
    assert.ok(task, `task ${entry} exists`);
    assert.match(task, new RegExp(`deploy/run\\.ts ${entry}$`));
  }
  for (const task of Object.values(config.tasks) as string[]) {
    assert.doesNotMatch(task, /--allow-all|\s-A(\s|$)/);
  }
});

Deno.test("the README shows the permission table as it is", async () => {
  // deno fmt aligns Markdown tables: compare with cell padding and rule lengths normalised.
  const norm = (t: string) =>
    t.split("\n").map((l) => l.trim().replace(/\s*\|\s*/g, "|").replace(/:?-{3,}:?/g, "---"))
      .join("\n");
  const readme = norm(await Deno.readTextFile(`${ROOT}/README.md`));
  assert.ok(
    readme.includes(norm(permissionTableMarkdown())),
    "README.md must contain the output of permissionTableMarkdown() from deploy/permissions.ts",
  );
});

Deno.test("the console may read its phrase file and nothing else besides its bus socket", () => {
  const flags = ENTRYPOINTS.console.flags({
    systemBusSocket: "/s",
    companionBusSocket: "/c",
    stateDir: "/state",
    gpg: "/usr/bin/gpg",
    gitDirs: [],
    phraseFile: "/var/lib/secrets-dispatcher/alice/console-phrase",
  });
  assert.ok(flags.includes("--allow-read=/c,/var/lib/secrets-dispatcher/alice/console-phrase"));
  assert.ok(flags.includes("--allow-write=/c"));
  assert.ok(
    flags.some((f) => f.startsWith("--allow-env=") && f.includes("SD_CONSOLE_PHRASE_FILE")),
  );
});
