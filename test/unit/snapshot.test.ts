import test from 'ava';
import { constants as C } from 'node:fs';
import { ManualClock } from '../../src/core/clock.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { Repository } from '../../src/repository/repository.js';
import type { TreeEntry } from '../../src/repository/objects.js';
import { OverlayVfs } from '../../src/vfs/overlay-vfs.js';
import { modelOfTree, modelOfVfs, normaliseLinks, type Model } from '../helpers/profile-model.js';
import { coreSession } from '../helpers/core-session.js';

const T0 = 1_700_000_000_000_000_000n;

async function setup(t: import('ava').ExecutionContext) {
  const clock = new ManualClock();
  const remote = await Repository.init(new MemoryBackend(clock));
  const data = Buffer.from('committed content\n'.repeat(1000));
  const f = async (name: string, content: Buffer): Promise<TreeEntry> => ({
    name, type: 'file', mode: 0o644, uid: 1000, gid: 1000, mtimeNs: T0, size: content.length,
    chunks: content.length ? [{ id: (await remote.putChunk(content)).id, size: content.length }] : [],
  });
  const sub = await remote.putTree([await f('inner.txt', Buffer.from('inner')), await f('big.bin', data)]);
  const root = {
    tree: await remote.putTree([
      await f('top.txt', Buffer.from('top')),
      { name: 'dir', type: 'dir', tree: sub, mode: 0o755, uid: 1000, gid: 1000, mtimeNs: T0 },
      { name: 'ln', type: 'symlink', target: 'top.txt', mode: 0o777, uid: 1000, gid: 1000, mtimeNs: T0 },
    ]),
    mode: 0o700, uid: 1000, gid: 1000, mtimeNs: T0,
  };
  const c = await remote.putCommit({ parents: [], root, time: 1, host: 'h', session: 's', message: 'import', stats: { files: 3, bytes: 0 } });
  await remote.moveHead('alice', null, c, { time: 1, host: 'h', session: 's' });

  const { vfs, log, snap, commit } = await coreSession(t, remote, clock, { prefix: 'roamfs-snap-' });
  return { clock, remote, vfs, log, snap, commit };
}

async function writeFile(vfs: OverlayVfs, p: string, data: Buffer, flags = C.O_WRONLY | C.O_CREAT | C.O_TRUNC) {
  const fh = await vfs.create(p, 0o644, flags);
  await vfs.write(fh, data, data.length, 0);
  await vfs.release(fh);
}

test('nothing changed: no snapshot', async (t) => {
  const { snap, log } = await setup(t);
  t.is(await snap.snapshotOnce(), null);
  t.deepEqual(await log.pending(), []);
});

test('a snapshot records creates, edits, renames and deletes; commit makes the head equal it', async (t) => {
  const { vfs, snap, commit, remote, log, clock } = await setup(t);
  clock.advance(1000);
  await writeFile(vfs, '/new.txt', Buffer.from('hello'));
  await vfs.mkdir('/newdir', 0o750);
  await writeFile(vfs, '/newdir/a', Buffer.from('a'));
  await vfs.rename('/dir', '/moved'); // a whole directory, never read
  await vfs.unlink('/top.txt');
  await vfs.chmod('/moved', 0o700);
  const expected = await modelOfVfs(vfs);
  const readsBefore = vfs.stats().remoteObjects;
  const r = await snap.snapshotOnce();
  t.truthy(r);
  // Snapshotting the moved directory did not fetch anything from the repository.
  t.is(vfs.stats().remoteObjects, readsBefore);
  const pending = await log.pending();
  t.is(pending.length, 1);
  const full = await log.get(pending[0]!.seq);
  t.true(full.changes.some((c) => c.op === 'put' && c.path === 'moved' && c.entry.type === 'dir'));
  t.true(full.changes.some((c) => c.op === 'delete' && c.path === 'dir'));
  t.true(full.changes.some((c) => c.op === 'delete' && c.path === 'top.txt'));
  await commit();
  const head = await remote.getCommit((await remote.requireHead('alice')).commit);
  t.deepEqual(normaliseLinks(await modelOfTree(remote, head.root)), normaliseLinks(expected));
});

