/**
 * Picking up another desktop's commits (src/snapshot/rebase.ts): two "desktops" share one
 * repository, each with its own overlay, change log and snapshotter. What the other committed
 * appears at every path this one did not change since its last snapshot; its own changes stay
 * and the next commit merges them (conflict copies, edits beat deletes).
 */
import test, { type ExecutionContext } from 'ava';
import { constants as C } from 'node:fs';
import { ManualClock } from '../../src/core/clock.js';
import type { Repository } from '../../src/repository/repository.js';
import { commitOnce } from '../../src/commit/committer.js';
import { Exclusions } from '../../src/core/exclusions.js';
import { modelOfVfs, normaliseLinks } from '../helpers/profile-model.js';
import { contentsOf as contents, headModel, readText as readFile, smallProfileRepo as repoWithProfile, writeText as writeFile } from '../helpers/small-profile.js';
import { coreSession } from '../helpers/core-session.js';

type Desktop = Awaited<ReturnType<typeof desktop>>;

async function desktop(t: ExecutionContext, remote: Repository, clock: ManualClock, host: string, exclude: string[] = []) {
  const { vfs, log, snap, commit } = await coreSession(t, remote, clock, { prefix: `roamfs-rebase-${host}-`, logId: host, vfs: { exclusions: new Exclusions(exclude) } });
  return {
    vfs,
    log,
    snap,
    /** Snapshot and commit (merging onto whatever the head is). */
    async sync() {
      await snap.snapshotOnce();
      return commit();
    },
    /** Pick up the head, as the profile's snapshot loop does once nothing is pending. */
    async pickUp() {
      return snap.rebaseOnto(async () => {
        if ((await log.pending()).length > 0) return null;
        const head = await remote.requireHead('alice');
        return { commit: head.commit, root: (await remote.getCommit(head.commit)).root };
      });
    },
    write: (p: string, s: string) => writeFile(vfs, p, s),
    read: (p: string) => readFile(vfs, p),
  };
}

/** Alice's small profile in one repository, and two desktops on it (A may exclude paths). */
async function twoDesktops(t: ExecutionContext, excludeA: string[] = []) {
  const clock = new ManualClock();
  const remote = await repoWithProfile(clock);
  const a = await desktop(t, remote, clock, 'deskA', excludeA);
  const b = await desktop(t, remote, clock, 'deskB');
  return { clock, remote, a, b };
}

test('a desktop that changed nothing shows exactly what the other committed, and stays clean', async (t) => {
  const { clock, remote, a, b } = await twoDesktops(t);
  await a.read('/docs/a.txt'); // A has listed docs/ and read a file; lazy/ and docs/deep/ never listed
  clock.advance(60_000);
  await b.write('/notes.txt', 'notes v2 from B');
  await b.vfs.unlink('/todo.txt');
  await b.write('/docs/new.txt', 'new from B');
  await b.vfs.rename('/docs/b.txt', '/docs/b-renamed.txt');
  await b.write('/docs/deep/x', 'x v2 from B');
  await b.write('/lazy/two', 'two from B');
  await b.vfs.mkdir('/projects', 0o750);
  await b.write('/projects/p', 'p from B');
  await b.vfs.chmod('/docs', 0o711);
  t.truthy(await b.sync());

  const reads = a.vfs.stats().remoteObjects;
  const r = (await a.pickUp())!;
  t.truthy(r);
  t.deepEqual(r.kept, []);
  t.true(r.adopted.includes('notes.txt') && r.adopted.includes('todo.txt') && r.adopted.includes('projects') && r.adopted.includes('docs'));
  // Trees only: docs/ and the root from both sides; never-listed lazy/ costs nothing until listed.
  t.true(a.vfs.stats().remoteObjects - reads <= 6, `${a.vfs.stats().remoteObjects - reads} objects read`);
  t.false(a.snap.dirty, 'picking up is not a change of this session');
  t.deepEqual(normaliseLinks(await modelOfVfs(a.vfs)), await headModel(remote));
  t.is(await a.read('/lazy/two'), 'two from B');

  // A works on top; its commit lands without conflicts and equals what A shows.
  clock.advance(60_000);
  await a.write('/docs/new.txt', 'new, edited on A');
  const ra = (await a.sync())!;
  t.deepEqual(ra.conflicts, []);
  t.deepEqual(await headModel(remote), normaliseLinks(await modelOfVfs(a.vfs)));
});

