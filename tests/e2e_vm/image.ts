/**
 * The Debian 12 image of the end-to-end VM: a debootstrapped root tree of the packages the
 * product needs, cached between runs under a stamp keyed on the package list and this recipe,
 * plus the per-run payload (the working tree, Deno, a pre-filled Deno cache, the runner unit)
 * written into it before it becomes an ext4 disk image.
 *
 * Recipe measured in shared/reference/vt-pam-systemd-vm.md §6 (debootstrap minbase, `mkfs.ext4
 * -d`, the kernel and initrd straight from the tree's /boot).
 *
 * @module
 */

import { exec, type ExecResult } from "../../dev/exec.ts";

/** Debian release of the image. */
export const SUITE = "bookworm";

/** Packages installed into the image (with their dependencies) by debootstrap's `--include`. */
export const PACKAGES: readonly string[] = [
  // boot, login, logind, the system bus, polkit (logind's SwitchTo asks it)
  "systemd",
  "systemd-sysv",
  "udev",
  "dbus",
  "dbus-user-session",
  "libpam-systemd",
  "polkitd",
  "linux-image-amd64",
  // chvt/fgconsole, ps, the scenario's keyboard (python)
  "kbd",
  "procps",
  "python3-minimal",
  // what the product and its users run
  "gnome-keyring",
  "libsecret-tools",
  "gpg",
  "gpg-agent",
  "pinentry-curses",
  "git",
];

/** Bump when the image recipe (not the package list) changes, to rebuild cached images. */
export const RECIPE_VERSION = 1;

/** Where the working tree goes inside the image (the admin's checkout). */
export const GUEST_SOURCE = "/opt/secrets-dispatcher";
/** The pre-filled Deno cache inside the image (`--deno-dir-from`, and the scenario's DENO_DIR). */
export const GUEST_DENO_SEED = "/var/cache/secrets-dispatcher-e2e/deno-dir";
/** Deno inside the image. */
export const GUEST_DENO = "/usr/local/bin/deno";
/** Mount point of the host's shared folder (9p) inside the VM. */
export const GUEST_SHARE = "/mnt/host";

/** A built image tree. */
export interface ImageTree {
  /** The root tree (debootstrap's target). */
  rootfs: string;
  /** Kernel and initrd inside it. */
  kernel: string;
  initrd: string;
  /** True when this run built it (false: reused from the cache). */
  built: boolean;
}

/**
 * The cache key of an image: SHA-256 over suite, mirror, package list and recipe version.
 *
 * @returns 16 lowercase hex digits
 */
export async function imageKey(mirror: string): Promise<string> {
  const text = JSON.stringify({ SUITE, mirror, PACKAGES, RECIPE_VERSION });
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(hash)].slice(0, 8).map((b) => b.toString(16).padStart(2, "0")).join(
    "",
  );
}

/** The systemd unit that runs the scenario at boot, then powers the VM off. */
export function runnerUnit(): string {
  const scenario = [
    GUEST_DENO,
    "run",
    "--no-prompt",
    "--cached-only",
    "--allow-run",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--allow-sys",
    `${GUEST_SOURCE}/tests/e2e_vm/guest/scenario.ts`,
    GUEST_SHARE,
  ].join(" ");
  return `[Unit]
Description=secrets-dispatcher end-to-end scenario (from the host's shared folder)
After=multi-user.target
ConditionKernelCommandLine=sd_e2e=1
SuccessAction=poweroff
FailureAction=poweroff

[Service]
Type=oneshot
ExecStartPre=/bin/mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 host0 ${GUEST_SHARE}
Environment=DENO_DIR=${GUEST_DENO_SEED} DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
ExecStart=/bin/sh -c '${scenario} > ${GUEST_SHARE}/scenario.log 2>&1'
ExecStopPost=/bin/sync
TimeoutStartSec=1200

[Install]
WantedBy=multi-user.target
`;
}

