/**
 * CLI end to end: `roamfs import` then `roamfs export` gives back the same tree, byte for byte
 * and attribute for attribute (type, mode bits incl. setuid/setgid/sticky, owner, mtime in ns,
 * size, symlink targets; symlinks never followed).
 */
import test from 'ava';
import * as path from 'node:path';
import { PosixBackend } from '../../src/repository/posix.js';
import { Repository } from '../../src/repository/repository.js';
import { walkTree } from '../../src/repository/walk.js';
import type { TreeEntry } from '../../src/repository/objects.js';
import { lines, roamfs, roamfsOk } from '../helpers/repo-cli.js';
import { asObject, execFileP, snapshotTree, tempDir } from '../helpers/repo-fs.js';
import { TreeWriter } from '../helpers/repo-tree.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function buildSource(root: string): Promise<void> {
  const w = new TreeWriter(root);
  await w.dir('');
  // Sizes around the chunker's limits (min 64 KiB, avg 256 KiB, max 1 MiB).
  await w.file('empty', '');
  await w.file('one-byte', 'x');
  await w.file('size-64k-minus-1', { random: 64 * KiB - 1, seed: 'a' });
  await w.file('size-64k', { random: 64 * KiB, seed: 'b' });
  await w.file('size-64k-plus-1', { random: 64 * KiB + 1, seed: 'c' });
  await w.file('size-256k', { random: 256 * KiB, seed: 'd' });
  await w.file('size-1m', { random: MiB, seed: 'e' });
  await w.file('size-1m-plus-1', { random: MiB + 1, seed: 'f' });
  await w.file('zeros-1m', { zeros: MiB }); // one chunk of exactly maxSize
  await w.file('zeros-3m-plus-7', { zeros: 3 * MiB + 7 }); // maxSize, maxSize, maxSize, 7
  await w.file('big-200m', { random: 200 * MiB, seed: 'big' });
  // Directories.
  await w.dir('empty-dir');
  await w.file('nested/a/b/c/d/e/deep.txt', 'deep\n');
  await w.dir('nested/a/b/c/d/e', {});
  await w.dir('nested/a/b/c/d');
  await w.dir('nested/a/b/c');
  await w.dir('nested/a/b');
  await w.dir('nested/a');
  await w.dir('nested');
  await w.dir('nested/a/empty-inside');
  // Symlinks: relative, upward, absolute, dangling, to a directory, to outside; never followed.
  await w.symlink('link-relative', 'one-byte');
  await w.symlink('nested/a/link-up', '../../size-64k');
  await w.symlink('link-absolute', '/etc/passwd');
  await w.symlink('link-dangling', 'does/not/exist');
  await w.symlink('link-to-dir', 'nested');
  await w.symlink('link-to-root-dir', '/');
  await w.symlink('link-unicode', 'café 🎉');
  // Unicode and odd names: NFC and NFD of "café" are different names with different content.
  await w.file('caf\u00e9', 'NFC\n');
  await w.file('cafe\u0301', 'NFD\n');
  await w.file('🎉 party', 'emoji\n');
  await w.file('日本語/ファイル.txt', 'japanese\n');
  await w.dir('日本語');
  await w.file('with\nnewline', 'nl\n');
  await w.file(' leading space', 'sp\n');
  await w.file('-dash', 'dash\n');
  await w.file('back\\slash', 'bs\n');
  await w.file('x'.repeat(200) + 'é'.repeat(27) + 'z', 'a 255-byte name\n');
  // Modes and owners.
  await w.file('private', 'secret\n', { mode: 0o600 });
  await w.file('script.sh', '#!/bin/sh\necho hi\n', { mode: 0o755 });
  await w.file('readonly', 'ro\n', { mode: 0o444 });
  await w.file('setuid-bin', 'suid\n', { mode: 0o4755 });
  await w.file('owned', 'owned\n', { mode: 0o640, uid: 1234, gid: 5678 });
  await w.symlink('owned-link', 'owned', { uid: 4321, gid: 8765 });
  await w.file('dir700/inside', 'in 700\n');
  await w.dir('dir700', { mode: 0o700 });
  await w.file('setgid-dir/inside', 'in setgid\n');
  await w.dir('setgid-dir', { mode: 0o2775, gid: 4242, uid: 0 });
  await w.dir('sticky-dir', { mode: 0o1777 });
  await w.file('dir500/inside', 'in 500\n', { mode: 0o400 });
  await w.dir('dir500/sub');
  await w.dir('dir500', { mode: 0o500 });
  await w.dir('owned-dir', { mode: 0o750, uid: 2000, gid: 3000 });
  // Times: before the epoch, far future, both with nanoseconds.
  await w.file('old-1930', 'old\n', { mtimeNs: -1_262_304_000_123_456_789n });
  await w.file('future-2100', 'future\n', { mtimeNs: 4_102_444_800_987_654_321n });
  await w.finish({ mode: 0o711 });
}

