import { RoamfsError } from '../core/errors.js';
import type { ObjectId } from '../core/hash.js';
import type { DirEntry, RootRef, TreeEntry } from './objects.js';
import type { Repository } from './repository.js';
import { sameAttrs, sameEntry } from './entry.js';

export interface WalkItem {
  /** Profile-relative path, "" for the root. */
  path: string;
  entry: TreeEntry;
}

/** Depth-first, pre-order walk of a tree (parents before children), names in tree order. */
export async function* walkTree(repo: Repository, tree: ObjectId, prefix = ''): AsyncGenerator<WalkItem> {
  for (const entry of await repo.getTree(tree)) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    yield { path, entry };
    if (entry.type === 'dir') yield* walkTree(repo, entry.tree, path);
  }
}

/** The root as a directory entry (name ""), so callers can treat it like any directory. */
export function rootEntry(root: RootRef): DirEntry {
  return { name: '', type: 'dir', tree: root.tree, mode: root.mode, uid: root.uid, gid: root.gid, mtimeNs: root.mtimeNs };
}

/** Find the entry at `parts` under root; null when absent. */
export async function lookupPath(repo: Repository, root: RootRef, parts: readonly string[]): Promise<TreeEntry | null> {
  let cur: TreeEntry = rootEntry(root);
  for (const name of parts) {
    if (cur.type !== 'dir') return null;
    const next: TreeEntry | undefined = (await repo.getTree(cur.tree)).find((e) => e.name === name);
    if (!next) return null;
    cur = next;
  }
  return cur;
}


export type Change =
  | { kind: 'added'; path: string; entry: TreeEntry }
  | { kind: 'deleted'; path: string; entry: TreeEntry }
  | { kind: 'modified'; path: string; before: TreeEntry; entry: TreeEntry };

/**
 * Differences between two trees (null = empty), skipping identical subtrees by id, so the
 * cost is proportional to what changed. A directory whose own attributes changed is reported
 * as modified; its children are compared recursively.
 */
export async function* diffTrees(repo: Repository, a: ObjectId | null, b: ObjectId | null, prefix = ''): AsyncGenerator<Change> {
  if (a === b) return;
  const ea = a ? await repo.getTree(a) : [];
  const eb = b ? await repo.getTree(b) : [];
  const mb = new Map(eb.map((e) => [e.name, e]));
  const join = (n: string) => (prefix ? `${prefix}/${n}` : n);
  for (const x of ea) {
    const y = mb.get(x.name);
    const path = join(x.name);
    if (!y) {
      yield { kind: 'deleted', path, entry: x };
      if (x.type === 'dir') yield* diffTrees(repo, x.tree, null, path);
      continue;
    }
    mb.delete(x.name);
    if (x.type === 'dir' && y.type === 'dir') {
      if (!sameAttrs(x, y)) yield { kind: 'modified', path, before: x, entry: y };
      yield* diffTrees(repo, x.tree, y.tree, path);
    } else if (x.type !== y.type) {
      yield { kind: 'deleted', path, entry: x };
      if (x.type === 'dir') yield* diffTrees(repo, x.tree, null, path);
      yield { kind: 'added', path, entry: y };
      if (y.type === 'dir') yield* diffTrees(repo, null, y.tree, path);
    } else if (!sameEntry(x, y)) {
      yield { kind: 'modified', path, before: x, entry: y };
    }
  }
  for (const y of mb.values()) {
    const path = join(y.name);
    yield { kind: 'added', path, entry: y };
    if (y.type === 'dir') yield* diffTrees(repo, null, y.tree, path);
  }
}

/** Number of non-directory paths that differ (what `log` calls "files changed"). */
export async function countChangedFiles(repo: Repository, a: ObjectId | null, b: ObjectId | null): Promise<number> {
  let n = 0;
  for await (const c of diffTrees(repo, a, b)) if (c.entry.type !== 'dir') n++;
  return n;
}

export function assertDir(e: TreeEntry | null, what: string): asserts e is DirEntry {
  if (!e || e.type !== 'dir') throw new RoamfsError('NOT_FOUND', `${what} is not a directory in the profile`);
}
