/**
 * Boots the end-to-end VM under QEMU with TCG (this machine's /dev/kvm cannot boot a stock
 * kernel: shared/reference/vt-pam-systemd-vm.md §6), with the host's shared folder on 9p, the
 * serial console in a file and the human monitor on a Unix socket, and answers the guest's
 * screenshot requests while it runs.
 *
 * Screenshot protocol (through the shared folder): the guest writes `screendump.request`
 * holding a file name; the host takes QEMU's `screendump` of the display as PNG to that name in
 * the shared folder, then writes `screendump.done` holding `ok` or the error.
 *
 * @module
 */

/** What to boot. */
export interface BootOptions {
  kernel: string;
  initrd: string;
  disk: string;
  /** Host folder shared with the guest as 9p mount tag `host0`. */
  share: string;
  /** Serial console output file. */
  serialLog: string;
  /** Unix socket path for QEMU's human monitor (screenshots go through it). */
  monitorSocket: string;
  /** Kernel command line additions. */
  append: string;
  /** Kill QEMU after this many ms. */
  timeoutMs: number;
  log: (line: string) => void;
}

/** How the VM ended. */
export interface BootResult {
  /** QEMU's exit code (137 when killed at the time limit). */
  code: number;
  timedOut: boolean;
  seconds: number;
  screenshots: string[];
}

const decoder = new TextDecoder();

/** Sends one human-monitor command and returns what the monitor printed before its prompt. */
async function monitor(socket: string, command: string): Promise<string> {
  const conn = await Deno.connect({ transport: "unix", path: socket });
  try {
    let out = "";
    const buf = new Uint8Array(4096);
    const readUntilPrompt = async () => {
      const deadline = Date.now() + 20_000;
      while (!out.endsWith("(qemu) ") && Date.now() < deadline) {
        const n = await conn.read(buf);
        if (n === null) break;
        out += decoder.decode(buf.subarray(0, n));
      }
    };
    await readUntilPrompt();
    out = "";
    await conn.write(new TextEncoder().encode(`${command}\n`));
    await readUntilPrompt();
    // The monitor echoes the line with terminal redraw codes; keep what follows the echo.
    // deno-lint-ignore no-control-regex
    const clean = out.replace(/\x1b\[[0-9;]*[A-Za-z]/g, "").replace(/\r/g, "");
    return clean.split("\n").slice(1).join("\n").replace(/\(qemu\) $/, "").trim();
  } finally {
    conn.close();
  }
}

async function readIfExists(path: string): Promise<string | null> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/** Takes a PNG screenshot of the VM's display into `path`. */
async function screendump(socket: string, path: string): Promise<string | null> {
  const said = await monitor(socket, `screendump ${path} -f png`);
  try {
    const head = new Uint8Array(8);
    const f = await Deno.open(path);
    await f.read(head);
    f.close();
    if (head[1] === 0x50 && head[2] === 0x4e && head[3] === 0x47) return null;
    return `not a PNG: ${said}`;
  } catch {
    return `no file: ${said || "(monitor said nothing)"}`;
  }
}

/**
 * Boots the VM and waits until it powers off (`-no-reboot`) or the time limit passes, serving
 * screenshot requests meanwhile.
 */
export async function boot(options: BootOptions): Promise<BootResult> {
  const socket = options.monitorSocket;
  await Deno.remove(socket).catch(() => {});
  const args = [
    "-accel",
    "tcg,thread=multi",
    "-m",
    "2048",
    "-smp",
    "2",
    "-kernel",
    options.kernel,
    "-initrd",
    options.initrd,
    "-append",
    `root=/dev/vda rw console=ttyS0 ${options.append}`,
    "-drive",
    `file=${options.disk},if=virtio,format=raw`,
    "-virtfs",
    `local,path=${options.share},mount_tag=host0,security_model=none,id=host0`,
    "-display",
    "none",
    "-vga",
    "std",
    "-serial",
    `file:${options.serialLog}`,
    "-monitor",
    `unix:${socket},server=on,wait=off`,
    "-no-reboot",
    "-nodefaults",
  ];
  const started = Date.now();
  const child = new Deno.Command("qemu-system-x86_64", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, options.timeoutMs);
  let done = false;
  const screenshots: string[] = [];
  const serve = (async () => {
    const request = `${options.share}/screendump.request`;
    while (!done) {
      await new Promise((r) => setTimeout(r, 200));
      const name = (await readIfExists(request))?.trim();
      if (!name) continue;
      await Deno.remove(request).catch(() => {});
      let result: string;
      if (!/^[a-z0-9_-]+\.png$/.test(name)) result = `bad name ${JSON.stringify(name)}`;
      else {
        try {
          result = (await screendump(socket, `${options.share}/${name}`)) ?? "ok";
        } catch (err) {
          result = `monitor: ${(err as Error).message}`;
        }
      }
      if (result === "ok") screenshots.push(name);
      options.log(`screenshot ${name}: ${result}`);
      await Deno.writeTextFile(`${options.share}/screendump.done`, `${result}\n`);
    }
  })();
  const out = await child.output();
  clearTimeout(timer);
  done = true;
  await serve;
  const err = decoder.decode(out.stderr).trim();
  if (err) options.log(`qemu: ${err.split("\n").slice(-5).join(" | ")}`);
  return {
    code: out.code,
    timedOut,
    seconds: Math.round((Date.now() - started) / 1000),
    screenshots,
  };
}
