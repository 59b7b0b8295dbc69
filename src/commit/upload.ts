import { isRoamfsError } from '../core/errors.js';
import type { ObjectId } from '../core/hash.js';
import { TYPE_CHUNK, TYPE_TREE, type TreeEntry } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';
import type { Change } from '../repository/edit.js';

/**
 * Copy from the local object store to the repository every object a change list needs:
 * the chunks of put files and, for put directories, their whole subtree. Verified on the way
 * (local read checks the hash; the repository re-derives the id from the bytes). Idempotent:
 * objects already present are only touched (which protects them from a concurrent gc).
 *
 * An object missing from the local store is committed content that this session never read (a
 * directory moved or copied whole without being listed, a file renamed without being opened):
 * the repository must have it, and it is touched there (trees are read from the repository to
 * reach everything below them). Absent from both: MISSING_OBJECT.
 */
export async function uploadChanges(
  local: Repository,
  remote: Repository,
  changes: readonly Change[],
  onBytes?: (n: number) => void,
): Promise<{ objects: number; bytes: number }> {
  const done = new Set<ObjectId>();
  const stat = { objects: 0, bytes: 0 };
  async function copy(id: ObjectId, type: typeof TYPE_CHUNK | typeof TYPE_TREE): Promise<void> {
    if (done.has(id)) return;
    done.add(id);
    let payload: Buffer;
    try {
      payload = await local.getObject(id, type);
    } catch (err) {
      if (isRoamfsError(err, 'MISSING_OBJECT') && (await remote.touchObject(id))) return;
      throw err;
    }
    const { written } = await remote.putObject(type, payload);
    if (written) {
      stat.objects++;
      stat.bytes += payload.length;
      onBytes?.(payload.length);
    }
  }
  async function entry(e: TreeEntry): Promise<void> {
    if (e.type === 'file') for (const c of e.chunks) await copy(c.id, TYPE_CHUNK);
    else if (e.type === 'dir') {
      if (done.has(e.tree)) return;
      const children = await local.getTree(e.tree).catch((err: unknown) => (isRoamfsError(err, 'MISSING_OBJECT') ? remote.getTree(e.tree) : Promise.reject(err)));
      for (const child of children) await entry(child);
      await copy(e.tree, TYPE_TREE);
    }
  }
  for (const c of changes) if (c.op === 'put') await entry(c.entry);
  return stat;
}
