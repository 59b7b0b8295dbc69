/**
 * What an operator sees when a login cannot work, and what a user sees when the repository is
 * damaged under a mounted home.
 *
 * `roamfs mount` failures: one clear line on stderr, a non-zero exit, nothing mounted at the
 * mountpoint afterwards (per /proc/self/mountinfo) and no daemon left running for it.
 * Damaged repository: a missing chunk and a corrupt (one flipped byte) chunk make reads of THE
 * file using them fail with EIO, each logged in CACHE/roamfs.log with the object id and the
 * path; every other file still reads, the home keeps working and the logout succeeds.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import {
  headCommit,
  homeAt,
  lookupInRepo,
  mountedHome,
  mountsAt,
  mountTable,
  noPrefetchArgs,
  objectPath,
  run,
  runOk,
  type MountedHome,
  type RunResult,
} from '../helpers/mounted-home.js';

/** Live roamfs daemons whose command line names this mountpoint. */
async function daemonsFor(mountpoint: string): Promise<number[]> {
  const out: number[] = [];
  for (const d of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const cmd = await fsp.readFile(`/proc/${d}/cmdline`, 'utf8').catch(() => '');
    const argv = cmd.split('\0');
    if (argv.some((a) => a.endsWith('daemon-main.js')) && argv.includes(mountpoint)) out.push(Number(d));
  }
  return out;
}

/**
 * The failed mount's contract: non-zero exit, exactly one line on stderr matching `msg`,
 * the mountpoint's mount stack unchanged, and no daemon for it left behind.
 */
async function failsCleanly(t: ExecutionContext, r: RunResult, mountpoint: string, before: string[], msg: RegExp, daemonsBefore: number[] = []): Promise<void> {
  t.not(r.code, 0, 'non-zero exit');
  const lines = r.stderr.split('\n').filter((l) => l.trim());
  t.is(lines.length, 1, `one line on stderr: ${JSON.stringify(r.stderr)}`);
  t.regex(lines[0] ?? '', /^roamfs: /);
  t.regex(lines[0] ?? '', msg);
  t.notRegex(r.stderr, /daemon exited before|internal error|\n\s+at /, 'a reason, not a stack or a shrug');
  t.deepEqual((await mountsAt(mountpoint)).map((m) => m.fstype), before, 'nothing mounted there afterwards');
  t.deepEqual(await daemonsFor(mountpoint), daemonsBefore, 'no (new) daemon left for that mountpoint');
}

/** A home with a repository and a user but not mounted: the bad-input cases vary one thing. */
async function unmounted(t: ExecutionContext): Promise<MountedHome> {
  return mountedHome(t, { prefix: 'roamfs-home-err-', mount: false, populate: (src) => fsp.writeFile(path.join(src, 'f'), 'x') });
}

test('missing repository', async (t) => {
  const h = await unmounted(t);
  const repo = path.join(h.base, 'no-such-repo');
  const r = await h.cli('mount', repo, h.user, h.mountpoint, '--cache', h.cache);
  await failsCleanly(t, r, h.mountpoint, [], /repository .*no-such-repo does not exist/);
});

test('not a repository', async (t) => {
  const h = await unmounted(t);
  const r = await h.cli('mount', h.src, h.user, h.mountpoint, '--cache', h.cache);
  await failsCleanly(t, r, h.mountpoint, [], /is not a roamfs repository/);
});

test('unknown user', async (t) => {
  const h = await unmounted(t);
  const r = await h.cli('mount', h.repo, 'bob', h.mountpoint, '--cache', h.cache);
  await failsCleanly(t, r, h.mountpoint, [], /no profile for user bob/);
});

test('missing mountpoint', async (t) => {
  const h = await unmounted(t);
  const mp = path.join(h.base, 'no-such-dir');
  const r = await h.cli('mount', h.repo, h.user, mp, '--cache', h.cache);
  await failsCleanly(t, r, mp, [], /mountpoint .*no-such-dir does not exist/);
  await t.throwsAsync(fsp.stat(mp), { code: 'ENOENT' }, 'not created either');
});

