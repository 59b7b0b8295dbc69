/**
 * Fan-out directories of a PosixBackend (objects/00 ... objects/ff): a shared repository makes
 * all 256 at init; the desktop's local cache (eagerFanOut: false) makes none, and every path
 * that puts an object name into one (put, gc's restore) creates it when missing.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { sha256 } from '../../src/core/hash.js';
import { PACK_MAX_OBJECT } from '../../src/base/packs.js';
import { LocalCache } from '../../src/base/local-cache.js';
import { PosixBackend } from '../../src/repository/posix.js';
import { Repository } from '../../src/repository/repository.js';
import { TYPE_CHUNK } from '../../src/repository/objects.js';
import { tempDir } from '../helpers/repo-fs.js';

const fans = (repo: string) => fsp.readdir(path.join(repo, 'objects'));

function object(text: string): { id: string; bytes: Buffer } {
  const bytes = Buffer.concat([Buffer.of(TYPE_CHUNK), Buffer.from(text)]);
  return { id: sha256(bytes), bytes };
}

test('a shared repository (the default) has all 256 fan-out directories from init on', async (t) => {
  const dir = path.join(await tempDir(t, 'roamfs-fanout'), 'repo');
  await Repository.init(new PosixBackend(dir));
  const names = await fans(dir);
  t.is(names.length, 256);
  t.true(names.includes('00') && names.includes('ff'));
});

for (const syncMode of ['object', 'barrier'] as const) {
  test(`eagerFanOut false (${syncMode}): none at init; a put makes the one it needs, later puts share it`, async (t) => {
    const dir = path.join(await tempDir(t, 'roamfs-fanout'), 'repo');
    const b = new PosixBackend(dir, { eagerFanOut: false, syncMode });
    const repo = await Repository.init(b);
    t.deepEqual(await fans(dir), []);
    const first = object('first');
    t.true(await b.putObject(first.id, first.bytes));
    t.deepEqual(await fans(dir), [first.id.slice(0, 2)]);
    t.deepEqual(await b.getObject(first.id), first.bytes);
    t.false(await b.putObject(first.id, first.bytes), 'already there');
    // Another object with the same first byte lands in the same directory.
    let twin = object('twin 0');
    for (let i = 1; twin.id.slice(0, 2) !== first.id.slice(0, 2); i++) twin = object(`twin ${i}`);
    t.true(await b.putObject(twin.id, twin.bytes));
    t.deepEqual(await fans(dir), [first.id.slice(0, 2)]);
    const listed = [];
    for await (const o of b.listObjects()) listed.push(o.id);
    t.deepEqual(listed.sort(), [first.id, twin.id].sort());
    t.deepEqual(await repo.getObject(twin.id, TYPE_CHUNK), Buffer.from(twin.bytes.subarray(1)));
  });
}

test("gc's restore puts an object back into a fan-out directory that is gone", async (t) => {
  const dir = path.join(await tempDir(t, 'roamfs-fanout'), 'repo');
  const b = new PosixBackend(dir, { eagerFanOut: false });
  await Repository.init(b);
  const o = object('restored');
  await b.putObject(o.id, o.bytes);
  t.truthy(await b.trashObject(o.id, 'batch1'));
  await fsp.rmdir(path.join(dir, 'objects', o.id.slice(0, 2)));
  await b.restoreObject(o.id, 'batch1');
  t.deepEqual(await b.getObject(o.id), o.bytes);
  await t.notThrowsAsync(b.restoreObject(o.id, 'batch1'), 'restoring again is a no-op');
  t.deepEqual(await b.getObject(o.id), o.bytes);
});

test('the local cache starts without fan-out directories and stores, verifies and reopens', async (t) => {
  const cacheDir = await tempDir(t, 'roamfs-fanout-cache');
  const cache = await LocalCache.open(cacheDir);
  t.deepEqual(await fans(cache.dir), []);
  // Too big for a pack (src/base/packs.ts): an object file of its own.
  const payload = Buffer.alloc(PACK_MAX_OBJECT, 'chunk payload ');
  const id = sha256(Buffer.of(TYPE_CHUNK), payload);
  const small = Buffer.from('small chunk payload');
  const smallId = sha256(Buffer.of(TYPE_CHUNK), small);
  t.false(await cache.has(id));
  await cache.putVerified(id, TYPE_CHUNK, payload);
  await cache.putVerified(smallId, TYPE_CHUNK, small);
  t.deepEqual(await fans(cache.dir), [id.slice(0, 2)], 'only the file object made a fan-out directory');
  await cache.sync();
  const again = await LocalCache.open(cacheDir);
  t.true(await again.has(id, payload.length));
  t.true((await again.get(id, TYPE_CHUNK))?.equals(payload), 'the big object reads back');
  t.deepEqual(await again.get(smallId, TYPE_CHUNK), small);
});
