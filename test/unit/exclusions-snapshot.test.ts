/**
 * Exclusions in the core (overlay + snapshotter) and the quota's accounting, without a kernel:
 * excluded paths work in the session, are hidden when committed ones exist, never make the
 * snapshotter dirty, never appear in a snapshot or a commit; moves across the boundary;
 * usage counted from the trees plus a running total, EDQUOT beyond the hard limit.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { constants as C } from 'node:fs';
import { ManualClock } from '../../src/core/clock.js';
import { DEFAULT_EXCLUDES, Exclusions } from '../../src/core/exclusions.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { Repository } from '../../src/repository/repository.js';
import type { TreeEntry } from '../../src/repository/objects.js';
import { OverlayVfs } from '../../src/vfs/overlay-vfs.js';
import { FsError } from '../../src/vfs/types.js';
import type { QuotaLimits } from '../../src/overlay/usage.js';
import { modelOfTree } from '../helpers/profile-model.js';
import { coreSession } from '../helpers/core-session.js';
import { readText as read } from '../helpers/small-profile.js';

const T0 = 1_700_000_000_000_000_000n;
const A = { mode: 0o755, uid: 1000, gid: 1000, mtimeNs: T0 };

/** The committed profile: excluded things from an import (.cache, a Chromium cache, __pycache__) next to real data. */
async function setup(t: ExecutionContext, o: { quota?: QuotaLimits; exclude?: readonly string[] } = {}) {
  const clock = new ManualClock();
  const remote = await Repository.init(new MemoryBackend(clock));
  const file = async (name: string, content: string): Promise<TreeEntry> => {
    const data = Buffer.from(content);
    return { name, type: 'file', mode: 0o644, uid: 1000, gid: 1000, mtimeNs: T0, size: data.length, chunks: data.length ? [{ id: (await remote.putChunk(data)).id, size: data.length }] : [] };
  };
  const dir = async (name: string, entries: TreeEntry[]): Promise<TreeEntry> => ({ name, type: 'dir', tree: await remote.putTree(entries), ...A });
  const root = {
    tree: await remote.putTree([
      await dir('.cache', [await dir('old', [await file('f', 'cached bytes')])]),
      await dir('.config', [await dir('chromium', [await dir('Default', [await file('Bookmarks', 'bookmarks'), await dir('Cache', [await file('data', 'cache data')])])])]),
      await dir('Docs', [await file('a.txt', 'a'.repeat(100))]),
      await dir('proj', [await file('m.py', 'print(1)\n'), await dir('__pycache__', [await file('m.pyc', 'bytecode')])]),
    ]),
    ...A,
    mode: 0o700,
  };
  const c = await remote.putCommit({ parents: [], root, time: 1, host: 'h', session: 's', message: 'import', stats: { files: 5, bytes: 0 } });
  await remote.moveHead('alice', null, c, { time: 1, host: 'h', session: 's' });
  const { vfs, log, snap, commit } = await coreSession(t, remote, clock, {
    prefix: 'roamfs-excl-',
    vfs: { exclusions: new Exclusions(o.exclude ?? DEFAULT_EXCLUDES), ...(o.quota ? { quota: o.quota } : {}) },
  });
  const head = async () => modelOfTree(remote, (await remote.getCommit((await remote.requireHead('alice')).commit)).root);
  return { clock, remote, vfs, log, snap, commit, head };
}

async function write(vfs: OverlayVfs, p: string, data: string | Buffer, flags = C.O_WRONLY | C.O_CREAT | C.O_TRUNC): Promise<void> {
  const b = Buffer.from(data);
  const fh = await vfs.create(p, 0o644, flags);
  try {
    await vfs.write(fh, b, b.length, 0);
  } finally {
    await vfs.release(fh);
  }
}

const names = async (vfs: OverlayVfs, p: string) => (await vfs.readdir(p)).map((e) => e.name).sort();

async function mkdirs(vfs: OverlayVfs, p: string): Promise<void> {
  const parts = p.split('/').filter(Boolean);
  for (let i = 1; i <= parts.length; i++) await vfs.mkdir('/' + parts.slice(0, i).join('/'), 0o755).catch((e: FsError) => (e.errno === 'EEXIST' ? undefined : Promise.reject(e)));
}

test('committed entries at excluded paths are hidden at mount; DIR/** keeps DIR', async (t) => {
  const { vfs } = await setup(t);
  t.deepEqual(await names(vfs, '/'), ['.cache', '.config', 'Docs', 'proj']);
  t.deepEqual(await names(vfs, '/.cache'), [], '.cache starts empty');
  t.deepEqual(await names(vfs, '/.config/chromium/Default'), ['Bookmarks'], 'the Chromium cache is gone, the bookmarks are not');
  t.deepEqual(await names(vfs, '/proj'), ['m.py']);
  t.is(await read(vfs, '/.config/chromium/Default/Bookmarks'), 'bookmarks');
});