test('a directory renamed and a file renamed without ever being read are committed (objects touched in the repository, no content fetched)', async (t) => {
  const { vfs, snap, commit, remote, clock } = await setup(t);
  const before = await modelOfTree(remote, (await remote.getCommit((await remote.requireHead('alice')).commit)).root);
  clock.advance(1000);
  const readsBefore = vfs.stats().remoteObjects;
  await vfs.rename('/dir', '/moved'); // never listed: its tree is only in the repository
  await vfs.rename('/top.txt', '/renamed.txt'); // never opened
  t.truthy(await snap.snapshotOnce());
  await commit();
  // Only the root tree was read at mount; the rename, the snapshot and the upload read nothing.
  t.is(vfs.stats().remoteObjects, readsBefore);
  const after = await modelOfTree(remote, (await remote.getCommit((await remote.requireHead('alice')).commit)).root);
  const want: Model = {};
  for (const [k, v] of Object.entries(before)) {
    if (k === 'top.txt') want['renamed.txt'] = v;
    else if (k === 'dir' || k.startsWith('dir/')) want[`moved${k.slice(3)}`] = v;
    else want[k] = v;
  }
  t.deepEqual(after, want);
});

test('writes issued after the snapshot instant are not in it, and open handles keep working', async (t) => {
  const { vfs, snap, commit, remote, clock } = await setup(t);
  clock.advance(1000);
  const fh = await vfs.create('/f', 0o644, C.O_RDWR | C.O_CREAT);
  await vfs.write(fh, Buffer.from('before'), 6, 0);
  const expected = await modelOfVfs(vfs);
  const p = snap.snapshotOnce(); // the instant happens synchronously inside this call
  const late = vfs.write(fh, Buffer.from('AFTER!'), 6, 0);
  await Promise.all([p, late]);
  await commit();
  const head = await remote.getCommit((await remote.requireHead('alice')).commit);
  t.deepEqual(normaliseLinks(await modelOfTree(remote, head.root)), normaliseLinks(expected));
  const buf = Buffer.alloc(6);
  await vfs.read(fh, buf, 6, 0);
  t.is(buf.toString(), 'AFTER!');
  await vfs.release(fh);
  // The late write is in the next snapshot.
  clock.advance(1000);
  const expected2 = await modelOfVfs(vfs);
  t.truthy(await snap.snapshotOnce());
  await commit();
  const head2 = await remote.getCommit((await remote.requireHead('alice')).commit);
  t.deepEqual(normaliseLinks(await modelOfTree(remote, head2.root)), normaliseLinks(expected2));
});

/** Seeded random workload: every commit must equal the model at the last snapshot. */
test('seeded random workload: each commit equals the last snapshot exactly', async (t) => {
  const { vfs, snap, commit, remote, clock } = await setup(t);
  let seed = 12345;
  const rnd = (n: number) => {
    // mulberry32
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) % n;
  };
  const names = ['a', 'b', 'c', 'd'];
  const dirs = ['/', '/dir', '/x', '/x/y'];
  await vfs.mkdir('/x', 0o755);
  await vfs.mkdir('/x/y', 0o755);
  const pick = <T,>(xs: readonly T[]) => xs[rnd(xs.length)]!;
  const at = (d: string, n: string) => (d === '/' ? `/${n}` : `${d}/${n}`);
  let lastSnapshot: Model | null = null;
  let commits = 0;
  for (let i = 0; i < 800; i++) {
    clock.advance(1 + rnd(5000));
    const p = at(pick(dirs), pick(names));
    const q = at(pick(dirs), pick(names));
    try {
      switch (rnd(10)) {
        case 0:
        case 1:
          await writeFile(vfs, p, Buffer.alloc(rnd(300_000), i % 251));
          break;
        case 2: {
          const fh = await vfs.open(p, C.O_WRONLY);
          await vfs.write(fh, Buffer.from(`edit${i}`), 5, rnd(1000));
          await vfs.release(fh);
          break;
        }
        case 3:
          await vfs.truncate(p, rnd(2000));
          break;
        case 4:
          await vfs.rename(p, q);
          break;
        case 5:
          await vfs.unlink(p);
          break;
        case 6:
          await vfs.chmod(p, pick([0o600, 0o644, 0o755]));
          break;
        case 7:
          await vfs.symlink(`target${i}`, p);
          break;
        case 8:
          lastSnapshot = await modelOfVfs(vfs);
          await snap.snapshotOnce();
          break;
        case 9:
          if (await commit()) commits++;
          if (lastSnapshot) {
            const head = await remote.getCommit((await remote.requireHead('alice')).commit);
            t.deepEqual(normaliseLinks(await modelOfTree(remote, head.root)), normaliseLinks(lastSnapshot), `after op ${i}`);
          }
          break;
      }
    } catch (err) {
      const code = (err as { errno?: string }).errno;
      if (!['ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOTEMPTY', 'EINVAL', 'ELOOP'].includes(code ?? '')) throw err;
    }
  }
  const final = await modelOfVfs(vfs);
  await snap.snapshotOnce();
  await commit();
  const head = await remote.getCommit((await remote.requireHead('alice')).commit);
  t.deepEqual(normaliseLinks(await modelOfTree(remote, head.root)), normaliseLinks(final));
  t.true(commits > 10, `commits: ${commits}`);
});
