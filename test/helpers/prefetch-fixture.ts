/** Shared fixture of the prefetch tests (test/unit/prefetch-*.test.ts): a small profile in a MemoryBackend. */
import type { ManualClock } from '../../src/core/clock.js';
import type { ObjectId } from '../../src/core/hash.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import type { FileEntry, TreeEntry } from '../../src/repository/objects.js';
import { Repository } from '../../src/repository/repository.js';

const KiB = 1024;
export const T0 = 1_700_000_000_000_000_000n;

/** Distinct pseudo-random bytes per seed (no chunk is shared between files). */
export function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n + 4);
  let s = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < n; i += 4) {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    b.writeUInt32LE(s, i);
  }
  return b.subarray(0, n);
}

/** Records every object read, and can hold chunk reads until released. */
export class RecordingBackend extends MemoryBackend {
  readonly reads: ObjectId[] = [];
  private gate: Promise<void> | null = null;
  private openGate: (() => void) | null = null;
  /** Hold every read from now on until release() (or releaseAll()). */
  hold(): () => void {
    this.releaseAll();
    let open!: () => void;
    this.gate = new Promise((r) => (open = r));
    this.openGate = open;
    return () => this.releaseAll();
  }
  releaseAll(): void {
    this.openGate?.();
    this.gate = this.openGate = null;
  }
  pending = 0;
  maxPending = 0;
  override async getObject(id: ObjectId): Promise<Buffer> {
    this.reads.push(id);
    this.pending++;
    this.maxPending = Math.max(this.maxPending, this.pending);
    try {
      if (this.gate) await this.gate;
      return await super.getObject(id);
    } finally {
      this.pending--;
    }
  }
}

/** The profile of these tests: path -> size. Sizes are distinct so that the plan is unambiguous. */
export const FILES: Record<string, number> = {
  '.bashrc': 200,
  '.config/app/settings.ini': 100,
  '.config/app/big.db': 300 * KiB,
  '.cache/thumb.bin': 200 * KiB,
  'Documents/notes.txt': 1 * KiB,
  'Documents/report.pdf': 150 * KiB,
  'Documents/movie.mkv': 900 * KiB,
  'Music/song.mp3': 500 * KiB,
  'empty.txt': 0,
};

export async function buildTree(repo: Repository, files: Record<string, number>): Promise<{ root: TreeEntry[]; entries: Map<string, FileEntry> }> {
  const entries = new Map<string, FileEntry>();
  let seed = 1;
  async function level(prefix: string, paths: string[]): Promise<TreeEntry[]> {
    const out: TreeEntry[] = [];
    const dirs = new Map<string, string[]>();
    for (const p of paths) {
      const [head, ...rest] = p.split('/');
      if (rest.length) dirs.set(head!, [...(dirs.get(head!) ?? []), rest.join('/')]);
      else {
        const full = prefix + head!;
        const data = bytes(files[full]!, seed++);
        const chunks = [];
        let off = 0;
        for (const len of repo.chunker.cutAll(data)) {
          chunks.push({ id: (await repo.putChunk(data.subarray(off, off + len))).id, size: len });
          off += len;
        }
        const e: FileEntry = { name: head!, type: 'file', mode: 0o644, uid: 1000, gid: 1000, mtimeNs: T0, size: data.length, chunks };
        entries.set(full, e);
        out.push(e);
      }
    }
    for (const [name, sub] of dirs) {
      out.push({ name, type: 'dir', mode: 0o755, uid: 1000, gid: 1000, mtimeNs: T0, tree: await repo.putTree(await level(`${prefix}${name}/`, sub)) });
    }
    return out.sort((a, b) => (a.name < b.name ? -1 : 1));
  }
  return { root: await level('', Object.keys(files)), entries };
}

/** Commit FILES as alice's profile; chunkOwner maps each chunk to its file. */
export async function committedProfile(clock: ManualClock, files: Record<string, number> = FILES) {
  const backend = new RecordingBackend(clock);
  const repo = await Repository.init(backend);
  const { root, entries } = await buildTree(repo, files);
  const rootRef = { tree: await repo.putTree(root), mode: 0o700, uid: 1000, gid: 1000, mtimeNs: T0 };
  const c = await repo.putCommit({ parents: [], root: rootRef, time: 1, host: 'h', session: 's', message: 'import', stats: { files: 0, bytes: 0 } });
  await repo.moveHead('alice', null, c, { time: 1, host: 'h', session: 's' });
  const chunkOwner = new Map<ObjectId, string>();
  for (const [p, e] of entries) for (const ch of e.chunks) chunkOwner.set(ch.id, p);
  /** Files whose chunks were read from the repository after read number `from`, in order, consecutive repeats merged. */
  const filesRead = (from = 0) => {
    const out: string[] = [];
    for (const id of backend.reads.slice(from)) {
      const p = chunkOwner.get(id);
      if (p && out[out.length - 1] !== p) out.push(p);
    }
    return out;
  };
  const chunkReads = (from = 0) => backend.reads.slice(from).filter((id) => chunkOwner.has(id)).length;
  return { backend, repo, entries, chunkOwner, filesRead, chunkReads };
}

export const NONEMPTY = Object.keys(FILES).filter((p) => FILES[p]! > 0);

/** Let real I/O (the local cache) progress while the manual clock moves: until cond() or `rounds`. */
export async function pump(clock: ManualClock, cond: () => boolean, rounds = 20_000, stepMs = 10): Promise<boolean> {
  for (let i = 0; i < rounds; i++) {
    if (cond()) return true;
    clock.advance(stepMs);
    await new Promise((r) => setTimeout(r, 1));
  }
  return cond();
}
