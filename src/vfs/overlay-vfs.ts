import { constants as C } from 'node:fs';
import * as path from 'node:path';
import type { Clock } from '../core/clock.js';
import { Exclusions } from '../core/exclusions.js';
import type { ObjectId } from '../core/hash.js';
import { BaseReader } from '../base/base-reader.js';
import { ChunkLoader } from '../base/chunk-loader.js';
import { LocalCache } from '../base/local-cache.js';
import { ContentStore } from '../overlay/content.js';
import { IdMap } from '../overlay/ids.js';
import type { DirNode, FileNode, Node } from '../overlay/nodes.js';
import { Overlay } from '../overlay/overlay.js';
import { UpperStore, type UpperStoreOptions } from '../overlay/upper.js';
import { Usage, countTree, type QuotaLimits } from '../overlay/usage.js';
import type { Commit, Ref, RootRef } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';
import { rootEntry } from '../repository/walk.js';
import { toFsError, type LogFn } from './errors.js';
import { assertNewName, isBelow, splitVfsPath } from './paths.js';
import { FsError, statfsOf, type Attr, type Caller, type DirEntry, type StatFs, type TimeSpec, type Vfs } from './types.js';

export interface OverlayVfsOptions {
  /** The shared repository (reads are verified there). */
  remote: Repository;
  /** Whose profile to mount: their head commit (an empty home when they have none yet). */
  user: string;
  /** Mount this commit instead of the head (tests, previews). */
  commit?: ObjectId;
  /**
   * Mount this root instead (crash recovery: the last durable snapshot in the local store,
   * which was built on `commit`). Trees not in the local store are fetched from the remote.
   */
  snapshot?: { root: RootRef; commit: ObjectId };
  /** Local cache directory: CACHE/objects-repo (object cache) and CACHE/upper (written files). */
  cacheDir: string;
  clock: Clock;
  /** One line per storage problem (EIO). Default: discard. */
  log?: LogFn;
  /** The mount's owner: shown for entries owned by the profile root's stored uid/gid. */
  uid: number;
  gid: number;
  /** Fetch the rest of a committed file in the background after a read of it (default true). */
  readahead?: boolean;
  /** Background fetches at once (default 4). */
  backgroundFetches?: number;
  /** Local-only paths (hidden in the committed tree, never snapshotted); default none. */
  exclusions?: Exclusions;
  /** Soft / hard limits of the profile's size (see src/overlay/usage.ts); default none. */
  quota?: QuotaLimits;
  /** Where written files live (memory budget, synchronous I/O; see src/overlay/upper.ts); defaults there. */
  upperFiles?: Omit<UpperStoreOptions, 'log'>;
}

export interface VfsStats {
  /** Objects / bytes fetched from the remote repository (roamfs_remote_read_bytes). */
  remoteObjects: number;
  remoteBytes: number;
  cacheHits: number;
  cacheMisses: number;
  fetchErrors: number;
  openHandles: number;
  /** Inodes materialized in memory. */
  nodes: number;
  /** Upper (locally written) files that exist. */
  upperFiles: number;
}

interface Handle {
  node: Node;
  readable: boolean;
  writable: boolean;
  append: boolean;
}

const O_ACCMODE = 3;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
const XATTR_MAX_VALUE = 64 * 1024;
const PATH_MAX = 4096;

const TYPE_BITS = { file: C.S_IFREG, dir: C.S_IFDIR, symlink: C.S_IFLNK } as const;

/**
 * POSIX semantics over the overlay. Knows nothing of FUSE: paths in, FsError out.
 *
 * Decisions (see also the report in the module map):
 * - Hard links: link() fails with EPERM, as on file systems without hard links (FAT, many
 *   network file systems). The repository stores every link as a separate file, so links made
 *   in a session would silently split at the next login; refusing them is the honest answer,
 *   and programs that use link() for locking (git, mail clients) fall back to other methods.
 * - Directories report nlink 1 (as btrfs does): counting subdirectories would force loading
 *   every child tree on a simple stat; find(1) and friends treat 1 as "unknown".
 * - Permissions are not checked here: the adapter mounts with default_permissions, so the
 *   kernel checks mode/owner against the attributes we report.
 * - No atime updates on read (noatime): atime is not stored and would only churn snapshots.
 * - Symlinks are never followed: the kernel resolves paths; open() of a symlink is ELOOP.
 */
