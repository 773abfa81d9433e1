/**
 * The steps that install the code: the source tree copied to the root-owned install dir, the
 * pinned Deno binary next to it, and the read-only `DENO_DIR` pre-filled with every module the
 * units run, so they start with `deno run --cached-only` and no network.
 *
 * @module
 */

import type { Deployment } from "../deploy/layout.ts";
import type { Host } from "./host.ts";
import { fail, pass, type Step, step } from "./step.ts";
import { ensureParents, execAs, octal, removeIfEmpty, removePath, under } from "./steps.ts";

/** Top-level files of the source tree that are installed. */
export const INSTALL_FILES = ["deno.json", "deno.lock", "mod.ts"];
/** Top-level directories of the source tree that are installed (those present). */
export const INSTALL_DIRS = ["lib", "daemon", "console", "sign", "deploy", "agent", "provision"];

/** Whether a source file is left out of the install (tests and their helpers). */
export function excluded(rel: string): boolean {
  const base = rel.split("/").pop()!;
  return base.endsWith("_test.ts") || base === "test_support.ts";
}

/** One file of the source tree. */
export interface SourceFile {
  /** Path relative to the tree's root. */
  rel: string;
  /** 0o755 when any execute bit is set in the source, else 0o644. */
  mode: number;
}

/** Lists the files to install from a source tree, sorted. */
export async function sourceFiles(sourceDir: string): Promise<SourceFile[]> {
  const out: SourceFile[] = [];
  async function walk(rel: string) {
    for await (const e of Deno.readDir(`${sourceDir}/${rel}`)) {
      const r = `${rel}/${e.name}`;
      if (e.isDirectory) await walk(r);
      else if (e.isFile && !excluded(r)) {
        const mode = (await Deno.stat(`${sourceDir}/${r}`)).mode ?? 0o644;
        out.push({ rel: r, mode: mode & 0o111 ? 0o755 : 0o644 });
      }
    }
  }
  for (const f of INSTALL_FILES) {
    const info = await Deno.stat(`${sourceDir}/${f}`).catch(() => null);
    if (info?.isFile) out.push({ rel: f, mode: (info.mode ?? 0) & 0o111 ? 0o755 : 0o644 });
  }
  for (const d of INSTALL_DIRS) {
    const info = await Deno.stat(`${sourceDir}/${d}`).catch(() => null);
    if (info?.isDirectory) await walk(d);
  }
  return out.sort((a, b) => a.rel.localeCompare(b.rel));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Every path under a dir (files and dirs), relative, not following symlinks. */
async function listTree(dir: string): Promise<{ rel: string; isDir: boolean }[]> {
  const out: { rel: string; isDir: boolean }[] = [];
  async function walk(rel: string) {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(rel ? `${dir}/${rel}` : dir));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push({ rel: r, isDir: e.isDirectory });
      if (e.isDirectory) await walk(r);
    }
  }
  await walk("");
  return out;
}

/**
 * The code: every file of {@link sourceFiles} at the same relative path under the install dir,
 * root:root, 0644 (0755 when executable in the source), dirs 0755; no stale files in the
 * installed directories. Machine-wide.
 */
