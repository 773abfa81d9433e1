import assert from "node:assert/strict";
import { deflateSync } from "node:zlib";
import { GitObjectError, GitObjectStore, type GitObjectType } from "./git_objects.ts";
import type { ChangedFile } from "./protocol.ts";

const dec = new TextDecoder();
const decPath = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
const enc = new TextEncoder();

const EMPTY_TREE = {
  sha1: "4b825dc642cb6eb9a060e54bf8d69288fbee4904",
  sha256: "6ef19b41225c5369f1c104d45d8d85efa9b057b53b14b4b9b939dd74decc5321",
};

// ---------------------------------------------------------------- helpers

/** Throwaway repositories with an isolated HOME and a fixed identity. */
class Scratch {
  readonly env: Record<string, string>;
  #tick = 0;
  private constructor(readonly dir: string) {
    this.env = {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: dir,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_AUTHOR_NAME: "A U Thor",
      GIT_AUTHOR_EMAIL: "author@example.test",
      GIT_COMMITTER_NAME: "C O Mitter",
      GIT_COMMITTER_EMAIL: "committer@example.test",
      LC_ALL: "C",
    };
  }
  static async create(): Promise<Scratch> {
    return new Scratch(await Deno.makeTempDir({ prefix: "git_objects_test_" }));
  }
  async raw(cwd: string, args: string[], stdin?: Uint8Array): Promise<Uint8Array> {
    const date = `${1700000000 + this.#tick++} +0000`;
    const child = new Deno.Command("git", {
      args,
      cwd,
      env: { ...this.env, GIT_AUTHOR_DATE: date, GIT_COMMITTER_DATE: date },
      clearEnv: true,
      stdin: stdin ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    if (stdin) {
      const w = child.stdin.getWriter();
      await w.write(stdin);
      await w.close();
    }
    const out = await child.output();
    if (out.code !== 0) {
      throw new Error(`git ${args.join(" ")} failed: ${dec.decode(out.stderr)}`);
    }
    return out.stdout;
  }
  async git(cwd: string, ...args: string[]): Promise<string> {
    return dec.decode(await this.raw(cwd, args)).trim();
  }
  async init(name: string, format: "sha1" | "sha256" = "sha1"): Promise<string> {
    const repo = `${this.dir}/${name}`;
    await this.raw(this.dir, ["init", "-q", "-b", "main", `--object-format=${format}`, repo]);
    // Keep everything loose until a test packs explicitly.
    await this.git(repo, "config", "gc.auto", "0");
    return repo;
  }
  async write(repo: string, files: Record<string, string | null>): Promise<void> {
    for (const [path, content] of Object.entries(files)) {
      const full = `${repo}/${path}`;
      if (content === null) {
        await Deno.remove(full, { recursive: true });
      } else {
        await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
        await Deno.writeTextFile(full, content);
      }
    }
  }
  async commit(repo: string, message: string): Promise<string> {
    await this.git(repo, "add", "-A");
    await this.git(repo, "commit", "-q", "--allow-empty", "-m", message);
    return await this.git(repo, "rev-parse", "HEAD");
  }
  /** Stages a symlink `path` → `target`. */
  async symlink(repo: string, path: string, target: string): Promise<void> {
    const blob = dec.decode(
      await this.raw(repo, ["hash-object", "-w", "--stdin"], enc.encode(target)),
    )
      .trim();
    await this.git(repo, "update-index", "--add", "--cacheinfo", `120000,${blob},${path}`);
  }
  async cleanup(): Promise<void> {
    await Deno.remove(this.dir, { recursive: true });
  }
}

/** Every object in the repository, as `git cat-file --batch-all-objects --batch` prints. */
async function allObjects(
  s: Scratch,
  repo: string,
): Promise<Map<string, { type: string; data: Uint8Array }>> {
  const out = await s.raw(repo, ["cat-file", "--batch-all-objects", "--batch"]);
  const objects = new Map<string, { type: string; data: Uint8Array }>();
  let p = 0;
  while (p < out.length) {
    const nl = out.indexOf(0x0a, p);
    const [oid, type, size] = dec.decode(out.subarray(p, nl)).split(" ");
    const data = out.slice(nl + 1, nl + 1 + Number(size));
    objects.set(oid, { type, data });
    p = nl + 1 + Number(size) + 1;
  }
  return objects;
}

/** What `git diff-tree -r --name-status` says (with -z, so paths are raw). */
async function gitChanged(
  s: Scratch,
  repo: string,
  from: string,
  to: string,
): Promise<ChangedFile[]> {
  const out = await s.raw(repo, ["diff-tree", "-r", "-z", "--name-status", from, to]);
  const fields: Uint8Array[] = [];
  let p = 0;
  while (p < out.length) {
    const nul = out.indexOf(0, p);
    fields.push(out.subarray(p, nul));
    p = nul + 1;
  }
  const files: ChangedFile[] = [];
  for (let i = 0; i < fields.length; i += 2) {
    files.push({ status: dec.decode(fields[i]), path: decPath.decode(fields[i + 1]) });
  }
  return files;
}

/** Checks `read` on every object and `changedFiles` on every commit against git. */
async function checkAgainstGit(
  s: Scratch,
  repo: string,
  format: "sha1" | "sha256",
  gitDir = `${repo}/.git`,
): Promise<{ objects: number; commits: number }> {
  const store = await GitObjectStore.open(gitDir);
  try {
    assert.equal(store.objectFormat, format);
    const objects = await allObjects(s, repo);
    assert.ok(objects.size > 0);
    for (const [oid, want] of objects) {
      const got = await store.read(oid);
      assert.equal(got.type, want.type, oid);
      assert.deepEqual(got.data, want.data, `${want.type} ${oid}`);
    }
    let commits = 0;
    for (const [oid, obj] of objects) {
      if (obj.type !== "commit") continue;
      const text = dec.decode(obj.data);
      const tree = /^tree (\S+)$/m.exec(text)![1];
      const parent = /^parent (\S+)$/m.exec(text)?.[1] ?? null;
      const want = await gitChanged(s, repo, parent ?? EMPTY_TREE[format], tree);
      const got = await store.changedFiles(tree, parent);
      assert.deepEqual(got, { files: want, truncated: false }, `commit ${oid}`);
      commits++;
    }
    return { objects: objects.size, commits };
  } finally {
    store.close();
  }
}

/** Builds a history that exercises every kind of tree change. */
async function buildScenarios(s: Scratch, repo: string, format: "sha1" | "sha256") {
  const zero = format === "sha1" ? 40 : 64;
  const fakeOid = (c: string) => c.repeat(zero);
  const lines = (n: number, tag: string) =>
    Array.from({ length: 200 }, (_, i) => `line ${i} ${i === n ? tag : "same"}\n`).join("");
  await s.write(repo, {
    "a.txt": "a\n",
    "dir/b.txt": "b\n",
    "dir/sub/c.txt": "c\n",
    "foo": "foo as a file\n",
    "foo.txt": "foo.txt\n",
    "foo-bar": "x\n",
    "z": "z\n",
    "deep/1/2/3/4/5/leaf.txt": "leaf\n",
    "big.txt": lines(0, "r0"),
  });
  await s.commit(repo, "root");
  await s.write(repo, {
    "a.txt": "a changed\n",
    "dir/sub/d.txt": "d\n",
    "z": null,
    "deep/1/2/3/4/5/leaf.txt": "leaf 2\n",
  });
  await s.commit(repo, "modify add delete nested");
  await s.write(repo, { "foo": null, "foo/bar": "now a dir\n", "foo/baz/q": "q\n" });
  await s.commit(repo, "file to dir");
  await s.write(repo, { "dir/sub": null });
  await s.write(repo, { "dir/sub": "now a file\n" });
  await s.commit(repo, "dir to file");
  // Symlinks go in through the index (Deno.symlink needs unscoped permissions); git
  // itself then makes them in the work tree.
  await s.symlink(repo, "link", "a.txt");
  await s.symlink(repo, "foo.txt", "dir/b.txt");
  await s.git(repo, "commit", "-q", "-m", "add symlink, file to symlink");
  await s.git(repo, "checkout", "--", "link", "foo.txt");
  assert.ok((await Deno.lstat(`${repo}/link`)).isSymlink);
  await s.symlink(repo, "link", "dir/b.txt");
  await s.git(repo, "checkout", "--", "link");
  await Deno.remove(`${repo}/foo.txt`);
  await s.write(repo, { "foo.txt": "file again\n" });
  await s.commit(repo, "retarget symlink, symlink to file");
  await s.git(repo, "update-index", "--chmod=+x", "a.txt");
  await s.git(repo, "commit", "-q", "-m", "chmod");
  await s.git(repo, "update-index", "--add", "--cacheinfo", `160000,${fakeOid("1")},module`);
  await s.git(repo, "commit", "-q", "-m", "add gitlink");
  await s.git(repo, "update-index", "--cacheinfo", `160000,${fakeOid("2")},module`);
  await s.git(repo, "commit", "-q", "-m", "move gitlink");
  // Paths that are not UTF-8, with spaces, quotes, newlines and non-ASCII characters.
  const blob = await s.git(repo, "hash-object", "-w", "a.txt");
  const odd = [
    new Uint8Array([0x62, 0x61, 0x64, 0xff, 0xfe, 0x2e, 0x74, 0x78, 0x74]),
    enc.encode('with space/and "quote".txt'),
    enc.encode("new\nline"),
    enc.encode("é/ü.txt"),
    enc.encode("\ufeffbom"),
  ];
  const info: number[] = [];
  for (const path of odd) info.push(...enc.encode(`100644 ${blob}\t`), ...path, 0);
  await s.raw(repo, ["update-index", "-z", "--index-info"], new Uint8Array(info));
  await s.git(repo, "commit", "-q", "-m", "odd paths");
  await s.git(repo, "rm", "-q", "--cached", "module");
  await s.write(repo, { "module": "module is a file now\n" });
  await s.commit(repo, "gitlink to file");
  // A branch and a merge: the merge is compared with its first parent.
  await s.git(repo, "checkout", "-q", "-b", "side", "HEAD~3");
  await s.write(repo, { "side.txt": "side\n", "dir/b.txt": "b from side\n" });
  await s.commit(repo, "side");
  await s.git(repo, "checkout", "-q", "main");
  await s.git(repo, "merge", "-q", "--no-ff", "-m", "merge side", "side");
  // Many similar revisions of one file, so that packing makes deltas.
  for (let i = 1; i <= 30; i++) {
    await s.write(repo, { "big.txt": lines(i * 5, `r${i}`) });
    await s.commit(repo, `revision ${i}`);
  }
  // Identical subtrees moved around.
  await s.git(repo, "mv", "deep", "deeper");
  await s.commit(repo, "rename a tree");
  await s.git(repo, "commit", "-q", "--allow-empty", "-m", "empty commit");
}

interface PackStats {
  deltas: number;
  ofs: number;
  ref: number;
}

/** Checks `git verify-pack -v` and counts OFS_DELTA / REF_DELTA entries in the pack bytes. */
async function packStats(s: Scratch, repo: string): Promise<PackStats> {
  const dir = `${repo}/.git/objects/pack`;
  const stats = { deltas: 0, ofs: 0, ref: 0 };
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(".pack")) continue;
    const pack = await Deno.readFile(`${dir}/${e.name}`);
    const out = await s.git(repo, "verify-pack", "-v", `${dir}/${e.name}`);
    for (const line of out.split("\n")) {
      const f = line.split(/\s+/);
      if (!/^[0-9a-f]{40,64}$/.test(f[0]) || f.length < 7) continue;
      stats.deltas++;
      const type = (pack[Number(f[4])] >> 4) & 7;
      if (type === 6) stats.ofs++;
      if (type === 7) stats.ref++;
    }
  }
  return stats;
}

