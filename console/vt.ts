/**
 * Virtual-terminal control for the trusted console: the few VT ioctls it needs, behind the
 * {@link VtControl} interface (unit tests use a fake; {@link openLibcVt} is the real one over
 * Deno FFI to libc).
 *
 * The real control works on **fd 0**, which systemd opens as the VT and makes the controlling
 * terminal (`TTYPath=/dev/tty8`, `StandardInput=tty`). The kernel allows `VT_SETMODE`,
 * `VT_RELDISP` and `VT_ACTIVATE` only on the caller's controlling terminal, or with
 * `CAP_SYS_TTY_CONFIG` (`drivers/tty/vt/vt_ioctl.c`); `VT_GETSTATE`/`VT_GETMODE` need only an
 * open fd.
 *
 * The switch signal is always SIGUSR2, for release and acquire alike: {@link VtControl.setMode}
 * takes no signal argument. Never SIGUSR1: Deno 2.9 opens a V8 inspector when it receives that
 * signal, and the kernel sends the VT signal on behalf of whoever asks for a switch
 * (DESIGN.md §6).
 *
 * There is deliberately no `VT_WAITACTIVE`: it blocks (a blocking FFI call cannot be cancelled
 * from JS) and waits forever when the kernel silently ignores a switch; poll
 * {@link VtControl.getState} against a deadline instead.
 *
 * Permissions: `--allow-ffi=<exact libc path>` (one of {@link LIBC_CANDIDATES}; Deno compares
 * the path as a string, so `/usr/lib/...` does not allow `/lib/...`). Scoped FFI forbids
 * `Deno.UnsafePointerView`, so errno is copied out with libc's `memcpy`.
 *
 * Sources: `man 2 ioctl_console`, `<linux/vt.h>`, `man 3 tcflush`, `man 2 fstat`,
 * `man 3 makedev`; measured on this machine in `../shared/reference/vt-pam-systemd-vm.md` §1–§2.
 *
 * @module
 */

/** `VT_GETMODE`: read `struct vt_mode` (`<linux/vt.h>`). */
export const VT_GETMODE = 0x5601;
/** `VT_SETMODE`: write `struct vt_mode`; needs the VT as controlling terminal. */
export const VT_SETMODE = 0x5602;
/** `VT_GETSTATE`: read `struct vt_stat` (active VT, bitmask of VTs in use). */
export const VT_GETSTATE = 0x5603;
/** `VT_RELDISP`: answer a release request (0 refuse, 1 allow) or acknowledge an acquire. */
export const VT_RELDISP = 0x5605;
/** `VT_ACTIVATE`: bring a VT to the front (may be refused silently, see `set_console()`). */
export const VT_ACTIVATE = 0x5606;

/** `struct vt_mode.mode`: the kernel switches on its own. */
export const VT_AUTO = 0;
/** `struct vt_mode.mode`: the owning process must answer release requests (`VT_RELDISP`). */
export const VT_PROCESS = 1;
/** `VT_RELDISP` argument: refuse the pending switch away from this VT. */
export const VT_RELDISP_REFUSE = 0;
/** `VT_RELDISP` argument: allow the pending switch away from this VT. */
export const VT_RELDISP_ALLOW = 1;
/**
 * `VT_RELDISP` argument: acknowledge an acquire. Ignored by the kernel when no release is pending,
 * but **treated as "allow" when one is** (`vt_reldisp()` only checks `swtch == 0`).
 */
export const VT_ACKACQ = 2;

/** `tcflush(3)` queue selector: discard data received but not read. */
export const TCIFLUSH = 0;
/** Linux signal number of SIGUSR2 on x86_64 and arm64 (`man 7 signal`). */
export const SIGUSR2_NUMBER = 12;
/** Major device number of the virtual consoles `/dev/tty0`–`/dev/tty63` (`TTY_MAJOR`). */
export const TTY_MAJOR = 4;
/** Highest VT number (`MAX_NR_CONSOLES`). */
export const MAX_VT = 63;

