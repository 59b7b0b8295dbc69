/**
 * Bad input to a mounted home's local state and repository, on real mounts (the daemon is a
 * child process; this process only uses async fs and child processes on the mountpoints):
 *
 *  (a) a damaged change log (CACHE/log, LevelDB) found at mount time;
 *  (b) a full local disk (the cache on a 16 MiB tmpfs);
 *  (c) a repository that vanishes mid-commit (the repository served by a FUSE passthrough
 *      process that is SIGKILLed: every access then fails with ENOTCONN, as a dead NAS mount).
 *
 * Every test has its own temp dirs, cache and ROAMFS_RUN_DIR, and undoes everything in
 * t.teardown (SIGKILL leftover daemons, fusermount -u -z, umount -l the tmpfs).
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { watch } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Homes, control, isMounted, newHome, openRepo, roamfs, run, sleep, status, waitFor, type Daemon, type HomeSpec } from '../helpers/crash-daemon.js';
import { diffModels, sameModel, treeModel, walkDir, type Model } from '../helpers/crash-model.js';

const CHILD_MOUNT = fileURLToPath(new URL('../helpers/child-mount.js', import.meta.url));

async function usable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (tmpfs and bind mounts, root-only control socket)';
  try {
    await fsp.access('/dev/fuse');
  } catch {
    return '/dev/fuse is not accessible';
  }
  return undefined;
}
const why = await usable();
const rootTest = test.serial;
// These tests need root and /dev/fuse (as CI has): without them they fail, never skip.
if (why) test('crash bad-input tests can run here', (t) => t.fail(why));

function setup(t: ExecutionContext): Homes {
  const homes = new Homes();
  t.teardown(() => homes.cleanup((s) => t.log(s)));
  return homes;
}

async function headModel(repoDir: string, user = 'alice'): Promise<Model> {
  const repo = await openRepo(repoDir);
  const head = await repo.requireHead(user);
  return treeModel(repo, (await repo.getCommit(head.commit)).root);
}

async function snapshot(spec: HomeSpec): Promise<number | null> {
  return ((await control(spec.runDir, spec.mountpoint, 'snapshot')) as { seq: number | null }).seq;
}

/** Every file below dir with its size and mtime: to show a repository was not touched. */
async function listing(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(d: string): Promise<void> {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const s = await fsp.lstat(p);
      out.push(`${path.relative(dir, p)} ${e.isDirectory() ? 'd' : s.size} ${s.mtimeMs}`);
      if (e.isDirectory()) await walk(p);
    }
  }
  await walk(dir);
  return out.sort();
}

/** LevelDB files of a change log by kind, newest (highest number) first. */
async function logFiles(logDir: string, ext: string): Promise<string[]> {
  return (await fsp.readdir(logDir))
    .filter((n) => n.endsWith(ext))
    .sort()
    .reverse()
    .map((n) => path.join(logDir, n));
}

async function logoutOk(t: ExecutionContext, homes: Homes, spec: HomeSpec, d: Daemon): Promise<Model> {
  const before = await walkDir(spec.mountpoint, { content: true });
  const r = await roamfs(spec.runDir, ['logout', spec.mountpoint]);
  t.is(r.code, 0, r.stderr);
  await homes.waitExit(d);
  homes.fuseMounts.delete(spec.mountpoint);
  return before;
}

async function exportEquals(t: ExecutionContext, spec: HomeSpec, expected: Model, where: string): Promise<void> {
  const exp = path.join(path.dirname(spec.mountpoint), `export-${Date.now()}`);
  const r = await roamfs(spec.runDir, ['export', spec.repo, spec.user, exp]);
  t.is(r.code, 0, r.stderr);
  const d = diffModels(expected, await walkDir(exp, { content: true }));
  t.deepEqual(d, [], `${where}: export differs from the home at logout`);
  const f = await roamfs(spec.runDir, ['fsck', spec.repo]);
  t.is(f.code, 0, `fsck: ${f.stderr}`);
}

// ---- (a) a damaged change log ---------------------------------------------------------------