export class OverlayVfs implements Vfs {
  private readonly handles = new Map<number, Handle>();
  private nextFh = 1;
  /**
   * Called with the profile-relative path of every regular file opened (open or create, for
   * reading or writing), after the open succeeded. Must be cheap and must not throw (the
   * working-set recorder, src/prefetch/). Null: no hook.
   */
  onOpen: ((path: string) => void) | null = null;
  /**
   * Called on every fsync / fdatasync of a regular file that snapshots take (not excluded, not
   * unlinked). The data a program syncs becomes durable with the next snapshot (recovery mounts
   * the last durable snapshot and never reads upper files, so syncing those would buy nothing):
   * the profile brings that snapshot forward. Must be cheap and must not throw. Null: no hook.
   */
  onFsync: (() => void) | null = null;

  private constructor(
    readonly overlay: Overlay,
    readonly loader: ChunkLoader,
    readonly content: ContentStore,
    private readonly reader: BaseReader,
    private readonly cacheDir: string,
    private readonly log: LogFn,
    /** What this mount is based on: the head ref (null with an explicit commit or a new user). */
    readonly baseRef: Ref | null,
    readonly baseCommitId: ObjectId | null,
    readonly baseCommit: Commit | null,
    /** The root that was mounted: the commit's, or the recovered snapshot's. */
    readonly baseRoot: RootRef | null,
  ) {
    // A file another desktop's change detached (a pick-up): freed like an unlinked one.
    overlay.onDetach = (node) => void this.settleClosed(node).catch((err: unknown) => this.log(`free the content of a replaced file: ${(err as Error).message}`));
  }

  /** Mount: read the head ref, the commit and the root tree; nothing else. */
  static async open(opts: OverlayVfsOptions): Promise<OverlayVfs> {
    const cache = await LocalCache.open(opts.cacheDir);
    const log = opts.log ?? (() => {});
    const upper = await UpperStore.open(opts.cacheDir, { ...opts.upperFiles, log });
    const loader = new ChunkLoader(opts.remote, cache, { backgroundConcurrency: opts.backgroundFetches ?? 4 });
    const ref = opts.commit || opts.snapshot ? null : await opts.remote.head(opts.user);
    const commitId = opts.snapshot?.commit ?? opts.commit ?? ref?.commit ?? null;
    const commit = commitId ? await loader.loadCommit(commitId) : null;
    const root = opts.snapshot?.root ?? commit?.root ?? null;
    const ids = root ? new IdMap(root.uid, root.gid, opts.uid, opts.gid) : new IdMap(opts.uid, opts.gid, opts.uid, opts.gid);
    const overlay = new Overlay(
      loader,
      opts.clock,
      ids,
      root ? rootEntry(root) : null,
      { perm: 0o700, mtimeNs: BigInt(opts.clock.now()) * 1_000_000n },
      { exclusions: opts.exclusions ?? Exclusions.NONE, usage: new Usage(opts.quota) },
    );
    await overlay.children(overlay.root);
    const reader = new BaseReader(loader, { readahead: opts.readahead ?? true });
    const content = new ContentStore(overlay, reader, upper);
    return new OverlayVfs(overlay, loader, content, reader, path.resolve(opts.cacheDir), log, ref, commitId, commit, root);
  }

  /**
   * Count the size of the mounted tree for the quota (trees only, no contents; see
   * src/overlay/usage.ts). Resolves when done; throws when a tree cannot be loaded.
   */
  async countUsage(): Promise<void> {
    const usage = this.overlay.usage;
    if (usage.baseCount === 'counting' || usage.baseCount === 'done') return;
    if (!this.baseRoot) {
      usage.baseCount = 'done';
      return;
    }
    await countTree((id) => this.loader.loadTree(id), this.baseRoot.tree, this.overlay.exclusions, usage);
  }

  stats(): VfsStats {
    const s = this.loader.stats;
    return {
      remoteObjects: s.remoteObjects,
      remoteBytes: s.remoteBytes,
      cacheHits: s.cacheHits,
      cacheMisses: s.cacheMisses,
      fetchErrors: s.fetchErrors,
      openHandles: this.handles.size,
      nodes: this.overlay.nodeCount,
      upperFiles: this.content.upper.live,
    };
  }