/** `struct vt_stat`, decoded (6 bytes: three little-endian `unsigned short`). */
export interface VtState {
  /** Number (1–63) of the VT in front. */
  active: number;
  /** `v_signal`; unused by the kernel. */
  signal: number;
  /** Bitmask of the VTs 1–15 in use; bit 0 (tty0) is always set. */
  state: number;
}

/** `struct vt_mode`, decoded (8 bytes: `char mode, waitv; short relsig, acqsig, frsig`). */
export interface VtModeInfo {
  /** {@link VT_AUTO} or {@link VT_PROCESS} (other values are passed on as read). */
  mode: number;
  /** `waitv`; unused by the kernel. */
  waitv: number;
  /** Signal number sent on a release request (0 in `VT_AUTO`). */
  relsig: number;
  /** Signal number sent after the VT was switched to (0 in `VT_AUTO`). */
  acqsig: number;
  /** `frsig`; forced to 0 by the kernel. */
  frsig: number;
}

/** The switch modes the console uses: `"auto"` = `VT_AUTO`, `"process"` = `VT_PROCESS`. */
export type VtSwitchMode = "auto" | "process";

/** An argument of `VT_RELDISP`. */
export type RelDispAnswer =
  | typeof VT_RELDISP_REFUSE
  | typeof VT_RELDISP_ALLOW
  | typeof VT_ACKACQ;

/** errno values the VT code names (`<asm-generic/errno-base.h>`). */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  EBADF: 9,
  EACCES: 13,
  EINVAL: 22,
  ENOTTY: 25,
} as const;

/** A failed libc call: which operation, and the errno it left. */
export class VtError extends Error {
  /** The operation, e.g. `"VT_SETMODE"` or `"open(/dev/tty8)"`. */
  readonly op: string;
  /** The errno value (see {@link ERRNO}). */
  readonly errno: number;

  /**
   * @param op the operation that failed
   * @param options `errno` the error number, `detail` a readable text (strerror), `hint` what
   *   usually causes it
   */
  constructor(op: string, options: { errno: number; detail?: string; hint?: string }) {
    const name = errnoName(options.errno);
    super(
      `${op} failed: ${name}${options.detail ? ` (${options.detail})` : ""}` +
        (options.hint ? `; ${options.hint}` : ""),
    );
    this.name = "VtError";
    this.op = op;
    this.errno = options.errno;
  }
}

/** The symbolic name of an errno value from {@link ERRNO}, else `errno <n>`. */
export function errnoName(errno: number): string {
  for (const [name, value] of Object.entries(ERRNO)) if (value === errno) return name;
  return `errno ${errno}`;
}

/**
 * The VT operations the console needs. All are synchronous and never block.
 *
 * Every method throws {@link VtError} when the kernel refuses (EPERM: the VT is not the caller's
 * controlling terminal and it lacks CAP_SYS_TTY_CONFIG; ENOTTY: the fd is not a VT; EINVAL: a bad
 * argument, or `VT_RELDISP` with no release pending).
 */
