import test from 'ava';
import { constants as C } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import type { DirEntry, FileEntry, SymlinkEntry, TreeEntry } from '../../src/repository/objects.js';
import { Repository } from '../../src/repository/repository.js';
import { OverlayVfs, type OverlayVfsOptions } from '../../src/vfs/overlay-vfs.js';
import { FsError } from '../../src/vfs/types.js';

const MiB = 1024 * 1024;
const T0 = 1_700_000_000_000_000_000n;

/** Deterministic pseudo-random bytes: distinct content per seed, so chunks never dedupe. */
function bytes(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
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

async function file(repo: Repository, name: string, data: Buffer, extra: Partial<FileEntry> = {}): Promise<FileEntry> {
  const chunks = [];
  let off = 0;
  for (const len of repo.chunker.cutAll(data)) {
    const { id } = await repo.putChunk(data.subarray(off, off + len));
    chunks.push({ id, size: len });
    off += len;
  }
  return { name, type: 'file', mode: 0o644, uid: 5000, gid: 5000, mtimeNs: T0, size: data.length, chunks, ...extra };
}

async function dir(repo: Repository, name: string, entries: TreeEntry[]): Promise<DirEntry> {
  return { name, type: 'dir', mode: 0o755, uid: 5000, gid: 5000, mtimeNs: T0, tree: await repo.putTree(entries) };
}

function link(name: string, target: string): SymlinkEntry {
  return { name, type: 'symlink', mode: 0o777, uid: 5000, gid: 5000, mtimeNs: T0, target };
}

async function commit(repo: Repository, entries: TreeEntry[]): Promise<void> {
  const root = { tree: await repo.putTree(entries), mode: 0o700, uid: 5000, gid: 5000, mtimeNs: T0 };
  const id = await repo.putCommit({ parents: [], root, time: 1, host: 'h', session: 's', message: 'test', stats: { files: 0, bytes: 0 } });
  await repo.moveHead('alice', null, id, { time: 1, host: 'h', session: 's' });
}

interface Fixture {
  repo: Repository;
  backend: MemoryBackend;
  clock: ManualClock;
  big: Buffer;
  bigEntry: FileEntry;
  cacheDirs: string[];
  logs: string[];
  mount(opts?: Partial<OverlayVfsOptions>): Promise<OverlayVfs>;
  reads(): { objects: number; bytes: number };
}

async function fixture(extra: (repo: Repository) => Promise<TreeEntry[]> = async () => []): Promise<Fixture> {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const repo = await Repository.init(backend);
  const big = bytes(10 * MiB, 1);
  const bigEntry = await file(repo, 'big.bin', big);
  const entries: TreeEntry[] = [
    bigEntry,
    await file(repo, 'small.txt', Buffer.from('small file'), { uid: 0, gid: 0 }),
    link('link', 'small.txt'),
    await dir(repo, 'sub', [await file(repo, 'a.txt', Buffer.from('A')), await dir(repo, 'deeper', [await file(repo, 'b.txt', Buffer.from('B'))])]),
    ...(await extra(repo)),
  ];
  await commit(repo, entries);
  const f: Fixture = {
    repo,
    backend,
    clock,
    big,
    bigEntry,
    cacheDirs: [],
    logs: [],
    async mount(opts = {}) {
      const cacheDir = opts.cacheDir ?? (await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-lazy-')));
      f.cacheDirs.push(cacheDir);
      return OverlayVfs.open({ remote: repo, user: 'alice', cacheDir, clock, uid: 1000, gid: 1000, log: (l) => f.logs.push(l), ...opts });
    },
    reads: () => ({ objects: backend.stats.objectReads, bytes: backend.stats.objectBytesRead }),
  };
  return f;
}

async function cleanup(f: Fixture): Promise<void> {
  for (const d of f.cacheDirs) await fsp.rm(d, { recursive: true, force: true });
}

async function readAll(vfs: OverlayVfs, p: string, block = 128 * 1024): Promise<Buffer> {
  const fh = await vfs.open(p, C.O_RDONLY);
  try {
    const parts: Buffer[] = [];
    for (let pos = 0; ; ) {
      const b = Buffer.alloc(block);
      const n = await vfs.read(fh, b, block, pos);
      if (n === 0) break;
      parts.push(b.subarray(0, n));
      pos += n;
    }
    return Buffer.concat(parts);
  } finally {
    await vfs.release(fh);
  }
}

function delta(f: Fixture, before: { objects: number; bytes: number }) {
  const now = f.reads();
  return { objects: now.objects - before.objects, bytes: now.bytes - before.bytes };
}

test('mount reads only the commit and the root tree; a subdirectory costs one tree read', async (t) => {
  const f = await fixture();
  const vfs = await f.mount();
  t.is(f.reads().objects, 2, 'commit + root tree');
  let r = f.reads();
  const st = await vfs.getattr('/sub');
  t.is(st.mode & C.S_IFMT, C.S_IFDIR);
  t.is(delta(f, r).objects, 0, 'stat of a subdir needs only its parent');
  t.deepEqual((await vfs.readdir('/')).map((e) => e.name).sort(), ['big.bin', 'link', 'small.txt', 'sub']);
  t.is(delta(f, r).objects, 0);
  r = f.reads();
  t.deepEqual((await vfs.readdir('/sub')).map((e) => e.name).sort(), ['a.txt', 'deeper']);
  t.is(delta(f, r).objects, 1, 'readdir of /sub reads that tree only');
  await vfs.getattr('/sub/deeper');
  t.is(delta(f, r).objects, 1);
  await Promise.all([vfs.readdir('/sub/deeper'), vfs.readdir('/sub/deeper'), vfs.getattr('/sub/deeper/b.txt')]);
  t.is(delta(f, r).objects, 2, 'concurrent loads of one tree are single-flight');
  t.is(vfs.stats().remoteObjects, 4, 'commit, root, sub, deeper');
  t.is(await vfs.readlink('/link'), 'small.txt');
  await vfs.close();
  await cleanup(f);
});

test('ownership: the profile owner is shown as the mount user, other ids as stored', async (t) => {
  const f = await fixture();
  const vfs = await f.mount();
  const root = await vfs.getattr('/');
  t.is(root.uid, 1000);
  t.is(root.gid, 1000);
  t.is(root.mode & 0o7777, 0o700);
  t.is((await vfs.getattr('/big.bin')).uid, 1000);
  t.is((await vfs.getattr('/small.txt')).uid, 0);
  t.is((await vfs.getattr('/big.bin')).mtimeNs, T0);
  t.is(vfs.overlay.ids.uidToStored(1000), 5000);
  // New entries: the caller's ids when given, else the mount's.
  await vfs.mkdir('/m', 0o755);
  t.is((await vfs.getattr('/m')).uid, 1000);
  await vfs.mkdir('/c', 0o755, { uid: 7, gid: 8, pid: 1 });
  t.is((await vfs.getattr('/c')).gid, 8);
  await vfs.close();
  await cleanup(f);
});

test('reading a 10 MiB file fetches it once, about 10 MiB; rereads and a second mount fetch nothing', async (t) => {
  const f = await fixture();
  const vfs = await f.mount();
  const r = f.reads();
  const got = await readAll(vfs, '/big.bin');
  t.true(got.equals(f.big));
  await vfs.loader.idle();
  const d = delta(f, r);
  const n = f.bigEntry.chunks.length;
  t.true(n > 10, `${n} chunks`);
  t.is(d.objects, n);
  t.is(d.bytes, 10 * MiB + n, 'payload plus one type byte per chunk');
  t.true(vfs.stats().remoteBytes >= 10 * MiB + n);
  const r2 = f.reads();
  t.true((await readAll(vfs, '/big.bin', 4096 * 3 + 17)).equals(f.big));
  t.is(delta(f, r2).objects, 0);
  await vfs.close();

  // Same cache directory, new mount: chunks come from the local cache (verified, not fetched).
  const vfs2 = await f.mount({ cacheDir: f.cacheDirs[0]! });
  const r3 = f.reads();
  t.true((await readAll(vfs2, '/big.bin')).equals(f.big));
  await vfs2.loader.idle();
  t.is(delta(f, r3).objects, 0);
  t.true(vfs2.stats().cacheHits >= n);
  await vfs2.close();
  await cleanup(f);
});

test('concurrent opens and reads of one file fetch each chunk once', async (t) => {
  const f = await fixture();
  const vfs = await f.mount({ readahead: false });
  const r = f.reads();
  const all = await Promise.all(Array.from({ length: 6 }, () => readAll(vfs, '/big.bin', 1024 * 1024)));
  for (const b of all) t.true(b.equals(f.big));
  t.is(delta(f, r).objects, f.bigEntry.chunks.length);
  t.is(vfs.stats().openHandles, 0);
  await vfs.close();
  await cleanup(f);
});

test('a read at the end of a big file fetches only the chunks it covers; read-ahead then fetches the rest', async (t) => {
  const f = await fixture();
  const vfs = await f.mount({ readahead: false });
  const r = f.reads();
  const fh = await vfs.open('/big.bin', C.O_RDONLY);
  const buf = Buffer.alloc(100);
  t.is(await vfs.read(fh, buf, 100, 10 * MiB - 100), 100);
  t.true(buf.equals(f.big.subarray(10 * MiB - 100)));
  t.is(await vfs.read(fh, buf, 100, 10 * MiB), 0);
  const last = f.bigEntry.chunks.at(-1)!;
  t.true(last.size >= 100);
  t.deepEqual(delta(f, r), { objects: 1, bytes: last.size + 1 });
  // A read spanning a chunk boundary needs exactly the two chunks around it.
  const boundary = f.bigEntry.chunks[0]!.size;
  const span = Buffer.alloc(64);
  await vfs.read(fh, span, 64, boundary - 32);
  t.true(span.equals(f.big.subarray(boundary - 32, boundary + 32)));
  t.is(delta(f, r).objects, 3);
  await vfs.release(fh);
  await vfs.close();

  const vfs2 = await f.mount({ readahead: true });
  const r2 = f.reads();
  const fh2 = await vfs2.open('/big.bin', C.O_RDONLY);
  t.is(await vfs2.read(fh2, buf, 100, 10 * MiB - 100), 100);
  await vfs2.loader.idle();
  t.is(delta(f, r2).objects, f.bigEntry.chunks.length, 'read-ahead fetched the rest of the file');
  await vfs2.release(fh2);
  await vfs2.close();
  await cleanup(f);
});

test('a missing or corrupt chunk is EIO for that file only, logged with object id and path', async (t) => {
  const f = await fixture(async (repo) => [
    await file(repo, 'broken.bin', bytes(300 * 1024, 9)),
    await file(repo, 'gone.bin', bytes(1000, 10)),
    await file(repo, 'fine.bin', bytes(1000, 11)),
    await dir(repo, 'lostdir', [await file(repo, 'x', Buffer.from('x'))]),
  ]);
  const vfs = await f.mount({ readahead: false });
  const root = await f.repo.getTree((await f.repo.getCommit((await f.repo.head('alice'))!.commit)).root.tree);
  const broken = root.find((e) => e.name === 'broken.bin') as FileEntry;
  const gone = root.find((e) => e.name === 'gone.bin') as FileEntry;
  const stored = f.backend.objects.get(broken.chunks[0]!.id)!;
  stored.data = Buffer.from(stored.data);
  stored.data[10]! ^= 0xff;
  f.backend.objects.delete(gone.chunks[0]!.id);
  const lost = root.find((e) => e.name === 'lostdir') as DirEntry;
  f.backend.objects.delete(lost.tree);
  const derr = await t.throwsAsync(vfs.readdir('/lostdir'));
  t.is((derr as FsError).errno, 'EIO');
  t.true(f.logs.some((l) => l.includes(lost.tree) && l.includes('/lostdir')), f.logs.join('\n'));
  t.is((await vfs.getattr('/lostdir')).mode & C.S_IFMT, C.S_IFDIR, 'the entry itself is still there');

  const eio = async (p: string) => {
    const err = await t.throwsAsync(readAll(vfs, p));
    t.true(err instanceof FsError && err.errno === 'EIO', `${p}: ${err?.message}`);
  };
  await eio('/broken.bin');
  await eio('/gone.bin');
  t.true(f.logs.some((l) => l.includes(broken.chunks[0]!.id) && l.includes('/broken.bin')), f.logs.join('\n'));
  t.true(f.logs.some((l) => l.includes(gone.chunks[0]!.id) && l.includes('/gone.bin')), f.logs.join('\n'));
  // Copy-up of a broken file fails the open, not the mount.
  const err = await t.throwsAsync(vfs.open('/gone.bin', C.O_RDWR));
  t.is((err as FsError).errno, 'EIO');
  // Everything else keeps working, including truncating the broken file away.
  t.true((await readAll(vfs, '/fine.bin')).equals(bytes(1000, 11)));
  t.is((await readAll(vfs, '/small.txt')).toString(), 'small file');
  const fh = await vfs.open('/gone.bin', C.O_WRONLY | C.O_TRUNC);
  await vfs.write(fh, Buffer.from('fixed'), 5, 0);
  await vfs.release(fh);
  t.is((await readAll(vfs, '/gone.bin')).toString(), 'fixed');
  t.true(vfs.stats().fetchErrors >= 2);
  await vfs.close();
  await cleanup(f);
});

test('copy-up preserves content; truncate copies only what it keeps; O_TRUNC fetches nothing', async (t) => {
  const f = await fixture();
  const vfs = await f.mount({ readahead: false });
  let r = f.reads();
  const fh = await vfs.open('/big.bin', C.O_RDWR);
  t.is(delta(f, r).objects, f.bigEntry.chunks.length, 'open for writing copies the file up');
  t.is(vfs.stats().upperFiles, 1);
  await vfs.write(fh, Buffer.from('PATCH'), 5, 5 * MiB);
  const expect = Buffer.from(f.big);
  expect.write('PATCH', 5 * MiB);
  t.is((await vfs.fgetattr(fh)).size, 10 * MiB);
  await vfs.release(fh);
  t.true((await readAll(vfs, '/big.bin')).equals(expect));
  t.is(vfs.overlay.root.children!.get('big.bin')!.changedEpoch, 1);

  // truncate(path) of a committed file to 1 MiB: only the chunks of the first MiB.
  const vfs2 = await f.mount({ readahead: false });
  r = f.reads();
  await vfs2.truncate('/big.bin', MiB);
  const needed = vfs2.overlay.root.children!.get('big.bin')!;
  t.is(needed.kind, 'file');
  let sum = 0;
  let k = 0;
  while (sum < MiB) sum += f.bigEntry.chunks[k++]!.size;
  t.is(delta(f, r).objects, k);
  t.true((await readAll(vfs2, '/big.bin')).equals(f.big.subarray(0, MiB)));
  r = f.reads();
  const th = await vfs2.open('/small.txt', C.O_WRONLY | C.O_TRUNC);
  t.is(delta(f, r).objects, 0, 'O_TRUNC needs no fetch');
  await vfs2.release(th);
  t.is((await vfs2.getattr('/small.txt')).size, 0);
  await vfs.close();
  await vfs2.close();
  await cleanup(f);
});

test('a committed file unlinked or renamed while open keeps serving its content from the base', async (t) => {
  const f = await fixture();
  const vfs = await f.mount({ readahead: false });
  const fh = await vfs.open('/big.bin', C.O_RDONLY);
  await vfs.rename('/big.bin', '/renamed.bin');
  await vfs.unlink('/renamed.bin');
  t.is((await vfs.fgetattr(fh)).nlink, 0);
  const b = Buffer.alloc(4096);
  t.is(await vfs.read(fh, b, 4096, 8 * MiB), 4096);
  t.true(b.equals(f.big.subarray(8 * MiB, 8 * MiB + 4096)));
  await vfs.release(fh);
  t.is(vfs.stats().upperFiles, 0);
  t.false([...vfs.overlay.inodes.values()].some((n) => n.name === 'renamed.bin'), 'forgotten after release');
  await vfs.close();
  await cleanup(f);
});

test('renaming a directory with thousands of entries reads and copies no file content', async (t) => {
  const N = 3000;
  const f = await fixture(async (repo) => {
    const kids: TreeEntry[] = [];
    for (let i = 0; i < N; i++) kids.push(await file(repo, `f${i}`, Buffer.from(`content ${i}`)));
    return [await dir(repo, 'many', kids), await dir(repo, 'other', [])];
  });
  const vfs = await f.mount();
  let r = f.reads();
  await vfs.rename('/many', '/moved');
  t.is(delta(f, r).objects, 0, 'moving an unloaded directory reads nothing');
  t.is((await vfs.readdir('/moved')).length, N);
  t.is(delta(f, r).objects, 1, 'listing it reads its one tree');
  r = f.reads();
  await vfs.rename('/moved', '/other/inside'); // now materialized, with N nodes
  await vfs.rename('/other', '/top');
  t.is(delta(f, r).objects, 1, 'only /other (the target parent) was loaded');
  t.is(vfs.stats().upperFiles, 0);
  t.is((await readAll(vfs, '/top/inside/f1234')).toString(), 'content 1234');
  t.is(delta(f, r).objects, 2);
  await code(t, vfs.getattr('/many'), 'ENOENT');
  await vfs.close();
  await cleanup(f);
});

async function code(t: import('ava').ExecutionContext, p: Promise<unknown>, errno: FsError['errno']) {
  const err = await t.throwsAsync(p);
  t.is((err as FsError).errno, errno);
}

test('snapshot seams: change marks, changedDirs, epochs and the content gate', async (t) => {
  const f = await fixture(async (repo) => [await dir(repo, 'untouched', [await file(repo, 'u', Buffer.from('u'))])]);
  const vfs = await f.mount({ readahead: false });
  const ov = vfs.overlay;
  await vfs.readdir('/untouched');
  t.deepEqual([...ov.changedDirs(0)].map((d) => d.path), [], 'nothing changed yet');

  const fh = await vfs.open('/sub/deeper/b.txt', C.O_RDWR);
  await vfs.write(fh, Buffer.from('x'), 1, 1);
  t.deepEqual([...ov.changedDirs(0)].map((d) => d.path), ['', 'sub', 'sub/deeper']);
  const b = ov.root.children!.get('sub');
  t.is(b?.kind, 'dir');

  const frozen = ov.beginEpoch();
  t.is(frozen, 1);
  t.deepEqual([...ov.changedDirs(frozen)].map((d) => d.path), [], 'nothing since the freeze');
  await vfs.mkdir('/newdir', 0o755);
  t.deepEqual([...ov.changedDirs(frozen)].map((d) => d.path), ['', 'newdir']);
  const untouched = ov.root.children!.get('untouched')!;
  t.is(untouched.changedEpoch, 0);
  t.is(untouched.base?.type, 'dir', 'untouched nodes keep their base entry (and subtree id)');

  // Freeze a file's content: writes that arrive afterwards wait until the gate is released.
  const node = ov.root.children!.get('sub')!;
  t.is(node.kind, 'dir');
  const fileNode = (await ov.children(node as never)).get('deeper');
  t.truthy(fileNode);
  const bnode = [...ov.inodes.values()].find((n) => n.kind === 'file' && n.name === 'b.txt');
  if (!bnode || bnode.kind !== 'file') return t.fail();
  const release = await bnode.gate.acquireExclusive();
  let written = false;
  const w = vfs.write(fh, Buffer.from('y'), 1, 2).then(() => (written = true));
  await new Promise((res) => setImmediate(res));
  t.false(written, 'write waits for the frozen gate');
  t.is(bnode.gate.inflight, 0);
  release();
  await w;
  t.true(written);
  await vfs.release(fh);
  t.is((await readAll(vfs, '/sub/deeper/b.txt')).toString(), 'Bxy');
  await vfs.close();
  await cleanup(f);
});

test('concurrent writes and appends to one file all land', async (t) => {
  const f = await fixture();
  const vfs = await f.mount({ readahead: false });
  const fh = await vfs.open('/small.txt', C.O_RDWR);
  const expect = Buffer.alloc(64 * 1000);
  Buffer.from('small file').copy(expect);
  await Promise.all(
    Array.from({ length: 64 }, (_, i) => {
      const b = Buffer.alloc(1000, i + 1);
      b.copy(expect, i * 1000);
      return vfs.write(fh, b, 1000, i * 1000);
    }),
  );
  await vfs.release(fh);
  t.true((await readAll(vfs, '/small.txt')).equals(expect));

  const ah = await vfs.create('/log', 0o644, C.O_WRONLY | C.O_APPEND);
  await Promise.all(Array.from({ length: 50 }, (_, i) => vfs.write(ah, Buffer.from(`line ${String(i).padStart(2, '0')}\n`), 8, 0)));
  await vfs.release(ah);
  const lines = (await readAll(vfs, '/log')).toString().trim().split('\n').sort();
  t.deepEqual(lines, Array.from({ length: 50 }, (_, i) => `line ${String(i).padStart(2, '0')}`));
  await vfs.close();
  await cleanup(f);
});

test('a user without a profile gets an empty home owned by the mount user', async (t) => {
  const clock = new ManualClock();
  const repo = await Repository.init(new MemoryBackend(clock));
  const cacheDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-lazy-'));
  const vfs = await OverlayVfs.open({ remote: repo, user: 'newbie', cacheDir, clock, uid: 1234, gid: 99 });
  const st = await vfs.getattr('/');
  t.is(st.uid, 1234);
  t.is(st.gid, 99);
  t.is(st.mode & 0o7777, 0o700);
  t.deepEqual(await vfs.readdir('/'), []);
  t.is(vfs.baseCommitId, null);
  await vfs.close();
  await fsp.rm(cacheDir, { recursive: true, force: true });
});