async function packFiles(repo: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(`${repo}/.git/objects/pack`)) names.push(e.name);
  return names.sort();
}

async function countLoose(s: Scratch, repo: string): Promise<number> {
  const out = await s.git(repo, "count-objects", "-v");
  return Number(/^count: (\d+)$/m.exec(out)![1]);
}

// ---------------------------------------------------------------- tests

for (const format of ["sha1", "sha256"] as const) {
  Deno.test(`${format}: loose objects, then packs with deltas, agree with git`, async () => {
    const s = await Scratch.create();
    try {
      const repo = await s.init("r", format);
      await buildScenarios(s, repo, format);
      assert.equal((await packFiles(repo)).length, 0);
      assert.ok(await countLoose(s, repo) > 50);
      const loose = await checkAgainstGit(s, repo, format);
      assert.ok(loose.commits >= 40, `${loose.commits} commits`);

      // gc: one pack, OFS_DELTA entries.
      await s.git(repo, "gc", "-q", "--aggressive", "--prune=now");
      assert.equal(await countLoose(s, repo), 0);
      const ofs = await packStats(s, repo);
      assert.ok(ofs.ofs >= 20, JSON.stringify(ofs));
      assert.equal(ofs.ref, 0);
      assert.deepEqual(await checkAgainstGit(s, repo, format), loose);

      // REF_DELTA entries instead.
      await s.git(repo, "-c", "repack.useDeltaBaseOffset=false", "repack", "-q", "-adf");
      const ref = await packStats(s, repo);
      assert.ok(ref.ref >= 20, JSON.stringify(ref));
      assert.equal(ref.ofs, 0);
      assert.deepEqual(await checkAgainstGit(s, repo, format), loose);

      // Index v2 with 64-bit offsets for everything past byte 64, and index v1.
      const [idx] = (await packFiles(repo)).filter((n) => n.endsWith(".idx"));
      const idxPath = `${repo}/.git/objects/pack/${idx}`;
      const packPath = idxPath.replace(/\.idx$/, ".pack");
      const before = (await Deno.stat(idxPath)).size;
      await Deno.remove(idxPath);
      await s.git(repo, "index-pack", "--index-version=2,64", "-o", idxPath, packPath);
      assert.ok((await Deno.stat(idxPath)).size > before + 8 * 40, "no large offsets written");
      assert.deepEqual(await checkAgainstGit(s, repo, format), loose);
      if (format === "sha1") {
        await Deno.remove(idxPath);
        await s.git(repo, "index-pack", "--index-version=1", "-o", idxPath, packPath);
        const v1 = await Deno.readFile(idxPath);
        assert.notDeepEqual(v1.subarray(0, 4), new Uint8Array([0xff, 0x74, 0x4f, 0x63]));
        assert.deepEqual(await checkAgainstGit(s, repo, format), loose);
      }

      // Some objects loose and some packed, the pack split in two.
      await s.write(repo, { "after-gc.txt": "new\n" });
      await s.commit(repo, "after gc");
      assert.ok(await countLoose(s, repo) > 0);
      await s.git(repo, "repack", "-q", "-d");
      assert.ok((await packFiles(repo)).filter((n) => n.endsWith(".pack")).length >= 2);
      await s.write(repo, { "loose.txt": "loose\n" });
      await s.commit(repo, "loose again");
      await checkAgainstGit(s, repo, format);
    } finally {
      await s.cleanup();
    }
  });
}

