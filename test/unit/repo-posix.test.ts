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
import { Repository } from '../../src/repository/repository.js';
import { buildCommit, commitOnTop } from '../helpers/repo-build.js';
import { tempDir } from '../helpers/repo-fs.js';

// The barrier opens the repository directory and syncfs(2)s it; nothing else opens that exact
// directory after init. Count those opens (the native addon's functions are not replaceable).
let watched = '';
let syncs = 0;
const realOpen = fsPromises.open;
(fsPromises as { open: unknown }).open = (p: Parameters<typeof realOpen>[0], ...rest: unknown[]) => {
  if (watched && String(p) === watched) syncs++;
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
