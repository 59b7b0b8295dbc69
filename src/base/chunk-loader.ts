import { SingleFlight, Semaphore } from '../core/async.js';
import type { ObjectId } from '../core/hash.js';
import { TYPE_CHUNK, TYPE_COMMIT, TYPE_TREE, decodeCommit, decodeTree, type Commit, type TreeEntry } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';
import type { LocalCache } from './local-cache.js';
import { isRoamfsError } from '../core/errors.js';

/** Memory for chunks that a full cache disk could not take. */
const SPILL_MAX_BYTES = 64 * 1024 * 1024;

/** Counters for the daemon's status (all monotonic for the life of the loader). */
export interface LoaderStats {
  /** Objects and bytes (stored size, type byte included) fetched from the remote repository. */
  remoteObjects: number;
  remoteBytes: number;
  /** ensureChunk/loadTree calls answered locally vs. ones that had to go remote. */
  cacheHits: number;
  cacheMisses: number;
  /** Remote fetches that failed (missing or corrupt objects, I/O). */
  fetchErrors: number;
}

/**
 * Observes each remote fetch (metrics: hydration latency). Called when the fetch starts; the
 * returned function is called once when it ends, with the stored bytes (0 on failure). The
 * observer does its own timing, so the core keeps no clock for it. Must not throw.
 */
export type FetchObserver = (kind: 'chunk' | 'tree' | 'commit') => (ok: boolean, bytes: number) => void;

/**
 * Brings committed objects from the remote repository into the local cache, on demand.
 *
 * - Every fetch is single-flight per object id: concurrent readers of one chunk share one
 *   remote read, and a failure is not remembered (the next caller retries).
 * - The remote Repository verifies each object's SHA-256, so what lands in the cache is exact.
 * - Foreground fetches (a reader is waiting) run unthrottled; background ones (read-ahead) go
 *   through a small semaphore so they never crowd out the foreground on the shared storage.
 */
export class ChunkLoader {
  readonly stats: LoaderStats = { remoteObjects: 0, remoteBytes: 0, cacheHits: 0, cacheMisses: 0, fetchErrors: 0 };
  /** Chunks fetched while the cache disk was full (see ensureChunk). */
  private readonly spill = new Map<ObjectId, Buffer>();
  private spillBytes = 0;
  private readonly chunkFlight = new SingleFlight<ObjectId, void>();
  private readonly treeFlight = new SingleFlight<ObjectId, TreeEntry[]>();
  private readonly backgroundSlots: Semaphore;
  private readonly pending = new Set<Promise<unknown>>();
  /** See FetchObserver; null: none. */
  onFetch: FetchObserver | null = null;

  constructor(
    readonly remote: Repository,
    readonly cache: LocalCache,
    opts: { backgroundConcurrency?: number } = {},
  ) {
    this.backgroundSlots = new Semaphore(opts.backgroundConcurrency ?? 4);
  }

  /** Where the cached chunk's stored bytes are (a pack or its own file); content starts at offset + 1. Valid once ensureChunk resolved. */
  chunkLocation(id: ObjectId): { path: string; offset: number } {
    return this.cache.locate(id);
  }

  /**
   * Make chunk `id` (payload `size` bytes) present in the local cache. Throws the remote's
   * MISSING_OBJECT / CORRUPT_OBJECT (or IO) error when it cannot be fetched.
   */
  ensureChunk(id: ObjectId, size: number): Promise<void> {
    return this.chunkFlight.run(id, async () => {
      if (this.spill.has(id) || (await this.cache.has(id, size))) {
        this.stats.cacheHits++;
        return;
      }
      this.stats.cacheMisses++;
      const payload = await this.fetch('chunk', () => this.remote.getChunk(id, size));
      try {
        await this.cache.putVerified(id, TYPE_CHUNK, payload);
      } catch (err) {
        // A full cache disk must not make committed files unreadable: keep the verified bytes
        // in memory (bounded, oldest dropped first) and serve reads from there.
        if (!isRoamfsError(err, 'NO_SPACE')) throw err;
        this.remember(id, payload);
      }
    });
  }

  /** The payload of a chunk that could not be cached for lack of space, if still held. */
  spilled(id: ObjectId): Buffer | undefined {
    const b = this.spill.get(id);
    if (b) {
      this.spill.delete(id); // LRU: most recently used last
      this.spill.set(id, b);
    }
    return b;
  }

  private remember(id: ObjectId, payload: Buffer): void {
    this.spill.set(id, payload);
    this.spillBytes += payload.length;
    for (const [k, v] of this.spill) {
      if (this.spillBytes <= SPILL_MAX_BYTES || k === id) break;
      this.spill.delete(k);
      this.spillBytes -= v.length;
    }
  }

  /** Like ensureChunk, but waits for a background slot first (read-ahead). */
  async ensureChunkBackground(id: ObjectId, size: number): Promise<void> {
    if (this.spill.has(id) || (await this.cache.has(id, size))) return;
    await this.backgroundSlots.run(() => this.ensureChunk(id, size));
  }

  /** The entries of tree `id`: from the local cache, else fetched and cached. Single-flight. */
  loadTree(id: ObjectId): Promise<TreeEntry[]> {
    return this.treeFlight.run(id, async () => {
      const local = await this.cache.get(id, TYPE_TREE);
      if (local) {
        this.stats.cacheHits++;
        return decodeTree(local, id);
      }
      this.stats.cacheMisses++;
      const payload = await this.fetch('tree', () => this.remote.getObject(id, TYPE_TREE));
      const entries = decodeTree(payload, id);
      // On a full cache disk the tree is simply not cached (the overlay keeps its entries).
      await this.cache.putVerified(id, TYPE_TREE, payload).catch((err) => {
        if (!isRoamfsError(err, 'NO_SPACE')) throw err;
      });
      return entries;
    });
  }

  /** A commit, always from the remote (commits are tiny and read once per mount). */
  loadCommit(id: ObjectId): Promise<Commit> {
    return this.fetch('commit', () => this.remote.getObject(id, TYPE_COMMIT)).then((payload) => decodeCommit(payload, id));
  }

  /** Run background work, remembered so that idle() can wait for it. Errors are swallowed. */
  track(work: Promise<unknown>): void {
    const p = work.catch(() => {}).finally(() => this.pending.delete(p));
    this.pending.add(p);
  }

  /** Resolves when no background work is pending (tests; orderly unmount). */
  async idle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  private async fetch(kind: 'chunk' | 'tree' | 'commit', get: () => Promise<Buffer>): Promise<Buffer> {
    const done = this.onFetch?.(kind);
    try {
      const payload = await get();
      this.stats.remoteObjects++;
      this.stats.remoteBytes += payload.length + 1;
      done?.(true, payload.length + 1);
      return payload;
    } catch (err) {
      this.stats.fetchErrors++;
      done?.(false, 0);
      throw err;
    }
  }
}