export interface VtControl {
  /**
   * The number (1–63) of the VT this control works on (its fd), from `fstat(2)`: a character
   * device with major {@link TTY_MAJOR} and minor = VT number. `VT_GETSTATE` cannot tell this (it
   * reports the VT in front).
   *
   * @throws {VtError} ENOTTY when the fd is not a numbered VT (`/dev/tty0`, a pty, a file)
   */
  vtNumber(): number;
  /** `VT_GETSTATE`: which VT is in front and which are in use. */
  getState(): VtState;
  /** `VT_GETMODE`: the switch mode of this VT. */
  getMode(): VtModeInfo;
  /**
   * `VT_SETMODE`: `"process"` = `VT_PROCESS` with relsig = acqsig = SIGUSR2 (the kernel records
   * the calling process as the one to signal and to answer); `"auto"` = `VT_AUTO`. Either drops
   * a pending release request.
   *
   * @throws {VtError} EPERM without the VT as controlling terminal (and no CAP_SYS_TTY_CONFIG)
   */
  setMode(mode: VtSwitchMode): void;
  /**
   * `VT_RELDISP`: {@link VT_RELDISP_REFUSE} (0) refuses and forgets the pending switch away,
   * {@link VT_RELDISP_ALLOW} (1) completes it, {@link VT_ACKACQ} (2) acknowledges an acquire.
   *
   * @throws {VtError} EINVAL when the VT is not in `VT_PROCESS`, or no release is pending and the
   *   answer is not `VT_ACKACQ` (that is: the signal was an acquire)
   */
  relDisp(answer: RelDispAnswer): void;
  /**
   * `VT_ACTIVATE`: asks the kernel to bring VT `vt` (1–63) to the front. Returns before the
   * switch happens; the kernel may also ignore it (VT_PROCESS owner refuses, `VT_LOCKSWITCH`,
   * a graphical VT in `VT_AUTO`). Poll {@link getState} to see the outcome.
   *
   * @throws {RangeError} when `vt` is not 1–63
   */
  activate(vt: number): void;
  /** `tcflush(fd, TCIFLUSH)`: discards input received but not yet read. */
  flushInput(): void;
  /** Releases what the control opened (the libc handle; the fd if it opened one). Idempotent. */
  close(): void;
}

/** Encodes `struct vt_mode` for `VT_SETMODE`: relsig and acqsig are always SIGUSR2. */
export function encodeVtMode(mode: VtSwitchMode): Uint8Array {
  const buf = new Uint8Array(8);
  const dv = new DataView(buf.buffer);
  const process = mode === "process";
  dv.setInt8(0, process ? VT_PROCESS : VT_AUTO);
  dv.setInt8(1, 0); // waitv
  dv.setInt16(2, process ? SIGUSR2_NUMBER : 0, true); // relsig
  dv.setInt16(4, process ? SIGUSR2_NUMBER : 0, true); // acqsig
  dv.setInt16(6, 0, true); // frsig: ignored, forced to 0 by the kernel
  return buf;
}

/** Decodes the 8 bytes of `struct vt_mode` (little endian). */
export function decodeVtMode(buf: Uint8Array): VtModeInfo {
  const dv = new DataView(buf.buffer, buf.byteOffset, 8);
  return {
    mode: dv.getInt8(0),
    waitv: dv.getInt8(1),
    relsig: dv.getInt16(2, true),
    acqsig: dv.getInt16(4, true),
    frsig: dv.getInt16(6, true),
  };
}

/** Decodes the 6 bytes of `struct vt_stat` (little endian). */
export function decodeVtState(buf: Uint8Array): VtState {
  const dv = new DataView(buf.buffer, buf.byteOffset, 6);
  return {
    active: dv.getUint16(0, true),
    signal: dv.getUint16(2, true),
    state: dv.getUint16(4, true),
  };
}

/**
 * The VT number of a device number, or null when it is not a numbered VT. Decodes glibc's
 * `dev_t` (`man 3 makedev`: major = bits 8–19 and 32–43, minor = bits 0–7 and 20–31).
 *
 * @param rdev `st_rdev` of a character device
 * @returns 1–63 for `/dev/tty1`–`/dev/tty63`; null for `/dev/tty0` (the "current VT" alias),
 *   serial ports (major 4, minor ≥ 64) and anything else
 */
export function vtNumberFromRdev(rdev: bigint): number | null {
  const major = Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
  const minor = Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));
  if (major !== TTY_MAJOR || minor < 1 || minor > MAX_VT) return null;
  return minor;
}

/**
 * Where the real control looks for libc, in order. The first path the process may `dlopen`
 * (its `--allow-ffi` names it exactly) and that exists is used. x86_64 glibc layouts only.
 */
export const LIBC_CANDIDATES: readonly string[] = [
  "/lib/x86_64-linux-gnu/libc.so.6",
  "/usr/lib/x86_64-linux-gnu/libc.so.6",
  "/lib64/libc.so.6",
  "/usr/lib64/libc.so.6",
];

