#!/bin/sh
# secrets-dispatcher gpg.program front (runs as the desktop user, started by git).
#
# Every call that is not a detached signature goes to the local gpg unchanged (same argv, stdin,
# stdout, stderr, exit code) before any Deno process starts: --verify, --version, key listings.
# Signing calls run the Deno signer with only the system bus socket, read-only access to this
# repository's git dirs and /dev/tty (the flags below are kept identical to
# deploy/permissions.ts by deploy/permissions_test.ts).
#
# Environment: SD_GPG (local gpg, default /usr/bin/gpg), SD_DENO (deno, default from PATH),
# DBUS_SYSTEM_BUS_ADDRESS, SD_DISPATCHER_UID (for tests).
set -u
gpg=${SD_GPG:-/usr/bin/gpg}

detach=0 sign=0 skip=0
for a in "$@"; do
  if [ "$skip" = 1 ]; then skip=0; continue; fi
  case $a in
    --detach-sign|--detach-sig) detach=1 ;;
    --sign) sign=1 ;;
    --local-user|--status-fd|--output|--keyid-format) skip=1 ;;
    --*) ;;
    -?*)
      flags=${a#-}
      head=${flags%%[uo]*}
      case $head in *b*) detach=1 ;; esac
      case $head in *s*) sign=1 ;; esac
      if [ "$head" != "$flags" ] && [ "${flags#"$head"?}" = "" ]; then skip=1; fi
      ;;
  esac
done
if [ "$detach$sign" != 11 ]; then exec "$gpg" "$@"; fi

here=$(dirname "$(readlink -f "$0")")
root=$(dirname "$here")
if ! dirs=$(git rev-parse --absolute-git-dir --git-common-dir 2>/dev/null); then
  echo "[GNUPG:] FAILURE sign 0" >&2
  echo "secrets-dispatcher: not inside a git repository; cannot sign from here" >&2
  exit 2
fi
git_dir=$(printf '%s\n' "$dirs" | sed -n 1p)
common_dir=$(cd "$(printf '%s\n' "$dirs" | sed -n 2p)" && pwd -P)
work_tree=$(pwd -P)
case ${DBUS_SYSTEM_BUS_ADDRESS:-} in
  "") sock=/run/dbus/system_bus_socket ;;
  unix:path=*) sock=${DBUS_SYSTEM_BUS_ADDRESS#unix:path=}; sock=${sock%%[,;]*} ;;
  *)
    echo "[GNUPG:] FAILURE sign 0" >&2
    echo "secrets-dispatcher: only unix:path= system bus addresses are supported" >&2
    exit 2 ;;
esac

# BEGIN deno flags (generated from deploy/permissions.ts; do not edit by hand)
exec "${SD_DENO:-deno}" run --no-prompt --cached-only --frozen "--config=$root/deno.json" "--allow-env=DBUS_SYSTEM_BUS_ADDRESS,SD_DISPATCHER_UID" "--allow-read=$sock,$git_dir,$common_dir" "--allow-write=$sock,/dev/tty" "--allow-net=unix:$sock" "--allow-sys=uid" "$root/sign/main.ts" \
  --git-dir "$git_dir" --common-dir "$common_dir" --work-tree "$work_tree" -- "$@"
# END deno flags
