/**
 * `deno task demo [--headless]`: the whole stack as the current user in `.demo/` (or
 * `$SD_DEMO_DIR`): a system-like bus with the real policy, the companion bus, a companion GnuPG
 * home with a fresh key, gnome-keyring (unlocked with a demo password) on the companion bus, the
 * daemon, a private desktop session bus with the agent serving `org.freedesktop.secrets`, a ready
 * repository whose `gpg.program` is the signer, and the console in the foreground (DESIGN.md §10).
 * `--headless` runs no console and prints `ready` once everything answers. Ctrl-C or SIGTERM
 * stops everything it started. Each start empties the directory: it must be new, empty or a
 * demo's, and a second demo in it is refused (`dev/demo_dir.ts`).
 *
 * The desktop bus has a small recording notification server standing in for the desktop's: the
 * agent's notifications ("approve on VT 8", "the daemon is not running") are written to
 * `.demo/notifications.log` (`tail -f` it in a second terminal), and with `--headless` also to
 * stdout (the console owns the terminal otherwise).
 *
 * @module
 */

import { generatePhrase, PHRASE_ENV } from "../console/phrase.ts";
import { denoArgs } from "../deploy/permissions.ts";
import { claimDemoDir, shellQuote as q } from "./demo_dir.ts";
import { ROOT, run } from "./harness.ts";
import type { NotificationEvent } from "./notification_server.ts";
import { type SecretStack, secretStack } from "./secret_stack.ts";

/** One line for the notification log: what the desktop would show, or what happened to it. */
export function notificationLine(e: NotificationEvent): string {
  const time = new Date().toTimeString().slice(0, 8);
  switch (e.type) {
    case "notify": {
      const c = e.call;
      const actions = c.actions.filter((_, i) => i % 2 === 1);
      return `${time} notification #${c.id}${c.replacesId ? " (updated)" : ""}: ${c.summary}` +
        ` | ${c.body.replaceAll("\n", " | ")}` +
        (actions.length ? ` [${actions.join("] [")}]` : "");
    }
    case "close":
      return `${time} notification #${e.id} closed by the agent`;
    case "closed":
      return e.reason === 2 ? `${time} notification #${e.id} dismissed` : "";
    case "action":
      return `${time} notification #${e.id}: "${e.key}" clicked`;
  }
}

