/**
 * End-to-end signing through the real path: git → gpg.program front → Deno signer → system-like
 * bus with the real policy → daemon → approval through the admin client on the companion bus →
 * real gpg in the companion's home → back to git, verified by the local gpg.
 */

import assert from "node:assert/strict";
import { Approver, exec, type SignStack, signStack, waitForHistory } from "./support.ts";

const approveAll = () => "approve" as const;

/** Polls `check` every 50 ms until it returns true; false when `timeoutMs` passed first. */
async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return await check();
}

/**
 * A private TMPDIR for the front's note dirs, under the stack's dir, and the environment that
 * uses it: what the front leaves behind shows there, and only this test's processes name it.
 */
async function privateTmp(s: SignStack): Promise<{ tmp: string; env: Record<string, string> }> {
  const tmp = `${s.stack.dir}/tmp`;
  await Deno.mkdir(tmp, { recursive: true });
  return { tmp, env: { ...s.env, TMPDIR: tmp } };
}

/** The entries of a directory, sorted. */
async function entries(dir: string): Promise<string[]> {
  return (await Array.fromAsync(Deno.readDir(dir))).map((e) => e.name).sort();
}

/**
 * Running processes whose command line names the stack's signer or its private TMPDIR: the front
 * script and its subshells, the Deno signer, the note `cat`.
 */
async function leftovers(s: SignStack, tmp: string): Promise<string[]> {
  const ps = await exec("ps", ["-eo", "pid=,stat=,args="]);
  return ps.stdout.split("\n").filter((l) =>
    (l.includes(s.signer) || l.includes(`${tmp}/`)) && !/^\s*\d+\s+Z/.test(l)
  );
}

/** The request `id` left the pending list as cancelled; no process and no file of it is left. */
async function assertWithdrawnAndClean(s: SignStack, id: string, tmp: string): Promise<void> {
  assert.ok(
    await eventually(async () => (await s.admin.list()).length === 0),
    "the request left the pending list",
  );
  await waitForHistory(s.admin, (e) => e.id === id && e.event === "cancelled");
  let left: string[] = [];
  assert.ok(
    await eventually(async () => (left = await leftovers(s, tmp)).length === 0),
    `left running:\n${left.join("\n")}`,
  );
  assert.deepEqual(await entries(tmp), []);
}

