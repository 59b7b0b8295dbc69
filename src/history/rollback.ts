import { RoamfsError, isRoamfsError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { ObjectId } from '../core/hash.js';
import { splitPath } from '../core/names.js';
import type { Commit, Ref } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';
import { setPath } from '../repository/edit.js';
import { countChangedFiles, lookupPath } from '../repository/walk.js';

export interface RollbackOptions {
  clock: Clock;
  host: string;
  session: string;
  /** Restore only this profile-relative path (file or directory); the whole profile otherwise. */
  path?: string;
}

/**
 * Make a new head commit whose content equals `target` (entirely, or at one path), on top of
 * the current head. History is kept: the target and everything after it stay in the log.
 */
export async function rollback(repo: Repository, user: string, target: ObjectId, opts: RollbackOptions): Promise<{ commit: ObjectId; ref: Ref; changed: number }> {
  const old = await repo.getCommit(target);
  const parts = opts.path === undefined ? [] : splitPath(opts.path);
  for (let attempt = 0; ; attempt++) {
    const head = await repo.requireHead(user);
    const cur = await repo.getCommit(head.commit);
    let root = old.root;
    if (parts.length > 0) {
      const entry = await lookupPath(repo, old.root, parts);
      const now = await lookupPath(repo, cur.root, parts);
      if (!entry && !now) throw new RoamfsError('NOT_FOUND', `${opts.path} exists neither in ${target.slice(0, 12)} nor in the head`);
      // Parents missing at the head are recreated with the attributes they had in the target.
      const parentAttrs: Array<{ mode: number; uid: number; gid: number; mtimeNs: bigint }> = [];
      for (let d = 1; d < parts.length; d++) {
        const e = await lookupPath(repo, old.root, parts.slice(0, d));
        parentAttrs[d] = e ?? cur.root;
      }
      root = await setPath(repo, cur.root, parts, entry, (depth) => {
        const a = parentAttrs[depth] ?? cur.root;
        return { mode: a.mode, uid: a.uid, gid: a.gid, mtimeNs: a.mtimeNs };
      });
    }
    const changed = await countChangedFiles(repo, cur.root.tree, root.tree);
    const commit: Commit = {
      parents: [head.commit],
      root,
      time: opts.clock.now(),
      host: opts.host,
      session: opts.session,
      message: `rollback ${parts.length ? `${parts.join('/')} ` : ''}to ${target.slice(0, 12)}`,
      stats: { files: changed, bytes: 0 },
    };
    const id = await repo.putCommit(commit);
    try {
      const ref = await repo.moveHead(user, head, id, { time: commit.time, host: opts.host, session: opts.session });
      return { commit: id, ref, changed };
    } catch (err) {
      if (!isRoamfsError(err, 'HEAD_CONFLICT') || attempt >= 4) throw err;
    }
  }
}
