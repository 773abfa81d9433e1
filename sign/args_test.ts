import assert from "node:assert/strict";
import { ArgsError, parseSignArgs } from "./args.ts";

Deno.test("git's and EGit's signing argv forms", () => {
  assert.deepEqual(parseSignArgs(["--status-fd=2", "-bsau", "Test <t@example.test>"]), {
    keySpec: "Test <t@example.test>",
    statusFd: 2,
  });
  assert.deepEqual(
    parseSignArgs(["-bsau", "ABCD!", "--batch", "--no-tty", "--status-fd", "2", "--output", "-"]),
    { keySpec: "ABCD!", statusFd: 2 },
  );
  assert.deepEqual(parseSignArgs(["--detach-sign", "--sign", "--armor", "--local-user=k"]), {
    keySpec: "k",
    statusFd: null,
  });
  assert.deepEqual(parseSignArgs(["-bsauKEY"]), { keySpec: "KEY", statusFd: null });
  assert.deepEqual(parseSignArgs(["-bau", "K"]), { keySpec: "K", statusFd: null });
  assert.deepEqual(parseSignArgs(["-b", "-s", "-a", "-u", "-weird-key"]), {
    keySpec: "-weird-key",
    statusFd: null,
  });
});

Deno.test("calls the signer will not handle are refused clearly", () => {
  const bad: [string[], RegExp][] = [
    [["-bsa"], /no key/],
    [["-sau", "k"], /not a detached/],
    [["--sign", "--armor", "-u", "k"], /not a detached/],
    [["-bsu", "k"], /armored/],
    [["-bsau", "k", "--output", "/tmp/x"], /only --output -/],
    [["-bsau", "k", "--passphrase-fd", "0"], /unsupported option --passphrase-fd/],
    [["-bsau", "k", "file.txt"], /unexpected argument/],
    [["-bsau", "k", "-u", "other"], /more than one/],
    [["-bsau"], /needs a value/],
    [["-bsau", "k", "--status-fd=x"], /bad --status-fd/],
    [["-bsxau", "k"], /unsupported option -x/],
  ];
  for (const [argv, re] of bad) {
    assert.throws(
      () => parseSignArgs(argv),
      (e: Error) => e instanceof ArgsError && re.test(e.message),
      argv.join(" "),
    );
  }
});
