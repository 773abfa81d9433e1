/**
 * The end-to-end scenario, run as root inside the VM by `sd-e2e.service` (see ../image.ts) with
 * the host's shared folder as its only argument. Every step asserts what a user would see; the
 * first failing step records its evidence and ends the run (later steps build on it). Results
 * go to `<share>/steps.jsonl` (../results.ts); `<share>/finished` marks a run that got through.
 *
 * The people: alice (uid 1000, desktop user, logs in on tty2 with her password typed on a
 * virtual keyboard), bob (uid 1001, another user), secrets-alice (the companion, made by
 * provisioning). Commands "in alice's session" are typed into her login shell on tty2 with
 * TIOCSTI, so they run inside her logind session like anything she starts herself.
 *
 * @module
 */

import { exec } from "../../../dev/exec.ts";
import type { StepResult } from "../results.ts";

const SHARE = Deno.args[0] ?? "/mnt/host";
const SOURCE = "/opt/secrets-dispatcher";
const SEED = "/var/cache/secrets-dispatcher-e2e/deno-dir";
const INPUT = `${SOURCE}/tests/e2e_vm/guest/input.py`;
const ALICE = { name: "alice", uid: 1000, home: "/home/alice" };
const BOB = { name: "bob", uid: 1001 };
const COMPANION = "secrets-alice";
/** Typed on the keyboard at the login prompt: letters and dashes only (input.py's map). */
const ALICE_PASSWORD = "correct-horse-e2e-login";
const GNUPGHOME = "/var/lib/secrets-dispatcher/alice/gnupg";
const OUT = `${ALICE.home}/e2e`;
const UNITS = ["bus", "backend", "daemon", "console"].map((u) =>
  `secrets-dispatcher-${u}@alice.service`
);
const CONSOLE_UNIT = "secrets-dispatcher-console@alice.service";
const DAEMON_UNIT = "secrets-dispatcher-daemon@alice.service";
const COMPANION_TARGET = "secrets-dispatcher-companion@alice.target";
const DISPATCHER = `org.secretsdispatcher.Dispatcher1.u${ALICE.uid}`;
const SECRET = "hunter2-from-the-vm";
/** The commit subject: escape sequences that would clear the screen, move the cursor, retitle. */
const HOSTILE_SUBJECT = "e2e hostile \x1b[2J\x1b[H\x1b[32mAPPROVED\x1b]2;pwned\x07 \u202eevil";

class StepFailure extends Error {}

const bootAt = performance.now();
const up = () => ((performance.now() - bootAt) / 1000).toFixed(1);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function say(line: string): void {
  console.log(`[${up()}] ${line}`);
}

/** Runs argv; returns code and combined output. */
async function run(
  argv: string[],
  options: {
    stdin?: string;
    timeoutMs?: number;
    env?: Record<string, string>;
    cwd?: string;
  } = {},
) {
  const r = await exec(argv[0], argv.slice(1), {
    cwd: options.cwd,
    stdin: options.stdin,
    timeoutMs: options.timeoutMs ?? 120_000,
    env: options.env,
    inheritEnv: true,
  });
  return { code: r.code, out: (r.stdout + r.stderr).trim() };
}

/** Runs argv and fails the step unless it exits 0. */
async function must(argv: string[], options: Parameters<typeof run>[1] = {}): Promise<string> {
  const r = await run(argv, options);
  if (r.code !== 0) {
    throw new StepFailure(`${argv.join(" ")} exited ${r.code}: ${r.out.slice(-1500)}`);
  }
  return r.out;
}

const sh = (script: string, options: Parameters<typeof run>[1] = {}) =>
  run(["/bin/sh", "-c", script], options);

function check(cond: boolean, message: string): asserts cond {
  if (!cond) throw new StepFailure(message);
}

/** Polls `probe` every 250 ms until it returns a truthy value or `ms` passes. */
async function waitFor<T>(
  what: string,
  ms: number,
  probe: () => Promise<T | null | undefined | false>,
): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v) return v as T;
    if (Date.now() > end) {
      throw new StepFailure(`timed out after ${ms / 1000} s waiting for ${what}`);
    }
    await sleep(250);
  }
}

