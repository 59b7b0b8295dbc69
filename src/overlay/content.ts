import * as fs from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import type { BaseReader } from '../base/base-reader.js';
import { ChunkMap } from '../base/chunk-map.js';
import type { FileNode } from './nodes.js';
import type { Overlay } from './overlay.js';
import { writeAllSync, type UpperFile, type UpperStore } from './upper.js';

const COPY_BLOCK = 1024 * 1024;
/** Upper files of closed nodes kept open (least recently released closed first). */
const IDLE_OPEN_FILES = 512;

async function writeAll(h: FileHandle, buf: Buffer, offset: number, length: number, position: number): Promise<void> {
  for (let done = 0; done < length; ) {
    const { bytesWritten } = await h.write(buf, offset + done, length - done, position + done);
    done += bytesWritten;
  }
}

/**
 * Content I/O of regular files: reads from base chunks or the upper file, copy-up, writes,
 * truncation. Everything that changes content holds the node's gate (writes shared, the rest
 * exclusive); metadata (size, mtime, change marks) is updated synchronously when the I/O is done.
 * Growth of an attached file is checked against the quota before the I/O and every size change
 * is reported to overlay.usage synchronously with it (see usage.ts); an open-unlinked file is
 * no longer part of the profile and is not counted.
 *
 * The common operations finish without yielding: a write, a truncate or the copy-up of an empty
 * file, when nobody holds or waits for the node's gate and the upper file is in memory or open
 * (see UpperFile, IoMode in upper.ts), runs synchronously from start to end. That is equivalent
 * to taking the gate and releasing it: nothing can happen in between, and whatever queues on
 * the gate later (a snapshot's freeze) sees the write done. Otherwise they queue on the gate.
 * Moving a file from memory to disk happens under the exclusive gate.
 *
 * Upper files on disk stay open after the last handle of their file is released (up to
 * IDLE_OPEN_FILES; a reopen, the next snapshot or a release need no open or close), and are
 * deleted in the background once their file is unlinked and closed (UpperStore.later).
 */
export class ContentStore {
  /** Nodes whose upper file is open while nobody has the node open; Set order is the LRU order. */
  private readonly idleOpen = new Set<FileNode>();

  constructor(
    private readonly overlay: Overlay,
    private readonly reader: BaseReader,
    readonly upper: UpperStore,
  ) {}

