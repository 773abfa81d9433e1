import assert from "node:assert/strict";
import {
  commitIdWithSignature,
  decoderFor,
  decodingNote,
  parsePayload,
  PayloadError,
  payloadKind,
  summarize,
} from "./payload.ts";
import type { SignContent } from "./protocol.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();
const b = (s: string) => enc.encode(s);

const SHA1_A = "a".repeat(40);
const SHA1_B = "b".repeat(40);
const SHA1_C = "c".repeat(40);
const AUTHOR = "A U Thor <author@example.test> 1700000000 +0200";
const COMMITTER = "C O Mitter <committer@example.test> 1700000100 -0130";

function commit(extra: string, message: string): Uint8Array {
  return b(
    `tree ${SHA1_A}\nparent ${SHA1_B}\nauthor ${AUTHOR}\ncommitter ${COMMITTER}\n${extra}` +
      `\n${message}`,
  );
}

function asCommit(c: SignContent) {
  assert.equal(c.type, "commit");
  if (c.type !== "commit") throw new Error("unreachable");
  return c;
}

// ---------------------------------------------------------------- pure parsing

Deno.test("parsePayload: ordinary commit", () => {
  const c = asCommit(parsePayload(commit("", "Subject line\n\nBody line 1\nBody line 2\n")));
  assert.equal(c.tree, SHA1_A);
  assert.deepEqual(c.parents, [SHA1_B]);
  assert.deepEqual(c.author, {
    name: "A U Thor",
    email: "author@example.test",
    time: 1700000000,
    tz: "+0200",
  });
  assert.deepEqual(c.committer, {
    name: "C O Mitter",
    email: "committer@example.test",
    time: 1700000100,
    tz: "-0130",
  });
  assert.equal(c.encoding, null);
  assert.deepEqual(c.extraHeaders, []);
  assert.equal(c.subject, "Subject line");
  assert.equal(c.body, "Body line 1\nBody line 2\n");
  assert.equal(payloadKind(c), "sign.commit");
  assert.equal(summarize(c), "Subject line");
});

Deno.test("parsePayload: root, merge and octopus parents", () => {
  const root = asCommit(parsePayload(b(`tree ${SHA1_A}\nauthor ${AUTHOR}\n\nroot\n`)));
  assert.deepEqual(root.parents, []);
  assert.equal(root.committer, null);
  const octo = asCommit(
    parsePayload(b(`tree ${SHA1_A}\nparent ${SHA1_B}\nparent ${SHA1_C}\nparent ${SHA1_A}\n\nm`)),
  );
  assert.deepEqual(octo.parents, [SHA1_B, SHA1_C, SHA1_A]);
  assert.equal(octo.author, null);
  assert.equal(octo.subject, "m");
  assert.equal(octo.body, "");
});

Deno.test("parsePayload: sha256 ids", () => {
  const t = "1".repeat(64);
  const p = "2".repeat(64);
  const c = asCommit(parsePayload(b(`tree ${t}\nparent ${p}\n\nx\n`)));
  assert.equal(c.tree, t);
  assert.deepEqual(c.parents, [p]);
  assert.throws(() => parsePayload(b(`tree ${t}\nparent ${SHA1_B}\n\nx\n`)), PayloadError);
});

Deno.test("parsePayload: message splitting keeps everything but one blank line", () => {
  const cases: [string, string, string][] = [
    ["", "", ""],
    ["only subject", "only subject", ""],
    ["only subject\n", "only subject", ""],
    ["s\nsecond line directly\n", "s", "second line directly\n"],
    ["s\n\n\nbody after two blanks", "s", "\nbody after two blanks"],
    [
      "# This is a combination of 2 commits.\n# This is the 1st commit message:\n\nfirst\n",
      "# This is a combination of 2 commits.",
      "# This is the 1st commit message:\n\nfirst\n",
    ],
    ["s\n\nbody without final newline", "s", "body without final newline"],
    ["s\r\n\r\nwindows", "s\r", "\r\nwindows"],
    ["\nempty subject", "", "empty subject"],
  ];
  for (const [message, subject, body] of cases) {
    const c = asCommit(parsePayload(commit("", message)));
    assert.equal(c.subject, subject, JSON.stringify(message));
    assert.equal(c.body, body, JSON.stringify(message));
  }
});

