/**
 * Snapshots re-chunk only what changed in a big file (Snapshotter.chunkFile with the upper
 * file's `chunked` state): the chunk list must always be exactly what cutting the whole file
 * gives, while the bytes cut stay near the size of the change; a snapshot that fails puts the
 * files' change tracking back.
 */
import test from 'ava';
import { constants as C } from 'node:fs';
import { ManualClock } from '../../src/core/clock.js';
import { sha256 } from '../../src/core/hash.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { Repository } from '../../src/repository/repository.js';
import { TYPE_CHUNK, type ChunkRef, type TreeEntry } from '../../src/repository/objects.js';
import type { Backend } from '../../src/repository/backend.js';
import type { OverlayVfs } from '../../src/vfs/overlay-vfs.js';
import type { ChangeLog } from '../../src/changelog/changelog.js';
import { coreSession } from '../helpers/core-session.js';
import { Rng, randomBuffer } from '../helpers/repo-data.js';

const T0 = 1_700_000_000_000_000_000n;
const MiB = 1024 * 1024;

/** alice's profile: big.bin, `size` seeded random bytes, committed in chunks. */
async function setup(t: import('ava').ExecutionContext, size: number) {
  const clock = new ManualClock();
  const remote = await Repository.init(new MemoryBackend(clock));
  const content = randomBuffer('rechunk-base', size);
  const entry: TreeEntry = { name: 'big.bin', type: 'file', mode: 0o644, uid: 1000, gid: 1000, mtimeNs: T0, size, chunks: await store(remote, content) };
  const root = { tree: await remote.putTree([entry]), mode: 0o700, uid: 1000, gid: 1000, mtimeNs: T0 };
  const c = await remote.putCommit({ parents: [], root, time: 1, host: 'h', session: 's', message: 'import', stats: { files: 1, bytes: 0 } });
  await remote.moveHead('alice', null, c, { time: 1, host: 'h', session: 's' });
  const s = await coreSession(t, remote, clock, { prefix: 'roamfs-rechunk-' });
  return { clock, remote, content, committed: entry.chunks, ...s };
}

async function store(repo: Repository, content: Buffer): Promise<ChunkRef[]> {
  const out: ChunkRef[] = [];
  let off = 0;
  for (const len of repo.chunker.cutAll(content)) {
    out.push({ id: (await repo.putChunk(content.subarray(off, off + len))).id, size: len });
    off += len;
  }
  return out;
}

/** What cutting the whole content gives (ids without storing anything). */
function expected(repo: Repository, content: Buffer): ChunkRef[] {
  const out: ChunkRef[] = [];
  let off = 0;
  for (const len of repo.chunker.cutAll(content)) {
    out.push({ id: sha256(Buffer.of(TYPE_CHUNK), content.subarray(off, off + len)), size: len });
    off += len;
  }
  return out;
}

/** The chunk list the snapshot `seq` recorded for big.bin. */
async function snapshotChunks(log: ChangeLog, seq: number): Promise<ChunkRef[]> {
  const s = await log.get(seq);
  const put = s.changes.find((c) => c.op === 'put' && c.path === 'big.bin');
  if (!put || put.op !== 'put' || put.entry.type !== 'file') throw new Error(`snapshot ${seq} has no put of big.bin`);
  return put.entry.chunks.map((c) => ({ id: c.id, size: c.size }));
}

async function write(vfs: OverlayVfs, fh: number, data: Buffer, at: number): Promise<void> {
  await vfs.write(fh, data, data.length, at);
}

test('a small write into a big committed file: the snapshot cuts a few chunks around it, and its chunk list is the whole cut', async (t) => {
  const { vfs, snap, log, remote, content } = await setup(t, 24 * MiB);
  const fh = await vfs.open('/big.bin', C.O_RDWR);
  const patch = randomBuffer('patch', 100);
  await write(vfs, fh, patch, 12 * MiB + 5);
  patch.copy(content, 12 * MiB + 5);
  const r = (await snap.snapshotOnce())!;
  t.deepEqual(await snapshotChunks(log, r.seq), expected(remote, content));
  t.true(r.bytesChunked <= 4 * MiB, `cut ${r.bytesChunked} bytes of 24 MiB for a 100-byte write`);
  t.true(r.bytesChunked > 0);

  // Again, near the end and past it (the file grows): from the chunk before to the end.
  const tail = randomBuffer('tail', 3000);
  await write(vfs, fh, tail, content.length - 1000);
  const grown = Buffer.concat([content.subarray(0, content.length - 1000), tail]);
  const r2 = (await snap.snapshotOnce())!;
  t.deepEqual(await snapshotChunks(log, r2.seq), expected(remote, grown));
  t.true(r2.bytesChunked <= 3 * MiB, `cut ${r2.bytesChunked} bytes for an append`);

  // Nothing but an attribute changed: no byte is cut.
  await vfs.chmod('/big.bin', 0o600);
  const r3 = (await snap.snapshotOnce())!;
  t.is(r3.bytesChunked, 0);
  t.deepEqual(await snapshotChunks(log, r3.seq), expected(remote, grown));
  await vfs.release(fh);
});

