import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ioError } from '../core/errors.js';
import { defaultIoMode, type IoMode } from '../core/io-mode.js';
import type { ChunkRef } from '../repository/objects.js';

/**
 * The chunk list of an upper file's content as of its last chunking (a snapshot, or the
 * copy-up of a committed file), and the byte range [from, to) written or resized since
 * (from = Infinity, to = -Infinity: nothing). See UpperFile.chunked.
 */
export interface Chunked {
  readonly chunks: readonly ChunkRef[];
  from: number;
  to: number;
}


/**
 * A file's private, writable content. Its `size` is the overlay's truth (kept in memory,
 * updated after each write/truncate); bytes past it, on disk or in memory, mean nothing.
 *
 * Small new files live in memory (`mem`, within UpperStore's budget), so creating, writing,
 * closing and deleting one costs no system call at all; the first need of a real file (growing
 * past the per-file limit, or `handle()`) moves it to a file in CACHE/upper/ ("to disk"), once.
 * Its timestamps on disk are meaningless (the node holds mtime in ns, which fs.utimes could not
 * even store).
 *
 * Concurrency: the caller serializes what changes the content (the node's gate, see Gate);
 * moving to disk changes how the content is held, so it runs only under the exclusive gate.
 */
export class UpperFile {
  private opening: Promise<fsp.FileHandle> | null;
  /** The open handle, once `opening` has resolved (for synchronous I/O on its descriptor). */
  private opened: fsp.FileHandle | null;
  /** The content while the file lives in memory (capacity >= size); null once on disk. */
  private memBuf: Buffer | null;
  private diskPath: string | null;
  /**
   * What a snapshot needs to re-chunk only what changed (Snapshotter.chunkFile): null when
   * unknown (a new file), and the snapshot chunks it all. Whoever changes the content reports
   * the range with `changed`, under the node's gate.
   */
  chunked: Chunked | null = null;

  constructor(
    private readonly store: UpperStore,
    where: { path: string; fh: fsp.FileHandle } | { mem: Buffer },
    public size = 0,
  ) {
    if ('mem' in where) {
      this.memBuf = where.mem;
      this.diskPath = null;
      this.opening = null;
      this.opened = null;
    } else {
      this.memBuf = null;
      this.diskPath = where.path;
      this.opening = Promise.resolve(where.fh);
      this.opened = where.fh;
    }
  }

  /** Bytes [from, to) were written, or the size moved between from and to. */
  changed(from: number, to: number): void {
    const c = this.chunked;
    if (!c) return;
    if (from < c.from) c.from = from;
    if (to > c.to) c.to = to;
  }

  /** The file in CACHE/upper/, or null while the content is in memory. */
  get path(): string | null {
    return this.diskPath;
  }

  /** The content while the file lives in memory: valid up to `size`. */
  get mem(): Buffer | null {
    return this.memBuf;
  }

  /**
   * Make room in memory for content up to `end` bytes (zeros between `size` and the old end of
   * the buffer are the caller's business). False when the file must move to disk first: past
   * the per-file limit, or the budget is spent. Synchronous.
   */
  reserve(end: number): boolean {
    const m = this.memBuf;
    if (!m) return false;
    if (end <= m.length) return true;
    const cap = Math.min(Math.max(end, 2 * m.length, 4096), this.store.memFileMax);
    if (end > cap || !this.store.memTake(cap - m.length)) return false;
    const grown = Buffer.alloc(cap);
    m.copy(grown, 0, 0, this.size);
    this.memBuf = grown;
    return true;
  }

  /**
   * The read-write handle, opened on first use. A file in memory moves to disk first (under the
   * node's exclusive gate, see the class comment).
   */
  handle(): Promise<fsp.FileHandle> {
    if (!this.opening) {
      const p = this.memBuf ? this.toDisk() : fsp.open(this.diskPath!, 'r+');
      this.opening = p;
      p.then(
        (h) => {
          if (this.opening === p) this.opened = h;
        },
        () => {
          if (this.opening === p) this.opening = null;
        },
      );
    }
    return this.opening;
  }

  /** Read into buf at the file position; fewer bytes at the end of what exists. */
  async read(buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const m = this.memBuf;
    if (m) return m.copy(buf, offset, position, Math.max(position, Math.min(this.size, position + length)));
    return (await (await this.handle()).read(buf, offset, length, position)).bytesRead;
  }

  /**
   * The whole content (`size` bytes, zeros past the end of a shorter file on disk), read
   * synchronously (see IoMode); null when synchronous I/O is off for now: read() then. For
   * readers that want a small file at once (the snapshot). A file in memory is not copied: the
   * result is a view of its buffer, valid only while the caller holds the node's gate
   * exclusively (no write can change or move it meanwhile).
   */
  readAllSync(): Buffer | null {
    const m = this.memBuf;
    if (m) return m.subarray(0, this.size);
    if (!this.store.io.sync) return null;
    return this.store.io.time(() => {
      const out = Buffer.alloc(this.size);
      const own = this.fd;
      const fd = own ?? fs.openSync(this.diskPath!, 'r');
      try {
        for (let n = 0; n < this.size; ) {
          const r = fs.readSync(fd, out, n, this.size - n, n);
          if (r === 0) break;
          n += r;
        }
      } finally {
        if (own === null) fs.closeSync(fd);
      }
      return out;
    });
  }

