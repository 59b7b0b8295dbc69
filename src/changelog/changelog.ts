import { RoamfsError } from '../core/errors.js';
import type { ObjectId } from '../core/hash.js';
import { decodeTree, encodeTree, nsToPair, pairToNs, packState, unpackState, type RootRef, type TreeEntry } from '../repository/objects.js';
import type { Change, DirAttrs } from '../repository/edit.js';
import { corruptLogHint, type Db } from '../store/db.js';

/**
 * A durable snapshot: the overlay's state at one instant, as the changes since the previous
 * snapshot (or since the base commit), plus the full local root for remounting.
 */
export interface Snapshot {
  seq: number;
  /** ms since the epoch (clock of this desktop) */
  time: number;
  /** The repository commit this session's state was built on when the snapshot was taken. */
  base: ObjectId;
  /** The complete profile at this snapshot, in the local object store. */
  root: RootRef;
  /** The root the changes were computed against (the previous snapshot, or the mounted commit's). */
  prev: RootRef;
  changes: Change[];
  /** Bytes of new objects this snapshot wrote straight into the repository (a logout's direct snapshot); absent: none. */
  written?: number;
}

export interface Shipped {
  /** Highest snapshot seq whose changes are in the repository. */
  seq: number;
  /** The repository commit that contains it. */
  commit: ObjectId;
}

const pad = (n: number, w: number) => String(n).padStart(w, '0');
const snapKey = (seq: number) => `snap!${pad(seq, 16)}`;
const chgKey = (seq: number, i: number) => `chg!${pad(seq, 16)}!${pad(i, 8)}`;

function encodeAttrs(a: DirAttrs) {
  return { m: a.mode, u: a.uid, g: a.gid, mt: nsToPair(a.mtimeNs) };
}
function decodeAttrs(o: { m: number; u: number; g: number; mt: unknown }): DirAttrs {
  return { mode: o.m, uid: o.u, gid: o.g, mtimeNs: pairToNs(o.mt) };
}

/** Changes are stored with the entry in the repository's tree encoding (one-entry tree). */
function encodeChange(c: Change): Buffer {
  switch (c.op) {
    case 'put':
      return packState({ op: 'put', path: c.path, e: encodeTree([c.entry]) });
    case 'attrs':
      return packState({ op: 'attrs', path: c.path, a: encodeAttrs(c.attrs) });
    case 'delete':
      return packState({ op: 'delete', path: c.path });
  }
}
function decodeChange(b: Uint8Array): Change {
  const o = unpackState(b) as { op: string; path: string; e?: Uint8Array; a?: { m: number; u: number; g: number; mt: unknown } };
  if (o.op === 'put') return { op: 'put', path: o.path, entry: decodeTree(o.e!)[0]! as TreeEntry };
  if (o.op === 'attrs') return { op: 'attrs', path: o.path, attrs: decodeAttrs(o.a!) };
  if (o.op === 'delete') return { op: 'delete', path: o.path };
  throw new Error(`unknown change ${o.op}`);
}

function encodeRoot(r: RootRef) {
  return { d: r.tree, ...encodeAttrs(r) };
}
function decodeRoot(o: { d: string; m: number; u: number; g: number; mt: unknown }): RootRef {
  return { tree: o.d, ...decodeAttrs(o) };
}

/**
 * A LevelDB failure as a coded error: a failed read means the log is damaged or unreadable
 * (CORRUPT_LOG, with what to do); a failed write is NO_SPACE or IO.
 */
function logError(db: Db, what: string, write: boolean, err: unknown): RoamfsError {
  if (err instanceof RoamfsError) return err;
  const cause = (err as { cause?: unknown }).cause ?? err;
  const msg = cause instanceof Error ? cause.message : String(cause);
  if (/No space left|ENOSPC|quota/i.test(msg)) return new RoamfsError('NO_SPACE', `change log ${db.location}: ${what}: no space left on device`, { cause: err });
  if (write) return new RoamfsError('IO', `change log ${db.location}: ${what} failed: ${msg}`, { cause: err });
  return new RoamfsError('CORRUPT_LOG', `change log ${db.location} is damaged or unreadable (${what}: ${msg})`, { cause: err, hint: corruptLogHint(db.location) });
}

/**
 * The local change log (LevelDB, msgpack values). Snapshots are appended atomically and
 * durably (one synced batch; the header is part of it, so a snapshot is either wholly present
 * or absent). The committer reads them oldest-first and, once their commit is in the
 * repository, marks them shipped and trims them in one batch.
 *
 * After a failed write (ENOSPC, EIO) the database is closed and reopened before the next
 * operation: the failed append can leave a torn record at the end of LevelDB's log file, and
 * LevelDB's recovery at the next open silently drops everything after a torn record - including
 * later batches it had acknowledged as synced (seen with ENOSPC on a full disk: snapshots taken
 * after space was freed vanished at the next mount). Reopening right away recovers the log up to
 * the torn record (which held nothing acknowledged) and continues in a fresh log file.
 * Operations are serialized so that the reopen never races an iterator.
 */
