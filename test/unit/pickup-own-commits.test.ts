/**
 * A desktop alone: picking up the head after its own commits must never change what it shows
 * (its own commits contain exactly its snapshots), whatever the interleaving of changes,
 * snapshots, commits and snapshot ticks. Seeded; the workload renames whole directories, edits,
 * truncates, deletes, chmods and makes symlinks, as the crash harness does.
 */
import { Rng } from '../../scripts/lib/rng.js';
import test from 'ava';
import { constants as C } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { nullLogger } from '../../src/core/log.js';
import { Profile } from '../../src/profile.js';
import { DEFAULT_COMMIT_POLICY } from '../../src/commit/policy.js';
import { modelOfVfs, normaliseLinks } from '../helpers/profile-model.js';
import { headModel, readText, smallProfileRepo, writeText } from '../helpers/small-profile.js';
import { Repository } from '../../src/repository/repository.js';

/** r.int(n): 0 <= x < n (scripts/lib/rng.ts, the harnesses' seeded generator). */
function rng(seed: number) {
  const r = new Rng(seed);
  return { int: (n: number) => r.int(0, n - 1), pick: <T,>(xs: readonly T[]) => r.pick(xs) };
}

/** One desktop whose loops never run by themselves: the test calls every step. */
function alone(remote: Repository, dir: string, clock: ManualClock): Promise<Profile> {
  return Profile.open({
    remote, user: 'alice', cacheDir: path.join(dir, 'cache'), clock, log: nullLogger, host: 'desk', session: 'desk', pid: 1, uid: 1000, gid: 1000,
    config: { snapshotIntervalMs: null, prefetchDelayMs: null, fsyncSnapshotDelayMs: null, commit: { ...DEFAULT_COMMIT_POLICY, idleMs: 1e12, maxLagMs: 1e12 } },
  });
}

for (const seed of [1, 2, 3, 4, 5, 6]) {
  test(`seed ${seed}: snapshot ticks after own commits never change the home`, async (t) => {
    const r = rng(seed);
    const clock = new ManualClock();
    const remote = await smallProfileRepo(clock);
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-own-pickup-'));
    const p = await alone(remote, dir, clock);
    t.teardown(async () => {
      await p.halt();
      await fsp.rm(dir, { recursive: true, force: true });
    });
    const dirs = ['/', '/docs', '/docs/deep', '/lazy', '/d1', '/d2', '/docs/d3'];
    const names = ['a', 'b', 'c', 'notes.txt', 'x', 'one', 'd1', 'd2'];
    const at = (d: string, n: string) => (d === '/' ? `/${n}` : `${d}/${n}`);
    let picks = 0;
    for (let i = 0; i < 400; i++) {
      clock.advance(1 + r.int(3000));
      const pth = at(r.pick(dirs), r.pick(names));
      const q = at(r.pick(dirs), r.pick(names));
      try {
        switch (r.int(12)) {
          case 0:
          case 1: {
            const fh = await p.vfs.create(pth, 0o644, C.O_WRONLY | C.O_CREAT | C.O_TRUNC);
            const data = Buffer.alloc(r.int(5000), i % 251);
            await p.vfs.write(fh, data, data.length, 0);
            await p.vfs.release(fh);
            break;
          }
          case 2:
            await p.vfs.mkdir(pth, 0o755);
            break;
          case 3:
            await p.vfs.rename(pth, q);
            break;
          case 4:
            await p.vfs.unlink(pth);
            break;
          case 5:
            await p.vfs.truncate(pth, r.int(3000));
            break;
          case 6:
            await p.vfs.chmod(pth, r.pick([0o600, 0o644, 0o755]));
            break;
          case 7:
            await p.vfs.symlink(`t${i}`, pth);
            break;
          case 8:
            await p.snapshotNow();
            break;
          case 9:
            await p.commitNow();
            break;
          case 10:
          case 11: {
            // The snapshot tick: a snapshot, then the pick-up. Nothing may change in the home.
            await p.snapshotNow();
            const before = await modelOfVfs(p.vfs);
            const got = await p.followHead();
            if (got) picks++;
            t.deepEqual(await modelOfVfs(p.vfs), before, `op ${i}: the pick-up changed the home (${JSON.stringify(got && { adopted: got.adopted, kept: got.kept })})`);
            break;
          }
        }
      } catch (err) {
        if (!(err as { errno?: string }).errno) throw err;
      }
    }
    await p.snapshotNow();
    await p.commitNow();
    t.deepEqual(await headModel(remote), normaliseLinks(await modelOfVfs(p.vfs)), 'the head is the home');
    t.true(picks > 0);
  });
}

test('a pick-up that read the head before a newer snapshot and commit never moves the home back to that older head', async (t) => {
  const clock = new ManualClock();
  const shared = await smallProfileRepo(clock);
  // listRefs answers, then (once armed) holds its stale answer until released.
  let hold: { release: () => void; reached: () => void } | null = null;
  const backend = new Proxy(shared.backend, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return async (...args: unknown[]) => {
        const out = await (v as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        if (prop === 'listRefs' && hold) {
          const h = hold;
          hold = null;
          await new Promise<void>((release) => {
            h.release = release;
            h.reached();
          });
        }
        return out;
      };
    },
  });
  const remote = await Repository.open(backend, { clock });
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-stale-head-'));
  const p = await alone(remote, dir, clock);
  t.teardown(async () => {
    await p.halt();
    await fsp.rm(dir, { recursive: true, force: true });
  });
  await writeText(p.vfs, '/notes.txt', 'version 1');
  await p.snapshotNow();
  await p.commitNow();
  await writeText(p.vfs, '/notes.txt', 'version 2');
  // The tick's pick-up reads the head (version 1's commit) and is held there...
  const held = new Promise<void>((reached) => (hold = { release: () => {}, reached }));
  const h = hold!;
  const pickUp = p.followHead();
  await held;
  // ...while a forced snapshot and the idle commit make version 2 the head.
  await p.snapshotNow();
  await p.commitNow();
  h.release();
  await pickUp;
  t.is(await readText(p.vfs, '/notes.txt'), 'version 2');
  t.deepEqual(await headModel(shared), normaliseLinks(await modelOfVfs(p.vfs)));
});
