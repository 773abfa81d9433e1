/**
 * The provisioning plan end to end through `main()`, on a temporary root prefix with a fake host
 * (users in memory; no root needed): dry-run prints the real run's plan and changes nothing, a
 * second run changes nothing, `--check` passes and catches tampering, `--uninstall` leaves the
 * tree as it found it (the store kept unless `--purge`), a kept store is adopted again.
 */

import { treeDiff as diff } from "./fake_host.ts";
import assert from "node:assert/strict";
import { FakeHost } from "./fake_host.ts";
import { NETWORK_ENV } from "./install.ts";
import { GOPASS_CANDIDATES, main, parseBackend, type ProvisionIo, SOURCE_DIR } from "./main.ts";
import { DEFAULT_UID_MIN, LOGIN_DEFS, parseUidMin } from "./host.ts";

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

/** Every path under `dir` with its type, mode and mtime (mtime only for files). */
async function snapshot(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(rel: string) {
    for await (const e of Deno.readDir(`${dir}${rel}`)) {
      const r = `${rel}/${e.name}`;
      // Deno's sqlite caches change when root (the fake's stand-in user) runs Deno with them.
      if (/\/deno-dir\/[a-z0-9_]+_cache_v\d+(-shm|-wal)?$/.test(r)) continue;
      const info = await Deno.lstat(`${dir}${r}`);
      out.set(
        r,
        `${e.isDirectory ? "d" : e.isSymlink ? "l" : "f"} ${(info.mode! & 0o7777).toString(8)} ${
          e.isFile ? info.mtime?.getTime() : ""
        }`,
      );
      if (e.isDirectory) await walk(r);
    }
  }
  await walk("");
  return out;
}

interface World {
  root: string;
  home: string;
  host: FakeHost;
  io: ProvisionIo;
  lines: string[];
  run(...args: string[]): Promise<{ code: number; out: string[] }>;
}

async function world(): Promise<World> {
  const root = await Deno.makeTempDir({ prefix: "sd-prov-root-" });
  await Deno.chmod(root, 0o755);
  for (const d of SYSTEM_DIRS) await Deno.mkdir(`${root}/${d}`, { recursive: true });
  const home = await Deno.makeTempDir({ prefix: "sd-prov-home-" });
  const host = new FakeHost(root);
  host.addUser({ name: "alice", uid: 61234, gid: 61234, home, shell: "/bin/bash" });
  const lines: string[] = [];
  const io: ProvisionIo = {
    print: (l) => lines.push(...l.split("\n")),
    host: () => Promise.resolve(host),
    uid: () => 0,
    denoPath: () => Deno.execPath(),
    sourceDir: SOURCE_DIR,
    env: (k) => (NETWORK_ENV.includes(k) ? Deno.env.get(k) : undefined),
  };
  return {
    root,
    home,
    host,
    io,
    lines,
    async run(...args) {
      lines.length = 0;
      const code = await main(["--user", "alice", "--vt", "9", "--root", root, ...args], io);
      return { code, out: [...lines] };
    },
  };
}

/** The plan part of the output: everything before the first empty line. */
const planOf = (out: string[]) => out.slice(0, out.indexOf(""));

