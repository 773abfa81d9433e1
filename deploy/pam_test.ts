import assert from "node:assert/strict";
import { PAM_SERVICES, pamHelperScript, pamProfile, pamUnlockArgs } from "./pam.ts";

const CONFIG = {
  installDir: "/usr/local/lib/secrets-dispatcher",
  pamHelper: "/usr/local/lib/secrets-dispatcher/libexec/pam-unlock",
};

Deno.test("the profile puts one optional auth line in Debian's Additional block", () => {
  const text = pamProfile(CONFIG);
  const fields = text.split("\n").filter((l) => /^[A-Z][A-Za-z-]*:/.test(l)).map((l) =>
    l.split(":")[0]
  );
  assert.deepEqual(fields, ["Name", "Default", "Priority", "Auth-Type", "Auth"]);
  assert.match(text, /^Auth-Type: Additional$/m);
  const body = text.split("\n").filter((l) => l.startsWith("\t"));
  assert.deepEqual(body, [
    "\toptional\tpam_exec.so quiet expose_authtok type=auth /usr/local/lib/secrets-dispatcher/libexec/pam-unlock",
  ]);
  // Never a log of the token, never a required/sufficient control, no session/password phase.
  assert.doesNotMatch(text, /log=|debug|stdout|required|sufficient|Session|Password/);
});

Deno.test("the helper's Deno flags name only the socket", () => {
  const args = pamUnlockArgs(CONFIG, "/run/secrets-dispatcher/unlock-alice.sock");
  assert.deepEqual(args.filter((a) => a.startsWith("--allow")), [
    "--allow-read=/run/secrets-dispatcher/unlock-alice.sock",
    "--allow-write=/run/secrets-dispatcher/unlock-alice.sock",
    "--allow-net=unix:/run/secrets-dispatcher/unlock-alice.sock",
  ]);
  assert.ok(args.includes("--cached-only") && args.includes("--no-prompt"));
  assert.equal(args.at(-2), "/usr/local/lib/secrets-dispatcher/provision/pam_unlock.ts");
});

/**
 * Runs the helper script against a fake install whose bin/deno records its argv, environment
 * and stdin, with a runtime base holding an unlock socket (a FIFO stands in: `-S` needs a real
 * socket, so one is made with Deno.listen).
 */
async function runHelper(env: Record<string, string>, stdin: string) {
  const dir = await Deno.makeTempDir({ prefix: "sd-pam-" });
  try {
    await Deno.mkdir(`${dir}/install/bin`, { recursive: true });
    await Deno.mkdir(`${dir}/run`);
    await Deno.writeTextFile(
      `${dir}/install/bin/deno`,
      `#!/bin/sh\nprintf '%s\\n' "$@" >${dir}/args\nenv >${dir}/env\ncat >${dir}/stdin\n`,
      { mode: 0o755 },
    );
    const listener = Deno.listen({ transport: "unix", path: `${dir}/run/unlock-alice.sock` });
    const script = pamHelperScript({
      installDir: `${dir}/install`,
      pamHelper: `${dir}/install/libexec/pam-unlock`,
      runtimeBase: `${dir}/run`,
    });
    await Deno.writeTextFile(`${dir}/helper`, script, { mode: 0o755 });
    const child = new Deno.Command(`${dir}/helper`, {
      env: { PATH: "/usr/bin:/bin", ...env },
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = child.stdin.getWriter();
    try {
      await w.write(new TextEncoder().encode(stdin));
      await w.close();
    } catch (err) {
      // A helper that ignores the call exits without reading: the pipe may be closed already.
      if (!(err instanceof Deno.errors.BrokenPipe)) throw err;
    }
    const out = await child.output();
    listener.close();
    const read = (f: string) => Deno.readTextFile(`${dir}/${f}`).catch(() => null);
    return {
      code: out.code,
      output: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
      args: (await read("args"))?.trimEnd().split("\n") ?? null,
      env: await read("env"),
      stdin: await read("stdin"),
      dir,
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const LOGIN = { PAM_TYPE: "auth", PAM_SERVICE: "login", PAM_USER: "alice", PAM_TTY: "/dev/tty2" };

Deno.test("the helper hands a local login's password to the user's socket, untouched", async () => {
  const r = await runHelper(LOGIN, "s3cret pw\0");
  assert.equal(r.code, 0);
  assert.equal(r.output, "");
  assert.equal(r.stdin, "s3cret pw\0");
  assert.ok(r.args);
  assert.equal(r.args.at(-1), `${r.dir}/run/unlock-alice.sock`);
  assert.ok(r.args.includes(`--allow-write=${r.dir}/run/unlock-alice.sock`));
  // A clean environment: nothing of PAM's (or the password) reaches Deno's environment.
  assert.doesNotMatch(r.env!, /PAM_|s3cret/);
  assert.match(r.env!, new RegExp(`^DENO_DIR=${r.dir}/install/deno-dir$`, "m"));
});

Deno.test("the helper ignores other services, phases, remote logins, odd names and unknown users", async () => {
  const cases: Record<string, string>[] = [
    { ...LOGIN, PAM_SERVICE: "sudo" },
    { ...LOGIN, PAM_SERVICE: "su" },
    { ...LOGIN, PAM_SERVICE: "sshd" },
    { ...LOGIN, PAM_SERVICE: "polkit-1" },
    { ...LOGIN, PAM_TYPE: "open_session" },
    { ...LOGIN, PAM_RHOST: "10.0.0.1" },
    { ...LOGIN, PAM_USER: "../alice" },
    { ...LOGIN, PAM_USER: "-alice" },
    { ...LOGIN, PAM_USER: "bob" }, // no socket for bob
    { PAM_SERVICE: "login", PAM_USER: "alice" }, // no PAM_TYPE
  ];
  for (const env of cases) {
    const r = await runHelper(env, "pw\0");
    assert.equal(r.code, 0, JSON.stringify(env));
    assert.equal(r.args, null, `deno ran for ${JSON.stringify(env)}`);
    assert.equal(r.output, "");
  }
  // Each listed display manager is served.
  for (const service of PAM_SERVICES) {
    const r = await runHelper({ ...LOGIN, PAM_SERVICE: service }, "pw\0");
    assert.ok(r.args, service);
  }
});

Deno.test("the helper script refuses paths it could not quote", () => {
  assert.throws(() => pamHelperScript({ ...CONFIG, runtimeBase: "/run/a b" }), /absolute path/);
  assert.throws(() => pamHelperScript({ ...CONFIG, installDir: "/opt/$x" }), /absolute path/);
});
