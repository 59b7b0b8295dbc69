#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test (real FUSE mounts
# included: needs root and /dev/fuse). Extra arguments go to ava (e.g. a file pattern).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec npx ava "$@"
