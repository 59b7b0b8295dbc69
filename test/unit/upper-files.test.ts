/**
 * Written files off the operations' path (src/overlay/upper.ts, content.ts): small files in
 * memory, files on disk deleted in the background, synchronous I/O with its back-off, and
 * fsync (no disk I/O; the Vfs tells the profile, see fsync-snapshot.test.ts).
 */
import test, { type ExecutionContext } from 'ava';
import { constants as C } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { Exclusions } from '../../src/core/exclusions.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { Repository } from '../../src/repository/repository.js';
import { UpperStore } from '../../src/overlay/upper.js';
import { IoMode } from '../../src/core/io-mode.js';
import { OverlayVfs, type OverlayVfsOptions } from '../../src/vfs/overlay-vfs.js';

const KiB = 1024;

async function tmpdir(t: ExecutionContext, prefix: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** An empty profile mounted directly (no FUSE), with its cache in a temp directory. */
async function mount(t: ExecutionContext, extra: Partial<OverlayVfsOptions> = {}) {
  const clock = new ManualClock();
  const repo = await Repository.init(new MemoryBackend(clock));
  const cacheDir = await tmpdir(t, 'roamfs-upper-');
  const vfs = await OverlayVfs.open({ remote: repo, user: 'nobody-yet', cacheDir, clock, uid: 1000, gid: 1000, ...extra });
  t.teardown(() => vfs.close());
  const upperDir = path.join(cacheDir, 'upper');
  /** Files in CACHE/upper holding content, once the background work is done (not the spares). */
  const onDisk = async () => {
    await vfs.settled();
    return (await fsp.readdir(upperDir)).length - vfs.content.upper.spareCount;
  };
  return { vfs, onDisk };
}

async function put(vfs: OverlayVfs, p: string, data: Buffer): Promise<void> {
  const fh = await vfs.create(p, 0o644, C.O_WRONLY | C.O_CREAT | C.O_TRUNC);
  for (let off = 0; off < data.length; off += 64 * KiB) {
    const piece = data.subarray(off, off + 64 * KiB);
    await vfs.write(fh, piece, piece.length, off);
  }
  await vfs.release(fh);
}

async function get(vfs: OverlayVfs, p: string): Promise<Buffer> {
  const size = (await vfs.getattr(p)).size;
  const fh = await vfs.open(p, C.O_RDONLY);
  const buf = Buffer.alloc(size);
  for (let got = 0; got < size; ) {
    const n = await vfs.read(fh, buf.subarray(got), size - got, got);
    if (n === 0) break;
    got += n;
  }
  await vfs.release(fh);
  return buf;
}

function pattern(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 12)) & 0xff;
  return b;
}

test('small files live in memory: create, write, read, rename, unlink touch no file in CACHE/upper', async (t) => {
  const { vfs, onDisk } = await mount(t);
  await vfs.mkdir('/d', 0o755);
  for (let i = 0; i < 50; i++) await put(vfs, `/d/f${i}`, pattern(4 * KiB, i));
  t.is(vfs.stats().upperFiles, 50);
  t.is(await onDisk(), 0);
  for (let i = 0; i < 50; i++) t.true((await get(vfs, `/d/f${i}`)).equals(pattern(4 * KiB, i)), `f${i}`);
  await vfs.rename('/d/f1', '/d/f2'); // over another file in memory
  t.true((await get(vfs, '/d/f2')).equals(pattern(4 * KiB, 1)));
  for (let i = 0; i < 50; i++) if (i !== 1) await vfs.unlink(`/d/f${i}`);
  t.is(vfs.stats().upperFiles, 0);
  t.is(vfs.content.upper.memBytes, 0, 'the memory went back to the budget');
  t.is(await onDisk(), 0);
});