Deno.test("parsePayload: no blank line means all headers and an empty message", () => {
  for (const tail of ["", "\n"]) {
    const c = asCommit(parsePayload(b(`tree ${SHA1_A}\nauthor ${AUTHOR}${tail}`)));
    assert.equal(c.subject, "");
    assert.equal(c.body, "");
    assert.notEqual(c.author, null);
  }
});

Deno.test("parsePayload: mergetag and unknown headers, with continuations", () => {
  const mergetag = [
    `mergetag object ${SHA1_C}`,
    " type commit",
    " tag topic-v1",
    ` tagger ${AUTHOR}`,
    " ",
    " signed tag on topic",
    " -----BEGIN PGP SIGNATURE-----",
    " ",
    " iQ==",
    " -----END PGP SIGNATURE-----",
  ].join("\n");
  const c = asCommit(parsePayload(commit(`${mergetag}\nx-custom line1\n continuation\n`, "m\n")));
  assert.deepEqual(c.extraHeaders, [
    {
      key: "mergetag",
      value: `object ${SHA1_C}\ntype commit\ntag topic-v1\ntagger ${AUTHOR}\n\n` +
        "signed tag on topic\n-----BEGIN PGP SIGNATURE-----\n\niQ==\n-----END PGP SIGNATURE-----",
    },
    { key: "x-custom", value: "line1\ncontinuation" },
  ]);
  // A continuation keeps everything after the one dropped space.
  const d = asCommit(parsePayload(commit("x-y a\n   indented\n", "m")));
  assert.deepEqual(d.extraHeaders, [{ key: "x-y", value: "a\n  indented" }]);
  // A header without a value.
  const e = asCommit(parsePayload(commit("novalue\n", "m")));
  assert.deepEqual(e.extraHeaders, [{ key: "novalue", value: "" }]);
});

Deno.test("parsePayload: encoding header decodes message and idents", () => {
  // "Jos\xe9" and "caf\xe9 na\xefve" in ISO-8859-1.
  const bytes = new Uint8Array([
    ...b(`tree ${SHA1_A}\nauthor Jos`),
    0xe9,
    ...b(` <j@example.test> 1 +0000\nencoding ISO-8859-1\n\ncaf`),
    0xe9,
    ...b(" na"),
    0xef,
    ...b("ve\n"),
  ]);
  const c = asCommit(parsePayload(bytes));
  assert.equal(c.encoding, "ISO-8859-1");
  assert.equal(c.author?.name, "José");
  assert.equal(c.subject, "café naïve");
  assert.equal(decodingNote(c), null);
  // The same bytes without the header: UTF-8 with replacement characters.
  const plain = asCommit(
    parsePayload(new Uint8Array([...b(`tree ${SHA1_A}\n\ncaf`), 0xe9, ...b("\n")])),
  );
  assert.equal(plain.subject, "caf\ufffd");
});

Deno.test("parsePayload: shift_jis and unknown encodings", () => {
  // "日本" in Shift_JIS.
  const sjis = new Uint8Array([
    ...b(`tree ${SHA1_A}\nencoding Shift_JIS\n\n`),
    0x93,
    0xfa,
    0x96,
    0x7b,
    0x0a,
  ]);
  assert.equal(asCommit(parsePayload(sjis)).subject, "日本");
  for (const label of ["x-bogus", "UTF-16", "utf-16be"]) {
    const c = asCommit(parsePayload(b(`tree ${SHA1_A}\nencoding ${label}\n\nplain ascii\n`)));
    assert.equal(c.encoding, label);
    assert.equal(c.subject, "plain ascii");
    assert.match(decodingNote(c) ?? "", /unknown encoding/);
    assert.equal(decoderFor(label).known, false);
  }
  assert.equal(decoderFor("windows-1252").known, true);
  assert.equal(decoderFor(null).known, true);
});

Deno.test("parsePayload: a BOM in the message stays visible", () => {
  const c = asCommit(
    parsePayload(new Uint8Array([...b(`tree ${SHA1_A}\n\n`), 0xef, 0xbb, 0xbf, 0x78])),
  );
  assert.equal(c.subject, "\ufeffx");
});

