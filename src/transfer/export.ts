import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import { constants as C } from 'node:fs';
import * as path from 'node:path';
import { RoamfsError, ioError } from '../core/errors.js';
import { mapLimit } from '../core/async.js';
import { futimens, lutimens } from '../core/native.js';
import type { ObjectId } from '../core/hash.js';
import type { FileEntry, RootRef, TreeEntry } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';

export interface ExportProgress {
  files: number;
  bytes: number;
}

export interface ExportOptions {
  concurrency?: number;
  /**
   * Create and write the files with synchronous calls, one after the other (the CLI: no event
   * loop to keep free; a thread-pool round trip per call costs more than the call). Chunks are
   * read through the repository either way.
   */
  sync?: boolean;
  /** Restore uid/gid (default: when running as root). */
  preserveOwner?: boolean;
  onProgress?: (p: ExportProgress) => void;
}

type Attrs = { mode: number; uid: number; gid: number; mtimeNs: bigint };

/** The new file being written: `write` all of `data` at `position`, `close`. */
interface Sink {
  write(data: Buffer, position: number): Promise<void>;
  /**
   * Give the file its attributes through the open descriptor (no path lookups): true when done,
   * false when the caller must use applyAttrs (the thread-pool sink, or an old native addon).
   */
  setAttrs(e: Attrs, owner: boolean): boolean;
  close(): Promise<void>;
}

/** Create `abs` exclusively, with synchronous calls or through the thread pool. */
async function createSink(abs: string, sync: boolean): Promise<Sink> {
  const flags = C.O_WRONLY | C.O_CREAT | C.O_EXCL;
  if (sync) {
    const fd = fs.openSync(abs, flags, 0o600);
    return {
      write: async (data, position) => {
        for (let off = 0; off < data.length; ) off += fs.writeSync(fd, data, off, data.length - off, position + off);
      },
      setAttrs: (e, owner) => {
        if (owner) fs.fchownSync(fd, e.uid, e.gid);
        fs.fchmodSync(fd, e.mode); // after chown: chown clears setuid bits
        if (!futimens(fd, e.mtimeNs, e.mtimeNs)) lutimens(abs, e.mtimeNs, e.mtimeNs);
        return true;
      },
      close: async () => fs.closeSync(fd),
    };
  }
  const h = await fsp.open(abs, flags, 0o600);
  return {
    write: async (data, position) => {
      for (let off = 0; off < data.length; ) off += (await h.write(data, off, data.length - off, position + off)).bytesWritten;
    },
    setAttrs: () => false,
    close: () => h.close(),
  };
}

/** Write a file's content from its chunks into `abs` (created exclusively), then its attributes. */
export async function writeFileFromChunks(repo: Repository, entry: FileEntry, abs: string, owner: boolean, onBytes?: (n: number) => void, sync = false): Promise<void> {
  const out = await createSink(abs, sync);
  let attrsSet = false;
  try {
    let pos = 0;
    for (const c of entry.chunks) {
      const data = await repo.getChunk(c.id, c.size);
      await out.write(data, pos);
      pos += data.length;
      onBytes?.(data.length);
    }
    attrsSet = out.setAttrs(entry, owner);
  } finally {
    await out.close();
  }
  if (!attrsSet) await applyAttrs(abs, entry, false, owner, sync);
}

async function applyAttrs(abs: string, e: Attrs, symlink: boolean, owner: boolean, sync = false) {
  if (sync) {
    if (owner) fs.lchownSync(abs, e.uid, e.gid);
    if (!symlink) fs.chmodSync(abs, e.mode);
  } else {
    if (owner) await fsp.lchown(abs, e.uid, e.gid);
    if (!symlink) await fsp.chmod(abs, e.mode); // after chown: chown clears setuid bits
  }
  lutimens(abs, e.mtimeNs, e.mtimeNs);
}

/**
 * Write the tree of `root` into `dir` (which must be absent or empty): byte-identical content,
 * modes, mtimes (ns), symlinks (not followed), empty directories; owners when running as root.
 * Directories get their mode and mtime after their children are written.
 */
export async function exportTree(repo: Repository, root: RootRef, dir: string, opts: ExportOptions = {}): Promise<ExportProgress> {
  const owner = opts.preserveOwner ?? process.getuid?.() === 0;
  const progress: ExportProgress = { files: 0, bytes: 0 };
  try {
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
    if ((await fsp.readdir(dir)).length > 0) {
      throw new RoamfsError('NOT_EMPTY', `${dir} is not empty; export writes into an empty or new directory`);
    }
  } catch (err) {
    if (err instanceof RoamfsError) throw err;
    throw ioError(`prepare ${dir}`, err);
  }
  const files: Array<{ abs: string; entry: FileEntry }> = [];
  const dirs: Array<{ abs: string; entry: Attrs }> = [];
  const sync = opts.sync ?? false;

  async function makeDir(tree: ObjectId, abs: string): Promise<void> {
    const entries: TreeEntry[] = await repo.getTree(tree);
    for (const e of entries) {
      const child = path.join(abs, e.name);
      if (e.type === 'dir') {
        if (sync) fs.mkdirSync(child, { mode: 0o700 });
        else await fsp.mkdir(child, { mode: 0o700 });
        await makeDir(e.tree, child);
        dirs.push({ abs: child, entry: e });
      } else if (e.type === 'symlink') {
        if (sync) fs.symlinkSync(e.target, child);
        else await fsp.symlink(e.target, child);
        await applyAttrs(child, e, true, owner, sync);
      } else {
        files.push({ abs: child, entry: e });
      }
    }
  }
  try {
    await makeDir(root.tree, dir);
    await mapLimit(files, sync ? 1 : (opts.concurrency ?? 16), async ({ abs, entry }) => {
      await writeFileFromChunks(repo, entry, abs, owner, (n) => (progress.bytes += n), sync);
      progress.files++;
      opts.onProgress?.(progress);
    });
    // Post-order (children were pushed before parents), so each mtime is final.
    for (const d of dirs) await applyAttrs(d.abs, d.entry, false, owner, sync);
    await applyAttrs(dir, root, false, owner, sync);
  } catch (err) {
    if (err instanceof RoamfsError) throw err;
    throw ioError(`export to ${dir}`, err);
  }
  return progress;
}
