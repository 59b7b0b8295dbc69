/**
 * The local store's object packs (src/base/packs.ts): append, read back, reopen from the index,
 * reopen after a crash (no index, a torn or garbage tail, garbage index entries), a failed
 * append (full disk) retiring its pack, and LocalCache dropping a damaged packed object.
 */
import test from 'ava';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { randomBytes } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { PACK_MAX_OBJECT, PACK_TARGET_SIZE, PackStore } from '../../src/base/packs.js';
import { LocalCache } from '../../src/base/local-cache.js';
import { blockingIoMode, defaultIoMode } from '../../src/core/io-mode.js';
import { sha256 } from '../../src/core/hash.js';
import { TYPE_CHUNK } from '../../src/repository/objects.js';

const run = promisify(execFile);

async function tempDir(t: import('ava').ExecutionContext): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-packs-'));
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A stored object: type byte + payload, and its id. */
function object(size: number): { id: string; bytes: Buffer } {
  const bytes = Buffer.concat([Buffer.of(TYPE_CHUNK), randomBytes(size - 1)]);
  return { id: sha256(bytes), bytes };
}

/** Buffer equality (ava's deepEqual walks a multi-MiB buffer for seconds). */
function same(t: import('ava').ExecutionContext, actual: Buffer | null, expected: Buffer, message?: string): void {
  t.true(actual !== null && actual.equals(expected), message ?? `bytes differ (${actual?.length ?? 'null'} vs ${expected.length})`);
}

const packFiles = async (dir: string, ext: string) => (await fsp.readdir(dir)).filter((n) => n.endsWith(ext)).map((n) => path.join(dir, n));

for (const [mode, io] of [['synchronous', blockingIoMode], ['thread-pool', () => defaultIoMode(false)]] as const) {
  test(`objects appended (${mode} I/O) read back, in place and after a reopen from the index`, async (t) => {
    const dir = await tempDir(t);
    const s = PackStore.open(dir, io());
    const objs = [object(1), object(4096), object(PACK_MAX_OBJECT), object(300)];
    for (const o of objs) await s.append(o.id, [o.bytes.subarray(0, 1), o.bytes.subarray(1)]);
    await s.append(objs[1]!.id, [objs[1]!.bytes]); // again: a no-op
    t.is(s.objects, 4);
    for (const o of objs) {
      same(t, await s.read(o.id), o.bytes);
      const at = s.locate(o.id)!;
      const fd = fs.openSync(at.path, 'r');
      const b = Buffer.alloc(at.size);
      fs.readSync(fd, b, 0, at.size, at.offset);
      fs.closeSync(fd);
      same(t, b, o.bytes, 'locate() points at the stored bytes');
    }
    t.is(await s.read(object(10).id), null);
    s.close();
    const idx = await packFiles(dir, '.idx');
    t.is(idx.length, 1);
    t.is((await fsp.stat(idx[0]!)).size, 4 * 44, 'one index entry per object');
    const again = PackStore.open(dir, io());
    t.is(again.objects, 4);
    for (const o of objs) same(t, await again.read(o.id), o.bytes);
    // The reopened store appends to a pack of its own.
    const more = object(100);
    await again.append(more.id, [more.bytes]);
    again.close();
    t.is((await packFiles(dir, '.pack')).length, 2);
    same(t, await PackStore.open(dir, io()).read(more.id), more.bytes);
  });
}

test('appends under way together (thread-pool I/O): every one is found in place and after a reopen', async (t) => {
  const dir = await tempDir(t);
  const s = PackStore.open(dir, defaultIoMode(false));
  const objs = Array.from({ length: 60 }, (_, i) => object(1000 + i * 997));
  await Promise.all(objs.map((o) => s.append(o.id, [o.bytes])));
  for (const o of objs) same(t, await s.read(o.id), o.bytes);
  await s.sync();
  s.close();
  const again = PackStore.open(dir, blockingIoMode());
  t.is(again.objects, objs.length);
  for (const o of objs) same(t, await again.read(o.id), o.bytes);
  again.close();
});

test('objects a killed process appended are synced by the next process before it relies on them', async (t) => {
  const dir = await tempDir(t);
  const s = PackStore.open(dir, blockingIoMode());
  const o = object(4000);
  await s.append(o.id, [o.bytes]); // then SIGKILL: no sync, no index
  const next = PackStore.open(dir, blockingIoMode());
  t.true(next.has(o.id), 'found by reading the pack');
  await next.sync(); // the new process's first barrier: the old pack and the index of what was found
  const [idx] = await packFiles(dir, '.idx');
  t.is((await fsp.stat(idx!)).size, 44, 'the found record was indexed at that sync');
  next.close();
});