Deno.test("provision: dry-run, run, run again, check, tamper, uninstall, purge", async (t) => {
  const w = await world();
  try {
    const pristine = await snapshot(w.root);
    let firstRun: string[] = [];

    await t.step("--dry-run changes nothing and prints the plan a real run prints", async () => {
      const dry = await w.run("--dry-run");
      assert.equal(dry.code, 0);
      assert.deepEqual(diff(pristine, await snapshot(w.root)), []);
      assert.equal(w.host.users.has("secrets-alice"), false);
      const real = await w.run();
      assert.equal(real.code, 0, real.out.join("\n"));
      firstRun = real.out;
      assert.deepEqual(planOf(real.out), planOf(dry.out));
      assert.ok(planOf(dry.out).length > 30);
      assert.ok(real.out.some((l) => /\d+\. applied$/.test(l)));
    });

    await t.step("the run made the companion, the store, the units, the policy", async () => {
      const c = w.host.users.get("secrets-alice")!;
      assert.equal(c.home, "/var/lib/secrets-dispatcher/alice");
      assert.equal(c.shell, "/usr/sbin/nologin");
      const store = await w.host.stat(`${w.root}/var/lib/secrets-dispatcher/alice`);
      assert.deepEqual([store!.uid, store!.mode], [c.uid, 0o700]);
      const policy = await Deno.readTextFile(
        `${w.root}/etc/dbus-1/system.d/org.secretsdispatcher.Dispatcher1.u61234.conf`,
      );
      assert.match(policy, /<policy user="secrets-alice">/);
      const console = await Deno.readTextFile(
        `${w.root}/etc/systemd/system/secrets-dispatcher-console@alice.service`,
      );
      assert.match(console, /^TTYPath=\/dev\/tty9$/m);
      const wants = await Deno.readLink(
        `${w.root}/etc/systemd/system/user@61234.service.wants/secrets-dispatcher-daemon@alice.service`,
      );
      assert.equal(wants, "/etc/systemd/system/secrets-dispatcher-daemon@alice.service");
      const git = await new Deno.Command("git", {
        args: ["config", "--global", "--get", "gpg.program"],
        env: { HOME: w.home },
        clearEnv: true,
        stdout: "piped",
      }).output();
      assert.equal(
        new TextDecoder().decode(git.stdout).trim(),
        "/usr/local/lib/secrets-dispatcher/bin/secrets-dispatcher-gpg",
      );
      // The agent starts with her graphical session, or from XDG autostart elsewhere.
      const unit = `${w.home}/.config/systemd/user/secrets-dispatcher-agent.service`;
      assert.match(
        await Deno.readTextFile(unit),
        /^ExecStart=\/usr\/local\/lib\/secrets-dispatcher\/bin\/secrets-dispatcher-agent$/m,
      );
      assert.equal((await w.host.stat(unit))!.uid, 61234);
      assert.equal(
        await Deno.readLink(
          `${w.home}/.config/systemd/user/graphical-session.target.wants/secrets-dispatcher-agent.service`,
        ),
        unit,
      );
      assert.match(
        await Deno.readTextFile(`${w.home}/.config/autostart/secrets-dispatcher-agent.desktop`),
        /^X-systemd-skip=true$/m,
      );
      const launcher = await Deno.readTextFile(
        `${w.root}/usr/local/lib/secrets-dispatcher/bin/secrets-dispatcher-agent`,
      );
      assert.match(launcher, /\/usr\/local\/lib\/secrets-dispatcher\/agent\/main\.ts/);
      // The DENO_DIR is read-only for everyone but root.
      const denoDir = await w.host.stat(`${w.root}/usr/local/lib/secrets-dispatcher/deno-dir`);
      assert.deepEqual([denoDir!.uid, denoDir!.mode], [0, 0o755]);
    });

    await t.step("a second run changes nothing; --check passes", async () => {
      const before = await snapshot(w.root);
      const again = await w.run();
      assert.equal(again.code, 0);
      assert.deepEqual(planOf(again.out), planOf(firstRun));
      assert.deepEqual(again.out.filter((l) => /applied|FAILED/.test(l)), []);
      assert.deepEqual(diff(before, await snapshot(w.root)), []);
      const check = await w.run("--check");
      assert.equal(check.code, 0, check.out.join("\n"));
      assert.deepEqual(check.out.filter((l) => l.startsWith("FAIL")), []);
      // Here (fake host, --root) the systemd and pam-auth-update items are skipped, with reasons.
      const skipped = check.out.filter((l) => l.startsWith("SKIP"));
      assert.equal(skipped.length, 4, skipped.join("\n"));
      for (const l of skipped) assert.match(l, /--root is set/);
    });

    await t.step(
      "--check names what was tampered with and how to fix it; a run repairs it",
      async () => {
        const unit = `${w.root}/etc/systemd/system/secrets-dispatcher-daemon@alice.service`;
        await Deno.writeTextFile(
          unit,
          (await Deno.readTextFile(unit)).replace("NoNewPrivileges=yes\n", ""),
        );
        await Deno.chmod(`${w.root}/run/secrets-dispatcher/alice`, 0o755);
        await Deno.remove(`${w.root}/usr/local/lib/secrets-dispatcher/daemon/main.ts`);
        const policy =
          `${w.root}/etc/dbus-1/system.d/org.secretsdispatcher.Dispatcher1.u61234.conf`;
        await Deno.writeTextFile(
          policy,
          (await Deno.readTextFile(policy)).replace(
            "</busconfig>",
            '<policy context="default"><allow send_destination="*"/></policy></busconfig>',
          ),
        );
        const check = await w.run("--check");
        assert.equal(check.code, 1);
        const fails = check.out.filter((l) => l.startsWith("FAIL"));
        const names = fails.map((l) => l.slice(6).split(":")[0].replace(/ \(.*$/, "")).sort();
        assert.deepEqual(names, [
          "D-Bus system policy",
          "DENO_DIR /usr/local/lib/secrets-dispatcher/deno-dir",
          "code installed in /usr/local/lib/secrets-dispatcher",
          "companion bus dir, reachable by the companion only",
          "systemd unit",
        ]);
        assert.ok(check.out.some((l) => l.includes("daemon/main.ts missing")));
        assert.ok(check.out.some((l) => l.includes("mode 0755, expected 0700")));
        assert.ok(check.out.some((l) => l.includes("content differs")));
        const fix = check.out[check.out.indexOf(fails[0]) + 1];
        assert.equal(
          fix,
          `      fix: sudo deno task provision --user alice --vt 9 --backend gnome-keyring --root ${w.root}`,
        );
        const repair = await w.run();
        assert.equal(repair.code, 0, repair.out.join("\n"));
        assert.equal(repair.out.filter((l) => /\d+\. applied$/.test(l)).length, 4);
        assert.equal((await w.run("--check")).code, 0);
      },
    );

    await t.step("--uninstall keeps the store (root-owned) and nothing else", async () => {
      const un = await w.run("--uninstall");
      assert.equal(un.code, 0, un.out.join("\n"));
      assert.equal(w.host.users.has("secrets-alice"), false);
      assert.deepEqual(diff(pristine, await snapshot(w.root)), [
        "+ /var/lib/secrets-dispatcher",
        "+ /var/lib/secrets-dispatcher/alice",
        "+ /var/lib/secrets-dispatcher/alice/gnupg",
        "+ /var/lib/secrets-dispatcher/alice/state",
      ]);
      const store = await w.host.stat(`${w.root}/var/lib/secrets-dispatcher/alice/state`);
      assert.deepEqual([store!.uid, store!.gid], [0, 0]);
      // Her home is as before: no files, no links, no empty .gitconfig, and the directories
      // made for the agent's files are gone too.
      const left: string[] = [];
      for await (const e of Deno.readDir(w.home)) left.push(e.name);
      assert.deepEqual(left, []);
      const files = new Deno.Command("find", {
        args: [w.home, "-not", "-type", "d"],
        stdout: "piped",
      });
      assert.equal(new TextDecoder().decode((await files.output()).stdout), "");
    });

    await t.step(
      "a new run adopts the kept store; --uninstall --purge removes everything",
      async () => {
        await Deno.writeTextFile(
          `${w.root}/var/lib/secrets-dispatcher/alice/state/history.jsonl`,
          "{}\n",
        );
        const again = await w.run();
        assert.equal(again.code, 0, again.out.join("\n"));
        const c = w.host.users.get("secrets-alice")!;
        const kept = await w.host.stat(
          `${w.root}/var/lib/secrets-dispatcher/alice/state/history.jsonl`,
        );
        assert.equal(kept!.uid, c.uid);
        assert.equal((await w.run("--check")).code, 0);
        const purge = await w.run("--uninstall", "--purge");
        assert.equal(purge.code, 0, purge.out.join("\n"));
        assert.deepEqual(diff(pristine, await snapshot(w.root)), []);
        assert.equal(w.host.users.has("secrets-alice"), false);
      },
    );
  } finally {
    await Deno.remove(w.root, { recursive: true });
    await Deno.remove(w.home, { recursive: true });
  }
});

Deno.test("--uninstall keeps machine-wide files while another user is provisioned", async () => {
  const w = await world();
  try {
    assert.equal((await w.run("--no-git-config", "--no-pam")).code, 0);
    // Another provisioned user is known by its record.
    await Deno.mkdir(`${w.root}/etc/secrets-dispatcher/bob`);
    await Deno.writeTextFile(`${w.root}/etc/secrets-dispatcher/bob/provision.json`, "{}\n");
    const un = await w.run("--uninstall", "--purge");
    assert.equal(un.code, 0, un.out.join("\n"));
    assert.ok(un.out[1].includes("machine-wide files kept for bob"));
    for (const kept of ["bin/deno", "deno-dir", "daemon/main.ts", "bin/secrets-dispatcher-gpg"]) {
      await Deno.stat(`${w.root}/usr/local/lib/secrets-dispatcher/${kept}`);
    }
    await assert.rejects(() =>
      Deno.stat(`${w.root}/etc/systemd/system/secrets-dispatcher-daemon@alice.service`)
    );
    await assert.rejects(() => Deno.stat(`${w.root}/var/lib/secrets-dispatcher/alice`));
    // The record said no git config; the agent's files and the dirs made for them are gone.
    assert.deepEqual(await Array.fromAsync(Deno.readDir(w.home)), []);
  } finally {
    await Deno.remove(w.root, { recursive: true });
    await Deno.remove(w.home, { recursive: true });
  }
});

Deno.test("--pam and --git-config undo a recorded --no-pam and --no-git-config", async () => {
  const w = await world();
  const record = async () =>
    JSON.parse(await Deno.readTextFile(`${w.root}/etc/secrets-dispatcher/alice/provision.json`));
  const pamProfile = `${w.root}/usr/share/pam-configs/secrets-dispatcher`;
  const gpgProgram = async () => {
    const git = await new Deno.Command("git", {
      args: ["config", "--global", "--get", "gpg.program"],
      env: { HOME: w.home },
      clearEnv: true,
      stdout: "piped",
    }).output();
    return new TextDecoder().decode(git.stdout).trim();
  };
  try {
    let r = await w.run("--no-pam", "--no-git-config");
    assert.equal(r.code, 0, r.out.join("\n"));
    assert.deepEqual([(await record()).pam, (await record()).gitConfig], [false, false]);
    assert.equal(await w.host.stat(pamProfile), null);
    assert.equal(await gpgProgram(), "");
    // A run without them keeps what was recorded.
    r = await w.run();
    assert.equal(r.code, 0, r.out.join("\n"));
    assert.deepEqual([(await record()).pam, (await record()).gitConfig], [false, false]);
    assert.equal(await w.host.stat(pamProfile), null);
    // The positive options override the record, and are recorded in turn.
    r = await w.run("--pam", "--git-config");
    assert.equal(r.code, 0, r.out.join("\n"));
    assert.deepEqual([(await record()).pam, (await record()).gitConfig], [true, true]);
    assert.equal((await w.host.stat(pamProfile))?.kind, "file");
    assert.equal(
      await gpgProgram(),
      "/usr/local/lib/secrets-dispatcher/bin/secrets-dispatcher-gpg",
    );
    // One option at a time; the other keeps its record.
    r = await w.run("--no-pam", "--dry-run");
    assert.equal(r.code, 0, r.out.join("\n"));
    assert.ok(!r.out.some((l) => l.includes("pam-auth-update")), "no PAM step in the plan");
    assert.ok(r.out.some((l) => l.includes("gpg.program")), "the git step is still planned");
    // --help shows both spellings.
    r = await w.run("--help");
    assert.equal(r.code, 0);
    for (const o of ["--pam ", "--no-pam ", "--git-config ", "--no-git-config "]) {
      assert.ok(r.out.some((l) => l.trimStart().startsWith(o)), `--help lists ${o}`);
    }
  } finally {
    await Deno.remove(w.root, { recursive: true });
    await Deno.remove(w.home, { recursive: true });
  }
});

Deno.test("the fix --check suggests for the console's tty never loosens it", async () => {
  const w = await world();
  // stat(1) of the console's tty as the test sets it; everything else as it is.
  let tty = "";
  const exec = w.host.exec.bind(w.host);
  w.host.exec = (cmd, args, options) =>
    cmd === "stat" && args.at(-1) === "/dev/tty9"
      ? Promise.resolve({ code: 0, stdout: `${tty}\n`, stderr: "" })
      : exec(cmd, args, options);
  /** The FAIL line of the tty item and the fix under it (null when it passes). */
  const ttyCheck = async () => {
    const r = await w.run("--check");
    const i = r.out.findIndex((l) => /^(PASS|FAIL) {2}\/dev\/tty9:/.test(l));
    assert.ok(i >= 0, r.out.join("\n"));
    return r.out[i].startsWith("PASS") ? null : [r.out[i].replace(/^.*\): /, ""), r.out[i + 1]];
  };
  try {
    // The reviewer's case: a tty that is root 0600 and alice in group tty. The fix takes her out
    // of the group; it does not hand the tty to group tty with 0620.
    tty = "0 0 600 character special file";
    w.host.groups.set("tty", ["bob", "alice"]);
    assert.deepEqual(await ttyCheck(), [
      "alice is in group tty and can read the console's screen",
      "      fix: gpasswd -d alice tty   # applies from alice's next login",
    ]);
    // A chmod only when others have access, and then one that only takes bits away.
    tty = "0 5 666 character special file";
    assert.deepEqual(await ttyCheck(), [
      "/dev/tty9 is 0666: others have access",
      "      fix: chmod o-rwx /dev/tty9",
    ]);
    // Another owner: a chown of the owner alone (group and mode stay).
    tty = "4242 5 620 character special file";
    assert.deepEqual(await ttyCheck(), [
      "/dev/tty9 is owned by uid 4242, not root or secrets-alice",
      "      fix: chown root /dev/tty9",
    ]);
    w.host.groups.set("tty", ["bob"]);
    tty = "0 0 600 character special file";
    assert.equal(await ttyCheck(), null);
    // A real run names the same fix among what needs manual action.
    w.host.groups.set("tty", ["alice"]);
    const r = await w.run();
    assert.equal(r.code, 1, r.out.join("\n"));
    const manual = r.out.slice(r.out.indexOf("Provisioned, but these need manual action:"));
    assert.deepEqual(manual.slice(2), [
      "    fix: gpasswd -d alice tty   # applies from alice's next login",
    ]);
    assert.ok(!r.out.some((l) => /chmod 0620|chown root:tty/.test(l)));
  } finally {
    await Deno.remove(w.root, { recursive: true });
    await Deno.remove(w.home, { recursive: true });
  }
});

