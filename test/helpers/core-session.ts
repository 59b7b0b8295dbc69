import type { ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import type { ManualClock } from '../../src/core/clock.js';
import { ChangeLog } from '../../src/changelog/changelog.js';
import { commitOnce } from '../../src/commit/committer.js';
import type { Repository } from '../../src/repository/repository.js';
import { Snapshotter } from '../../src/snapshot/snapshot.js';
import { openDb } from '../../src/store/db.js';
import { OverlayVfs, type OverlayVfsOptions } from '../../src/vfs/overlay-vfs.js';

/**
 * One mounted session of alice's profile without FUSE and without the Profile's loops: the
 * Vfs, its change log and snapshotter in a temp directory (removed at teardown), and `commit()`
 * (commitOnce as change log `logId`). Tests drive every step themselves.
 */
export async function coreSession(
  t: ExecutionContext,
  remote: Repository,
  clock: ManualClock,
  o: { prefix?: string; logId?: string; vfs?: Partial<OverlayVfsOptions> } = {},
) {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), o.prefix ?? 'roamfs-core-'));
  const vfs = await OverlayVfs.open({ remote, user: 'alice', cacheDir: path.join(dir, 'cache'), clock, uid: 1000, gid: 1000, ...o.vfs });
  const db = await openDb(path.join(dir, 'log'));
  const log = new ChangeLog(db);
  t.teardown(async () => {
    await vfs.close();
    await db.close();
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const snap = new Snapshotter({ overlay: vfs.overlay, cache: vfs.loader.cache, loader: vfs.loader, log, now: () => clock.now() }, vfs.baseCommit!.root, vfs.baseCommitId!, 1);
  const logId = o.logId ?? 'L';
  const commit = () => commitOnce({ local: vfs.loader.cache.repo, remote, log, user: 'alice', logId, host: logId, session: logId, clock });
  return { vfs, log, snap, commit };
}