  async read(node: FileNode, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
    const c = node.content;
    if (c.kind === 'base') return this.reader.read(c.map, buf, offset, length, position);
    const file = c.file;
    if (position >= file.size || length <= 0) return 0;
    const n = Math.min(length, file.size - position);
    let got = 0;
    const fd = this.syncFd(file);
    const m = file.mem;
    if (m) {
      got = m.copy(buf, offset, position, position + n);
    } else if (fd !== null) {
      got = this.upper.io.time(() => {
        let done = 0;
        while (done < n) {
          const r = fs.readSync(fd, buf, offset + done, n - done, position + done);
          if (r === 0) break;
          done += r;
        }
        return done;
      });
    } else {
      const h = await file.handle();
      while (got < n) {
        const { bytesRead } = await h.read(buf, offset + got, n - got, position + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
    }
    // A concurrent truncate may have shortened the file under us: what is gone reads as zeros.
    if (got < n) buf.fill(0, offset + got, offset + n);
    return n;
  }

  /**
   * Make the node's content an upper file (copy-up), under the exclusive gate. Idempotent.
   * Fetches the chunks covering the first `keep` bytes (default: all) and copies them.
   */
  ensureUpper(node: FileNode, keep?: number): Promise<UpperFile> {
    const c = node.content;
    if (c.kind === 'upper') return Promise.resolve(c.file);
    if (Math.min(keep ?? node.size, c.map.size) === 0 && node.gate.idle) {
      // Nothing to copy (a new or truncated file): a file in memory or a spare, without yielding.
      const file = this.upper.take();
      if (file) {
        node.content = { kind: 'upper', file };
        return Promise.resolve(file);
      }
    }
    return node.gate.withExclusive(() => this.copyUp(node, keep ?? node.size));
  }

  /** Write at `position`, or at the end of the file when `append` (O_APPEND). */
  write(node: FileNode, buf: Buffer, offset: number, length: number, position: number, append: boolean): Promise<number> {
    const c = node.content;
    if (c.kind === 'upper' && node.gate.idle) {
      const f = c.file;
      const at = append ? f.size : position;
      try {
        if (f.mem) {
          if (!node.unlinked) this.overlay.usage.checkGrow(at + length - f.size);
          if (f.reserve(at + length)) {
            this.writeMem(node, f, buf, offset, length, at);
            return Promise.resolve(length);
          }
        } else {
          const fd = this.syncFd(f);
          if (fd !== null) {
            this.writeSync(node, f, fd, buf, offset, length, at);
            return Promise.resolve(length);
          }
        }
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return this.writeQueued(node, buf, offset, length, position, append);
  }

  /** Set the size; a committed file is copied up only as far as needed (nothing for size 0). */
  truncate(node: FileNode, size: number): Promise<void> {
    const c = node.content;
    if (node.gate.idle && (c.kind === 'base' ? size === 0 : c.file.mem ? size <= c.file.size || c.file.reserve(size) : this.syncFd(c.file) !== null)) {
      try {
        this.truncateSync(node, size);
        return Promise.resolve();
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return node.gate.withExclusive(async () => {
      const before = node.size;
      if (!node.unlinked) this.overlay.usage.checkGrow(size - before);
      const c = node.content;
      if (c.kind === 'base') {
        if (size === 0) {
          node.content = { kind: 'base', map: ChunkMap.EMPTY };
        } else if (size !== c.map.size) {
          const file = await this.copyUp(node, size);
          await (await file.handle()).truncate(size);
          resized(file, size);
        }
      } else if (c.file.mem && (size <= c.file.size || c.file.reserve(size))) {
        this.truncateMem(c.file, size);
      } else {
        if (c.file.mem) await c.file.handle(); // to disk (we hold the exclusive gate)
        const fd = this.syncFd(c.file);
        if (fd !== null) this.upper.io.time(() => fs.ftruncateSync(fd, size));
        else await (await c.file.handle()).truncate(size);
        resized(c.file, size);
      }
      if (!node.unlinked) this.overlay.usage.change(node.size - before);
      this.overlay.contentChanged(node);
    });
  }

  /**
   * The last handle of the node was released: its upper file stays open (least recently
   * released ones beyond IDLE_OPEN_FILES are closed in the background). Synchronous.
   */
  released(node: FileNode): void {
    if (node.openCount > 0 || node.content.kind !== 'upper' || !node.content.file.isOpen) return;
    this.idleOpen.delete(node);
    this.idleOpen.add(node);
    for (const oldest of this.idleOpen) {
      if (this.idleOpen.size <= IDLE_OPEN_FILES) break;
      this.idleOpen.delete(oldest);
      void this.upper.later(`close an idle upper file of inode ${oldest.ino}`, () => this.closeIdle(oldest));
    }
  }

  /**
   * An unlinked file that nobody has open: its upper file is deleted in the background (after
   * whatever holds or waits for the gate, e.g. a snapshot reading it). Resolves once that is
   * queued; waits only while the background queue is full.
   */
  discard(node: FileNode): Promise<void> {
    this.idleOpen.delete(node);
    const c = node.content;
    if (node.gate.idle) {
      // Nothing on disk: done at once.
      if (c.kind === 'base') return Promise.resolve();
      if (c.file.mem) {
        node.content = { kind: 'base', map: ChunkMap.EMPTY };
        this.upper.forget(c.file);
        return Promise.resolve();
      }
    }
    return this.upper.later(`remove the upper file of inode ${node.ino}`, () =>
      node.gate.withExclusive(async () => {
        const c = node.content;
        if (c.kind !== 'upper') return;
        node.content = { kind: 'base', map: ChunkMap.EMPTY };
        await this.upper.remove(c.file);
      }),
    );
  }

  /** Unmount: finish the background work, close the upper files kept open, drop the spares. */
  async close(): Promise<void> {
    for (const node of [...this.idleOpen]) await this.closeIdle(node).catch(() => {});
    this.idleOpen.clear();
    await this.upper.close();
  }

  /** Close the upper file's handle when no handle is open (it is reopened on demand). */
  private async closeIdle(node: FileNode): Promise<void> {
    if (node.openCount > 0) return;
    await node.gate.withExclusive(async () => {
      if (node.openCount === 0 && node.content.kind === 'upper') await node.content.file.close();
    });
  }

  /** The descriptor for synchronous I/O on `file` now, or null (closed, or the thread pool's turn). */
  private syncFd(file: UpperFile): number | null {
    return this.upper.io.sync ? file.fd : null;
  }

  /** One write, start to end without yielding: quota, pwrite, size, change marks. */
  private writeSync(node: FileNode, file: UpperFile, fd: number, buf: Buffer, offset: number, length: number, at: number): void {
    if (!node.unlinked) this.overlay.usage.checkGrow(at + length - file.size);
    file.changed(Math.min(at, file.size), at + length); // before: a write that fails half-way changed bytes too
    this.upper.io.time(() => writeAllSync(fd, buf, offset, length, at));
    this.grown(node, file, at, at + length);
  }

  private async writeQueued(node: FileNode, buf: Buffer, offset: number, length: number, position: number, append: boolean): Promise<number> {
    for (;;) {
      if (node.content.kind === 'base') await this.ensureUpper(node);
      // Appends must compute their position and write without another write in between; a
      // file in memory may have to move to disk, which needs the gate exclusively.
      const c0 = node.content;
      const exclusive = append || (c0.kind === 'upper' && c0.file.mem !== null);
      const release = exclusive ? await node.gate.acquireExclusive() : await node.gate.acquireShared();
      try {
        const c = node.content;
        if (c.kind !== 'upper') continue; // content was swapped back to base meanwhile
        if (c.file.mem && !exclusive) continue; // became a file in memory meanwhile: again, exclusively
        const at = append ? c.file.size : position;
        if (c.file.mem) {
          if (!node.unlinked) this.overlay.usage.checkGrow(at + length - c.file.size);
          if (c.file.reserve(at + length)) {
            this.writeMem(node, c.file, buf, offset, length, at);
            return length;
          }
          await c.file.handle(); // too big for memory: to disk
        }
        const fd = this.syncFd(c.file);
        if (fd !== null) {
          this.writeSync(node, c.file, fd, buf, offset, length, at);
          return length;
        }
        if (!node.unlinked) this.overlay.usage.checkGrow(at + length - c.file.size);
        c.file.changed(Math.min(at, c.file.size), at + length); // before: a write that fails half-way changed bytes too
        await writeAll(await c.file.handle(), buf, offset, length, at);
        this.grown(node, c.file, at, at + length);
        return length;
      } finally {
        release();
      }
    }
  }

  /** A write into a file in memory that has room (reserve) for it. */
  private writeMem(node: FileNode, file: UpperFile, buf: Buffer, offset: number, length: number, at: number): void {
    const m = file.mem!;
    if (at > file.size) m.fill(0, file.size, at);
    buf.copy(m, at, offset, offset + length);
    this.grown(node, file, at, at + length);
  }

  /** Set the size of a file in memory that has room (reserve) for it. */
  private truncateMem(file: UpperFile, size: number): void {
    if (size > file.size) file.mem!.fill(0, file.size, size);
    resized(file, size);
  }

  /** After a write of [at, end): the size, the quota's total, the change marks. */
  private grown(node: FileNode, file: UpperFile, at: number, end: number): void {
    const before = file.size;
    file.changed(Math.min(at, before), end); // a write past the end also zero-fills the gap
    file.size = Math.max(file.size, end);
    if (!node.unlinked) this.overlay.usage.change(file.size - before);
    this.overlay.contentChanged(node);
  }

  /** truncate() without yielding: base content to size 0, a file in memory with room, or an open one. */
  private truncateSync(node: FileNode, size: number): void {
    const before = node.size;
    if (!node.unlinked) this.overlay.usage.checkGrow(size - before);
    const c = node.content;
    if (c.kind === 'base') {
      node.content = { kind: 'base', map: ChunkMap.EMPTY };
    } else if (c.file.mem) {
      this.truncateMem(c.file, size);
    } else {
      const fd = c.file.fd!;
      this.upper.io.time(() => fs.ftruncateSync(fd, size));
      resized(c.file, size);
    }
    if (!node.unlinked) this.overlay.usage.change(node.size - before);
    this.overlay.contentChanged(node);
  }

  /** Copy-up; the caller holds the exclusive gate. */
  private async copyUp(node: FileNode, keep: number): Promise<UpperFile> {
    const c = node.content;
    if (c.kind === 'upper') return c.file;
    const bytes = Math.min(keep, c.map.size);
    if (bytes === 0) {
      const file = this.upper.take() ?? (await this.upper.create());
      node.content = { kind: 'upper', file };
      return file;
    }
    await this.reader.fetchAll(c.map, bytes);
    const file = await this.upper.create();
    try {
      const h = await file.handle();
      const buf = Buffer.allocUnsafe(Math.min(COPY_BLOCK, Math.max(bytes, 1)));
      for (let pos = 0; pos < bytes; ) {
        const n = await this.reader.read(c.map, buf, 0, Math.min(buf.length, bytes - pos), pos, false);
        await writeAll(h, buf, 0, n, pos);
        pos += n;
      }
      file.size = bytes;
    } catch (err) {
      await this.upper.remove(file).catch(() => {});
      throw err;
    }
    // The committed chunks describe the copy; what was left out counts as changed.
    file.chunked = { chunks: c.map.chunks, from: bytes < c.map.size ? bytes : Infinity, to: bytes < c.map.size ? c.map.size : -Infinity };
    node.content = { kind: 'upper', file };
    return file;
  }
}

/** Set an upper file's size (truncate), reporting the range between the old and new end as changed. */
function resized(file: UpperFile, size: number): void {
  file.changed(Math.min(size, file.size), Math.max(size, file.size));
  file.size = size;
}