test('writing only to excluded paths works and leaves the snapshotter clean: no snapshot, no change', async (t) => {
  const { vfs, snap, log } = await setup(t);
  await write(vfs, '/.cache/x', 'x');
  await mkdirs(vfs, '/.config/chromium/Default/Cache/Cache_Data');
  await write(vfs, '/.config/chromium/Default/Cache/Cache_Data/y', 'y');
  await write(vfs, '/proj/__pycache__', 'not even a directory');
  await vfs.unlink('/proj/__pycache__');
  await mkdirs(vfs, '/.cache/a/b');
  await vfs.rename('/.cache/a', '/.cache/c');
  await vfs.chmod('/.cache/x', 0o600);
  t.is(await read(vfs, '/.cache/x'), 'x');
  t.is(await read(vfs, '/.config/chromium/Default/Cache/Cache_Data/y'), 'y');
  t.false(snap.dirty, 'excluded changes do not make the snapshotter dirty');
  t.is(await snap.snapshotOnce(), null);
  t.deepEqual(await log.pending(), []);
});

test('a snapshot with real changes leaves excluded entries out; the commit keeps what the repository had there', async (t) => {
  const { vfs, snap, log, commit, head } = await setup(t);
  await write(vfs, '/.cache/x', 'x');
  await write(vfs, '/Docs/b.txt', 'b');
  await mkdirs(vfs, '/.config/chromium/Default/Cache');
  await write(vfs, '/.config/chromium/Default/Cache/y', 'y');
  await write(vfs, '/.config/chromium/Default/Bookmarks', 'new bookmarks');
  await write(vfs, '/proj/m.py', 'print(2)\n');
  const r = await snap.snapshotOnce();
  t.truthy(r);
  const s = await log.get((await log.pending())[0]!.seq);
  const paths = s.changes.map((c) => `${c.op} ${c.path}`).sort();
  t.deepEqual(paths, ['put .config/chromium/Default/Bookmarks', 'put Docs/b.txt', 'put proj/m.py']);
  t.false(snap.dirty);
  await commit();
  const m = await head();
  t.truthy(m['Docs/b.txt']);
  t.falsy(m['.cache/x'], 'written in the session at an excluded path: never committed');
  t.falsy(m['.config/chromium/Default/Cache/y']);
  // What an import put there is not the session's to delete (another desktop may exclude less).
  t.truthy(m['.cache/old/f']);
  t.truthy(m['proj/__pycache__/m.pyc']);
  // More excluded writes after a snapshot: still clean.
  await write(vfs, '/.cache/z', 'z');
  t.false(snap.dirty);
});

test('snapshot trees keep hidden committed entries as they are: commits stay on the fast path and deleting their directory deletes them', async (t) => {
  const { vfs, snap, commit, head, remote } = await setup(t);
  const headRoot = async () => (await remote.getCommit((await remote.requireHead('alice')).commit)).root;
  await write(vfs, '/proj/m.py', 'print(2)\n');
  await write(vfs, '/.config/chromium/Default/Bookmarks', 'more bookmarks');
  await snap.snapshotOnce();
  await commit();
  t.is((await headRoot()).tree, snap.lastRoot.tree, 'the commit is exactly the snapshot (no merge with the hidden entries)');
  t.truthy((await head())['proj/__pycache__/m.pyc']);
  // The user removes the project and resets the browser profile.
  await vfs.unlink('/proj/m.py');
  await vfs.rmdir('/proj');
  await vfs.unlink('/.config/chromium/Default/Bookmarks');
  await vfs.rmdir('/.config/chromium/Default');
  await snap.snapshotOnce();
  const r = await commit();
  t.deepEqual(r?.keptEdits ?? [], [], 'no delete was mistaken for a lost edit');
  const m = await head();
  t.deepEqual(Object.keys(m).filter((p) => p.startsWith('proj') || p.startsWith('.config/chromium/')), [], 'deleted with what was hidden in them');
  t.is((await headRoot()).tree, snap.lastRoot.tree);
});

test('moving out of an excluded area: the next snapshot takes the whole subtree', async (t) => {
  const { vfs, snap, commit, head } = await setup(t);
  await mkdirs(vfs, '/.cache/tmp/deep');
  await write(vfs, '/.cache/tmp/deep/new.txt', 'kept');
  await write(vfs, '/.cache/dl.part', 'download');
  t.is(await snap.snapshotOnce(), null);
  await vfs.rename('/.cache/tmp', '/Docs/tmp');
  await vfs.rename('/.cache/dl.part', '/Docs/dl.txt');
  t.true(snap.dirty);
  await snap.snapshotOnce();
  await commit();
  const m = await head();
  t.regex(m['Docs/tmp/deep/new.txt'] ?? '', new RegExp(Buffer.from('kept').toString('base64')));
  t.regex(m['Docs/dl.txt'] ?? '', new RegExp(Buffer.from('download').toString('base64')));
});

