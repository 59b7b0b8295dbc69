#!/usr/bin/env bash
# Install roamfs's OS integration from this checkout (as root; see docs/deployment.md):
#
#   PREFIX/bin/roamfs                      wrapper: <this checkout>/bin/roamfs with --node
#   PREFIX/lib/roamfs/                     roamfs-home, pam_roamfs.sh, mount.fuse.roamfs, roamfs-lib.sh
#   /sbin/mount.fuse.roamfs                symlink to the helper (mount -t fuse.roamfs, fstab)
#   PREFIX/lib/systemd/system/roamfs@.service
#   /etc/systemd/system/roamfs@.service.d/10-repository.conf   RequiresMountsFor=ROAMFS_REPO
#   /etc/pam.d/roamfs                      the PAM session line (not used until included)
#   /usr/share/pam-configs/roamfs          pam-auth-update profile (Default: no)
#   /etc/roamfs/roamfs.env.example         every setting; /etc/roamfs/roamfs.env if there is none
#   PREFIX/share/doc/roamfs/deployment.md
# PREFIX is /usr/local. The checkout stays where it is: the wrapper runs it.
#
# Options:
#   --repo PATH      ROAMFS_REPO of a new /etc/roamfs/roamfs.env (an existing one is never edited)
#   --enable-pam     also enable the PAM hook in /etc/pam.d/common-session (pam-auth-update
#                    --enable roamfs); without it no PAM stack is changed
#   --force          replace files of the same names that this install did not put there
#                    (each is kept as NAME.roamfs-backup and put back by uninstall.sh)
#   --root DIR       install into DIR instead of / (packaging, tests); no systemctl calls
#   --prefix DIR     instead of /usr/local
#   --node PATH      the node binary the wrapper runs (default: `command -v node`)
#   --no-build       do not run scripts/setup.sh when dist/ is missing
#
# Idempotent: running it again changes only what differs (and says so). Every file, link and
# directory it creates is listed with its checksum in PREFIX/lib/roamfs/install-manifest;
# scripts/uninstall.sh removes exactly those (files changed since are kept unless --purge).
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$(pwd -P)

ROOT=
PREFIX=/usr/local
REPO=
ENABLE_PAM=no
FORCE=no
BUILD=yes
NODE=
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --repo) REPO=${2:?--repo needs a path}; shift 2 ;;
    --node) NODE=${2:?--node needs a path}; shift 2 ;;
    --enable-pam) ENABLE_PAM=yes; shift ;;
    --force) FORCE=yes; shift ;;
    --no-build) BUILD=no; shift ;;
    -h | --help) usage ;;
    *) echo "install.sh: unknown argument $1" >&2; usage ;;
  esac
done
say() { echo "roamfs install: $*" >&2; }
die() { say "$*"; exit 1; }

