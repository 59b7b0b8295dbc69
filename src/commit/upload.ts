import type { ObjectId } from '../core/hash.js';
import { TYPE_CHUNK, TYPE_TREE, type TreeEntry } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';
import type { Change } from '../repository/edit.js';

/**
 * Copy from the local object store to the repository every object a change list needs:
 * the chunks of put files and, for put directories, their whole subtree. Verified on the way
 * (local read checks the hash; the repository re-derives the id from the bytes). Idempotent:
 * objects already present are only touched (which protects them from a concurrent gc).
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
    const payload = await local.getObject(id, type);
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
      for (const child of await local.getTree(e.tree)) await entry(child);
      await copy(e.tree, TYPE_TREE);
    }
  }
  for (const c of changes) if (c.op === 'put') await entry(c.entry);
  return stat;
}
