/**
 * Where a production install puts things, as data: every path, unit name and user name that
 * provisioning writes and the templates (`deploy/units.ts`, `deploy/autostart.ts`,
 * `deploy/pam.ts`) name, derived from one {@link DeployConfig}. Pure: no I/O.
 *
 * All paths are the final paths on the target system. Provisioning may write them under a root
 * prefix (`--root`), but the file contents always name these paths.
 *
 * @module
 */

/** Default install dir of the code, the pinned Deno binary and the read-only `DENO_DIR`. */
export const DEFAULT_INSTALL_DIR = "/usr/local/lib/secrets-dispatcher";
/** Base of the companions' homes (one subdir per desktop user). */
export const STATE_BASE = "/var/lib/secrets-dispatcher";
/** Base of the companions' runtime dirs (one subdir per desktop user) and the unlock sockets. */
export const RUNTIME_BASE = "/run/secrets-dispatcher";
/** Base of the per-user configuration written by provisioning (root-owned, 0755). */
export const CONFIG_BASE = "/etc/secrets-dispatcher";
/** The standard system bus socket (dbus-daemon(1)). */
export const SYSTEM_BUS_SOCKET = "/run/dbus/system_bus_socket";
/** Shell of the companion user: it never logs in. */
export const NOLOGIN_SHELL = "/usr/sbin/nologin";
/** The pam-auth-update(8) profile name (a file in `/usr/share/pam-configs/`). */
export const PAM_PROFILE_NAME = "secrets-dispatcher";

/**
 * The Secret Service backend run as the companion on its private bus.
 *
 * - `gnome-keyring`: `gnome-keyring-daemon --foreground --components=secrets`
 * - `gopass`: `gopass-secret-service` (its absolute path, resolved by provisioning)
 * - `command`: any absolute command line (split on spaces, no quoting)
 */
export type Backend =
  | { kind: "gnome-keyring"; argv: string[] }
  | { kind: "gopass"; argv: string[] }
  | { kind: "command"; argv: string[] };

/** What a deployment is made from (the command line after lookups and defaults). */
export interface DeployConfig {
  /** The desktop user (`alice`): `[a-z_][a-z0-9_-]*`, at most 24 characters. */
  user: string;
  /** Her uid (from `getent passwd`). */
  uid: number;
  /** Her home (from `getent passwd`); her autostart, user unit and git config go there. */
  home: string;
  /** The VT number of the console, 7..63 (`/dev/tty<vt>`; 1-6 belong to logind's autovts). */
  vt: number;
  /** The backend command, with an absolute program path. */
  backend: Backend;
  /** Install dir of the code (default {@link DEFAULT_INSTALL_DIR}). */
  installDir?: string;
  /** System bus socket (default {@link SYSTEM_BUS_SOCKET}). */
  systemBusSocket?: string;
  /** gpg binary the daemon runs (default `/usr/bin/gpg`). */
  gpg?: string;
  /** dbus-daemon binary for the companion bus (default `/usr/bin/dbus-daemon`). */
  dbusDaemon?: string;
}

/**
 * Names of the systemd units of one deployment (system units unless noted). The companion's
 * units are instance-specific files (`secrets-dispatcher-daemon@alice.service`, no template):
 * systemd loads an instance from its own file when one exists (systemd.unit(5)), and the
 * signer's error message names `secrets-dispatcher-daemon@$USER`. Their contents differ per
 * user (uids, VT), which a template could not express.
 */
export interface UnitNames {
  /** The companion's private bus (dbus-daemon). */
  bus: string;
  /** The Secret Service backend on the companion bus. */
  backend: string;
  /** The approval daemon. */
  daemon: string;
  /** The trusted console on `/dev/tty<vt>`. */
  console: string;
  /**
   * The target that holds the four companion units together (`PartOf=`): it starts with the
   * desktop user's login, and stopping it (the lock) stops them all.
   */
  companion: string;
  /** The root-only socket receiving the login password from the PAM helper. */
  unlockSocket: string;
  /** The per-connection template service behind {@link unlockSocket} (`…@.service`). */
  unlockService: string;
  /** The agent's `systemd --user` unit (in the desktop user's home). */
  agent: string;
}

