#!/bin/sh
# Build roamfs's own small addon (src/native: utimensat with ns precision, syncfs) with
# node-gyp, against the headers installed with node (no download). Run by `npm ci`.
set -eu
cd "$(dirname "$0")/.."
if [ -n "${npm_config_node_gyp:-}" ] && [ -f "$npm_config_node_gyp" ]; then
  set -- node "$npm_config_node_gyp"
else
  NPM_DIR=$(cd "$(dirname "$(readlink -f "$(command -v npm)")")/.." && pwd)
  set -- node "$NPM_DIR/node_modules/node-gyp/bin/node-gyp.js"
fi
if [ -z "${npm_config_nodedir:-}" ]; then
  NODE_PREFIX=$(node -p "require('path').resolve(process.execPath, '../..')")
  [ -f "$NODE_PREFIX/include/node/node_api.h" ] && set -- "$@" "--nodedir=$NODE_PREFIX"
fi
"$@" rebuild --release >/dev/null 2>build-native.log || {
  cat build-native.log >&2
  echo "build-native: node-gyp failed (needs build-essential python3)" >&2
  exit 1
}
rm -f build-native.log
