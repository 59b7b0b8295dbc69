/**
 * CLI end to end, disk full (a small tmpfs; needs root): an import that does not fit fails with
 * one clear "no space left" line and a non-zero exit, the head does not move, fsck stays clean,
 * and the repository recovers once space is freed. An export into a full file system fails the
 * same way.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { headOf, lines, roamfs, roamfsOk } from '../helpers/repo-cli.js';
import { writeRandomFile } from '../helpers/repo-data.js';
import { asObject, listRepo, snapshotTree, tempDir, tmpfs } from '../helpers/repo-fs.js';

const MiB = 1024 * 1024;
const isRoot = process.getuid?.() === 0;
const rootTest = isRoot ? test.serial : test.serial.skip;

rootTest('import into a full repository: one "no space left" line, head unchanged, fsck clean', async (t) => {
  const work = await tempDir(t, 'roamfs-full');
  const mnt = await tmpfs(t, '8m');
  const repo = path.join(mnt, 'repo');
  const small = path.join(work, 'small');
  const big = path.join(work, 'big');
  await fsp.mkdir(small);
  await fsp.writeFile(path.join(small, 'f'), 'small profile\n');
  await fsp.mkdir(big);
  for (let i = 0; i < 4; i++) await writeRandomFile(path.join(big, `blob-${i}`), 5 * MiB, `blob-${i}`);
  await fsp.writeFile(path.join(big, 'f'), 'bigger profile\n');

  await roamfsOk('init', repo);
  await roamfsOk('import', repo, 'alice', small);
  const head = await headOf(repo, 'alice');
  t.truthy(head);
  const refsBefore = await listRepo(path.join(repo, 'users'));

  for (const user of ['alice', 'bob']) {
    const r = await roamfs('import', repo, user, big);
    t.not(r.code, 0, `import for ${user} must fail`);
    t.is(lines(r.stderr).length, 1, r.stderr);
    t.regex(r.stderr, /^roamfs: .*no space left on device/);
    t.is(r.stdout, '');
    const fsck = await roamfs('fsck', repo);
    t.is(fsck.code, 0, fsck.stderr);
    t.is(lines(fsck.stdout).length, 1);
  }
  t.is(await headOf(repo, 'alice'), head, "alice's head did not move");
  t.is(await headOf(repo, 'bob'), null, 'bob has no profile');
  t.deepEqual(await listRepo(path.join(repo, 'users')), refsBefore, 'no ref was written');

  // The orphans of the failed imports are garbage: gc frees them and the repository works again.
  const gc = await roamfs('gc', repo, '--grace', '0');
  t.is(gc.code, 0, gc.stderr);
  t.regex(gc.stdout, /deleted [1-9]\d* /);
  for (let i = 0; i < 3; i++) await fsp.rm(path.join(big, `blob-${i}`)); // 5 MiB left: fits
  await roamfsOk('import', repo, 'alice', big);
  t.not(await headOf(repo, 'alice'), head);
  const out = path.join(work, 'out');
  await roamfsOk('export', repo, 'alice', out);
  t.deepEqual(asObject(await snapshotTree(out)), asObject(await snapshotTree(big)));
  t.is((await roamfs('fsck', repo)).code, 0);
});

rootTest('export into a full file system: one "no space left" line, non-zero exit', async (t) => {
  const work = await tempDir(t, 'roamfs-full-export');
  const repo = path.join(work, 'repo');
  const src = path.join(work, 'src');
  await fsp.mkdir(src);
  for (let i = 0; i < 3; i++) await writeRandomFile(path.join(src, `blob-${i}`), 3 * MiB, `exp-${i}`);
  await roamfsOk('init', repo);
  await roamfsOk('import', repo, 'alice', src);
  const before = await listRepo(repo);
  const mnt = await tmpfs(t, '4m');
  const r = await roamfs('export', repo, 'alice', path.join(mnt, 'out'));
  t.not(r.code, 0);
  t.is(lines(r.stderr).length, 1, r.stderr);
  t.regex(r.stderr, /^roamfs: .*no space left on device/);
  t.deepEqual(await listRepo(repo), before, 'the repository is untouched');
});
