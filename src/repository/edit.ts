import { RoamfsError } from '../core/errors.js';
import type { ObjectId } from '../core/hash.js';
import type { RootRef, TreeEntry } from './objects.js';
import type { Repository } from './repository.js';

/** Attributes for a directory that has to be created on the way to a path. */
export type DirAttrs = Pick<RootRef, 'mode' | 'uid' | 'gid' | 'mtimeNs'>;

/**
 * Return a new root in which `parts` holds `entry` (renamed to the last part), or is absent
 * when entry is null. Only the directories on the path are rewritten; everything else is
 * shared with the old root. Missing parents are created with `makeDir(depth)` attributes.
 */
export async function setPath(
  repo: Repository,
  root: RootRef,
  parts: readonly string[],
  entry: TreeEntry | null,
  makeDir: (depth: number) => DirAttrs,
): Promise<RootRef> {
  if (parts.length === 0) {
    if (!entry || entry.type !== 'dir') throw new RoamfsError('INVALID_ARGUMENT', 'the profile root must stay a directory');
    return { tree: entry.tree, mode: entry.mode, uid: entry.uid, gid: entry.gid, mtimeNs: entry.mtimeNs };
  }
  async function rewrite(tree: ObjectId | null, depth: number): Promise<ObjectId> {
    const entries = tree ? await repo.getTree(tree) : [];
    const name = parts[depth]!;
    const i = entries.findIndex((e) => e.name === name);
    const cur = i >= 0 ? entries[i]! : null;
    let next: TreeEntry | null;
    if (depth === parts.length - 1) {
      next = entry ? { ...entry, name } : null;
    } else {
      if (cur && cur.type !== 'dir') {
        throw new RoamfsError('INVALID_ARGUMENT', `${parts.slice(0, depth + 1).join('/')} is not a directory`);
      }
      const sub = await rewrite(cur && cur.type === 'dir' ? cur.tree : null, depth + 1);
      next = cur && cur.type === 'dir' ? { ...cur, tree: sub } : { name, type: 'dir', tree: sub, ...makeDir(depth + 1) };
    }
    const out = entries.filter((e) => e.name !== name);
    if (next) out.push(next);
    return repo.putTree(out);
  }
  return { ...root, tree: await rewrite(root.tree, 0) };
}

/**
 * One change to a profile, as the change log records it and a commit applies it:
 * - put: create or replace the entry at path (a directory put carries its whole subtree);
 * - attrs: a directory's own mode/owner/mtime changed (its children are separate changes);
 * - delete: remove the entry at path (and everything below it).
 * Paths are profile-relative ("a/b"); "" is the root (attrs only).
 */
export type Change =
  | { op: 'put'; path: string; entry: TreeEntry }
  | { op: 'attrs'; path: string; attrs: DirAttrs }
  | { op: 'delete'; path: string };

interface Trie {
  /** undefined: untouched; null: deleted; entry: replaced by this entry. */
  final?: TreeEntry | null;
  attrs?: DirAttrs;
  kids: Map<string, Trie>;
}

/**
 * Apply changes in order onto root, rewriting each affected directory once (a batch of 10,000
 * changes in one directory costs one tree rewrite, not 10,000). Directories missing on the way
 * to a change are created with `makeDir(path)` attributes. Returns the new root.
 */
export async function applyChanges(
  repo: Repository,
  root: RootRef,
  changes: readonly Change[],
  makeDir: (path: string) => DirAttrs,
): Promise<RootRef> {
  const top: Trie = { kids: new Map() };
  for (const c of changes) {
    let node = top;
    const parts = c.path === '' ? [] : c.path.split('/');
    for (const p of parts) {
      let k = node.kids.get(p);
      if (!k) node.kids.set(p, (k = { kids: new Map() }));
      node = k;
    }
    if (c.op === 'attrs') node.attrs = c.attrs;
    else {
      if (parts.length === 0) throw new RoamfsError('INVALID_ARGUMENT', 'cannot replace or delete the profile root');
      node.final = c.op === 'put' ? c.entry : null;
      node.attrs = undefined;
      node.kids.clear(); // later changes below this path apply to the new entry
    }
  }
  async function rewrite(tree: ObjectId | null, trie: Trie, prefix: string): Promise<ObjectId> {
    const entries = new Map((tree ? await repo.getTree(tree) : []).map((e) => [e.name, e] as const));
    for (const [name, t] of trie.kids) {
      const path = prefix ? `${prefix}/${name}` : name;
      let e: TreeEntry | null | undefined = t.final === undefined ? entries.get(name) : t.final ? { ...t.final, name } : null;
      if (t.kids.size > 0) {
        if (e === null || e === undefined || e.type !== 'dir') {
          // Changes below a path that is gone (or no longer a directory): recreate the directory.
          e = { name, type: 'dir', tree: '', ...makeDir(path) };
          e.tree = await rewrite(null, t, path);
        } else {
          e = { ...e, tree: await rewrite(e.tree, t, path) };
        }
      }
      if (t.attrs && e && e.type === 'dir') e = { ...e, ...t.attrs };
      if (e) entries.set(name, e);
      else entries.delete(name);
    }
    return repo.putTree([...entries.values()]);
  }
  const tree = top.kids.size > 0 ? await rewrite(root.tree, top, '') : root.tree;
  return { ...root, ...(top.attrs ?? {}), tree };
}