Deno.test("changedFiles: order, limit and truncation", async () => {
  const s = await Scratch.create();
  try {
    const repo = await s.init("r");
    // Names around "a/" in git's tree order: "a b" < "a-b" < "a.b" < "a/" < "a0" < "a=".
    await s.write(repo, { "a-b": "1", "a.b": "2", "a/b/c": "3", "a b": "4", "B": "5" });
    await s.write(repo, { "a0": "6", "ab/x": "7", "a=": "8", "a/x": "9" });
    const c = await s.commit(repo, "root");
    const tree = await s.git(repo, "rev-parse", "HEAD^{tree}");
    const want = await gitChanged(s, repo, EMPTY_TREE.sha1, tree);
    assert.equal(want.length, 9);
    const store = await GitObjectStore.open(`${repo}/.git`);
    try {
      assert.deepEqual(await store.changedFiles(tree, null), { files: want, truncated: false });
      assert.deepEqual(await store.changedFiles(tree, null, { limit: 3 }), {
        files: want.slice(0, 3),
        truncated: true,
      });
      assert.deepEqual(await store.changedFiles(tree, null, { limit: 9 }), {
        files: want,
        truncated: false,
      });
      assert.deepEqual(await store.changedFiles(tree, null, { limit: 0 }), {
        files: [],
        truncated: true,
      });
      // The same tree against its own commit: nothing.
      assert.deepEqual(await store.changedFiles(tree, c), { files: [], truncated: false });
      // 1000 entries by default.
      const many: Record<string, string> = {};
      for (let i = 0; i < 1005; i++) many[`many/f${i}`] = `${i}`;
      await s.write(repo, many);
      const c2 = await s.commit(repo, "many");
      const tree2 = await s.git(repo, "rev-parse", "HEAD^{tree}");
      const big = await store.changedFiles(tree2, c);
      assert.equal(big.files.length, 1000);
      assert.equal(big.truncated, true);
      assert.deepEqual(big.files, (await gitChanged(s, repo, c, c2)).slice(0, 1000));
    } finally {
      store.close();
    }
  } finally {
    await s.cleanup();
  }
});

