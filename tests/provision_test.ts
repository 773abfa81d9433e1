/**
 * Provisioning for a throwaway real user, as root, into a temporary root prefix, through the
 * real command line with the `deno task provision` flags (paths moved under the prefix):
 * provision, `--check`, the unit files through `systemd-analyze verify`, the companion's
 * processes started by hand from the units' own command lines and environments (no systemd
 * here: PID 1 is not systemd), the policy and the companion bus with real users, then
 * `--uninstall` (store kept), a new provision that adopts the store, and `--uninstall --purge`
 * back to the pristine tree. Users created here are removed even when a step fails.
 */

import { treeDiff as diff } from "../provision/fake_host.ts";
import assert from "node:assert/strict";
import { exec, ROOT, run, Stack, systemLikeBusConfig, waitFor } from "../dev/harness.ts";
import { dispatcherName } from "../lib/protocol.ts";
import { IS_ROOT } from "./support.ts";

const USER = "sdprov-alice";
const UID = 61_010;
const COMPANION = `secrets-${USER}`;

/** Directories every Debian root has; provisioning must leave them as it found them. */
const SYSTEM_DIRS = [
  "etc/systemd/system",
  "etc/dbus-1/system.d",
  "etc/polkit-1/rules.d",
  "etc/tmpfiles.d",
  "usr/share/pam-configs",
  "usr/local/lib",
  "var/lib",
  "run",
];

/** Paths of the task's flags that are system paths provisioning manages (moved under the root). */
const MANAGED =
  /^\/(etc\/secrets-dispatcher|etc\/systemd\/system|etc\/dbus-1\/system\.d|etc\/polkit-1\/rules\.d|etc\/tmpfiles\.d|usr\/share\/pam-configs|usr\/local\/lib\/secrets-dispatcher|var\/lib\/secrets-dispatcher|run\/secrets-dispatcher)(\/|$)/;