rootTest('bad input: a damaged change log either refuses the mount in one clear line, or mounts without losing anything committed', async (t) => {
  const homes = setup(t);
  const spec = await newHome(homes);
  const mp = spec.mountpoint;
  // Session 1 commits c1. Sessions 2 and 3 (no idle commit) each leave one unshipped snapshot;
  // the remounts move the older ones from LevelDB's .log into .ldb tables.
  let d = await homes.mount(spec, 'daemon');
  await fsp.writeFile(path.join(mp, 'c1'), 'committed\n');
  await snapshot(spec);
  await waitFor('the commit', () => status(spec), (s) => s.pendingSnapshots === 0 && s.commits >= 1);
  await homes.kill(d);
  await homes.lazyUnmount(mp);
  const committed = await headModel(spec.repo);
  const durable: Model[] = [];
  for (const name of ['u1', 'u2']) {
    d = await homes.mount({ ...spec, idle: '3600s' }, 'daemon');
    await fsp.writeFile(path.join(mp, name), `${name}\n`);
    t.truthy(await snapshot(spec));
    durable.push(await walkDir(mp, { content: true }));
    await homes.kill(d);
    await homes.lazyUnmount(mp);
  }
  const pristine = path.join(spec.dir, 'cache-pristine');
  const pristineRepo = path.join(spec.dir, 'repo-pristine');
  await fsp.cp(spec.cache, pristine, { recursive: true });
  await fsp.cp(spec.repo, pristineRepo, { recursive: true });

  const damages: Array<{ name: string; damage: (logDir: string) => Promise<void> }> = [
    { name: 'newest .log truncated to half', damage: async (l) => { const f = (await logFiles(l, '.log'))[0]!; await fsp.truncate(f, Math.floor((await fsp.stat(f)).size / 2)); } },
    { name: 'newest .log truncated to 0', damage: async (l) => fsp.truncate((await logFiles(l, '.log'))[0]!, 0) },
    { name: 'garbage in the newest .log', damage: async (l) => overwrite((await logFiles(l, '.log'))[0]!, 20) },
    { name: 'newest .ldb truncated to half', damage: async (l) => { const f = (await logFiles(l, '.ldb'))[0]!; await fsp.truncate(f, Math.floor((await fsp.stat(f)).size / 2)); } },
    { name: 'garbage in the newest .ldb', damage: async (l) => overwrite((await logFiles(l, '.ldb'))[0]!, 0) },
    { name: 'newest .ldb deleted', damage: async (l) => fsp.rm((await logFiles(l, '.ldb'))[0]!) },
    { name: 'garbage MANIFEST', damage: async (l) => { const m = (await fsp.readdir(l)).find((n) => n.startsWith('MANIFEST-'))!; await fsp.writeFile(path.join(l, m), Buffer.from('not a manifest, not at all'.repeat(4))); } },
    { name: 'CURRENT deleted', damage: async (l) => fsp.rm(path.join(l, 'CURRENT')) },
  ];
  const outcomes: string[] = [];
  for (const { name, damage } of damages) {
    const s: HomeSpec = { ...spec, cache: path.join(spec.dir, `cache-${outcomes.length}`), repo: path.join(spec.dir, `repo-${outcomes.length}`), idle: '3600s' };
    await fsp.cp(pristine, s.cache, { recursive: true });
    await fsp.cp(pristineRepo, s.repo, { recursive: true });
    await damage(path.join(s.cache, 'log'));
    const repoBefore = await listing(s.repo);
    const r = await roamfs(s.runDir, ['mount', s.repo, s.user, mp, '--cache', s.cache, '--snapshot-interval', 'off', '--idle', '3600s']);
    homes.fuseMounts.add(mp);
    if (r.code !== 0) {
      const lines = r.stderr.trim().split('\n');
      t.is(lines.length, 1, `${name}: one line, got ${r.stderr}`);
      t.regex(lines[0]!, new RegExp(`^roamfs: change log ${path.join(s.cache, 'log')}`), name);
      t.regex(lines[0]!, /move it aside \(mv .*\.damaged\) and mount again/, name);
      t.false(await isMounted(mp), `${name}: nothing mounted`);
      t.deepEqual(await listing(s.repo), repoBefore, `${name}: repository untouched`);
      // Doing what the message says mounts the last commit.
      await fsp.rename(path.join(s.cache, 'log'), path.join(s.cache, 'log.damaged'));
      const d2 = await homes.mount(s, 'cli');
      t.deepEqual(diffModels(committed, await walkDir(mp, { content: true })), [], `${name}: after moving the log aside`);
      await homes.kill(d2);
      await homes.lazyUnmount(mp);
      outcomes.push(`${name}: refused (${lines[0]!.replace(/\(its unshipped.*$/, '').trim()})`);
      continue;
    }
    const pid = Number(/daemon pid (\d+)/.exec(r.stdout)?.[1]);
    homes.pids.add(pid);
    const dm: Daemon = { pid, spec: s, exited: null };
    const seen = await walkDir(mp, { content: true });
    const which = [committed, ...durable].findIndex((m) => sameModel(m, seen));
    t.not(which, -1, `${name}: the home is none of the committed or durable states:\n${diffModels(durable[1]!, seen).join('\n')}`);
    const st = await status(s);
    const before = await logoutOk(t, homes, s, dm);
    await exportEquals(t, s, before, name);
    outcomes.push(`${name}: mounted ${['the last commit', 'snapshot 2 (one snapshot lost)', 'snapshot 3 (nothing lost)'][which]}${st.lastError ? `; status lastError: ${st.lastError.message}` : ''}`);
  }
  for (const o of outcomes) t.log(o);
});

