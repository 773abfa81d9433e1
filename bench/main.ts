/**
 * `deno task bench`: the machine's part of a signed commit through the whole path (approval by
 * an automatic approver on the admin interface, i.e. no human wait) against the same commit
 * signed by plain gpg; the signer's own start-up; the signer's module graph; the Secret
 * Service path (`secrets.ts`); and the console's latency (`console_latency.ts`). Prints a table and writes `bench/results/latest.json`.
 *
 * Options: `--runs N` (default 10, at least 10 for the published numbers).
 *
 * @module
 */

import { denoArgs } from "../deploy/permissions.ts";
import { Approver, denoDir, ROOT, run } from "../dev/harness.ts";
import { secretStack } from "../dev/secret_stack.ts";
import { benchConsoleLatency } from "./console_latency.ts";
import { benchSecrets } from "./secrets.ts";
import { type Stats, stats, time } from "./stats.ts";

async function main(args: string[]): Promise<number> {
  const i = args.indexOf("--runs");
  const runs = i >= 0 ? Number(args[i + 1]) : 10;
  if (!Number.isInteger(runs) || runs < 1) {
    console.error("usage: deno task bench [--runs N]");
    return 2;
  }
  const s = await secretStack();
  const approver = new Approver(s.admin, () => "approve", { pollMs: 2 });
  try {
    const repo = await s.repo("bench");
    const git = async (...a: string[]) => {
      const r = await new Deno.Command("git", {
        args: ["-C", repo, ...a],
        env: s.env,
        clearEnv: true,
      })
        .output();
      if (!r.success) throw new Error(`git ${a.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
    };
    await git("commit", "-q", "--allow-empty", "--no-gpg-sign", "-m", "base");

    // Warm both paths once (gpg-agent start, Deno code cache).
    await git("commit", "-q", "--allow-empty", "-S", "-m", "warm");
    const plainEnv = ["-c", `gpg.program=/usr/bin/gpg`];
    const plainGpg = async (msg: string) => {
      const r = await new Deno.Command("git", {
        args: ["-C", repo, ...plainEnv, "commit", "-q", "--allow-empty", "-S", "-m", msg],
        env: { ...s.env, GNUPGHOME: s.key.home },
        clearEnv: true,
      }).output();
      if (!r.success) throw new Error(new TextDecoder().decode(r.stderr));
    };
    await plainGpg("warm plain");

    const through: number[] = [];
    const plain: number[] = [];
    for (let n = 0; n < runs; n++) {
      through.push(await time(() => git("commit", "-q", "--allow-empty", "-S", "-m", `b${n}`)));
      plain.push(await time(() => plainGpg(`p${n}`)));
    }

    // The signer's own start-up: load every module, parse arguments, exit (bad argv, exit 2).
    const signerArgs = denoArgs("sign", {
      root: ROOT,
      paths: {
        systemBusSocket: s.systemBus.socket,
        companionBusSocket: "",
        stateDir: "",
        gpg: "",
        gitDirs: [`${repo}/.git`],
      },
    });
    const startup: number[] = [];
    for (let n = 0; n < runs; n++) {
      startup.push(
        await time(async () => {
          await new Deno.Command(Deno.execPath(), {
            args: [
              ...signerArgs,
              "--git-dir",
              repo,
              "--common-dir",
              repo,
              "--work-tree",
              repo,
              "--",
              "--bench",
            ],
            env: { DENO_DIR: await denoDir() },
            clearEnv: true,
            stdout: "null",
            stderr: "null",
          }).output();
        }),
      );
    }
    const bare: number[] = [];
    const empty = `${s.stack.dir}/empty.ts`;
    await Deno.writeTextFile(empty, "");
    for (let n = 0; n < runs; n++) {
      bare.push(
        await time(async () => {
          await new Deno.Command(Deno.execPath(), {
            args: ["run", "--no-prompt", "--no-config", empty],
            env: { DENO_DIR: await denoDir() },
            clearEnv: true,
          }).output();
        }),
      );
    }

    const info = JSON.parse(
      (await run(Deno.execPath(), [
        "info",
        "--json",
        `--config=${ROOT}/deno.json`,
        `${ROOT}/sign/main.ts`,
      ]))
        .stdout,
    );
    const local = (info.modules as { specifier: string }[]).filter((m) =>
      m.specifier.startsWith("file:")
    ).map((m) => m.specifier.replace(`file://${ROOT}/`, ""));
    // npm packages the signer really loads: those its modules name, and their dependencies.
    const packages = info.npmPackages as Record<string, { dependencies?: string[] }>;
    const npm = new Set<string>();
    const queue = (info.modules as { npmPackage?: string }[]).flatMap((m) =>
      m.npmPackage ? [m.npmPackage] : []
    );
    while (queue.length) {
      const p = queue.pop()!;
      if (npm.has(p)) continue;
      npm.add(p);
      queue.push(...(packages[p]?.dependencies ?? []));
    }

    await approver.stop();
    const secrets = await benchSecrets(s, { runs });
    const consoleLatency = await benchConsoleLatency(s, { runs });

    const result = {
      date: new Date().toISOString(),
      runs,
      signedCommitThroughDispatcher: stats(through),
      signedCommitPlainGpg: stats(plain),
      ratio: Math.round(stats(through).medianMs / stats(plain).medianMs * 10) / 10,
      signerStartup: stats(startup),
      bareDenoStartup: stats(bare),
      signerModules: { local, npm: [...npm].sort() },
      secrets,
      consoleLatency,
    };
    const row = (name: string, st: Stats) =>
      `| ${name.padEnd(44)} | ${String(st.medianMs).padStart(8)} | ${
        String(st.minMs).padStart(8)
      } | ${String(st.maxMs).padStart(8)} |`;
    console.log(`| what (${runs} runs each)`.padEnd(46) + " | median ms |   min ms |   max ms |");
    console.log(`|${"-".repeat(46)}|----------:|---------:|---------:|`);
    console.log(
      row("git commit -S through secrets-dispatcher", result.signedCommitThroughDispatcher),
    );
    console.log(row("git commit -S with plain gpg", result.signedCommitPlainGpg));
    console.log(row("signer start-up (load, parse, exit)", result.signerStartup));
    console.log(row("bare deno run of an empty file", result.bareDenoStartup));
    console.log(row("secret-tool lookup through the agent (approved)", secrets.lookupThroughAgent));
    console.log(row("secret-tool lookup straight from gnome-keyring", secrets.lookupDirect));
    console.log(
      row("lookup, approval still valid, through agent", secrets.approvedLookupThroughAgent),
    );
    console.log(row("the same lookup straight from gnome-keyring", secrets.approvedLookupDirect));
    console.log(row("request method returned -> on the console screen", consoleLatency));
    console.log(`\nratio through/plain: ${result.ratio}x (first-version target: 5x)`);
    console.log(
      `console latency (RequestSign returned -> id visible in a terminal emulator fed the ` +
        `console's output): median ${consoleLatency.medianMs} ms (target: under 100 ms)`,
    );
    console.log(
      `secret lookup ratio with a valid approval: ${secrets.approvedLookupRatio}x (target: 2x); ` +
        `with an approval each time: ${secrets.lookupRatio}x`,
    );
    const m = secrets.rssKiB;
    console.log(
      `RSS daemon ${m.daemonIdle} -> ${m.daemonAfter} KiB, agent ${m.agentIdle} -> ${m.agentAfter} ` +
        `KiB after ${m.requests} approved requests (target: growth under 10 MB)`,
    );
    console.log(
      `signer modules: ${local.length} local (${local.join(", ")}); npm: ${
        [...npm].sort().join(", ")
      }`,
    );
    await Deno.mkdir(`${ROOT}/bench/results`, { recursive: true });
    await Deno.writeTextFile(
      `${ROOT}/bench/results/latest.json`,
      JSON.stringify(result, null, 2) + "\n",
    );
    console.log(`written: bench/results/latest.json`);
    return 0;
  } finally {
    await approver.stop();
    await s.close();
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