/** Every name and path of one deployment. */
export interface Deployment {
  user: string;
  uid: number;
  home: string;
  /** The companion user, `secrets-<user>`. */
  companion: string;
  vt: number;
  backend: Backend;
  /** `/dev/tty<vt>`. */
  tty: string;
  installDir: string;
  /** The pinned Deno binary, `<installDir>/bin/deno`. */
  deno: string;
  /** The pre-filled, root-owned, read-only `DENO_DIR`, `<installDir>/deno-dir`. */
  denoDir: string;
  /** `git config gpg.program` value: a wrapper that runs `sign/gpg_front.sh`. */
  gpgWrapper: string;
  /** The agent launcher (XDG autostart `Exec=` and the user unit's `ExecStart=`). */
  agentLauncher: string;
  /** The script pam_exec(8) runs (`<installDir>/libexec/pam-unlock`). */
  pamHelper: string;
  systemBusSocket: string;
  gpg: string;
  dbusDaemon: string;
  /** `/var/lib/secrets-dispatcher`. */
  stateBase: string;
  /** The companion's home, 0700: the secret store (keyrings, GnuPG home, history). */
  companionHome: string;
  /** The daemon's state dir (history), `<home>/state`. */
  stateDir: string;
  /** The companion's GnuPG home, `<home>/gnupg`. */
  gnupgHome: string;
  /** `/run/secrets-dispatcher`. */
  runtimeBase: string;
  /** The companion's runtime dir, 0700: the companion bus socket, the keyring control dir. */
  runtimeDir: string;
  /** `<runtimeDir>/bus`. */
  companionBusSocket: string;
  /** `/run/secrets-dispatcher/unlock-<user>.sock`, root 0600. */
  unlockSocket: string;
  /** `/etc/secrets-dispatcher`. */
  configBase: string;
  /** `/etc/secrets-dispatcher/<user>`. */
  configDir: string;
  /** The companion bus configuration, `<configDir>/companion-bus.conf`. */
  companionBusConfig: string;
  /** What was provisioned (JSON), `<configDir>/provision.json`. */
  record: string;
  /** The console's per-install phrase, `<configDir>/console-phrase` (companion 0400). */
  phraseFile: string;
  /** `/etc/systemd/system`. */
  unitDir: string;
  units: UnitNames;
  /** `/etc/dbus-1/system.d/org.secretsdispatcher.Dispatcher1.u<uid>.conf`. */
  policyFile: string;
  /** `/etc/tmpfiles.d/secrets-dispatcher-<user>.conf`. */
  tmpfilesFile: string;
  /** `/etc/polkit-1/rules.d/50-secrets-dispatcher-<user>.rules` (see `deploy/polkit.ts`). */
  polkitRuleFile: string;
  /** `/usr/share/pam-configs/secrets-dispatcher`. */
  pamProfile: string;
  /** The desktop user's `~/.config/systemd/user`. */
  userUnitDir: string;
  /** The desktop user's `~/.config/autostart/secrets-dispatcher-agent.desktop`. */
  autostartFile: string;
}

const NAME = /^[a-z_][a-z0-9_-]{0,23}$/;

/**
 * Checks a desktop user name: `[a-z_][a-z0-9_-]*`, at most 24 characters (so that
 * `secrets-<user>` fits useradd's 32), no characters that systemd, sh, XML or Deno's
 * comma-separated permission lists would treat specially.
 *
 * @throws {Error} naming the problem
 */
export function checkUserName(user: string): void {
  if (!NAME.test(user)) {
    throw new Error(
      `user name ${
        JSON.stringify(user)
      } is not supported: use [a-z_][a-z0-9_-]*, at most 24 characters`,
    );
  }
}

/**
 * Checks that a path can be written into units, scripts and Deno permission lists as is:
 * absolute, no whitespace, quotes, backslashes, `$`, `%`, `,`, `;` or control characters.
 *
 * @throws {Error} naming the path
 */
