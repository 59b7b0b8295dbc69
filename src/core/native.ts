import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';
import * as fsp from 'node:fs/promises';
import { constants as C } from 'node:fs';

interface NativeAddon {
  lutimens(path: string, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  /** Missing in an addon built before it existed (see futimens). */
  futimens?(fd: number, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  /** Missing in an addon built before it existed (see gearCut). */
  gearCut?(buf: Uint8Array, start: number, end: number, minSize: number, avgSize: number, maxSize: number, maskS: number, maskL: number, gear: Int32Array): number;
  syncfs(fd: number): void;
  /** Missing in an addon built before it existed (see syncfsAsync). */
  syncfsAsync?(fd: number): Promise<void>;
}

// dist/src/core/native.js -> <root>/build/Release; src/core/native.ts (ts-node) -> same root.
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
function load(): NativeAddon {
  const candidates = [path.resolve(here, '../../../build/Release/roamfs_native.node'), path.resolve(here, '../../build/Release/roamfs_native.node')];
  for (const c of candidates) {
    try {
      return require(c) as NativeAddon;
    } catch (err) {
      if ((err as { code?: string }).code !== 'MODULE_NOT_FOUND') throw err;
    }
  }
  throw new Error(`roamfs native addon not built; run npm ci`);
}
const addon = load();

export const UTIME_OMIT = -1;
export const UTIME_NOW = -2;
const NS = 1_000_000_000n;

function split(t: bigint | 'now' | 'omit'): [number, number] {
  if (t === 'omit') return [0, UTIME_OMIT];
  if (t === 'now') return [0, UTIME_NOW];
  let s = t / NS;
  let n = t % NS;
  if (n < 0n) {
    n += NS;
    s -= 1n;
  }
  return [Number(s), Number(n)];
}

/** Set atime/mtime with nanosecond precision, not following symlinks. */
export function lutimens(p: string, atime: bigint | 'now' | 'omit', mtime: bigint | 'now' | 'omit'): void {
  const [as, an] = split(atime);
  const [ms, mn] = split(mtime);
  addon.lutimens(p, as, an, ms, mn);
}

/**
 * Set atime/mtime of an open file with nanosecond precision. False (nothing done) when the
 * addon was built before this function existed: the caller then uses lutimens.
 */
export function futimens(fd: number, atime: bigint | 'now' | 'omit', mtime: bigint | 'now' | 'omit'): boolean {
  if (!addon.futimens) return false;
  const [as, an] = split(atime);
  const [ms, mn] = split(mtime);
  addon.futimens(fd, as, an, ms, mn);
  return true;
}

/**
 * The FastCDC cut of Chunker.cut in C (src/native/roamfs_native.c), or null when the addon was
 * built before it existed (`npm ci` rebuilds it): Chunker then cuts in JavaScript.
 */
export const gearCut = addon.gearCut ? addon.gearCut.bind(addon) : null;

/** syncfs(2) on the file system holding the open fd. */
export function syncfs(fd: number): void {
  addon.syncfs(fd);
}

/**
 * syncfs(2) on the libuv thread pool: it writes back every dirty page of the file system and
 * can take seconds, during which the event loop (a daemon's FUSE operations) goes on. Keep fd
 * open until the promise settles. (An addon from before this function existed: synchronous.)
 */
export async function syncfsAsync(fd: number): Promise<void> {
  if (addon.syncfsAsync) await addon.syncfsAsync(fd);
  else addon.syncfs(fd);
}

/** syncfsAsync on the file system holding directory `dir` (opened and closed around it). */
export async function syncfsDir(dir: string): Promise<void> {
  const h = await fsp.open(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    await syncfsAsync(h.fd);
  } finally {
    await h.close();
  }
}
