/**
 * Deterministic test data for the repository tests: a seeded byte stream (AES-128-CTR over
 * zeros: fast, reproducible, incompressible) and a small seeded number generator.
 */
import { createCipheriv, createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';

/** A seeded stream of pseudo-random bytes: next(n) returns the next n bytes. */
export function byteStream(seed: string | number): (n: number) => Buffer {
  const key = createHash('sha256').update(`roamfs-test-bytes:${seed}`).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  let zeros = Buffer.alloc(0);
  return (n: number) => {
    if (zeros.length < n) zeros = Buffer.alloc(n);
    return cipher.update(zeros.subarray(0, n));
  };
}

export function randomBuffer(seed: string | number, size: number): Buffer {
  return byteStream(seed)(size);
}

const BLOCK = 8 * 1024 * 1024;

/** Write `size` seeded random bytes to `file` (created or truncated), 8 MiB at a time. */
export async function writeRandomFile(file: string, size: number, seed: string | number): Promise<void> {
  const next = byteStream(seed);
  const h = await fsp.open(file, 'w', 0o644);
  try {
    for (let done = 0; done < size; ) {
      const n = Math.min(BLOCK, size - done);
      await h.write(next(n), 0, n, done);
      done += n;
    }
  } finally {
    await h.close();
  }
}

/** Overwrite `length` bytes at `offset` of an existing file with seeded random bytes. */
export async function overwriteRange(file: string, offset: number, length: number, seed: string | number): Promise<void> {
  const h = await fsp.open(file, 'r+');
  try {
    await h.write(randomBuffer(seed, length), 0, length, offset);
  } finally {
    await h.close();
  }
}

/** mulberry32: a tiny seeded PRNG for choices and delays (not for bulk bytes). */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  /** Uniform in [0, 1). */
  next(): number {
    this.s = (this.s + 0x6d2b79f5) >>> 0;
    let t = this.s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [lo, hi). */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(0, xs.length)]!;
  }
}