Deno.test("--deno-dir-from fills the DENO_DIR from a pre-filled cache, with no registry", async () => {
  const seeded = await world();
  const offline = await world();
  try {
    const first = await seeded.run();
    assert.equal(first.code, 0, first.out.join("\n"));
    const seed = `${seeded.root}/usr/local/lib/secrets-dispatcher/deno-dir`;
    // A proxy nobody listens on: any download would fail the step.
    const dead: Record<string, string> = {
      HTTPS_PROXY: "http://127.0.0.1:9",
      HTTP_PROXY: "http://127.0.0.1:9",
    };
    const io = { ...offline.io, env: (k: string) => dead[k] };
    const args = ["--user", "alice", "--vt", "9", "--root", offline.root];
    offline.lines.length = 0;
    const dry = await main([...args, "--deno-dir-from", seed, "--dry-run"], io);
    assert.equal(dry, 0);
    assert.ok(
      offline.lines.some((l) =>
        l.includes(`cp -R ${seed}/. /usr/local/lib/secrets-dispatcher/deno-dir`)
      ),
    );
    assert.ok(offline.lines.some((l) => l.includes("install --frozen --cached-only")));
    offline.lines.length = 0;
    assert.equal(await main([...args, "--deno-dir-from", seed], io), 0, offline.lines.join("\n"));
    offline.lines.length = 0;
    assert.equal(await main([...args, "--check"], io), 0, offline.lines.join("\n"));
    assert.ok(offline.lines.some((l) => /^PASS .*DENO_DIR/.test(l)), offline.lines.join("\n"));
    offline.lines.length = 0;
    assert.equal(await main([...args, "--deno-dir-from", "relative/dir", "--dry-run"], io), 2);
    assert.ok(offline.lines.some((l) => l.includes("--deno-dir-from must be an absolute path")));
  } finally {
    for (const w of [seeded, offline]) {
      await Deno.remove(w.root, { recursive: true });
      await Deno.remove(w.home, { recursive: true });
    }
  }
});

