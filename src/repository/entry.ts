import type { TreeEntry } from './objects.js';

type Attrs = Pick<TreeEntry, 'mode' | 'uid' | 'gid' | 'mtimeNs' | 'xattrs'>;

function sameXattrs(a?: Record<string, Buffer>, b?: Record<string, Buffer>): boolean {
  const ka = Object.keys(a ?? {});
  const kb = Object.keys(b ?? {});
  return ka.length === kb.length && ka.every((k) => b?.[k] !== undefined && Buffer.compare(a![k]!, b[k]!) === 0);
}

/** Same stored attributes (mode, owner, mtime, xattrs). */
export function sameAttrs(a: Attrs, b: Attrs): boolean {
  return a.mode === b.mode && a.uid === b.uid && a.gid === b.gid && a.mtimeNs === b.mtimeNs && sameXattrs(a.xattrs, b.xattrs);
}

/** Same content: chunk ids, symlink target, subtree id (names and attributes not compared). */
export function sameContent(a: TreeEntry, b: TreeEntry): boolean {
  if (a.type === 'file' && b.type === 'file') return a.size === b.size && a.chunks.length === b.chunks.length && a.chunks.every((c, i) => c.id === b.chunks[i]!.id);
  if (a.type === 'symlink' && b.type === 'symlink') return a.target === b.target;
  if (a.type === 'dir' && b.type === 'dir') return a.tree === b.tree;
  return false;
}

/** Entries that would be stored identically (apart from the name). null equals only null. */
export function sameEntry(a: TreeEntry | null | undefined, b: TreeEntry | null | undefined): boolean {
  if (!a || !b) return !a && !b;
  return a.type === b.type && sameAttrs(a, b) && sameContent(a, b);
}
