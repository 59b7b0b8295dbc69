/**
 * CLI end to end: `roamfs fsck` on a clean repository (exit 0, one summary line) and on damaged
 * ones (exit 1, stderr names each damaged object, and for chunks the file that uses it).
 */
import test, { type ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import { rmSync } from 'node:fs';
import * as path from 'node:path';
import type { ObjectId } from '../../src/core/hash.js';
import type { TreeEntry } from '../../src/repository/objects.js';
import { PosixBackend } from '../../src/repository/posix.js';
import { Repository } from '../../src/repository/repository.js';
import { objectFile } from '../helpers/repo-backends.js';
import { lines, roamfs, roamfsOk } from '../helpers/repo-cli.js';
import { execFileP, tempDir } from '../helpers/repo-fs.js';
import { randomBuffer } from '../helpers/repo-data.js';

interface Fixture {
  repo: string;
  commit: ObjectId;
  docsTree: ObjectId;
  subTree: ObjectId;
  reportChunks: ObjectId[];
  aChunk: ObjectId;
}

/** A pristine repository, built once; each test damages its own copy. */
let pristine: Promise<Fixture> | undefined;
async function fixture(t: ExecutionContext): Promise<Fixture> {
  pristine ??= (async () => {
    const work = await fsp.mkdtemp('/tmp/roamfs-fsck-pristine-');
    process.once('exit', () => rmSync(work, { recursive: true, force: true }));
    const src = path.join(work, 'src');
    await fsp.mkdir(path.join(src, 'docs'), { recursive: true });
    await fsp.mkdir(path.join(src, 'sub', 'deeper'), { recursive: true });
    await fsp.writeFile(path.join(src, 'docs', 'report.bin'), randomBuffer('report', 900 * 1024));
    await fsp.writeFile(path.join(src, 'a.txt'), 'alpha\n');
    await fsp.writeFile(path.join(src, 'sub', 'deeper', 'x.txt'), 'x\n');
    const repo = path.join(work, 'repo');
    await roamfsOk('init', repo);
    await roamfsOk('import', repo, 'alice', src);
    const r = await Repository.open(new PosixBackend(repo));
    const head = await r.requireHead('alice');
    const root = await r.getTree((await r.getCommit(head.commit)).root.tree);
    const get = (entries: TreeEntry[], name: string) => entries.find((e) => e.name === name)!;
    const docs = get(root, 'docs') as Extract<TreeEntry, { type: 'dir' }>;
    const report = get(await r.getTree(docs.tree), 'report.bin') as Extract<TreeEntry, { type: 'file' }>;
    const a = get(root, 'a.txt') as Extract<TreeEntry, { type: 'file' }>;
    const sub = get(root, 'sub') as Extract<TreeEntry, { type: 'dir' }>;
    return { repo, commit: head.commit, docsTree: docs.tree, subTree: sub.tree, reportChunks: report.chunks.map((c) => c.id), aChunk: a.chunks[0]!.id };
  })();
  const f = await pristine;
  const copy = path.join(await tempDir(t, 'roamfs-fsck'), 'repo');
  await execFileP('cp', ['-a', f.repo, copy]);
  return { ...f, repo: copy };
}

async function flipByte(file: string, at: 'middle' | number = 'middle'): Promise<void> {
  const b = await fsp.readFile(file);
  const i = at === 'middle' ? b.length >> 1 : at;
  b[i] ^= 0x20;
  await fsp.writeFile(file, b);
}

async function damaged(t: ExecutionContext, repo: string, ids: string[], mentions: string[] = []): Promise<void> {
  const r = await roamfs('fsck', repo);
  t.is(r.code, 1, `fsck exit code; stderr: ${r.stderr}`);
  for (const id of ids) t.true(r.stderr.includes(id), `stderr names ${id}:\n${r.stderr}`);
  for (const m of mentions) t.true(r.stderr.includes(m), `stderr mentions ${m}:\n${r.stderr}`);
  t.regex(lines(r.stderr).at(-1)!, /^roamfs: fsck found \d+ damaged object/);
}

test('a clean repository: exit 0 and exactly one summary line', async (t) => {
  const f = await fixture(t);
  const r = await roamfs('fsck', f.repo);
  t.is(r.code, 0, r.stderr);
  t.is(r.stderr, '');
  t.is(lines(r.stdout).length, 1);
  t.regex(r.stdout, /^fsck ok: 1 users, 1 refs, 1 commits, 4 trees, \d+ chunks/);
});

test('(a) a flipped byte in a chunk: exit 1, names the chunk and the file using it', async (t) => {
  const f = await fixture(t);
  t.true(f.reportChunks.length >= 2);
  const victim = f.reportChunks[1]!;
  await flipByte(objectFile(f.repo, victim));
  await damaged(t, f.repo, [victim], ['docs/report.bin', 'alice']);
});

test('(b) a flipped byte in a tree: exit 1, names the tree', async (t) => {
  const f = await fixture(t);
  await flipByte(objectFile(f.repo, f.docsTree));
  await damaged(t, f.repo, [f.docsTree], ['/docs']);
});

test('(c) a flipped byte in a commit: exit 1, names the commit', async (t) => {
  const f = await fixture(t);
  await flipByte(objectFile(f.repo, f.commit));
  await damaged(t, f.repo, [f.commit], ['alice']);
});

test('(c2) a flipped type byte: exit 1, names the object', async (t) => {
  const f = await fixture(t);
  await flipByte(objectFile(f.repo, f.aChunk), 0);
  await damaged(t, f.repo, [f.aChunk], ['a.txt']);
});

test('(d) a truncated object: exit 1, names it and the file using it', async (t) => {
  const f = await fixture(t);
  const victim = f.reportChunks[0]!;
  const file = objectFile(f.repo, victim);
  await fsp.truncate(file, (await fsp.stat(file)).size >> 1);
  await damaged(t, f.repo, [victim], ['docs/report.bin']);
});

test('(e) a deleted object: exit 1, names it as missing', async (t) => {
  const f = await fixture(t);
  await fsp.rm(objectFile(f.repo, f.aChunk));
  await damaged(t, f.repo, [f.aChunk], ['a.txt', 'missing']);
  await fsp.rm(objectFile(f.repo, f.subTree));
  await damaged(t, f.repo, [f.aChunk, f.subTree], ['/sub']);
});

test('several damaged objects are all reported, one line each plus the summary', async (t) => {
  const f = await fixture(t);
  await flipByte(objectFile(f.repo, f.reportChunks[0]!));
  await fsp.rm(objectFile(f.repo, f.aChunk));
  await flipByte(objectFile(f.repo, f.subTree));
  const r = await roamfs('fsck', f.repo);
  t.is(r.code, 1);
  t.is(lines(r.stderr).length, 4, r.stderr);
  t.regex(lines(r.stderr).at(-1)!, /fsck found 3 damaged object/);
});
