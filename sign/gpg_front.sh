#!/bin/sh
# secrets-dispatcher gpg.program front (runs as the desktop user, started by git).
#
# Every call that is not a detached signature goes to the local gpg unchanged (same argv, stdin,
# stdout, stderr, exit code) before any Deno process starts: --verify, --version, key listings.
# Signing calls run the Deno signer with only the system bus socket, read-only access to this
# repository's git dirs and /dev/tty (the flags below are kept identical to
# deploy/permissions.ts by deploy/permissions_test.ts).
#
# Lifetime: a small watcher polls once a second whether git (this script's parent) or this script
# went away; then it stops the signer, whose request is withdrawn, and cleans up. Nothing is
# left running or in the temp dir (unless the front and its watcher are both SIGKILLed: then an
# empty temp dir stays; the request is still withdrawn by the signer itself).
#
# Environment: SD_GPG (local gpg, default /usr/bin/gpg), SD_DENO (deno, default from PATH),
# DBUS_SYSTEM_BUS_ADDRESS, SD_DISPATCHER_UID (for tests), TMPDIR.
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
git_pid=$PPID front_pid=$$
note_dir='' cat_pid='' signer='' watcher=''
if (true >/dev/tty) 2>/dev/null; then tty=/dev/tty; else tty=/dev/null; fi

# git reads our stderr as the status channel and only says "gpg failed to sign the data", so a
# refusal also goes to the terminal (unless stderr is that terminal already).
fail() {
  echo "[GNUPG:] FAILURE sign 0" >&2
  echo "secrets-dispatcher: $1" >&2
  if [ "$tty" = /dev/tty ] && ! [ -t 2 ]; then
    { echo "secrets-dispatcher: $1" >/dev/tty; } 2>/dev/null
  fi
  exit 2
}

# Sets $parent to the parent pid of process $1 (a pid or "self"), or to "" when it is gone or a
# zombie. Reads /proc with the shell's own `read` (no process; /proc/self is this shell).
parent_of() {
  parent='' stat=''
  { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 0
  stat=${stat##*) }
  case $stat in Z*|X*|x*) return 0 ;; esac
  stat=${stat#* }
  parent=${stat%% *}
}

# Unblocks the cat if nobody opened the FIFO for writing (O_RDWR never blocks), then removes the
# temp dir. `true` is no special builtin: a failed redirection does not end the shell.
remove_notes() {
  if [ -n "$note_dir" ]; then
    [ -p "$note_dir/tty" ] && true 9<>"$note_dir/tty" 2>/dev/null
    rm -rf "$note_dir"
  fi
}

cleanup() {
  [ -n "$watcher" ] && kill -TERM "$watcher" 2>/dev/null
  [ -n "$signer" ] && kill -TERM "$signer" 2>/dev/null
  remove_notes
  [ -n "$cat_pid" ] && wait "$cat_pid" 2>/dev/null
  return 0
}
trap cleanup EXIT
# Until the signer runs, a signal ends this script (and the EXIT trap cleans up); then it is
# passed on to the signer, which withdraws its request and exits.
on_signal() {
  if [ -n "$signer" ]; then kill "-$1" "$signer" 2>/dev/null; else exit 1; fi
}
trap 'on_signal TERM' TERM
trap 'on_signal HUP' HUP
trap 'on_signal INT' INT

# Every refusal comes before anything starts.
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
# Deno permission lists are comma-separated: a comma in a path would widen or break them.
no_comma() {
  for p in "$@"; do
    case $p in *,*) fail "paths with a comma are not supported: $p" ;; esac
  done
}
no_comma "$sock" "$git_dir" "$common_dir" "$root"

# Deno cannot open /dev/tty without --allow-all, so the signer writes its notes ("waiting for
# approval ... request <id>") into a private FIFO that a cat copies to the terminal (or drops).
note_dir=$(mktemp -d "${TMPDIR:-/tmp}/secrets-dispatcher-sign.XXXXXX") || {
  note_dir=''
  fail "cannot make a temporary directory"
}
note=$note_dir/tty
no_comma "$note"
mkfifo -m 600 "$note" || fail "cannot make a FIFO in $note_dir"
cat "$note" >"$tty" 2>/dev/null </dev/null &
cat_pid=$!

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

# The watcher (a subshell; its parent is this script, whose parent is git). When git goes (a
# killed git: this script gets another parent) or this script goes (killed with SIGKILL: the
# watcher gets another parent), it stops the signer, which withdraws its request, and waits for
# it (up to 10 s, then SIGKILL: the daemon cancels a request whose connection ends). If this
# script is gone it also cleans up. Without /proc it falls back to `kill -0`, which a zombie
# passes. Its stdio is /dev/null: it must not hold git's pipes open.
watch() {
  nap=''
  trap '[ -n "$nap" ] && kill "$nap" 2>/dev/null; exit 0' TERM
  while :; do
    sleep 1 &
    nap=$!
    wait "$nap"
    nap=''
    if [ -r /proc/self/stat ]; then
      parent_of self
      [ "$parent" = "$front_pid" ] || break
      parent_of "$front_pid"
      [ "$parent" = "$git_pid" ] || break
    else
      kill -0 "$front_pid" 2>/dev/null && kill -0 "$git_pid" 2>/dev/null || break
    fi
  done
  kill -TERM "$signer" 2>/dev/null
  n=0
  while :; do
    if [ -r /proc/self/stat ]; then
      parent_of "$signer"
      [ -n "$parent" ] || break
    else
      kill -0 "$signer" 2>/dev/null || break
    fi
    n=$((n + 1))
    if [ "$n" = 10 ]; then kill -KILL "$signer" 2>/dev/null; break; fi
    sleep 1 &
    nap=$!
    wait "$nap"
    nap=''
  done
  parent_of self
  if [ "$parent" != "$front_pid" ]; then remove_notes; fi
  exit 0
}
(trap - EXIT; watch) </dev/null >/dev/null 2>&1 &
watcher=$!

rc=0
while :; do
  wait "$signer"
  rc=$?
  kill -0 "$signer" 2>/dev/null || break
done
signer=''
exit "$rc"