Deno.test("parsePayload: ident edge cases", () => {
  const c = asCommit(
    parsePayload(b(`tree ${SHA1_A}\nauthor <> 0 +0000\ncommitter N <a>b> 5 -1200\n\n`)),
  );
  assert.deepEqual(c.author, { name: "", email: "", time: 0, tz: "+0000" });
  assert.deepEqual(c.committer, { name: "N", email: "a>b", time: 5, tz: "-1200" });
});

Deno.test("parsePayload: refuses what it cannot show faithfully", () => {
  const bad: [string, RegExp][] = [
    ["", /not a signing payload/],
    ["hello\n\n", /not a signing payload/],
    ["tree\n\n", /not a signing payload/],
    [`tree ${SHA1_A.toUpperCase()}\n\n`, /malformed tree/],
    [`tree ${SHA1_A}0\n\n`, /malformed tree/],
    [`tree ${SHA1_A}\nparent xyz\n\n`, /malformed parent/],
    [`tree ${SHA1_A}\ntree ${SHA1_A}\n\n`, /more than one tree/],
    [`tree ${SHA1_A}\nauthor ${AUTHOR}\nparent ${SHA1_B}\n\n`, /parent header after/],
    [`tree ${SHA1_A}\nparent ${SHA1_B}\nx y\nparent ${SHA1_C}\n\n`, /parent header after/],
    [`object ${SHA1_A}\ntag v1\ntype commit\n\n`, /out of order/],
    [`object ${SHA1_A}\ntype commit\ntagger ${AUTHOR}\ntag v1\n\n`, /out of order/],
    [`tree ${SHA1_A}\nauthor ${AUTHOR}\nauthor ${AUTHOR}\n\n`, /more than one author/],
    [`tree ${SHA1_A}\nauthor nobody 12 +0000\n\n`, /malformed author/],
    [`tree ${SHA1_A}\ncommitter N <e> yesterday\n\n`, /malformed committer/],
    [`tree ${SHA1_A}\nencoding a\nencoding b\n\n`, /more than one encoding/],
    [`object ${SHA1_A}\ntype commit\n\n`, /without a tag header/],
    [`object ${SHA1_A}\ntag v1\n\n`, /without a type header/],
    [`object nope\ntype commit\ntag v1\n\n`, /malformed object/],
    [`object ${SHA1_A}\ntype commit\ntag v1\ntagger x\n\n`, /malformed tagger/],
    ["certificate version 0.1\npushee x\n\nnot an update\n", /malformed ref update/],
    [`certificate version 0.1\n\n${SHA1_A} nothex refs/heads/x\n`, /malformed ref update/],
    [`certificate version 0.1\n\n${SHA1_A} abc refs/heads/x\n`, /malformed new/],
  ];
  for (const [text, re] of bad) {
    assert.throws(() => parsePayload(b(text)), (e: unknown) => {
      assert.ok(e instanceof PayloadError, `${JSON.stringify(text)}: ${e}`);
      assert.match(e.message, re, JSON.stringify(text));
      return true;
    });
  }
});

Deno.test("parsePayload: tag", () => {
  const t = parsePayload(
    b(`object ${SHA1_C}\ntype commit\ntag v1.0\ntagger ${AUTHOR}\n\nRelease 1.0\n\nNotes.\n`),
  );
  assert.deepEqual(t, {
    type: "tag",
    object: SHA1_C,
    objectType: "commit",
    tag: "v1.0",
    tagger: { name: "A U Thor", email: "author@example.test", time: 1700000000, tz: "+0200" },
    extraHeaders: [],
    subject: "Release 1.0",
    body: "Notes.\n",
  });
  assert.equal(payloadKind(t), "sign.tag");
  assert.equal(summarize(t), "Release 1.0");
  const old = parsePayload(b(`object ${SHA1_C}\ntype tree\ntag old\n\n`));
  assert.equal(old.type === "tag" && old.tagger, null);
  assert.equal(summarize(old), "tag old");
});