async function must(r: Promise<ExecResult>, what: string): Promise<ExecResult> {
  const res = await r;
  if (res.code !== 0) {
    throw new Error(`${what} failed (exit ${res.code}): ${res.stderr.trim().slice(-2000)}`);
  }
  return res;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/**
 * Builds the image tree under `<cacheDir>/image-<key>/rootfs` unless its stamp
 * (`rootfs.done`) is there.
 *
 * @param log progress lines
 * @throws {Error} when debootstrap or a customisation step fails (the half-built tree is removed)
 */
export async function ensureImage(
  cacheDir: string,
  options: { mirror: string; log: (line: string) => void; rebuild?: boolean },
): Promise<ImageTree> {
  const key = await imageKey(options.mirror);
  const dir = `${cacheDir}/image-${key}`;
  const rootfs = `${dir}/rootfs`;
  const stamp = `${dir}/rootfs.done`;
  let built = false;
  if (options.rebuild || !(await exists(stamp))) {
    built = true;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    await Deno.mkdir(dir, { recursive: true });
    options.log(`debootstrap ${SUITE} (${PACKAGES.length} packages and their dependencies)`);
    const tmp = `${dir}/rootfs.partial`;
    const r = await exec("debootstrap", [
      "--variant=minbase",
      `--include=${PACKAGES.join(",")}`,
      SUITE,
      tmp,
      options.mirror,
    ], { timeoutMs: 30 * 60_000 });
    await Deno.writeTextFile(`${dir}/debootstrap.log`, r.stdout + r.stderr);
    if (r.code !== 0) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      throw new Error(`debootstrap failed (exit ${r.code}); see ${dir}/debootstrap.log`);
    }
    await customize(tmp);
    await Deno.rename(tmp, rootfs);
    await Deno.writeTextFile(stamp, JSON.stringify({ SUITE, PACKAGES, RECIPE_VERSION }) + "\n");
  }
  const boot = [...Deno.readDirSync(`${rootfs}/boot`)].map((e) => e.name);
  const kernel = boot.find((n) => n.startsWith("vmlinuz-"));
  const initrd = boot.find((n) => n.startsWith("initrd.img-"));
  if (!kernel || !initrd) throw new Error(`no kernel or initrd in ${rootfs}/boot`);
  return { rootfs, kernel: `${rootfs}/boot/${kernel}`, initrd: `${rootfs}/boot/${initrd}`, built };
}

/** One-time changes to a fresh tree: identity, fstab, root login, quiet timers, the runner. */
async function customize(root: string): Promise<void> {
  await Deno.writeTextFile(`${root}/etc/hostname`, "sd-e2e\n");
  await Deno.writeTextFile(`${root}/etc/fstab`, "/dev/vda / ext4 rw,relatime 0 1\n");
  await must(exec("chroot", [root, "passwd", "-d", "root"]), "passwd -d root");
  // Nothing else should compete for the two emulated CPUs during the run.
  for (const unit of ["apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer"]) {
    await Deno.symlink("/dev/null", `${root}/etc/systemd/system/${unit}`).catch(() => {});
  }
  await Deno.writeTextFile(`${root}/etc/systemd/system/sd-e2e.service`, runnerUnit());
  await Deno.mkdir(`${root}/etc/systemd/system/multi-user.target.wants`, { recursive: true });
  await Deno.symlink(
    "/etc/systemd/system/sd-e2e.service",
    `${root}/etc/systemd/system/multi-user.target.wants/sd-e2e.service`,
  );
}

/**
 * Writes this run's payload into the tree: the working tree's files (tracked and untracked, not
 * ignored) to {@link GUEST_SOURCE}, Deno to {@link GUEST_DENO}, the pre-filled Deno cache to
 * {@link GUEST_DENO_SEED}, and the current runner unit. Replaces any earlier payload.
 *
 * @param files paths relative to `sourceDir`
 */
export async function writePayload(
  rootfs: string,
  options: { sourceDir: string; files: string[]; deno: string; denoSeed: string },
): Promise<void> {
  const src = `${rootfs}${GUEST_SOURCE}`;
  await Deno.remove(src, { recursive: true }).catch(() => {});
  for (const f of options.files) {
    const to = `${src}/${f}`;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(`${options.sourceDir}/${f}`, to);
    const mode = (await Deno.stat(`${options.sourceDir}/${f}`)).mode! & 0o111 ? 0o755 : 0o644;
    await Deno.chmod(to, mode);
  }
  await walkChmodDirs(src);
  await Deno.mkdir(`${rootfs}/usr/local/bin`, { recursive: true });
  await Deno.copyFile(options.deno, `${rootfs}${GUEST_DENO}`);
  await Deno.chmod(`${rootfs}${GUEST_DENO}`, 0o755);
  const seed = `${rootfs}${GUEST_DENO_SEED}`;
  await Deno.remove(seed, { recursive: true }).catch(() => {});
  await Deno.mkdir(seed.slice(0, seed.lastIndexOf("/")), { recursive: true });
  await must(exec("cp", ["-R", options.denoSeed, seed]), "copy of the Deno cache");
  await Deno.writeTextFile(`${rootfs}/etc/systemd/system/sd-e2e.service`, runnerUnit());
  await Deno.mkdir(`${rootfs}${GUEST_SHARE}`, { recursive: true });
}

async function walkChmodDirs(dir: string): Promise<void> {
  await Deno.chmod(dir, 0o755);
  for await (const e of Deno.readDir(dir)) {
    if (e.isDirectory) await walkChmodDirs(`${dir}/${e.name}`);
  }
}

/**
 * Makes the ext4 disk image from the tree (`mkfs.ext4 -d`, sparse).
 *
 * @param sizeGiB file system size
 */
export async function makeDisk(
  rootfs: string,
  options: { path: string; sizeGiB: number },
): Promise<void> {
  await Deno.remove(options.path).catch(() => {});
  await must(
    exec("mkfs.ext4", [
      "-q",
      "-F",
      "-L",
      "root",
      "-d",
      rootfs,
      options.path,
      `${options.sizeGiB}G`,
    ]),
    "mkfs.ext4",
  );
}
