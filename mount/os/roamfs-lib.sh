# roamfs OS integration: shell functions shared by mount.fuse.roamfs, roamfs-home and
# pam_roamfs.sh (POSIX sh; sourced, not run). Installed to /usr/local/lib/roamfs/ next to them.
#
# Configuration: /etc/roamfs/roamfs.env (or $ROAMFS_CONFIG, or --config FILE of each script),
# KEY=VALUE lines (the subset that both this parser and systemd's EnvironmentFile= read the
# same way: no shell expansion, optional "..." or '...' around a value, # comments).
# A ROAMFS_* variable already in the environment wins over the file, so a systemd drop-in's
# Environment= or a test can override one setting. See roamfs.env.example for every key.

ROAMFS_KNOWN_KEYS="ROAMFS_REPO ROAMFS_CACHE_ROOT ROAMFS_SNAPSHOT_INTERVAL ROAMFS_IDLE ROAMFS_MAX_LAG \
ROAMFS_PREFETCH_DELAY ROAMFS_DEBUG ROAMFS_MIN_UID ROAMFS_MAX_UID ROAMFS_GROUP ROAMFS_HOME \
ROAMFS_NEW_USER_SKEL ROAMFS_ON_FAILURE ROAMFS_FALLBACK_SIZE ROAMFS_PAM_METHOD ROAMFS_LOCK_TIMEOUT \
ROAMFS_LOGOUT_TIMEOUT ROAMFS_RUN_DIR ROAMFS_CLI ROAMFS_SYSTEMCTL"

# The scripts run from PAM and systemd with a minimal environment.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

: "${ROAMFS_LOG_TAG:=roamfs}"

# roamfs_log LEVEL MESSAGE...: one line on stderr and, when a syslog socket exists, to syslog
# (facility auth: PAM's own messages go there too; the journal shows it on systemd machines).
roamfs_log() {
  _lvl=$1
  shift
  printf '%s: %s\n' "$ROAMFS_LOG_TAG" "$*" >&2
  if [ -S /dev/log ] && command -v logger >/dev/null 2>&1; then
    logger -t "$ROAMFS_LOG_TAG" -p "auth.$_lvl" -- "$*" 2>/dev/null || :
  fi
}

roamfs_die() {
  roamfs_log err "$*"
  exit 1
}

