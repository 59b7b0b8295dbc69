import { RoamfsError, isRoamfsError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import type { ObjectId } from '../core/hash.js';
import type { ChangeLog, Snapshot } from '../changelog/changelog.js';
import { applyChanges, type Change, type DirAttrs } from '../repository/edit.js';
import type { Commit, Ref, TreeEntry } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';
import { lookupPath } from '../repository/walk.js';
import { uploadChanges } from './upload.js';
import { Lookup, collapseChanges, mergeChanges, type MergeResult } from './merge.js';
import { sameEntry } from '../repository/entry.js';

export interface CommitterDeps {
  local: Repository;
  remote: Repository;
  log: ChangeLog;
  user: string;
  /** Stable id of this change log (survives restarts; identifies our commits after a crash). */
  logId: string;
  host: string;
  session: string;
  clock: Clock;
  onProgress?: (uploadedBytes: number) => void;
  /**
   * Called right before each attempt to move the head (fencing: an exclusive session checks its
   * lease there). A throw aborts this commit step (it is retried later, like any failure).
   */
  beforeMoveHead?: () => Promise<void>;
}

export interface CommitResult {
  /** Highest snapshot seq now in the repository. */
  seq: number;
  commit: ObjectId;
  ref: Ref | null;
  uploadedBytes: number;
  /** True when the commit had been made before (a crash after the head moved) and was only recorded. */
  replayed: boolean;
  /** Paths both desktops changed: ours took the path, theirs was kept as `copy`. */
  conflicts?: MergeResult['conflicts'];
  /** Paths we deleted that another desktop had edited: the edit was kept. */
  keptEdits?: string[];
}

/** How many recent refs to search for a commit of ours that the log does not know is shipped. */
const REPLAY_SCAN = 100;

async function findOurCommit(d: CommitterDeps, minSeq: number): Promise<{ seq: number; commit: ObjectId } | null> {
  const refs = await d.remote.refs(d.user);
  for (const r of refs.slice(0, REPLAY_SCAN)) {
    const c = await d.remote.getCommit(r.commit);
    if (c.origin?.log === d.logId && c.origin.snapshot >= minSeq) return { seq: c.origin.snapshot, commit: r.commit };
  }
  return null;
}

/**
 * Who made the head's version of a path: walking the user's refs from the head back, the oldest
 * commit of the unbroken run that has exactly this entry (at most REPLAY_SCAN commits back;
 * beyond that, the oldest one seen). Used only to name conflict copies.
 */
function authorFinder(d: CommitterDeps, headId: ObjectId, headCommit: Commit) {
  const look = new Lookup((id) => d.remote.getTree(id));
  let refs: Ref[] | null = null;
  return async (path: string, entry: TreeEntry): Promise<{ host: string; time: number }> => {
    refs ??= (await d.remote.refs(d.user)).slice(0, REPLAY_SCAN);
    let author = { host: headCommit.host, time: headCommit.time };
    for (const r of refs) {
      const c = r.commit === headId ? headCommit : await d.remote.getCommit(r.commit);
      if (!sameEntry(await look.at(c.root, path), entry)) break;
      author = { host: c.host, time: c.time };
    }
    return author;
  };
}

/**
 * One step of the committer: take every pending snapshot (oldest first), upload the objects
 * they need, apply their changes on top of the user's current head, write the commit, move the
 * head by compare-and-swap, then mark the snapshots shipped. The repository therefore only
 * ever holds whole snapshots. Every step is idempotent; a crash between any two is repaired by
 * calling commitOnce again (a commit already made is recognised by its origin).
 * Returns null when nothing is pending. Throws on repository errors (the caller retries).
 */
export async function commitOnce(d: CommitterDeps): Promise<CommitResult | null> {
  let pending = await d.log.pending();
  if (pending.length === 0) return null;

  // Was (part of) this made durable in the repository before a crash?
  const shipped = await d.log.shipped();
  const head0 = await d.remote.head(d.user);
  const expected = shipped?.commit ?? pending[0]!.base;
  if (head0 && head0.commit !== expected) {
    const ours = await findOurCommit(d, pending[0]!.seq);
    if (ours) {
      await d.log.markShipped(ours);
      pending = pending.filter((p) => p.seq > ours.seq);
      if (pending.length === 0) return { seq: ours.seq, commit: ours.commit, ref: null, uploadedBytes: 0, replayed: true };
    }
  }

  const snaps: Snapshot[] = [];
  for (const p of pending) snaps.push(await d.log.get(p.seq));
  const last = snaps[snaps.length - 1]!;
  const changes: Change[] = snaps.flatMap((s) => s.changes);
  const up = await uploadChanges(d.local, d.remote, changes, d.onProgress);

  // Directories that must be recreated on the way (a concurrent delete): take their attributes
  // from our own latest snapshot.
  const dirAttrs = new Map<string, DirAttrs>();
  for (const c of changes) {
    const parts = c.path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const p = parts.slice(0, i).join('/');
      if (dirAttrs.has(p)) continue;
      const e = await lookupPath(d.local, last.root, parts.slice(0, i));
      if (e) dirAttrs.set(p, { mode: e.mode, uid: e.uid, gid: e.gid, mtimeNs: e.mtimeNs });
    }
  }
  const makeDir = (p: string): DirAttrs => dirAttrs.get(p) ?? { mode: last.root.mode, uid: last.root.uid, gid: last.root.gid, mtimeNs: last.root.mtimeNs };

  // The profile as this session saw it before these changes: the merge base.
  const view = snaps[0]!.prev;
  let conflicts: MergeResult['conflicts'] = [];
  let keptEdits: string[] = [];
  for (let attempt = 0; ; attempt++) {
    const head = await d.remote.head(d.user);
    const headCommit = head ? await d.remote.getCommit(head.commit) : null;
    const bytesBefore = d.remote.stats.bytesWritten;
    if (!head || !headCommit) throw new RoamfsError('UNKNOWN_USER', `no profile for user ${d.user} in ${d.remote.backend.location}`);
    // If the head is not what this session's view was built on, another desktop committed:
    // merge per path (conflict copies, edits beat deletes) instead of overwriting its work.
    let toApply = changes;
    if (headCommit.root.tree !== view.tree) {
      const m = await mergeChanges(
        { ours: d.local, theirs: d.remote, base: view, head: headCommit.root, author: authorFinder(d, head.commit, headCommit) },
        collapseChanges(changes),
      );
      toApply = m.changes;
      conflicts = m.conflicts;
      keptEdits = m.keptEdits;
    }
    const root = await applyChanges(d.remote, headCommit.root, toApply, makeDir);
    const commit: Commit = {
      parents: [head.commit],
      root,
      time: d.clock.now(),
      host: d.host,
      session: d.session,
      message: snaps.length === 1 ? `snapshot ${last.seq}` : `snapshots ${snaps[0]!.seq}-${last.seq}`,
      // Bytes added: uploaded now, written by this attempt, and written by direct snapshots.
      stats: { files: changes.filter((c) => c.op !== 'attrs').length, bytes: up.bytes + (d.remote.stats.bytesWritten - bytesBefore) + snaps.reduce((n, s) => n + (s.written ?? 0), 0) },
      origin: { log: d.logId, snapshot: last.seq },
    };
    const id = await d.remote.putCommit(commit);
    await d.beforeMoveHead?.();
    try {
      const ref = await d.remote.moveHead(d.user, head, id, { time: commit.time, host: d.host, session: d.session });
      await d.log.markShipped({ seq: last.seq, commit: id });
      return { seq: last.seq, commit: id, ref, uploadedBytes: up.bytes, replayed: false, conflicts, keptEdits };
    } catch (err) {
      // Someone else committed meanwhile: apply our changes on top of theirs and try again.
      if (!isRoamfsError(err, 'HEAD_CONFLICT') || attempt >= 9) throw err;
    }
  }
}