Deno.test("provision refuses bad command lines, non-root callers, unknown and system users", async () => {
  const w = await world();
  try {
    const code = (args: string[], io = w.io) => main(args, io);
    assert.equal(await code(["--check"]), 2); // no --user
    assert.equal(await code(["--user", "alice", "--check", "--uninstall"]), 2);
    assert.equal(await code(["--user", "alice", "--dry-run", "--check"]), 2);
    assert.equal(await code(["--user", "alice", "--purge"]), 2);
    assert.equal(await code(["--user", "alice", "--vt", "x", "--root", w.root]), 2);
    assert.equal(await code(["--user", "alice", "--vt", "3", "--root", w.root]), 2);
    assert.equal(await code(["--user", "nobody-here", "--root", w.root]), 2);
    assert.equal(await code(["--user", "Alice", "--root", w.root]), 2);
    assert.equal(await code(["--user", "alice", "--backend", "gk", "--root", w.root]), 2);
    assert.equal(
      await code(["--user", "alice", "--root", w.root], { ...w.io, uid: () => 1000 }),
      2,
    );
    assert.ok(w.lines.some((l) => l.includes("must run as root")));
    w.host.addUser({ name: "toor", uid: 0, gid: 0, home: "/root", shell: "/bin/sh" });
    assert.equal(await code(["--user", "toor", "--root", w.root]), 2);
    assert.equal(await code(["--user", "toor", "--root", w.root, "--allow-system-user"]), 2);
    // A system account is no desktop user: below UID_MIN only with --allow-system-user.
    w.host.addUser({ name: "messagebus", uid: 100, gid: 101, home: "/", shell: "/bin/false" });
    w.lines.length = 0;
    assert.equal(await code(["--user", "messagebus", "--root", w.root, "--dry-run"]), 2);
    assert.deepEqual(w.lines, [
      "provision: messagebus has uid 100, below UID_MIN 1000 (/etc/login.defs): a system " +
      "account, not a desktop user; --allow-system-user provisions it anyway",
    ]);
    assert.equal(await code(["--user", "messagebus", "--root", w.root, "--check"]), 2);
    assert.equal(await code(["--user", "messagebus", "--root", w.root]), 2);
    w.host.loginUidMin = 500;
    w.host.addUser({ name: "carol", uid: 499, gid: 499, home: "/", shell: "/bin/sh" });
    assert.equal(await code(["--user", "carol", "--root", w.root, "--dry-run"]), 2);
    assert.match(w.lines.at(-1)!, /carol has uid 499, below UID_MIN 500 /);
    w.host.addUser({ name: "nobody", uid: 65534, gid: 65534, home: "/", shell: "/bin/false" });
    assert.equal(await code(["--user", "nobody", "--root", w.root, "--dry-run"]), 2);
    assert.match(w.lines.at(-1)!, /nobody has uid 65534, the overflow uid: a system account/);
    // Nothing of the above changed anything.
    assert.equal(w.host.users.has("secrets-alice"), false);
    assert.deepEqual(w.host.log.filter((l) => !l.startsWith("systemctl")), []);
    // With the override the plan is made for her (and the fix command keeps the override).
    w.lines.length = 0;
    const args = ["--user", "messagebus", "--root", w.root, "--allow-system-user"];
    assert.equal(await code([...args, "--dry-run"]), 0, w.lines.join("\n"));
    assert.match(
      w.lines[0],
      /provisioning of messagebus \(uid 100\): companion secrets-messagebus/,
    );
    w.lines.length = 0;
    assert.equal(await code([...args, "--check"]), 1);
    assert.ok(w.lines.some((l) => l.endsWith(`--allow-system-user --root ${w.root}`)));
  } finally {
    await Deno.remove(w.root, { recursive: true });
    await Deno.remove(w.home, { recursive: true });
  }
});

