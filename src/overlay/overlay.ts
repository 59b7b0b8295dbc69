import { SingleFlight } from '../core/async.js';
import type { Clock } from '../core/clock.js';
import { ChunkMap } from '../base/chunk-map.js';
import type { ChunkLoader } from '../base/chunk-loader.js';
import type { DirEntry as TreeDirEntry, TreeEntry } from '../repository/objects.js';
import { Exclusions } from '../core/exclusions.js';
import type { IdMap } from './ids.js';
import { DirNode, FileNode, SymlinkNode, type Node, type NodeAttrs } from './nodes.js';
import { Usage } from './usage.js';

export const ROOT_INO = 1;

/**
 * The in-memory namespace of one mounted profile: the committed tree (materialized one
 * directory at a time, on first access) with this session's changes applied on top.
 *
 * Rules:
 * - Every method that changes metadata is synchronous. Callers do their awaiting (materializing
 *   directories, content I/O) first and then check-and-mutate without yielding, so the
 *   namespace is never observed half-changed and a snapshot can copy what it needs in one
 *   synchronous section.
 * - Every change is marked with the current `epoch` (see NodeCommon); `beginEpoch()` is the
 *   snapshotter's freeze point.
 * - Excluded (local-only) nodes carry no change marks and do not mark their parent: a session
 *   busy in its browser cache leaves the snapshotter clean. Their parent's mtime still moves.
 *   Entries of the committed tree at excluded paths are hidden when a directory is
 *   materialized (excluded paths start empty at each login) and kept in `hidden` for the
 *   snapshotter, which carries them through unchanged. A node moved out of an excluded
 *   area is re-marked, with everything materialized below it, so the next snapshot takes it.
 * - `usage` keeps the running total of file sizes for the quota (see usage.ts): the content
 *   store reports size changes, unlink reports removals.
 */
export class Overlay {
  /** Changes made now are marked with this epoch; starts at 1 (0 means "as committed"). */
  epoch = 1;
  readonly root: DirNode;
  /** Every live node by inode number (attached, or unlinked but still open). */
  readonly inodes = new Map<number, Node>();
  private nextIno = ROOT_INO + 1;
  private readonly materializing = new SingleFlight<number, Map<string, Node>>();
  readonly exclusions: Exclusions;
  readonly usage: Usage;
  /**
   * Called for every file that adoptEntry detached (another desktop's change replaced or removed
   * it), so that its content (an upper file, in memory or on disk) is freed once no handle holds
   * it, as after an unlink. Set by the Vfs.
   */
  onDetach: ((node: FileNode) => void) | null = null;

  constructor(
    private readonly loader: ChunkLoader,
    private readonly clock: Clock,
    readonly ids: IdMap,
    /** The committed root (name ''), or null for a profile with no commit yet (empty home). */
    rootBase: TreeDirEntry | null,
    emptyRootAttrs: { perm: number; mtimeNs: bigint },
    opts: { exclusions?: Exclusions; usage?: Usage } = {},
  ) {
    this.exclusions = opts.exclusions ?? Exclusions.NONE;
    this.usage = opts.usage ?? new Usage();
    if (rootBase) {
      this.root = new DirNode(ROOT_INO, '', this.attrsOf(rootBase), rootBase, null);
    } else {
      const t = emptyRootAttrs.mtimeNs;
      const attrs = { perm: emptyRootAttrs.perm, uid: ids.mountUid, gid: ids.mountGid, atimeNs: t, mtimeNs: t, ctimeNs: t, xattrs: new Map() };
      this.root = new DirNode(ROOT_INO, '', attrs, null, new Map());
    }
    this.inodes.set(ROOT_INO, this.root);
  }

  /** Current time in ns from the injected clock. */
  now(): bigint {
    return BigInt(this.clock.now()) * 1_000_000n;
  }

  // ---- snapshot seam -----------------------------------------------------------------------

