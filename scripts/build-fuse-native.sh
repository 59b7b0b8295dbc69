#!/bin/sh
# Patch node_modules/fuse-native with patches/fuse-native+2.2.6.patch and build its addon from
# source against the system libfuse2 (Debian: apt-get install libfuse-dev pkg-config
# build-essential python3). Run by `npm ci` / `npm install` as the root package's postinstall.
#
# Idempotent: an already-applied patch is detected (reverse dry run) and a build whose stamp
# matches the patch is kept. Fails loudly (non-zero exit, message on stderr) when the patch
# does not apply, the toolchain or libfuse-dev is missing, or the result is not the patched
# binary linked against the system libfuse.so.2.
#
# Environment: ROAMFS_FUSE_REBUILD=1 forces a rebuild.
set -eu

die() {
  echo "build-fuse-native: ERROR: $*" >&2
  exit 1
}
info() {
  echo "build-fuse-native: $*"
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PATCH="$ROOT/patches/fuse-native+2.2.6.patch"
WANT_VERSION=2.2.6

[ -f "$PATCH" ] || die "missing $PATCH"
command -v node >/dev/null 2>&1 || die "node not found on PATH"

DIR=$(cd "$ROOT" && node -p "require('path').dirname(require.resolve('fuse-native/package.json'))" 2>/dev/null) ||
  die "fuse-native is not installed (run npm ci first)"
VERSION=$(node -p "require(process.argv[1]).version" "$DIR/package.json")
[ "$VERSION" = "$WANT_VERSION" ] ||
  die "fuse-native is $VERSION but $PATCH is for $WANT_VERSION; port the patch"

case "$(uname -s)" in
  Linux) ;;
  *) die "only Linux is supported (system libfuse2 via pkg-config)" ;;
esac

command -v patch >/dev/null 2>&1 || die "patch(1) not found (Debian: apt-get install patch)"
command -v pkg-config >/dev/null 2>&1 || die "pkg-config not found (Debian: apt-get install pkg-config)"
pkg-config --exists fuse ||
  die "libfuse2 development files not found by 'pkg-config fuse' (Debian: apt-get install libfuse-dev)"
FUSE_VERSION=$(pkg-config --modversion fuse)
case "$FUSE_VERSION" in
  2.9.*) ;;
  *) die "need libfuse 2.9.x, pkg-config fuse reports $FUSE_VERSION" ;;
esac

# 1. Patch (idempotent).
cd "$DIR"
if patch -p1 -R --dry-run -s -f <"$PATCH" >/dev/null 2>&1; then
  info "patch already applied to $DIR"
elif OUT=$(patch -p1 -N --dry-run -f <"$PATCH" 2>&1); then
  patch -p1 -N -s -f --no-backup-if-mismatch <"$PATCH" || die "applying $PATCH to $DIR failed"
  info "applied $(basename "$PATCH") to $DIR"
else
  echo "$OUT" >&2
  die "$PATCH does not apply to $DIR (modified or partially patched tree? reinstall with: rm -rf $DIR && npm ci)"
fi

# 2. Build from source (skipped when the stamp says this patch is already built).
STAMP_FILE="$DIR/build/Release/.roamfs-stamp"
STAMP="$(sha256sum "$PATCH" | cut -d' ' -f1) fuse-$FUSE_VERSION $(uname -m)"
if [ "${ROAMFS_FUSE_REBUILD:-}" != 1 ] && [ -f "$DIR/build/Release/fuse.node" ] &&
  [ -f "$STAMP_FILE" ] && [ "$(cat "$STAMP_FILE")" = "$STAMP" ]; then
  info "native addon up to date"
else
  # node-gyp: the one npm runs lifecycle scripts with, else on PATH, else the one bundled with npm.
  if [ -n "${npm_config_node_gyp:-}" ] && [ -f "$npm_config_node_gyp" ]; then
    set -- node "$npm_config_node_gyp"
  elif command -v node-gyp >/dev/null 2>&1; then
    set -- node-gyp
  else
    NPM_BIN=$(command -v npm) || die "neither node-gyp nor npm found"
    NPM_DIR=$(cd "$(dirname "$(readlink -f "$NPM_BIN")")/.." && pwd)
    [ -f "$NPM_DIR/node_modules/node-gyp/bin/node-gyp.js" ] || die "node-gyp not found (npm install -g node-gyp)"
    set -- node "$NPM_DIR/node_modules/node-gyp/bin/node-gyp.js"
  fi
  # Use the headers installed with node (Debian/NodeSource: /usr/include/node) instead of
  # downloading them, unless the caller chose a nodedir.
  if [ -z "${npm_config_nodedir:-}" ]; then
    NODE_PREFIX=$(node -p "require('path').resolve(process.execPath, '../..')")
    if [ -f "$NODE_PREFIX/include/node/node_api.h" ] && [ -f "$NODE_PREFIX/include/node/common.gypi" ]; then
      set -- "$@" "--nodedir=$NODE_PREFIX"
    fi
  fi
  info "building $DIR against system libfuse $FUSE_VERSION: $* rebuild"
  rm -f "$STAMP_FILE"
  "$@" rebuild --release >"$DIR/.roamfs-build.log" 2>&1 || {
    tail -n 40 "$DIR/.roamfs-build.log" >&2
    die "node-gyp rebuild failed in $DIR (full log: $DIR/.roamfs-build.log; needs build-essential python3 libfuse-dev)"
  }
fi

# 3. Verify: node-gyp-build picks build/Release (not prebuilds/), the binary carries the roamfs
#    ABI marker, and it links the system libfuse.so.2 (not the copy in fuse-shared-library).
node - "$DIR" <<'EOF' || die "verification of the patched fuse-native failed"
const path = require('path')
const dir = process.argv[2]
const ngb = require(require.resolve('node-gyp-build', { paths: [dir] }))
const picked = ngb.path(dir)
if (path.dirname(picked) !== path.join(dir, 'build', 'Release')) {
  console.error('node-gyp-build picks ' + picked + ', not build/Release')
  process.exit(1)
}
const Fuse = require(dir)
if (Fuse.ROAMFS_ABI !== 1 || typeof Fuse.UTIME_OMIT !== 'number') {
  console.error('loaded fuse-native is not the patched build')
  process.exit(1)
}
EOF
LIBFUSE=$(ldd "$DIR/build/Release/fuse.node" | awk '$1 ~ /^libfuse\.so/ { print $3 }')
case "$LIBFUSE" in
  /lib/* | /usr/lib/*) ;;
  *) die "build/Release/fuse.node links libfuse at '$LIBFUSE', expected the system libfuse.so.2" ;;
esac
echo "$STAMP" >"$STAMP_FILE"
info "ok: $DIR/build/Release/fuse.node (libfuse $FUSE_VERSION at $LIBFUSE)"