Deno.test("a missing --user is asked for only when there is a terminal", async () => {
  const w = await world();
  try {
    const asked: string[] = [];
    const args = ["--vt", "9", "--root", w.root, "--dry-run"];
    // No terminal (no ask, or ask answers null): a usage error, nothing waits for input.
    assert.equal(await main(args, w.io), 2);
    assert.ok(w.lines.some((l) => l.includes("--user <name> is required")));
    assert.equal(await main(args, { ...w.io, ask: () => null }), 2);
    // A person at the terminal names the user: the plan is for her.
    w.lines.length = 0;
    const io = {
      ...w.io,
      ask: (q: string) => {
        asked.push(q);
        return "alice";
      },
    };
    assert.equal(await main(args, io), 0, w.lines.join("\n"));
    assert.deepEqual(asked, ["desktop user to provision (--user):"]);
    assert.ok(w.lines.some((l) => l.includes("provisioning of alice")));
    // Given on the command line, nothing is asked.
    asked.length = 0;
    assert.equal(await main(["--user", "alice", ...args], io), 0);
    assert.deepEqual(asked, []);
  } finally {
    await Deno.remove(w.root, { recursive: true });
    await Deno.remove(w.home, { recursive: true });
  }
});

Deno.test("--backend spellings", async () => {
  const none = () => Promise.resolve(false);
  assert.deepEqual((await parseBackend("gnome-keyring", none)).argv, [
    "/usr/bin/gnome-keyring-daemon",
    "--foreground",
    "--components=secrets",
  ]);
  assert.deepEqual(
    (await parseBackend("gopass", (p) => Promise.resolve(p.startsWith("/usr/local")))).argv,
    ["/usr/local/bin/gopass-secret-service"],
  );
  assert.deepEqual(await parseBackend("/opt/kp/bin/kpss --flag", none), {
    kind: "command",
    argv: ["/opt/kp/bin/kpss", "--flag"],
  });
  await assert.rejects(() => parseBackend("keepassxc", none), /absolute command/);
});

