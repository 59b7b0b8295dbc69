#!/usr/bin/env bash
# Remove what scripts/install.sh installed, exactly: the entries of its manifest
# (PREFIX/lib/roamfs/install-manifest), and nothing else. Idempotent (no manifest: nothing to do).
#
#   files      removed when unchanged since install; a changed one (e.g. /etc/roamfs/roamfs.env
#              that the admin edited) is kept with a note, unless --purge
#   links      removed when they still point where install pointed them
#   backups    files that install --force replaced are put back
#   PAM        the profile is disabled first (pam-auth-update --remove roamfs), also when an
#              admin enabled it by hand; if another PAM file still includes roamfs, nothing of
#              PAM is removed (logins would fail on a missing include) unless --force
#   dirs       removed when install created them and they are empty
# Left alone: caches (/var/cache/roamfs: they may hold snapshots not yet in the repository),
# /run/roamfs, repositories. Refuses while roamfs homes are mounted (log them out first),
# unless --force.
#
# Options: --purge, --force, --root DIR, --prefix DIR (as given to install.sh)
set -euo pipefail

ROOT=
PREFIX=/usr/local
PURGE=no
FORCE=no
while [ $# -gt 0 ]; do
  case $1 in
    --root) ROOT=${2:?--root needs a directory}; shift 2 ;;
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --purge) PURGE=yes; shift ;;
    --force) FORCE=yes; shift ;;
    -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
    *) echo "uninstall.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
say() { echo "roamfs uninstall: $*" >&2; }
die() { say "$*"; exit 1; }

if [ -n "$ROOT" ]; then ROOT=$(cd "$ROOT" && pwd -P) || die "--root: no such directory"; fi
[ "$ROOT" = / ] && ROOT=
PREFIX=${PREFIX%/}
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then die "run as root (or give --root DIR)"; fi

MANIFEST=$PREFIX/lib/roamfs/install-manifest
if [ ! -f "$ROOT$MANIFEST" ]; then
  say "nothing to do: roamfs is not installed here (no $MANIFEST)"
  exit 0
fi
M=$(grep -v '^#' "$ROOT$MANIFEST" || true)
sha() { sha256sum "$1" | cut -d' ' -f1; }
removed=0
kept=0

if [ -z "$ROOT" ] && [ "$FORCE" != yes ]; then
  mounted=$(awk '$3 == "fuse.roamfs" { print $2 }' /proc/self/mounts)
  if [ -n "$mounted" ]; then
    die "roamfs homes are mounted ($(echo "$mounted" | tr '\n' ' ')): log them out first (roamfs logout MOUNTPOINT, or systemctl stop roamfs@USER), or use --force"
  fi
fi
if [ -z "$ROOT" ] && grep -qsE '^[^#]*[[:space:]]fuse\.roamfs[[:space:]]' /etc/fstab; then
  say "warning: /etc/fstab has fuse.roamfs lines: they will not mount without /sbin/mount.fuse.roamfs"
fi

# --- PAM first: common-session must not include a file we are about to remove.
keep_pam=no
if [ -f "$ROOT/usr/share/pam-configs/roamfs" ] && grep -qsE '^session[[:space:]]+include[[:space:]]+roamfs' "$ROOT/etc/pam.d/common-session"; then
  pam_root=()
  [ -z "$ROOT" ] || pam_root=(--root "$ROOT")
  pam-auth-update "${pam_root[@]}" --package --remove roamfs || say "pam-auth-update --remove roamfs failed"
  say "disabled the PAM hook (pam-auth-update --remove roamfs)"
fi
users=$(grep -lsE '^[^#]*(include|substack)[[:space:]]+roamfs([[:space:]]|$)|^[[:space:]]*@include[[:space:]]+roamfs([[:space:]]|$)|pam_roamfs\.sh' "$ROOT"/etc/pam.d/* 2>/dev/null | grep -v "/etc/pam.d/roamfs\$" || true)
if [ -n "$users" ]; then
  if [ "$FORCE" = yes ]; then
    say "warning: still used by $(echo "$users" | tr '\n' ' '): those logins will fail (--force)"
  else
    say "PAM files still use roamfs: $(echo "$users" | tr '\n' ' '); keeping /etc/pam.d/roamfs and pam_roamfs.sh (remove those lines, then run uninstall.sh again; or --force)"
    keep_pam=yes
  fi
fi
pam_kept() { # the files a PAM stack still reaches when keep_pam=yes
  [ "$keep_pam" = yes ] || return 1
  case $1 in /etc/pam.d/roamfs | */lib/roamfs/pam_roamfs.sh | */lib/roamfs/roamfs-lib.sh | */lib/roamfs/roamfs-home | */bin/roamfs | /usr/share/pam-configs/roamfs) return 0 ;; esac
  return 1
}

# --- files and links (the manifest last)
while read -r kind a b; do
  case ${kind:-} in
    file)
      p=$b
      [ "$p" != "$MANIFEST" ] || continue
      if pam_kept "$p"; then kept=$((kept + 1)); continue; fi
      if [ -f "$ROOT$p" ] && [ ! -L "$ROOT$p" ]; then
        if [ "$(sha "$ROOT$p")" = "$a" ] || [ "$PURGE" = yes ]; then
          rm -f "$ROOT$p"; say "removed $p"; removed=$((removed + 1))
        else
          say "kept $p: changed since it was installed (--purge removes it)"; kept=$((kept + 1))
        fi
      fi ;;
    link)
      p=$b
      if [ -L "$ROOT$p" ] && [ "$(readlink "$ROOT$p")" = "$a" ]; then
        rm -f "$ROOT$p"; say "removed $p"; removed=$((removed + 1))
      fi ;;
  esac
done <<<"$M"

# --- backups of what install --force replaced
while read -r kind a _; do
  [ "${kind:-}" = backup ] || continue
  if [ -e "$ROOT$a.roamfs-backup" ] || [ -L "$ROOT$a.roamfs-backup" ]; then
    if [ -e "$ROOT$a" ] || [ -L "$ROOT$a" ]; then
      say "kept $a.roamfs-backup: $a exists again"
    else
      mv "$ROOT$a.roamfs-backup" "$ROOT$a"; say "put back $a"
    fi
  fi
done <<<"$M"

if [ "$kept" -eq 0 ] || [ "$PURGE" = yes ]; then
  rm -f "$ROOT$MANIFEST"
else
  # what stays is still listed, so that a later uninstall.sh (--purge) can finish the job
  say "the manifest stays ($MANIFEST) for what was kept"
fi

# --- directories install created, deepest first, when empty
while read -r kind a _; do
  if [ "${kind:-}" = dir ]; then echo "$a"; fi
done <<<"$M" | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2- | while read -r d; do
  if [ -d "$ROOT$d" ] && [ ! -L "$ROOT$d" ] && rmdir "$ROOT$d" 2>/dev/null; then say "removed $d/"; fi
done

if [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then
  systemctl daemon-reload || say "systemctl daemon-reload failed"
fi
say "done ($removed removed, $kept kept)"