# roamfs_load_config [FILE]: read the configuration file (missing file = all defaults) and set
# the defaults of every key that is still unset.
roamfs_load_config() {
  _file=${1:-${ROAMFS_CONFIG:-/etc/roamfs/roamfs.env}}
  if [ -e "$_file" ]; then
    [ -r "$_file" ] || roamfs_die "cannot read the configuration $_file"
    _n=0
    while IFS= read -r _line || [ -n "$_line" ]; do
      _n=$((_n + 1))
      # trim leading and trailing blanks
      _line=${_line#"${_line%%[![:space:]]*}"}
      _line=${_line%"${_line##*[![:space:]]}"}
      case $_line in '' | '#'* | ';'*) continue ;; esac
      _key=${_line%%=*}
      _val=${_line#*=}
      if [ "$_key" = "$_line" ]; then
        roamfs_log warning "$_file:$_n: not KEY=VALUE, ignored: $_line"
        continue
      fi
      _key=${_key%"${_key##*[![:space:]]}"}
      _val=${_val#"${_val%%[![:space:]]*}"}
      case $_key in
        *[!A-Z0-9_]* | '') roamfs_log warning "$_file:$_n: bad key, ignored: $_key"; continue ;;
      esac
      case " $ROAMFS_KNOWN_KEYS " in
        *" $_key "*) ;;
        *) roamfs_log warning "$_file:$_n: unknown key $_key (ignored; see roamfs.env.example)"; continue ;;
      esac
      case $_val in
        \"*\") _val=${_val#\"}; _val=${_val%\"} ;;
        \'*\') _val=${_val#\'}; _val=${_val%\'} ;;
      esac
      # $_key is a validated name: eval only ever assigns it.
      if eval "[ -z \"\${$_key+set}\" ]"; then
        eval "$_key=\$_val"
        export "${_key?}"
      fi
    done <"$_file"
  fi
  : "${ROAMFS_REPO:=}"
  : "${ROAMFS_CACHE_ROOT:=/var/cache/roamfs}"
  : "${ROAMFS_SNAPSHOT_INTERVAL:=}"
  : "${ROAMFS_IDLE:=}"
  : "${ROAMFS_MAX_LAG:=}"
  : "${ROAMFS_PREFETCH_DELAY:=}"
  : "${ROAMFS_DEBUG:=no}"
  : "${ROAMFS_MIN_UID:=1000}"
  : "${ROAMFS_MAX_UID:=59999}"
  : "${ROAMFS_GROUP:=}"
  : "${ROAMFS_HOME:=}"
  : "${ROAMFS_NEW_USER_SKEL=/etc/skel}"
  : "${ROAMFS_ON_FAILURE:=deny}"
  : "${ROAMFS_FALLBACK_SIZE:=2G}"
  : "${ROAMFS_PAM_METHOD:=auto}"
  : "${ROAMFS_LOCK_TIMEOUT:=300}"
  : "${ROAMFS_LOGOUT_TIMEOUT:=900}"
  : "${ROAMFS_RUN_DIR:=/run/roamfs}"
  : "${ROAMFS_CLI:=/usr/local/bin/roamfs}"
  : "${ROAMFS_SYSTEMCTL:=systemctl}"
  # The CLI reads ROAMFS_RUN_DIR for its control sockets: every call must see the same one.
  export ROAMFS_REPO ROAMFS_CACHE_ROOT ROAMFS_RUN_DIR ROAMFS_CLI
}

# roamfs_cli ARGS...: the roamfs command line tool.
roamfs_cli() {
  "$ROAMFS_CLI" "$@"
}

# roamfs_is_true VALUE
roamfs_is_true() {
  case $1 in yes | true | 1 | on) return 0 ;; *) return 1 ;; esac
}

# roamfs_fstype PATH: the type of the file system mounted exactly at PATH (topmost), or empty.
roamfs_fstype() {
  findmnt -kn -o FSTYPE --mountpoint "$1" 2>/dev/null | tail -n 1
}

# roamfs_is_mounted PATH: a roamfs home is mounted at PATH.
roamfs_is_mounted() {
  [ "$(roamfs_fstype "$1")" = fuse.roamfs ]
}

# shellcheck disable=SC2034 # R_* are the callers' results
# roamfs_user USER: sets R_USER R_UID R_GID R_HOME from the user database (NSS: local, LDAP...).
roamfs_user() {
  _pw=$(getent passwd "$1") || return 1
  R_USER=$1
  R_UID=$(echo "$_pw" | cut -d: -f3)
  R_GID=$(echo "$_pw" | cut -d: -f4)
  R_HOME=$(echo "$_pw" | cut -d: -f6)
}

# roamfs_mountpoint: the mountpoint of R_USER's home (ROAMFS_HOME with %u = user name, or the
# home directory of the user database).
roamfs_mountpoint() {
  if [ -n "$ROAMFS_HOME" ]; then
    _t=$ROAMFS_HOME
    _out=
    while :; do
      case $_t in
        *%u*) _out=$_out${_t%%%u*}$R_USER; _t=${_t#*%u} ;;
        *) _out=$_out$_t; break ;;
      esac
    done
    echo "$_out"
  else
    echo "$R_HOME"
  fi
}

# roamfs_valid_user NAME: the profile name rules of the CLI (POSIX login names).
roamfs_valid_user() {
  case $1 in
    '' | [0-9.-]* | *[!A-Za-z0-9_.-]*) return 1 ;;
  esac
  [ ${#1} -le 32 ]
}