test('paths this desktop changed since its last snapshot are kept; the next commit merges them with conflict copies', async (t) => {
  const { clock, remote, a, b } = await twoDesktops(t);
  clock.advance(60_000);
  await b.write('/notes.txt', 'notes from B');
  await b.write('/docs/a.txt', 'a from B');
  await b.vfs.unlink('/todo.txt');
  await b.write('/docs/b.txt', 'b from B');
  t.truthy(await b.sync());
  clock.advance(1_000);
  // Meanwhile on A, not yet snapshotted: an edit of a file B edited too, an edit of one B
  // deleted, a delete of one B edited, and a file of its own.
  await a.write('/notes.txt', 'notes from A');
  await a.write('/todo.txt', 'todo from A');
  await a.vfs.unlink('/docs/b.txt');
  await a.write('/mine.txt', 'mine');
  const r = (await a.pickUp())!;
  t.deepEqual([...r.kept].sort(), ['docs/b.txt', 'notes.txt', 'todo.txt']);
  t.is(await a.read('/notes.txt'), 'notes from A', 'own change kept');
  t.is(await a.read('/docs/a.txt'), 'a from B', 'untouched path picked up');
  t.is(await a.read('/todo.txt'), 'todo from A');
  t.is(((await t.throwsAsync(a.vfs.getattr('/docs/b.txt'))) as { errno?: string }).errno, 'ENOENT');

  const rc = (await a.sync())!;
  const final = contents(await headModel(remote));
  t.is(final['notes.txt'], 'notes from A', 'the later commit takes the path');
  const copies = Object.keys(final).filter((k) => k.startsWith('notes (conflict deskB '));
  t.is(copies.length, 1, `one conflict copy of B's version: ${Object.keys(final).join(', ')}`);
  t.is(final[copies[0]!], 'notes from B');
  t.is(final['todo.txt'], 'todo from A', 'an edit beats a delete');
  t.is(final['docs/b.txt'], 'b from B', 'a delete does not beat an edit');
  t.is(final['docs/a.txt'], 'a from B');
  t.is(final['mine.txt'], 'mine');
  t.is(rc.conflicts!.length, 1);
  t.deepEqual(rc.keptEdits, ['docs/b.txt']);
  // After the next pick-up A shows the merged profile exactly.
  await a.pickUp();
  t.deepEqual(normaliseLinks(await modelOfVfs(a.vfs)), await headModel(remote));
});

test('a file open on this desktop keeps its content for its handle when the other desktop replaces it', async (t) => {
  const { clock, a, b } = await twoDesktops(t);
  const fh = await a.vfs.open('/notes.txt', C.O_RDONLY);
  clock.advance(60_000);
  await b.write('/notes.txt', 'a much longer replacement written on B');
  await b.sync();
  await a.pickUp();
  const buf = Buffer.alloc(64);
  const n = await a.vfs.read(fh, buf, 64, 0);
  t.is(buf.subarray(0, n).toString(), 'notes v1');
  await a.vfs.release(fh);
  t.is(await a.read('/notes.txt'), 'a much longer replacement written on B');
});

test('a file open for writing here is not replaced by a pick-up: a write through that handle still reaches the repository (conflict copy)', async (t) => {
  const { clock, remote, a, b } = await twoDesktops(t);
  const fh = await a.vfs.open('/notes.txt', C.O_RDWR);
  clock.advance(60_000);
  await b.write('/notes.txt', 'notes from B');
  await b.sync();
  const r = (await a.pickUp())!;
  t.deepEqual(r.kept, ['notes.txt']);
  t.is(await a.read('/notes.txt'), 'notes v1', 'A still shows the file it has open for writing');
  await a.vfs.write(fh, Buffer.from('NOTES'), 5, 0);
  await a.vfs.release(fh);
  t.is(await a.read('/notes.txt'), 'NOTES v1');
  clock.advance(60_000);
  const ra = (await a.sync())!;
  t.is(ra.conflicts?.length, 1);
  const head = await headModel(remote);
  const texts = Object.entries(contents(head)).filter(([p]) => p.startsWith('notes')).map(([, v]) => v).sort();
  t.deepEqual(texts, ['NOTES v1', 'notes from B'], 'both edits are in the repository');
});