  /**
   * Unmount: release handles the kernel did not release (after the FUSE session ended), wait for
   * background fetches and removals, close cached file handles, the local store's packs and idle upper files. The
   * overlay's state stays in memory (an upper file is reopened when a snapshot reads it).
   */
  async close(): Promise<void> {
    for (const fh of [...this.handles.keys()]) await this.release(fh).catch(() => {});
    await this.loader.idle();
    await this.reader.fds.closeAll();
    this.loader.cache.close();
    await this.content.close();
  }

  /** Resolves when the background work on upper files (removals, closes, spares) is done. */
  settled(): Promise<void> {
    return this.content.upper.idle();
  }

  // ---- attributes ----------------------------------------------------------------------------

  getattr(p: string): Promise<Attr> {
    return this.guard('getattr', p, async () => this.attr(await this.resolve(p)));
  }

  async fgetattr(fh: number): Promise<Attr> {
    return this.attr(this.handle(fh).node);
  }

  readdir(p: string): Promise<DirEntry[]> {
    return this.guard('readdir', p, async () => {
      const dir = this.asDir(await this.resolve(p));
      const kids = await this.kids(dir, p);
      return [...kids].map(([name, node]) => ({ name, attr: this.attr(node) }));
    });
  }

  readlink(p: string): Promise<string> {
    return this.guard('readlink', p, async () => {
      const node = await this.resolve(p);
      if (node.kind !== 'symlink') throw new FsError('EINVAL', `${p} is not a symlink`);
      return node.target;
    });
  }

  chmod(p: string, mode: number): Promise<void> {
    return this.guard('chmod', p, async () => {
      const node = await this.resolve(p);
      node.perm = mode & 0o7777;
      this.overlay.attrsChanged(node);
    });
  }

  chown(p: string, uid: number, gid: number): Promise<void> {
    return this.guard('chown', p, async () => {
      const node = await this.resolve(p);
      if (uid !== -1 && uid !== 0xffffffff) node.uid = uid;
      if (gid !== -1 && gid !== 0xffffffff) node.gid = gid;
      this.overlay.attrsChanged(node);
    });
  }

  utimens(p: string, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
    return this.guard('utimens', p, async () => {
      const node = await this.resolve(p);
      if (atime === 'omit' && mtime === 'omit') return;
      const now = this.overlay.now();
      if (atime !== 'omit') node.atimeNs = atime === 'now' ? now : atime;
      node.ctimeNs = now;
      if (mtime !== 'omit') {
        node.mtimeNs = mtime === 'now' ? now : mtime;
        this.overlay.markChanged(node);
      }
    });
  }

  async statfs(): Promise<StatFs> {
    try {
      return await statfsOf(this.cacheDir);
    } catch (err) {
      throw toFsError(err, 'statfs', '/', this.log);
    }
  }

  // ---- files -------------------------------------------------------------------------------

  open(p: string, flags: number): Promise<number> {
    return this.guard('open', p, async () => this.openNode(await this.resolve(p), flags, p));
  }

  create(p: string, mode: number, flags: number, caller?: Caller): Promise<number> {
    return this.guard('create', p, async () => {
      const { dir, name } = await this.parentOf(p);
      const existing = (await this.kids(dir, p)).get(name);
      if (existing) {
        if (flags & C.O_EXCL) throw new FsError('EEXIST', p);
        return this.openNode(existing, flags, p);
      }
      this.assertAttached(dir, p);
      const node = this.overlay.newFile(dir, name, mode, ...this.owner(caller));
      return this.openNode(node, flags & ~C.O_TRUNC, p);
    });
  }

  async read(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    return this.guard('read', this.pathOf(h.node), async () => {
      if (!h.readable) throw new FsError('EBADF', 'handle not open for reading');
      if (h.node.kind !== 'file') throw new FsError('EISDIR');
      if (position < 0) throw new FsError('EINVAL');
      return this.content.read(h.node, buf, 0, Math.min(length, buf.length), position);
    });
  }

