/**
 * One user, several desktops, at the level of the profile (no FUSE): leases (concurrent and
 * exclusive), read-only sessions, picking up the other desktop's commits at the snapshot tick,
 * and fencing after a takeover. A shared in-memory repository and a manual clock.
 */
import test, { type ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { memoryLogger } from '../../src/core/log.js';
import { Profile, type ProfileConfig } from '../../src/profile.js';
import type { Repository } from '../../src/repository/repository.js';
import { readOnlyVfs } from '../../src/vfs/read-only.js';
import { modelOfVfs, normaliseLinks } from '../helpers/profile-model.js';
import { pump } from '../helpers/prefetch-fixture.js';
import { contentsOf, headModel, readText, smallProfileRepo, writeText } from '../helpers/small-profile.js';

const TTL = 3_000;

async function world(t: ExecutionContext) {
  const clock = new ManualClock();
  const remote = await smallProfileRepo(clock);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-sessions-'));
  const open: Profile[] = [];
  t.teardown(async () => {
    for (const p of open) await p.close(undefined, 0).catch(() => {});
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const log = memoryLogger();
  /** A desktop: its own cache; `leaseClock` lets a test freeze its heartbeats (a suspended VM). */
  const desk = async (host: string, config: Partial<ProfileConfig> = {}, leaseClock: ManualClock = clock) => {
    const p = await Profile.open({
      remote,
      user: 'alice',
      cacheDir: path.join(dir, host),
      clock,
      leaseClock,
      log: log.child({ host }),
      host,
      session: host.toLowerCase(),
      pid: 4242,
      uid: 1000,
      gid: 1000,
      config: { snapshotIntervalMs: null, prefetchDelayMs: null, ...config, sessions: { policy: 'concurrent', ttlMs: TTL, waitMs: null, ...config.sessions } },
    });
    open.push(p);
    return p;
  };
  return { clock, remote, desk, log };
}

/** Let timers and the promises they start run (the manual clock moves only when told). */
async function settle(clock: ManualClock, ms: number): Promise<void> {
  const end = clock.now() + ms;
  while (clock.now() < end) {
    clock.advance(Math.min(100, end - clock.now()));
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  }
}

/** Let time pass until the promise settles (a login that waits for a lease sleeps on the manual clock). */
async function whileWaiting<T>(clock: ManualClock, p: Promise<T>): Promise<T> {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  await pump(clock, () => done, 100_000);
  return p;
}

async function sameAsHead(t: ExecutionContext, p: Profile, remote: Repository, what: string) {
  t.deepEqual(normaliseLinks(await modelOfVfs(p.vfs)), await headModel(remote), what);
}

test('concurrent: both desktops work; each picks up the other\'s commits at its snapshot tick and sees the other in status', async (t) => {
  const { clock, remote, desk } = await world(t);
  const a = await desk('deskA', { snapshotIntervalMs: 1_000 });
  const b = await desk('deskB', { snapshotIntervalMs: 1_000 });
  await settle(clock, TTL); // heartbeats: each sees the other
  t.deepEqual(a.status().lease!.others.map((o) => [o.host, o.mode, o.exclusive]), [['deskB', 'rw', false]]);
  t.is(a.status().lease!.state, 'held');
  t.is(a.status().lease!.policy, 'concurrent');

  await writeText(b.vfs, '/from-b.txt', 'written on B');
  await writeText(b.vfs, '/docs/a.txt', 'a edited on B');
  await b.snapshotNow();
  await b.commitNow();
  await writeText(a.vfs, '/from-a.txt', 'written on A');
  await settle(clock, 1_500); // A's tick: its snapshot, then the commit (B moved the head) and the pick-up
  await pump(clock, () => a.status().pickedUp > 0);
  t.is(await readText(a.vfs, '/from-b.txt'), 'written on B');
  t.is(await readText(a.vfs, '/docs/a.txt'), 'a edited on B');
  t.is(await readText(a.vfs, '/from-a.txt'), 'written on A');
  t.is(a.status().pendingSnapshots, 0, "A's snapshot was committed (merged) before the pick-up");
  await sameAsHead(t, a, remote, 'A shows the merged head');
  await pump(clock, () => b.status().pickedUp > 0);
  t.is(await readText(b.vfs, '/from-a.txt'), 'written on A');
  await sameAsHead(t, b, remote, 'B shows it too');
  t.true(a.status().lastPickUp!.adopted >= 1, JSON.stringify(a.status().lastPickUp)); // from-b.txt (docs/ was never listed on A: it just got the new tree)
});

test('exclusive: a second read-write login waits, then fails naming the holder; read-only is always allowed; after logout it succeeds', async (t) => {
  const { clock, desk } = await world(t);
  const exclusive = { sessions: { policy: 'exclusive' as const, ttlMs: TTL, waitMs: 2_000 } };
  const a = await desk('deskA', exclusive);
  t.is(a.status().lease!.generation, 1);
  const err = await whileWaiting(clock, desk('deskB', exclusive).then(() => null, (e: Error) => e));
  t.truthy(err, 'refused');
  t.regex(err!.message, /the profile of alice is in use on host deskA \(pid 4242, session deska, exclusive lease generation 1/);
  t.is((err as { code?: string }).code, 'LEASE_HELD');

  const ro = await desk('deskR', { ...exclusive, readOnly: true });
  t.is(ro.status().lease!.mode, 'ro');
  t.true(ro.readOnly);
  await a.close();
  const b = await desk('deskC', exclusive);
  t.is(b.status().lease!.generation, 2);
  t.is(b.status().lease!.state, 'held');
});

test('read-only: follows the head, never snapshots or commits, and refuses changes with EROFS', async (t) => {
  const { clock, remote, desk } = await world(t);
  const ro = await desk('deskR', { readOnly: true, snapshotIntervalMs: 1_000 });
  const rw = await desk('deskW');
  const vfs = readOnlyVfs(ro.vfs);
  for (const attempt of [() => writeText(vfs, '/x', 'no'), () => vfs.unlink('/notes.txt'), () => vfs.mkdir('/d', 0o755), () => vfs.rename('/notes.txt', '/n'), () => vfs.chmod('/notes.txt', 0o600), () => vfs.open('/notes.txt', 1)]) {
    t.is(((await t.throwsAsync(attempt())) as { errno?: string }).errno, 'EROFS');
  }
  t.is(await readText(vfs, '/notes.txt'), 'notes v1');
  await writeText(rw.vfs, '/notes.txt', 'notes from the writer');
  await rw.snapshotNow();
  await rw.commitNow();
  const commits = (await remote.refs('alice')).length;
  await settle(clock, 1_500);
  await pump(clock, () => ro.status().pickedUp > 0);
  t.is(await readText(vfs, '/notes.txt'), 'notes from the writer');
  t.is(ro.status().snapshots, 0);
  t.deepEqual(await ro.close(), { ok: true, pending: 0 });
  t.is((await remote.refs('alice')).length, commits, 'the read-only session committed nothing');
});

test('fencing: a desktop whose exclusive lease was taken over notices, says so, and its changes still land through the merge', async (t) => {
  const { clock, remote, desk } = await world(t);
  const exclusive = { sessions: { policy: 'exclusive' as const, ttlMs: TTL, waitMs: 3 * TTL } };
  // A's lease clock stands still: its heartbeats stop, as on a suspended VM.
  const frozen = new ManualClock(clock.now());
  const a = await desk('deskA', exclusive, frozen);
  await writeText(a.vfs, '/notes.txt', 'notes from A (suspended)');
  await a.snapshotNow();
  // B waits for A's lease to expire (no heartbeat for a ttl, on B's clock), then takes over.
  const bOpen = desk('deskB', exclusive);
  let b: Profile | null = null;
  void bOpen.then((p) => (b = p));
  t.true(await pump(clock, () => b !== null, 100_000));
  t.is(b!.status().lease!.generation, 2);
  await writeText(b!.vfs, '/notes.txt', 'notes from B');
  await b!.snapshotNow();
  await b!.commitNow();
  // A wakes up: its next heartbeat finds generation 2.
  frozen.advance(TTL);
  await pump(clock, () => a.status().lease!.state === 'lost', 20_000);
  t.is(a.status().lease!.state, 'lost');
  t.regex(a.status().lease!.lostReason!, /taken over by host deskB/);
  t.regex(a.status().lastError!.message, /still committed, merged/);
  // Its pending snapshot is committed through the merge: B's version is kept as a conflict copy.
  const r = (await a.commitNow())!;
  t.is(r.conflicts!.length, 1);
  const final = contentsOf(await headModel(remote));
  t.is(final['notes.txt'], 'notes from A (suspended)');
  t.is(final[r.conflicts![0]!.copy], 'notes from B');
});

test('a corrupt lease document or one claiming to expire far in the future blocks like a live holder, then expires after 2 x ttl', async (t) => {
  const { clock, remote, desk } = await world(t);
  await remote.backend.createState('alice', 'lease.000000000001', Buffer.from('{"v":1, not json'));
  const exclusive = { sessions: { policy: 'exclusive' as const, ttlMs: TTL, waitMs: 500 } };
  const early = await whileWaiting(clock, desk('deskA', exclusive).then(() => null, (e: Error) => e));
  t.regex(early!.message, /unreadable lease document \(lease\.000000000001: corrupt/);
  // Waiting long enough takes it over.
  let got: Profile | null = null;
  void desk('deskB', { sessions: { policy: 'exclusive', ttlMs: TTL, waitMs: 3 * TTL } }).then((p) => (got = p));
  t.true(await pump(clock, () => got !== null, 100_000));
  t.is(got!.status().lease!.generation, 2);
});
