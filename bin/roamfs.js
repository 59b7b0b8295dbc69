#!/usr/bin/env node
// Launcher. The thread pool size must be set before the first fs call: repository I/O
// (fsync of many small objects) is parallel, and libuv's default of 4 threads serializes it.
process.env.UV_THREADPOOL_SIZE ??= '16';
await import('../dist/mount/cli.js');
