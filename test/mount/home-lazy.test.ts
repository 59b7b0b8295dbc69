/**
 * Lazy loading, measured by the daemon itself (`roamfs status --json`: remoteBytesRead counts
 * the stored bytes of every object fetched from the repository, type byte included).
 *
 * A generated 50,000-file desktop profile (scripts/gen-profile.ts) plus two 10 MiB files of
 * incompressible, unique bytes (nothing else in the profile shares their chunks):
 *   - mounting reads the commit and the root tree, nothing else;
 *   - `ls -la` of the home reads nothing more (the root listing is already there);
 *   - reading one 10 MiB file reads exactly its chunks plus the trees on its path;
 *   - reading it again reads nothing from the repository;
 *   - the other 10 MiB file, stat'ed but never opened, costs nothing but its directory.
 * Background prefetch (if the daemon has it) is switched off for this mount: it would read
 * everything on purpose.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { generateProfile } from '../../scripts/gen-profile.js';
import { headCommit, lookupInRepo, mountedHome, noPrefetchArgs, run, runOk, type MountedHome } from '../helpers/mounted-home.js';

const MiB = 1024 * 1024;
const TEN = 10 * MiB;
const FILES = 50_000;
const READ_PATH = 'Documents/Projects/ten-mib.bin';
const NEVER_PATH = 'Documents/Projects/never-opened.bin';

/** Incompressible, deterministic bytes no other file shares (sha256 counter mode). */
function uniqueBytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  for (let off = 0, i = 0; off < size; i++) {
    const h = createHash('sha256').update(`${seed}:${i}`).digest();
    off += h.copy(out, off);
  }
  return out;
}

async function remote(h: MountedHome): Promise<number> {
  return (await h.status()).remoteBytesRead;
}

test('mounting a 50,000-file profile reads only metadata; a 10 MiB file costs 10 MiB once; unopened files cost nothing', async (t) => {
  t.timeout(8 * 60_000); // a guard against a hang, not a timing assertion
  const extra = await noPrefetchArgs();
  let generated = { files: 0, bytes: 0 };
  const t0 = Date.now();
  const h = await mountedHome(t, {
    prefix: 'roamfs-home-lazy-',
    mount: false,
    mountArgs: ['--snapshot-interval', 'off', ...extra],
    populate: async (src) => {
      generated = await generateProfile(src, { seed: 7, sizeBytes: 300 * MiB, files: FILES, bigFiles: true });
      await fsp.mkdir(path.join(src, path.dirname(READ_PATH)), { recursive: true });
      await fsp.writeFile(path.join(src, READ_PATH), uniqueBytes('read', TEN));
      await fsp.writeFile(path.join(src, NEVER_PATH), uniqueBytes('never', TEN));
    },
  });
  const tMade = Date.now();
  t.true(generated.files >= FILES, `${generated.files} files generated`);

  const m0 = Date.now();
  await h.mount();
  const mountMs = Date.now() - m0;
  t.log(`profile: ${generated.files + 2} files, ${((generated.bytes + 2 * TEN) / MiB).toFixed(0)} MiB; generate + import ${((tMade - t0) / 1000).toFixed(1)} s; mount to ready ${mountMs} ms${extra.length ? ` (${extra.join(' ')})` : ''}`);

  // What the repository says the daemon should read.
  const commit = await headCommit(h.repo, h.user);
  const read = await lookupInRepo(h.repo, commit, READ_PATH);
  const never = await lookupInRepo(h.repo, commit, NEVER_PATH);
  if (read.entry.type !== 'file' || never.entry.type !== 'file') throw new Error('expected files');
  const rootTree = read.trees[0]!;
  const metadata = read.commit.bytes + rootTree.bytes;
  const pathTrees = read.trees.slice(1).reduce((s, x) => s + x.bytes, 0);
  const chunkBytes = read.entry.chunks.reduce((s, c) => s + c.size + 1, 0);
  const neverIds = new Set(never.entry.chunks.map((c) => c.id));
  t.false(read.entry.chunks.some((c) => neverIds.has(c.id)), 'the two files share no chunk');

  const s0 = await h.status();
  const atMount = s0.remoteBytesRead;
  t.log(`remote bytes at mount: ${atMount} (commit ${read.commit.bytes} + root tree ${rootTree.bytes})`);
  // Anything but this test touching the home (a recursive walk of /tmp by some other program)
  // would read trees: the FUSE counters tell which operations the daemon served so far.
  if (atMount > metadata) t.log(`FUSE operations before the test touched the home: ${JSON.stringify(s0.fuse)}; prefetch ${JSON.stringify(s0.prefetch)}`);
  t.true(atMount <= metadata, `at mount only the commit and the root tree: ${atMount} <= ${metadata}`);
  t.true(atMount >= read.commit.bytes, 'the commit was read');

  const ls = await runOk('ls', ['-la', h.mountpoint]);
  t.true(ls.stdout.includes('Documents'));
  const afterLs = await remote(h);
  t.is(afterLs, metadata, `ls -la: the root listing and nothing else (${afterLs})`);

  // stat of the never-opened file: its directories' trees, no content.
  const st = await fsp.stat(h.p(NEVER_PATH));
  t.is(st.size, TEN);
  const afterStat = await remote(h);
  t.is(afterStat - afterLs, pathTrees, 'stat reads the trees on the path only');
  t.log(`stat of ${NEVER_PATH}: +${afterStat - afterLs} bytes (${read.trees.length - 1} trees on the path)`);

  // Read the 10 MiB file once: exactly its chunks (content + one type byte each).
  const sum1 = await runOk('sha256sum', [h.p(READ_PATH)]);
  const want = createHash('sha256').update(uniqueBytes('read', TEN)).digest('hex');
  t.is(sum1.stdout.split(' ')[0], want, 'content is right');
  const afterRead = await remote(h);
  const delta = afterRead - afterStat;
  t.log(`reading the 10 MiB file: +${delta} bytes (${read.entry.chunks.length} chunks; content ${TEN}); total ${afterRead}`);
  t.is(delta, chunkBytes, 'the file\'s chunks, each once');
  t.true(delta >= TEN && delta <= TEN + 4096, `≈ 10 MiB: ${delta}`);

  // Again, after dropping the kernel's page cache of that one file so the daemon serves it.
  const before2 = await h.status();
  await evictPageCache(h.p(READ_PATH));
  const sum2 = await runOk('sha256sum', [h.p(READ_PATH)]);
  t.is(sum2.stdout.split(' ')[0], want);
  const after2 = await h.status();
  t.is(after2.remoteBytesRead, afterRead, 'a second read costs nothing remote');
  const reads = (after2.fuse?.read?.count ?? 0) - (before2.fuse?.read?.count ?? 0);
  t.log(`second read: ${reads} FUSE reads served from the local cache (cache hits ${before2.cacheHits} -> ${after2.cacheHits})`);

  // The never-opened file: none of its chunks were fetched (the whole delta is accounted for).
  t.is(after2.remoteBytesRead, metadata + pathTrees + chunkBytes, 'nothing else was ever read: not the unopened file, not the other 50,000');

  const lo = await h.logout();
  t.is(lo.code, 0, lo.stderr);
});

/** posix_fadvise(DONTNEED) on one file: the kernel drops its cached pages (python3, if present). */
async function evictPageCache(file: string): Promise<void> {
  await run('python3', ['-c', 'import os,sys; fd=os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)', file]).catch(() => undefined);
}