// x86_64 `struct stat` (glibc, `man 2 fstat`): 144 bytes, st_mode (u32) at 24, st_rdev (u64) at 40.
const STAT_SIZE = 144;
const STAT_MODE_OFFSET = 24;
const STAT_RDEV_OFFSET = 40;
const S_IFMT = 0o170000;
const S_IFCHR = 0o020000;
// open(2) flags on x86_64.
const O_RDWR = 0o2;
const O_NOCTTY = 0o400;
const O_CLOEXEC = 0o2000000;

const SYMBOLS = {
  ioctl_ptr: { name: "ioctl", parameters: ["i32", "u64", "buffer"], result: "i32" },
  ioctl_int: { name: "ioctl", parameters: ["i32", "u64", "u64"], result: "i32" },
  tcflush: { parameters: ["i32", "i32"], result: "i32" },
  fstat: { parameters: ["i32", "buffer"], result: "i32" },
  open: { parameters: ["buffer", "i32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
  // Scoped --allow-ffi forbids Deno.UnsafePointerView: copy errno out through memcpy.
  memcpy: { parameters: ["buffer", "pointer", "usize"], result: "pointer" },
  strerror_r: { name: "__xpg_strerror_r", parameters: ["i32", "buffer", "usize"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>;

/** Options of {@link openLibcVt}. */
export interface LibcVtOptions {
  /** The fd to work on (default 0: the VT systemd hands over as stdin). */
  fd?: number;
  /**
   * Instead of `fd`, open this device (`O_RDWR | O_NOCTTY | O_CLOEXEC` through libc, so no Deno
   * read permission is involved) and close it in {@link VtControl.close}. It does not become the
   * controlling terminal: without CAP_SYS_TTY_CONFIG only `getState`/`getMode`/`vtNumber` work.
   * For diagnostics and tests.
   */
  device?: string;
  /** Where to look for libc (default {@link LIBC_CANDIDATES}). */
  libcPaths?: readonly string[];
}

/**
 * Opens the real {@link VtControl}: `dlopen`s libc from the first of `libcPaths` that the
 * process may load and that exists.
 *
 * @throws {Error} when no candidate can be loaded (the text names the `--allow-ffi` flag to use),
 *   or on an architecture other than x86_64
 * @throws {VtError} when `device` cannot be opened
 */
export function openLibcVt(options: LibcVtOptions = {}): VtControl {
  if (Deno.build.os !== "linux" || Deno.build.arch !== "x86_64") {
    throw new Error(
      `VT control supports linux/x86_64 only (struct layouts), not ${Deno.build.os}/${Deno.build.arch}`,
    );
  }
  const paths = options.libcPaths ?? LIBC_CANDIDATES;
  const tried: string[] = [];
  let libc: Libc | null = null;
  for (const path of paths) {
    let state: Deno.PermissionState;
    try {
      state = Deno.permissions.querySync({ name: "ffi", path }).state;
    } catch {
      state = "denied";
    }
    if (state !== "granted") {
      tried.push(`${path} (no --allow-ffi for it)`);
      continue;
    }
    try {
      libc = Deno.dlopen(path, SYMBOLS);
      break;
    } catch (err) {
      tried.push(`${path} (${(err as Error).message})`);
    }
  }
  if (!libc) {
    throw new Error(
      `cannot load libc for VT control; run with --allow-ffi=<one of ${paths.join(", ")}>; tried: ${
        tried.join("; ")
      }`,
    );
  }
  try {
    return new LibcVt(libc, { fd: options.fd ?? 0, device: options.device });
  } catch (err) {
    libc.close();
    throw err;
  }
}

/** The real control over libc (see {@link openLibcVt}). */
class LibcVt implements VtControl {
  readonly #libc: Libc;
  readonly #fd: number;
  readonly #ownsFd: boolean;
  #closed = false;

  constructor(libc: Libc, options: { fd: number; device?: string }) {
    this.#libc = libc;
    if (options.device !== undefined) {
      const path = new TextEncoder().encode(options.device + "\0");
      const fd = libc.symbols.open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
      if (fd < 0) throw this.#error(`open(${options.device})`);
      this.#fd = fd;
      this.#ownsFd = true;
    } else {
      this.#fd = options.fd;
      this.#ownsFd = false;
    }
  }

  vtNumber(): number {
    const st = new Uint8Array(STAT_SIZE);
    this.#check(`fstat(${this.#fd})`, this.#libc.symbols.fstat(this.#fd, st));
    const dv = new DataView(st.buffer);
    const mode = dv.getUint32(STAT_MODE_OFFSET, true);
    const vt = (mode & S_IFMT) === S_IFCHR
      ? vtNumberFromRdev(dv.getBigUint64(STAT_RDEV_OFFSET, true))
      : null;
    if (vt === null) {
      throw new VtError(`fstat(${this.#fd})`, {
        errno: ERRNO.ENOTTY,
        hint: `fd ${this.#fd} is not a numbered virtual console (/dev/tty1–/dev/tty63)`,
      });
    }
    return vt;
  }

  getState(): VtState {
    const buf = new Uint8Array(6);
    this.#check("VT_GETSTATE", this.#libc.symbols.ioctl_ptr(this.#fd, BigInt(VT_GETSTATE), buf));
    return decodeVtState(buf);
  }

  getMode(): VtModeInfo {
    const buf = new Uint8Array(8);
    this.#check("VT_GETMODE", this.#libc.symbols.ioctl_ptr(this.#fd, BigInt(VT_GETMODE), buf));
    return decodeVtMode(buf);
  }

  setMode(mode: VtSwitchMode): void {
    const r = this.#libc.symbols.ioctl_ptr(this.#fd, BigInt(VT_SETMODE), encodeVtMode(mode));
    this.#check(`VT_SETMODE(${mode === "process" ? "VT_PROCESS" : "VT_AUTO"})`, r);
  }

  relDisp(answer: RelDispAnswer): void {
    if (answer !== 0 && answer !== 1 && answer !== VT_ACKACQ) {
      throw new RangeError(`VT_RELDISP answer must be 0, 1 or 2, got ${answer}`);
    }
    const r = this.#libc.symbols.ioctl_int(this.#fd, BigInt(VT_RELDISP), BigInt(answer));
    this.#check(`VT_RELDISP(${answer})`, r);
  }

  activate(vt: number): void {
    if (!Number.isInteger(vt) || vt < 1 || vt > MAX_VT) {
      throw new RangeError(`VT number must be 1–${MAX_VT}, got ${vt}`);
    }
    this.#check(
      `VT_ACTIVATE(${vt})`,
      this.#libc.symbols.ioctl_int(this.#fd, BigInt(VT_ACTIVATE), BigInt(vt)),
    );
  }

  flushInput(): void {
    this.#check("tcflush(TCIFLUSH)", this.#libc.symbols.tcflush(this.#fd, TCIFLUSH));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsFd) this.#libc.symbols.close(this.#fd);
    this.#libc.close();
  }

  #check(op: string, r: number): void {
    if (r < 0) throw this.#error(op);
  }

  #error(op: string): VtError {
    const errno = this.#errno();
    const text = new Uint8Array(128);
    this.#libc.symbols.strerror_r(errno, text, BigInt(text.length));
    const end = text.indexOf(0);
    const detail = new TextDecoder().decode(text.subarray(0, end < 0 ? text.length : end));
    const hint = errno === ERRNO.EPERM && /^VT_(SETMODE|RELDISP|ACTIVATE)/.test(op)
      ? "the VT must be this process's controlling terminal (systemd StandardInput=tty, " +
        "TTYPath=), or the process needs CAP_SYS_TTY_CONFIG"
      : undefined;
    return new VtError(op, { errno, detail, hint });
  }

  #errno(): number {
    const out = new Int32Array(1);
    this.#libc.symbols.memcpy(out, this.#libc.symbols.__errno_location(), 4n);
    return out[0];
  }
}
