/**
 * Running the companion's real gpg: resolving a key spec to one fingerprint and making a
 * detached armored signature. Behind the {@link GpgRunner} interface so the request logic can be
 * unit-tested with a fake.
 *
 * Sources: GnuPG `doc/DETAILS` (colon listings, status lines; `/usr/share/doc/gnupg/DETAILS.gz`),
 * shared/reference/git-gpg-program.md §2.1 and §5 #10, #15, #22, #23.
 *
 * @module
 */

/** A key spec resolved in the companion's keyring. */
export interface ResolvedKey {
  /** What to pass to `--local-user`: the primary fingerprint, or `<subkey fpr>!` for an exact subkey. */
  localUser: string;
  /** Primary key fingerprint (40 or 64 hex, uppercase). */
  fingerprint: string;
  /** First user id of the key, raw. */
  uid: string | null;
}

/** A signature made by gpg. */
export interface SignResult {
  /** The armored detached signature exactly as gpg wrote it. */
  signature: Uint8Array;
  /** gpg's `[GNUPG:] ` status lines, each ending in `\n`. */
  status: string;
}

/** Raised when gpg refuses or fails; `status` holds its status lines, `detail` its text. */
export class GpgError extends Error {
  /** gpg's status lines, if any. */
  readonly status: string;
  /**
   * @param message what failed
   * @param status gpg's status lines (may be empty)
   */
  constructor(message: string, status = "") {
    super(message);
    this.name = "GpgError";
    this.status = status;
  }
}

/** What the daemon needs from gpg. */
export interface GpgRunner {
  /**
   * Resolves a key spec (fingerprint, long/short id, `0x` prefix, `!` suffix, email,
   * `Name <email>`) to exactly one usable signing key.
   *
   * @throws {GpgError} when no key or more than one key matches, or the key cannot sign
   */
  resolveKey(spec: string): Promise<ResolvedKey>;
  /**
   * Makes a detached armored signature over `payload` with `key`.
   *
   * @throws {GpgError} when gpg fails (the status lines are kept)
   */
  sign(key: ResolvedKey, payload: Uint8Array): Promise<SignResult>;
  /**
   * Makes the companion's gpg-agent forget every cached passphrase (gpg-connect-agent(1),
   * `RELOADAGENT`). A home without a running agent has nothing cached: that is success.
   *
   * @throws {GpgError} when the agent is running and refuses
   */
  forgetPassphrases(): Promise<void>;
}

/** Options of {@link RealGpg}. */
export interface RealGpgOptions {
  /** gpg binary, e.g. `/usr/bin/gpg`. */
  gpg: string;
  /** gpg-connect-agent binary (default: beside `gpg`). */
  gpgConnectAgent?: string;
  /** The companion's GnuPG home; when undefined gpg's default (`~/.gnupg`) is used. */
  gnupgHome?: string;
  /** Kill gpg after this many milliseconds (default 60 000). */
  timeoutMs?: number;
}

/** {@link GpgRunner} that runs the real gpg with a clean environment and `LC_ALL=C`. */
export class RealGpg implements GpgRunner {
  #opts: Required<Omit<RealGpgOptions, "gnupgHome">> & { gnupgHome?: string };