async function main(args: string[]): Promise<number> {
  const headless = args.includes("--headless");
  const unknown = args.filter((a) => a !== "--headless");
  if (unknown.length) {
    console.error(`usage: deno task demo [--headless]   (unknown: ${unknown.join(" ")})`);
    return 2;
  }
  const dir = Deno.env.get("SD_DEMO_DIR") || `${ROOT}/.demo`;
  // Locked (a second demo here is refused) before anything in it is deleted; held until exit.
  let lock: Deno.FsFile;
  try {
    lock = await claimDemoDir(dir);
  } catch (err) {
    console.error(`demo: ${err instanceof Error ? err.message : err}`);
    return 1;
  }
  const realDir = await Deno.realPath(dir);
  const say = (s: string) => console.log(s);
  const stopped = Promise.withResolvers<void>();
  Deno.addSignalListener("SIGINT", () => stopped.resolve());
  Deno.addSignalListener("SIGTERM", () => stopped.resolve());
  let s: SecretStack | undefined;
  let unwatch = () => {};
  try {
    say(`secrets-dispatcher demo in ${realDir} (uid ${Deno.uid()})`);
    const notificationLog = `${realDir}/notifications.log`;
    await Deno.writeTextFile(notificationLog, "");
    s = await secretStack({
      dir: realDir,
      onNotification: (e) => {
        const line = notificationLine(e);
        if (!line) return;
        Deno.writeTextFileSync(notificationLog, `${line}\n`, { append: true });
        if (headless) console.log(line);
      },
    });
    const { systemBus, companionBus, userGnupg } = s;
    const repo = await s.repo("repo");
    await Deno.writeTextFile(`${repo}/README`, "a demo repository\n");
    // The per-install console phrase (provisioning makes the real one): readable only by us.
    const phraseFile = `${realDir}/console-phrase`;
    await Deno.writeTextFile(phraseFile, generatePhrase() + "\n", { mode: 0o600 });
    await Deno.chmod(phraseFile, 0o600);
    await run("git", ["-C", repo, "add", "README"]);

    const env = [
      `export DBUS_SYSTEM_BUS_ADDRESS=${q(systemBus.address)}`,
      `export SD_COMPANION_BUS_ADDRESS=${q(companionBus.address)}`,
      `export DBUS_SESSION_BUS_ADDRESS=${q(s.desktopBus.address)}`,
      `export GNUPGHOME=${q(userGnupg)}`,
      `export PATH=${q(`${realDir}/bin`)}:"$PATH"`,
      `export SD_DEMO_DIR=${q(realDir)}`,
      `export ${PHRASE_ENV}=${q(phraseFile)}`,
      `cd ${q(repo)}`,
      "",
    ].join("\n");
    await Deno.writeTextFile(`${realDir}/env`, env);
    await Deno.writeTextFile(`${realDir}/demo.pid`, `${Deno.pid}\n`);
    unwatch = watchAgent(s, say);

    say("");
    say("In a second terminal:");
    say(`  source ${realDir}/env`);
    say(`  git commit -S -m "my first approved commit"     # waits for the console`);
    say(`  git verify-commit HEAD && git log --show-signature -1`);
    say(`  printf s3cret | secret-tool store --label=Demo demo key   # waits for the console`);
    say(`  secret-tool lookup demo key                            # waits for the console`);
    say(`  deno task --config ${ROOT}/deno.json ctl list    # the admin CLI`);
    say(`  tail -f ${realDir}/notifications.log   # the desktop notifications of the agent`);
    say("");
    if (headless) {
      say("ready");
      await stopped.promise;
    } else {
      const paths = {
        systemBusSocket: systemBus.socket,
        companionBusSocket: companionBus.socket,
        stateDir: "",
        gpg: "/usr/bin/gpg",
        gitDirs: [],
        phraseFile,
      };
      say(`Starting the console (q quits and stops the demo); its phrase is in ${phraseFile}...`);
      const tui = new Deno.Command(Deno.execPath(), {
        args: denoArgs("console", { paths, root: ROOT }),
        env: { SD_COMPANION_BUS_ADDRESS: companionBus.address, [PHRASE_ENV]: phraseFile },
        stdin: "inherit",
        stdout: "inherit",
        stderr: "inherit",
      }).spawn();
      await Promise.race([tui.status, stopped.promise]);
      try {
        tui.kill("SIGTERM");
      } catch { /* ended */ }
      await tui.status;
    }
    return 0;
  } catch (err) {
    console.error(`demo failed: ${err instanceof Error ? err.message : err}`);
    return 1;
  } finally {
    unwatch();
    s?.notifications.stop();
    s?.admin.close();
    await s?.stack.stop();
    await Deno.remove(`${realDir}/demo.pid`).catch(() => {});
    lock.close();
    say("demo stopped");
  }
}

/**
 * Starts the agent again when it ends while the demo runs (as the `systemd --user` unit does in
 * production), saying so: without it, secret-tool in the second terminal finds no service.
 */
function watchAgent(s: SecretStack, say: (s: string) => void): () => void {
  let stopping = false;
  const watch = (child: Deno.ChildProcess) => {
    child.status.then(async (st) => {
      if (stopping) return;
      say(
        `demo: the agent ended (exit ${st.code}${
          st.signal ? `, ${st.signal}` : ""
        }); restarting it`,
      );
      try {
        const next = await s.startAgent();
        s.agent = next;
        say("demo: agent running again");
        watch(next);
      } catch (err) {
        say(`demo: cannot restart the agent: ${err instanceof Error ? err.message : err}`);
      }
    });
  };
  watch(s.agent);
  return () => stopping = true;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
