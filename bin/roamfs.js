#!/usr/bin/env node
// Launcher: CommonJS (bin/package.json), so that starting roamfs loads no ES module machinery.
// The thread pool size must be set before the first fs call: repository I/O (fsync of many
// small objects) is parallel, and libuv's default of 4 threads serializes it. The daemon
// inherits it.
process.env.UV_THREADPOOL_SIZE ??= '16';
let launch;
try {
  launch = require('../dist/mount/launch.cjs');
} catch (err) {
  if (err.code !== 'MODULE_NOT_FOUND' || !String(err.message).includes('launch.cjs')) throw err;
  console.error('roamfs: not built: dist/mount/launch.cjs is missing (run npm run build, or scripts/setup.sh)');
  process.exit(70);
}
launch.main(process.argv.slice(2));