export class ChangeLog {
  /** A write failed: reopen before the next operation. */
  private mustReopen = false;
  /** We closed the database for a reopen that failed (distinguishes it from the owner's close()). */
  private closedByUs = false;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly db: Db) {}

  private run<T>(what: string, write: boolean, f: () => Promise<T>): Promise<T> {
    const p = this.queue.then(async () => {
      if (this.mustReopen && (this.db.status === 'open' || this.closedByUs)) {
        try {
          if (this.db.status === 'open') await this.db.close();
          this.closedByUs = true;
          await this.db.open();
          this.closedByUs = false;
          this.mustReopen = false;
        } catch (err) {
          throw logError(this.db, 'reopen after a failed write', true, err);
        }
      }
      try {
        return await f();
      } catch (err) {
        if (write) this.mustReopen = true;
        throw logError(this.db, what, write, err);
      }
    });
    this.queue = p.catch(() => {});
    return p;
  }

  append(s: Snapshot): Promise<void> {
    const ops: Array<{ type: 'put'; key: string; value: Uint8Array }> = s.changes.map((c, i) => ({ type: 'put', key: chgKey(s.seq, i), value: encodeChange(c) }));
    ops.push({
      type: 'put',
      key: snapKey(s.seq),
      value: packState({ seq: s.seq, time: s.time, base: s.base, root: encodeRoot(s.root), prev: encodeRoot(s.prev), n: s.changes.length, ...(s.written ? { w: s.written } : {}) }),
    });
    return this.run(`append snapshot ${s.seq}`, true, () => this.db.batch(ops, { sync: true }));
  }

  /** Headers of unshipped snapshots, oldest first (changes not loaded). */
  pending(): Promise<Array<Omit<Snapshot, 'changes'> & { count: number }>> {
    return this.run('list snapshots', false, async () => {
      const out: Array<Omit<Snapshot, 'changes'> & { count: number }> = [];
      for await (const v of this.db.values({ gte: 'snap!', lt: 'snap!~' })) {
        const o = this.decode(v);
        out.push({ seq: o.seq, time: o.time, base: o.base, root: decodeRoot(o.root), prev: decodeRoot(o.prev), count: o.n });
      }
      return out;
    });
  }

  /** A full snapshot with its changes; throws CORRUPT_LOG when entries are missing. */
  get(seq: number): Promise<Snapshot> {
    return this.run(`read snapshot ${seq}`, false, async () => {
      const v = await this.db.get(snapKey(seq));
      if (v === undefined) throw this.corrupt(`it has no snapshot ${seq}`);
      const o = this.decode(v);
      const changes: Change[] = [];
      for await (const c of this.db.values({ gte: chgKey(seq, 0), lt: `chg!${pad(seq, 16)}!~` })) {
        try {
          changes.push(decodeChange(c));
        } catch (err) {
          throw this.corrupt(`snapshot ${seq} has an unreadable entry: ${(err as Error).message}`);
        }
      }
      if (changes.length !== o.n) throw this.corrupt(`snapshot ${seq} has ${changes.length} of ${o.n} entries`);
      return { seq: o.seq, time: o.time, base: o.base, root: decodeRoot(o.root), prev: decodeRoot(o.prev), changes, ...(typeof o.w === 'number' && o.w > 0 ? { written: o.w } : {}) };
    });
  }

  /**
   * Check what recovery relies on: the unshipped snapshots follow the shipped one without a gap
   * (each holds only the changes since the previous one, so a missing one cannot be committed),
   * and each is complete. Throws CORRUPT_LOG naming the damage.
   */
  async verify(): Promise<void> {
    const shipped = await this.shipped();
    let expect = (shipped?.seq ?? 0) + 1;
    for (const p of await this.pending()) {
      if (p.seq !== expect) {
        throw this.corrupt(
          p.seq > expect ? `snapshot${p.seq - expect > 1 ? `s ${expect}-${p.seq - 1} are` : ` ${expect} is`} missing (${shipped ? `shipped up to ${shipped.seq}` : 'nothing shipped'}, next present ${p.seq})` : `snapshot ${p.seq} is out of order`,
        );
      }
      await this.get(p.seq);
      expect++;
    }
  }

  /** Record that snapshots up to `shipped.seq` are in commit `shipped.commit`, and drop them. */
  markShipped(shipped: Shipped): Promise<void> {
    return this.run(`mark snapshot ${shipped.seq} shipped`, true, async () => {
      const ops: Array<{ type: 'del'; key: string } | { type: 'put'; key: string; value: Uint8Array }> = [];
      for await (const k of this.db.keys({ gte: 'snap!', lte: snapKey(shipped.seq) })) ops.push({ type: 'del', key: k });
      for await (const k of this.db.keys({ gte: 'chg!', lt: `chg!${pad(shipped.seq + 1, 16)}` })) ops.push({ type: 'del', key: k });
      ops.push({ type: 'put', key: 'meta!shipped', value: packState(shipped) });
      await this.db.batch(ops, { sync: true });
    });
  }

  shipped(): Promise<Shipped | null> {
    return this.run('read the shipped position', false, async () => {
      const v = await this.db.get('meta!shipped');
      return v === undefined ? null : (unpackState(v) as Shipped);
    });
  }

  /** Small metadata documents (msgpack). */
  getMeta<T>(name: string): Promise<T | undefined> {
    return this.run(`read ${name}`, false, async () => {
      const v = await this.db.get(`meta!${name}`);
      return v === undefined ? undefined : (unpackState(v) as T);
    });
  }
  setMeta(name: string, value: unknown): Promise<void> {
    return this.run(`write ${name}`, true, () => this.db.put(`meta!${name}`, packState(value), { sync: true }));
  }

  private corrupt(what: string): RoamfsError {
    return new RoamfsError('CORRUPT_LOG', `change log ${this.db.location} is damaged: ${what}`, { hint: corruptLogHint(this.db.location) });
  }

  private decode(v: Uint8Array) {
    try {
      type R = { d: string; m: number; u: number; g: number; mt: unknown };
      return unpackState(v) as { seq: number; time: number; base: string; root: R; prev: R; n: number; w?: unknown };
    } catch (err) {
      throw this.corrupt(`unreadable snapshot header: ${(err as Error).message}`);
    }
  }
}