  /** The Vfs may hold `buf` until the returned promise settles (the caller owns it till then). */
  async write(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    return this.guard('write', this.pathOf(h.node), async () => {
      if (!h.writable) throw new FsError('EBADF', 'handle not open for writing');
      if (h.node.kind !== 'file') throw new FsError('EISDIR');
      if (position < 0) throw new FsError('EINVAL');
      return this.content.write(h.node, buf, 0, Math.min(length, buf.length), position, h.append);
    });
  }

  async flush(fh: number): Promise<void> {
    this.handle(fh);
  }

  /** No disk I/O: see onFsync. */
  async fsync(fh: number, _datasync: boolean): Promise<void> {
    const node = this.handle(fh).node;
    if (node.kind === 'file' && !node.excluded && !node.unlinked) this.onFsync?.();
  }

  async release(fh: number): Promise<void> {
    const h = this.handle(fh);
    this.handles.delete(fh);
    const node = h.node;
    if (node.kind !== 'file') return;
    node.openCount--;
    if (h.writable) node.writers--;
    if (node.openCount > 0) return;
    await this.guard('release', this.pathOf(node), () => this.settleClosed(node));
  }

  truncate(p: string, size: number): Promise<void> {
    return this.guard('truncate', p, async () => {
      const node = await this.resolve(p);
      if (node.kind === 'dir') throw new FsError('EISDIR', p);
      if (node.kind !== 'file' || size < 0) throw new FsError('EINVAL', p);
      node.openCount++; // keep the upper file while we work on it, even if unlinked meanwhile
      try {
        await this.content.truncate(node, size);
      } finally {
        node.openCount--;
        await this.settleClosed(node);
      }
    });
  }

  async ftruncate(fh: number, size: number): Promise<void> {
    const h = this.handle(fh);
    return this.guard('ftruncate', this.pathOf(h.node), async () => {
      if (!h.writable) throw new FsError('EBADF', 'handle not open for writing');
      if (h.node.kind !== 'file') throw new FsError('EISDIR');
      if (size < 0) throw new FsError('EINVAL');
      await this.content.truncate(h.node, size);
    });
  }

  // ---- namespace ---------------------------------------------------------------------------

  mkdir(p: string, mode: number, caller?: Caller): Promise<void> {
    return this.guard('mkdir', p, async () => {
      const { dir, name } = await this.parentOf(p);
      if ((await this.kids(dir, p)).has(name)) throw new FsError('EEXIST', p);
      this.assertAttached(dir, p);
      this.overlay.newDir(dir, name, mode, ...this.owner(caller));
    });
  }

  symlink(target: string, p: string, caller?: Caller): Promise<void> {
    return this.guard('symlink', p, async () => {
      if (target.length === 0) throw new FsError('ENOENT', 'empty symlink target');
      if (Buffer.byteLength(target) >= PATH_MAX || target.includes('\0')) throw new FsError('ENAMETOOLONG', 'symlink target too long');
      const { dir, name } = await this.parentOf(p);
      if ((await this.kids(dir, p)).has(name)) throw new FsError('EEXIST', p);
      this.assertAttached(dir, p);
      this.overlay.newSymlink(dir, name, target, ...this.owner(caller));
    });
  }

  async link(existing: string, p: string): Promise<void> {
    // See the class comment: hard links are not supported.
    splitVfsPath(existing);
    splitVfsPath(p);
    throw new FsError('EPERM', 'hard links are not supported by roamfs');
  }

  unlink(p: string): Promise<void> {
    return this.guard('unlink', p, async () => {
      if (splitVfsPath(p).length === 0) throw new FsError('EISDIR', p);
      const { dir, name } = await this.parentOf(p);
      const node = (await this.kids(dir, p)).get(name);
      if (!node) throw new FsError('ENOENT', p);
      if (node.kind === 'dir') throw new FsError('EISDIR', p);
      this.overlay.unlink(dir, name);
      if (node.kind === 'file') await this.settleClosed(node);
    });
  }

  rmdir(p: string): Promise<void> {
    return this.guard('rmdir', p, async () => {
      if (splitVfsPath(p).length === 0) throw new FsError('EBUSY', 'cannot remove the root');
      const { dir, name } = await this.parentOf(p);
      for (;;) {
        const node = (await this.kids(dir, p)).get(name);
        if (!node) throw new FsError('ENOENT', p);
        if (node.kind !== 'dir') throw new FsError('ENOTDIR', p);
        const kids = await this.kids(node, p);
        if (dir.children!.get(name) !== node) continue; // changed while we loaded: look again
        if (kids.size > 0) throw new FsError('ENOTEMPTY', p);
        this.overlay.unlink(dir, name);
        return;
      }
    });
  }