export function checkPlainPath(path: string, what: string): void {
  if (!path.startsWith("/") || /[\s"'\\$%,;`\p{Cc}]/u.test(path)) {
    throw new Error(
      `${what} must be an absolute path without spaces or special characters: ${path}`,
    );
  }
}

/**
 * Derives every name and path of a deployment.
 *
 * @throws {Error} when the user name, VT, uid or a path is unsupported
 */
export function deployment(config: DeployConfig): Deployment {
  checkUserName(config.user);
  if (!Number.isInteger(config.vt) || config.vt < 7 || config.vt > 63) {
    throw new Error(
      `--vt must be 7..63 (1-6 are logind's autovt range, NAutoVTs=6, ReserveVT=6), got ${config.vt}`,
    );
  }
  if (!Number.isSafeInteger(config.uid) || config.uid < 0) {
    throw new Error(`bad uid ${config.uid}`);
  }
  const user = config.user;
  const installDir = config.installDir ?? DEFAULT_INSTALL_DIR;
  const companionHome = `${STATE_BASE}/${user}`;
  const runtimeDir = `${RUNTIME_BASE}/${user}`;
  const configDir = `${CONFIG_BASE}/${user}`;
  const d: Deployment = {
    user,
    uid: config.uid,
    home: config.home,
    companion: `secrets-${user}`,
    vt: config.vt,
    backend: config.backend,
    tty: `/dev/tty${config.vt}`,
    installDir,
    deno: `${installDir}/bin/deno`,
    denoDir: `${installDir}/deno-dir`,
    gpgWrapper: `${installDir}/bin/secrets-dispatcher-gpg`,
    agentLauncher: `${installDir}/bin/secrets-dispatcher-agent`,
    pamHelper: `${installDir}/libexec/pam-unlock`,
    systemBusSocket: config.systemBusSocket ?? SYSTEM_BUS_SOCKET,
    gpg: config.gpg ?? "/usr/bin/gpg",
    dbusDaemon: config.dbusDaemon ?? "/usr/bin/dbus-daemon",
    stateBase: STATE_BASE,
    companionHome,
    stateDir: `${companionHome}/state`,
    gnupgHome: `${companionHome}/gnupg`,
    runtimeBase: RUNTIME_BASE,
    runtimeDir,
    companionBusSocket: `${runtimeDir}/bus`,
    unlockSocket: `${RUNTIME_BASE}/unlock-${user}.sock`,
    configBase: CONFIG_BASE,
    configDir,
    companionBusConfig: `${configDir}/companion-bus.conf`,
    record: `${configDir}/provision.json`,
    phraseFile: `${configDir}/console-phrase`,
    unitDir: "/etc/systemd/system",
    units: {
      bus: `secrets-dispatcher-bus@${user}.service`,
      backend: `secrets-dispatcher-backend@${user}.service`,
      daemon: `secrets-dispatcher-daemon@${user}.service`,
      console: `secrets-dispatcher-console@${user}.service`,
      companion: `secrets-dispatcher-companion@${user}.target`,
      unlockSocket: `secrets-dispatcher-unlock-${user}.socket`,
      unlockService: `secrets-dispatcher-unlock-${user}@.service`,
      agent: "secrets-dispatcher-agent.service",
    },
    policyFile: `/etc/dbus-1/system.d/org.secretsdispatcher.Dispatcher1.u${config.uid}.conf`,
    tmpfilesFile: `/etc/tmpfiles.d/secrets-dispatcher-${user}.conf`,
    polkitRuleFile: `/etc/polkit-1/rules.d/50-secrets-dispatcher-${user}.rules`,
    pamProfile: `/usr/share/pam-configs/${PAM_PROFILE_NAME}`,
    userUnitDir: `${config.home}/.config/systemd/user`,
    autostartFile: `${config.home}/.config/autostart/secrets-dispatcher-agent.desktop`,
  };
  for (
    const [what, path] of [
      ["the home of the desktop user", d.home],
      ["the install dir", d.installDir],
      ["the system bus socket", d.systemBusSocket],
      ["gpg", d.gpg],
      ["dbus-daemon", d.dbusDaemon],
      ["the backend program", d.backend.argv[0] ?? ""],
    ] as const
  ) checkPlainPath(path, what);
  for (const arg of d.backend.argv) {
    if (/[\s"'\\$%`\p{Cc}]/u.test(arg)) {
      throw new Error(`backend argument not supported (special characters): ${arg}`);
    }
  }
  return d;
}

/** The system units of a deployment that `systemctl enable` installs (socket included). */
export function enabledUnits(d: Deployment): string[] {
  return [
    d.units.bus,
    d.units.backend,
    d.units.daemon,
    d.units.console,
    d.units.companion,
    d.units.unlockSocket,
  ];
}
