#!/bin/sh
# pam_roamfs.sh: PAM session hook for roamfs homes, run by pam_exec(8):
#
#   session required pam_exec.so seteuid quiet stdout /usr/local/lib/roamfs/pam_roamfs.sh
#
# (that is /etc/pam.d/roamfs, included from common-session; see docs/deployment.md).
# Optional arguments after the script: --config FILE (default /etc/roamfs/roamfs.env),
# --log FILE (append diagnostics there too; they always go to syslog, auth facility).
# Our stdout is what the user sees (pam_exec's `stdout` option, which also sends stderr there:
# so diagnostics never go to stderr unless --log names a file for them).
#
# open_session:  the first session of a user on this machine mounts the user's home and
#                returns only when it is usable (pam_exec waits for us, so the login goes on
#                with the home in place); later sessions of the same user only count.
# close_session: the last session of the user logs out: final snapshot, commit, unmount
#                (the login's close waits until everything is in the repository, at most
#                ROAMFS_LOGOUT_TIMEOUT; after that the daemon goes on flushing on its own).
#
# Sessions are counted per user in ROAMFS_RUN_DIR/sessions/USER ("COUNT MODE"), read and
# written under an exclusive flock(1) of ROAMFS_RUN_DIR/sessions/USER.lock held for the whole
# mount or logout: a second login waits until the first one's mount is done and then only
# counts; a login during the last logout waits for it and then mounts again.
# MODE says what the first session found or did: roamfs (we mounted it and log it out),
# external (a roamfs home was already mounted by someone else: fstab, the systemd unit, an
# admin; we leave it alone), tmpfs (the fallback home of ROAMFS_ON_FAILURE=tmpfs).
#
# Skipped (exit 0, nothing done): root, users with a uid outside ROAMFS_MIN_UID..ROAMFS_MAX_UID
# (default 1000..59999: system accounts, nobody), users not in ROAMFS_GROUP when it is set.
#
# When the mount fails (ROAMFS_ON_FAILURE):
#   deny  (default) the session is refused: exit 1, and with `required` in the PAM line the
#         login fails with a message. A login must not go on without its roaming home: the
#         user would work in the bare mountpoint directory on the local disk, that work would
#         not roam, and the next mount would refuse the non-empty mountpoint.
#   tmpfs a temporary home (tmpfs of ROAMFS_FALLBACK_SIZE with the skeleton files) is mounted
#         instead, the user is told so, and it is discarded at the last logout.
#
# How the home is mounted (ROAMFS_PAM_METHOD):
#   systemd  `systemctl start roamfs@USER.service` (the daemon then lives in the system
#            service, not in the login's cgroup) and `systemctl stop` at the last logout;
#   direct   roamfs-home mount/logout from here (the daemon is started by this process);
#   auto     (default) systemd when systemd is PID 1 and roamfs@.service is installed.
set -u