async function overwrite(file: string, at: number): Promise<void> {
  const h = await fsp.open(file, 'r+');
  try {
    const size = (await h.stat()).size;
    await h.write(Buffer.alloc(Math.min(64, Math.max(1, size - at)), 0x5a), 0, undefined, Math.min(at, Math.max(0, size - 1)));
  } finally {
    await h.close();
  }
}

rootTest('bad input: a change log that lost its end after a commit mounts the head, not an older snapshot', async (t) => {
  const homes = setup(t);
  const spec = await newHome(homes);
  const mp = spec.mountpoint;
  // Snapshot 1 stays unshipped; the remount moves it into an .ldb table.
  let d = await homes.mount({ ...spec, idle: '3600s' }, 'daemon');
  await fsp.writeFile(path.join(mp, 'a1'), 'a1\n');
  t.is(await snapshot(spec), 1);
  await homes.kill(d);
  await homes.lazyUnmount(mp);
  // Snapshot 2 is committed together with 1; both the snapshot and "shipped" go to the new .log.
  d = await homes.mount(spec, 'daemon');
  await fsp.writeFile(path.join(mp, 'b2'), 'b2\n');
  t.is(await snapshot(spec), 2);
  await waitFor('the commit', () => status(spec), (s) => s.pendingSnapshots === 0 && s.commits >= 1);
  await homes.kill(d);
  await homes.lazyUnmount(mp);
  const committed = await headModel(spec.repo);
  t.truthy(committed.get('b2'));
  await fsp.truncate((await logFiles(path.join(spec.cache, 'log'), '.log'))[0]!, 0);
  d = await homes.mount(spec, 'cli');
  t.deepEqual(diffModels(committed, await walkDir(mp, { content: true })), [], 'the home must not be older than the last commit');
  const before = await logoutOk(t, homes, spec, d);
  await exportEquals(t, spec, before, 'lost end');
});

// ---- (b) a full local disk ------------------------------------------------------------------