test('non-empty mountpoint', async (t) => {
  const h = await unmounted(t);
  await fsp.writeFile(path.join(h.mountpoint, 'precious'), 'keep me');
  const r = await h.cli('mount', h.repo, h.user, h.mountpoint, '--cache', h.cache);
  await failsCleanly(t, r, h.mountpoint, [], /is not empty/);
  t.is(await fsp.readFile(path.join(h.mountpoint, 'precious'), 'utf8'), 'keep me');
});

test('mountpoint busy: a tmpfs is mounted there', async (t) => {
  const h = await unmounted(t);
  await runOk('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'roamfs-test-tmpfs', h.mountpoint]);
  const r = await h.cli('mount', h.repo, h.user, h.mountpoint, '--cache', h.cache);
  await failsCleanly(t, r, h.mountpoint, ['tmpfs'], /mountpoint .* is busy: roamfs-test-tmpfs \(tmpfs\)/);
  // teardown unmounts the tmpfs (it unmounts everything below the test's directory)
});

test('mountpoint busy: another roamfs home is mounted there', async (t) => {
  const h = await mountedHome(t, { prefix: 'roamfs-home-err-', populate: (src) => fsp.writeFile(path.join(src, 'f'), 'first') });
  const second = homeAt(h.base, 'carol', []); // same run dir, so teardown finds both daemons
  const repo2 = path.join(h.base, 'repo2');
  await h.cliOk('init', repo2);
  await h.cliOk('import', repo2, 'carol', h.src);
  const serving = await daemonsFor(h.mountpoint);
  t.deepEqual(serving, [(await h.status()).pid]);
  const r = await second.cli('mount', repo2, 'carol', h.mountpoint, '--cache', path.join(h.base, 'cache2'));
  await failsCleanly(t, r, h.mountpoint, ['fuse.roamfs'], /mountpoint .* is busy: roamfs \(fuse\.roamfs\)/, serving);
  // The first home is untouched and still served by its daemon.
  t.is(await fsp.readFile(h.p('f'), 'utf8'), 'first');
  t.is((await h.status()).user, h.user);
  t.is((await h.logout()).code, 0);
});

test('cache directory in use by another daemon', async (t) => {
  const h = await mountedHome(t, { prefix: 'roamfs-home-err-', populate: (src) => fsp.writeFile(path.join(src, 'f'), 'x') });
  const mp2 = path.join(h.base, 'home2');
  await fsp.mkdir(mp2);
  const { pid } = await h.status();
  const r = await h.cli('mount', h.repo, h.user, mp2, '--cache', h.cache);
  await failsCleanly(t, r, mp2, [], new RegExp(`cache .* is in use by another roamfs daemon \\(pid ${pid}\\)`));
  t.is(await fsp.readFile(h.p('f'), 'utf8'), 'x', 'the running home is unaffected');
  t.is((await h.logout()).code, 0);
});

test('a missing and a corrupt chunk: EIO for those files only, logged with object id and path; the home keeps working', async (t) => {
  t.timeout(3 * 60_000);
  const rnd = (n: number, seed: number) => {
    const b = Buffer.alloc(n);
    let s = seed;
    for (let i = 0; i < n; i++) {
      s = (s * 1103515245 + 12345) >>> 0;
      b[i] = s >>> 24;
    }
    return b;
  };
  const extra = await noPrefetchArgs();
  const h = await mountedHome(t, {
    prefix: 'roamfs-home-err-',
    mount: false,
    mountArgs: extra,
    populate: async (src) => {
      await fsp.mkdir(path.join(src, 'Documents/photos'), { recursive: true });
      await fsp.writeFile(path.join(src, 'Documents/photos/lost.jpg'), rnd(200_000, 1));
      await fsp.writeFile(path.join(src, 'Documents/photos/rotten.jpg'), rnd(200_000, 2));
      await fsp.writeFile(path.join(src, 'Documents/photos/fine.jpg'), rnd(200_000, 3));
      await fsp.writeFile(path.join(src, 'Documents/notes.txt'), 'still readable\n');
    },
  });
  const head = await headCommit(h.repo, h.user);
  const lost = await lookupInRepo(h.repo, head, 'Documents/photos/lost.jpg');
  const rotten = await lookupInRepo(h.repo, head, 'Documents/photos/rotten.jpg');
  if (lost.entry.type !== 'file' || rotten.entry.type !== 'file') throw new Error('expected files');
  const lostId = lost.entry.chunks.at(-1)!.id; // the last chunk: the first ones still read
  const rottenId = rotten.entry.chunks[0]!.id;
  await fsp.rm(objectPath(h.repo, lostId));
  const obj = objectPath(h.repo, rottenId);
  const bytes = await fsp.readFile(obj);
  bytes[Math.floor(bytes.length / 2)]! ^= 0x01;
  await fsp.chmod(obj, 0o600);
  await fsp.writeFile(obj, bytes);

  await h.mount();
  for (const [rel, id] of [['Documents/photos/lost.jpg', lostId], ['Documents/photos/rotten.jpg', rottenId]] as const) {
    for (let attempt = 0; attempt < 2; attempt++) {
      // twice: a failed fetch is not remembered as success, nor does it poison the file
      const cat = await run('cat', [h.p(rel)]);
      t.not(cat.code, 0, `cat ${rel} fails`);
      t.regex(cat.stderr, /Input\/output error/, `cat ${rel}: ${cat.stderr}`);
    }
    t.is((await fsp.stat(h.p(rel))).size, 200_000, 'metadata is fine');
    const lines = await h.logLines();
    const hit = lines.find((l) => JSON.stringify(l).includes(id) && JSON.stringify(l).includes(`/${rel}`));
    t.truthy(hit, `a log line names object ${id} and /${rel}`);
    if (hit) t.log(`log: ${String(hit.msg)}`);
  }
  // Every other file reads; the first chunks of the file that lost its last one read as well.
  t.deepEqual(await fsp.readFile(h.p('Documents/photos/fine.jpg')), rnd(200_000, 3));
  t.is(await fsp.readFile(h.p('Documents/notes.txt'), 'utf8'), 'still readable\n');
  if (lost.entry.chunks.length > 1) {
    const fd = await fsp.open(h.p('Documents/photos/lost.jpg'), 'r');
    try {
      const b = Buffer.alloc(4096);
      const { bytesRead } = await fd.read(b, 0, 4096, 0);
      t.deepEqual(b.subarray(0, bytesRead), rnd(200_000, 1).subarray(0, 4096));
    } finally {
      await fd.close();
    }
  }
  // The home keeps working: write, rename, list; then a clean logout that commits the new file.
  await fsp.writeFile(h.p('Documents/new.txt'), 'written after the errors\n');
  await fsp.rename(h.p('Documents/new.txt'), h.p('Documents/kept.txt'));
  t.true((await fsp.readdir(h.p('Documents'))).includes('kept.txt'));
  const st = await h.status();
  t.is(st.state, 'mounted');
  const lo = await h.logout();
  t.is(lo.code, 0, lo.stderr);
  t.deepEqual(await mountsAt(h.mountpoint), []);
  // The new file is in the new head (export would stop at the damaged files: read the tree).
  const newHead = await headCommit(h.repo, h.user);
  t.not(newHead, head, 'logout committed');
  const kept = await lookupInRepo(h.repo, newHead, 'Documents/kept.txt');
  t.is(kept.entry.type, 'file');
  t.false((await mountTable()).some((m) => m.mountpoint.startsWith(h.base)), 'nothing left mounted');
});