/** Spawns `git commit -S` in `repo` and waits until its request is pending. */
async function pendingCommit(
  s: SignStack,
  repo: string,
  env: Record<string, string>,
): Promise<{ git: Deno.ChildProcess; id: string }> {
  const git = new Deno.Command("git", {
    args: ["-C", repo, "commit", "-S", "-q", "-m", "pending"],
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).spawn();
  let id = "";
  await eventually(async () => (id = (await s.admin.list())[0]?.id ?? "") !== "");
  if (!id) {
    git.kill("SIGKILL");
    await git.status;
  }
  assert.ok(id, "the request reached the daemon");
  return { git, id };
}

/** A new repository with one staged file, ready for `git commit -S`. */
async function stagedRepo(s: SignStack): Promise<string> {
  const repo = await s.repo();
  await Deno.writeTextFile(`${repo}/f`, "x\n");
  await exec("git", ["-C", repo, "add", "f"], { env: s.env });
  return repo;
}

/** Starts the signer on a small payload and waits until its request is pending. */
async function pendingSigner(
  s: SignStack,
  repo: string,
): Promise<{ child: Deno.ChildProcess; id: string }> {
  const child = new Deno.Command(s.signer, {
    args: ["--status-fd=2", "-bsau", s.key.fingerprint],
    env: s.env,
    clearEnv: true,
    cwd: repo,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  await w.write(
    new TextEncoder().encode("tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nwait\n"),
  );
  await w.close();
  let id = "";
  const end = Date.now() + 10_000;
  while (!id && Date.now() < end) {
    id = (await s.admin.list())[0]?.id ?? "";
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.ok(id, "the request reached the daemon");
  return { child, id };
}

Deno.test("approved git commit -S verifies, and the console saw the full context", async () => {
  const s = await signStack();
  const approver = new Approver(s.admin, approveAll);
  try {
    const repo = await s.repo();
    await Deno.mkdir(`${repo}/src`);
    await Deno.writeTextFile(`${repo}/src/a.txt`, "hello\n");
    await Deno.writeTextFile(`${repo}/b.txt`, "b\n");
    await exec("git", ["-C", repo, "add", "."], { env: s.env });
    const commit = await exec(
      "git",
      ["-C", repo, "commit", "-S", "-q", "-m", "first\n\nbody line"],
      {
        env: s.env,
      },
    );
    assert.equal(commit.code, 0, commit.stderr);
    const verify = await exec("git", ["-C", repo, "verify-commit", "HEAD"], { env: s.env });
    assert.equal(verify.code, 0, verify.stderr);
    assert.match(verify.stderr, /Good signature from "Demo Signer/);
    const log = await exec("git", ["-C", repo, "log", "--show-signature", "-1"], { env: s.env });
    assert.match(log.stdout, /Good signature/);

    assert.equal(approver.seen.length, 1);
    const view = approver.seen[0];
    assert.equal(view.kind, "sign.commit");
    assert.equal(view.sign?.keyFingerprint, s.key.fingerprint);
    const content = view.sign!.content;
    assert.equal(content.type, "commit");
    if (content.type === "commit") {
      assert.equal(content.subject, "first");
      assert.equal(content.body, "body line\n");
      assert.deepEqual(content.parents, []);
    }
    assert.deepEqual(view.sign?.reported.files, [
      { status: "A", path: "b.txt" },
      { status: "A", path: "src/a.txt" },
    ]);
    assert.equal(view.sign?.reported.branch, "main");
    assert.equal(view.caller.uid, Deno.uid());
    assert.ok(view.caller.pid !== null && view.caller.pid > 0);

    // A second commit: changed files come from the tree against the first parent.
    await Deno.writeTextFile(`${repo}/b.txt`, "changed\n");
    await Deno.remove(`${repo}/src/a.txt`);
    const second = await exec("git", ["-C", repo, "commit", "-a", "-S", "-q", "-m", "second"], {
      env: s.env,
    });
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual(approver.seen[1].sign?.reported.files, [
      { status: "M", path: "b.txt" },
      { status: "D", path: "src/a.txt" },
    ]);
    const h = await s.admin.history(50);
    assert.ok(h.some((e) => e.id === view.id && e.event === "done"));
  } finally {
    await approver.stop();
    await s.close();
  }
});

Deno.test("denied commit fails, creates no commit, and the signer exits 1", async () => {
  const s = await signStack();
  const approver = new Approver(s.admin, () => "deny");
  try {
    const repo = await stagedRepo(s);
    const commit = await exec("git", ["-C", repo, "commit", "-S", "-q", "-m", "nope"], {
      env: s.env,
    });
    assert.notEqual(commit.code, 0);
    assert.match(commit.stderr, /gpg failed to sign the data/);
    const head = await exec("git", ["-C", repo, "rev-parse", "--verify", "-q", "HEAD"], {
      env: s.env,
    });
    assert.notEqual(head.code, 0, "no commit may exist");

    // The signer itself: exit 1, FAILURE on the status fd, nothing on stdout.
    const payload = "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n" +
      "author A <a@example.test> 1700000000 +0000\ncommitter A <a@example.test> 1700000000 +0000\n\nx\n";
    const direct = await exec(s.signer, ["--status-fd=2", "-bsau", s.key.fingerprint], {
      env: s.env,
      cwd: repo,
      stdin: payload,
    });
    assert.equal(direct.code, 1);
    assert.equal(direct.stdout, "");
    assert.match(direct.stderr, /^\[GNUPG:\] FAILURE sign/m);
    // The daemon's message already says "denied: test says no"; the word is not repeated.
    assert.match(direct.stderr, /request [0-9a-f]+ denied: test says no$/m);
    assert.doesNotMatch(direct.stderr, /denied: denied/);
  } finally {
    await approver.stop();
    await s.close();
  }
});

Deno.test("daemon not running: the signer exits 2 within 5 s and says what to start", async () => {
  const s = await signStack();
  try {
    const repo = await s.repo();
    await s.stack.stopProcess(s.daemon);
    const start = performance.now();
    const r = await exec(s.signer, ["--status-fd=2", "-bsau", s.key.fingerprint], {
      env: s.env,
      cwd: repo,
      stdin: "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nx\n",
    });
    const ms = performance.now() - start;
    assert.equal(r.code, 2);
    assert.ok(ms < 5000, `took ${ms} ms`);
    assert.match(r.stderr, /\[GNUPG:\] FAILURE sign/);
    assert.match(r.stderr, /not running|cannot reach/);
    assert.match(r.stderr, /deno task demo|systemctl/);
    assert.equal(r.stdout, "");

    // And with no bus at all.
    const noBus = await exec(s.signer, ["--status-fd=2", "-bsau", s.key.fingerprint], {
      env: { ...s.env, DBUS_SYSTEM_BUS_ADDRESS: `unix:path=${s.stack.dir}/nonexistent` },
      cwd: repo,
      stdin: "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nx\n",
    });
    assert.equal(noBus.code, 2);
    assert.match(noBus.stderr, /cannot reach/);
  } finally {
    await s.close();
  }
});

Deno.test("an interrupted signer cancels its request", async () => {
  const s = await signStack();
  try {
    const repo = await s.repo();
    const { child, id } = await pendingSigner(s, repo);
    child.kill("SIGINT");
    const out = await child.output();
    assert.equal(out.code, 1);
    assert.match(new TextDecoder().decode(out.stderr), /cancelled/);
    await waitForHistory(s.admin, (e) => e.id === id && e.event === "cancelled");
    assert.deepEqual(await s.admin.list(), []);
  } finally {
    await s.close();
  }
});

Deno.test("a killed signer (disconnect) cancels its request", async () => {
  const s = await signStack();
  try {
    const repo = await s.repo();
    const { child, id } = await pendingSigner(s, repo);
    // Kill the Deno signer itself (the front script's child): its bus connection drops.
    const deno = (await exec("pgrep", ["-P", String(child.pid), "-f", "sign/main\\.ts"])).stdout
      .trim();
    assert.match(deno, /^\d+$/, "the front runs the Deno signer as its child");
    Deno.kill(Number(deno), "SIGKILL");
    await child.output();
    await waitForHistory(s.admin, (e) => e.id === id && e.event === "cancelled");
  } finally {
    await s.close();
  }
});

Deno.test("payload over 64 KiB, Latin-1 commit, signed tag", async () => {
  const s = await signStack();
  const approver = new Approver(s.admin, approveAll);
  try {
    const repo = await stagedRepo(s);
    const big = "subject\n\n" + "0123456789abcdef ".repeat(6000) + "\n";
    const c1 = await exec("git", ["-C", repo, "commit", "-S", "-q", "-F", "-"], {
      env: s.env,
      stdin: big,
    });
    assert.equal(c1.code, 0, c1.stderr);
    assert.ok(approver.seen[0].sign!.payloadSize > 64 * 1024);
    assert.equal(
      (await exec("git", ["-C", repo, "verify-commit", "HEAD"], { env: s.env })).code,
      0,
    );

    // Latin-1: raw ISO-8859-1 bytes in the message, encoding header in the payload.
    await exec("git", ["-C", repo, "config", "i18n.commitEncoding", "ISO-8859-1"], { env: s.env });
    await Deno.writeTextFile(`${repo}/f`, "y\n");
    const latin1 = new Uint8Array([...new TextEncoder().encode("caf"), 0xe9, 10]);
    const c2 = await exec("git", ["-C", repo, "commit", "-a", "-S", "-q", "-F", "-"], {
      env: s.env,
      stdin: latin1,
    });
    assert.equal(c2.code, 0, c2.stderr);
    const v2 = await exec("git", ["-C", repo, "verify-commit", "HEAD"], { env: s.env });
    assert.equal(v2.code, 0, v2.stderr);
    const latinView = approver.seen[1].sign!.content;
    assert.equal(latinView.type, "commit");
    if (latinView.type === "commit") {
      assert.equal(latinView.encoding, "ISO-8859-1");
      assert.equal(latinView.subject, "café");
    }

    const tag = await exec("git", ["-C", repo, "tag", "-s", "v1.0", "-m", "release 1.0"], {
      env: s.env,
    });
    assert.equal(tag.code, 0, tag.stderr);
    const vt = await exec("git", ["-C", repo, "verify-tag", "v1.0"], { env: s.env });
    assert.equal(vt.code, 0, vt.stderr);
    const tagView = approver.seen[2];
    assert.equal(tagView.kind, "sign.tag");
    if (tagView.sign!.content.type === "tag") assert.equal(tagView.sign!.content.tag, "v1.0");
  } finally {
    await approver.stop();
    await s.close();
  }
});

Deno.test("a 3-commit rebase with commit.gpgsign makes 3 requests and all commits verify", async () => {
  const s = await signStack();
  const approver = new Approver(s.admin, approveAll);
  try {
    const repo = await s.repo();
    const git = (...a: string[]) => exec("git", ["-C", repo, ...a], { env: s.env });
    await Deno.writeTextFile(`${repo}/base`, "0\n");
    await git("add", "base");
    await git("-c", "commit.gpgsign=false", "commit", "-q", "-m", "base");
    await git("checkout", "-q", "-b", "topic");
    for (const i of [1, 2, 3]) {
      await Deno.writeTextFile(`${repo}/t${i}`, `${i}\n`);
      await git("add", `t${i}`);
      await git("-c", "commit.gpgsign=false", "commit", "-q", "-m", `topic ${i}`);
    }
    await git("checkout", "-q", "main");
    await Deno.writeTextFile(`${repo}/m`, "m\n");
    await git("add", "m");
    await git("-c", "commit.gpgsign=false", "commit", "-q", "-m", "main moves");
    await git("checkout", "-q", "topic");
    const before = approver.seen.length;
    const rebase = await git("-c", "commit.gpgsign=true", "rebase", "-q", "main");
    assert.equal(rebase.code, 0, rebase.stderr);
    assert.equal(approver.seen.length - before, 3);
    const subjects = approver.seen.slice(before).map((v) =>
      v.sign!.content.type === "commit" ? v.sign!.content.subject : ""
    );
    assert.deepEqual(subjects, ["topic 1", "topic 2", "topic 3"]);
    for (const rev of ["HEAD", "HEAD~1", "HEAD~2"]) {
      const v = await git("verify-commit", rev);
      assert.equal(v.code, 0, `${rev}: ${v.stderr}`);
    }
    assert.notEqual((await git("verify-commit", "HEAD~3")).code, 0, "main's tip is unsigned");
  } finally {
    await approver.stop();
    await s.close();
  }
});

Deno.test("non-signing calls pass through to the local gpg unchanged", async () => {
  const s = await signStack();
  try {
    const direct = await exec("gpg", ["--version"], { env: s.env });
    const viaFront = await exec(s.signer, ["--version"], { env: s.env });
    assert.equal(viaFront.code, direct.code);
    assert.equal(viaFront.stdout, direct.stdout);
    const bad = await exec(s.signer, ["--no-such-option-xyz"], { env: s.env });
    const badDirect = await exec("gpg", ["--no-such-option-xyz"], { env: s.env });
    assert.equal(bad.code, badDirect.code);
    assert.deepEqual(await s.admin.list(), [], "nothing reached the daemon");
  } finally {
    await s.close();
  }
});

Deno.test("the terminal shows the waiting line with the request id", async () => {
  const s = await signStack();
  const approver = new Approver(s.admin, approveAll);
  try {
    const repo = await stagedRepo(s);
    // script(1) gives git a controlling terminal, as in an interactive shell.
    const r = await exec("script", [
      "-qec",
      `git -C '${repo}' commit -S -q -m 'from a terminal'`,
      "/dev/null",
    ], { env: s.env });
    assert.equal(r.code, 0, r.stdout);
    const id = approver.seen[0].id.slice(0, 8);
    assert.match(
      r.stdout,
      new RegExp(`waiting for approval on VT 8, request ${id} \\(from a terminal\\)`),
    );
    assert.equal(
      (await exec("git", ["-C", repo, "verify-commit", "HEAD"], { env: s.env })).code,
      0,
    );
  } finally {
    await approver.stop();
    await s.close();
  }
});

Deno.test("a refusal by the front leaves nothing running or in TMPDIR, and the terminal says why", async () => {
  const s = await signStack();
  try {
    const { tmp, env } = await privateTmp(s);
    const commaRepo = await s.repo("a,b");
    const noRepo = `${s.stack.dir}/not-a-repo`;
    await Deno.mkdir(noRepo);
    const cases = [
      { cwd: commaRepo, env, why: /paths with a comma are not supported: .*a,b/ },
      {
        cwd: noRepo,
        env: { ...env, GIT_CEILING_DIRECTORIES: s.stack.dir },
        why: /not inside a git repository/,
      },
      {
        cwd: commaRepo.replace("a,b", "repo-tcp"),
        env: { ...env, DBUS_SYSTEM_BUS_ADDRESS: "tcp:host=localhost,port=1" },
        why: /only unix:path= system bus addresses are supported/,
      },
    ];
    await s.repo("repo-tcp");
    for (const c of cases) {
      // Without a terminal (script(1)'s hangup would end a leaked process). The old leak was a
      // race (a cat left blocked on the FIFO about one time in three): 20 tries.
      for (let i = 0; i < 20; i++) {
        const plain = await exec(s.signer, ["--status-fd=2", "-bsau", s.key.fingerprint], {
          env: c.env,
          cwd: c.cwd,
          stdin: "x\n",
        });
        assert.equal(plain.code, 2);
        assert.match(plain.stderr, /^\[GNUPG:\] FAILURE sign/m);
        assert.match(plain.stderr, c.why);
      }
      // script(1) gives the front a terminal; its stderr goes to a file, as git's pipe would.
      const err = `${s.stack.dir}/front.err`;
      const r = await exec("script", [
        "-qec",
        `echo x | '${s.signer}' --status-fd=2 -bsau ${s.key.fingerprint} 2>'${err}'; echo "rc=$?"`,
        "/dev/null",
      ], { env: c.env, cwd: c.cwd });
      assert.match(r.stdout, /rc=2/);
      assert.match(r.stdout, c.why, "the reason shows on the terminal");
      const stderr = await Deno.readTextFile(err);
      assert.match(stderr, /^\[GNUPG:\] FAILURE sign/m, "git still gets the status line");
      assert.match(stderr, c.why);
    }
    // Under git itself: git only says "gpg failed to sign the data", the terminal shows why.
    const staged = `${commaRepo}/f`;
    await Deno.writeTextFile(staged, "x\n");
    await exec("git", ["-C", commaRepo, "add", "f"], { env });
    const viaGit = await exec("script", [
      "-qec",
      `git -C '${commaRepo}' commit -S -q -m x 2>/dev/null; echo "rc=$?"`,
      "/dev/null",
    ], { env });
    assert.match(viaGit.stdout, /rc=[1-9]/);
    assert.match(viaGit.stdout, /paths with a comma are not supported/);

    let left: string[] = [];
    assert.ok(
      await eventually(async () => (left = await leftovers(s, tmp)).length === 0, 5000),
      `left running:\n${left.join("\n")}`,
    );
    assert.deepEqual(await entries(tmp), []);
    assert.deepEqual(await s.admin.list(), [], "nothing reached the daemon");
  } finally {
    await s.close();
  }
});

Deno.test("git killed while its request is pending: the request is withdrawn, nothing is left", async () => {
  const s = await signStack();
  try {
    const { tmp, env } = await privateTmp(s);
    const repo = await stagedRepo(s);
    const { git, id } = await pendingCommit(s, repo, env);
    assert.equal((await entries(tmp)).length, 1, "the front made its note dir");
    git.kill("SIGKILL");
    await git.status;
    await assertWithdrawnAndClean(s, id, tmp);
  } finally {
    await s.close();
  }
});

Deno.test("the front killed while pending: git returns, the request is withdrawn, nothing is left", async () => {
  const s = await signStack();
  try {
    const { tmp, env } = await privateTmp(s);
    const repo = await stagedRepo(s);
    const { git, id } = await pendingCommit(s, repo, env);
    try {
      const front = (await exec("pgrep", ["-P", String(git.pid), "-f", "secrets-dispatcher-gpg"]))
        .stdout.trim();
      assert.match(front, /^\d+$/, "git runs the front as its child");
      Deno.kill(Number(front), "SIGKILL");
      let status: Deno.CommandStatus | null = null;
      git.status.then((st) => status = st);
      assert.ok(await eventually(() => status !== null), "git returned (it does not hang)");
      assert.notEqual(status!.code, 0, "no signature, no commit");
    } finally {
      try {
        git.kill("SIGKILL");
      } catch { /* it returned */ }
      await git.status;
    }
    await assertWithdrawnAndClean(s, id, tmp);
    const head = await exec("git", ["-C", repo, "rev-parse", "--verify", "-q", "HEAD"], {
      env: s.env,
    });
    assert.notEqual(head.code, 0, "no commit may exist");
  } finally {
    await s.close();
  }
});

Deno.test("a daemon that is stopped (SIGSTOP) is reported as not answering, not as not running", async () => {
  const s = await signStack();
  try {
    const repo = await s.repo();
    s.daemon.kill("SIGSTOP");
    try {
      const r = await exec(s.signer, ["--status-fd=2", "-bsau", s.key.fingerprint], {
        env: s.env,
        cwd: repo,
        stdin: "tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nx\n",
      });
      assert.equal(r.code, 2);
      assert.match(r.stderr, /^\[GNUPG:\] FAILURE sign/m);
      assert.match(r.stderr, /did not answer within 10 s/);
      assert.doesNotMatch(r.stderr, /Is it running\?/);
    } finally {
      s.daemon.kill("SIGCONT");
    }
  } finally {
    await s.close();
  }
});