  /** @param options binary, home and timeout */
  constructor(options: RealGpgOptions) {
    this.#opts = {
      timeoutMs: 60_000,
      gpgConnectAgent: `${options.gpg.replace(/[^/]*$/, "")}gpg-connect-agent`,
      ...options,
    };
  }

  async forgetPassphrases(): Promise<void> {
    const env: Record<string, string> = { LC_ALL: "C", PATH: "/usr/bin:/bin" };
    if (this.#opts.gnupgHome) env.GNUPGHOME = this.#opts.gnupgHome;
    // --no-autostart: an agent that is not running has forgotten everything already.
    const out = await new Deno.Command(this.#opts.gpgConnectAgent, {
      args: ["--no-autostart", "RELOADAGENT", "/bye"],
      env,
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(10_000),
    }).output();
    const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    if (out.success && !/^ERR /m.test(text)) return;
    if (/no gpg-agent running/i.test(text)) return;
    throw new GpgError(`gpg-connect-agent RELOADAGENT failed: ${text.trim().slice(0, 200)}`, "");
  }

  async resolveKey(spec: string): Promise<ResolvedKey> {
    const trimmed = spec.trim();
    if (trimmed === "" || trimmed.startsWith("-") || /[\0\n]/.test(trimmed)) {
      throw new GpgError(`unusable key spec ${JSON.stringify(spec)}`);
    }
    const exact = trimmed.endsWith("!");
    let query = exact ? trimmed.slice(0, -1) : trimmed;
    if (/^0x[0-9a-fA-F]+$/.test(query)) query = query.slice(2);
    const out = await this.#run(
      ["--with-colons", "--fixed-list-mode", "--list-secret-keys", "--", query],
      new Uint8Array(),
    );
    if (out.code !== 0) {
      throw new GpgError(
        `no secret key matches ${JSON.stringify(spec)} in the companion's keyring`,
      );
    }
    const keys = parseColonKeys(new TextDecoder().decode(out.stdout));
    const usable = keys.filter((k) => k.canSign);
    if (usable.length === 0) {
      throw new GpgError(
        keys.length === 0
          ? `no secret key matches ${JSON.stringify(spec)} in the companion's keyring`
          : `the key matching ${
            JSON.stringify(spec)
          } cannot sign (expired, revoked or no signing subkey)`,
      );
    }
    if (usable.length > 1) {
      throw new GpgError(
        `key spec ${JSON.stringify(spec)} is ambiguous: it matches ${usable.length} keys ` +
          `(${usable.map((k) => k.fingerprint).join(", ")}); use a full fingerprint`,
      );
    }
    const key = usable[0];
    if (exact) {
      const hex = query.toUpperCase();
      const sub = [key.fingerprint, ...key.subkeys].find((f) => f === hex || f.endsWith(hex));
      if (!sub) throw new GpgError(`key spec ${JSON.stringify(spec)} names no exact (sub)key`);
      return { localUser: `${sub}!`, fingerprint: key.fingerprint, uid: key.uid };
    }
    return { localUser: key.fingerprint, fingerprint: key.fingerprint, uid: key.uid };
  }

  async sign(key: ResolvedKey, payload: Uint8Array): Promise<SignResult> {
    const out = await this.#run(
      ["--status-fd=2", "--armor", "--detach-sign", "--local-user", key.localUser],
      payload,
    );
    const stderr = new TextDecoder().decode(out.stderr);
    const statusLines = stderr.split("\n").filter((l) => l.startsWith("[GNUPG:] "));
    const status = statusLines.map((l) => l + "\n").join("");
    const text = stderr.split("\n").filter((l) => l && !l.startsWith("[GNUPG:] ")).join("; ");
    if (out.code !== 0) {
      throw new GpgError(`gpg failed (exit ${out.code})${text ? `: ${text}` : ""}`, status);
    }
    if (!statusLines.some((l) => l.startsWith("[GNUPG:] SIG_CREATED "))) {
      throw new GpgError("gpg exited 0 but reported no SIG_CREATED", status);
    }
    const sig = new TextDecoder().decode(out.stdout);
    if (!sig.startsWith("-----BEGIN PGP SIGNATURE-----")) {
      throw new GpgError("gpg produced no armored signature", status);
    }
    return { signature: out.stdout, status };
  }

  async #run(
    args: string[],
    stdin: Uint8Array,
  ): Promise<{ code: number; stdout: Uint8Array; stderr: Uint8Array }> {
    const env: Record<string, string> = { LC_ALL: "C", PATH: "/usr/bin:/bin" };
    if (this.#opts.gnupgHome) env.GNUPGHOME = this.#opts.gnupgHome;
    const child = new Deno.Command(this.#opts.gpg, {
      args: ["--batch", "--no-tty", "--no-greeting", ...args],
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
    }, this.#opts.timeoutMs);
    try {
      const writer = child.stdin.getWriter();
      await writer.write(stdin).catch(() => {});
      await writer.close().catch(() => {});
      const out = await child.output();
      return { code: out.code, stdout: out.stdout, stderr: out.stderr };
    } finally {
      clearTimeout(timer);
    }
  }
}

interface ColonKey {
  fingerprint: string;
  subkeys: string[];
  uid: string | null;
  canSign: boolean;
}

/**
 * Parses `gpg --with-colons --list-secret-keys` output (GnuPG `doc/DETAILS`, "Format of the
 * colon listings"): `sec` starts a key, `fpr` follows each key record, `uid` field 10 is the
 * user id, field 12 of `sec` holds the capabilities (uppercase = usable for the whole key),
 * field 2 the validity (`r` revoked, `e` expired).
 */
export function parseColonKeys(text: string): ColonKey[] {
  const keys: ColonKey[] = [];
  let current: ColonKey | null = null;
  let last = "";
  for (const line of text.split("\n")) {
    const f = line.split(":");
    switch (f[0]) {
      case "sec": {
        const validity = f[1];
        current = {
          fingerprint: "",
          subkeys: [],
          uid: null,
          canSign: (f[11] ?? "").includes("S") && validity !== "r" && validity !== "e",
        };
        keys.push(current);
        last = "sec";
        break;
      }
      case "ssb":
        last = "ssb";
        break;
      case "fpr":
        if (!current) break;
        if (last === "sec") current.fingerprint = f[9];
        else if (last === "ssb") current.subkeys.push(f[9]);
        last = "";
        break;
      case "uid":
        if (current && current.uid === null) current.uid = unescapeColon(f[9] ?? "");
        break;
    }
  }
  return keys.filter((k) => k.fingerprint !== "");
}

/** Colon listings escape `:` and other bytes as `\xNN`. */
function unescapeColon(s: string): string {
  return s.replace(/\\x([0-9a-fA-F]{2})/g, (_, h) => String.fromCharCode(parseInt(h, 16)));
}
