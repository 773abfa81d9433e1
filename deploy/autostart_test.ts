import assert from "node:assert/strict";
import {
  agentDenoArgs,
  agentDesktopEntry,
  agentLauncherScript,
  agentUserUnit,
  gpgWrapperScript,
  shQuote,
} from "./autostart.ts";
import { type Deployment, deployment } from "./layout.ts";
import { denoArgs, type Paths } from "./permissions.ts";

const GNOME = { kind: "gnome-keyring" as const, argv: ["/usr/bin/gnome-keyring-daemon"] };

function alice(installDir = "/usr/local/lib/secrets-dispatcher"): Deployment {
  return deployment({
    user: "alice",
    uid: 1000,
    home: "/home/alice",
    vt: 8,
    backend: GNOME,
    installDir,
  });
}

Deno.test("the agent's command comes from the permission table", () => {
  const sockets = {
    sessionBusSocket: "/run/user/1000/bus",
    systemBusSocket: "/run/dbus/system_bus_socket",
  };
  const args = agentDenoArgs(sockets, { root: "/opt/sd" });
  const paths: Paths = { ...sockets, companionBusSocket: "", stateDir: "", gpg: "", gitDirs: [] };
  assert.deepEqual(args, denoArgs("agent", { paths, root: "/opt/sd" }));
  assert.ok(args.includes("--allow-read=/run/dbus/system_bus_socket,/run/user/1000/bus"));
  for (const a of args) {
    assert.doesNotMatch(a, /^--allow-all$|^-A$/);
    if (a.startsWith("--allow-run")) assert.equal(a, "--allow-run=/usr/bin/readlink,/usr/bin/cat");
  }
});

Deno.test("the autostart entry and the user unit both run the launcher, once per session", () => {
  const d = alice();
  const entry = agentDesktopEntry(d);
  assert.match(entry, /^\[Desktop Entry\]\n/);
  for (
    const l of [
      "Type=Application",
      `Exec=${d.agentLauncher}`,
      "X-GNOME-HiddenUnderSystemd=true",
      "X-systemd-skip=true",
      "NoDisplay=true",
    ]
  ) assert.ok(entry.split("\n").includes(l), l);
  const unit = agentUserUnit(d).split("\n");
  for (
    const l of [
      "PartOf=graphical-session.target",
      "After=graphical-session.target",
      "WantedBy=graphical-session.target",
      `ExecStart=${d.agentLauncher}`,
      "NoNewPrivileges=yes",
      "RestrictAddressFamilies=AF_UNIX",
      // The agent exits 3 when another program owns the name (agent/main.ts EXIT_NAME_TAKEN).
      "RestartPreventExitStatus=2 3",
    ]
  ) assert.ok(unit.includes(l), l);
  assert.ok(unit.some((l) => l.startsWith("UnsetEnvironment=") && l.includes("NODE_OPTIONS")));
  assert.ok(!unit.some((l) => l.startsWith("Environment=")));
});

/** An install dir whose bin/deno records its argv and environment. */
async function fakeInstall(): Promise<{ dir: string; out: string }> {
  const dir = await Deno.makeTempDir({ prefix: "sd-launch-" });
  await Deno.mkdir(`${dir}/bin`);
  await Deno.mkdir(`${dir}/sign`);
  const out = `${dir}/out`;
  const recorder =
    `#!/bin/sh\n{ for a in "$@"; do printf 'ARG %s\\n' "$a"; done; env | sed 's/^/ENV /'; } >${
      shQuote(out)
    }\n`;
  await Deno.writeTextFile(`${dir}/bin/deno`, recorder, { mode: 0o755 });
  await Deno.writeTextFile(`${dir}/sign/gpg_front.sh`, recorder, { mode: 0o755 });
  return { dir, out };
}

async function sh(script: string, env: Record<string, string>, args: string[] = []) {
  const path = await Deno.makeTempFile({ prefix: "sd-script-" });
  await Deno.writeTextFile(path, script);
  try {
    const r = await new Deno.Command("sh", {
      args: [path, ...args],
      env,
      clearEnv: true,
      stdout: "piped",
      stderr: "piped",
    }).output();
    return { code: r.code, stderr: new TextDecoder().decode(r.stderr) };
  } finally {
    await Deno.remove(path);
  }
}

async function recorded(out: string) {
  const text = await Deno.readTextFile(out);
  const lines = text.split("\n");
  return {
    args: lines.filter((l) => l.startsWith("ARG ")).map((l) => l.slice(4)),
    env: Object.fromEntries(
      lines.filter((l) => l.startsWith("ENV ")).map((l) => {
        const [k, ...v] = l.slice(4).split("=");
        return [k, v.join("=")];
      }),
    ),
  };
}

Deno.test("the launcher scopes the agent to the sockets of the buses it is given", async () => {
  const fake = await fakeInstall();
  try {
    const d = alice(fake.dir);
    const script = agentLauncherScript(d);
    const base = { PATH: "/usr/bin:/bin", NODE_OPTIONS: "--inspect" };
    const ok = await sh(script, {
      ...base,
      DBUS_SESSION_BUS_ADDRESS: "unix:path=/run/user/1000/bus,guid=0123",
      DBUS_SYSTEM_BUS_ADDRESS: "unix:path=/tmp/sys/socket",
    });
    assert.equal(ok.code, 0, ok.stderr);
    const r = await recorded(fake.out);
    assert.deepEqual(
      r.args,
      [
        ...agentDenoArgs(
          { sessionBusSocket: "/run/user/1000/bus", systemBusSocket: "/tmp/sys/socket" },
          {
            root: fake.dir,
          },
        ),
        `--vt=${d.vt}`,
      ],
    );
    assert.equal(r.env.DENO_DIR, `${fake.dir}/deno-dir`);
    assert.equal(r.env.NODE_OPTIONS, undefined);

    // Defaults: $XDG_RUNTIME_DIR/bus and the standard system socket.
    await sh(script, { ...base, XDG_RUNTIME_DIR: "/run/user/42" });
    const defaults = await recorded(fake.out);
    assert.ok(defaults.args.includes("--allow-write=/run/dbus/system_bus_socket,/run/user/42/bus"));

    // Refusal: other transports.
    await Deno.remove(fake.out);
    const tcp = await sh(script, { ...base, DBUS_SESSION_BUS_ADDRESS: "tcp:host=x,port=1" });
    assert.equal(tcp.code, 2);
    assert.match(tcp.stderr, /only unix:path=/);
    await assert.rejects(() => Deno.stat(fake.out));
  } finally {
    await Deno.remove(fake.dir, { recursive: true });
  }
});

Deno.test("the gpg.program wrapper runs the installed front with the pinned Deno", async () => {
  const fake = await fakeInstall();
  try {
    const d = alice(fake.dir);
    const r = await sh(gpgWrapperScript(d), { PATH: "/usr/bin:/bin", NODE_OPTIONS: "--inspect" }, [
      "--status-fd=2",
      "-bsau",
      "KEY",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const rec = await recorded(fake.out);
    assert.deepEqual(rec.args, ["--status-fd=2", "-bsau", "KEY"]);
    assert.equal(rec.env.SD_DENO, `${fake.dir}/bin/deno`);
    assert.equal(rec.env.DENO_DIR, `${fake.dir}/deno-dir`);
    assert.equal(rec.env.NODE_OPTIONS, undefined);
  } finally {
    await Deno.remove(fake.dir, { recursive: true });
  }
});