test('random writes, truncates and appends with snapshots in between: every chunk list equals cutting the whole file', async (t) => {
  const { vfs, snap, log, remote, content, commit } = await setup(t, 6 * MiB);
  const rng = new Rng(20261205);
  let model = Buffer.from(content);
  const fh = await vfs.open('/big.bin', C.O_RDWR);
  let totalCut = 0;
  let totalSize = 0;
  for (let round = 0; round < 40; round++) {
    for (let k = rng.int(1, 4); k > 0; k--) {
      const op = rng.int(0, 10);
      if (op < 6) {
        // a write inside, across the end or past it (a hole of zeros)
        const len = rng.pick([1, 17, 4096, 70_000, 300_000]);
        const at = rng.int(0, model.length + (op === 5 ? 200_000 : 1));
        const data = randomBuffer(`w${round}-${k}`, len);
        await write(vfs, fh, data, at);
        const next = Buffer.alloc(Math.max(model.length, at + len));
        model.copy(next);
        data.copy(next, at);
        model = next;
      } else if (op < 8) {
        const size = rng.int(0, model.length + 100_000);
        await vfs.ftruncate(fh, size);
        const next = Buffer.alloc(size);
        model.copy(next, 0, 0, Math.min(size, model.length));
        model = next;
      } else {
        const data = randomBuffer(`a${round}-${k}`, rng.int(1, 200_000));
        await write(vfs, fh, data, model.length);
        model = Buffer.concat([model, data]);
      }
    }
    const r = await snap.snapshotOnce();
    if (!r) continue;
    t.deepEqual(await snapshotChunks(log, r.seq), expected(remote, model), `round ${round}: ${model.length} bytes`);
    totalCut += r.bytesChunked;
    totalSize += model.length;
  }
  await vfs.release(fh);
  t.true(totalCut < totalSize, `cut ${totalCut} bytes over snapshots of ${totalSize} bytes in all`);
  await commit();
  const head = await remote.getCommit((await remote.requireHead('alice')).commit);
  const entry = (await remote.getTree(head.root.tree)).find((e) => e.name === 'big.bin')!;
  t.deepEqual(entry.type === 'file' ? entry.chunks.map((c) => ({ id: c.id, size: c.size })) : null, expected(remote, model));
});

test('a failed snapshot puts the change tracking back: the next one does not reuse chunks that only reached the failed target', async (t) => {
  const clock = new ManualClock();
  const { vfs, snap, log, remote, content, committed } = await setup(t, 8 * MiB);
  // A repository for the direct (logout) snapshot whose barrier fails: its chunks are written
  // there, then the snapshot fails before its log entry.
  const mem = new MemoryBackend(clock);
  const failing = new Proxy(mem, {
    get(o, k) {
      if (k === 'barrier') return async () => Promise.reject(new Error('barrier failed'));
      const v = Reflect.get(o, k) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(o) : v;
    },
  }) as Backend;
  const target = await Repository.init(failing);
  const fh = await vfs.open('/big.bin', C.O_RDWR);
  const patch = randomBuffer('patch-2', 5000);
  await write(vfs, fh, patch, 3 * MiB);
  patch.copy(content, 3 * MiB);
  await t.throwsAsync(snap.snapshotOnce({ direct: { repo: target } }), { message: /barrier failed/ });
  // A write after the failure, elsewhere: both changes must be in the next snapshot.
  const patch2 = randomBuffer('patch-3', 5000);
  await write(vfs, fh, patch2, 6 * MiB);
  patch2.copy(content, 6 * MiB);
  const r = (await snap.snapshotOnce())!;
  const chunks = await snapshotChunks(log, r.seq);
  t.deepEqual(chunks, expected(remote, content));
  const known = new Set(committed.map((c) => c.id));
  for (const c of chunks) t.true(known.has(c.id) || (await vfs.loader.cache.has(c.id, c.size)), `chunk ${c.id} is committed or in the local store`);
  await vfs.release(fh);
});