test('a file that outgrows the per-file limit moves to disk with its content; its removal happens in the background', async (t) => {
  const { vfs, onDisk } = await mount(t, { upperFiles: { memFileMax: 64 * KiB } });
  const data = pattern(200 * KiB, 3);
  const fh = await vfs.create('/big', 0o644, C.O_RDWR | C.O_CREAT);
  await vfs.write(fh, data.subarray(0, 40 * KiB), 40 * KiB, 0);
  t.is(await onDisk(), 0, 'still in memory');
  await vfs.write(fh, data.subarray(40 * KiB), data.length - 40 * KiB, 40 * KiB);
  t.is(await onDisk(), 1, 'on disk now');
  t.is(vfs.content.upper.memBytes, 0);
  const back = Buffer.alloc(data.length);
  t.is(await vfs.read(fh, back, back.length, 0), data.length);
  t.true(back.equals(data));
  await vfs.release(fh);
  // Sparse growth in memory reads as zeros, also over bytes a truncate cut off before.
  await put(vfs, '/small', pattern(8 * KiB, 5));
  await vfs.truncate('/small', 100);
  const h2 = await vfs.open('/small', C.O_WRONLY);
  await vfs.write(h2, Buffer.from('end'), 3, 6 * KiB);
  await vfs.release(h2);
  const expect = Buffer.alloc(6 * KiB + 3);
  pattern(100, 5).copy(expect);
  expect.write('end', 6 * KiB);
  t.true((await get(vfs, '/small')).equals(expect));
  await vfs.unlink('/big');
  await vfs.unlink('/small');
  t.is(await onDisk(), 0);
  t.is(vfs.stats().upperFiles, 0);
});

test('with the memory budget spent, new files go to disk; an open-unlinked file on disk works until its last close', async (t) => {
  const { vfs, onDisk } = await mount(t, { upperFiles: { memBudget: 16 * KiB } });
  await put(vfs, '/a', pattern(8 * KiB, 1));
  await put(vfs, '/b', pattern(8 * KiB, 2));
  t.is(await onDisk(), 0, 'two files fill the budget');
  await put(vfs, '/c', pattern(8 * KiB, 3));
  t.is(await onDisk(), 1, 'the third is on disk');
  const fh = await vfs.open('/c', C.O_RDWR);
  await vfs.unlink('/c');
  await vfs.write(fh, Buffer.from('still here'), 10, 8 * KiB);
  const got = Buffer.alloc(10);
  t.is(await vfs.read(fh, got, 10, 8 * KiB), 10);
  t.is(got.toString(), 'still here');
  t.is((await vfs.fgetattr(fh)).nlink, 0);
  t.is(await onDisk(), 1, 'kept while open');
  await vfs.release(fh);
  t.is(await onDisk(), 0, 'deleted after the last close');
  t.true((await get(vfs, '/a')).equals(pattern(8 * KiB, 1)));
});

test('random writes, appends and truncates of several files against a model, across memory, budget and disk', async (t) => {
  const { vfs, onDisk } = await mount(t, { upperFiles: { memFileMax: 48 * KiB, memBudget: 96 * KiB } });
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const names = ['/w', '/x', '/y', '/z'];
  const model = new Map<string, Buffer>();
  const handles = new Map<string, { fh: number; append: boolean }>();
  for (const n of names) {
    const append = n === '/z';
    handles.set(n, { fh: await vfs.create(n, 0o644, C.O_RDWR | C.O_CREAT | (append ? C.O_APPEND : 0)), append });
    model.set(n, Buffer.alloc(0));
  }
  for (let step = 0; step < 600; step++) {
    const n = names[Math.floor(rnd() * names.length)]!;
    const { fh, append } = handles.get(n)!;
    const m = model.get(n)!;
    const k = rnd();
    if (k < 0.6) {
      const len = 1 + Math.floor(rnd() * (rnd() < 0.1 ? 40 * KiB : 3 * KiB));
      const pos = append ? m.length : Math.floor(rnd() * (m.length + 8 * KiB));
      const data = Buffer.alloc(len, step & 0xff);
      data[0] = 0xaa;
      t.is(await vfs.write(fh, data, len, append ? 12345 : pos), len);
      const next = pos + len > m.length ? Buffer.concat([m, Buffer.alloc(pos + len - m.length)]) : m;
      data.copy(next, pos);
      model.set(n, next);
    } else if (k < 0.75) {
      const size = Math.floor(rnd() * 70 * KiB);
      if (rnd() < 0.5) await vfs.ftruncate(fh, size);
      else await vfs.truncate(n, size);
      model.set(n, size <= m.length ? Buffer.from(m.subarray(0, size)) : Buffer.concat([m, Buffer.alloc(size - m.length)]));
    } else {
      const pos = Math.floor(rnd() * (m.length + 10));
      const len = 1 + Math.floor(rnd() * 20 * KiB);
      const buf = Buffer.alloc(len, 0x55);
      const got = await vfs.read(fh, buf, len, pos);
      t.true(buf.subarray(0, got).equals(m.subarray(pos, pos + len)), `${n}: read ${len} at ${pos} (step ${step})`);
    }
    t.is((await vfs.fgetattr(fh)).size, model.get(n)!.length);
  }
  for (const n of names) {
    await vfs.release(handles.get(n)!.fh);
    t.true((await get(vfs, n)).equals(model.get(n)!), n);
  }
  t.true((await onDisk()) > 0, 'some files went to disk');
  for (const n of names) await vfs.unlink(n);
  t.is(await onDisk(), 0);
  t.is(vfs.content.upper.memBytes, 0);
});

