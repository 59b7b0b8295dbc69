#!/usr/bin/env bash
# The main job on an embedded default: a local repository folder, a generated demo profile
# for user "demo", and a real FUSE mount of it as a home directory. Installs what is missing
# first. Run it again to mount the same profile again (with your changes from last time).
#   ROAMFS_DEMO   where the demo lives (default /tmp/roamfs-demo)
#   DEMO_SIZE     size of the generated profile (default 200MiB), DEMO_FILES (default 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

DEMO=${ROAMFS_DEMO:-/tmp/roamfs-demo}
REPO=$DEMO/repo
SRC=$DEMO/profile-source
HOME_DIR=$DEMO/home
roamfs() { bin/roamfs "$@"; }

mkdir -p "$DEMO" "$HOME_DIR"
if grep -qs " $HOME_DIR fuse" /proc/mounts; then
  echo "The demo home is already mounted at $HOME_DIR (log out with: npx roamfs logout $HOME_DIR)"
  exit 0
fi
[ -f "$REPO/roamfs-repository.json" ] || roamfs init "$REPO"
if ! roamfs log "$REPO" demo -n 1 >/dev/null 2>&1; then
  if [ ! -f "$DEMO/.profile-generated" ]; then
    rm -rf "$SRC"
    echo "generating a demo profile in $SRC" >&2
    node dist/scripts/gen-profile.js "$SRC" --seed 1 --size "${DEMO_SIZE:-200MiB}" --files "${DEMO_FILES:-5000}" >&2
    touch "$DEMO/.profile-generated"
  fi
  roamfs import "$REPO" demo "$SRC" -m "demo profile"
fi
echo "history of the demo profile:"
roamfs log "$REPO" demo -n 5
start=$(date +%s.%N)
roamfs mount "$REPO" demo "$HOME_DIR" --cache "$DEMO/cache" --snapshot-interval 30s --idle 5s
ls -la "$HOME_DIR" | head -n 12
echo "mounted in $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N) - $start}") s"
cat <<MSG

The demo profile is mounted at $HOME_DIR. Work in it as in any home directory:
  cd $HOME_DIR && ls -la && echo hello > notes.txt
Every 30 s a snapshot is taken and committed to $REPO when the desktop is idle.
  npx roamfs status $HOME_DIR          # snapshots, pending changes, bytes up/down
  npx roamfs log $REPO demo            # the commits your session made
Log out (final snapshot, commit, unmount):
  npx roamfs logout $HOME_DIR
MSG