  /**
   * Freeze point: returns the epoch that is now closed and starts a new one. Everything marked
   * with an epoch <= the returned value happened before this call.
   */
  beginEpoch(): number {
    return this.epoch++;
  }

  /**
   * Directories whose tree differs from their base since epoch `since` (treeEpoch > since),
   * parents before children, with their profile-relative paths. Untouched subtrees are not
   * visited: their `base` entries (and subtree ids) are still exact. Synchronous.
   */
  *changedDirs(since: number, dir: DirNode = this.root, path = ''): Generator<{ path: string; dir: DirNode }> {
    if (dir.treeEpoch <= since || dir.excluded) return;
    yield { path, dir };
    for (const child of dir.children?.values() ?? []) {
      if (child.kind === 'dir' && !child.excluded) yield* this.changedDirs(since, child, path ? `${path}/${child.name}` : child.name);
    }
  }

  // ---- lookup ------------------------------------------------------------------------------

  /**
   * The entries of `dir`, materializing them from its base tree the first time (single-flight;
   * a failed load is retried by the next caller). Throws the loader's error.
   */
  async children(dir: DirNode): Promise<Map<string, Node>> {
    if (dir.children) return dir.children;
    return this.materializing.run(dir.ino, async () => {
      let base = dir.base;
      let entries: TreeEntry[];
      for (;;) {
        if (!base || base.type !== 'dir') throw new Error(`directory ${dir.ino} has neither children nor a base tree`);
        entries = await this.loader.loadTree(base.tree);
        if (dir.children) return dir.children; // cannot happen today; cheap insurance
        // Another desktop's changes were picked up meanwhile (adoptBase): load the new tree.
        if (dir.base === base) break;
        base = dir.base;
      }
      const map = new Map<string, Node>();
      // Committed entries at excluded paths are hidden; below a directory that was moved
      // into an excluded area, everything is the user's data and shows (excluded).
      const hide = !dir.excluded && !this.exclusions.empty;
      const dirPath = hide ? this.pathOf(dir) : '';
      for (const e of entries) {
        if (hide && this.exclusions.matchesOwn(dirPath ? `${dirPath}/${e.name}` : e.name)) {
          (dir.hidden ??= []).push(e);
          continue;
        }
        const n = this.fromEntry(e);
        n.parent = dir;
        n.excluded = dir.excluded;
        map.set(e.name, n);
      }
      dir.children = map;
      return map;
    });
  }

  /** Profile-relative path of a node as of now ('' for the root; last name once unlinked). */
  pathOf(node: Node): string {
    const parts: string[] = [];
    for (let n: Node | null = node; n && n !== this.root; n = n.parent) parts.push(n.name);
    return parts.reverse().join('/');
  }

  // ---- mutations (all synchronous) ---------------------------------------------------------

  newFile(dir: DirNode, name: string, perm: number, uid: number, gid: number): FileNode {
    const node = new FileNode(this.allocIno(), name, this.freshAttrs(perm, uid, gid), null, { kind: 'base', map: ChunkMap.EMPTY });
    this.attach(dir, name, node);
    return node;
  }

  newDir(dir: DirNode, name: string, perm: number, uid: number, gid: number): DirNode {
    const node = new DirNode(this.allocIno(), name, this.freshAttrs(perm, uid, gid), null, new Map());
    node.treeEpoch = this.epoch;
    this.attach(dir, name, node);
    return node;
  }

  newSymlink(dir: DirNode, name: string, target: string, uid: number, gid: number): SymlinkNode {
    const node = new SymlinkNode(this.allocIno(), name, this.freshAttrs(0o777, uid, gid), null, target);
    this.attach(dir, name, node);
    return node;
  }