test('a file kept because it was open for writing takes the commit\'s version at the next pick-up after it is closed, with no new commit', async (t) => {
  const { clock, remote, a, b } = await twoDesktops(t);
  const fh = await a.vfs.open('/notes.txt', C.O_WRONLY);
  clock.advance(60_000);
  await b.write('/notes.txt', 'notes from B');
  await b.write('/todo.txt', 'todo from B');
  await b.sync();
  const r1 = (await a.pickUp())!;
  t.deepEqual([r1.kept, r1.adopted], [['notes.txt'], ['todo.txt']]);
  t.true(a.snap.unsettled);
  await a.vfs.release(fh);
  const r2 = (await a.pickUp())!;
  t.deepEqual([r2.kept, r2.adopted], [[], ['notes.txt']]);
  t.false(a.snap.unsettled);
  t.is(await a.pickUp(), null, 'settled: nothing more to look at until the head moves');
  t.false(a.snap.dirty);
  t.deepEqual(normaliseLinks(await modelOfVfs(a.vfs)), await headModel(remote));
});

test('excluded paths: the committed entries hidden there follow the repository; local content stays', async (t) => {
  const { clock, remote, a, b } = await twoDesktops(t, ['.cache/**']);
  await a.write('/.cache/local-only', 'A cache');
  clock.advance(60_000);
  await b.write('/.cache/junk', 'junk v2 (B excludes nothing)');
  await b.write('/docs/a.txt', 'a from B');
  await b.sync();
  const r = (await a.pickUp())!;
  t.deepEqual(r.kept, []);
  t.is(await a.read('/.cache/local-only'), 'A cache');
  t.is(((await t.throwsAsync(a.vfs.getattr('/.cache/junk'))) as { errno?: string }).errno, 'ENOENT');
  t.is(await a.read('/docs/a.txt'), 'a from B');
  // A's next commit leaves B's cache entry alone.
  await a.write('/docs/b.txt', 'b from A');
  const rc = (await a.sync())!;
  t.deepEqual(rc.conflicts, []);
  t.is(contents(await headModel(remote))['.cache/junk'], 'junk v2 (B excludes nothing)');
});

test('nothing is picked up while snapshots are pending: they merge first', async (t) => {
  const { clock, remote, a, b } = await twoDesktops(t);
  await a.write('/mine.txt', 'mine');
  await a.snap.snapshotOnce();
  await b.write('/notes.txt', 'from B');
  await b.sync();
  t.is(await a.pickUp(), null);
  t.is(await a.read('/notes.txt'), 'notes v1');
  await commitOnce({ local: a.vfs.loader.cache.repo, remote, log: a.log, user: 'alice', logId: 'deskA', host: 'deskA', session: 'deskA', clock });
  t.truthy(await a.pickUp());
  t.is(await a.read('/notes.txt'), 'from B');
  t.deepEqual(normaliseLinks(await modelOfVfs(a.vfs)), await headModel(remote));
});

export type { Desktop };

test("a file of this desktop that the other desktop replaced is freed (its upper content) once its last handle is closed", async (t) => {
  const { a, b } = await twoDesktops(t);
  await a.write('/notes.txt', 'written on A');
  await a.write('/todo.txt', 'written on A too');
  await a.sync();
  const live = a.vfs.stats().upperFiles;
  t.true(live >= 2, `${live} upper files`);
  const fh = await a.vfs.open('/todo.txt', C.O_RDONLY);
  await b.pickUp();
  await b.write('/notes.txt', 'replaced on B');
  await b.write('/todo.txt', 'replaced on B too');
  await b.sync();
  await a.pickUp();
  const settled = async (n: number) => {
    for (let i = 0; i < 100 && a.vfs.stats().upperFiles !== n; i++) await new Promise((r) => setTimeout(r, 5));
    return a.vfs.stats().upperFiles;
  };
  t.is(await settled(live - 1), live - 1, 'the closed one is freed');
  const buf = Buffer.alloc(64);
  t.is(buf.subarray(0, await a.vfs.read(fh, buf, 64, 0)).toString(), 'written on A too', 'the open one still reads its content');
  await a.vfs.release(fh);
  t.is(await settled(live - 2), live - 2, 'and is freed at its release');
  t.is(await readFile(a.vfs, '/todo.txt'), 'replaced on B too');
});
