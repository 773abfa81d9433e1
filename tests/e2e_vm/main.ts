/**
 * `deno task e2e:vm` (as root): the end-to-end test in a real Debian 12 VM. Builds or reuses
 * the cached image (tests/e2e_vm/image.ts), copies the working tree, Deno and a pre-filled Deno
 * cache into it, boots it under QEMU/TCG (tests/e2e_vm/qemu.ts) and lets the scenario
 * (tests/e2e_vm/guest/scenario.ts) run as root inside: provision alice, her real login on tty2,
 * approvals typed on a virtual keyboard on VT 8, logout, uninstall. Results come back through a
 * shared folder; a failed step prints its evidence (VT 8's screen from /dev/vcs8, the units'
 * journal). The screenshot of VT 8 with a pending request goes to `docs/vt8-pending-request.png`,
 * and what `provision --check` printed in the VM to `docs/provision-check.txt`.
 *
 * ```
 * deno task e2e:vm [--rebuild] [--keep]
 * ```
 *
 * - `--rebuild`: build the image even when the cache has one.
 * - `--keep`: keep the run directory (disk image, serial log, shared folder) for a look; a
 *   failed run always keeps it. Each run has its own `<cache>/run-XXXX` directory, so runs can
 *   overlap (the cached image is locked while a run writes its payload and makes its disk).
 *
 * Environment: `SD_E2E_CACHE` (cache dir, default `/var/cache/secrets-dispatcher/e2e-vm`),
 * `SD_E2E_MIRROR` (Debian mirror, default `http://deb.debian.org/debian`).
 *
 * Needs (dev/setup.sh --vm installs them): debootstrap, qemu-system-x86, e2fsprogs.
 *
 * Exit codes: 0 every step passed; 1 a step failed or the VM did not finish; 2 cannot run here.
 *
 * @module
 */

import { exec } from "../../dev/exec.ts";
import { ensureImage, makeDisk, writePayload } from "./image.ts";
import { boot } from "./qemu.ts";
import { type StepResult, summarize } from "./results.ts";

const ROOT = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
const PICTURE = "docs/vt8-pending-request.png";
const CHECK_OUTPUT = "docs/provision-check.txt";
const TOOLS = ["debootstrap", "qemu-system-x86_64", "mkfs.ext4", "chroot"];

function log(line: string): void {
  const t = new Date().toISOString().slice(11, 19);
  console.log(`[${t}] ${line}`);
}

async function which(cmd: string): Promise<boolean> {
  const r = await exec("sh", ["-c", `command -v ${cmd}`], { inheritEnv: true, env: {} });
  return r.code === 0;
}

/** Files of the working tree to copy: tracked and untracked, not ignored, that exist. */
async function workingTree(): Promise<string[]> {
  const r = await exec("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
    cwd: ROOT,
  });
  if (r.code !== 0) throw new Error(`git ls-files: ${r.stderr}`);
  const files: string[] = [];
  for (const f of r.stdout.split("\0").filter(Boolean)) {
    try {
      if ((await Deno.lstat(`${ROOT}/${f}`)).isFile) files.push(f);
    } catch { /* deleted in the working tree */ }
  }
  return files;
}

/** A Deno cache holding every dependency of deno.json, keyed on deno.lock and Deno's version. */
async function denoSeed(cacheDir: string): Promise<string> {
  const lock = await Deno.readFile(`${ROOT}/deno.lock`);
  const key = new Uint8Array(
    await crypto.subtle.digest(
      "SHA-256",
      new Uint8Array([...lock, ...new TextEncoder().encode(Deno.version.deno)]),
    ),
  ).slice(0, 8).reduce((s, b) => s + b.toString(16).padStart(2, "0"), "");
  const dir = `${cacheDir}/deno-dir-${key}`;
  try {
    await Deno.stat(`${dir}.done`);
    return dir;
  } catch { /* build it */ }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  const r = await exec(Deno.execPath(), ["install", "--frozen", "--quiet"], {
    cwd: ROOT,
    env: { DENO_DIR: dir, DENO_NO_UPDATE_CHECK: "1" },
    inheritEnv: true,
    timeoutMs: 10 * 60_000,
  });
  if (r.code !== 0) throw new Error(`deno install for the image: ${r.stderr}`);
  await Deno.writeTextFile(`${dir}.done`, "");
  return dir;
}

