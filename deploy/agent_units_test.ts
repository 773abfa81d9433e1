import assert from "node:assert/strict";
import { EXIT_NAME_TAKEN } from "../agent/main.ts";
import {
  AGENT_EXIT_NAME_TAKEN,
  agentAutostartEntry,
  agentUserUnit,
  desktopExec,
  systemdExec,
} from "./agent_units.ts";

const LAUNCHER = "/usr/local/lib/secrets-dispatcher/bin/secrets-dispatcher-agent";

/** `key=value` lines of one section of an INI-style file (desktop entry, systemd unit). */
function section(text: string, name: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current = "";
  for (const line of text.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const header = line.match(/^\[(.+)\]$/);
    if (header) {
      current = header[1];
      continue;
    }
    if (current !== name) continue;
    const eq = line.indexOf("=");
    assert.ok(eq > 0, `not a key=value line: ${line}`);
    const k = line.slice(0, eq);
    out.set(k, [...(out.get(k) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

/** Splits an `Exec` value back into arguments, undoing the specification's escapes. */
function parseDesktopExec(value: string): string[] {
  const s = value.replace(/\\(.)/g, (_, c) => c === "\\" ? "\\" : `\\${c}`); // string escape
  const args: string[] = [];
  let i = 0;
  while (i < s.length) {
    if (s[i] === " ") {
      i++;
      continue;
    }
    let arg = "";
    if (s[i] === '"') {
      i++;
      while (s[i] !== '"') {
        assert.ok(i < s.length, "unterminated quote");
        if (s[i] === "\\") i++;
        arg += s[i++];
      }
      i++;
    } else {
      while (i < s.length && s[i] !== " ") arg += s[i++];
    }
    args.push(arg.replaceAll("%%", "%"));
  }
  return args;
}

Deno.test("the autostart entry runs the agent, and steps aside when the user unit is installed", () => {
  const entry = agentAutostartEntry({ exec: [LAUNCHER, "--vt=8"], vt: 8 });
  const e = section(entry, "Desktop Entry");
  assert.deepEqual(e.get("Type"), ["Application"]);
  assert.deepEqual(e.get("Exec"), [`${LAUNCHER} --vt=8`]);
  assert.deepEqual(e.get("Terminal"), ["false"]);
  assert.deepEqual(e.get("NoDisplay"), ["true"]);
  assert.match(e.get("Comment")![0], /VT 8/);
  assert.deepEqual(e.get("X-systemd-skip"), ["true"]);
  assert.deepEqual(e.get("X-GNOME-HiddenUnderSystemd"), ["true"]);
  assert.ok(entry.startsWith("[Desktop Entry]\n"), "the group header comes first");
  const alone = section(
    agentAutostartEntry({ exec: [LAUNCHER], vt: 9, withUserUnit: false }),
    "Desktop Entry",
  );
  assert.equal(alone.has("X-systemd-skip"), false);
  assert.equal(alone.has("X-GNOME-HiddenUnderSystemd"), false);
  for (const [k, v] of e) assert.equal(v.length, 1, `${k} once`);
});

Deno.test("Exec quoting follows the Desktop Entry Specification and round-trips", () => {
  const argv = ["/opt/my agent/run", "100%", 'say "hi"', "back\\slash", "$HOME", "`x`", "", "a'b"];
  const exec = desktopExec(argv);
  assert.equal(exec.split(" ")[0], '"/opt/my');
  assert.match(exec, / 100%% /);
  assert.deepEqual(parseDesktopExec(exec), argv);
  assert.equal(desktopExec(["/usr/bin/x", "--vt=8"]), "/usr/bin/x --vt=8");
});

Deno.test("the user unit is part of the graphical session and is not restarted when the name is taken", () => {
  const unit = agentUserUnit({ exec: [LAUNCHER, "--vt=8"], vt: 8 });
  const u = section(unit, "Unit");
  assert.deepEqual(u.get("PartOf"), ["graphical-session.target"]);
  assert.deepEqual(u.get("After"), ["graphical-session.target"]);
  assert.match(u.get("Description")![0], /VT 8/);
  const s = section(unit, "Service");
  assert.deepEqual(s.get("ExecStart"), [`"${LAUNCHER}" "--vt=8"`]);
  assert.deepEqual(s.get("Restart"), ["on-failure"]);
  assert.deepEqual(s.get("RestartPreventExitStatus")![0].split(" ").map(Number).sort(), [2, 3]);
  assert.equal(AGENT_EXIT_NAME_TAKEN, EXIT_NAME_TAKEN, "the unit knows the agent's exit status");
  assert.deepEqual(s.get("NoNewPrivileges"), ["yes"]);
  assert.deepEqual(s.get("RestrictAddressFamilies"), ["AF_UNIX"]);
  assert.match(s.get("UnsetEnvironment")![0], /\bNODE_OPTIONS\b/);
  assert.deepEqual(section(unit, "Install").get("WantedBy"), ["graphical-session.target"]);
  assert.equal(
    systemdExec(["/a b/c", '"q"', "50%", "$X", "back\\slash"]),
    String.raw`"/a b/c" "\"q\"" "50%%" "$$X" "back\\slash"`,
  );
});

Deno.test("bad input is refused: relative program, control characters, VT out of range", () => {
  assert.throws(() => agentUserUnit({ exec: ["agent"], vt: 8 }), /absolute path/);
  assert.throws(() => agentAutostartEntry({ exec: [], vt: 8 }), /absolute path/);
  assert.throws(
    () => agentAutostartEntry({ exec: [LAUNCHER, "a\nExec=/bin/evil"], vt: 8 }),
    /control character/,
  );
  assert.throws(() => agentUserUnit({ exec: [LAUNCHER], vt: 0 }), /VT must be/);
});

Deno.test("systemd-analyze verifies the user unit without a warning", async () => {
  const which = await new Deno.Command("sh", { args: ["-c", "command -v systemd-analyze"] })
    .output();
  if (!which.success) {
    console.log("SKIPPED: systemd-analyze is not installed");
    return;
  }
  const dir = await Deno.makeTempDir({ prefix: "sd-units-" });
  try {
    await Deno.mkdir(`${dir}/run`, { mode: 0o700 });
    const file = `${dir}/secrets-dispatcher-agent.service`;
    // ExecStart must name an existing program for verify: /usr/bin/true stands in.
    await Deno.writeTextFile(file, agentUserUnit({ exec: ["/usr/bin/true", "--vt=8"], vt: 8 }));
    const out = await new Deno.Command("systemd-analyze", {
      args: ["--user", "verify", file],
      env: { XDG_RUNTIME_DIR: `${dir}/run` },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, text);
    assert.equal(text.trim(), "", "no warning");
    // A typo is noticed by the same check (the check can fail).
    await Deno.writeTextFile(
      file,
      agentUserUnit({ exec: ["/usr/bin/true"], vt: 8 }).replace("PartOf=", "PartOff="),
    );
    const bad = await new Deno.Command("systemd-analyze", {
      args: ["--user", "verify", file],
      env: { XDG_RUNTIME_DIR: `${dir}/run` },
      stderr: "piped",
    }).output();
    assert.match(new TextDecoder().decode(bad.stderr), /Unknown key 'PartOff'/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