Deno.test("parsePayload: push certificate", () => {
  const zero = "0".repeat(40);
  const p = parsePayload(
    b(
      `certificate version 0.1\npusher ${AUTHOR}\npushee /srv/r.git\nnonce 17-abc\n` +
        `push-option ci.skip\n\n${zero} ${SHA1_A} refs/heads/main\n${SHA1_B} ${zero} refs/tags/x\n`,
    ),
  );
  assert.deepEqual(p, {
    type: "push",
    version: "0.1",
    pusher: { name: "A U Thor", email: "author@example.test", time: 1700000000, tz: "+0200" },
    pushee: "/srv/r.git",
    nonce: "17-abc",
    extraHeaders: [{ key: "push-option", value: "ci.skip" }],
    updates: [
      { old: zero, new: SHA1_A, ref: "refs/heads/main" },
      { old: SHA1_B, new: zero, ref: "refs/tags/x" },
    ],
  });
  assert.equal(payloadKind(p), "sign.push");
  assert.equal(summarize(p), "push 2 refs to /srv/r.git");
  // With user.signingKey set, git writes the key id instead of an ident.
  const k = parsePayload(
    b(`certificate version 0.1\npusher ABCDEF0123456789 1700000000 +0000\nnonce n\n\n`),
  );
  assert.equal(k.type === "push" && k.pusher, null);
  assert.deepEqual(k.type === "push" && k.extraHeaders, [
    { key: "pusher", value: "ABCDEF0123456789 1700000000 +0000" },
  ]);
  assert.equal(summarize(k), "push 0 refs to ");
});

Deno.test("summarize: one line, empty subjects", () => {
  assert.equal(summarize(parsePayload(commit("", ""))), "(empty message)");
  assert.equal(summarize(parsePayload(commit("", "a\r\n\r\nb"))), "a ");
});

// ---------------------------------------------------------------- against real git

interface Run {
  code: number;
  stdout: Uint8Array;
  stderr: string;
}

async function run(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; stdin?: Uint8Array } = {},
): Promise<Run> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    clearEnv: true,
    stdin: opts.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (opts.stdin) {
    const w = child.stdin.getWriter();
    await w.write(opts.stdin);
    await w.close();
  }
  const out = await child.output();
  return { code: out.code, stdout: out.stdout, stderr: dec.decode(out.stderr) };
}

/** A scratch area with an isolated HOME, git identity and GNUPGHOME. */
class Sandbox {
  readonly env: Record<string, string>;
  constructor(readonly dir: string) {
    this.env = {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME: dir,
      GNUPGHOME: `${dir}/gnupg`,
      GIT_CONFIG_NOSYSTEM: "1",
      GIT_AUTHOR_NAME: "A U Thor",
      GIT_AUTHOR_EMAIL: "author@example.test",
      GIT_AUTHOR_DATE: "1700000000 +0200",
      GIT_COMMITTER_NAME: "C O Mitter",
      GIT_COMMITTER_EMAIL: "committer@example.test",
      GIT_COMMITTER_DATE: "1700000100 -0130",
      LC_ALL: "C",
    };
  }
  static async create(): Promise<Sandbox> {
    const dir = await Deno.makeTempDir({ prefix: "payload_test_" });
    await Deno.mkdir(`${dir}/gnupg`, { mode: 0o700 });
    await Deno.mkdir(`${dir}/capture`);
    return new Sandbox(dir);
  }
  async must(cmd: string, args: string[], cwd?: string, stdin?: Uint8Array): Promise<Uint8Array> {
    const r = await run(cmd, args, { cwd, env: this.env, stdin });
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
    return r.stdout;
  }
  async git(cwd: string, ...args: string[]): Promise<string> {
    return dec.decode(await this.must("git", args, cwd)).trim();
  }
  /** Installs a gpg.program that records stdin and stdout of each call (n = 1, 2, ...). */
  async wrapper(real: boolean): Promise<string> {
    const path = `${this.dir}/signer.sh`;
    const cap = `${this.dir}/capture`;
    const sign = real
      ? `gpg "$@" < "${cap}/payload.$n" > "${cap}/sig.$n"; rc=$?`
      : `cat "${cap}/fake_sig" > "${cap}/sig.$n"; echo '[GNUPG:] SIG_CREATED D 22 8 00 1 F' >&2; rc=0`;
    await Deno.writeTextFile(
      path,
      `#!/bin/sh
n=$(cat "${cap}/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "${cap}/count"
cat > "${cap}/payload.$n"
${sign}
cat "${cap}/sig.$n"
exit $rc
`,
    );
    await Deno.chmod(path, 0o755);
    return path;
  }
  async last(): Promise<{ payload: Uint8Array; sig: Uint8Array }> {
    const cap = `${this.dir}/capture`;
    const n = (await Deno.readTextFile(`${cap}/count`)).trim();
    return {
      payload: await Deno.readFile(`${cap}/payload.${n}`),
      sig: await Deno.readFile(`${cap}/sig.${n}`),
    };
  }
  async cleanup(): Promise<void> {
    await run("gpgconf", ["--homedir", `${this.dir}/gnupg`, "--kill", "all"], { env: this.env });
    await Deno.remove(this.dir, { recursive: true });
  }
}