Deno.test("linked worktrees, gitdir files and alternates", async () => {
  const s = await Scratch.create();
  try {
    const repo = await s.init("main");
    await s.write(repo, { "f": "1\n" });
    const base = await s.commit(repo, "base");
    await s.git(repo, "gc", "-q");
    const wt = `${s.dir}/wt`;
    await s.git(repo, "worktree", "add", "-q", "-b", "wt", wt);
    await s.write(wt, { "g": "2\n" });
    const inWt = await s.commit(wt, "in worktree");
    const wtTree = await s.git(wt, "rev-parse", "HEAD^{tree}");
    const wtGitDir = await s.git(wt, "rev-parse", "--absolute-git-dir");
    assert.match(wtGitDir, /\/worktrees\/wt$/);
    for (const gitDir of [wtGitDir, `${wt}/.git`, `${wtGitDir}/`]) {
      const store = await GitObjectStore.open(gitDir);
      try {
        assert.equal(store.commonDir, await Deno.realPath(`${repo}/.git`));
        assert.equal((await store.read(inWt)).type, "commit");
        assert.equal((await store.read(base)).type, "commit");
        assert.deepEqual(await store.changedFiles(wtTree, base), {
          files: [{ status: "A", path: "g" }],
          truncated: false,
        });
      } finally {
        store.close();
      }
    }

    // A shared clone reads the original's objects through objects/info/alternates.
    const clone = `${s.dir}/clone`;
    await s.raw(s.dir, ["clone", "-q", "--shared", repo, clone]);
    await s.git(clone, "config", "gc.auto", "0");
    assert.ok((await Deno.readTextFile(`${clone}/.git/objects/info/alternates`)).length > 0);
    await s.write(clone, { "h": "3\n" });
    const inClone = await s.commit(clone, "in clone");
    const store = await GitObjectStore.open(`${clone}/.git`);
    try {
      assert.equal((await store.read(base)).type, "commit"); // packed, in the original
      assert.equal((await store.read(inWt)).type, "commit"); // loose, in the original
      assert.equal((await store.read(inClone)).type, "commit");
    } finally {
      store.close();
    }
    await checkAgainstGit(s, clone, "sha1");
    // A bare repository.
    const bare = `${s.dir}/bare.git`;
    await s.raw(s.dir, ["clone", "-q", "--bare", repo, bare]);
    const bareStore = await GitObjectStore.open(bare);
    try {
      assert.equal((await bareStore.read(base)).type, "commit");
    } finally {
      bareStore.close();
    }
  } finally {
    await s.cleanup();
  }
});