/** The paths of one `--allow-<name>=` flag of the `deno task provision` command line. */
async function provisionTaskPaths(name: "read" | "write" | "run"): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${SOURCE_DIR}/deno.json`));
  const words = (config.tasks.provision as string).split(/\s+/);
  const flag = words.find((w) => w.startsWith(`--allow-${name}=`));
  assert.ok(flag, `the provision task has --allow-${name}=`);
  return flag.slice(`--allow-${name}=`.length).split(",");
}

/** Whether Deno's `--allow-read` list `allowed` covers the absolute path `path`. */
function covers(allowed: string[], path: string): boolean {
  return allowed.some((a) => a.startsWith("/") && (path === a || path.startsWith(`${a}/`)));
}

Deno.test("the provision task may read the gopass paths and login.defs it looks at", async () => {
  // Without them `--backend gopass` died with "Requires read access to ...", even in --dry-run.
  const read = await provisionTaskPaths("read");
  for (const p of [...GOPASS_CANDIDATES, LOGIN_DEFS]) {
    assert.ok(covers(read, p), `--allow-read lacks ${p}`);
  }
});

Deno.test("UID_MIN from login.defs", () => {
  assert.equal(parseUidMin("# UID_MIN 5\nUID_MIN\t\t\t 1000\nUID_MAX\t\t\t60000\n"), 1000);
  assert.equal(parseUidMin("  UID_MIN 500\nUID_MIN 700\n"), 500);
  assert.equal(parseUidMin("SYS_UID_MIN 100\n#UID_MIN 10\n"), DEFAULT_UID_MIN);
  assert.equal(parseUidMin("UID_MIN lots\n"), DEFAULT_UID_MIN);
  assert.equal(DEFAULT_UID_MIN, 1000);
});