async function initRepo(sb: Sandbox, name: string, format: "sha1" | "sha256", signer: string) {
  const repo = `${sb.dir}/${name}`;
  await sb.must("git", ["init", "-q", `--object-format=${format}`, "-b", "main", repo]);
  await sb.git(repo, "config", "gpg.program", signer);
  return repo;
}

Deno.test("commitIdWithSignature and parsePayload agree with git and gpg", async () => {
  const sb = await Sandbox.create();
  try {
    await sb.must("gpg", [
      "--batch",
      "--passphrase",
      "",
      "--quick-gen-key",
      // The committer's ident, so that git finds the key without user.signingKey.
      "C O Mitter <committer@example.test>",
      "ed25519",
      "sign",
      "1d",
    ]);
    const signer = await sb.wrapper(true);
    for (const format of ["sha1", "sha256"] as const) {
      const repo = await initRepo(sb, `repo-${format}`, format, signer);
      const check = async (what: string) => {
        const { payload, sig } = await sb.last();
        assert.match(
          dec.decode(sig),
          /^-----BEGIN PGP SIGNATURE-----\n[^]*-----END PGP SIGNATURE-----\n$/,
        );
        const head = await sb.git(repo, "rev-parse", "HEAD");
        assert.equal(commitIdWithSignature(payload, sig, format), head, `${format} ${what}`);
        const c = asCommit(parsePayload(payload));
        assert.equal(c.tree, await sb.git(repo, "rev-parse", "HEAD^{tree}"));
        const parents = await sb.git(repo, "log", "-1", "--format=%P");
        assert.deepEqual(c.parents, parents ? parents.split(" ") : []);
        assert.equal(c.subject, await sb.git(repo, "log", "-1", "--format=%s"));
        assert.equal(
          `${c.author?.name} <${c.author?.email}> ${c.author?.time} ${c.author?.tz}`,
          await sb.git(repo, "log", "-1", "--format=%an <%ae> %ad", "--date=raw"),
        );
        assert.equal(
          `${c.committer?.name} <${c.committer?.email}> ${c.committer?.time} ${c.committer?.tz}`,
          await sb.git(repo, "log", "-1", "--format=%cn <%ce> %cd", "--date=raw"),
        );
        assert.equal(
          await sb.git(repo, "verify-commit", "HEAD").then(() => "good", () => "bad"),
          "good",
        );
      };
      await Deno.writeTextFile(`${repo}/a.txt`, "one\n");
      await sb.git(repo, "add", "a.txt");
      await sb.git(repo, "commit", "-q", "-S", "-m", "root commit");
      await check("root");
      await sb.git(repo, "checkout", "-q", "-b", "topic");
      await Deno.writeTextFile(`${repo}/b.txt`, "two\n");
      await sb.git(repo, "add", "b.txt");
      await sb.git(repo, "commit", "-q", "-S", "-m", "topic commit", "-m", "with a body");
      await check("second");
      await sb.git(repo, "checkout", "-q", "main");
      await Deno.writeTextFile(`${repo}/c.txt`, "three\n");
      await sb.git(repo, "add", "c.txt");
      await sb.git(repo, "commit", "-q", "-S", "-m", "main commit");
      await sb.git(repo, "tag", "-s", "-m", "signed tag on topic", "topic-v1", "topic");
      const { payload: tagPayload } = await sb.last();
      const t = parsePayload(tagPayload);
      assert.equal(t.type, "tag");
      if (t.type === "tag") {
        assert.equal(t.object, await sb.git(repo, "rev-parse", "topic"));
        assert.equal(t.objectType, "commit");
        assert.equal(t.tag, "topic-v1");
        assert.equal(t.tagger?.email, "committer@example.test");
        assert.equal(t.subject, "signed tag on topic");
      }
      await sb.git(repo, "merge", "-q", "-S", "--no-ff", "-m", "merge signed tag", "topic-v1");
      await check("merge of a signed tag");
      const merge = asCommit(parsePayload((await sb.last()).payload));
      assert.equal(merge.extraHeaders[0]?.key, "mergetag");
      assert.match(merge.extraHeaders[0].value, /^object [0-9a-f]+\ntype commit\ntag topic-v1\n/);

      // A signed push certificate.
      const remote = `${sb.dir}/remote-${format}.git`;
      await sb.must("git", ["init", "-q", "--bare", `--object-format=${format}`, remote]);
      await sb.git(remote, "config", "receive.certNonceSeed", "seed");
      await sb.git(repo, "push", "-q", "--signed", remote, "main");
      const push = parsePayload((await sb.last()).payload);
      assert.equal(push.type, "push");
      if (push.type === "push") {
        assert.equal(push.version, "0.1");
        assert.equal(push.pushee, remote);
        assert.match(push.nonce, /^\d+-[0-9a-f]+$/);
        assert.equal(push.pusher?.email, "committer@example.test");
        assert.deepEqual(push.updates, [{
          old: "0".repeat(format === "sha1" ? 40 : 64),
          new: await sb.git(repo, "rev-parse", "main"),
          ref: "refs/heads/main",
        }]);
        assert.equal(summarize(push), `push 1 ref to ${remote}`);
      }
      // With user.signingKey set, git writes that instead of an ident.
      await Deno.writeTextFile(`${repo}/d.txt`, "four\n");
      await sb.git(repo, "add", "d.txt");
      await sb.git(repo, "commit", "-q", "-S", "-m", "another");
      await check("after merge");
      await sb.git(
        repo,
        "-c",
        "user.signingKey=committer@example.test",
        "push",
        "-q",
        "--signed",
        remote,
        "main",
      );
      const push2 = parsePayload((await sb.last()).payload);
      assert.equal(push2.type === "push" && push2.pusher, null);
      assert.equal(push2.type === "push" && push2.extraHeaders[0].key, "pusher");
      assert.match(
        push2.type === "push" ? push2.extraHeaders[0].value : "",
        /^committer@example\.test \d+ [+-]\d{4}$/,
      );
    }
  } finally {
    await sb.cleanup();
  }
});