ROAMFS_LOG_TAG=pam_roamfs
self=$(readlink -f "$0")
libdir=${ROAMFS_LIBDIR:-${self%/*}}
. "$libdir/roamfs-lib.sh"

config=
log=
while [ $# -gt 0 ]; do
  case $1 in
    --config) [ $# -ge 2 ] || break; config=$2; shift 2 ;;
    --config=*) config=${1#--config=}; shift ;;
    --log) [ $# -ge 2 ] || break; log=$2; shift 2 ;;
    --log=*) log=${1#--log=}; shift ;;
    *) bad_arg=$1; shift ;;
  esac
done
if [ -n "$log" ]; then
  exec 2>>"$log"
  printf '%s %s %s %s\n' "$(date '+%F %T')" "${PAM_SERVICE:-?}" "${PAM_TYPE:-?}" "${PAM_USER:-?}" >&2
else
  exec 2>/dev/null
fi
[ -z "${bad_arg:-}" ] || roamfs_log warning "ignoring unknown argument $bad_arg"

user=${PAM_USER:-}
type=${PAM_TYPE:-}
case $type in open_session | close_session) ;; *) exit 0 ;; esac
[ -n "$user" ] || exit 0

roamfs_load_config "$config"

# Who roams.
roamfs_valid_user "$user" || exit 0
roamfs_user "$user" || { roamfs_log warning "$type: $user is not in the user database: skipped"; exit 0; }
[ "$R_UID" != 0 ] || exit 0
[ "$R_UID" -ge "$ROAMFS_MIN_UID" ] && [ "$R_UID" -le "$ROAMFS_MAX_UID" ] || exit 0
if [ -n "$ROAMFS_GROUP" ]; then
  case " $(id -nG "$user" 2>/dev/null) " in *" $ROAMFS_GROUP "*) ;; *) exit 0 ;; esac
fi
mp=$(roamfs_mountpoint)

# Tell the user (pam_exec's `stdout` option shows our stdout at the login prompt).
tell() {
  printf '%s\n' "$*"
}

method=$ROAMFS_PAM_METHOD
if [ "$method" = auto ]; then
  method=direct
  if [ -d /run/systemd/system ] && "$ROAMFS_SYSTEMCTL" cat roamfs@.service >/dev/null 2>&1; then
    method=systemd
  fi
fi
unit="roamfs@$user.service"

home_cmd() {
  if [ -n "$config" ]; then "$libdir/roamfs-home" --config "$config" "$@"
  else "$libdir/roamfs-home" "$@"
  fi
}

# mount_home: sets $reason (the last line of the error output) when it fails.
mount_home() {
  _err=$(mktemp "${TMPDIR:-/tmp}/pam_roamfs.XXXXXX") || return 1
  case $method in
    systemd) "$ROAMFS_SYSTEMCTL" start "$unit" >&2 2>"$_err" ;;
    *) home_cmd mount "$user" >&2 2>"$_err" ;;
  esac
  _rc=$?
  cat "$_err" >&2
  reason=$(grep -v '^[[:space:]]*$' "$_err" | tail -n 1 | cut -c1-300)
  if [ "$_rc" != 0 ] && [ "$method" = systemd ] && command -v journalctl >/dev/null 2>&1; then
    # systemctl only says "Job ... failed"; the unit's last line says why
    _j=$(journalctl -u "$unit" -t roamfs-home -n 1 -o cat --no-pager 2>/dev/null | cut -c1-300)
    [ -z "$_j" ] || reason=$_j
  fi
  reason=${reason#roamfs-home: }
  rm -f "$_err"
  return $_rc
}

logout_home() {
  case $method in
    systemd) "$ROAMFS_SYSTEMCTL" stop "$unit" >&2 ;;
    *) home_cmd logout "$user" >&2 ;;
  esac
}

fallback_home() {
  if [ -n "$(roamfs_fstype "$mp")" ]; then
    roamfs_log err "no fallback home for $user: $mp is busy"
    return 1
  fi
  [ -d "$mp" ] || { mkdir -p "$mp" && chown "$R_UID:$R_GID" "$mp"; } || return 1
  mount -t tmpfs -o "mode=0700,uid=$R_UID,gid=$R_GID,size=$ROAMFS_FALLBACK_SIZE,nosuid,nodev" roamfs-fallback "$mp" || return 1
  if [ -n "$ROAMFS_NEW_USER_SKEL" ] && [ -d "$ROAMFS_NEW_USER_SKEL" ]; then
    if cp -a "$ROAMFS_NEW_USER_SKEL/." "$mp/"; then chown -R "$R_UID:$R_GID" "$mp"; fi
    chmod 0700 "$mp"
  fi
}

sessions=$ROAMFS_RUN_DIR/sessions
counter=$sessions/$user
# -p: two logins may create them at the same time. (-m applies to the last component only:
# the run dir's parent, /run, exists.)
# shellcheck disable=SC2174
if ! mkdir -p -m 0700 "$ROAMFS_RUN_DIR" || ! mkdir -p -m 0700 "$sessions"; then
  roamfs_log err "cannot create $sessions"
  [ "$type" = close_session ] && exit 0
  exit 1
fi

# Everything below runs under the user's lock (fd 9; the kernel releases it if we die).
exec 9>>"$counter.lock"
if ! flock -w "$ROAMFS_LOCK_TIMEOUT" 9; then
  roamfs_log err "$type: another login or logout of $user holds $counter.lock for more than ${ROAMFS_LOCK_TIMEOUT}s"
  if [ "$type" = open_session ]; then
    tell "roamfs: your home directory is busy (another login or logout is still running); try again"
    exit 1
  fi
  exit 0
fi

count=0
mode=
if [ -s "$counter" ]; then
  read -r count mode <"$counter" || :
  case $count in '' | *[!0-9]*) roamfs_log warning "bad session counter $counter, reset"; count=0; mode= ;; esac
fi

save() {
  echo "$1 $2" >"$counter.tmp"
  mv -f "$counter.tmp" "$counter"
}

if [ "$type" = open_session ]; then
  fstype=$(roamfs_fstype "$mp")
  if [ "$count" -gt 0 ] && [ "$mode" = tmpfs ]; then
    : # the other sessions work in the temporary home: this one joins them
  elif [ "$fstype" = fuse.roamfs ] && { [ "$count" -eq 0 ] || [ "$mode" = external ]; }; then
    # mounted by someone else (fstab, an enabled roamfs@ unit, an admin): we only count, and
    # leave it mounted at the last logout
    mode=external
  else
    # not mounted yet, or mounted by our first session: mount_home is idempotent and also
    # replaces a dead mount (its daemon crashed; the snapshots come back from the local log)
    if [ "$count" -gt 0 ] && [ "$fstype" != fuse.roamfs ]; then
      roamfs_log warning "$user has $count open session(s) but the home at $mp is not mounted (external umount?): mounting it again"
    fi
    if mount_home; then
      mode=roamfs
      [ "$count" -gt 0 ] || roamfs_log info "mounted $user's home at $mp ($method)"
    else
      case $ROAMFS_ON_FAILURE in
        tmpfs)
          if fallback_home; then
            mode=tmpfs
            roamfs_log warning "mounting $user's roaming home failed: a temporary home (tmpfs) is mounted at $mp"
            tell "roamfs: your roaming home directory could not be mounted (${reason:-unknown error}). You are logged in with a TEMPORARY home: files saved in it are lost when you log out."
          else
            roamfs_log err "mounting $user's roaming home failed, and so did the temporary fallback: login refused"
            tell "roamfs: your home directory could not be mounted (${reason:-unknown error}); the login is refused. Please contact your administrator."
            exit 1
          fi ;;
        *)
          roamfs_log err "mounting $user's home at $mp failed: login refused (ROAMFS_ON_FAILURE=deny)"
          tell "roamfs: your home directory could not be mounted (${reason:-unknown error}); the login is refused. Please contact your administrator."
          exit 1 ;;
      esac
    fi
  fi
  save $((count + 1)) "${mode:-roamfs}"
  exit 0
fi

# close_session
if [ "$count" -eq 0 ]; then
  # not a session we counted (opened before roamfs was set up, or refused)
  rm -f "$counter"
  exit 0
fi
count=$((count - 1))
if [ "$count" -gt 0 ]; then
  save "$count" "$mode"
  exit 0
fi
case $mode in
  roamfs)
    if logout_home; then
      roamfs_log info "logged out $user: everything is in the repository"
    else
      roamfs_log err "the logout of $user did not complete (see above); changes not in the repository stay in the local cache for the next login"
    fi ;;
  tmpfs)
    if [ "$(roamfs_fstype "$mp")" = tmpfs ]; then
      umount "$mp" 2>/dev/null || umount -l "$mp" || roamfs_log err "cannot unmount the temporary home at $mp"
    fi ;;
  *) : ;; # external: not ours to unmount
esac
rm -f "$counter"
exit 0
