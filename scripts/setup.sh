#!/usr/bin/env bash
# Install what roamfs needs on Debian 12 (as root), only what is missing:
#   Debian packages, npm dependencies (npm ci, which also builds the native parts), and dist/
#   (npm run build: tsc, then the bundles in dist/bundle/).
# Used by the README's quick-start commands, .ci/run and the Dockerfile, so all three
# install the same way. Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "roamfs setup: $*" >&2; }

# Node.js 20.19+ (ava 7 and the tool chain need it; Debian 12 ships 18, so it is not installed here).
if ! command -v node >/dev/null 2>&1; then
  say "Node.js 20.19 or newer is required and was not found (Debian 12's nodejs is 18: use NodeSource's node 20, or the Dockerfile)"
  exit 1
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=19)?0:1)'; then
  say "Node.js $(node --version) is too old: roamfs needs 20.19 or newer"
  exit 1
fi

# Debian packages: FUSE (libfuse2 for the binding, fuse3 for fusermount3, headers to build it),
# a C tool chain for node-gyp, and the programs the tests drive on a mount.
PKGS=(libfuse2 fuse3 libfuse-dev pkg-config build-essential python3 git sqlite3 rsync tar procps util-linux pamtester systemd)
PKGS+=(glusterfs-server glusterfs-client)  # the GlusterFS tests (test/gluster/) run a single-node volume
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then say "missing Debian packages (${missing[*]}); run as root"; exit 1; fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# npm dependencies (npm ci also runs our install scripts: the native addon and the patched fuse-native).
stamp=node_modules/.roamfs-installed
# Also when a native part's sources changed since (src/native, binding.gyp, the fuse-native
# patch): npm ci reinstalls from scratch, so the patch applies to a pristine fuse-native.
native_changed() {
  for f in binding.gyp src/native/*.c patches/*.patch; do [ "$f" -nt "$stamp" ] && return 0; done
  return 1
}
if [ ! -f "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ package.json -nt "$stamp" ] || native_changed; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund >&2
  touch "$stamp"
fi

# The build (npm run build): TypeScript (incremental, so a second run is quick), then the CLI and
# daemon bundles that bin/roamfs.js runs (scripts/build-bundles.ts; it checks them and fails loudly).
say "building"
npm run --silent build >&2