Deno.test("commitIdWithSignature follows git for odd signer output", async () => {
  const sb = await Sandbox.create();
  try {
    const signer = await sb.wrapper(false);
    const cases: [string, string][] = [
      ["no final newline", "-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----"],
      ["CRLF", "-----BEGIN PGP SIGNATURE-----\r\n\r\nabc\r\n-----END PGP SIGNATURE-----\r\n"],
      ["stray CR", "line\rwith CR\n"],
      ["empty", ""],
      ["one line", "this is not a signature\n"],
      ["blank lines", "\n\nx\n\n"],
    ];
    for (const format of ["sha1", "sha256"] as const) {
      const repo = await initRepo(sb, `odd-${format}`, format, signer);
      let i = 0;
      for (const [what, sig] of cases) {
        await Deno.writeTextFile(`${sb.dir}/capture/fake_sig`, sig);
        await Deno.writeTextFile(`${repo}/f`, `${i++}\n`);
        await sb.git(repo, "add", "f");
        await sb.git(repo, "commit", "-q", "-S", "-m", `odd: ${what}`, "-m", "body");
        const last = await sb.last();
        assert.equal(dec.decode(last.sig), sig);
        assert.equal(
          commitIdWithSignature(last.payload, last.sig, format),
          await sb.git(repo, "rev-parse", "HEAD"),
          `${format}: ${what}`,
        );
      }
    }
  } finally {
    await sb.cleanup();
  }
});
