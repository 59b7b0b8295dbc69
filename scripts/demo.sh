#!/usr/bin/env bash
# The main job on an embedded default: a local repository folder and a generated demo
# profile for user "demo". Installs what is missing first. Run again to reuse the repository.
#   ROAMFS_DEMO   where the demo lives (default /tmp/roamfs-demo)
#   DEMO_SIZE     size of the generated profile (default 200MiB), DEMO_FILES (default 5000)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

DEMO=${ROAMFS_DEMO:-/tmp/roamfs-demo}
REPO=$DEMO/repo
SRC=$DEMO/profile-source
roamfs() { node bin/roamfs.js "$@"; }

mkdir -p "$DEMO"
if [ ! -f "$REPO/roamfs-repository.json" ]; then
  roamfs init "$REPO"
fi
if [ ! -d "$SRC" ]; then
  echo "generating a demo profile in $SRC" >&2
  node dist/scripts/gen-profile.js "$SRC" --seed 1 --size "${DEMO_SIZE:-200MiB}" --files "${DEMO_FILES:-5000}" >&2
fi
roamfs import "$REPO" demo "$SRC"
roamfs log "$REPO" demo
roamfs fsck "$REPO" --user demo
