#!/usr/bin/env bash
# Installs what secrets-dispatcher needs on a fresh Debian 12 machine (as root, or with sudo):
# the Debian packages (dbus-daemon, gpg, git, python3-dbus for the policy test, kbd, gnome-keyring
# and the Secret Service clients the tests drive, libsecret-1-dev to build git-credential-libsecret,
# systemd for systemctl --root and systemd-analyze verify, pamtester for the PAM hand-off test),
# Deno from the npm registry (pinned), and the project's npm dependencies (deno install --frozen).
# With --vm it also installs what the VM end-to-end test needs on the host (deno task e2e:vm):
# debootstrap, qemu-system-x86 and e2fsprogs.
# Safe to run again: it skips what is already there.
set -euo pipefail
DENO_VERSION=2.9.6
PACKAGES=(dbus-daemon dbus-bin gnupg gpg-agent git procps util-linux passwd python3-dbus kbd
  gnome-keyring libsecret-tools python3-secretstorage libsecret-1-dev pkg-config gcc make
  systemd pamtester)
VM_PACKAGES=(debootstrap qemu-system-x86 e2fsprogs)
case ${1:-} in
  --vm) PACKAGES+=("${VM_PACKAGES[@]}") ;;
  "") ;;
  *) echo "usage: dev/setup.sh [--vm]" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

if ! command -v deno >/dev/null || [ "$(deno --version | head -n1 | cut -d' ' -f2)" != "$DENO_VERSION" ]; then
  echo "setup: installing deno $DENO_VERSION from npm"
  sudo_ npm install -g --no-fund --no-audit "deno@$DENO_VERSION" >/dev/null 2>&1
  deno --version | head -n1
fi

deno install --frozen --quiet
echo "setup: done"