[ -z "$ROOT" ] || ROOT=$(mkdir -p "$ROOT" && cd "$ROOT" && pwd -P)
[ "$ROOT" = / ] && ROOT=
case $PREFIX in /*) ;; *) die "--prefix must be absolute" ;; esac
PREFIX=${PREFIX%/}
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then die "run as root (or give --root DIR)"; fi
case $REPO in '' | /*) ;; *) REPO=$(cd "$REPO" 2>/dev/null && pwd -P) || die "--repo: no such directory" ;; esac

# What the wrapper runs: a built checkout (bin/roamfs starts the daemon bundle in dist/bundle/,
# or runs bin/roamfs.js: dist/mount/launch.cjs and the CLI bundle) and node 20.19+.
built() { [ -f "$CHECKOUT/dist/mount/launch.cjs" ] && [ -f "$CHECKOUT/dist/bundle/cli.js" ] && [ -f "$CHECKOUT/dist/bundle/daemon-main.js" ]; }
if ! built; then
  [ "$BUILD" = yes ] || die "dist/ is not built: run scripts/setup.sh first"
  scripts/setup.sh
  built || die "scripts/setup.sh did not build dist/bundle/"
fi
[ -n "$NODE" ] || NODE=$(command -v node) || die "node not found (give --node PATH)"
case $NODE in /*) ;; *) die "--node must be an absolute path" ;; esac
"$NODE" -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)' ||
  die "$NODE is older than Node.js 20.19"

OS=$CHECKOUT/mount/os
LIB=$PREFIX/lib/roamfs
MANIFEST=$LIB/install-manifest
UNIT_DIR=$PREFIX/lib/systemd/system
DOC_DIR=$PREFIX/share/doc/roamfs

# --- the manifest of the previous install (lines "file SHA PATH", "link TARGET PATH",
#     "dir PATH", "backup PATH", "pam-auth-update PROFILE"; paths as on the target system)
OLD=$(cat "$ROOT$MANIFEST" 2>/dev/null || true)
NEW=()
record() { NEW+=("$*"); }
old_entry() { # old_entry KIND PATH -> the middle field (sha or link target) of that entry
  printf '%s\n' "$OLD" | awk -v k="$1" -v p="$2" '$1 == k && substr($0, length($1) + length($2) + 3) == p { print $2 }' | head -n 1
}
old_has() { printf '%s\n' "$OLD" | grep -qxF -- "$*"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
changed=0
note() { say "$*"; changed=$((changed + 1)); }

TMP=$(mktemp -d)
# write_manifest [partial]: the manifest, sorted (uninstall.sh orders the work itself). After a
# failure it also keeps every entry of the previous manifest, so that nothing this run or an
# earlier one created is forgotten (uninstall.sh checks each entry against the disk anyway).
write_manifest() {
  ensure_dir "$LIB"
  {
    echo "# roamfs install manifest: written by $CHECKOUT/scripts/install.sh; read by scripts/uninstall.sh"
    {
      printf '%s\n' "${NEW[@]}"
      if [ "${1:-}" = partial ]; then printf '%s\n' "$OLD" | grep -v '^#'; fi
    } | grep -v '^$' | LC_ALL=C sort -u
  } >"$ROOT$MANIFEST.tmp"
  if ! cmp -s "$ROOT$MANIFEST.tmp" "$ROOT$MANIFEST" 2>/dev/null; then
    mv -f "$ROOT$MANIFEST.tmp" "$ROOT$MANIFEST"
  else
    rm -f "$ROOT$MANIFEST.tmp"
  fi
}
on_exit() {
  local rc=$?
  rm -rf "$TMP"
  if [ "$rc" != 0 ] && [ ${#NEW[@]} -gt 0 ]; then
    write_manifest partial || :
    say "failed: what was installed so far is in $MANIFEST (scripts/uninstall.sh removes it)"
  fi
}
trap on_exit EXIT

# ensure_dir PATH: create it (and its missing parents), recording each directory we create.
ensure_dir() {
  local p=$1 parts=() d
  while [ -n "$p" ] && [ "$p" != / ] && [ ! -d "$ROOT$p" ]; do
    parts=("$p" "${parts[@]}")
    p=$(dirname "$p")
  done
  for d in "${parts[@]}"; do
    mkdir -m 0755 "$ROOT$d"
    note "created $d/"
  done
  # keep what the previous install created (it still counts as ours)
  for d in "${parts[@]}"; do record "dir $d"; done
  p=$1
  while [ -n "$p" ] && [ "$p" != / ]; do
    if old_has "dir $p" && ! printf '%s\n' "${NEW[@]}" | grep -qxF "dir $p"; then record "dir $p"; fi
    p=$(dirname "$p")
  done
}

backup_or_die() { # backup_or_die PATH WHY
  if [ "$FORCE" != yes ]; then
    die "$1 exists and $2; --force replaces it (keeping it as $1.roamfs-backup for uninstall.sh to put back)"
  fi
  if [ ! -e "$ROOT$1.roamfs-backup" ] && [ ! -L "$ROOT$1.roamfs-backup" ]; then
    mv "$ROOT$1" "$ROOT$1.roamfs-backup"
    note "kept the previous $1 as $1.roamfs-backup"
  else
    rm -f "$ROOT$1"
  fi
  record "backup $1"
}

# put SRC DEST MODE KIND: install the file SRC as DEST. KIND program: a file of the same name
# that we did not install (or that was changed since) is an error without --force. KIND config:
# such a file is kept as it is (the admin's), with a note.
put() {
  local src=$1 dest=$2 mode=$3 kind=$4 d=$ROOT$2 old cur
  ensure_dir "$(dirname "$dest")"
  old_has "backup $dest" && record "backup $dest"
  if [ -L "$d" ] || [ -e "$d" ]; then
    if [ -f "$d" ] && [ ! -L "$d" ] && cmp -s "$src" "$d"; then
      [ "$(stat -c %a "$d")" = "${mode#0}" ] || { chmod "$mode" "$d"; note "mode of $dest set to $mode"; }
      record "file $(sha "$d") $dest"
      return
    fi
    old=$(old_entry file "$dest")
    cur=$( [ -f "$d" ] && [ ! -L "$d" ] && sha "$d" || echo none)
    if [ -n "$old" ] && [ "$old" = "$cur" ]; then
      install -m "$mode" "$src" "$d"
      note "updated $dest"
    elif [ "$kind" = config ]; then
      say "kept $dest: it was changed since it was installed (the new version is $src)"
      [ -z "$old" ] || record "file $old $dest"
      return
    else
      backup_or_die "$dest" "is not the one this install put there"
      install -m "$mode" "$src" "$d"
      note "installed $dest"
    fi
  else
    install -m "$mode" "$src" "$d"
    note "installed $dest"
  fi
  record "file $(sha "$d") $dest"
}

# put_link TARGET DEST
put_link() {
  local target=$1 dest=$2 d=$ROOT$2
  ensure_dir "$(dirname "$dest")"
  old_has "backup $dest" && record "backup $dest"
  if [ -L "$d" ] && [ "$(readlink "$d")" = "$target" ]; then
    record "link $target $dest"
    return
  fi
  if [ -L "$d" ] || [ -e "$d" ]; then
    if [ -L "$d" ] && [ -n "$(old_entry link "$dest")" ] && [ "$(old_entry link "$dest")" = "$(readlink "$d")" ]; then
      rm -f "$d"
    else
      backup_or_die "$dest" "is not the one this install put there"
    fi
  fi
  ln -s "$target" "$d"
  note "linked $dest -> $target"
  record "link $target $dest"
}

# Text files with this prefix's paths (the shipped files say /usr/local).
render() { # render SRC -> $TMP/name
  local out
  out=$TMP/$(basename "$1")
  sed -e "s|/usr/local/lib/roamfs|$LIB|g" -e "s|/usr/local/bin/roamfs|$PREFIX/bin/roamfs|g" \
      -e "s|/usr/local/share/doc/roamfs|$DOC_DIR|g" "$1" >"$out"
  echo "$out"
}

# --- programs
put "$(render "$OS/roamfs-lib.sh")" "$LIB/roamfs-lib.sh" 0644 program
put "$(render "$OS/roamfs-home")" "$LIB/roamfs-home" 0755 program
put "$(render "$OS/pam_roamfs.sh")" "$LIB/pam_roamfs.sh" 0755 program
put "$(render "$OS/mount.fuse.roamfs")" "$LIB/mount.fuse.roamfs" 0755 program
put_link "$LIB/mount.fuse.roamfs" /sbin/mount.fuse.roamfs
cat >"$TMP/roamfs" <<EOF
#!/bin/sh
# roamfs: the command line tool of the checkout $CHECKOUT
# (written by its scripts/install.sh; scripts/uninstall.sh removes it)
ROAMFS_NODE=\${ROAMFS_NODE:-$NODE}
export ROAMFS_NODE
exec $CHECKOUT/bin/roamfs "\$@"
EOF
put "$TMP/roamfs" "$PREFIX/bin/roamfs" 0755 program

# --- systemd, PAM, docs
put "$(render "$OS/roamfs@.service")" "$UNIT_DIR/roamfs@.service" 0644 program
put "$(render "$OS/pam.d-roamfs")" /etc/pam.d/roamfs 0644 config
put "$OS/pam-configs-roamfs" /usr/share/pam-configs/roamfs 0644 program
put "$CHECKOUT/docs/deployment.md" "$DOC_DIR/deployment.md" 0644 program

# --- configuration
put "$(render "$OS/roamfs.env.example")" /etc/roamfs/roamfs.env.example 0644 program
ENV=/etc/roamfs/roamfs.env
if [ -e "$ROOT$ENV" ]; then
  # never edited here: it is the admin's (still ours to remove if unchanged since we wrote it)
  old=$(old_entry file "$ENV")
  [ -z "$old" ] || record "file $old $ENV"
else
  if [ -n "$REPO" ]; then
    sed "s|^ROAMFS_REPO=.*|ROAMFS_REPO=$REPO|" "$TMP/roamfs.env.example" >"$TMP/roamfs.env"
  else
    cp "$TMP/roamfs.env.example" "$TMP/roamfs.env"
    say "edit ROAMFS_REPO in $ENV (or run again with --repo PATH before editing it)"
  fi
  put "$TMP/roamfs.env" "$ENV" 0644 config
fi
repo_now=$(sed -n 's/^[[:space:]]*ROAMFS_REPO[[:space:]]*=[[:space:]]*//p' "$ROOT$ENV" | tail -n 1 | sed -e 's/^"\(.*\)"$/\1/' -e "s/^'\(.*\)'\$/\1/")
if [ -n "$REPO" ] && [ "$repo_now" != "$REPO" ]; then
  say "--repo $REPO not applied: $ENV exists and says ROAMFS_REPO=$repo_now (edit it, then run install.sh again)"