  /**
   * The descriptor of the open handle for a synchronous call that completes before the caller
   * yields; null while the file is in memory, closed, or still opening.
   */
  get fd(): number | null {
    return this.opened ? this.opened.fd : null;
  }

  /** Whether a handle is open (or opening). A file in memory has none. */
  get isOpen(): boolean {
    return this.opening !== null;
  }

  /** Close the handle (a file in memory: nothing to do); it is reopened on demand. */
  async close(): Promise<void> {
    const p = this.opening;
    this.opening = null;
    this.opened = null;
    if (p) await (await p.catch(() => null))?.close();
  }

  /** Forget the content (the file is being removed): the memory goes back to the budget. */
  dropMem(): void {
    if (this.memBuf) this.store.memGive(this.memBuf.length);
    this.memBuf = null;
  }

  private async toDisk(): Promise<fsp.FileHandle> {
    const m = this.memBuf!;
    const disk = await this.store.diskFile();
    const h = (await disk.handle()) as fsp.FileHandle;
    try {
      for (let done = 0; done < this.size; ) done += (await h.write(m, done, this.size - done, done)).bytesWritten;
    } catch (err) {
      await this.store.deleteDisk(disk).catch(() => {});
      throw err;
    }
    this.diskPath = disk.path;
    this.dropMem();
    return h;
  }
}

export interface UpperStoreOptions {
  /** Storage problems of background work (a removal that failed); default: discard. */
  log?: (line: string) => void;
  /** Synchronous I/O on upper files (see IoMode); default true. */
  syncIo?: boolean;
  /** Bytes of file content held in memory at most, all files together; default 64 MiB, 0: none. */
  memBudget?: number;
  /** A file in memory that would grow past this moves to disk; default 1 MiB. */
  memFileMax?: number;
  /** Empty files kept created and open in CACHE/upper ahead of need (see diskFile()); default 8. */
  spares?: number;
  /** Background removals and closes queued at most; beyond, later() waits. Default 1024. */
  backgroundLimit?: number;
}

const MEM_HEADROOM = 4096;

/**
 * Where upper files live: in memory while small (see UpperFile), else in CACHE/upper/ under a
 * per-store sequence number. Names of files left by an earlier session are overwritten
 * (O_TRUNC) when reused; the profile removes the whole directory before it mounts (recovery
 * uses the change log and the local store, never upper files), which is also why nothing here
 * ever needs to reach the disk durably, and why content may live in memory.
 *
 * What stays off the operations' path:
 * - creating a file: `take()` hands out a file in memory, or when the budget is spent one of a
 *   few empty files created and opened ahead of need (`spares`), refilled in the background;
 * - removing one: `later()` queues the close and unlink (bounded: past `backgroundLimit`
 *   queued tasks the caller waits, so a storm of deletes cannot pile up unbounded work); a
 *   failure is logged, the file is left for the next mount's cleanup; close() waits for all.
 */
export class UpperStore {
  /** Upper files in use by nodes, in memory or on disk (for status; not the spares). */
  live = 0;
  /** Bytes of memory held by files in memory. */
  memBytes = 0;
  readonly io: IoMode;
  readonly memFileMax: number;
  private readonly memBudget: number;
  private seq = 0;
  private readonly spares: UpperFile[] = [];
  private filling = false;
  private closed = false;
  private readonly queue: Array<() => Promise<void>> = [];
  private running = 0;
  private roomWaiters: Array<() => void> = [];
  private drainWaiters: Array<() => void> = [];
  private readonly log: (line: string) => void;
  private readonly spareTarget: number;
  private readonly backgroundLimit: number;

  private constructor(
    readonly dir: string,
    o: UpperStoreOptions,
  ) {
    this.log = o.log ?? (() => {});
    this.memBudget = o.memBudget ?? 64 * 1024 * 1024;
    this.memFileMax = o.memFileMax ?? 1024 * 1024;
    this.spareTarget = o.spares ?? 8;
    this.backgroundLimit = Math.max(1, o.backgroundLimit ?? 1024);
    this.io = defaultIoMode(o.syncIo ?? true);
  }