async function main(args: string[]): Promise<number> {
  const rebuild = args.includes("--rebuild");
  const keep = args.includes("--keep");
  const unknown = args.filter((a) => a !== "--rebuild" && a !== "--keep");
  if (unknown.length) {
    console.error(`e2e:vm: unknown argument ${unknown[0]} (use --rebuild, --keep)`);
    return 2;
  }
  if (Deno.uid() !== 0) {
    console.error("e2e:vm: must run as root (debootstrap, mkfs.ext4 -d with owners, 9p)");
    return 2;
  }
  const missing = [];
  for (const t of TOOLS) if (!(await which(t))) missing.push(t);
  if (missing.length) {
    console.error(`e2e:vm: missing ${missing.join(", ")}: run dev/setup.sh --vm first`);
    return 2;
  }
  const cacheDir = Deno.env.get("SD_E2E_CACHE") ?? "/var/cache/secrets-dispatcher/e2e-vm";
  const mirror = Deno.env.get("SD_E2E_MIRROR") ?? "http://deb.debian.org/debian";
  await Deno.mkdir(cacheDir, { recursive: true });
  const t0 = Date.now();

  // Each run has its own directory; the cached tree is shared, so building it, writing this run's
  // payload into it and making the disk from it happen under an exclusive lock (flock(2)).
  const run = await Deno.makeTempDir({ dir: cacheDir, prefix: "run-" });
  const share = `${run}/share`;
  await Deno.mkdir(share);
  const lock = await Deno.open(`${cacheDir}/image.lock`, { create: true, write: true });
  let image;
  try {
    log("waiting for the image lock (another run may be making its disk)");
    await lock.lock(true);
    image = await ensureImage(cacheDir, { mirror, log, rebuild });
    log(`image ${image.built ? "built" : "reused"}: ${image.rootfs}`);
    const seed = await denoSeed(cacheDir);
    await writePayload(image.rootfs, {
      sourceDir: ROOT,
      files: await workingTree(),
      deno: Deno.execPath(),
      denoSeed: seed,
    });
    log("mkfs.ext4 -d");
    await makeDisk(image.rootfs, { path: `${run}/disk.img`, sizeGiB: 4 });
  } finally {
    await lock.unlock().catch(() => {});
    lock.close();
  }

  log("booting the VM (QEMU/TCG); the scenario runs inside and powers it off");
  const vm = await boot({
    kernel: image.kernel,
    initrd: image.initrd,
    disk: `${run}/disk.img`,
    share,
    serialLog: `${run}/serial.log`,
    monitorSocket: `${run}/monitor.sock`,
    append: "sd_e2e=1 quiet",
    timeoutMs: 20 * 60_000,
    log,
  });
  log(`VM ran ${vm.seconds} s${vm.timedOut ? " and was killed at the time limit" : ""}`);

  const steps: StepResult[] = [];
  const jsonl = await Deno.readTextFile(`${share}/steps.jsonl`).catch(() => "");
  for (const line of jsonl.split("\n").filter(Boolean)) steps.push(JSON.parse(line));
  const finished = await Deno.readTextFile(`${share}/finished`).catch(() => null);
  const { lines, failed } = summarize(steps);
  for (const l of lines) console.log(l);

  const check = await Deno.readTextFile(`${share}/provision-check.txt`).catch(() => null);
  if (check !== null) {
    // What `--check` printed in the VM: the README shows it as the healthy install.
    await Deno.writeTextFile(`${ROOT}/${CHECK_OUTPUT}`, check);
    log(`provision --check output of the VM written to ${CHECK_OUTPUT}`);
  }
  if (vm.screenshots.includes("vt8-pending-request.png")) {
    await Deno.mkdir(`${ROOT}/docs`, { recursive: true });
    await Deno.copyFile(`${share}/vt8-pending-request.png`, `${ROOT}/${PICTURE}`);
    log(`picture of VT 8 written to ${PICTURE}`);
  }
  const ok = finished !== null && failed === 0 && steps.length > 0 && !vm.timedOut;
  if (!ok) {
    if (finished === null) {
      console.log("the scenario did not finish; its log:");
      console.log((await Deno.readTextFile(`${share}/scenario.log`).catch(() => "(none)")).slice(
        -6000,
      ));
      console.log("serial console (last lines):");
      const serial = await Deno.readTextFile(`${run}/serial.log`).catch(() => "(none)");
      console.log(serial.split("\n").slice(-40).join("\n"));
    }
    console.log(`kept for a look: ${run}`);
  } else if (!keep) {
    await Deno.remove(run, { recursive: true }).catch(() => {});
  } else {
    console.log(`kept (--keep): ${run}`);
  }
  const total = Math.round((Date.now() - t0) / 1000);
  console.log(
    `e2e:vm ${ok ? "PASSED" : "FAILED"}: ${steps.length - failed} steps passed, ${failed} failed ` +
      `(${total} s in all, image ${image.built ? "built" : "from cache"})`,
  );
  return ok ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
