/**
 * Parsing the gpg argument vector of a signing call, the way git and other callers spell it.
 *
 * Git always runs `gpg.program --status-fd=2 -bsau <key>` (git's `sign_buffer_gpg()`,
 * shared/reference/git-gpg-program.md §2.1); EGit uses `-bsau <key> --batch --no-tty
 * --status-fd 2 --output -` (§2.7). Anything that is not a plain detached armored signature to
 * stdout is refused: the front script sends every other call to the local gpg.
 *
 * @module
 */

/** A signing call. */
export interface SignArgs {
  /** The key spec exactly as given (`-u`/`--local-user`). */
  keySpec: string;
  /** The descriptor for status lines (`--status-fd`), or null when none was asked for. */
  statusFd: number | null;
}

/** Raised for argument vectors the signer will not handle. */
export class ArgsError extends Error {
  /** @param message what is wrong, for the user */
  constructor(message: string) {
    super(message);
    this.name = "ArgsError";
  }
}

/** Long options that take no value and change nothing for a detached signature. */
const HARMLESS = new Set([
  "--batch",
  "--no-tty",
  "--yes",
  "--armor",
  "--detach-sign",
  "--detach-sig",
  "--sign",
  "--no-verbose",
  "--quiet",
]);

/**
 * Parses a signing argv.
 *
 * @returns the key spec and status fd
 * @throws {ArgsError} when the call is not a detached armored signature to stdout with one key,
 *   or uses an option the signer does not support
 */
export function parseSignArgs(argv: string[]): SignArgs {
  let detach = false;
  let armor = false;
  let keySpec: string | null = null;
  let statusFd: number | null = null;
  const value = (i: number, name: string) => {
    if (i + 1 >= argv.length) throw new ArgsError(`${name} needs a value`);
    return argv[i + 1];
  };
  const setStatusFd = (v: string) => {
    if (!/^\d+$/.test(v)) throw new ArgsError(`bad --status-fd ${JSON.stringify(v)}`);
    statusFd = Number(v);
  };
  const setKey = (v: string) => {
    if (keySpec !== null && keySpec !== v) throw new ArgsError("more than one -u key");
    keySpec = v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = eq < 0 ? a : a.slice(0, eq);
      const inline = eq < 0 ? null : a.slice(eq + 1);
      switch (name) {
        case "--status-fd":
          setStatusFd(inline ?? value(i++, name));
          break;
        case "--local-user":
          setKey(inline ?? value(i++, name));
          break;
        case "--output": {
          const v = inline ?? value(i++, name);
          if (v !== "-") throw new ArgsError("only --output - (stdout) is supported");
          break;
        }
        case "--keyid-format":
          if (inline === null) i++;
          break;
        default:
          if (!HARMLESS.has(a)) throw new ArgsError(`unsupported option ${a} for remote signing`);
          if (a === "--armor") armor = true;
          if (a === "--detach-sign" || a === "--detach-sig") detach = true;
      }
      continue;
    }
    if (a.startsWith("-") && a.length > 1) {
      for (let j = 1; j < a.length; j++) {
        const c = a[j];
        if (c === "b") detach = true;
        else if (c === "s") continue; // sign: implied by -b
        else if (c === "a") armor = true;
        else if (c === "u" || c === "o") {
          const rest = a.slice(j + 1);
          const v = rest !== "" ? rest : value(i++, `-${c}`);
          if (c === "u") setKey(v);
          else if (v !== "-") throw new ArgsError("only -o - (stdout) is supported");
          break;
        } else throw new ArgsError(`unsupported option -${c} for remote signing`);
      }
      continue;
    }
    throw new ArgsError(`unexpected argument ${JSON.stringify(a)}: the payload is read from stdin`);
  }
  // `-b`/`--detach-sign` makes a detached signature with or without `-s` (gpg(1)).
  if (!detach) throw new ArgsError("not a detached signing call (-b)");
  if (!armor) throw new ArgsError("only armored signatures (-a) are supported");
  if (keySpec === null) throw new ArgsError("no key given (-u <key>)");
  return { keySpec, statusFd };
}
