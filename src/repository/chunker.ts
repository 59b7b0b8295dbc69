import { createHash } from 'node:crypto';
import { gearCut } from '../core/native.js';

/**
 * FastCDC content-defined chunking (Xia et al., USENIX ATC '16) with a 32-bit gear hash and
 * normalized chunking level 2. The gear table and masks are part of the repository format:
 * every writer must cut at the same places to share chunks.
 */
export interface ChunkerParams {
  minSize: number;
  avgSize: number;
  maxSize: number;
}

export const DEFAULT_CHUNKER: ChunkerParams = { minSize: 64 * 1024, avgSize: 256 * 1024, maxSize: 1024 * 1024 };

/**
 * gear[i] = first 4 bytes (big-endian) of SHA-256("roamfs-gear-" + i), held as int32 (the same
 * 32 bits): the rolling hash stays in V8's int32 arithmetic (see Chunker.cut).
 */
const GEAR: Int32Array = (() => {
  const t = new Int32Array(256);
  for (let i = 0; i < 256; i++) t[i] = createHash('sha256').update(`roamfs-gear-${i}`).digest().readInt32BE(0);
  return t;
})();

/** A mask of the `bits` highest bits: with `fp << 1` the high bits depend on the most bytes. */
function highMask(bits: number): number {
  return bits >= 32 ? 0xffffffff : ((((1 << bits) >>> 0) - 1) << (32 - bits)) >>> 0;
}

export function validateChunkerParams(p: ChunkerParams): string | undefined {
  const pow2 = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
  if (!pow2(p.avgSize)) return 'avgSize must be a power of two';
  if (!(Number.isInteger(p.minSize) && p.minSize >= 64 && p.minSize < p.avgSize)) return 'minSize must be >= 64 and < avgSize';
  if (!(Number.isInteger(p.maxSize) && p.maxSize > p.avgSize && p.maxSize <= 64 * 1024 * 1024)) return 'maxSize must be > avgSize and <= 64 MiB';
  return undefined;
}

export class Chunker {
  readonly params: ChunkerParams;
  private readonly maskS: number;
  private readonly maskL: number;

  constructor(params: ChunkerParams = DEFAULT_CHUNKER) {
    const bad = validateChunkerParams(params);
    if (bad) throw new Error(`invalid chunker parameters: ${bad}`);
    this.params = params;
    const bits = Math.log2(params.avgSize);
    this.maskS = highMask(bits + 2) | 0; // harder to match before the average size
    this.maskL = highMask(bits - 2) | 0; // easier after it
  }

  /**
   * Length of the next chunk of buf[start, end). `final` says no data follows `end`; when it is
   * false the caller must supply at least maxSize bytes (or all that remains).
   */
  cut(buf: Uint8Array, start: number, end: number): number {
    const { minSize, avgSize, maxSize } = this.params;
    const n = end - start;
    if (n <= minSize) return n;
    if (gearCut) return gearCut(buf, start, end, minSize, avgSize, maxSize, this.maskS, this.maskL, GEAR);
    return this.cutJs(buf, start, end);
  }

  /**
   * `cut` in JavaScript: used when the native addon predates gearCut, and the reference the
   * tests hold the native version to.
   */
  cutJs(buf: Uint8Array, start: number, end: number): number {
    const { minSize, avgSize, maxSize } = this.params;
    const n = end - start;
    if (n <= minSize) return n;
    if (!warmed) warmUp();
    const limit = start + Math.min(n, maxSize);
    const normal = start + Math.min(n, avgSize);
    const maskS = this.maskS;
    const maskL = this.maskL;
    let fp = 0;
    let i = start + minSize;
    for (; i < normal; i++) {
      fp = ((fp << 1) + GEAR[buf[i]!]!) | 0;
      if ((fp & maskS) === 0) return i + 1 - start;
    }
    for (; i < limit; i++) {
      fp = ((fp << 1) + GEAR[buf[i]!]!) | 0;
      if ((fp & maskL) === 0) return i + 1 - start;
    }
    return limit - start;
  }

  /** All chunk lengths of an in-memory buffer. */
  cutAll(buf: Uint8Array): number[] {
    const out: number[] = [];
    for (let off = 0; off < buf.length; ) {
      const len = this.cut(buf, off, buf.length);
      out.push(len);
      off += len;
    }
    return out;
  }
}

/**
 * V8 optimizes `cut` while its first big input is being cut (on-stack replacement), before the
 * loop's exits have ever run; each exit then deoptimizes it, and after a few of those V8 gives
 * up and leaves it unoptimized: 167 MiB/s instead of ~1.1 GiB/s on the machines of
 * docs/benchmarks.md, for every chunk after the first MiBs of a process. Running every path
 * once on a small input first (~0.2 ms) gives the optimizer the types of all of them.
 */
let warmed = false;
function warmUp(): void {
  warmed = true;
  const tiny = new Chunker({ minSize: 64, avgSize: 256, maxSize: 1024 });
  const buf = Buffer.alloc(8192);
  let x = 0x9e3779b9;
  for (let i = 0; i < 4096; i++) buf[i] = (x = (Math.imul(x, 1664525) + 1013904223) | 0) >>> 24; // random half, zero half
  for (let off = 0; off < buf.length; ) off += tiny.cutJs(buf, off, buf.length);
}