  /**
   * Remove the entry `name` of a materialized `dir` and return its node, now unlinked. The
   * node stays in `inodes` while it is an open file; `forget` drops it.
   */
  unlink(dir: DirNode, name: string): Node {
    const node = dir.children!.get(name)!;
    dir.children!.delete(name);
    node.parent = null;
    node.unlinked = true;
    node.ctimeNs = this.now();
    if (node.kind === 'file') this.usage.change(-node.size);
    if (node.excluded) this.touch(dir);
    else this.entriesChanged(dir);
    if (node.kind !== 'file' || node.openCount === 0) this.inodes.delete(node.ino);
    return node;
  }

  /** Forget an unlinked node once its last handle is gone. */
  forget(node: Node): void {
    if (node.unlinked) this.inodes.delete(node.ino);
  }

  /**
   * Move `from/fromName` to `to/toName` (both materialized; the caller checked rename(2)'s
   * rules). An existing target is unlinked and returned. Moving a directory moves the node:
   * nothing below it is read or copied.
   */
  move(from: DirNode, fromName: string, to: DirNode, toName: string): Node | undefined {
    const node = from.children!.get(fromName)!;
    const replaced = to.children!.get(toName);
    if (replaced === node) return undefined;
    if (replaced) this.unlink(to, toName);
    const wasExcluded = node.excluded;
    from.children!.delete(fromName);
    to.children!.set(toName, node);
    node.parent = to;
    node.name = toName;
    node.ctimeNs = this.now(); // Linux updates the moved inode's ctime
    if (wasExcluded) this.touch(from);
    else this.entriesChanged(from);
    this.reclassify(node, to.excluded || (!this.exclusions.empty && this.exclusions.matchesOwn(this.pathOf(node))));
    if (node.excluded) this.touch(to);
    else this.entriesChanged(to);
    return replaced;
  }

  /** A node's own attributes changed (chmod, chown, utimens, xattrs): ctime, change mark. */
  attrsChanged(node: Node): void {
    node.ctimeNs = this.now();
    this.markChanged(node);
  }

  /** A file's content changed: mtime + ctime, change mark. */
  contentChanged(node: FileNode): void {
    node.mtimeNs = node.ctimeNs = this.now();
    this.markChanged(node);
  }

  /** The node's own entry differs from base from now on (no mark for an excluded node). */
  markChanged(node: Node): void {
    if (node.excluded) return;
    node.changedEpoch = this.epoch;
    this.propagate(node.parent);
  }

  /** A directory's set of entries changed: its mtime/ctime, its own mark and its tree's. */
  entriesChanged(dir: DirNode): void {
    dir.mtimeNs = dir.ctimeNs = this.now();
    if (dir.excluded) return;
    dir.changedEpoch = this.epoch;
    this.propagate(dir);
  }

  // ---- picking up another desktop's committed changes (src/snapshot/rebase.ts) ---------------

  /**
   * Put committed entry `entry` at `dir/name` in place of what is there (null: remove it),
   * without change marks and without touching the directory's times: this is not a change of
   * this session, the new base says so. A replaced or removed node is detached like an unlinked
   * one (an open file keeps its content for its handles), with everything materialized below it.
   * The size change of a replaced file goes to the quota's running total; that of a directory
   * is the caller's (it knows the sizes of both trees). Synchronous; `dir` is materialized.
   */
  adoptEntry(dir: DirNode, name: string, entry: TreeEntry | null): void {
    const old = dir.children!.get(name);
    if (old) {
      dir.children!.delete(name);
      if (old.kind === 'file') this.usage.change(-old.size);
      this.detachTree(old);
    }
    if (!entry) return;
    const node = this.fromEntry({ ...entry, name });
    node.parent = dir;
    node.excluded = dir.excluded;
    dir.children!.set(name, node);
    if (node.kind === 'file') this.usage.change(node.size);
  }

  /**
   * A node's committed entry is now `entry` (same kind; a directory: its tree may differ, and
   * if it was never listed it will list the new tree). With `ownAttrs`, also take the entry's
   * mode, owner, times and xattrs (the session did not change them). No change marks.
   */
  adoptBase(node: Node, entry: TreeEntry, ownAttrs: boolean): void {
    node.base = entry;
    if (ownAttrs) node.setAttrs(this.attrsOf(entry));
  }