fi

# RequiresMountsFor= of the unit: the repository's file system is mounted before any home.
if [ -n "$repo_now" ]; then
  cat >"$TMP/10-repository.conf" <<EOF
# Written by roamfs's scripts/install.sh from ROAMFS_REPO in $ENV:
# run install.sh again after changing the repository.
[Unit]
RequiresMountsFor=$repo_now
EOF
  put "$TMP/10-repository.conf" /etc/systemd/system/roamfs@.service.d/10-repository.conf 0644 config
else
  say "ROAMFS_REPO is not set in $ENV: roamfs@.service gets no RequiresMountsFor= (run install.sh again once it is)"
fi

# --- PAM: only with --enable-pam (pam-auth-update puts "session include roamfs" in
#     common-session, before pam_systemd; it refuses a common-session changed by hand).
pam_root=()
[ -z "$ROOT" ] || pam_root=(--root "$ROOT")
if [ "$ENABLE_PAM" = yes ]; then
  command -v pam-auth-update >/dev/null || die "--enable-pam needs pam-auth-update (Debian's libpam-runtime); or add 'session include roamfs' to /etc/pam.d/common-session by hand"
  if ! grep -qE '^session[[:space:]]+include[[:space:]]+roamfs' "$ROOT/etc/pam.d/common-session" 2>/dev/null; then
    pam-auth-update "${pam_root[@]}" --package --enable roamfs
    grep -qE '^session[[:space:]]+include[[:space:]]+roamfs' "$ROOT/etc/pam.d/common-session" ||
      die "pam-auth-update did not enable roamfs (a common-session changed by hand? then add 'session include roamfs' before pam_systemd yourself)"
    note "enabled the PAM hook: /etc/pam.d/common-session includes roamfs"
  fi
  record "pam-auth-update roamfs"
