import assert from "node:assert/strict";
import { type Deployment, deployment, enabledUnits } from "./layout.ts";
import { denoArgs } from "./permissions.ts";
import {
  backendUnit,
  busUnit,
  consoleUnit,
  daemonUnit,
  environmentLines,
  execLine,
  HARDENING,
  systemdWord,
  systemUnits,
  tmpfilesConf,
  unlockServiceUnit,
  unlockSocketUnit,
} from "./units.ts";

const GNOME = {
  kind: "gnome-keyring" as const,
  argv: ["/usr/bin/gnome-keyring-daemon", "--foreground", "--components=secrets"],
};

function alice(vt = 8, installDir?: string): Deployment {
  return deployment({
    user: "alice",
    uid: 1000,
    home: "/home/alice",
    vt,
    backend: GNOME,
    installDir,
  });
}

/** The `Key=value` lines of one section. */
function section(text: string, name: string): string[] {
  const out: string[] = [];
  let inside = false;
  for (const line of text.split("\n")) {
    if (line.startsWith("[")) inside = line === `[${name}]`;
    else if (inside && line && !line.startsWith("#")) out.push(line);
  }
  return out;
}

Deno.test("every companion service is hardened, tied to the login and has a clean environment", () => {
  const d = alice();
  for (const [name, text] of Object.entries(systemUnits(d))) {
    if (name.endsWith(".socket") || name.endsWith(".target")) continue;
    const service = section(text, "Service");
    for (const h of HARDENING) assert.ok(service.includes(h), `${name} lacks ${h}`);
    assert.ok(service.includes("User=secrets-alice"), name);
    assert.ok(service.includes("RestrictAddressFamilies=AF_UNIX"), name);
    assert.ok(service.includes("CapabilityBoundingSet="), name);
    assert.ok(
      !service.some((l) => l.startsWith("MemoryDenyWriteExecute")),
      `${name}: V8 needs W+X`,
    );
    assert.ok(!service.some((l) => l.startsWith("AmbientCapabilities=") && l.length > 21), name);
    for (const l of service.filter((l) => l.startsWith("Environment="))) {
      assert.doesNotMatch(l, /NODE_OPTIONS|NODE_PATH/, `${name}: ${l}`);
    }
    assert.ok(
      service.some((l) => l.startsWith("UnsetEnvironment=") && l.includes("NODE_OPTIONS")),
      name,
    );
    assert.ok(!service.some((l) => l.startsWith("PassEnvironment")), name);
  }
  for (const name of [d.units.bus, d.units.backend, d.units.daemon, d.units.console]) {
    const text = systemUnits(d)[name];
    const unit = section(text, "Unit");
    assert.ok(unit.includes("BindsTo=user@1000.service"), name);
    assert.ok(unit.includes("After=user@1000.service"), name);
    // Stopping the companion target (the lock) stops each of them.
    assert.ok(unit.includes("PartOf=secrets-dispatcher-companion@alice.target"), name);
    assert.deepEqual(section(text, "Install"), ["WantedBy=user@1000.service"], name);
  }
  const target = systemUnits(d)[d.units.companion];
  assert.deepEqual(section(target, "Unit").filter((l) => /^(BindsTo|After|Wants)=/.test(l)), [
    "BindsTo=user@1000.service",
    "After=user@1000.service",
    "Wants=secrets-dispatcher-bus@alice.service secrets-dispatcher-backend@alice.service " +
    "secrets-dispatcher-daemon@alice.service secrets-dispatcher-console@alice.service",
  ]);
  assert.deepEqual(section(target, "Install"), ["WantedBy=user@1000.service"]);
  assert.ok(
    section(systemUnits(d)[d.units.daemon], "Service").includes(
      `Environment="SD_LOCK_STOP_UNIT=secrets-dispatcher-companion@alice.target"`,
    ),
  );
  assert.deepEqual(enabledUnits(d), [
    "secrets-dispatcher-bus@alice.service",
    "secrets-dispatcher-backend@alice.service",
    "secrets-dispatcher-daemon@alice.service",
    "secrets-dispatcher-console@alice.service",
    "secrets-dispatcher-companion@alice.target",
    "secrets-dispatcher-unlock-alice.socket",
  ]);
});