/** The foreground VT number. */
async function fg(): Promise<number> {
  return Number((await run(["fgconsole"])).out);
}

/** The text on VT `n` (from /dev/vcsa<n>: rows, cols, cursor, then char/attribute pairs). */
async function screen(n = 8): Promise<string> {
  const r = await exec("cat", [`/dev/vcsa${n}`]);
  const b = r.stdoutBytes;
  if (b.length < 4) return "";
  const [rows, cols] = [b[0], b[1]];
  const lines: string[] = [];
  for (let y = 0; y < rows; y++) {
    let l = "";
    for (let x = 0; x < cols; x++) l += String.fromCharCode(b[4 + 2 * (y * cols + x)] ?? 32);
    lines.push(l.trimEnd());
  }
  while (lines.length && lines[lines.length - 1] === "") lines.pop();
  return lines.join("\n");
}

async function keys(...combos: string[]): Promise<void> {
  await must(["/usr/bin/python3", INPUT, "keys", ...combos]);
}

async function typeKeys(text: string): Promise<void> {
  await must(["/usr/bin/python3", INPUT, "type", text]);
}

/**
 * Runs `command` in alice's login shell on tty2 (typed there with TIOCSTI), in the background
 * so her shell stays free; its output goes to `~/e2e/<name>.out`, its exit code to `.rc`.
 */
async function inSession(name: string, command: string): Promise<void> {
  await Deno.remove(`${OUT}/${name}.rc`).catch(() => {});
  const line =
    `{ ( ${command} ) > ${OUT}/${name}.out 2>&1 < /dev/null; echo $? > ${OUT}/${name}.rc; } &\n`;
  await must(["/usr/bin/python3", INPUT, "sti", "/dev/tty2", line]);
}

/** Waits for a command started with {@link inSession}; returns its exit code and output. */
async function sessionResult(name: string, ms = 60_000): Promise<{ code: number; out: string }> {
  const rc = await waitFor(`"${name}" in alice's session to finish`, ms, async () => {
    try {
      const t = (await Deno.readTextFile(`${OUT}/${name}.rc`)).trim();
      return t === "" ? null : t;
    } catch {
      return null;
    }
  });
  const out = await Deno.readTextFile(`${OUT}/${name}.out`).catch(() => "");
  return { code: Number(rc), out: out.trim() };
}

async function unitActive(unit: string): Promise<boolean> {
  return (await run(["systemctl", "is-active", "--quiet", unit])).code === 0;
}

async function journal(units: string[], lines = 60): Promise<string> {
  const r = await run([
    "journalctl",
    "-b",
    "--no-pager",
    "-o",
    "short-monotonic",
    "-n",
    String(lines),
    ...units.flatMap((u) => ["-u", u]),
  ]);
  return r.out;
}

/** `Dispatcher1.StoreStatus` called as `user` on the system bus: busctl's output. */
async function storeStatus(user: string): Promise<string> {
  const r = await run([
    "runuser",
    "-u",
    user,
    "--",
    "busctl",
    "--system",
    "call",
    DISPATCHER,
    "/org/secretsdispatcher/Dispatcher1",
    "org.secretsdispatcher.Dispatcher1",
    "StoreStatus",
  ]);
  return r.code === 0 ? r.out : `(exit ${r.code}) ${r.out}`;
}

/** Waits for a pending request on VT 8 in front; returns the screen. */
async function requestOnScreen(what: string, ms = 60_000): Promise<string> {
  await waitFor(`VT 8 in front (${what})`, ms, async () => (await fg()) === 8);
  return await waitFor(`${what} on VT 8`, ms, async () => {
    const s = await screen();
    return /\b[1-9]\d* pending/.test(s) ? s : null;
  });
}

