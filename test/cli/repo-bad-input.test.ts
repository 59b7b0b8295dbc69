/**
 * CLI end to end, bad input: each refusal is exactly one line on stderr, a non-zero exit, and
 * leaves the repository (and any other directory involved) exactly as it was.
 */
import test, { type ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { lines, logOf, roamfs, roamfsOk } from '../helpers/repo-cli.js';
import { listRepo, tempDir } from '../helpers/repo-fs.js';

interface World {
  work: string;
  repo: string;
  src: string;
  /** alice's only commit */
  commit: string;
}

async function world(t: ExecutionContext): Promise<World> {
  const work = await tempDir(t, 'roamfs-bad');
  const repo = path.join(work, 'repo');
  const src = path.join(work, 'src');
  await fsp.mkdir(path.join(src, 'd'), { recursive: true });
  await fsp.writeFile(path.join(src, 'd', 'f'), 'content\n');
  await roamfsOk('init', repo);
  await roamfsOk('import', repo, 'alice', src);
  const [c] = await logOf(repo, 'alice');
  return { work, repo, src, commit: c!.id };
}

/** Run a command that must be refused; `watch` are directories that must not change. */
async function refused(t: ExecutionContext, args: string[], watch: string[], expect: RegExp): Promise<void> {
  const before = await Promise.all(watch.map(listRepo));
  const r = await roamfs(...args);
  const what = `roamfs ${args.map((a) => JSON.stringify(a)).join(' ')}`;
  t.not(r.code, 0, `${what} must fail`);
  t.is(lines(r.stderr).length, 1, `${what}: exactly one line on stderr, got:\n${r.stderr}`);
  t.true(r.stderr.endsWith('\n') && !r.stderr.slice(0, -1).includes('\n'), `${what}: one line`);
  t.regex(r.stderr, /^roamfs: /, what);
  t.regex(r.stderr, expect, what);
  t.is(r.stdout, '', `${what}: nothing on stdout`);
  const after = await Promise.all(watch.map(listRepo));
  t.deepEqual(after, before, `${what}: nothing changed`);
}

test('missing repository', async (t) => {
  const w = await world(t);
  const missing = path.join(w.work, 'no-such-repo');
  for (const args of [
    ['log', missing, 'alice'],
    ['import', missing, 'alice', w.src],
    ['export', missing, 'alice', path.join(w.work, 'out')],
    ['fsck', missing],
    ['rollback', missing, 'alice', w.commit],
    ['prune', missing, '--keep-last', '1'],
    ['gc', missing],
  ]) {
    await refused(t, args, [missing, w.work], /does not exist/);
  }
});

test('not a repository: a non-empty plain directory, and init of a non-empty directory', async (t) => {
  const w = await world(t);
  const plain = path.join(w.work, 'plain');
  await fsp.mkdir(path.join(plain, 'stuff'), { recursive: true });
  await fsp.writeFile(path.join(plain, 'notes.txt'), 'not a repository\n');
  for (const args of [
    ['log', plain, 'alice'],
    ['import', plain, 'alice', w.src],
    ['export', plain, 'alice', path.join(w.work, 'out')],
    ['fsck', plain],
    ['rollback', plain, 'alice', w.commit],
    ['gc', plain],
  ]) {
    await refused(t, args, [plain, w.src], /is not a roamfs repository/);
  }
  await refused(t, ['init', plain], [plain], /not empty/);
  await refused(t, ['init', w.repo], [w.repo], /already a roamfs repository/);
  const file = path.join(w.work, 'a-file');
  await fsp.writeFile(file, 'x');
  await refused(t, ['log', file, 'alice'], [file], /not a directory/);
});

test('unknown user: log, export, rollback', async (t) => {
  const w = await world(t);
  const out = path.join(w.work, 'out');
  await refused(t, ['log', w.repo, 'bob'], [w.repo], /no profile for user bob/);
  await refused(t, ['export', w.repo, 'bob', out], [w.repo, w.work], /no profile for user bob/);
  await refused(t, ['export', w.repo, 'bob', out, '--at', w.commit.slice(0, 8)], [w.repo, w.work], /no profile for user bob/);
  await refused(t, ['rollback', w.repo, 'bob', w.commit.slice(0, 8)], [w.repo], /no profile for user bob/);
  await refused(t, ['fsck', w.repo, '--user', 'bob'], [w.repo], /no profile for user bob/);
  await refused(t, ['prune', w.repo, 'bob', '--keep-last', '1'], [w.repo], /no profile for user bob/);
});

test('invalid user names: ../x, a/b, empty', async (t) => {
  const w = await world(t);
  for (const u of ['../x', 'a/b', '', '..', '.', 'x/../../etc']) {
    const out = path.join(w.work, 'out');
    for (const args of [
      ['import', w.repo, u, w.src],
      ['log', w.repo, u],
      ['export', w.repo, u, out],
      ['rollback', w.repo, u, w.commit.slice(0, 8)],
    ]) {
      await refused(t, args, [w.repo, w.work], /invalid user name/);
    }
  }
});

test('import of a missing or non-directory DIR', async (t) => {
  const w = await world(t);
  await refused(t, ['import', w.repo, 'alice', path.join(w.work, 'nope')], [w.repo], /does not exist/);
  await refused(t, ['import', w.repo, 'carol', path.join(w.work, 'nope')], [w.repo], /does not exist/);
  await refused(t, ['import', w.repo, 'alice', path.join(w.src, 'd', 'f')], [w.repo], /not a directory/);
});

test('export into a non-empty directory', async (t) => {
  const w = await world(t);
  const out = path.join(w.work, 'busy');
  await fsp.mkdir(out);
  await fsp.writeFile(path.join(out, 'precious'), 'do not touch\n');
  await refused(t, ['export', w.repo, 'alice', out], [w.repo, out], /not empty/);
  await refused(t, ['export', w.repo, 'alice', out, '--at', w.commit.slice(0, 8)], [w.repo, out], /not empty/);
});

test('unknown or malformed commit ids', async (t) => {
  const w = await world(t);
  const unknown = ['0000', 'ffff', 'abcd', '1234'].find((p) => !w.commit.startsWith(p))!;
  const out = path.join(w.work, 'out');
  await refused(t, ['export', w.repo, 'alice', out, '--at', `${unknown}5678`], [w.repo, w.work], /no commit/);
  await refused(t, ['rollback', w.repo, 'alice', `${unknown}5678`], [w.repo], /no commit/);
  await refused(t, ['rollback', w.repo, 'alice', 'xyz!'], [w.repo], /not a commit id/);
  await refused(t, ['export', w.repo, 'alice', out, '--at', 'ab'], [w.repo, w.work], /not a commit id/);
});