Deno.test("the console unit owns exactly its VT, replaces its getty and always comes back", () => {
  for (const vt of [8, 12]) {
    const d = alice(vt);
    const text = consoleUnit(d);
    const unit = section(text, "Unit");
    const service = section(text, "Service");
    assert.ok(unit.includes(`Conflicts=getty@tty${vt}.service autovt@tty${vt}.service`));
    assert.ok(unit.includes(`ConditionPathExists=/dev/tty${vt}`));
    assert.ok(unit.includes("StartLimitIntervalSec=0"));
    for (
      const l of [
        `TTYPath=/dev/tty${vt}`,
        "StandardInput=tty",
        "StandardOutput=tty",
        "PrivateDevices=yes",
        `DeviceAllow=/dev/tty${vt} rw`,
        "Restart=always",
        "TTYVHangup=yes",
        "UtmpIdentifier=",
        'Environment="SD_COMPANION_BUS_ADDRESS=unix:path=/run/secrets-dispatcher/alice/bus"',
      ]
    ) assert.ok(service.includes(l), `VT ${vt}: missing ${l}`);
    // Exactly one device, the VT; nothing names another tty.
    assert.deepEqual(service.filter((l) => l.startsWith("DeviceAllow=")), [
      `DeviceAllow=/dev/tty${vt} rw`,
    ]);
    assert.deepEqual(text.match(/\/dev\/tty\d+/g)!.filter((t) => t !== `/dev/tty${vt}`), []);
    // No logind session for the companion (PAMName would make it the seat's active session).
    assert.ok(!service.some((l) => l.startsWith("PAMName")));
  }
});

Deno.test("the Deno units run the permission table's command with exact paths", () => {
  const d = alice(8, "/opt/sd");
  const paths = {
    systemBusSocket: "/run/dbus/system_bus_socket",
    companionBusSocket: "/run/secrets-dispatcher/alice/bus",
    stateDir: "/var/lib/secrets-dispatcher/alice/state",
    gpg: "/usr/bin/gpg",
    gitDirs: [],
  };
  const exec = (text: string) => section(text, "Service").find((l) => l.startsWith("ExecStart="));
  assert.equal(
    exec(daemonUnit(d)),
    `ExecStart=${
      execLine(["/opt/sd/bin/deno", ...denoArgs("daemon", { paths, root: "/opt/sd" })])
    }`,
  );
  const phraseFile = "/etc/secrets-dispatcher/alice/console-phrase";
  assert.equal(
    exec(consoleUnit(d)),
    `ExecStart=${
      execLine([
        "/opt/sd/bin/deno",
        ...denoArgs("console", { paths: { ...paths, phraseFile }, root: "/opt/sd" }),
      ])
    }`,
  );
  // The console reads its phrase, and nothing else but its bus socket.
  assert.ok(
    section(consoleUnit(d), "Service").includes(
      `Environment="SD_CONSOLE_PHRASE_FILE=${phraseFile}"`,
    ),
  );
  assert.match(exec(daemonUnit(d))!, /--cached-only --frozen --config=\/opt\/sd\/deno\.json /);
  const daemon = section(daemonUnit(d), "Service");
  for (
    const l of [
      'Environment="DENO_DIR=/opt/sd/deno-dir"',
      'Environment="SD_CLIENT_UID=1000"',
      'Environment="SD_STATE_DIR=/var/lib/secrets-dispatcher/alice/state"',
      'Environment="GNUPGHOME=/var/lib/secrets-dispatcher/alice/gnupg"',
      'Environment="DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket"',
      "ReadWritePaths=/var/lib/secrets-dispatcher/alice/state /var/lib/secrets-dispatcher/alice/gnupg",
    ]
  ) assert.ok(daemon.includes(l), l);
  // The daemon runs ps about its callers: /proc must stay visible to it.
  assert.ok(!daemon.some((l) => l.startsWith("ProtectProc")));
  assert.ok(
    section(busUnit(d), "Service").includes(
      "ExecStart=/usr/bin/dbus-daemon --config-file=/etc/secrets-dispatcher/alice/companion-bus.conf --nofork --nopidfile --nosyslog",
    ),
  );
  assert.ok(
    section(busUnit(d), "Service").includes("ReadWritePaths=/run/secrets-dispatcher/alice"),
  );
  const backend = section(backendUnit(d), "Service");
  assert.ok(
    backend.includes("ExecStart=/usr/bin/gnome-keyring-daemon --foreground --components=secrets"),
  );
  assert.ok(backend.includes('Environment="XDG_RUNTIME_DIR=/run/secrets-dispatcher/alice"'));
  assert.ok(
    backend.includes(
      'Environment="DBUS_SESSION_BUS_ADDRESS=unix:path=/run/secrets-dispatcher/alice/bus"',
    ),
  );
});

Deno.test("the unlock socket is root-only and feeds one companion process per connection", () => {
  const d = alice();
  const socket = section(unlockSocketUnit(d), "Socket");
  for (
    const l of [
      "ListenStream=/run/secrets-dispatcher/unlock-alice.sock",
      "SocketUser=root",
      "SocketGroup=root",
      "SocketMode=0600",
      "Accept=yes",
    ]
  ) assert.ok(socket.includes(l), l);
  assert.deepEqual(section(unlockSocketUnit(d), "Install"), ["WantedBy=sockets.target"]);
  const service = section(unlockServiceUnit(d), "Service");
  assert.ok(service.includes("User=secrets-alice"));
  assert.ok(service.includes("StandardInput=socket"));
  assert.ok(service.includes("StandardOutput=journal"));
  assert.match(
    service.find((l) => l.startsWith("ExecStart="))!,
    / unlock --password-stdin --wait 90$/,
  );
  assert.equal(d.units.unlockService, "secrets-dispatcher-unlock-alice@.service");
});