elif old_has "pam-auth-update roamfs"; then
  record "pam-auth-update roamfs" # enabled by an earlier --enable-pam: still ours to disable
fi

# --- what the previous install had and this one does not: removed when unchanged
while read -r kind a b; do
  [ -n "${kind:-}" ] || continue
  line="$kind $a${b:+ $b}"
  printf '%s\n' "${NEW[@]}" | grep -qxF -- "$line" && continue
  case $kind in
    file)
      if ! printf '%s\n' "${NEW[@]}" | grep -q " $b\$" && [ -f "$ROOT$b" ] && [ "$(sha "$ROOT$b")" = "$a" ]; then
        rm -f "$ROOT$b"; note "removed $b (no longer installed)"
      fi ;;
    link)
      if ! printf '%s\n' "${NEW[@]}" | grep -q " $b\$" && [ -L "$ROOT$b" ] && [ "$(readlink "$ROOT$b")" = "$a" ]; then
        rm -f "$ROOT$b"; note "removed $b (no longer installed)"
      fi ;;
  esac
done <<<"$OLD"

# --- the manifest (written last, atomically)
write_manifest
NEW=() # done: nothing for on_exit to add

if [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null && [ "$changed" -gt 0 ]; then
  systemctl daemon-reload || say "systemctl daemon-reload failed"
fi
if [ "$changed" -eq 0 ]; then say "everything was already installed: nothing changed"; else say "done ($changed changes)"; fi
