import type { FileHandle } from 'node:fs/promises';
import type { BaseReader } from '../base/base-reader.js';
import { ChunkMap } from '../base/chunk-map.js';
import type { FileNode } from './nodes.js';
import type { Overlay } from './overlay.js';
import type { UpperFile, UpperStore } from './upper.js';

const COPY_BLOCK = 1024 * 1024;

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
 */
export class ContentStore {
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
    const h = await file.handle();
    let got = 0;
    while (got < n) {
      const { bytesRead } = await h.read(buf, offset + got, n - got, position + got);
      if (bytesRead === 0) break;
      got += bytesRead;
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
    if (node.content.kind === 'upper') return Promise.resolve(node.content.file);
    return node.gate.withExclusive(() => this.copyUp(node, keep ?? node.size));
  }

  /** Write at `position`, or at the end of the file when `append` (O_APPEND). */
  async write(node: FileNode, buf: Buffer, offset: number, length: number, position: number, append: boolean): Promise<number> {
    for (;;) {
      if (node.content.kind === 'base') await this.ensureUpper(node);
      // Appends must compute their position and write without another write in between.
      const release = append ? await node.gate.acquireExclusive() : await node.gate.acquireShared();
      try {
        const c = node.content;
        if (c.kind !== 'upper') continue; // content was swapped back to base meanwhile
        const at = append ? c.file.size : position;
        if (!node.unlinked) this.overlay.usage.checkGrow(at + length - c.file.size);
        await writeAll(await c.file.handle(), buf, offset, length, at);
        const before = c.file.size;
        c.file.size = Math.max(c.file.size, at + length);
        if (!node.unlinked) this.overlay.usage.change(c.file.size - before);
        this.overlay.contentChanged(node);
        return length;
      } finally {
        release();
      }
    }
  }

  /** Set the size; a committed file is copied up only as far as needed (nothing for size 0). */
  truncate(node: FileNode, size: number): Promise<void> {
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
          file.size = size;
        }
      } else {
        await (await c.file.handle()).truncate(size);
        c.file.size = size;
      }
      if (!node.unlinked) this.overlay.usage.change(node.size - before);
      this.overlay.contentChanged(node);
    });
  }

  async fsync(node: FileNode, datasync: boolean): Promise<void> {
    const c = node.content;
    if (c.kind !== 'upper' || !c.file.isOpen) return;
    const h = await c.file.handle();
    await (datasync ? h.datasync() : h.sync());
  }

  /** Close the upper file's handle when no handle is open (it is reopened on demand). */
  async closeIdle(node: FileNode): Promise<void> {
    if (node.openCount > 0) return;
    await node.gate.withExclusive(async () => {
      if (node.openCount === 0 && node.content.kind === 'upper') await node.content.file.close();
    });
  }

  /** An unlinked file that nobody has open: delete its upper file. */
  async discard(node: FileNode): Promise<void> {
    await node.gate.withExclusive(async () => {
      const c = node.content;
      if (c.kind !== 'upper') return;
      node.content = { kind: 'base', map: ChunkMap.EMPTY };
      await this.upper.remove(c.file);
    });
  }

  /** Copy-up; the caller holds the exclusive gate. */
  private async copyUp(node: FileNode, keep: number): Promise<UpperFile> {
    const c = node.content;
    if (c.kind === 'upper') return c.file;
    const bytes = Math.min(keep, c.map.size);
    await this.reader.fetchAll(c.map, bytes);
    const file = await this.upper.create(node.ino, ++node.upperGeneration);
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
    node.content = { kind: 'upper', file };
    return file;
  }
}
