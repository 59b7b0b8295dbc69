import { isRoamfsError } from '../core/errors.js';
import type { ObjectId } from '../core/hash.js';
import type { Repository } from './repository.js';

export interface Damage {
  id: ObjectId | string;
  problem: string;
  /** Where it is used: "user@seq:path" (at most a few per object). */
  usedBy: string[];
}

export interface FsckReport {
  users: number;
  refs: number;
  commits: number;
  trees: number;
  chunks: number;
  bytes: number;
  damage: Damage[];
}

const MAX_USES = 5;

/**
 * Verify every object reachable from the refs of `users` (all users by default): hashes, type
 * bytes, decoding, and that chunk sizes match the trees. Each object is verified once; every
 * damaged one is reported with the paths that use it.
 */
export async function fsck(repo: Repository, opts: { users?: string[]; onProgress?: (r: FsckReport) => void } = {}): Promise<FsckReport> {
  const report: FsckReport = { users: 0, refs: 0, commits: 0, trees: 0, chunks: 0, bytes: 0, damage: [] };
  const ok = new Set<ObjectId>();
  const bad = new Map<string, Damage>();
  const fail = (id: string, err: unknown, use: string) => {
    const problem = isRoamfsError(err) ? err.message : String(err);
    let d = bad.get(id);
    if (!d) bad.set(id, (d = { id, problem, usedBy: [] }));
    if (d.usedBy.length < MAX_USES) d.usedBy.push(use);
    else if (d.usedBy.length === MAX_USES) d.usedBy.push('...');
  };

  async function checkTree(tree: ObjectId, where: string, prefix: string): Promise<void> {
    if (bad.has(tree)) return fail(tree, null, `${where}:${prefix || '/'}`);
    let entries;
    try {
      entries = await repo.getTree(tree);
    } catch (err) {
      return fail(tree, err, `${where}:${prefix || '/'}`);
    }
    const first = !ok.has(tree);
    ok.add(tree);
    if (first) report.trees++;
    for (const e of entries) {
      const p = `${prefix}/${e.name}`;
      if (e.type === 'dir') {
        // Shared subtrees were verified already (including everything below them), unless damaged below.
        if (!ok.has(e.tree) || bad.has(e.tree)) await checkTree(e.tree, where, p);
      } else if (e.type === 'file') {
        for (const c of e.chunks) {
          if (bad.has(c.id)) fail(c.id, null, `${where}:${p}`);
          if (ok.has(c.id) || bad.has(c.id)) continue;
          try {
            const data = await repo.getChunk(c.id, c.size);
            report.chunks++;
            report.bytes += data.length;
            ok.add(c.id);
          } catch (err) {
            fail(c.id, err, `${where}:${p}`);
          }
        }
      }
    }
    opts.onProgress?.(report);
  }

  const users = opts.users ?? (await repo.users());
  for (const user of users) {
    report.users++;
    let refs;
    try {
      refs = await repo.refs(user);
    } catch (err) {
      fail(`ref of ${user}`, err, user);
      continue;
    }
    for (const ref of refs) {
      report.refs++;
      const where = `${user}@${ref.seq}`;
      if (ok.has(ref.commit)) continue;
      try {
        const c = await repo.getCommit(ref.commit);
        ok.add(ref.commit);
        report.commits++;
        await checkTree(c.root.tree, where, '');
      } catch (err) {
        fail(ref.commit, err, where);
      }
    }
  }
  // A subtree that contains damage is itself fine as an object; report only the damaged ones.
  report.damage = [...bad.values()].filter((d) => d.problem !== 'null');
  return report;
}
