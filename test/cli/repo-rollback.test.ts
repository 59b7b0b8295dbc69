/**
 * CLI end to end: rollback of the whole profile and of one path (file, directory), as a new
 * commit on top (history kept); export of an older commit with --at.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { lines, logOf, roamfs, roamfsOk } from '../helpers/repo-cli.js';
import { asObject, snapshotTree, tempDir, type NodeInfo } from '../helpers/repo-fs.js';
import { TreeWriter } from '../helpers/repo-tree.js';

type Snap = Map<string, NodeInfo>;

/** `base` with everything at or below `p` replaced by what `from` has there. */
function graft(base: Snap, from: Snap, p: string): Snap {
  const under = (k: string) => k === p || k.startsWith(`${p}/`);
  const out = new Map([...base].filter(([k]) => !under(k)));
  for (const [k, v] of from) if (under(k)) out.set(k, v);
  return out;
}

test('rollback: whole profile, one file, one directory; history kept; export --at', async (t) => {
  const work = await tempDir(t, 'roamfs-rollback');
  const repo = path.join(work, 'repo');
  await roamfsOk('init', repo);

  // v1
  const v1 = path.join(work, 'v1');
  {
    const w = new TreeWriter(v1);
    await w.dir('');
    await w.file('a.txt', 'a version 1\n');
    await w.file('keep.txt', 'unchanged\n', { mode: 0o600 });
    await w.file('docs/x.txt', 'x1\n');
    await w.file('docs/y.txt', 'y1\n');
    await w.file('docs/deep/z.txt', 'z1\n');
    await w.symlink('docs/link', 'x.txt');
    await w.dir('docs/deep', { mode: 0o750 });
    await w.dir('docs', { mode: 0o700 });
    await w.finish();
  }
  // v2: a.txt modified, docs/x.txt deleted, docs/y.txt modified, docs/new.txt added, b.txt added
  const v2 = path.join(work, 'v2');
  {
    const w = new TreeWriter(v2);
    await w.dir('');
    await w.file('a.txt', 'a version 2, longer\n', { mode: 0o640 });
    await w.file('keep.txt', 'unchanged\n', { mode: 0o600 });
    await w.file('b.txt', 'b is new\n');
    await w.file('docs/y.txt', 'y2\n');
    await w.file('docs/new.txt', 'new\n');
    await w.dir('docs', { mode: 0o755 });
    await w.finish();
  }
  const s1 = await snapshotTree(v1);
  const s2 = await snapshotTree(v2);
  await roamfsOk('import', repo, 'alice', v1);
  await roamfsOk('import', repo, 'alice', v2);
  const [c2, c1] = await logOf(repo, 'alice');
  t.truthy(c1 && c2);
  const exportSnap = async (at?: string): Promise<Snap> => {
    const out = path.join(await tempDir(t, 'roamfs-rb-out'), 'out');
    const r = await roamfs('export', repo, 'alice', out, ...(at ? ['--at', at] : []));
    t.is(r.code, 0, r.stderr);
    return snapshotTree(out);
  };
  t.deepEqual(asObject(await exportSnap()), asObject(s2), 'head is v2');
  t.deepEqual(asObject(await exportSnap(c1!.id.slice(0, 8))), asObject(s1), 'export --at v1 (short prefix)');
  t.deepEqual(asObject(await exportSnap(c1!.id)), asObject(s1), 'export --at v1 (full id)');

  // One file back to v1: only a.txt changes.
  const rf = await roamfs('rollback', repo, 'alice', c1!.id.slice(0, 12), 'a.txt');
  t.is(rf.code, 0, rf.stderr);
  t.is(lines(rf.stdout).length, 1);
  const s3 = await exportSnap();
  const expect3 = graft(s2, s1, 'a.txt');
  expect3.set('', s2.get('')!);
  t.deepEqual(asObject(s3), asObject(expect3));
  let log = await logOf(repo, 'alice');
  t.is(log.length, 3);
  t.deepEqual(log.slice(1).map((e) => e.id), [c2!.id, c1!.id], 'history kept under the new commit');
  t.regex(log[0]!.message, /rollback a\.txt to/);
  t.is(log[0]!.files, 1);

  // One directory back to v1: docs/ as in v1 (x.txt and link back, new.txt gone), the rest stays.
  const rd = await roamfs('rollback', repo, 'alice', c1!.id.slice(0, 12), 'docs');
  t.is(rd.code, 0, rd.stderr);
  const s4 = await exportSnap();
  t.deepEqual(asObject(s4), asObject(graft(s3, s1, 'docs')));

  // A file deleted at the head comes back by itself.
  const r5 = await roamfs('rollback', repo, 'alice', c1!.id.slice(0, 12), 'docs/x.txt');
  t.is(r5.code, 0, r5.stderr);
  t.deepEqual(asObject(await exportSnap()), asObject(s4), 'already restored with docs/: nothing changes');

  // The whole profile back to v1: identical to v1, root attributes included.
  const rw = await roamfs('rollback', repo, 'alice', c1!.id.slice(0, 12));
  t.is(rw.code, 0, rw.stderr);
  t.deepEqual(asObject(await exportSnap()), asObject(s1));
  log = await logOf(repo, 'alice');
  t.is(log.length, 6);
  t.regex(log[0]!.message, /^rollback to [0-9a-f]{12}$/);
  t.deepEqual(log.slice(-2).map((e) => e.id), [c2!.id, c1!.id]);
  // And v2 is still reachable: export --at and roll forward again.
  t.deepEqual(asObject(await exportSnap(c2!.id.slice(0, 10))), asObject(s2));
  await roamfsOk('rollback', repo, 'alice', c2!.id.slice(0, 10));
  t.deepEqual(asObject(await exportSnap()), asObject(s2));
  const fsck = await roamfs('fsck', repo);
  t.is(fsck.code, 0, fsck.stderr);
});

test('rollback of a path that exists in neither commit, or that escapes, is refused', async (t) => {
  const work = await tempDir(t, 'roamfs-rollback-bad');
  const repo = path.join(work, 'repo');
  const src = path.join(work, 'src');
  await fsp.mkdir(src);
  await fsp.writeFile(path.join(src, 'f'), 'f\n');
  await roamfsOk('init', repo);
  await roamfsOk('import', repo, 'alice', src);
  const [c] = await logOf(repo, 'alice');
  for (const p of ['nope', '../etc/passwd', 'f/../../x']) {
    const r = await roamfs('rollback', repo, 'alice', c!.id.slice(0, 12), p);
    t.not(r.code, 0, p);
    t.is(lines(r.stderr).length, 1, r.stderr);
  }
  t.is((await logOf(repo, 'alice')).length, 1, 'no commit was made');
});