  rename(from: string, to: string): Promise<void> {
    return this.guard('rename', from, async () => {
      const fp = splitVfsPath(from);
      const tp = splitVfsPath(to);
      if (fp.length === 0 || tp.length === 0) throw new FsError('EBUSY', 'cannot rename the root');
      const src = await this.parentOf(from);
      const dst = await this.parentOf(to);
      assertNewName(dst.name);
      for (;;) {
        // Everything that needs loading is loaded first; the checks and the move then run
        // without yielding, so they see one consistent namespace.
        const node = (await this.kids(src.dir, from)).get(src.name);
        if (!node) throw new FsError('ENOENT', from);
        const target = (await this.kids(dst.dir, to)).get(dst.name);
        if (target?.kind === 'dir' && !target.children) await this.kids(target, to);
        if (src.dir.children!.get(src.name) !== node || dst.dir.children!.get(dst.name) !== target) continue;
        if (target?.kind === 'dir' && !target.children) continue;

        if (target === node) return;
        if (node.kind === 'dir') {
          if (isBelow(fp, tp)) throw new FsError('EINVAL', `cannot move ${from} into itself`);
          if (target && target.kind !== 'dir') throw new FsError('ENOTDIR', to);
          if (target && target.kind === 'dir' && target.children!.size > 0) throw new FsError('ENOTEMPTY', to);
        } else if (target?.kind === 'dir') {
          throw new FsError('EISDIR', to);
        }
        this.assertAttached(dst.dir, to);
        const replaced = this.overlay.move(src.dir, src.name, dst.dir, dst.name);
        if (replaced?.kind === 'file') await this.settleClosed(replaced);
        return;
      }
    });
  }

  // ---- xattrs (user.* only) --------------------------------------------------------------

  setxattr(p: string, name: string, value: Buffer, flags: number): Promise<void> {
    return this.guard('setxattr', p, async () => {
      const node = await this.resolve(p);
      if (!name.startsWith('user.')) throw new FsError('ENOTSUP', `xattr namespace of ${name} not supported`);
      if (name.length <= 5 || Buffer.byteLength(name) > 255) throw new FsError('ERANGE', `bad xattr name ${name}`);
      if (node.kind === 'symlink') throw new FsError('EPERM', 'user xattrs on symlinks are not allowed');
      if (value.length > XATTR_MAX_VALUE) throw new FsError('ENOSPC', 'xattr value too large');
      const has = node.xattrs.has(name);
      if (flags & XATTR_CREATE && has) throw new FsError('EEXIST', name);
      if (flags & XATTR_REPLACE && !has) throw new FsError('ENODATA', name);
      node.xattrs.set(name, Buffer.from(value));
      this.overlay.attrsChanged(node);
    });
  }

  getxattr(p: string, name: string): Promise<Buffer> {
    return this.guard('getxattr', p, async () => {
      const v = (await this.resolve(p)).xattrs.get(name);
      if (!v) throw new FsError('ENODATA', name);
      return Buffer.from(v);
    });
  }

  listxattr(p: string): Promise<string[]> {
    return this.guard('listxattr', p, async () => [...(await this.resolve(p)).xattrs.keys()]);
  }

  removexattr(p: string, name: string): Promise<void> {
    return this.guard('removexattr', p, async () => {
      const node = await this.resolve(p);
      if (!node.xattrs.delete(name)) throw new FsError('ENODATA', name);
      this.overlay.attrsChanged(node);
    });
  }

  // ---- internals ---------------------------------------------------------------------------