/** `deno run` arguments of the provision task, with managed paths moved under `root`. */
async function taskArgs(root: string): Promise<string[]> {
  const task: string = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`)).tasks.provision;
  const words = task.trim().split(/\s+/);
  assert.deepEqual(words.slice(0, 2), ["deno", "run"]);
  assert.equal(words.at(-1), "provision/main.ts");
  for (const w of words) {
    assert.doesNotMatch(w, /^(-A|--allow-all|--allow-(read|write|run|env|net|ffi|sys))$/);
  }
  return words.slice(1).map((w) => {
    const m = /^(--allow-(?:read|write|run))=(.*)$/.exec(w);
    if (!m) return w;
    return `${m[1]}=${m[2].split(",").map((p) => (MANAGED.test(p) ? `${root}${p}` : p)).join(",")}`;
  });
}

async function provision(root: string, ...args: string[]) {
  const r = await exec(Deno.execPath(), [
    ...await taskArgs(root),
    "--user",
    USER,
    "--vt",
    "9",
    "--root",
    root,
    ...args,
  ], { cwd: ROOT, inheritEnv: true, env: {} });
  return { code: r.code, out: (r.stdout + r.stderr).split("\n") };
}

/** Every path under `dir` with its type, owner, mode (and size for files). */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(rel: string) {
    for await (const e of Deno.readDir(`${dir}${rel}`)) {
      const r = `${rel}/${e.name}`;
      const i = await Deno.lstat(`${dir}${r}`);
      out.set(
        r,
        `${e.isDirectory ? "d" : e.isSymlink ? "l" : "f"} ${i.uid}:${i.gid} ${
          (i.mode! & 0o7777).toString(8)
        } ${e.isFile ? i.size : ""}`,
      );
      if (e.isDirectory) await walk(r);
    }
  }
  await walk("");
  return out;
}

async function uidOf(user: string): Promise<number | null> {
  const r = await exec("id", ["-u", user]);
  return r.code === 0 ? Number(r.stdout.trim()) : null;
}

/** Stops the leftover processes of a throwaway user (by pid), then deletes the user. */
async function removeUser(user: string, options: { home?: boolean } = {}) {
  const uid = await uidOf(user);
  if (uid === null) return;
  const ps = await exec("ps", ["-o", "pid=", "-u", String(uid)]);
  for (const pid of ps.stdout.split("\n").map((s) => Number(s.trim())).filter((n) => n > 0)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  await exec("userdel", options.home ? ["-r", user] : [user]);
}

/** ExecStart argv, environment and user of a unit file, with `rewrite` applied to every value. */
function unitCommand(text: string, rewrite: (s: string) => string) {
  const line = (key: string) =>
    text.split("\n").filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
  const env: Record<string, string> = {};
  for (const e of line("Environment")) {
    const [k, ...v] = e.replace(/^"|"$/g, "").replace(/%%/g, "%").split("=");
    env[k] = rewrite(v.join("="));
  }
  return { argv: line("ExecStart")[0].split(" ").map(rewrite), env, user: line("User")[0] };
}

const asUser = (user: string, argv: string[], env: Record<string, string> = {}) => [
  "-u",
  user,
  "--",
  "/usr/bin/env",
  "-i",
  "PATH=/usr/bin:/bin",
  ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
  ...argv,
];

Deno.test({
  name: "provision a real user into a temp root: check, boot the units by hand, uninstall, purge",
  ignore: !IS_ROOT,
  async fn(t) {
    await removeUser(COMPANION);
    await removeUser(USER, { home: true });
    const root = await Deno.makeTempDir({ prefix: "sd-prov-root-" });
    const homes = await Deno.makeTempDir({ prefix: "sd-prov-homes-" });
    const stack = await Stack.temp("sd-prov-stack-");
    try {
      await Deno.chmod(root, 0o755);
      await Deno.chmod(homes, 0o755);
      for (const d of SYSTEM_DIRS) await Deno.mkdir(`${root}/${d}`, { recursive: true });
      const home = `${homes}/${USER}`;
      await run("useradd", ["-m", "-d", home, "-u", String(UID), "-s", "/bin/bash", USER]);
      const pristine = await snapshot(root);
      const pristineHome = await snapshot(home);

      await t.step("--backend gopass --dry-run with the task's own flags", async () => {
        // The task may look for gopass-secret-service where provisioning looks for it.
        const dry = await provision(root, "--backend", "gopass", "--dry-run");
        assert.equal(dry.code, 0, dry.out.join("\n"));
        assert.match(dry.out[0], /backend \/usr(\/local)?\/bin\/gopass-secret-service,/);
        assert.deepEqual(diff(pristine, await snapshot(root)), []);
      });

      await t.step(
        "provision with the task's own flags, then --check: PASS or SKIP, no FAIL",
        async () => {
          const first = await provision(root);
          assert.equal(first.code, 0, first.out.join("\n"));
          const check = await provision(root, "--check");
          assert.equal(check.code, 0, check.out.join("\n"));
          assert.deepEqual(check.out.filter((l) => l.startsWith("FAIL")), []);
          const skipped = check.out.filter((l) => l.startsWith("SKIP"));
          assert.deepEqual(skipped.map((l) => l.split(":")[0]), [
            "SKIP  unit files pass systemd-analyze verify",
            "SKIP  systemd has loaded the current unit files",
            "SKIP  PAM hand-off active",
            "SKIP  secrets-dispatcher-unlock-sdprov-alice.socket listens; companion units run while " +
            "sdprov-alice is logged in (user@61010.service active)",
          ]);
          assert.ok(check.out.some((l) => /^PASS {2}DENO_DIR .* complete/.test(l)));
          assert.ok(
            check.out.some((l) =>
              /^PASS {2}companion bus dir, reachable by the companion only/.test(l)
            ),
          );
          assert.ok(check.out.some((l) => /^PASS {2}\/dev\/tty9/.test(l)));
          assert.ok(check.out.some((l) => /^PASS {2}companion units enabled/.test(l)));
          assert.equal(check.out.at(-2), "all checks passed");
          const again = await provision(root);
          assert.equal(again.code, 0);
          assert.deepEqual(again.out.filter((l) => /applied|FAILED/.test(l)), []);
        },
      );

      await t.step("systemd-analyze verify accepts the unit files as written", async () => {
        const units = `${stack.dir}/units`;
        await Deno.mkdir(units);
        for await (const e of Deno.readDir(`${root}/etc/systemd/system`)) {
          if (!e.isFile) continue;
          const text = await Deno.readTextFile(`${root}/etc/systemd/system/${e.name}`);
          await Deno.writeTextFile(
            `${units}/${e.name}`,
            text.replaceAll(
              "/usr/local/lib/secrets-dispatcher",
              `${root}/usr/local/lib/secrets-dispatcher`,
            ),
          );
        }
        const names = [
          ...(await Array.fromAsync(Deno.readDir(units))).map((e) => `${units}/${e.name}`),
        ];
        assert.equal(names.length, 7); // four services, the companion target, the socket and its service
        const r = await exec("systemd-analyze", ["verify", "--man=no", ...names], { cwd: units });
        assert.equal(r.code, 0, r.stderr);
        assert.doesNotMatch(
          r.stderr,
          /Unknown key|Unknown section|Failed to|Invalid|not executable/,
        );
      });

      await t.step(
        "the companion runs its bus, backend and daemon from the units; the real users are kept apart",
        async () => {
          const companionUid = (await uidOf(COMPANION))!;
          // The system-like bus, with the policy provisioning wrote.
          await Deno.chmod(stack.dir, 0o755);
          const sysDir = `${stack.dir}/system-bus`;
          await Deno.mkdir(sysDir, { mode: 0o755 });
          await Deno.chmod(sysDir, 0o755);
          const sysSocket = `${sysDir}/socket`;
          await Deno.writeTextFile(
            `${sysDir}/system.conf`,
            systemLikeBusConfig(sysSocket, `${root}/etc/dbus-1/system.d`),
          );
          await stack.spawn("system-bus", "dbus-daemon", [
            `--config-file=${sysDir}/system.conf`,
            "--nofork",
            "--nopidfile",
          ]);
          await waitFor("system bus", () => Deno.stat(sysSocket).then(() => true, () => false));

          const rewrite = (s: string) =>
            s.replaceAll("/run/dbus/system_bus_socket", sysSocket)
              .replace(/\/(usr\/local\/lib|var\/lib|run|etc)\/secrets-dispatcher/g, (m) =>
                `${root}${m}`);
          const unit = async (name: string) =>
            unitCommand(await Deno.readTextFile(`${root}/etc/systemd/system/${name}`), rewrite);
          const companionBus = `${root}/run/secrets-dispatcher/${USER}/bus`;

          const bus = await unit(`secrets-dispatcher-bus@${USER}.service`);
          assert.equal(bus.user, COMPANION);
          await stack.spawn(
            "companion-bus",
            "runuser",
            asUser(COMPANION, [...bus.argv, `--address=unix:path=${companionBus}`], bus.env),
          );
          await waitFor(
            "companion bus",
            () => Deno.stat(companionBus).then(() => true, () => false),
          );
          const socket = await Deno.lstat(companionBus);
          assert.equal(socket.uid, companionUid);

          // Only the companion gets onto its bus: alice cannot reach the socket, root is refused.
          const ping = (user: string) =>
            exec(
              "runuser",
              asUser(user, [
                "dbus-send",
                `--bus=unix:path=${companionBus}`,
                "--print-reply",
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.GetId",
              ]),
            );
          assert.equal((await ping(COMPANION)).code, 0);
          assert.match((await ping(USER)).stderr, /Permission denied|Failed to connect/);
          const asRoot = await exec("dbus-send", [
            `--bus=unix:path=${companionBus}`,
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.GetId",
          ]);
          assert.notEqual(asRoot.code, 0);

          const backend = await unit(`secrets-dispatcher-backend@${USER}.service`);
          await stack.spawn("backend", "runuser", asUser(COMPANION, backend.argv, backend.env));
          await waitFor(
            "the backend on the companion bus",
            async () =>
              (await exec(
                "runuser",
                asUser(COMPANION, [
                  "dbus-send",
                  `--bus=unix:path=${companionBus}`,
                  "--print-reply",
                  "--dest=org.freedesktop.DBus",
                  "/org/freedesktop/DBus",
                  "org.freedesktop.DBus.GetNameOwner",
                  "string:org.freedesktop.secrets",
                ]),
              )).code === 0,
          );

          const daemon = await unit(`secrets-dispatcher-daemon@${USER}.service`);
          assert.equal(daemon.env.SD_CLIENT_UID, String(UID));
          await stack.spawn("daemon", "runuser", asUser(COMPANION, daemon.argv, daemon.env));
          await waitFor(
            "the daemon to get ready",
            async () => (await stack.log("daemon")).includes("ready"),
            30_000,
          )
            .catch(async (err) => {
              throw new Error(
                `${err.message}\n${await stack.log("daemon")}\n${await stack.log("backend")}`,
              );
            });

          // The installed ctl, with the unlock unit's flags, talks to it as the companion.
          const unlock = await unit(`secrets-dispatcher-unlock-${USER}@.service`);
          assert.deepEqual(unlock.argv.slice(-4), ["unlock", "--password-stdin", "--wait", "90"]);
          const status = await exec(
            "runuser",
            asUser(COMPANION, [...unlock.argv.slice(0, -4), "status", "--json"], unlock.env),
          );
          assert.equal(status.code, 0, status.stderr);
          assert.ok(
            ["locked", "unlocked", "unavailable"].includes(JSON.parse(status.stdout).state),
            status.stdout,
          );

          // On the system bus: alice gets an answer from her daemon; the companion itself does not.
          const storeStatus = (user: string) =>
            exec(
              "runuser",
              asUser(user, [
                "dbus-send",
                `--bus=unix:path=${sysSocket}`,
                "--print-reply",
                `--dest=${dispatcherName(UID)}`,
                "/org/secretsdispatcher/Dispatcher1",
                "org.secretsdispatcher.Dispatcher1.StoreStatus",
              ]),
            );
          const mine = await storeStatus(USER);
          assert.equal(mine.code, 0, mine.stderr);
          assert.match((await storeStatus(COMPANION)).stderr, /AccessDenied/);

          // Alice cannot look into the store, the state dir or the runtime dir.
          for (const dir of ["var/lib/secrets-dispatcher", "run/secrets-dispatcher"]) {
            const ls = await exec("runuser", asUser(USER, ["ls", `${root}/${dir}/${USER}`]));
            assert.match(ls.stderr, /Permission denied/, dir);
          }
          await stack.stop();
        },
      );

      await t.step("--uninstall removes the companion and everything but the store", async () => {
        const un = await provision(root, "--uninstall");
        assert.equal(un.code, 0, un.out.join("\n"));
        assert.equal(await uidOf(COMPANION), null);
        // Only the store is left (with whatever the daemon wrote there), owned by root now.
        const left = diff(pristine, await snapshot(root));
        assert.deepEqual(left.filter((l) => !l.startsWith("+ /var/lib/secrets-dispatcher")), []);
        for (const dir of ["", `/${USER}`, `/${USER}/gnupg`, `/${USER}/state`]) {
          assert.ok(left.includes(`+ /var/lib/secrets-dispatcher${dir}`), dir);
        }
        for (
          const [, v] of [...(await snapshot(root))].filter(([k]) =>
            k.startsWith("/var/lib/secrets-dispatcher/")
          )
        ) {
          assert.match(v, / 0:0 /);
        }
        assert.deepEqual(diff(pristineHome, await snapshot(home)), []);
      });

      await t.step(
        "provisioning again adopts the store; --uninstall --purge leaves nothing",
        async () => {
          const again = await provision(root);
          assert.equal(again.code, 0, again.out.join("\n"));
          const companionUid = (await uidOf(COMPANION))!;
          const companionGid = Number((await run("id", ["-g", COMPANION])).stdout.trim());
          for (const [k, v] of await snapshot(root)) {
            if (k.startsWith(`/var/lib/secrets-dispatcher/${USER}`)) {
              assert.match(v, new RegExp(` ${companionUid}:${companionGid} `), k);
            }
          }
          assert.equal((await provision(root, "--check")).code, 0);
          const purge = await provision(root, "--uninstall", "--purge");
          assert.equal(purge.code, 0, purge.out.join("\n"));
          assert.deepEqual(diff(pristine, await snapshot(root)), []);
          assert.equal(await uidOf(COMPANION), null);
          assert.deepEqual(diff(pristineHome, await snapshot(home)), []);
        },
      );
    } finally {
      await stack.destroy();
      await removeUser(COMPANION);
      await removeUser(USER, { home: true });
      await Deno.remove(root, { recursive: true }).catch(() => {});
      await Deno.remove(homes, { recursive: true }).catch(() => {});
    }
  },
});