  /** Unlink a node and everything materialized below it (files still open stay reachable by their handles). */
  private detachTree(node: Node): void {
    node.parent = null;
    node.unlinked = true;
    node.ctimeNs = this.now();
    if (node.kind !== 'file' || node.openCount === 0) this.inodes.delete(node.ino);
    if (node.kind === 'file') this.onDetach?.(node);
    if (node.kind === 'dir') for (const child of node.children?.values() ?? []) this.detachTree(child);
  }

  get nodeCount(): number {
    return this.inodes.size;
  }

  // ---- internals ---------------------------------------------------------------------------

  private propagate(dir: DirNode | null): void {
    const e = this.epoch;
    // Stop early: a directory already marked this epoch has marked ancestors too.
    for (let d = dir; d && d.treeEpoch !== e; d = d.parent) d.treeEpoch = e;
  }

  private attach(dir: DirNode, name: string, node: Node): void {
    this.inodes.set(node.ino, node);
    dir.children!.set(name, node);
    node.parent = dir;
    node.excluded = dir.excluded || (!this.exclusions.empty && this.exclusions.matchesOwn(this.pathOf(node)));
    if (node.excluded) return this.touch(dir);
    node.changedEpoch = this.epoch;
    this.entriesChanged(dir);
  }

  /** An entry of dir changed that no snapshot records (an excluded one): times only. */
  private touch(dir: DirNode): void {
    dir.mtimeNs = dir.ctimeNs = this.now();
  }

  /**
   * Set the excluded flag of a moved node and of everything materialized below it (exclusion
   * depends on the path). A node that stops being excluded had no change marks while it was:
   * it is marked now, with its materialized subtree, so the next snapshot captures all of it
   * (directories never materialized still hold their committed tree, which is exact).
   */
  private reclassify(node: Node, excluded: boolean): void {
    const was = node.excluded;
    node.excluded = excluded;
    if (was && !excluded) {
      node.changedEpoch = this.epoch;
      if (node.kind === 'dir' && node.children) node.treeEpoch = this.epoch;
    }
    if (node.kind !== 'dir' || !node.children || (this.exclusions.empty && was === excluded)) return;
    const dirPath = this.pathOf(node);
    for (const [name, child] of node.children) {
      this.reclassify(child, excluded || this.exclusions.matchesOwn(`${dirPath}/${name}`));
    }
  }

  private allocIno(): number {
    return this.nextIno++;
  }

  private freshAttrs(perm: number, uid: number, gid: number): NodeAttrs {
    const t = this.now();
    return { perm: perm & 0o7777, uid, gid, atimeNs: t, mtimeNs: t, ctimeNs: t, xattrs: new Map() };
  }

  private attrsOf(e: TreeEntry): NodeAttrs {
    const xattrs = new Map<string, Buffer>();
    for (const [k, v] of Object.entries(e.xattrs ?? {})) xattrs.set(k, v);
    return {
      perm: e.mode & 0o7777,
      uid: this.ids.uidToLocal(e.uid),
      gid: this.ids.gidToLocal(e.gid),
      // The format stores only mtime; atime and ctime start there.
      atimeNs: e.mtimeNs,
      mtimeNs: e.mtimeNs,
      ctimeNs: e.mtimeNs,
      xattrs,
    };
  }

  private fromEntry(e: TreeEntry): Node {
    const ino = this.allocIno();
    let node: Node;
    switch (e.type) {
      case 'file':
        node = new FileNode(ino, e.name, this.attrsOf(e), e, { kind: 'base', map: new ChunkMap(e.chunks) });
        break;
      case 'dir':
        node = new DirNode(ino, e.name, this.attrsOf(e), e, null);
        break;
      case 'symlink':
        node = new SymlinkNode(ino, e.name, this.attrsOf(e), e, e.target);
        break;
    }
    this.inodes.set(ino, node);
    return node;
  }
}