Deno.test("errors: missing, corrupt and wrong objects", async () => {
  const s = await Scratch.create();
  try {
    const repo = await s.init("r");
    await s.write(repo, { "f": "content\n" });
    const commit = await s.commit(repo, "c");
    const tree = await s.git(repo, "rev-parse", "HEAD^{tree}");
    const blob = await s.git(repo, "rev-parse", "HEAD:f");
    const store = await GitObjectStore.open(`${repo}/.git`);
    const rejects = async (p: Promise<unknown>, re: RegExp) => {
      await assert.rejects(p, (e: unknown) => {
        assert.ok(e instanceof GitObjectError, String(e));
        assert.match(e.message, re);
        return true;
      });
    };
    try {
      await rejects(store.read("1".repeat(40)), /not found/);
      await rejects(store.read("1".repeat(64)), /not a sha1 object id/);
      await rejects(store.read("xyz"), /not an object id/);
      await rejects(store.changedFiles(tree, tree), /not a commit/);
      await rejects(store.changedFiles(commit, null), /not a tree/);
      await rejects(store.changedFiles("2".repeat(40), null), /not found/);
      // The empty tree is known without being stored, as in git.
      assert.deepEqual(await store.read(EMPTY_TREE.sha1), {
        type: "tree",
        data: new Uint8Array(0),
      });
      assert.deepEqual(await store.changedFiles(EMPTY_TREE.sha1, commit), {
        files: [{ status: "D", path: "f" }],
        truncated: false,
      });
      // Uppercase ids are accepted.
      assert.equal((await store.read(blob.toUpperCase())).type, "blob");

      const path = `${repo}/.git/objects/${blob.slice(0, 2)}/${blob.slice(2)}`;
      const original = await Deno.readFile(path);
      await Deno.chmod(path, 0o644);
      await Deno.writeFile(path, deflateSync(enc.encode("blob 99\0content\n")));
      await rejects(store.read(blob), /bad header/);
      await Deno.writeFile(path, deflateSync(enc.encode("bogus 8\0content\n")));
      await rejects(store.read(blob), /bad header/);
      await Deno.writeFile(path, enc.encode("not zlib at all"));
      await rejects(store.read(blob), /corrupt loose object/);
      await Deno.writeFile(path, deflateSync(new Uint8Array(2048)));
      const small = await GitObjectStore.open(`${repo}/.git`, { maxObjectSize: 1000 });
      await rejects(small.read(blob), /corrupt loose object/);
      await Deno.writeFile(path, original);
    } finally {
      store.close();
    }
    await rejects(GitObjectStore.open(`${s.dir}/nope`), /nope/);
    await Deno.mkdir(`${s.dir}/empty`);
    await rejects(GitObjectStore.open(`${s.dir}/empty`), /objects/);
    // A corrupt pack entry.
    await s.git(repo, "gc", "-q", "--prune=now");
    const [pack] = (await packFiles(repo)).filter((n) => n.endsWith(".pack"));
    const packPath = `${repo}/.git/objects/pack/${pack}`;
    const out = await s.git(repo, "verify-pack", "-v", packPath);
    const entry = out.split("\n").find((l) => l.startsWith(commit))!.split(/\s+/);
    const bytes = await Deno.readFile(packPath);
    const at = Number(entry[4]) + 4;
    bytes.fill(0x55, at, at + 8);
    await Deno.chmod(packPath, 0o644);
    await Deno.writeFile(packPath, bytes);
    const broken = await GitObjectStore.open(`${repo}/.git`);
    try {
      await rejects(broken.read(commit), /bad data|size mismatch|truncated/);
    } finally {
      broken.close();
    }
  } finally {
    await s.cleanup();
  }
});

Deno.test("concurrent reads from one pack", async () => {
  const s = await Scratch.create();
  try {
    const repo = await s.init("r");
    for (let i = 0; i < 20; i++) {
      await s.write(repo, { [`d${i % 4}/f${i}`]: `${i}\n`.repeat(100 + i) });
      await s.commit(repo, `c${i}`);
    }
    await s.git(repo, "gc", "-q", "--prune=now");
    const objects = await allObjects(s, repo);
    const store = await GitObjectStore.open(`${repo}/.git`);
    try {
      const ids = [...objects.keys()];
      const got = await Promise.all(ids.map((id) => store.read(id)));
      ids.forEach((id, i) => {
        assert.equal(got[i].type, objects.get(id)!.type as GitObjectType);
        assert.deepEqual(got[i].data, objects.get(id)!.data);
      });
    } finally {
      store.close();
    }
  } finally {
    await s.cleanup();
  }
});