test('moving into an excluded area deletes it from the profile; moving it back restores it with the changes made meanwhile', async (t) => {
  const { vfs, snap, commit, head } = await setup(t);
  await vfs.rename('/Docs', '/.cache/Docs');
  await snap.snapshotOnce();
  await commit();
  t.falsy((await head())['Docs/a.txt']);
  t.is(await read(vfs, '/.cache/Docs/a.txt'), 'a'.repeat(100), 'still usable in the session');
  await write(vfs, '/.cache/Docs/while-excluded.txt', 'w');
  t.false(snap.dirty);
  await vfs.rename('/.cache/Docs', '/Docs2');
  await snap.snapshotOnce();
  await commit();
  const m = await head();
  t.truthy(m['Docs2/a.txt']);
  t.truthy(m['Docs2/while-excluded.txt']);
  t.falsy(m['Docs/a.txt']);
});

test('the usage counts the committed tree (hidden entries not) plus the session; EDQUOT beyond the hard limit, shrinking always works', async (t) => {
  const base = 9 + 100 + 9; // Bookmarks, Docs/a.txt, proj/m.py (the hidden .cache/old/f, Cache/data, m.pyc do not count)
  const soft: number[] = [];
  const { vfs } = await setup(t, { quota: { softBytes: base + 150, hardBytes: base + 200 } });
  vfs.overlay.usage.onSoftLimit = (bytes) => soft.push(bytes);
  t.is(vfs.overlay.usage.status().baseCount, 'not-counted');
  await vfs.countUsage();
  t.deepEqual(vfs.overlay.usage.status(), { bytes: base, baseCount: 'done', softBytes: base + 150, hardBytes: base + 200, over: null });

  await write(vfs, '/big', Buffer.alloc(180));
  t.is(vfs.overlay.usage.bytes, base + 180);
  t.deepEqual(soft, [base + 180], 'one warning when the soft limit is crossed');
  t.is(vfs.overlay.usage.status().over, 'soft');
  // Growing past the hard limit fails before anything is written; excluded paths count too.
  const fh = await vfs.create('/.cache/more', 0o644, C.O_WRONLY);
  await t.throwsAsync(vfs.write(fh, Buffer.alloc(50), 50, 0), { instanceOf: FsError, message: /quota/ });
  t.is((await vfs.fgetattr(fh)).size, 0);
  await vfs.write(fh, Buffer.alloc(20), 20, 0); // exactly up to the limit
  t.is(vfs.overlay.usage.bytes, base + 200);
  t.is(vfs.overlay.usage.status().over, 'hard');
  await t.throwsAsync(vfs.ftruncate(fh, 21), { instanceOf: FsError });
  await vfs.release(fh);
  const err = await t.throwsAsync(vfs.truncate('/Docs/a.txt', 101));
  t.is((err as FsError).errno, 'EDQUOT');
  // Overwriting in place does not grow the profile; shrinking and deleting always work.
  const fh2 = await vfs.open('/big', C.O_WRONLY);
  await vfs.write(fh2, Buffer.alloc(100, 1), 100, 0);
  await vfs.release(fh2);
  await vfs.truncate('/Docs/a.txt', 50);
  t.is(vfs.overlay.usage.bytes, base + 150);
  await vfs.unlink('/big');
  t.is(vfs.overlay.usage.bytes, base - 30);
  t.is(vfs.overlay.usage.status().over, null);
  await write(vfs, '/again', Buffer.alloc(200));
  t.is(vfs.overlay.usage.bytes, base + 170);
  t.deepEqual(soft, [base + 180, base + 170], 'warned again after going back under');
  // A rename over a file frees the replaced one; moves do not change the total.
  await vfs.rename('/again', '/Docs/a.txt');
  t.is(vfs.overlay.usage.bytes, base - 100 + 20 + 200);
  await vfs.rename('/Docs', '/.cache/Docs');
  t.is(vfs.overlay.usage.bytes, base - 100 + 20 + 200);
});

test('an open-unlinked file no longer counts, and writes to it do not either', async (t) => {
  const { vfs } = await setup(t, { quota: { softBytes: null, hardBytes: 10_000 } });
  await vfs.countUsage();
  const start = vfs.overlay.usage.bytes;
  const fh = await vfs.create('/tmpfile', 0o644, C.O_RDWR);
  await vfs.write(fh, Buffer.alloc(1000), 1000, 0);
  t.is(vfs.overlay.usage.bytes, start + 1000);
  await vfs.unlink('/tmpfile');
  t.is(vfs.overlay.usage.bytes, start);
  await vfs.write(fh, Buffer.alloc(20_000), 20_000, 1000);
  t.is(vfs.overlay.usage.bytes, start);
  await vfs.release(fh);
  t.is(vfs.overlay.usage.bytes, start);
});

test('changes made while the base is being counted are exact once it is done', async (t) => {
  const { vfs } = await setup(t, { quota: { softBytes: null, hardBytes: 1_000_000 } });
  await write(vfs, '/Docs/a.txt', 'short'); // 100 -> 5 before the count
  await vfs.unlink('/proj/m.py');
  await vfs.countUsage();
  t.is(vfs.overlay.usage.bytes, 9 + 5);
});
