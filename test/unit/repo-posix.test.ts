/**
 * PosixBackend specifics: batched durability ("barrier" mode: objects written without fsync,
 * one syncfs(2) before each ref). An object this process only *touched* may have been written,
 * unsynced, by another process (or by one that was killed): a ref naming it must still be
 * preceded by a barrier.
 */
import test from 'ava';
import fsPromises from 'node:fs/promises';
import * as fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import * as path from 'node:path';
import { sha256 } from '../../src/core/hash.js';
import { PosixBackend } from '../../src/repository/posix.js';
import { IoMode } from '../../src/core/io-mode.js';
import { Repository } from '../../src/repository/repository.js';
import { buildCommit, commitOnTop } from '../helpers/repo-build.js';
import { tempDir } from '../helpers/repo-fs.js';

// The barrier opens the repository directory and syncfs(2)s it; nothing else opens that exact
// directory after init. Count those opens (the native addon's functions are not replaceable).
let watched = '';
let syncs = 0;
/** When set, a barrier's open of the watched directory waits for it (a sync that takes long). */
let hold: Promise<void> | null = null;
const realOpen = fsPromises.open;
(fsPromises as { open: unknown }).open = async (p: Parameters<typeof realOpen>[0], ...rest: unknown[]) => {
  if (watched && String(p) === watched) {
    syncs++;
    if (hold) await hold;
  }
  return (realOpen as (...a: unknown[]) => ReturnType<typeof realOpen>)(p, ...rest);
};
syncBuiltinESMExports();

test.serial('barrier mode: a new object is synced by the next barrier, once', async (t) => {
  const dir = path.join(await tempDir(t, 'roamfs-barrier'), 'repo');
  const b = new PosixBackend(dir, { syncMode: 'barrier' });
  await Repository.init(b);
  watched = b.location;
  const data = Buffer.from('\x01payload');
  syncs = 0;
  t.true(await b.putObject(sha256(data), data));
  await b.barrier();
  t.is(syncs, 1);
  await b.barrier();
  t.is(syncs, 1, 'nothing new: no second sync');
});

test.serial('barrier mode: a barrier called while another one syncs waits for it, and syncs again for objects put after it began', async (t) => {
  const dir = path.join(await tempDir(t, 'roamfs-barrier'), 'repo');
  const b = new PosixBackend(dir, { syncMode: 'barrier' });
  await Repository.init(b);
  watched = b.location;
  let release = () => {};
  hold = new Promise<void>((r) => (release = r));
  t.teardown(() => {
    hold = null;
    release();
  });
  const one = Buffer.from('\x01one');
  syncs = 0;
  await b.putObject(sha256(one), one);
  const first = b.barrier();
  const done: string[] = [];
  void first.then(() => done.push('first'));
  // A second caller (a commit's barrier racing the logout snapshot's): its objects may be among
  // those the first sync covers, so it must not return before that sync has finished.
  const second = b.barrier().then(() => done.push('second'));
  await new Promise((r) => setTimeout(r, 50));
  t.deepEqual(done, [], 'nobody returns while the sync is in flight');
  const two = Buffer.from('\x01two');
  await b.putObject(sha256(two), two); // put after the first sync began
  const third = b.barrier().then(() => done.push('third'));
  hold = null;
  release();
  await Promise.all([first, second, third]);
  t.is(done[0], 'first');
  t.is(syncs, 2, 'one more sync, for the object put while the first ran');
  await b.barrier();
  t.is(syncs, 2);
});

test.serial('barrier mode: touching an object another process wrote (unsynced) still syncs before the ref', async (t) => {
  const dir = path.join(await tempDir(t, 'roamfs-barrier'), 'repo');
  const writerA = await Repository.init(new PosixBackend(dir, { syncMode: 'barrier' }));
  watched = writerA.backend.location;
  // Process A stores the content and dies (or is still running) before its barrier and ref.
  const content = { f: 'written by A, never synced by A' };
  const a = (await buildCommit(writerA, content)).objects;
  // Process B stores the same content: every object exists, B only touches them.
  const bBackend = new PosixBackend(dir, { syncMode: 'barrier' });
  const writerB = await Repository.open(bBackend);
  syncs = 0;
  const { built } = await commitOnTop(writerB, 'b', content);
  t.is(writerB.stats.objectsWritten, 0, 'B wrote nothing new (the commit itself is the same bytes too)');
  t.true([...built.objects].every((id) => a.has(id)));
  t.true(syncs >= 1, 'B issued a barrier before creating its ref');
  // ...and the barrier really is a sync of that directory's file system: A's sync alone counts too.
  syncs = 0;
  await writerA.backend.barrier();
  t.is(syncs, 1, 'A still has unsynced objects of its own');
});

test.serial('object mode: no barrier syncs at all (each object is fsynced on its own)', async (t) => {
  const dir = path.join(await tempDir(t, 'roamfs-objmode'), 'repo');
  const repo = await Repository.init(new PosixBackend(dir, { syncMode: 'object' }));
  watched = repo.backend.location;
  syncs = 0;
  await commitOnTop(repo, 'a', { f: 'x' });
  await commitOnTop(await Repository.open(new PosixBackend(dir, { syncMode: 'object' })), 'b', { f: 'x' });
  t.is(syncs, 0);
  t.truthy(await fsp.stat(path.join(dir, 'users', 'b', 'refs')));
});

for (const sync of [true, false]) {
  test.serial(`local store (durable: false) with ${sync ? 'synchronous' : 'thread-pool'} writes: objects land whole under their id, once, fan-out made on demand, no temp file left`, async (t) => {
    const dir = path.join(await tempDir(t, 'roamfs-localstore'), 'repo');
    let now = 0;
    const io = new IoMode({ sync, slowMs: 1e9, backoffMs: 1000, now: () => now++ });
    const b = new PosixBackend(dir, { durable: false, eagerFanOut: false, syncIo: io });
    await Repository.init(b);
    const big = Buffer.concat([Buffer.from([1]), Buffer.alloc(3 << 20, 7)]);
    for (const data of [Buffer.from('\x01small'), big]) {
      const id = sha256(data);
      t.true(await b.putObject(id, [data.subarray(0, 1), data.subarray(1)]));
      t.false(await b.putObject(id, data), 'already there: not written again');
      t.deepEqual(await b.getObject(id), data);
    }
    const ids: string[] = [];
    for await (const o of b.listObjects()) ids.push(o.id);
    t.is(ids.length, 2);
    t.deepEqual(await fsp.readdir(path.join(dir, 'tmp')), []);
  });
}