export function codeStep(
  host: Host,
  d: Deployment,
  source: { dir: string; files: SourceFile[] },
): Step {
  const dest = under(host, d.installDir);
  const managedDirs = INSTALL_DIRS;
  return step({
    id: "code",
    title:
      `code installed in ${d.installDir} (${source.files.length} files, root-owned, read-only)`,
    actions: [
      `copy ${source.files.length} files from ${source.dir} (${
        [
          ...new Set(
            source.files.map((f) => f.rel.includes("/") ? `${f.rel.split("/")[0]}/` : f.rel),
          ),
        ]
          .join(", ")
      }; no tests) to ${d.installDir}; remove stale files there`,
    ],
    undoActions: [
      `rm -rf ${[...INSTALL_FILES, ...INSTALL_DIRS].map((x) => `${d.installDir}/${x}`).join(" ")}`,
    ],
    shared: true,
    async check() {
      const problems: string[] = [];
      for (const f of source.files) {
        const path = `${dest}/${f.rel}`;
        const info = await host.stat(path);
        if (info === null) {
          problems.push(`${f.rel} missing`);
        } else if (
          info.kind !== "file" || info.uid !== 0 || info.gid !== 0 || info.mode !== f.mode
        ) {
          problems.push(`${f.rel}: ${info.kind} ${info.uid}:${info.gid} ${octal(info.mode)}`);
        } else if (
          !sameBytes(await Deno.readFile(path), await Deno.readFile(`${source.dir}/${f.rel}`))
        ) {
          problems.push(`${f.rel} differs from the source`);
        }
        if (problems.length > 5) break;
      }
      const wanted = new Set(source.files.map((f) => f.rel));
      for (const top of managedDirs) {
        for (const e of await listTree(`${dest}/${top}`)) {
          const rel = `${top}/${e.rel}`;
          if (e.isDir) {
            const info = await host.stat(`${dest}/${rel}`);
            if (info && (info.uid !== 0 || info.mode & 0o022)) {
              problems.push(`${rel}/ is writable by others than root`);
            }
          } else if (!wanted.has(rel)) problems.push(`stale file ${rel}`);
        }
      }
      return problems.length ? fail(problems.slice(0, 6).join("; ")) : pass();
    },
    async apply() {
      for (const f of source.files) {
        const path = `${dest}/${f.rel}`;
        await ensureParents(host, path);
        const bytes = await Deno.readFile(`${source.dir}/${f.rel}`);
        const info = await host.stat(path);
        const same = info?.kind === "file" && sameBytes(await Deno.readFile(path), bytes);
        if (!same) {
          const tmp = `${path}.sd-new`;
          await Deno.writeFile(tmp, bytes, { mode: 0o600 });
          await Deno.rename(tmp, path);
        }
        await host.chown(path, 0, 0);
        await Deno.chmod(path, f.mode);
      }
      const wanted = new Set(source.files.map((f) => f.rel));
      for (const top of managedDirs) {
        const entries = await listTree(`${dest}/${top}`);
        for (const e of entries.reverse()) {
          const rel = `${top}/${e.rel}`;
          const path = `${dest}/${rel}`;
          if (e.isDir) {
            await host.chown(path, 0, 0);
            await Deno.chmod(path, 0o755);
            await removeIfEmpty(path);
          } else if (!wanted.has(rel)) await removePath(path);
        }
        const topInfo = await host.stat(`${dest}/${top}`);
        if (topInfo?.kind === "dir") {
          await host.chown(`${dest}/${top}`, 0, 0);
          await Deno.chmod(`${dest}/${top}`, 0o755);
          await removeIfEmpty(`${dest}/${top}`);
        }
      }
    },
    async undo() {
      for (const f of INSTALL_FILES) await removePath(`${dest}/${f}`);
      for (const top of managedDirs) await removePath(`${dest}/${top}`, true);
    },
  });
}

/**
 * The pinned Deno is run through `runuser -u root` (with a clean environment), not spawned by
 * provisioning itself: Deno forbids writing to a binary named in `--allow-run`, and provisioning
 * must be able to replace and remove this one.
 */
const ROOT_USER = { name: "root", home: "/root" };

/** The expected first line of `deno --version` for the running Deno. */
export function denoVersionLine(): string {
  return `deno ${Deno.version.deno}`;
}

/**
 * The pinned Deno binary (`<installDir>/bin/deno`, root 0755): a copy of the Deno running
 * provisioning, so the units and the `DENO_DIR` it filled always match. Machine-wide.
 */
export function denoBinaryStep(host: Host, d: Deployment, options: { source: string }): Step {
  const path = under(host, d.deno);
  return step({
    id: "deno-binary",
    title: `pinned Deno ${Deno.version.deno}: ${d.deno} (root 0755)`,
    actions: [`install -m 0755 ${options.source} ${d.deno}`],
    undoActions: [`rm -f ${d.deno}`],
    shared: true,
    async check() {
      const info = await host.stat(path);
      if (info === null) return fail("missing");
      if (info.kind !== "file" || info.uid !== 0 || info.gid !== 0 || info.mode !== 0o755) {
        return fail(`${info.kind} ${info.uid}:${info.gid} ${octal(info.mode)}, expected root 0755`);
      }
      const r = await execAs(host, ROOT_USER, [path, "--version"]);
      const first = r.stdout.split("\n")[0].split(" (")[0];
      return first === denoVersionLine()
        ? pass()
        : fail(`reports "${first}", expected "${denoVersionLine()}"`);
    },
    async apply() {
      await ensureParents(host, path);
      const r = await host.exec("install", ["-m", "0755", options.source, `${path}.sd-new`]);
      if (r.code !== 0) throw new Error(`install deno: ${r.stderr.trim()}`);
      await host.chown(`${path}.sd-new`, 0, 0);
      await Deno.chmod(`${path}.sd-new`, 0o755);
      await Deno.rename(`${path}.sd-new`, path);
    },
    async undo() {
      await removePath(path);
    },
  });
}

/**
 * Variables passed from the caller's environment to `deno install` (proxies, CA bundles, the
 * npm registry), the only command provisioning runs that uses the network.
 */
export const NETWORK_ENV = [
  "HTTPS_PROXY",
  "https_proxy",
  "HTTP_PROXY",
  "http_proxy",
  "NO_PROXY",
  "no_proxy",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "DENO_CERT",
  "NODE_EXTRA_CA_CERTS",
  "DENO_TLS_CA_STORE",
  "NPM_CONFIG_REGISTRY",
];

