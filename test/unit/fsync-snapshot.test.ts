/**
 * An fsync brings the next snapshot forward (Profile.requestSnapshot, fsyncSnapshotDelayMs):
 * what a program synced is durable about a second later instead of at the snapshot interval.
 * A profile over an in-memory repository, driven by a manual clock.
 */
import test, { type ExecutionContext } from 'ava';
import { constants as C } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { memoryLogger } from '../../src/core/log.js';
import { DEFAULT_PROFILE_CONFIG, Profile, type ProfileConfig } from '../../src/profile.js';
import { pump } from '../helpers/prefetch-fixture.js';
import { smallProfileRepo, writeText } from '../helpers/small-profile.js';

async function tmpdir(t: ExecutionContext, prefix: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), prefix));
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function profile(t: ExecutionContext, config: Partial<ProfileConfig>) {
  const clock = new ManualClock();
  const remote = await smallProfileRepo(clock);
  const dir = await tmpdir(t, 'roamfs-fsync-');
  const p = await Profile.open({
    remote,
    user: 'alice',
    cacheDir: path.join(dir, 'cache'),
    clock,
    log: memoryLogger(),
    host: 'desk',
    session: 's1',
    uid: 1000,
    gid: 1000,
    config: { snapshotIntervalMs: null, prefetchDelayMs: null, exclude: ['.cache/**'], ...config },
  });
  t.teardown(() => p.close(undefined, 0).then(() => {}));
  /** Durable snapshots in the local log. */
  const durable = async () => (await p.log.pending()).length;
  /** Write and fsync a file through the Vfs. */
  const save = async (file: string, text: string) => {
    const fh = await p.vfs.create(file, 0o644, C.O_WRONLY | C.O_CREAT | C.O_TRUNC);
    await p.vfs.write(fh, Buffer.from(text), text.length, 0);
    await p.vfs.fsync(fh, false);
    await p.vfs.release(fh);
  };
  /** Move the clock by ms in small steps, letting the snapshot's I/O run. */
  const wait = (ms: number) => pump(clock, () => false, ms / 10, 10);
  return { p, clock, durable, save, wait };
}

test('default: 1 s', (t) => {
  t.is(DEFAULT_PROFILE_CONFIG.fsyncSnapshotDelayMs, 1000);
});

test('fsync: what a program synced is durable fsyncSnapshotDelayMs later, in one snapshot for a burst of fsyncs', async (t) => {
  const w = await profile(t, { fsyncSnapshotDelayMs: 1000 });
  await w.save('/notes.txt', 'notes v2');
  await w.wait(500);
  await w.save('/todo.txt', 'todo v2');
  await w.wait(400);
  t.is(await w.durable(), 0, 'not before the delay');
  t.true(await pump(w.clock, () => w.p.status().snapshots === 1, 2000));
  t.is(await w.durable(), 1, 'both saves in one snapshot');
  t.false(w.p.status().dirty);
  await w.wait(5000);
  t.is(w.p.status().snapshots, 1, 'nothing more without another fsync');
});

test('fsync: a save while the requested snapshot runs is taken by one more snapshot', async (t) => {
  const w = await profile(t, { fsyncSnapshotDelayMs: 1000 });
  await w.save('/notes.txt', 'notes v2');
  w.clock.advance(1000); // the timer fires: the snapshot's instant is now
  await w.save('/todo.txt', 'todo v2'); // after the instant, before the snapshot is durable
  t.true(await pump(w.clock, () => w.p.status().snapshots === 2, 3000));
  t.is(await w.durable(), 2);
  t.false(w.p.status().dirty);
});

test('fsync: off, or of an excluded file, starts no snapshot', async (t) => {
  const off = await profile(t, { fsyncSnapshotDelayMs: null });
  await off.save('/notes.txt', 'notes v2');
  await off.wait(10_000);
  t.is(await off.durable(), 0);
  t.true(off.p.status().dirty);

  const w = await profile(t, { fsyncSnapshotDelayMs: 1000 });
  await writeText(w.p.vfs, '/notes.txt', 'notes v2'); // a change, never synced
  await w.save('/.cache/junk', 'cache');
  await w.wait(10_000);
  t.is(await w.durable(), 0);
  t.is(w.p.status().snapshots, 0);
});

test('fsync: after a snapshot that took long, the next one waits three times as long (a quarter of the time at most)', async (t) => {
  const w = await profile(t, { fsyncSnapshotDelayMs: 1000 });
  await w.save('/notes.txt', 'notes v2');
  w.clock.advance(1000); // the requested snapshot starts ...
  w.clock.advance(5000); // ... and takes at least 5 s of the clock
  t.true(await pump(w.clock, () => w.p.status().snapshots === 1, 3000));
  await w.save('/todo.txt', 'todo v2');
  await w.wait(12_000);
  t.is(w.p.status().snapshots, 1, 'not after 1 s: at least 15 s after the slow one');
  t.true(await pump(w.clock, () => w.p.status().snapshots === 2, 1000));
  t.false(w.p.status().dirty);
});