/** Opens the selected request (Enter), reads its approval code off VT 8 and types it. */
async function approveOnConsole(): Promise<string> {
  await sleep(1000); // past the console's arming delay for new content
  await keys("enter");
  const s = await waitFor("the request's detail with its approval code", 30_000, async () => {
    const t = await screen();
    return /approve: type ([A-Z]) ([A-Z]) ([A-Z])/.test(t) ? t : null;
  });
  const code = s.match(/approve: type ([A-Z]) ([A-Z]) ([A-Z])/)!.slice(1).join("");
  await sleep(1000);
  await typeKeys(code);
  return code;
}

const results: StepResult[] = [];
let failed = false;

/** Runs one step; on failure records the evidence and stops the scenario. */
async function step(name: string, body: () => Promise<string>): Promise<void> {
  if (failed) return;
  const t0 = performance.now();
  say(`STEP ${name}`);
  let r: StepResult;
  try {
    const detail = await body();
    r = { name, ok: true, seconds: (performance.now() - t0) / 1000, detail };
  } catch (err) {
    failed = true;
    const e = err as Error;
    r = {
      name,
      ok: false,
      seconds: (performance.now() - t0) / 1000,
      detail: e instanceof StepFailure ? e.message : `${e.name}: ${e.message}\n${e.stack}`,
      evidence: {
        "VT 8 (/dev/vcs8)": await screen().catch((x) => String(x)),
        "foreground VT": String(await fg().catch(() => "?")),
        "units": (await run(["systemctl", "--no-pager", "list-units", "secrets-dispatcher*"]))
          .out,
        "journal of the companion units": await journal([
          ...UNITS,
          "secrets-dispatcher-unlock-alice@*",
        ]),
      },
    };
  }
  say(`${r.ok ? "PASS" : "FAIL"} ${name}: ${r.detail.split("\n")[0]}`);
  results.push(r);
  await Deno.writeTextFile(`${SHARE}/steps.jsonl`, JSON.stringify(r) + "\n", { append: true });
}

async function provision(...args: string[]) {
  return await run(
    [
      "deno",
      "task",
      "--quiet",
      "provision",
      ...args,
    ],
    { timeoutMs: 600_000, env: { DENO_DIR: SEED, NO_COLOR: "1" }, cwd: SOURCE },
  );
}

/** Asks the screenshot of the display from the host (see ../qemu.ts); returns its answer. */
async function screenshot(name: string): Promise<string> {
  await Deno.remove(`${SHARE}/screendump.done`).catch(() => {});
  await Deno.writeTextFile(`${SHARE}/screendump.request`, `${name}\n`);
  return await waitFor("the host's screenshot", 30_000, async () => {
    try {
      return (await Deno.readTextFile(`${SHARE}/screendump.done`)).trim() || null;
    } catch {
      return null;
    }
  });
}

