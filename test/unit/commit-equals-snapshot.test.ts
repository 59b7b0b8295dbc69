/**
 * A commit of several pending snapshots at once (collapsed changes applied onto the head) must
 * be exactly the last snapshot's tree: the same root tree id, not just the same files. Seeded
 * workloads with the crash harness's kinds of change (files written, truncated, renamed, deleted;
 * directories made, renamed whole, removed; symlinks; chmod), committing after a random number
 * of snapshots.
 */
import test from 'ava';
import { constants as C } from 'node:fs';
import { Rng } from '../../scripts/lib/rng.js';
import { ManualClock } from '../../src/core/clock.js';
import { smallProfileRepo } from '../helpers/small-profile.js';
import { coreSession } from '../helpers/core-session.js';

for (const seed of [11, 12, 13, 14, 15, 16, 17, 18]) {
  test(`seed ${seed}: every commit of 1-6 pending snapshots has exactly the last snapshot's root`, async (t) => {
    const r = new Rng(seed);
    const clock = new ManualClock();
    const remote = await smallProfileRepo(clock);
    const { vfs, log, snap, commit } = await coreSession(t, remote, clock, { prefix: 'roamfs-commit-eq-' });
    let dirs = ['/', '/docs', '/docs/deep', '/lazy'];
    const names = ['a', 'b', 'c', 'notes.txt', 'x', 'one', 'D1', 'D2'];
    const at = (d: string, n: string) => (d === '/' ? `/${n}` : `${d}/${n}`);
    let commits = 0;
    let untilCommit = r.int(1, 6);
    for (let i = 0; i < 500; i++) {
      clock.advance(r.int(1, 3000));
      const p = at(r.pick(dirs), r.pick(names));
      const q = at(r.pick(dirs), r.pick(names));
      try {
        switch (r.int(0, 11)) {
          case 0:
          case 1: {
            const fh = await vfs.create(p, 0o644, C.O_WRONLY | C.O_CREAT | C.O_TRUNC);
            const data = Buffer.alloc(r.int(0, 300_000), i % 251);
            await vfs.write(fh, data, data.length, 0);
            await vfs.release(fh);
            break;
          }
          case 2: {
            const fh = await vfs.open(p, C.O_WRONLY);
            await vfs.write(fh, Buffer.from(`edit ${i}`), 6, r.int(0, 5000));
            await vfs.release(fh);
            break;
          }
          case 3:
            await vfs.truncate(p, r.int(0, 4000));
            break;
          case 4:
            await vfs.mkdir(p, 0o755);
            dirs.push(p);
            break;
          case 5:
            await vfs.rename(p, q); // files and whole directories
            dirs = dirs.map((d) => (d === p || d.startsWith(`${p}/`) ? q + d.slice(p.length) : d));
            break;
          case 6:
            await vfs.unlink(p);
            break;
          case 7:
            await vfs.rmdir(p);
            dirs = dirs.filter((d) => d !== p);
            break;
          case 8:
            await vfs.symlink(`t${i}`, p);
            break;
          case 9:
            await vfs.chmod(p, r.pick([0o600, 0o644, 0o755, 0o700]));
            break;
          case 10:
          case 11: {
            await snap.snapshotOnce();
            if (--untilCommit > 0) break;
            untilCommit = r.int(1, 6);
            const pending = await log.pending();
            if (pending.length === 0) break;
            const last = pending[pending.length - 1]!;
            const c = await commit();
            const head = await remote.getCommit(c!.commit);
            t.deepEqual(head.root, last.root, `op ${i}: the commit of snapshots ${pending[0]!.seq}-${last.seq} is the last snapshot`);
            commits++;
            break;
          }
        }
      } catch (err) {
        if (!(err as { errno?: string }).errno) throw err;
      }
      dirs = [...new Set(dirs)].filter((d) => d === '/' || !d.startsWith('/.cache'));
    }
    t.true(commits > 5, `${commits} commits`);
  });
}