test('fsync does no I/O and tells the profile, for files that snapshots take', async (t) => {
  const { vfs } = await mount(t, { exclusions: new Exclusions(['.cache/**']) });
  const calls: string[] = [];
  vfs.onFsync = () => calls.push('fsync');
  await vfs.mkdir('/.cache', 0o755);
  const kept = await vfs.create('/doc', 0o644, C.O_WRONLY | C.O_CREAT);
  const excluded = await vfs.create('/.cache/tmp', 0o644, C.O_WRONLY | C.O_CREAT);
  await vfs.write(kept, Buffer.from('x'), 1, 0);
  await vfs.fsync(kept, false);
  await vfs.fsync(kept, true);
  await vfs.fsync(excluded, false);
  await vfs.unlink('/doc');
  await vfs.fsync(kept, false);
  t.deepEqual(calls, ['fsync', 'fsync']);
  await vfs.release(kept);
  await vfs.release(excluded);
  await t.throwsAsync(vfs.fsync(kept, false), { message: /no open file handle/ });
});

test('IoMode: after a slow synchronous call, the thread pool for the back-off time', (t) => {
  let now = 0;
  const io = new IoMode({ sync: true, slowMs: 2, backoffMs: 1000, now: () => now });
  t.true(io.sync);
  t.is(io.time(() => ((now += 1), 'fast')), 'fast');
  t.true(io.sync);
  io.time(() => (now += 5));
  t.false(io.sync);
  now += 999;
  t.false(io.sync);
  now += 1;
  t.true(io.sync);
  t.throws(() => io.time(() => ((now += 3), (() => { throw new Error('boom'); })())), { message: 'boom' });
  t.false(io.sync, 'timed also when it throws');
  t.false(new IoMode({ sync: false, slowMs: 2, backoffMs: 1000, now: () => now }).sync);
});

test('the background queue is bounded: past its limit, later() waits for room; failures are logged; idle() waits for all', async (t) => {
  const dir = await tmpdir(t, 'roamfs-upper-queue-');
  const lines: string[] = [];
  const store = await UpperStore.open(dir, { backgroundLimit: 2, log: (l) => lines.push(l) });
  const gates: Array<() => void> = [];
  const task = () => new Promise<void>((r) => gates.push(r));
  await store.later('one', task);
  await store.later('two', task);
  let third = false;
  const queued = store.later('three', async () => {
    throw new Error('disk on fire');
  }).then(() => (third = true));
  await new Promise((r) => setImmediate(r));
  t.false(third, 'waits while two tasks are queued or running');
  t.is(store.pending, 2);
  gates.shift()!();
  await queued;
  t.true(third);
  let idle = false;
  const drained = store.idle().then(() => (idle = true));
  await new Promise((r) => setImmediate(r));
  t.false(idle);
  gates.shift()!();
  await drained;
  t.deepEqual(lines, ['upper: three: disk on fire']);
  await store.close();
});

test('readAllSync: a file on disk, open or closed, read whole at once (zeros past a shorter file); null while synchronous I/O is off', async (t) => {
  const dir = await tmpdir(t, 'roamfs-upper-readall-');
  const store = await UpperStore.open(dir, {});
  t.teardown(() => store.close());
  const f = await store.create();
  const h = await f.handle();
  await h.write(Buffer.from('hello, disk'), 0, 11, 0);
  f.size = 11;
  t.is(f.readAllSync()?.toString(), 'hello, disk', 'through the open descriptor');
  await f.close();
  f.size = 14; // recorded size past the end of the file on disk: zeros, as read() gives
  t.deepEqual(f.readAllSync(), Buffer.concat([Buffer.from('hello, disk'), Buffer.alloc(3)]), 'by path, closed');
  const off = await UpperStore.open(await tmpdir(t, 'roamfs-upper-readall-off-'), { syncIo: false });
  t.teardown(() => off.close());
  const g = await off.create();
  await (await g.handle()).write(Buffer.from('x'), 0, 1, 0);
  g.size = 1;
  t.is(g.readAllSync(), null);
});