async function tmpfs(homes: Homes, dir: string, size: string): Promise<void> {
  await fsp.mkdir(dir, { recursive: true });
  await run('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  homes.otherMounts.push(dir);
}

/** Fill the file system of `dir` with a ballast file until ENOSPC. */
async function fill(file: string): Promise<number> {
  const h = await fsp.open(file, 'a');
  let n = 0;
  try {
    const buf = Buffer.alloc(64 << 10, 1);
    for (;;) {
      try {
        await h.write(buf);
        n += buf.length;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        break;
      }
    }
    // The last pages (tmpfs allocates 4 KiB at a time).
    const small = Buffer.alloc(4096, 1);
    for (;;) {
      try {
        await h.write(small);
      } catch {
        break;
      }
    }
  } finally {
    await h.close();
  }
  return n;
}

rootTest('bad input: a full local disk gives ENOSPC (not EIO), keeps the home readable, reports and retries the snapshot, and loses nothing once space is freed', async (t) => {
  const homes = setup(t);
  const base = await newHome(homes);
  const fsDir = path.join(base.dir, 'cachefs');
  await tmpfs(homes, fsDir, '16m');
  const spec: HomeSpec = { ...base, cache: path.join(fsDir, 'cache'), snapshotInterval: '300ms', idle: '3600s' };
  const mp = spec.mountpoint;
  let d = await homes.mount(spec, 'cli');
  const a = await fsp.readFile(path.join(mp, 'docs', 'a')); // now in the local cache
  const w1 = Buffer.alloc(100 << 10, 7);
  await fsp.writeFile(path.join(mp, 'w1'), w1);
  // Two modes of docs/b, both snapshotted: their trees then exist in the local store, so a
  // later snapshot that only toggles the mode needs space for the change log alone.
  await fsp.chmod(path.join(mp, 'docs', 'b'), 0o600);
  await snapshot(spec);
  await fsp.chmod(path.join(mp, 'docs', 'b'), 0o644);
  await snapshot(spec);

  // Fill the disk; writes beyond it fail with ENOSPC.
  const ballast = path.join(fsDir, 'ballast');
  await fill(ballast);
  const big = path.join(mp, 'big');
  let werr: NodeJS.ErrnoException | null = null;
  const h = await fsp.open(big, 'w');
  try {
    for (let i = 0; i < 64; i++) await h.write(Buffer.alloc(256 << 10, i));
  } catch (err) {
    werr = err as NodeJS.ErrnoException;
  } finally {
    await h.close().catch(() => {});
  }
  t.is(werr?.code, 'ENOSPC', `write on a full cache disk: ${werr?.message}`);
  // Still readable: listings, files written this session, committed files already cached.
  t.true((await fsp.readdir(mp)).includes('w1'));
  t.true((await fsp.readFile(path.join(mp, 'w1'))).equals(w1));
  t.true((await fsp.readFile(path.join(mp, 'docs', 'a'))).equals(a));
  // The timer's snapshot fails for lack of space: reported, and retried.
  const s1 = await waitFor('a snapshot error', () => status(spec), (s) => /no space/i.test(s.lastError?.message ?? ''));
  await waitFor('a retry', () => status(spec), (s) => (s.lastError?.time ?? 0) > s1.lastError!.time);
  const cli = await roamfs(spec.runDir, ['snapshot', mp]);
  t.not(cli.code, 0);
  t.regex(cli.stderr, /no space left on device/);
  t.log(`status lastError: ${s1.lastError!.message}`);

  // Make the change log itself hit ENOSPC: drop the partial file (its upper data frees
  // space), fill again, then snapshots that need no new objects until the log's append fails.
  await fsp.unlink(big);
  await fill(ballast);
  let logFull = '';
  let mode = 0o600;
  for (let i = 0; i < 300 && !logFull; i++) {
    await fsp.chmod(path.join(mp, 'docs', 'b'), mode);
    mode = mode === 0o600 ? 0o644 : 0o600;
    await snapshot(spec).catch((err: Error) => {
      if (/change log/.test(err.message)) logFull = err.message;
    });
  }
  t.log(logFull ? `change log full: ${logFull}` : 'the change log never ran out of space (not exercised)');

  // Free the space: the snapshot goes through, later ones are durable too.
  await fsp.rm(ballast);
  await waitFor('a snapshot after freeing space', () => status(spec), (s) => !s.dirty, 20_000);
  await fsp.writeFile(path.join(mp, 'after'), 'written after the disk was freed\n');
  t.truthy(await snapshot(spec));
  const expected = await walkDir(mp, { content: true });
  // Durable means durable: a crash now must not lose it (LevelDB drops records written after
  // a torn one unless the log is reopened after the failed write).
  await homes.kill(d);
  await homes.lazyUnmount(mp);
  d = await homes.mount(spec, 'cli');
  t.deepEqual(diffModels(expected, await walkDir(mp, { content: true })), [], 'remount after the crash');
  const before = await logoutOk(t, homes, spec, d);
  await exportEquals(t, spec, before, 'disk full');
});

rootTest('full cache disk: committed files not yet in the cache are still readable (served from memory, not cached)', async (t) => {
  const homes = setup(t);
  const base = await newHome(homes);
  const fsDir = path.join(base.dir, 'cachefs');
  await tmpfs(homes, fsDir, '16m');
  const spec: HomeSpec = { ...base, cache: path.join(fsDir, 'cache'), snapshotInterval: 'off', idle: '3600s' };
  await homes.mount(spec, 'cli');
  await fill(path.join(fsDir, 'ballast'));
  // ChunkLoader keeps a verified chunk in memory when the cache disk cannot take it.
  const c = await fsp.readFile(path.join(spec.mountpoint, 'music', 'c')).catch((err: NodeJS.ErrnoException) => {
    t.log(`read of an uncached committed file on a full cache disk: ${err.code}`);
    throw err;
  });
  t.is(c.length, 300 << 10);
});

// ---- (c) a repository that vanishes mid-commit --------------------------------------------

interface RepoServer {
  child: ChildProcess;
  exited: Promise<void>;
}

/** Serve `backing` at `mnt` through a FUSE passthrough process (test/helpers/child-mount.ts). */
async function serveRepo(homes: Homes, mnt: string, backing: string): Promise<RepoServer> {
  const child = spawn(process.execPath, [CHILD_MOUNT, '--mnt', mnt, '--backing', backing], { stdio: ['pipe', 'pipe', 'pipe'] });
  homes.pids.add(child.pid!);
  homes.fuseMounts.add(mnt);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    let err = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      if (out.includes('ready\n')) resolve();
    });
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (err += s));
    void exited.then(() => reject(new Error(`repository server exited: ${err}`)));
  });
  return { child, exited };
}