async function scenario(): Promise<void> {
  await step("the VM booted with systemd, logind and the VT layer", async () => {
    await must(["modprobe", "uinput"]);
    // This unit is itself a boot job, so the system counts as "starting" until it ends.
    for (const u of ["multi-user.target", "systemd-logind.service", "dbus.service"]) {
      check(await unitActive(u), `${u} is not active`);
    }
    const state = { out: "multi-user.target reached" };
    const failedUnits = (await run(["systemctl", "--failed", "--no-legend", "--plain"])).out;
    await must(["useradd", "-m", "-u", String(ALICE.uid), "-s", "/bin/bash", ALICE.name]);
    await must(["chpasswd"], { stdin: `${ALICE.name}:${ALICE_PASSWORD}\n` });
    await must(["useradd", "-m", "-u", String(BOB.uid), "-s", "/bin/bash", BOB.name]);
    return `systemd ${state.out}${failedUnits ? ` (failed: ${failedUnits})` : ""}, ` +
      `kernel ${(await run(["uname", "-r"])).out}, fg VT ${await fg()}`;
  });

  await step("provision --user alice, then --check is all PASS", async () => {
    const p = await provision("--user", "alice", "--deno-dir-from", SEED);
    check(p.code === 0, `provision exited ${p.code}:\n${p.out.slice(-3000)}`);
    const c = await provision("--user", "alice", "--check");
    await Deno.writeTextFile(`${SHARE}/provision-check.txt`, c.out + "\n");
    const lines = c.out.split("\n");
    const notPass = lines.filter((l) => /^(FAIL|SKIP|MANUAL)/.test(l));
    check(c.code === 0 && notPass.length === 0, `--check exited ${c.code}:\n${c.out}`);
    const pass = lines.filter((l) => l.startsWith("PASS")).length;
    check(pass > 30, `only ${pass} PASS lines:\n${c.out}`);
    return `${pass} items PASS`;
  });

  await step("the companion's GPG key; alice's repository and git identity", async () => {
    const gpg = (args: string[]) =>
      must(["runuser", "-u", COMPANION, "--", "env", `GNUPGHOME=${GNUPGHOME}`, "gpg", ...args]);
    await gpg([
      "--batch",
      "--passphrase",
      "",
      "--quick-gen-key",
      "Alice Example <alice@example.org>",
      "ed25519",
      "sign",
      "never",
    ]);
    const fpr = (await gpg(["--with-colons", "--list-secret-keys"])).split("\n").find((l) =>
      l.startsWith("fpr:")
    )!.split(":")[9];
    const pub = await gpg(["--armor", "--export", fpr]);
    await run([
      "runuser",
      "-u",
      COMPANION,
      "--",
      "env",
      `GNUPGHOME=${GNUPGHOME}`,
      "gpgconf",
      "--kill",
      "all",
    ]);
    const asAlice = (args: string[], stdin?: string) =>
      must(["runuser", "-u", ALICE.name, "--", "env", `HOME=${ALICE.home}`, ...args], { stdin });
    await asAlice(["gpg", "--batch", "--import"], pub);
    await asAlice(["mkdir", "-p", `${ALICE.home}/repo`, OUT]);
    await asAlice(["git", "-C", `${ALICE.home}/repo`, "init", "-q", "-b", "main"]);
    for (
      const [k, v] of [["user.name", "Alice Example"], ["user.email", "alice@example.org"], [
        "user.signingkey",
        fpr,
      ]]
    ) {
      await asAlice(["git", "config", "--global", k, v]);
    }
    await asAlice([
      "sh",
      "-c",
      `echo hello > ${ALICE.home}/repo/README && git -C ${ALICE.home}/repo add README`,
    ]);
    await Deno.writeTextFile(`${OUT}/message`, `${HOSTILE_SUBJECT}\n\nbody line\n`);
    const prog = await asAlice(["git", "config", "--global", "gpg.program"]);
    check(prog.includes("secrets-dispatcher-gpg"), `gpg.program is ${prog}`);
    return `key ${fpr}; alice's gpg.program ${prog}`;
  });

  await step("before alice logs in, no companion unit runs", async () => {
    for (const u of UNITS) check(!(await unitActive(u)), `${u} is active before any login`);
    check(!(await unitActive(`user@${ALICE.uid}.service`)), "alice's user manager runs already");
    return `${UNITS.length} units inactive`;
  });

  await step(
    "alice logs in on tty2 with her password (PAM, logind); the companion starts",
    async () => {
      await must(["systemctl", "start", "getty@tty2.service"]);
      await must(["chvt", "2"]);
      await waitFor(
        "the login prompt on tty2",
        60_000,
        async () => /login:\s*$/m.test(await screen(2)),
      );
      await typeKeys(`${ALICE.name}\n`);
      await waitFor(
        "the password prompt on tty2",
        30_000,
        async () => /Password:\s*$/m.test(await screen(2)),
      );
      const t0 = performance.now();
      await typeKeys(`${ALICE_PASSWORD}\n`);
      const session = await waitFor("alice's logind session", 60_000, async () => {
        const l = (await run(["loginctl", "list-sessions", "--no-legend"])).out.split("\n");
        return l.find((x) => x.includes(" alice "))?.trim().split(/\s+/)[0] ?? null;
      });
      const props = (await must([
        "loginctl",
        "show-session",
        session,
        "-p",
        "TTY",
        "-p",
        "Type",
        "-p",
        "Active",
        "-p",
        "Service",
      ])).replace(/\n/g, " ");
      check(
        /TTY=tty2/.test(props) && /Service=login/.test(props) && /Active=yes/.test(props),
        props,
      );
      for (const u of UNITS) {
        await waitFor(`${u} active`, 90_000, () => unitActive(u));
      }
      const started = ((performance.now() - t0) / 1000).toFixed(1);
      await waitFor("her shell prompt", 30_000, async () => /\$\s*$/m.test(await screen(2)));
      await must(["chown", `${ALICE.name}:${ALICE.name}`, `${OUT}/message`]);
      return `session ${session} (${props}); companion units active ${started} s after the password`;
    },
  );

  await step("her login password reached the companion and unlocked the store", async () => {
    const status = await waitFor("the store unlocked", 120_000, async () => {
      const r = await storeStatus(ALICE.name);
      // Unlocked, and through her login keyring: gnome-keyring's in-memory "session" collection
      // is unlocked from the start and does not count.
      return /"unlocked" .*default collection .*collection\/login\) is unlocked/i.test(r)
        ? r
        : null;
    });
    const j = await journal(["secrets-dispatcher-unlock-alice@*"], 200);
    check(/store unlocked/.test(j), `no "store unlocked" from the hand-off:\n${j}`);
    const all = (await run(["journalctl", "-b", "--no-pager", "-o", "cat"])).out;
    check(!all.includes(ALICE_PASSWORD), "the login password appears in the journal");
    return `StoreStatus ${status}; the password is nowhere in the journal`;
  });

  await step("the agent runs in alice's session and owns org.freedesktop.secrets", async () => {
    await inSession("agent", "systemctl --user start secrets-dispatcher-agent.service");
    const r = await sessionResult("agent");
    check(r.code === 0, `systemctl --user start exited ${r.code}: ${r.out}`);
    await waitFor("org.freedesktop.secrets on alice's session bus", 60_000, async () =>
      (await run([
        "runuser",
        "-u",
        ALICE.name,
        "--",
        "env",
        `DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/${ALICE.uid}/bus`,
        "busctl",
        "--user",
        "status",
        "org.freedesktop.secrets",
      ])).code === 0);
    return "agent unit active, name owned";
  });

  let commitScreen = "";
  await step("git commit -S: VT 8 comes to the front showing the commit", async () => {
    await inSession("commit", `cd ~/repo && git commit -S -F ${OUT}/message`);
    commitScreen = await requestOnScreen("the commit's signing request");
    return `VT 8 in front:\n${commitScreen}`;
  });

  await step("while the request is pending, nothing switches away from VT 8", async () => {
    const tries: string[] = [];
    await keys("alt+f2");
    await sleep(1000);
    tries.push(`Alt+F2 -> ${await fg()}`);
    await keys("ctrl+alt+f3");
    await sleep(1000);
    tries.push(`Ctrl+Alt+F3 -> ${await fg()}`);
    const c = await run(["chvt", "2"], { timeoutMs: 5_000 });
    tries.push(`root chvt 2 (exit ${c.code}) -> ${await fg()}`);
    await inSession("loginctl", "loginctl activate");
    const l = await sessionResult("loginctl", 30_000);
    await sleep(1000);
    tries.push(`alice's loginctl activate (exit ${l.code}) -> ${await fg()}`);
    await inSession(
      "switchto",
      "busctl call org.freedesktop.login1 /org/freedesktop/login1/seat/seat0 org.freedesktop.login1.Seat SwitchTo u 2",
    );
    const s = await sessionResult("switchto", 30_000);
    await sleep(1000);
    tries.push(`alice's logind Seat.SwitchTo(2) (exit ${s.code}) -> ${await fg()}`);
    check(tries.every((t) => t.endsWith("-> 8")), tries.join("; "));
    return tries.join("; ");
  });

  await step("the hostile commit message is shown inert on VT 8", async () => {
    await sleep(1000);
    await keys("enter");
    const s = await waitFor("the commit's detail", 30_000, async () => {
      const t = await screen();
      return /approve: type/.test(t) && /\\x1b\[2J/.test(t) ? t : null;
    });
    check(!/^\s*APPROVED/m.test(s), "an APPROVED line made it to the screen start");
    check(/\\u\{202e\}evil/.test(s), `the bidi override is not shown escaped:\n${s}`);
    check(/REQUEST /.test(s), "the console's header is gone (screen cleared?)");
    const shot = await screenshot("vt8-pending-request.png");
    check(shot === "ok", `screenshot: ${shot}`);
    return `escapes shown as text; screenshot ${shot}\n${s}`;
  });

  await step("typing the on-screen approval code approves; the commit verifies", async () => {
    const s = await screen();
    const code = s.match(/approve: type ([A-Z]) ([A-Z]) ([A-Z])/)!.slice(1).join("");
    await sleep(800);
    await typeKeys(code);
    const r = await sessionResult("commit", 120_000);
    check(r.code === 0, `git commit exited ${r.code}: ${r.out}`);
    const back = await waitFor("VT 2 back in front", 30_000, async () => (await fg()) === 2);
    const v = await run([
      "runuser",
      "-u",
      ALICE.name,
      "--",
      "env",
      `HOME=${ALICE.home}`,
      "git",
      "-C",
      `${ALICE.home}/repo`,
      "verify-commit",
      "HEAD",
    ]);
    check(v.code === 0 && /Good signature/.test(v.out), `verify-commit exited ${v.code}: ${v.out}`);
    return `code ${code}; VT back to 2 (${back}); ${v.out.split("\n").find((l) => /Good/.test(l))}`;
  });

  await step("secret-tool store, approved on VT 8", async () => {
    await inSession(
      "store",
      `printf %s '${SECRET}' | secret-tool store --label='e2e secret' service e2e-vm user alice`,
    );
    await requestOnScreen("the store request");
    const code = await approveOnConsole();
    const r = await sessionResult("store", 120_000);
    check(r.code === 0, `secret-tool store exited ${r.code}: ${r.out}`);
    await waitFor("VT 2 back in front", 30_000, async () => (await fg()) === 2);
    return `stored (code ${code})`;
  });

  await step("secret-tool lookup, approved on VT 8, returns the secret", async () => {
    await inSession("lookup", "secret-tool lookup service e2e-vm user alice");
    await requestOnScreen("the lookup request");
    const code = await approveOnConsole();
    const r = await sessionResult("lookup", 120_000);
    check(
      r.code === 0 && r.out === SECRET,
      `lookup exited ${r.code}, printed ${JSON.stringify(r.out)}`,
    );
    return `the secret came back (code ${code})`;
  });

  await step("a second lookup denied with one key returns nothing", async () => {
    await inSession("lookup2", "secret-tool lookup service e2e-vm user alice");
    await requestOnScreen("the second lookup request");
    await sleep(1000);
    await keys("d");
    const r = await sessionResult("lookup2", 120_000);
    check(
      r.code !== 0 && !r.out.includes(SECRET),
      `lookup exited ${r.code}, printed ${JSON.stringify(r.out)}`,
    );
    await waitFor("VT 2 back in front", 30_000, async () => (await fg()) === 2);
    return `exit ${r.code}, output ${JSON.stringify(r.out)}`;
  });

  await step("Alt+SysRq+K on VT 8 during a request: the console comes back", async () => {
    await inSession("lookup3", "secret-tool lookup service e2e-vm user alice");
    await requestOnScreen("a third lookup request");
    const pid = (await must(["systemctl", "show", "-p", "MainPID", "--value", CONSOLE_UNIT]))
      .trim();
    await keys("alt+sysrq+k");
    await waitFor("a new console process", 60_000, async () => {
      const p = (await run(["systemctl", "show", "-p", "MainPID", "--value", CONSOLE_UNIT])).out;
      return p !== pid && p !== "0" && (await unitActive(CONSOLE_UNIT));
    });
    // Still pending: the new console shows it (and takes the front); or it ended cleanly.
    const outcome = await waitFor("the request shown again or ended", 60_000, async () => {
      try {
        const rc = (await Deno.readTextFile(`${OUT}/lookup3.rc`)).trim();
        if (rc !== "") return `ended (exit ${rc})`;
      } catch { /* pending */ }
      const s = await screen();
      return (await fg()) === 8 && /\b[1-9]\d* pending/.test(s) ? "shown again" : null;
    });
    if (outcome === "shown again") {
      await sleep(1000);
      await keys("d");
    }
    const r = await sessionResult("lookup3", 120_000);
    check(!r.out.includes(SECRET), "the secret came back without an approval");
    // The restarted console does not know which VT it was called from; with nothing pending the
    // VT is free again: the keyboard's Alt+F2 goes back.
    await sleep(1500);
    let back = "the console returned to VT 2";
    if ((await fg()) !== 2) {
      await keys("alt+f2");
      await waitFor("VT 2 in front after Alt+F2", 15_000, async () => (await fg()) === 2);
      back = "VT 8 stayed in front; Alt+F2 (nothing pending) returned to VT 2";
    }
    return `console pid ${pid} -> new; request ${outcome}; lookup exit ${r.code}: ` +
      `${JSON.stringify(r.out)}; ${back}`;
  });

  await step(
    "bob cannot reach alice's dispatcher; alice cannot read the companion's home",
    async () => {
      const bob = await storeStatus(BOB.name);
      check(/^\(exit [1-9]/.test(bob) && /denied|AccessDenied/i.test(bob), `bob: ${bob}`);
      const alice = await storeStatus(ALICE.name);
      check(!alice.startsWith("(exit"), `alice (control): ${alice}`);
      const own = await run([
        "runuser",
        "-u",
        BOB.name,
        "--",
        "busctl",
        "--system",
        "call",
        "org.freedesktop.DBus",
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "RequestName",
        "su",
        DISPATCHER,
        "4",
      ]);
      check(own.code !== 0, `bob could own the name: ${own.out}`);
      const ls = await run([
        "runuser",
        "-u",
        ALICE.name,
        "--",
        "ls",
        "/var/lib/secrets-dispatcher/alice",
      ]);
      check(
        ls.code !== 0 && /Permission denied/.test(ls.out),
        `alice: ls exit ${ls.code}: ${ls.out}`,
      );
      return `bob: ${bob.split("\n")[0]}; alice's ls: ${ls.out}`;
    },
  );

  await step("the console's lock (L, y) stops the whole companion", async () => {
    await must(["chvt", "8"]);
    await waitFor("VT 8 in front", 15_000, async () => (await fg()) === 8);
    await sleep(1200);
    await keys("shift+l");
    await waitFor(
      "the lock's confirmation on VT 8",
      20_000,
      async () => /LOCK:/.test(await screen()),
    );
    await sleep(1200);
    await keys("y");
    await waitFor("the companion target and its units inactive", 60_000, async () => {
      for (const u of [COMPANION_TARGET, ...UNITS]) if (await unitActive(u)) return false;
      return true;
    });
    const left = (await run(["pgrep", "-u", COMPANION, "-l"])).out;
    check(left === "", `processes of ${COMPANION} still run: ${left}`);
    const j = await journal([DAEMON_UNIT], 40);
    check(j.includes(`lock: stopping ${COMPANION_TARGET}`), `the daemon did not stop it:\n${j}`);
    await must(["chvt", "2"]);
    await inSession("lookup4", "secret-tool lookup service e2e-vm user alice");
    const r = await sessionResult("lookup4", 60_000);
    check(r.code !== 0 && !r.out.includes(SECRET), `lookup: exit ${r.code}: ${r.out}`);
    return `all stopped, no ${COMPANION} process left; a lookup now: exit ${r.code}, ` +
      JSON.stringify(r.out);
  });

  await step(
    "alice starts the companion again; the console asks for the store passphrase",
    async () => {
      await inSession("restart", `systemctl start ${COMPANION_TARGET}`);
      const r = await sessionResult("restart", 90_000);
      check(r.code === 0, `alice's systemctl start: exit ${r.code}: ${r.out}`);
      for (const u of UNITS) await waitFor(`${u} active`, 90_000, () => unitActive(u));
      const locked = await waitFor("StoreStatus locked", 90_000, async () => {
        const s = await storeStatus(ALICE.name);
        return /"locked"/.test(s) ? s : null;
      });
      await must(["chvt", "8"]);
      await waitFor(
        "the passphrase prompt on VT 8",
        60_000,
        async () => /unlock the secret store/i.test(await screen()),
      );
      await sleep(1200);
      await typeKeys(`${ALICE_PASSWORD}\n`);
      const open = await waitFor("StoreStatus unlocked", 60_000, async () => {
        const s = await storeStatus(ALICE.name);
        return /"unlocked"/.test(s) ? s : null;
      });
      const shown = await screen();
      check(!shown.includes(ALICE_PASSWORD), "the passphrase is on the screen");
      await must(["chvt", "2"]);
      await inSession("lookup5", "secret-tool lookup service e2e-vm user alice");
      await requestOnScreen("a lookup after the restart");
      await approveOnConsole();
      const l = await sessionResult("lookup5", 120_000);
      check(l.code === 0 && l.out === SECRET, `lookup: exit ${l.code}: ${l.out}`);
      await waitFor("VT 2 back in front", 30_000, async () => (await fg()) === 2);
      return `${locked} -> passphrase typed on VT 8 -> ${open}; the secret comes back`;
    },
  );

  await step("alice logs out: the companion units stop within 15 s", async () => {
    await Deno.remove(`${OUT}/exit.rc`).catch(() => {});
    const t0 = performance.now();
    await must(["/usr/bin/python3", INPUT, "sti", "/dev/tty2", "exit\n"]);
    await waitFor("every companion unit inactive", 60_000, async () => {
      for (const u of UNITS) if (await unitActive(u)) return false;
      return true;
    });
    const s = (performance.now() - t0) / 1000;
    check(s <= 15, `the companion stopped ${s.toFixed(1)} s after logout (limit 15 s)`);
    return `stopped ${s.toFixed(1)} s after "exit"`;
  });

  await step("provision --uninstall leaves no user, unit, policy or PAM profile", async () => {
    const u = await provision("--user", "alice", "--uninstall");
    check(u.code === 0, `--uninstall exited ${u.code}:\n${u.out.slice(-3000)}`);
    const left: string[] = [];
    if ((await run(["getent", "passwd", COMPANION])).code === 0) left.push(`user ${COMPANION}`);
    const found = (await sh(
      "find /etc/systemd /etc/dbus-1 /etc/polkit-1 /usr/share/pam-configs /etc/tmpfiles.d /etc/secrets-dispatcher /usr/local/lib/secrets-dispatcher /run/secrets-dispatcher -name '*secrets*' 2>/dev/null; grep -l pam-unlock /etc/pam.d/* 2>/dev/null; true",
    )).out;
    if (found) left.push(found);
    const prog = await run([
      "runuser",
      "-u",
      ALICE.name,
      "--",
      "env",
      `HOME=${ALICE.home}`,
      "git",
      "config",
      "--global",
      "gpg.program",
    ]);
    if (prog.code === 0) left.push(`alice's gpg.program ${prog.out}`);
    check(left.length === 0, `left behind: ${left.join("; ")}`);
    const store = await must(["stat", "-c", "%U %a", "/var/lib/secrets-dispatcher/alice"]);
    return `nothing left; the store is kept (${store})`;
  });
}

await Deno.writeTextFile(`${SHARE}/steps.jsonl`, "");
try {
  await scenario();
} catch (err) {
  say(`scenario crashed: ${(err as Error).stack}`);
  const r = { name: "the scenario itself", ok: false, seconds: 0, detail: String(err) };
  await Deno.writeTextFile(`${SHARE}/steps.jsonl`, JSON.stringify(r) + "\n", { append: true });
}
await Deno.writeTextFile(`${SHARE}/finished`, `${results.length} steps\n`);
say(
  `done: ${results.filter((r) => r.ok).length} passed, ${
    results.filter((r) => !r.ok).length
  } failed`,
);
