import assert from "node:assert/strict";
import { generatePhrase, MAX_PHRASE, type PhraseFs, readPhrase, WORDS } from "./phrase.ts";

Deno.test("generatePhrase: four distinct-list words from the random bytes", () => {
  assert.equal(new Set(WORDS).size, 256);
  const p = generatePhrase((b) => b.fill(0).map((_, i) => [0, 1, 254, 255][i]));
  assert.equal(p, [WORDS[0], WORDS[1], WORDS[254], WORDS[255]].join(" "));
  const a = generatePhrase();
  assert.match(a, /^[a-z]+ [a-z]+ [a-z]+ [a-z]+$/);
  assert.equal(new Set(a.split(" ")).size, 4);
  // Repeated draws are drawn again: the first four different words win.
  const draws = [[5, 5, 5, 7], [7, 9, 9, 11]];
  assert.equal(
    generatePhrase((b) => {
      b.set(draws.shift()!);
      return b;
    }),
    [WORDS[5], WORDS[7], WORDS[9], WORDS[11]].join(" "),
  );
});

function fakeFs(files: Record<string, { text: string; mode: number }>): PhraseFs {
  return {
    readTextFile(path) {
      const f = files[path];
      if (!f) throw new Deno.errors.NotFound(path);
      return f.text;
    },
    mode: (path) => files[path]?.mode ?? null,
  };
}

Deno.test("readPhrase: the first non-empty line; warnings for every way it can go wrong", () => {
  const fs = fakeFs({
    "/ok": { text: "\n  otter cobalt lantern pebble \nsecond line\n", mode: 0o100600 },
    "/open": { text: "otter cobalt", mode: 0o100644 },
    "/empty": { text: "\n \n", mode: 0o100600 },
    "/long": { text: "x".repeat(MAX_PHRASE + 5), mode: 0o100600 },
  });
  assert.deepEqual(readPhrase("/ok", fs), { phrase: "otter cobalt lantern pebble", warning: null });
  assert.match(readPhrase(undefined, fs).warning!, /SD_CONSOLE_PHRASE_FILE is not set/);
  assert.equal(readPhrase(undefined, fs).phrase, null);
  assert.match(readPhrase("/missing", fs).warning!, /cannot read .*\/missing: no such file/);
  assert.match(readPhrase("/empty", fs).warning!, /is empty/);
  const open = readPhrase("/open", fs);
  assert.equal(open.phrase, "otter cobalt");
  assert.match(open.warning!, /readable by others \(mode 644\)/);
  const long = readPhrase("/long", fs);
  assert.equal(long.phrase!.length, MAX_PHRASE);
  assert.match(long.warning!, /cut/);
});

Deno.test("readPhrase on a real file, with the mode check", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/phrase`;
    await Deno.writeTextFile(path, "amber birch\n", { mode: 0o600 });
    await Deno.chmod(path, 0o600);
    assert.deepEqual(readPhrase(path), { phrase: "amber birch", warning: null });
    await Deno.chmod(path, 0o640);
    assert.match(readPhrase(path).warning!, /mode 640/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
