/**
 * ava's `require` hook (package.json): before a test file runs, the bundles that bin/roamfs.js
 * runs (dist/bundle/, scripts/build-bundles.ts) are made current with the TypeScript build. A
 * bare `tsc` rewrites dist/ (and dist/.tsbuildinfo) but not the bundles, and the tests that run
 * the real CLI would silently test the old code. One test process rebuilds (holding a lock
 * directory); the others wait for it. A failed build fails the test run.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const DIST = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const LOCK = path.join(DIST, '.bundle-build.lock');
/** A lock this old was left by a killed test process. */
const STALE_LOCK_MS = 5 * 60_000;

function mtime(p: string): number | undefined {
  return fs.statSync(p, { throwIfNoEntry: false })?.mtimeMs;
}

/** The bundles are missing or older than the last tsc run that changed something. */
function stale(): boolean {
  const tsc = mtime(path.join(DIST, '.tsbuildinfo'));
  if (tsc === undefined) return false;
  return ['cli.js', 'daemon-main.js'].some((b) => (mtime(path.join(DIST, 'bundle', b)) ?? 0) < tsc);
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

while (stale()) {
  try {
    fs.mkdirSync(LOCK);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    const held = mtime(LOCK);
    if (held !== undefined && Date.now() - held > STALE_LOCK_MS) fs.rmSync(LOCK, { recursive: true, force: true });
    sleep(200);
    continue;
  }
  try {
    if (stale()) execFileSync(process.execPath, [path.join(DIST, 'scripts', 'build-bundles.js')], { stdio: ['ignore', 'ignore', 'inherit'] });
  } finally {
    fs.rmSync(LOCK, { recursive: true, force: true });
  }
}
