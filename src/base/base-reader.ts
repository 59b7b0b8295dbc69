import type { ChunkLoader } from './chunk-loader.js';
import type { ChunkMap } from './chunk-map.js';
import { FdCache } from './fd-cache.js';

/**
 * Reads committed file content straight from the local store: cached chunk files and packs (at
 * the stored bytes' offset + 1, past the type byte). A read waits only for the chunks it covers; then, if read-ahead is on, the rest
 * of the file is fetched in the background, sequentially from the end of the read onwards and
 * then from the start, one chunk at a time per file.
 */
export class BaseReader {
  readonly fds: FdCache;

  constructor(
    private readonly loader: ChunkLoader,
    private readonly opts: { readahead: boolean; openChunkFiles?: number },
  ) {
    this.fds = new FdCache(opts.openChunkFiles ?? 64);
  }

  /** Read up to `length` bytes at `position` into buf[offset...]; returns the bytes read. */
  async read(map: ChunkMap, buf: Buffer, offset: number, length: number, position: number, readahead = this.opts.readahead): Promise<number> {
    if (position >= map.size || length <= 0) return 0;
    const n = Math.min(length, map.size - position);
    const [first, last] = map.range(position, n);
    const waits: Promise<void>[] = [];
    for (let i = first; i <= last; i++) waits.push(this.loader.ensureChunk(map.chunks[i]!.id, map.chunks[i]!.size));
    await Promise.all(waits);
    let done = 0;
    for (let i = first; i <= last; i++) {
      const c = map.chunks[i]!;
      const inChunk = position + done - map.start(i);
      const take = Math.min(c.size - inChunk, n - done);
      const mem = this.loader.spilled(c.id);
      if (mem) {
        mem.copy(buf, offset + done, inChunk, inChunk + take);
        done += take;
        continue;
      }
      const at = this.loader.chunkLocation(c.id);
      await this.fds.use(at.path, async (h) => {
        let got = 0;
        while (got < take) {
          const { bytesRead } = await h.read(buf, offset + done + got, take - got, at.offset + 1 + inChunk + got);
          if (bytesRead === 0) throw new Error(`cached chunk ${c.id} is shorter than ${c.size} bytes`);
          got += bytesRead;
        }
      });
      done += take;
    }
    if (readahead) this.readahead(map, last + 1);
    return n;
  }

  /** Fetch every chunk of the file (copy-up), `concurrency` at a time, in order. */
  async fetchAll(map: ChunkMap, upTo = map.size, concurrency = 4): Promise<void> {
    if (upTo <= 0) return;
    const last = map.indexOf(Math.min(upTo, map.size) - 1);
    let next = 0;
    const worker = async () => {
      while (next <= last) {
        const c = map.chunks[next++]!;
        await this.loader.ensureChunk(c.id, c.size);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
  }

  private readahead(map: ChunkMap, from: number): void {
    if (map.readaheadActive || map.allCached || map.chunks.length <= 1) return;
    map.readaheadActive = true;
    const walk = async () => {
      try {
        const n = map.chunks.length;
        for (let k = 0; k < n; k++) {
          const c = map.chunks[(from + k) % n]!;
          await this.loader.ensureChunkBackground(c.id, c.size);
        }
        map.allCached = true;
      } finally {
        map.readaheadActive = false;
      }
    };
    this.loader.track(walk());
  }
}
