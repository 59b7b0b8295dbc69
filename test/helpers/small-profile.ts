import type { ManualClock } from '../../src/core/clock.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { Repository } from '../../src/repository/repository.js';
import type { TreeEntry } from '../../src/repository/objects.js';
import type { Vfs } from '../../src/vfs/types.js';
import { constants as C } from 'node:fs';
import { modelOfTree, normaliseLinks, type Model } from './profile-model.js';

const T0 = 1_700_000_000_000_000_000n;

/**
 * A repository (in memory) with alice's profile committed: notes.txt, todo.txt,
 * docs/{a.txt,b.txt,deep/x}, lazy/one, .cache/junk.
 */
export async function smallProfileRepo(clock: ManualClock): Promise<Repository> {
  const remote = await Repository.init(new MemoryBackend(clock));
  const f = async (name: string, content: string): Promise<TreeEntry> => {
    const b = Buffer.from(content);
    return { name, type: 'file', mode: 0o644, uid: 1000, gid: 1000, mtimeNs: T0, size: b.length, chunks: b.length ? [{ id: (await remote.putChunk(b)).id, size: b.length }] : [] };
  };
  const dir = async (name: string, entries: TreeEntry[]): Promise<TreeEntry> => ({ name, type: 'dir', tree: await remote.putTree(entries), mode: 0o755, uid: 1000, gid: 1000, mtimeNs: T0 });
  const root = {
    tree: await remote.putTree([
      await f('notes.txt', 'notes v1'),
      await f('todo.txt', 'todo v1'),
      await dir('docs', [await f('a.txt', 'a v1'), await f('b.txt', 'b v1'), await dir('deep', [await f('x', 'x v1')])]),
      await dir('lazy', [await f('one', 'one v1')]),
      await dir('.cache', [await f('junk', 'junk v1')]),
    ]),
    mode: 0o700, uid: 1000, gid: 1000, mtimeNs: T0,
  };
  const c = await remote.putCommit({ parents: [], root, time: 1, host: 'h0', session: 's0', message: 'import', stats: { files: 0, bytes: 0 } });
  await remote.moveHead('alice', null, c, { time: 1, host: 'h0', session: 's0' });
  return remote;
}

export async function writeText(vfs: Vfs, p: string, s: string): Promise<void> {
  const fh = await vfs.create(p, 0o644, C.O_WRONLY | C.O_CREAT | C.O_TRUNC);
  await vfs.write(fh, Buffer.from(s), Buffer.byteLength(s), 0);
  await vfs.release(fh);
}

export async function readText(vfs: Vfs, p: string): Promise<string> {
  const a = await vfs.getattr(p);
  const fh = await vfs.open(p, C.O_RDONLY);
  const buf = Buffer.alloc(a.size);
  await vfs.read(fh, buf, a.size, 0);
  await vfs.release(fh);
  return buf.toString();
}

/** The model of alice's head commit. */
export async function headModel(remote: Repository, user = 'alice'): Promise<Model> {
  const c = await remote.getCommit((await remote.requireHead(user)).commit);
  return normaliseLinks(await modelOfTree(remote, c.root));
}

/** path -> file content (text) or the entry's type letter. */
export function contentsOf(m: Model): Record<string, string> {
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, v.startsWith('f ') ? Buffer.from(v.split(' ')[3]!, 'base64').toString() : v.split(' ')[0]!]));
}
