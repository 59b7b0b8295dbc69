/**
 * importDirectory on a live directory: entries that disappear between the scan and the read
 * (lock files, caches) are left out of the snapshot instead of failing the whole import.
 */
import test from 'ava';
import * as fs from 'node:fs';
import fsPromises from 'node:fs/promises';
import * as fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { Repository } from '../../src/repository/repository.js';
import { walkTree } from '../../src/repository/walk.js';
import { importDirectory } from '../../src/transfer/import.js';
import { tempDir } from '../helpers/repo-fs.js';

const ctx = { clock: new ManualClock(), host: 'test-host', session: 'test-session' };

async function paths(repo: Repository, user: string): Promise<string[]> {
  const head = await repo.requireHead(user);
  const out: string[] = [];
  for await (const { path: p } of walkTree(repo, (await repo.getCommit(head.commit)).root.tree)) out.push(p);
  return out.sort();
}

async function source(t: import('ava').ExecutionContext): Promise<string> {
  const dir = await tempDir(t, 'roamfs-import');
  await fsp.mkdir(path.join(dir, 'sub', 'cache'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'keep'), 'keep\n');
  await fsp.writeFile(path.join(dir, 'lock'), 'pid 42\n');
  await fsp.writeFile(path.join(dir, 'sub', 'tmpfile'), 'x'.repeat(100_000));
  await fsp.writeFile(path.join(dir, 'sub', 'cache', 'entry'), 'cached\n');
  return dir;
}

test.serial('files removed after the scan are left out; the import succeeds', async (t) => {
  const dir = await source(t);
  const repo = await Repository.init(new MemoryBackend());
  let removed = false;
  const r = await importDirectory(repo, 'alice', dir, {
    ...ctx,
    concurrency: 1,
    onProgress: () => {
      // The first progress report comes after the scan, before any file is read.
      if (removed) return;
      removed = true;
      fs.rmSync(path.join(dir, 'lock'));
      fs.rmSync(path.join(dir, 'sub', 'tmpfile'));
    },
  });
  t.true(removed);
  t.truthy(r.commit);
  t.deepEqual(await paths(repo, 'alice'), ['keep', 'sub', 'sub/cache', 'sub/cache/entry']);
});

test.serial('a directory removed between the scan of its parent and its own listing is left out', async (t) => {
  const dir = await source(t);
  const victim = path.join(dir, 'sub', 'cache');
  const orig = fsPromises.readdir;
  (fsPromises as { readdir: unknown }).readdir = async (p: fs.PathLike, ...rest: unknown[]) => {
    if (String(p) === victim) fs.rmSync(victim, { recursive: true, force: true });
    return (orig as (...a: unknown[]) => unknown)(p, ...rest);
  };
  syncBuiltinESMExports();
  t.teardown(() => {
    (fsPromises as { readdir: unknown }).readdir = orig;
    syncBuiltinESMExports();
  });
  const repo = await Repository.init(new MemoryBackend());
  await importDirectory(repo, 'alice', dir, ctx);
  t.false(fs.existsSync(victim), 'the hook ran');
  t.deepEqual(await paths(repo, 'alice'), ['keep', 'lock', 'sub', 'sub/tmpfile']);
});

test.serial('a symlink removed between the scan and its readlink is left out', async (t) => {
  const dir = await source(t);
  const link = path.join(dir, 'sub', 'link');
  await fsp.symlink('tmpfile', link);
  const orig = fsPromises.readlink;
  (fsPromises as { readlink: unknown }).readlink = async (p: fs.PathLike, ...rest: unknown[]) => {
    if (String(p) === link) fs.rmSync(link);
    return (orig as (...a: unknown[]) => unknown)(p, ...rest);
  };
  syncBuiltinESMExports();
  t.teardown(() => {
    (fsPromises as { readlink: unknown }).readlink = orig;
    syncBuiltinESMExports();
  });
  const repo = await Repository.init(new MemoryBackend());
  await importDirectory(repo, 'alice', dir, ctx);
  t.false(fs.existsSync(link), 'the hook ran');
  t.deepEqual(await paths(repo, 'alice'), ['keep', 'lock', 'sub', 'sub/cache', 'sub/cache/entry', 'sub/tmpfile']);
});

test('the import directory itself missing is NOT_FOUND, nothing written', async (t) => {
  const dir = await tempDir(t, 'roamfs-import-missing');
  const b = new MemoryBackend();
  const repo = await Repository.init(b);
  await t.throwsAsync(importDirectory(repo, 'alice', path.join(dir, 'nope'), ctx), { code: 'NOT_FOUND' });
  t.is(b.objects.size, 0);
  t.is(b.refs.size, 0);
});
