import type { ChunkRef } from '../repository/objects.js';

/**
 * A committed file's content as a chunk list, with prefix sums so that a byte offset maps to
 * its chunk by binary search (a 10 GiB file has ~40,000 chunks; reads must not scan them).
 * Immutable: a file whose content changes gets an upper file, not a new ChunkMap.
 */
export class ChunkMap {
  /** starts[i] = offset of chunk i; starts[n] = size. */
  private readonly starts: Float64Array;
  /** Set while a read-ahead walk over this file is running (one walk per file at a time). */
  readaheadActive = false;
  /** Set once a read-ahead walk found every chunk cached: no further walks are needed. */
  allCached = false;

  constructor(readonly chunks: readonly ChunkRef[]) {
    this.starts = new Float64Array(chunks.length + 1);
    for (let i = 0; i < chunks.length; i++) this.starts[i + 1] = this.starts[i]! + chunks[i]!.size;
  }

  static readonly EMPTY = new ChunkMap([]);

  get size(): number {
    return this.starts[this.chunks.length]!;
  }

  /** Offset at which chunk i starts. */
  start(i: number): number {
    return this.starts[i]!;
  }

  /** Index of the chunk holding byte `pos` (0 <= pos < size). */
  indexOf(pos: number): number {
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.starts[mid]! <= pos) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Chunk indexes [first, last] that hold bytes [pos, pos+len), len > 0, clipped to size. */
  range(pos: number, len: number): [number, number] {
    const end = Math.min(pos + len, this.size);
    return [this.indexOf(pos), this.indexOf(end - 1)];
  }
}