  private async guard<T>(op: string, p: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw toFsError(err, op, p, this.log);
    }
  }

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw new FsError('EBADF', `no open file handle ${fh}`);
    return h;
  }

  private pathOf(node: Node): string {
    return '/' + this.overlay.pathOf(node);
  }

  private async openNode(node: Node, flags: number, p: string): Promise<number> {
    const acc = flags & O_ACCMODE;
    const writable = acc === C.O_WRONLY || acc === C.O_RDWR;
    if (node.kind === 'symlink') throw new FsError('ELOOP', p);
    if (node.kind === 'dir' && (writable || flags & C.O_TRUNC)) throw new FsError('EISDIR', p);
    if (node.kind === 'file') {
      node.openCount++;
      try {
        if (flags & C.O_TRUNC) await this.content.truncate(node, 0);
        if (writable) await this.content.ensureUpper(node);
      } catch (err) {
        node.openCount--;
        await this.settleClosed(node).catch(() => {});
        throw err;
      }
    }
    const fh = this.nextFh++;
    if (node.kind === 'file' && writable) node.writers++;
    this.handles.set(fh, { node, readable: acc === C.O_RDONLY || acc === C.O_RDWR, writable, append: (flags & C.O_APPEND) !== 0 });
    if (node.kind === 'file' && this.onOpen) this.onOpen(this.overlay.pathOf(node));
    return fh;
  }

  /**
   * After the last handle of a file went away (or it was unlinked): free what it held. Its
   * upper file is closed or deleted in the background; this waits only when that queue is full.
   */
  private async settleClosed(node: FileNode): Promise<void> {
    if (node.openCount > 0) return;
    if (node.unlinked) {
      this.overlay.forget(node);
      await this.content.discard(node);
    } else {
      this.content.released(node);
    }
  }

  private attr(node: Node): Attr {
    let size = 0;
    if (node.kind === 'file') size = node.size;
    else if (node.kind === 'symlink') size = Buffer.byteLength(node.target);
    return {
      ino: node.ino,
      mode: TYPE_BITS[node.kind] | node.perm,
      nlink: node.unlinked ? 0 : 1,
      uid: node.uid,
      gid: node.gid,
      size,
      atimeNs: node.atimeNs,
      mtimeNs: node.mtimeNs,
      ctimeNs: node.ctimeNs,
    };
  }

  private owner(caller: Caller | undefined): [number, number] {
    return caller ? [caller.uid, caller.gid] : [this.overlay.ids.mountUid, this.overlay.ids.mountGid];
  }

  /** Materialized entries of a directory; a tree that cannot be fetched is EIO (logged). */
  private kids(dir: DirNode, p: string): Promise<Map<string, Node>> {
    if (dir.children) return Promise.resolve(dir.children);
    return this.overlay.children(dir).catch((err) => {
      throw toFsError(err, 'load directory', this.pathOf(dir) || p, this.log);
    });
  }

  private asDir(node: Node): DirNode {
    if (node.kind !== 'dir') throw new FsError('ENOTDIR');
    return node;
  }

  /** The node at `parts`: without yielding while every directory on the way is materialized. */
  private walk(parts: readonly string[], p: string): Promise<Node> {
    let node: Node = this.overlay.root;
    for (let i = 0; i < parts.length; i++) {
      if (node.kind !== 'dir') return Promise.reject(new FsError('ENOTDIR', p));
      if (!node.children) return this.walkFrom(node, parts.slice(i), p);
      const next: Node | undefined = node.children.get(parts[i]!);
      if (!next) return Promise.reject(new FsError('ENOENT', p));
      node = next;
    }
    return Promise.resolve(node);
  }

  private async walkFrom(start: DirNode, parts: readonly string[], p: string): Promise<Node> {
    let node: Node = start;
    for (const name of parts) {
      if (node.kind !== 'dir') throw new FsError('ENOTDIR', p);
      const next: Node | undefined = (await this.kids(node, p)).get(name);
      if (!next) throw new FsError('ENOENT', p);
      node = next;
    }
    return node;
  }

  private resolve(p: string): Promise<Node> {
    return this.walk(splitVfsPath(p), p);
  }

  /** The directory that holds (or would hold) the last component of p, and that name. */
  private async parentOf(p: string): Promise<{ dir: DirNode; name: string }> {
    const parts = splitVfsPath(p);
    const name = parts.pop();
    if (name === undefined) throw new FsError('EEXIST', 'the root always exists');
    assertNewName(name);
    const dir = await this.walk(parts, p);
    if (dir.kind !== 'dir') throw new FsError('ENOTDIR', p);
    return { dir, name };
  }

  /** A directory removed while we were looking it up cannot receive new entries. */
  private assertAttached(dir: DirNode, p: string): void {
    if (dir.unlinked) throw new FsError('ENOENT', p);
  }
}