Deno.test("ExecStart and Environment quoting follows systemd's rules", () => {
  assert.equal(systemdWord("/a/b"), "/a/b");
  assert.equal(systemdWord("50%"), "50%%");
  assert.equal(systemdWord("$HOME"), "$$HOME");
  assert.equal(systemdWord("a b"), '"a b"');
  assert.equal(systemdWord('say "hi"\\'), '"say \\"hi\\"\\\\"');
  assert.equal(systemdWord(";"), '";"');
  assert.equal(systemdWord(""), '""');
  assert.throws(() => execLine(["deno", "run"]), /absolute/);
  assert.deepEqual(environmentLines({ A: "x y", B: '5%"' }), [
    'Environment="A=x y"',
    'Environment="B=5%%\\""',
  ]);
  assert.throws(() => environmentLines({ "A B": "x" }), /bad variable/);
});

Deno.test("the tmpfiles entry makes the runtime dir 0700 for the companion", () => {
  const lines = tmpfilesConf(alice()).split("\n").filter((l) => l && !l.startsWith("#"));
  assert.deepEqual(lines, [
    "d /run/secrets-dispatcher 0755 root root -",
    "d /run/secrets-dispatcher/alice 0700 secrets-alice secrets-alice -",
  ]);
});

Deno.test("deployments refuse names and paths that would break units, scripts or Deno flags", () => {
  const base = { uid: 1000, home: "/home/x", vt: 8, backend: GNOME };
  for (const user of ["Alice", "a b", "a,b", "../x", "-x", "a".repeat(25), ""]) {
    assert.throws(() => deployment({ ...base, user }), /not supported/, user);
  }
  for (const vt of [0, 1, 6, 64, 8.5]) {
    assert.throws(() => deployment({ ...base, user: "x", vt }), /--vt/, String(vt));
  }
  assert.throws(() => deployment({ ...base, user: "x", home: "/home/a b" }), /absolute path/);
  assert.throws(() => deployment({ ...base, user: "x", installDir: "/opt/a,b" }), /absolute path/);
  assert.throws(
    () => deployment({ ...base, user: "x", backend: { kind: "command", argv: ["rel/x"] } }),
    /absolute path/,
  );
  assert.throws(
    () => deployment({ ...base, user: "x", backend: { kind: "command", argv: ["/bin/x", "$y"] } }),
    /special characters/,
  );
});

/** Lines of `systemd-analyze verify` output that mean a unit is wrong. */
const VERIFY_PROBLEM =
  /Unknown key|Unknown section|Failed to|Invalid|not executable|Missing|bad-setting/i;

async function verify(dir: string, files: string[]) {
  const out = await new Deno.Command("systemd-analyze", {
    args: ["verify", "--man=no", ...files.map((f) => `${dir}/${f}`)],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  return { code: out.code, problems: stderr.split("\n").filter((l) => VERIFY_PROBLEM.test(l)) };
}

const HAVE_ANALYZE = await new Deno.Command("systemd-analyze", { args: ["--version"] }).output()
  .then((o) => o.success, () => false);

Deno.test({
  name: "systemd-analyze verify accepts every unit (and would flag a bad one)",
  ignore: !HAVE_ANALYZE,
  async fn() {
    const tmp = await Deno.makeTempDir({ prefix: "sd-units-" });
    try {
      // An install dir whose bin/deno exists, so ExecStart= can be checked for real.
      await Deno.mkdir(`${tmp}/install/bin`, { recursive: true });
      await Deno.symlink(Deno.execPath(), `${tmp}/install/bin/deno`);
      await Deno.mkdir(`${tmp}/units`);
      const d = alice(9, `${tmp}/install`);
      const units = systemUnits(d);
      for (const [name, text] of Object.entries(units)) {
        await Deno.writeTextFile(`${tmp}/units/${name}`, text);
      }
      const good = await verify(`${tmp}/units`, Object.keys(units));
      assert.deepEqual(good.problems, []);
      assert.equal(good.code, 0);

      // The same check fails on a misspelt directive and a missing program.
      await Deno.writeTextFile(
        `${tmp}/units/${d.units.bus}`,
        units[d.units.bus].replace("ProtectHome=yes", "ProtectHomes=yes"),
      );
      await Deno.remove(`${tmp}/install/bin/deno`);
      const bad = await verify(`${tmp}/units`, Object.keys(units));
      assert.ok(
        bad.problems.some((l) => /Unknown key.*ProtectHomes/.test(l)),
        bad.problems.join("\n"),
      );
      assert.ok(bad.problems.some((l) => /not executable/.test(l)), bad.problems.join("\n"));
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  },
});