test('an object too big for a pack is refused (the caller stores it as a file)', async (t) => {
  const s = PackStore.open(await tempDir(t), blockingIoMode());
  const o = object(PACK_MAX_OBJECT + 1);
  await t.throwsAsync(s.append(o.id, [o.bytes]), { message: /does not go into a pack/ });
});

test('after a crash (no index written): the pack is read up to its torn or garbage tail', async (t) => {
  const dir = await tempDir(t);
  const s = PackStore.open(dir, blockingIoMode());
  const objs = [object(5000), object(7000), object(9000)];
  for (const o of objs) await s.append(o.id, [o.bytes]);
  // No close, no flushIndex: what SIGKILL leaves. Then the last record is cut short.
  const [pack] = await packFiles(dir, '.pack');
  t.deepEqual(await packFiles(dir, '.idx'), []);
  const full = (await fsp.stat(pack!)).size;
  await fsp.truncate(pack!, full - 100);
  const a = PackStore.open(dir, blockingIoMode());
  t.is(a.objects, 2, 'the torn record is absent');
  same(t, await a.read(objs[0]!.id), objs[0]!.bytes);
  same(t, await a.read(objs[1]!.id), objs[1]!.bytes);
  t.false(a.has(objs[2]!.id));
  await a.sync();
  t.is((await packFiles(dir, '.idx')).length, 1, 'the records found were indexed at the first sync');
  a.close();
  // Zeros where unsynced data was (delayed allocation): the torn record now looks whole but
  // holds zeros (LocalCache's verification on first use rejects it); no record is read from zeros.
  await fsp.appendFile(pack!, Buffer.alloc(20000));
  const b = PackStore.open(dir, blockingIoMode());
  t.is(b.objects, 3);
  t.not(sha256((await b.read(objs[2]!.id))!), objs[2]!.id);
  b.close();
});

test('index entries past the pack, zeroed or with a wrong checksum are skipped; records after the last indexed one are still found', async (t) => {
  const dir = await tempDir(t);
  const s = PackStore.open(dir, blockingIoMode());
  const first = [object(100), object(200)];
  for (const o of first) await s.append(o.id, [o.bytes]);
  await s.sync(); // the barrier of a snapshot
  const later = object(300);
  await s.append(later.id, [later.bytes]); // appended after it, then a crash
  const [idx] = await packFiles(dir, '.idx');
  const bogus = Buffer.alloc(44);
  bogus.writeUInt32BE(1 << 30, 32); // an offset far past the end, with a matching checksum
  bogus.writeUInt32BE(10, 36);
  bogus.writeUInt32BE(crc32(bogus.subarray(0, 40)), 40);
  const badSum = Buffer.from(bogus);
  badSum.writeUInt32BE(first[0]!.bytes.length, 36); // plausible, but the checksum no longer matches
  badSum.writeUInt32BE(8, 32);
  await fsp.appendFile(idx!, Buffer.concat([bogus, badSum, Buffer.alloc(44), Buffer.alloc(17)])); // + zeros + a torn entry
  const a = PackStore.open(dir, blockingIoMode());
  t.is(a.objects, 3);
  for (const o of [...first, later]) same(t, await a.read(o.id), o.bytes);
  a.close();
});

test('a record whose index entry was lost while a later one survived is still found (the pack is read from the first gap)', async (t) => {
  const dir = await tempDir(t);
  const s = PackStore.open(dir, blockingIoMode());
  const a = object(3000);
  const b = object(4000);
  await s.append(a.id, [a.bytes]);
  await s.append(b.id, [b.bytes]);
  await s.sync();
  s.close();
  const [idx] = await packFiles(dir, '.idx');
  await fsp.writeFile(idx!, (await fsp.readFile(idx!)).subarray(44, 88)); // only b's entry
  const again = PackStore.open(dir, blockingIoMode());
  same(t, await again.read(a.id), a.bytes);
  same(t, await again.read(b.id), b.bytes);
  again.close();
});

