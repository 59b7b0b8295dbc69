import type { ChunkMap } from '../base/chunk-map.js';
import type { TreeEntry } from '../repository/objects.js';
import { Gate } from './gate.js';
import type { UpperFile } from './upper.js';

/**
 * A regular file's content: still the committed chunks (`base`, read lazily through the
 * cache; also used for an empty file that was truncated to 0 and never written), or a private
 * local copy (`upper`) after copy-up.
 */
export type FileContent = { kind: 'base'; map: ChunkMap } | { kind: 'upper'; file: UpperFile };

export interface NodeAttrs {
  /** Permission bits (mode & 0o7777). */
  perm: number;
  /** Local ids (see IdMap). */
  uid: number;
  gid: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  xattrs: Map<string, Buffer>;
}

/**
 * What every node has. All fields are plain in-memory state changed synchronously, so a
 * snapshot can read a consistent view of the whole namespace in one synchronous section.
 *
 * Change marks (the snapshot seam): `changedEpoch` is the overlay epoch in which this node's
 * own entry last changed (attributes, content, symlink target); 0 = as in `base`. A directory
 * also has `treeEpoch`: the last epoch in which its set of entries or anything below it
 * changed. Invariant: a directory's treeEpoch >= that of every descendant still attached, so a
 * snapshot walks only directories with treeEpoch > its previous epoch and reuses `base`
 * (entry, chunk list, subtree id) for everything else.
 */
abstract class NodeCommon implements NodeAttrs {
  /** The directory holding this node; null for the root and for unlinked nodes. */
  parent: DirNode | null = null;
  /** Current name in `parent` (the last one, once unlinked); '' for the root. */
  name: string;
  perm: number;
  uid: number;
  gid: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
  xattrs: Map<string, Buffer>;
  changedEpoch = 0;
  /** nlink == 0: removed from the namespace (may still be open). */
  unlinked = false;
  /**
   * Local-only (src/core/exclusions.ts): this node's path, or an ancestor's, matches an
   * exclusion pattern. Kept current by the overlay (set on attach, recomputed on moves).
   * Changes of excluded nodes carry no change marks, so they never make a snapshot dirty.
   */
  excluded = false;

  constructor(
    /** Inode number: stable for the life of the mount. */
    readonly ino: number,
    name: string,
    attrs: NodeAttrs,
    /** The committed entry this node came from (with stored ids); null when created in this mount. */
    public base: TreeEntry | null,
  ) {
    this.name = name;
    this.perm = attrs.perm;
    this.uid = attrs.uid;
    this.gid = attrs.gid;
    this.atimeNs = attrs.atimeNs;
    this.mtimeNs = attrs.mtimeNs;
    this.ctimeNs = attrs.ctimeNs;
    this.xattrs = attrs.xattrs;
  }

  /** Take all of these attributes (no change mark: the caller decides what this change is). */
  setAttrs(a: NodeAttrs): void {
    this.perm = a.perm;
    this.uid = a.uid;
    this.gid = a.gid;
    this.atimeNs = a.atimeNs;
    this.mtimeNs = a.mtimeNs;
    this.ctimeNs = a.ctimeNs;
    this.xattrs = a.xattrs;
  }
}

export class FileNode extends NodeCommon {
  readonly kind = 'file';
  content: FileContent;
  /** Writes hold it shared, truncate/copy-up/snapshot-freeze exclusively (see Gate). */
  readonly gate = new Gate();
  /** Open handles; an unlinked file's upper file is removed when this drops to 0. */
  openCount = 0;
  /** Open handles that may write (a pick-up never replaces a file while one is open). */
  writers = 0;

  constructor(ino: number, name: string, attrs: NodeAttrs, base: TreeEntry | null, content: FileContent) {
    super(ino, name, attrs, base);
    this.content = content;
  }

  get size(): number {
    return this.content.kind === 'base' ? this.content.map.size : this.content.file.size;
  }
}

export class DirNode extends NodeCommon {
  readonly kind = 'dir';
  /**
   * Entries by name; null until first needed, then materialized from the base tree and owned
   * by the overlay: a delete removes the entry (that is the whiteout), a rename moves the node.
   */
  children: Map<string, Node> | null;
  treeEpoch = 0;
  /**
   * Entries of the base tree at excluded paths, hidden when the directory was materialized
   * (null: none). Snapshots carry them through unchanged, so the directory's tree stays what
   * the repository holds there: commits neither delete nor re-upload them, and a tree that
   * differs only by them never looks like another desktop's change to the merge.
   */
  hidden: TreeEntry[] | null = null;

  constructor(ino: number, name: string, attrs: NodeAttrs, base: TreeEntry | null, children: Map<string, Node> | null) {
    super(ino, name, attrs, base);
    this.children = children;
  }
}

export class SymlinkNode extends NodeCommon {
  readonly kind = 'symlink';
  constructor(
    ino: number,
    name: string,
    attrs: NodeAttrs,
    base: TreeEntry | null,
    public target: string,
  ) {
    super(ino, name, attrs, base);
  }
}

export type Node = FileNode | DirNode | SymlinkNode;
