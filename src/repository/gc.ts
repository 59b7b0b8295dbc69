import type { ObjectId } from '../core/hash.js';
import type { Repository } from './repository.js';

export interface GcOptions {
  /** Objects younger than this (by storage mtime) are never deleted: default 1 hour. */
  graceMs?: number;
  dryRun?: boolean;
  onProgress?: (phase: 'mark' | 'sweep', n: number) => void;
  /** Test hook: runs between listing/trashing and the final re-check. */
  beforeRecheck?: () => Promise<void>;
}

export interface GcReport {
  live: number;
  scanned: number;
  deleted: number;
  deletedBytes: number;
  restored: number;
}

/** Every object reachable from the refs of every user: commits, trees, chunks. */
export async function liveSet(repo: Repository, into = new Set<ObjectId>(), onProgress?: (n: number) => void): Promise<Set<ObjectId>> {
  async function tree(id: ObjectId): Promise<void> {
    if (into.has(id)) return;
    into.add(id);
    for (const e of await repo.getTree(id)) {
      if (e.type === 'dir') await tree(e.tree);
      else if (e.type === 'file') for (const c of e.chunks) into.add(c.id);
    }
    onProgress?.(into.size);
  }
  for (const user of await repo.users()) {
    for (const ref of await repo.refs(user)) {
      if (into.has(ref.commit)) continue;
      into.add(ref.commit);
      await tree((await repo.getCommit(ref.commit)).root.tree);
    }
  }
  return into;
}

/**
 * Delete objects that no ref reaches, safely against concurrent writers (docs/repository-format.md,
 * "gc"): a grace period by storage mtime, quarantine then re-check of mtime, and a final
 * re-read of all refs that restores anything a new commit references.
 * A damaged tree or commit aborts gc (run fsck): we never delete on incomplete knowledge.
 */
export async function gc(repo: Repository, opts: GcOptions = {}): Promise<GcReport> {
  const grace = opts.graceMs ?? 3_600_000;
  const t0 = await repo.backend.storageNow();
  const cutoff = t0 - grace;
  const live = await liveSet(repo, new Set(), (n) => opts.onProgress?.('mark', n));
  const report: GcReport = { live: live.size, scanned: 0, deleted: 0, deletedBytes: 0, restored: 0 };
  const batch = `gc${t0.toFixed(0)}${Math.floor(Math.random() * 1e6)}`;
  const trashed = new Map<ObjectId, number>();
  for await (const info of repo.backend.listObjects()) {
    report.scanned++;
    if (report.scanned % 1000 === 0) opts.onProgress?.('sweep', report.scanned);
    if (live.has(info.id) || info.mtimeMs >= cutoff) continue;
    if (opts.dryRun) {
      trashed.set(info.id, info.size);
      continue;
    }
    const seen = await repo.backend.trashObject(info.id, batch);
    if (!seen) continue;
    if (seen.mtimeMs >= cutoff) {
      // Touched by a writer between our listing and the move: it is being reused.
      await repo.backend.restoreObject(info.id, batch);
      report.restored++;
      continue;
    }
    trashed.set(info.id, seen.size);
  }
  if (!opts.dryRun) {
    await opts.beforeRecheck?.();
    // Refs that appeared meanwhile may reference trashed objects: bring those back. If a new
    // ref cannot even be walked (its tree is among the trashed), restore the whole batch.
    let nowLive: Set<ObjectId> | null = null;
    try {
      nowLive = await liveSet(repo);
    } catch {
      nowLive = null;
    }
    for (const id of [...trashed.keys()]) {
      if (nowLive === null || nowLive.has(id)) {
        await repo.backend.restoreObject(id, batch);
        trashed.delete(id);
        report.restored++;
      }
    }
    await repo.backend.emptyTrash(batch);
  }
  report.deleted = trashed.size;
  for (const s of trashed.values()) report.deletedBytes += s;
  return report;
}