// Owners other than our own need root (CI and developer machines run as root).
const rootTest = test; // needs root (chown, tmpfs): CI runs as root

rootTest('import → export gives back an identical tree (content, types, modes, owners, ns mtimes, symlinks)', async (t) => {
  const work = await tempDir(t, 'roamfs-rt');
  const src = path.join(work, 'src');
  const repo = path.join(work, 'repo');
  const out = path.join(work, 'out');
  await buildSource(src);
  const before = await snapshotTree(src);

  await roamfsOk('init', repo);
  const imp = await roamfs('import', repo, 'alice', src);
  t.is(imp.code, 0, imp.stderr);
  t.is(imp.stderr, '', 'nothing skipped, no warnings');
  t.regex(imp.stdout, /^alice: commit [0-9a-f]{12} \(ref 1\)/);
  const exp = await roamfs('export', repo, 'alice', out);
  t.is(exp.code, 0, exp.stderr);
  t.is(lines(exp.stdout).length, 1);

  const diff = await execFileP('diff', ['-r', '--no-dereference', src, out]).then(
    () => ({ code: 0, out: '' }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
  );
  t.is(diff.code, 0, diff.out);
  const after = await snapshotTree(out);
  t.deepEqual(asObject(after), asObject(before));
  t.deepEqual(asObject(await snapshotTree(src)), asObject(before), 'the source was not modified (no atime/mtime games)');

  // The sizes really hit the chunker's limits the way the file names say.
  const r = await Repository.open(new PosixBackend(repo));
  const head = await r.requireHead('alice');
  const entries = new Map<string, TreeEntry>();
  for await (const { path: p, entry } of walkTree(r, (await r.getCommit(head.commit)).root.tree)) entries.set(p, entry);
  const sizes = (name: string) => {
    const e = entries.get(name);
    return e?.type === 'file' ? e.chunks.map((c) => c.size) : null;
  };
  t.deepEqual(sizes('empty'), []);
  t.deepEqual(sizes('one-byte'), [1]);
  t.deepEqual(sizes('size-64k'), [64 * KiB]);
  t.deepEqual(sizes('zeros-1m'), [MiB]);
  t.deepEqual(sizes('zeros-3m-plus-7'), [MiB, MiB, MiB, 7]);
  const big = sizes('big-200m')!;
  t.is(big.reduce((a, b) => a + b, 0), 200 * MiB);
  t.true(big.length > 100 && big.every((s) => s <= MiB));
  t.is(entries.get('link-to-dir')?.type, 'symlink', 'a symlink to a directory is stored as a symlink');
  t.false([...entries.keys()].some((p) => p.startsWith('link-to-dir/') || p.startsWith('link-to-root-dir/')), 'symlinks were not followed');
});

test('export into an existing empty directory; a second import of the unchanged tree changes nothing but adds a commit', async (t) => {
  const work = await tempDir(t, 'roamfs-rt2');
  const src = path.join(work, 'src');
  const repo = path.join(work, 'repo');
  const w = new TreeWriter(src);
  await w.dir('');
  await w.file('a', 'a\n', { mode: 0o600 });
  await w.symlink('l', 'a');
  await w.dir('d', { mode: 0o700 });
  await w.finish({ mode: 0o700 });
  await roamfsOk('init', repo);
  await roamfsOk('import', repo, 'bob', src);
  const again = await roamfsOk('import', repo, 'bob', src);
  t.regex(again.stdout, /\(ref 2\).*; 0 changed, 0 B new/);
  const out = path.join(work, 'out');
  await execFileP('mkdir', [out]);
  await roamfsOk('export', repo, 'bob', out);
  t.deepEqual(asObject(await snapshotTree(out)), asObject(await snapshotTree(src)));
});
