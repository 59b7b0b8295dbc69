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