  static async open(cacheDir: string, o: UpperStoreOptions = {}): Promise<UpperStore> {
    const dir = path.join(path.resolve(cacheDir), 'upper');
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 }).catch((e) => {
      throw ioError(`create ${dir}`, e);
    });
    return new UpperStore(dir, o);
  }

  /**
   * A fresh empty upper file without waiting: in memory, or a spare on disk; null when the
   * memory budget is spent and no spare is ready.
   */
  take(): UpperFile | null {
    let f: UpperFile | null = null;
    // In memory only with room for a first write: moving a file to disk costs more than a spare.
    if (this.memTake(0) && this.memBytes + Math.min(MEM_HEADROOM, this.memFileMax) <= this.memBudget) f = new UpperFile(this, { mem: Buffer.alloc(0) });
    else {
      f = this.spares.pop() ?? null;
      this.refill();
    }
    if (f) this.live++;
    return f;
  }

  /** An empty upper file on disk, opened read-write (for a copy-up). */
  async create(): Promise<UpperFile> {
    const f = await this.diskFile();
    this.live++;
    return f;
  }

  /** An empty file in CACHE/upper, open (a spare when one is ready); not counted in `live`. */
  async diskFile(): Promise<UpperFile> {
    const spare = this.spares.pop();
    this.refill();
    if (spare) return spare;
    const p = path.join(this.dir, String(++this.seq));
    return new UpperFile(this, { path: p, fh: await fsp.open(p, 'w+', 0o600) });
  }

  /** Close and delete an upper file (one that take() or create() gave out) now. */
  async remove(file: UpperFile): Promise<void> {
    await this.deleteDisk(file);
    this.live--;
  }

  /** Drop an upper file that lives in memory (nothing on disk): its memory goes back to the budget. */
  forget(file: UpperFile): void {
    file.dropMem();
    this.live--;
  }

  /** Close and delete the file's disk part, if any; free its memory. */
  async deleteDisk(file: UpperFile): Promise<void> {
    file.dropMem();
    await file.close();
    const p = file.path;
    if (p) {
      await fsp.unlink(p).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw e;
      });
    }
  }

  /** Account `bytes` more of memory for files in memory; false (nothing taken) past the budget. */
  memTake(bytes: number): boolean {
    if (this.closed || this.memBytes + bytes > this.memBudget) return false;
    this.memBytes += bytes;
    return true;
  }

  memGive(bytes: number): void {
    this.memBytes -= bytes;
  }

  /**
   * Run `task` (a removal, a close) in the background, in order, two at a time. Resolves as
   * soon as it is queued, or once the queue has room again when it is full. A failure is
   * logged with `what`.
   */
  async later(what: string, task: () => Promise<void>): Promise<void> {
    while (this.queue.length + this.running >= this.backgroundLimit) await new Promise<void>((r) => this.roomWaiters.push(r));
    this.queue.push(async () => {
      try {
        await task();
      } catch (err) {
        this.log(`upper: ${what}: ${(err as Error).message ?? String(err)}`);
      }
    });
    this.pump();
  }

  /** Spare files made ahead of need (in CACHE/upper, not in `live`). */
  get spareCount(): number {
    return this.spares.length;
  }

  /** Queued and running background tasks. */
  get pending(): number {
    return this.queue.length + this.running;
  }

  /** Resolves when no background task is queued or running and no spare is being made. */
  async idle(): Promise<void> {
    while (this.pending > 0 || this.filling) await new Promise<void>((r) => this.drainWaiters.push(r));
  }

  /** Unmount: stop making spares, finish the background work, delete the spares. */
  async close(): Promise<void> {
    this.closed = true;
    await this.idle();
    for (const f of this.spares.splice(0)) await this.deleteDisk(f).catch(() => {});
  }

  /** Top the spares up in the background, one file at a time. */
  private refill(): void {
    if (this.filling || this.closed || this.spares.length >= this.spareTarget) return;
    this.filling = true;
    void (async () => {
      try {
        while (!this.closed && this.spares.length < this.spareTarget) {
          const p = path.join(this.dir, String(++this.seq));
          this.spares.push(new UpperFile(this, { path: p, fh: await fsp.open(p, 'w+', 0o600) }));
        }
      } catch (err) {
        this.log(`upper: cannot create a spare upper file: ${(err as Error).message ?? String(err)}`);
      } finally {
        this.filling = false;
        this.wake();
      }
    })();
  }

  private pump(): void {
    while (this.running < 2 && this.queue.length > 0) {
      const task = this.queue.shift()!;
      this.running++;
      void task().finally(() => {
        this.running--;
        this.wake();
        this.pump();
      });
    }
  }

  private wake(): void {
    if (this.queue.length + this.running < this.backgroundLimit) for (const r of this.roomWaiters.splice(0)) r();
    if (this.pending === 0 && !this.filling) for (const r of this.drainWaiters.splice(0)) r();
  }
}

/** Synchronous whole-buffer pwrite (see IoMode). */
export function writeAllSync(fd: number, buf: Buffer, offset: number, length: number, position: number): void {
  for (let done = 0; done < length; ) done += fs.writeSync(fd, buf, offset + done, length - done, position + done);
}
