/**
 * Build commits straight through the Repository API (no file system), for unit tests.
 */
import type { ObjectId } from '../../src/core/hash.js';
import type { Commit, Ref, TreeEntry } from '../../src/repository/objects.js';
import type { Repository } from '../../src/repository/repository.js';

export type FileSpec = string | Buffer;
/** Nested description of a profile: a string/Buffer is a file, an object a directory. */
export interface DirSpec {
  [name: string]: FileSpec | DirSpec;
}

const T = 1_700_000_000_000_000_000n;

export interface Built {
  commit: ObjectId;
  tree: ObjectId;
  /** Every object id written for this commit: commit, trees, chunks. */
  objects: Set<ObjectId>;
  chunks: Set<ObjectId>;
  trees: Set<ObjectId>;
}

export async function buildTree(repo: Repository, spec: DirSpec, acc: Built): Promise<ObjectId> {
  const entries: TreeEntry[] = [];
  for (const [name, v] of Object.entries(spec)) {
    const base = { name, mode: 0o644, uid: 1000, gid: 1000, mtimeNs: T };
    if (typeof v === 'string' || Buffer.isBuffer(v)) {
      const data = Buffer.isBuffer(v) ? v : Buffer.from(v);
      const chunks = [];
      let off = 0;
      for (const len of repo.chunker.cutAll(data)) {
        const { id } = await repo.putChunk(data.subarray(off, off + len));
        acc.chunks.add(id);
        acc.objects.add(id);
        chunks.push({ id, size: len });
        off += len;
      }
      entries.push({ ...base, type: 'file', size: data.length, chunks });
    } else {
      entries.push({ ...base, mode: 0o755, type: 'dir', tree: await buildTree(repo, v, acc) });
    }
  }
  const id = await repo.putTree(entries);
  acc.trees.add(id);
  acc.objects.add(id);
  return id;
}

/** Store a profile and a commit for it (no ref). */
export async function buildCommit(
  repo: Repository,
  spec: DirSpec,
  opts: { parents?: ObjectId[]; time?: number; message?: string } = {},
): Promise<Built> {
  const acc: Built = { commit: '', tree: '', objects: new Set(), chunks: new Set(), trees: new Set() };
  acc.tree = await buildTree(repo, spec, acc);
  const c: Commit = {
    parents: opts.parents ?? [],
    root: { tree: acc.tree, mode: 0o700, uid: 1000, gid: 1000, mtimeNs: T },
    time: opts.time ?? 1_700_000_000_000,
    host: 'test-host',
    session: 'test-session',
    message: opts.message ?? 'test',
    stats: { files: 0, bytes: 0 },
  };
  acc.commit = await repo.putCommit(c);
  acc.objects.add(acc.commit);
  return acc;
}

export const META = { time: 1_700_000_000_000, host: 'test-host', session: 'test-session' };

/** Commit `spec` on top of the user's current head (or as its first commit). */
export async function commitOnTop(repo: Repository, user: string, spec: DirSpec, time = META.time): Promise<{ built: Built; ref: Ref }> {
  const head = await repo.head(user);
  const built = await buildCommit(repo, spec, { parents: head ? [head.commit] : [], time });
  const ref = await repo.moveHead(user, head, built.commit, { ...META, time });
  return { built, ref };
}
