import assert from "node:assert/strict";
import { RealHost } from "./host.ts";
import { pamLinePlaced } from "./plan.ts";
import { needsSystemd, octal, systemctlRoot } from "./steps.ts";

Deno.test("systemd items say why they are skipped, and systemctl works on files offline", () => {
  const here = new RealHost("", false);
  assert.deepEqual(needsSystemd(here), {
    status: "skip",
    reason: "systemd is not PID 1 here (no /run/systemd/system): no manager to ask",
  });
  assert.deepEqual(systemctlRoot(here), ["--root=/"]);
  const prefixed = new RealHost("/tmp/x/", true);
  assert.equal(prefixed.root, "/tmp/x");
  assert.equal(prefixed.systemdRunning, false, "a root prefix never talks to the manager");
  assert.match((needsSystemd(prefixed) as { reason: string }).reason, /--root is set/);
  assert.deepEqual(systemctlRoot(prefixed), ["--root=/tmp/x"]);
  const booted = new RealHost("", true);
  assert.equal(needsSystemd(booted), null);
  assert.deepEqual(systemctlRoot(booted), []);
  assert.equal(octal(0o700), "0700");
  assert.equal(octal(0o4755), "04755");
});

Deno.test("pamLinePlaced accepts the hand-off only after pam_deny and with expose_authtok", () => {
  const helper = "/usr/local/lib/secrets-dispatcher/libexec/pam-unlock";
  const line = `auth\toptional\tpam_exec.so quiet expose_authtok type=auth ${helper}`;
  const primary =
    "auth\t[success=1 default=ignore]\tpam_unix.so nullok\nauth\trequisite\t\t\tpam_deny.so\nauth\trequired\t\t\tpam_permit.so";
  assert.deepEqual(pamLinePlaced(`${primary}\n${line}\n`, helper), { status: "pass" });
  assert.equal(pamLinePlaced(`${line}\n${primary}\n`, helper).status, "fail");
  assert.equal(pamLinePlaced(`${primary}\n`, helper).status, "fail");
  assert.equal(pamLinePlaced(`${primary}\n# ${line}\n`, helper).status, "fail");
  assert.equal(
    pamLinePlaced(`${primary}\n${line.replace("expose_authtok ", "")}\n`, helper).status,
    "fail",
  );
});
