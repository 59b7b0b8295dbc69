import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ioError } from '../core/errors.js';

/**
 * A file's private, writable content: CACHE/upper/<ino>-<generation>. Its `size` is the
 * overlay's truth (kept in memory, updated after each write/truncate); its timestamps on disk
 * are meaningless (the node holds mtime in ns, which fs.utimes could not even store).
 */
export class UpperFile {
  private opening: Promise<fsp.FileHandle> | null;

  constructor(
    readonly path: string,
    public size: number,
    fh: fsp.FileHandle | null,
  ) {
    this.opening = fh ? Promise.resolve(fh) : null;
  }

  /** The read-write handle, opened on first use. */
  handle(): Promise<fsp.FileHandle> {
    this.opening ??= fsp.open(this.path, 'r+');
    const p = this.opening;
    p.catch(() => {
      if (this.opening === p) this.opening = null;
    });
    return p;
  }

  get isOpen(): boolean {
    return this.opening !== null;
  }

  async close(): Promise<void> {
    const p = this.opening;
    this.opening = null;
    if (p) await (await p.catch(() => null))?.close();
  }
}

/**
 * The directory of upper files. Names embed the inode number and a per-node generation so that
 * a node can get a fresh upper file (e.g. after a snapshot freezes the old one) without a clash.
 * Inode numbers restart with each mount: files left by an earlier session are overwritten
 * (O_TRUNC) when a name is reused; recovering them is the crash-recovery layer's job.
 */
export class UpperStore {
  /** Upper files currently existing (for status). */
  live = 0;

  private constructor(readonly dir: string) {}

  static async open(cacheDir: string): Promise<UpperStore> {
    const dir = path.join(path.resolve(cacheDir), 'upper');
    await fsp.mkdir(dir, { recursive: true, mode: 0o700 }).catch((e) => {
      throw ioError(`create ${dir}`, e);
    });
    return new UpperStore(dir);
  }

  pathFor(ino: number, generation: number): string {
    return path.join(this.dir, `${ino}-${generation}`);
  }

  /** Create an empty upper file, opened read-write. */
  async create(ino: number, generation: number): Promise<UpperFile> {
    const p = this.pathFor(ino, generation);
    const fh = await fsp.open(p, 'w+', 0o600);
    this.live++;
    return new UpperFile(p, 0, fh);
  }

  async remove(file: UpperFile): Promise<void> {
    await file.close();
    await fsp.rm(file.path, { force: true });
    this.live--;
  }
}