test('a pack that reached the target size is left for a new one', async (t) => {
  const dir = await tempDir(t);
  const s = PackStore.open(dir, blockingIoMode());
  const objs: { id: string; bytes: Buffer }[] = [];
  // 64 MiB in 1 MiB objects (the largest chunk of the default chunker): the pack is left right
  // after the object that reaches PACK_TARGET_SIZE, and the next one starts a new pack.
  const per = 1024 * 1024 + 1;
  const n = Math.ceil(PACK_TARGET_SIZE / (per + 40)) + 3;
  for (let i = 0; i < n; i++) objs.push(object(per));
  for (const o of objs) await s.append(o.id, [o.bytes]);
  t.is((await packFiles(dir, '.pack')).length, 2);
  s.close();
  const a = PackStore.open(dir, blockingIoMode());
  t.is(a.objects, objs.length);
  for (const o of [objs[0]!, objs[n - 4]!, objs[n - 3]!, objs[n - 1]!]) same(t, await a.read(o.id), o.bytes);
  a.close();
});

test('sync: fdatasync of the packs written since the last sync; an append after it is due at the next one', async (t) => {
  const dir = await tempDir(t);
  const s = PackStore.open(dir, defaultIoMode(false));
  const a = object(5000);
  await s.append(a.id, [a.bytes]);
  await s.sync();
  t.is((await packFiles(dir, '.idx')).length, 1, 'the index is written before the data sync');
  const b = object(6000);
  await s.append(b.id, [b.bytes]);
  await s.sync();
  await s.sync(); // nothing due: a no-op
  s.close();
  const again = PackStore.open(dir, blockingIoMode());
  same(t, await again.read(a.id), a.bytes);
  same(t, await again.read(b.id), b.bytes);
  again.close();
});

test('a full disk: the failed append is a NO_SPACE error, its pack is left, later appends and reads work', async (t) => {
  if (process.getuid?.() !== 0) {
    t.fail('needs root (a small tmpfs): CI runs as root');
    return;
  }
  const dir = await tempDir(t);
  await run('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir]);
  t.teardown(() => run('umount', ['-l', dir]).catch(() => {}));
  const s = PackStore.open(path.join(dir, 'packs'), blockingIoMode());
  const kept: { id: string; bytes: Buffer }[] = [];
  let err: unknown = null;
  for (let n = 0; n < 40 && !err; n++) {
    const o = object(60_000);
    try {
      await s.append(o.id, [o.bytes]);
      kept.push(o);
    } catch (e) {
      err = e;
    }
  }
  t.is((err as { code?: string } | null)?.code, 'NO_SPACE');
  t.true(kept.length > 5);
  for (const o of kept) same(t, await s.read(o.id), o.bytes);
  // Room again (a bigger tmpfs): the next append goes to a new pack, not after the torn record.
  await run('mount', ['-o', 'remount,size=4m', dir]);
  const after = object(1000);
  await s.append(after.id, [after.bytes]);
  t.is((await packFiles(path.join(dir, 'packs'), '.pack')).length, 2, 'a new pack after the failure');
  s.close();
  const a = PackStore.open(path.join(dir, 'packs'), blockingIoMode());
  same(t, await a.read(after.id), after.bytes);
  for (const o of kept) same(t, await a.read(o.id), o.bytes, 'records before the torn one survive the reopen');
  a.close();
});

test('LocalCache: objects are packed, huge ones are files; a damaged packed object is dropped, not served', async (t) => {
  const dir = await tempDir(t);
  const cache = await LocalCache.open(dir);
  const small = await cache.repo.putChunk(randomBytes(3000));
  const chunk = await cache.repo.putChunk(randomBytes(1024 * 1024));
  const big = await cache.repo.putChunk(randomBytes(PACK_MAX_OBJECT + 10));
  t.true(small.written && chunk.written && big.written);
  t.is(cache.locate(small.id).offset > 0, true, 'a small object is in a pack');
  t.is(cache.locate(chunk.id).offset > 0, true, 'so is a chunk of the largest default size');
  t.is(cache.locate(big.id).offset, 0, 'an object too big for a pack is a file');
  t.true(fs.existsSync(cache.locate(big.id).path));
  t.true(await cache.has(small.id, 3000));
  await cache.sync();
  cache.close();
  // Damage the packed object's bytes on disk: a fresh process finds it bad and drops it.
  const again = await LocalCache.open(dir);
  const at = again.locate(small.id);
  const fd = fs.openSync(at.path, 'r+');
  fs.writeSync(fd, Buffer.from('rot'), 0, 3, at.offset + 10);
  fs.closeSync(fd);
  t.false(await again.has(small.id, 3000));
  t.is(await again.get(small.id, TYPE_CHUNK), null);
  t.is(again.locate(small.id).offset, 0, 'forgotten: no longer located in a pack');
  t.true(await again.has(big.id, PACK_MAX_OBJECT + 10));
  again.close();
});