/** The modules the units, the signer, the agent and the PAM helper run (those installed). */
export function cachedModules(files: SourceFile[]): string[] {
  const present = new Set(files.map((f) => f.rel));
  return [
    "daemon/main.ts",
    "console/main.ts",
    "console/ctl.ts",
    "sign/main.ts",
    "agent/main.ts",
    "provision/pam_unlock.ts",
    "provision/cache_probe.ts",
  ].filter((m) => present.has(m));
}

/**
 * The pre-filled, read-only `DENO_DIR` (`<installDir>/deno-dir`): filled by the pinned Deno with
 * `deno install --frozen --entrypoint <modules>`, then everything root-owned and not writable by
 * group or others. With `options.seed` (`--deno-dir-from`, for machines without the npm
 * registry) it first copies that pre-filled cache and installs with `--cached-only`, so nothing is
 * downloaded. The check proves it complete: the companion imports every module with
 * `--cached-only` (provision/cache_probe.ts). Machine-wide.
 */
export function denoDirStep(
  host: Host,
  d: Deployment,
  options: { modules: string[]; networkEnv?: Record<string, string>; seed?: string },
): Step {
  const dir = under(host, d.denoDir);
  const seed = options.seed;
  const install = under(host, d.installDir);
  const deno = under(host, d.deno);
  const modules = options.modules.map((m) => `${install}/${m}`);
  return step({
    id: "deno-dir",
    title:
      `DENO_DIR ${d.denoDir}: complete for ${options.modules.length} modules, root-owned, read-only`,
    actions: [
      ...(seed ? [`cp -R ${seed}/. ${d.denoDir}`] : []),
      `DENO_DIR=${d.denoDir} ${d.deno} install --frozen${
        seed ? " --cached-only" : ""
      } --entrypoint ${options.modules.join(" ")}`,
      `chown -R root:root ${d.denoDir}; chmod -R go-w ${d.denoDir}`,
    ],
    undoActions: [`rm -rf ${d.denoDir}`],
    shared: true,
    async check() {
      const top = await host.stat(dir);
      if (top === null) return fail("missing");
      for (const e of [{ rel: "", isDir: true }, ...await listTree(dir)]) {
        const info = await host.stat(e.rel ? `${dir}/${e.rel}` : dir);
        if (info === null) continue;
        if (info.uid !== 0 || (info.kind !== "symlink" && info.mode & 0o022)) {
          return fail(
            `${e.rel || "."} is ${info.uid}:${info.gid} ${octal(info.mode)}: not read-only`,
          );
        }
      }
      const who = await host.getUser(d.companion);
      if (!who) return fail(`cannot prove it complete: no user ${d.companion}`);
      const r = await execAs(host, { name: d.companion, home: "/" }, [
        `DENO_DIR=${dir}`,
        "DENO_NO_UPDATE_CHECK=1",
        deno,
        "run",
        "--no-prompt",
        "--cached-only",
        "--frozen",
        `--config=${install}/deno.json`,
        `--allow-read=${install}`,
        `${install}/provision/cache_probe.ts`,
        ...modules,
      ]);
      if (r.code !== 0 || r.stdout.trim() !== "ok") {
        // deno-lint-ignore no-control-regex
        const why = r.stderr.replace(/\x1b\[[0-9;]*m/g, "").trim().split("\n").slice(0, 3).join(
          " ",
        );
        return fail(`${d.companion} cannot load every module offline: ${why}`);
      }
      return pass();
    },
    async apply() {
      await ensureParents(host, `${dir}/x`);
      if (seed) {
        const c = await execAs(host, ROOT_USER, ["cp", "-R", `${seed}/.`, dir]);
        if (c.code !== 0) throw new Error(`copy of ${seed}: ${c.stderr.trim()}`);
      }
      const env = { ...options.networkEnv, DENO_DIR: dir, DENO_NO_UPDATE_CHECK: "1" };
      const r = await execAs(host, ROOT_USER, [
        ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
        deno,
        "install",
        "--frozen",
        ...(seed ? ["--cached-only"] : []),
        "--quiet",
        `--config=${install}/deno.json`,
        "--entrypoint",
        ...modules,
      ]);
      if (r.code !== 0) throw new Error(`deno install: ${r.stderr.trim()}`);
      for (const e of [{ rel: "", isDir: true }, ...await listTree(dir)]) {
        const path = e.rel ? `${dir}/${e.rel}` : dir;
        const info = await host.stat(path);
        if (info === null || info.kind === "symlink") continue;
        await host.chown(path, 0, 0);
        await Deno.chmod(path, e.isDir || info.mode & 0o111 ? 0o755 : 0o644);
      }
    },
    async undo() {
      await removePath(dir, true);
    },
  });
}
