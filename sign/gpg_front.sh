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
# gpg --detach-sign signs even without --sign; everything else goes to the local gpg.
if [ "$detach" != 1 ]; then exec "$gpg" "$@"; fi

here=$(dirname "$(readlink -f "$0")")
root=$(dirname "$here")
fail() {
  echo "[GNUPG:] FAILURE sign 0" >&2
  echo "secrets-dispatcher: $1" >&2
  exit 2
}
dirs=$(git rev-parse --absolute-git-dir --git-common-dir 2>/dev/null) ||
  fail "not inside a git repository; cannot sign from here"
git_dir=$(printf '%s\n' "$dirs" | sed -n 1p)
common_dir=$(cd "$(printf '%s\n' "$dirs" | sed -n 2p)" && pwd -P)
work_tree=$(pwd -P)
case ${DBUS_SYSTEM_BUS_ADDRESS:-} in
  "") sock=/run/dbus/system_bus_socket ;;
  unix:path=*) sock=${DBUS_SYSTEM_BUS_ADDRESS#unix:path=}; sock=${sock%%[,;]*} ;;
  *) fail "only unix:path= system bus addresses are supported" ;;
esac

# Deno cannot open /dev/tty without --allow-all, so the signer writes its notes ("waiting for
# approval ... request <id>") into a private FIFO that a cat copies to the terminal (or drops).
note_dir=$(mktemp -d "${TMPDIR:-/tmp}/secrets-dispatcher-sign.XXXXXX") ||
  fail "cannot make a temporary directory"
note=$note_dir/tty
mkfifo -m 600 "$note" || fail "cannot make a FIFO in $note_dir"
if (true >/dev/tty) 2>/dev/null; then tty=/dev/tty; else tty=/dev/null; fi
cat "$note" >"$tty" 2>/dev/null </dev/null &
cat_pid=$!

# Deno permission lists are comma-separated: a comma in a path would widen or break them.
for p in "$sock" "$git_dir" "$common_dir" "$note" "$root"; do
  case $p in *,*) rm -rf "$note_dir"; fail "paths with a comma are not supported: $p" ;; esac
done

# Run the signer in the background so that SIGINT/SIGTERM/SIGHUP to this script reach it (Ctrl-C
# also reaches it directly: same process group). A background job's stdin is /dev/null before its
# redirections apply, so git's payload is handed over through fd 3.
exec 3<&0
# BEGIN deno flags (generated from deploy/permissions.ts; do not edit by hand)
"${SD_DENO:-deno}" run --no-prompt --cached-only --frozen "--config=$root/deno.json" "--allow-env=DBUS_SYSTEM_BUS_ADDRESS,SD_DISPATCHER_UID" "--allow-read=$sock,$git_dir,$common_dir,$note" "--allow-write=$sock,$note" "--allow-net=unix:$sock" "--allow-sys=uid" "$root/sign/main.ts" \
  --git-dir "$git_dir" --common-dir "$common_dir" --work-tree "$work_tree" --tty-note "$note" -- "$@" <&3 3<&- &
# END deno flags
signer=$!
exec 3<&-
trap 'kill -TERM "$signer" 2>/dev/null' TERM HUP
trap 'kill -INT "$signer" 2>/dev/null' INT
rc=0
while :; do
  wait "$signer"
  rc=$?
  kill -0 "$signer" 2>/dev/null || break
done
# Unblock the cat if the signer never opened the FIFO (O_RDWR never blocks), then clean up.
exec 9<>"$note"
exec 9>&-
wait "$cat_pid" 2>/dev/null
rm -rf "$note_dir"
exit "$rc"
