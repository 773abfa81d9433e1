/**
 * The PAM hand-off with real PAM (root only): in a private mount namespace (so the machine's own
 * `/etc/pam.d` is never touched) the real pam-auth-update(8) enables the profile from
 * `deploy/pam.ts`, then pamtester(1) authenticates a throwaway real user through the stock
 * `login` service. Only the right password of a local login reaches the user's unlock socket:
 * not a wrong one, not another service's, not a remote one.
 */

import assert from "node:assert/strict";
import { pamHelperScript, pamProfile } from "../deploy/pam.ts";
import { exec, ROOT, run } from "../dev/harness.ts";
import { pamLinePlaced } from "../provision/plan.ts";
import { IS_ROOT } from "./support.ts";

const USER = "sdpam-alice";
const UID = 61_020;
const PASSWORD = "correct horse €42";

const have = async (cmd: string) =>
  (await exec("sh", ["-c", `command -v ${cmd}`], {
    env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin" },
  }))
    .code === 0;
const READY = IS_ROOT && await have("pamtester") && await have("pam-auth-update") &&
  await have("unshare");

Deno.test({
  name:
    "PAM: pam-auth-update puts the hand-off after pam_deny; only a right local login password reaches the socket",
  ignore: !READY,
  async fn() {
    await exec("userdel", ["-r", USER]);
    const dir = await Deno.makeTempDir({ prefix: "sd-pam-" });
    const commonAuthBefore = await Deno.readTextFile("/etc/pam.d/common-auth");
    let listener: Deno.Listener | undefined;
    try {
      await Deno.chmod(dir, 0o755);
      await run("useradd", ["-M", "-u", String(UID), "-s", "/bin/bash", USER]);
      await run("chpasswd", [], { stdin: `${USER}:${PASSWORD}\n` });

      // An install dir with the pinned Deno, the helper module and the config it names.
      const install = `${dir}/install`;
      for (const d of ["bin", "libexec", "provision", "deno-dir"]) {
        await Deno.mkdir(`${install}/${d}`, { recursive: true });
      }
      await Deno.symlink(Deno.execPath(), `${install}/bin/deno`);
      for (const f of ["deno.json", "deno.lock", "provision/pam_unlock.ts"]) {
        await Deno.copyFile(`${ROOT}/${f}`, `${install}/${f}`);
      }
      const config = {
        installDir: install,
        pamHelper: `${install}/libexec/pam-unlock`,
        runtimeBase: `${dir}/run`,
      };
      await Deno.writeTextFile(config.pamHelper, pamHelperScript(config), { mode: 0o755 });

      // Copies of the PAM configuration for the namespace, plus our profile and a non-login
      // service that also includes common-auth.
      await run("cp", ["-a", "/etc/pam.d", `${dir}/pam.d`]);
      await run("cp", ["-a", "/usr/share/pam-configs", `${dir}/pam-configs`]);
      await run("cp", ["-a", "/var/cache/debconf", `${dir}/debconf`]);
      await Deno.writeTextFile(`${dir}/pam-configs/secrets-dispatcher`, pamProfile(config));
      await Deno.writeTextFile(`${dir}/pam.d/sdtest-other`, "@include common-auth\n");

      // The user's unlock socket: collect every connection's bytes.
      await Deno.mkdir(`${dir}/run`);
      listener = Deno.listen({ transport: "unix", path: `${dir}/run/unlock-${USER}.sock` });
      const received: string[] = [];
      const accepting = (async () => {
        for await (const conn of listener!) {
          const chunks = await Array.fromAsync(conn.readable);
          received.push(new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c]))));
        }
      })().catch(() => {});

      const script = `set -u
mount --bind "$1/pam.d" /etc/pam.d
mount --bind "$1/pam-configs" /usr/share/pam-configs
mount --bind "$1/debconf" /var/cache/debconf
DEBIAN_FRONTEND=noninteractive pam-auth-update --package --enable secrets-dispatcher
cp /etc/pam.d/common-auth "$1/common-auth.after"
printf '%s\\n' "$3" | pamtester login "$2" authenticate; echo "right=$?"
printf 'wrong\\n' | pamtester login "$2" authenticate; echo "wrong=$?"
printf '%s\\n' "$3" | pamtester sdtest-other "$2" authenticate; echo "other=$?"
printf '%s\\n' "$3" | pamtester -I rhost=192.0.2.7 login "$2" authenticate; echo "remote=$?"
`;
      const r = await exec("unshare", [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
        dir,
        USER,
        PASSWORD,
      ], { inheritEnv: true, env: {} });
      const out = r.stdout + r.stderr;
      assert.match(out, /^right=0$/m, out);
      assert.match(out, /^wrong=[1-9]/m, out);
      assert.match(out, /^other=0$/m, out);
      assert.match(out, /^remote=0$/m, out);
      assert.doesNotMatch(out, new RegExp(PASSWORD), "the password never appears in any output");

      const after = await Deno.readTextFile(`${dir}/common-auth.after`);
      assert.deepEqual(pamLinePlaced(after, config.pamHelper), { status: "pass" });
      // And the same check refuses the line placed before pam_deny (where wrong passwords go).
      const misplaced = after.replace(/^(auth\s+optional\s+pam_exec\.so.*)$/m, "").replace(
        /^(auth\s+\[success=\d+ default=ignore\]\s+pam_unix\.so.*)$/m,
        `$1\nauth optional pam_exec.so quiet expose_authtok type=auth ${config.pamHelper}`,
      );
      assert.equal(pamLinePlaced(misplaced, config.pamHelper).status, "fail");

      listener.close();
      await accepting;
      assert.deepEqual(received, [PASSWORD]);
    } finally {
      try {
        listener?.close();
      } catch { /* closed */ }
      await exec("userdel", [USER]);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      assert.equal(await Deno.readTextFile("/etc/pam.d/common-auth"), commonAuthBefore);
    }
  },
});
