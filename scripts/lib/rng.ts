/**
 * Small, fast, seedable pseudo-random generators for synthetic test data.
 *
 * NOT cryptographic. Everything here is pure 32-bit integer arithmetic so the
 * output is identical on every platform and Node version for a given seed.
 */

/** Mix a 32-bit value (murmur3 fmix32). */
export function mix32(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

/** Hash any number of 32-bit integers (e.g. seed, stream id, index) into one 32-bit seed. */
export function hashSeed(...parts: number[]): number {
  let h = 0x9e3779b9;
  for (const p of parts) {
    // Fold values beyond 32 bits (indices, sizes) in two halves.
    const lo = p >>> 0;
    const hi = Math.floor(p / 0x100000000) >>> 0;
    h = mix32((h ^ lo) + 0x7f4a7c15);
    if (hi !== 0) h = mix32((h ^ hi) + 0x3c6ef372);
  }
  return h >>> 0;
}

/** Hash a string into a 32-bit value (FNV-1a followed by a final mix). */
export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return mix32(h);
}

/**
 * sfc32 (Chris Doty-Humphrey's Small Fast Counting generator).
 * Good statistical quality, 128-bit state; used for all "decisions".
 */
export class Rng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(...seed: number[]) {
    const s = hashSeed(...seed);
    this.a = mix32(s ^ 0xa0761d65);
    this.b = mix32(s ^ 0xe7037ed1);
    this.c = mix32(s ^ 0x8ebc6af0);
    this.d = 1;
    for (let i = 0; i < 15; i++) this.u32();
  }

  /** Uniform integer in [0, 2^32). */
  u32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform float in [0, 1) with 53 bits of precision. */
  float(): number {
    return ((this.u32() >>> 5) * 67108864 + (this.u32() >>> 6)) / 9007199254740992;
  }

  /** Uniform integer in [min, max] (inclusive). */
  int(min: number, max: number): number {
    return min + Math.floor(this.float() * (max - min + 1));
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick() from empty list');
    return items[Math.floor(this.float() * items.length)]!;
  }

  /** Pick using parallel weights. */
  weighted<T>(items: readonly T[], weights: readonly number[]): T {
    let total = 0;
    for (const w of weights) total += w;
    let r = this.float() * total;
    for (let i = 0; i < items.length; i++) {
      r -= weights[i]!;
      if (r < 0) return items[i]!;
    }
    return items[items.length - 1]!;
  }

  /** Standard normal deviate (Box-Muller, one value per call). */
  normal(): number {
    let u = this.float();
    if (u < 1e-300) u = 1e-300;
    const v = this.float();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  /** Log-uniform value in [min, max). */
  logUniform(min: number, max: number): number {
    return Math.exp(Math.log(min) + this.float() * (Math.log(max) - Math.log(min)));
  }

  /** Lower-case hex string of n characters. */
  hex(n: number): string {
    let s = '';
    while (s.length < n) s += this.u32().toString(16).padStart(8, '0');
    return s.slice(0, n);
  }

  /** Fresh independent generator derived from this one. */
  fork(tag = 0): Rng {
    return new Rng(this.u32(), this.u32(), tag);
  }
}

/**
 * Fill buffers with pseudo-random bytes from a stream identified by `seed...`
 * (xorshift128, ~1.5-2 GiB/s in V8). Streams with different seeds are
 * unrelated, and a stream does not repeat within 2^128-1 words, so large
 * files have unique content across their whole length (no repeated blocks).
 *
 * Each fill() consumes ceil(len/4) 32-bit words, emitted little-endian. Filling
 * a file in chunks therefore gives the same bytes as one big fill as long as
 * every chunk except the last has a length that is a multiple of 4.
 */
export class ByteStream {
  private x: number;
  private y: number;
  private z: number;
  private w: number;

  constructor(...seed: number[]) {
    const s = hashSeed(...seed);
    this.x = mix32(s ^ 0x243f6a88) | 1;
    this.y = mix32(s ^ 0x85a308d3);
    this.z = mix32(s ^ 0x13198a2e);
    this.w = mix32(s ^ 0x03707344);
    for (let i = 0; i < 8; i++) this.word();
  }

  word(): number {
    const t = this.x ^ (this.x << 11);
    this.x = this.y;
    this.y = this.z;
    this.z = this.w;
    this.w = this.w ^ (this.w >>> 19) ^ (t ^ (t >>> 8));
    return this.w >>> 0;
  }

  /** Fill buf[start, end) with the next bytes of the stream. */
  fill(buf: Uint8Array, start = 0, end = buf.length): void {
    let i = start;
    const words = (end - i) >>> 2;
    if (words > 0 && ((buf.byteOffset + i) & 3) === 0 && LITTLE_ENDIAN) {
      const u32 = new Uint32Array(buf.buffer, buf.byteOffset + i, words);
      let x = this.x;
      let y = this.y;
      let z = this.z;
      let w = this.w;
      for (let k = 0; k < words; k++) {
        const t = x ^ (x << 11);
        x = y;
        y = z;
        z = w;
        w = w ^ (w >>> 19) ^ (t ^ (t >>> 8));
        u32[k] = w;
      }
      this.x = x;
      this.y = y;
      this.z = z;
      this.w = w;
      i += words * 4;
    }
    while (i < end) {
      let v = this.word();
      for (let n = 0; n < 4 && i < end; n++) {
        buf[i++] = v & 0xff;
        v >>>= 8;
      }
    }
  }
}

const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;