async function killRepo(homes: Homes, r: RepoServer): Promise<void> {
  r.child.kill('SIGKILL');
  await r.exited;
  homes.pids.delete(r.child.pid!);
  // The dead FUSE mount stays in place (ENOTCONN), as a dead NAS mount does.
}

rootTest('bad input: a repository that vanishes mid-commit keeps the desktop usable, commits when it is back, and a logout while it is gone keeps everything in the local log', async (t) => {
  const homes = setup(t);
  const base = await newHome(homes, { repo: undefined });
  // Move the imported repository behind a FUSE passthrough: REPO (served) <- backing.
  const backing = path.join(base.dir, 'repo-backing');
  await fsp.rename(base.repo, backing);
  await fsp.mkdir(base.repo);
  let server = await serveRepo(homes, base.repo, backing);
  const spec: HomeSpec = { ...base, snapshotInterval: '300ms', idle: '300ms', flushTimeoutMs: 3000 };
  const mp = spec.mountpoint;
  const t0 = Date.now();
  const mark = (what: string) => t.log(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  let d = await homes.mount(spec, 'daemon');

  // A commit with many objects; the repository dies at its first upload.
  const big = Buffer.alloc(6 << 20);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
  let killedAt = '';
  const w = watch(path.join(backing, 'tmp'), (_e, f) => {
    if (!killedAt) {
      killedAt = String(f);
      void killRepo(homes, server);
    }
  });
  await fsp.writeFile(path.join(mp, 'big'), big);
  await snapshot(spec);
  await waitFor('the repository to die mid-commit', async () => killedAt, (k) => k !== '', 20_000);
  w.close();
  await server.exited;

  mark('repository killed mid-commit');
  // The desktop stays usable: writes, reads, renames, snapshots.
  await fsp.writeFile(path.join(mp, 'offline1'), 'written while the repository is gone\n');
  await fsp.mkdir(path.join(mp, 'offline-dir'));
  await fsp.rename(path.join(mp, 'offline1'), path.join(mp, 'offline-dir', 'offline1'));
  t.is(await fsp.readFile(path.join(mp, 'offline-dir', 'offline1'), 'utf8'), 'written while the repository is gone\n');
  t.true((await fsp.readFile(path.join(mp, 'big'))).equals(big), 'big reads back'); // (not deepEqual: ava compares buffers byte by byte, slowly)
  await snapshot(spec);
  const down = await waitFor('status to show the repository unreachable', () => status(spec), (s) => !s.repositoryReachable && s.lastError !== null);
  t.true(down.pendingSnapshots >= 1);
  t.log(`while unreachable: pending ${down.pendingSnapshots}, lastError: ${down.lastError!.message}`);

  mark('status shows it unreachable');
  // Back: the pending snapshots commit.
  await homes.lazyUnmount(spec.repo);
  server = await serveRepo(homes, spec.repo, backing);
  await waitFor('the pending snapshots to commit', () => status(spec), (s) => s.repositoryReachable && s.pendingSnapshots === 0 && !s.dirty, 60_000);
  t.deepEqual(diffModels(await walkDir(mp, { content: true }), await headModel(spec.repo)), [], 'head after the repository came back');

  mark('committed after it came back');
  // Gone again; a logout then fails, saying so, and keeps everything in the local log.
  await killRepo(homes, server);
  await fsp.writeFile(path.join(mp, 'offline2'), 'written before a logout without repository\n');
  const atLogout = await walkDir(mp, { content: true });
  const r = await roamfs(spec.runDir, ['logout', mp]);
  t.not(r.code, 0);
  t.regex(r.stderr, /^roamfs: the repository could not be reached: \d+ snapshot\(s\) stay in the local log at .* and will be committed at the next login/);
  t.is(r.stderr.trim().split('\n').length, 1);
  await homes.waitExit(d);
  t.false(await isMounted(mp));
  homes.fuseMounts.delete(mp);

  mark('logout failed as expected');
  // The next login on this machine replays the log: nothing is lost.
  await homes.lazyUnmount(spec.repo);
  server = await serveRepo(homes, spec.repo, backing);
  d = await homes.mount(spec, 'daemon');
  t.deepEqual(diffModels(atLogout, await walkDir(mp, { content: true })), [], 'the next mount shows the home as it was at the failed logout');
  t.true((await status(spec)).recoveredSnapshots >= 1);
  await waitFor('the replayed snapshots to commit', () => status(spec), (s) => s.pendingSnapshots === 0, 30_000);
  mark('replayed snapshots committed');
  const before = await logoutOk(t, homes, spec, d);
  t.deepEqual(diffModels(atLogout, before), []);
  await exportEquals(t, spec, before, 'repository vanished');
  await sleep(0);
});
