import type { ObjectId } from '../core/hash.js';
import type { ChangeLog, Snapshot } from '../changelog/changelog.js';
import type { Change } from '../repository/edit.js';
import { TYPE_TREE, encodeTree, type ChunkRef, type RootRef, type TreeEntry } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';
import { sameAttrs, sameEntry } from '../repository/entry.js';
import type { LocalCache } from '../base/local-cache.js';
import type { ChunkLoader } from '../base/chunk-loader.js';
import type { Overlay } from '../overlay/overlay.js';
import type { DirNode, FileNode, Node } from '../overlay/nodes.js';
import type { Release } from '../overlay/gate.js';
import type { Chunked, UpperFile } from '../overlay/upper.js';
import { rebase, type RebaseResult } from './rebase.js';

/**
 * Snapshots: freeze the overlay at one instant into a complete profile tree in the local object
 * store, record its differences as one durable change-log entry, and make it the new base of
 * the overlay's change marks.
 *
 * The instant is a synchronous section: the overlay's epoch is closed and everything needed is
 * copied (directory listings, attributes, chunk lists) without yielding, while the content of
 * files with local (upper) data is frozen by queueing their gate exclusively — writes issued
 * after the instant wait until that file has been read and chunked; writes already in flight
 * finish first and are part of the snapshot. Other files and directories stay fully usable.
 *
 * Exclusions (src/core/exclusions.ts): excluded nodes are left out of the trees and of the
 * change list — never chunked, frozen or uploaded. The overlay gives them no change marks, so
 * they never make the snapshotter dirty. Committed entries at excluded paths (hidden by the
 * mount) are carried through unchanged in the trees (DirNode.hidden) and never appear in the
 * change list: commits leave whatever the repository holds there alone (another desktop may
 * exclude less), and snapshot trees stay equal to the committed ones, so the merge sees no
 * phantom change (a deleted directory is deleted, hidden entries and all).
 *
 * Crash points, in order: objects written to the local store -> syncfs barrier -> log batch
 * (synced). A crash before the batch leaves no trace but unreferenced cache objects; after it,
 * the snapshot is durable and recovery mounts it.
 */
export interface SnapshotterDeps {
  overlay: Overlay;
  /** The local object store (cache + unshipped snapshot objects). */
  cache: LocalCache;
  loader: ChunkLoader;
  log: ChangeLog;
  /** ms since the epoch */
  now: () => number;
}

type Attrs = Pick<TreeEntry, 'mode' | 'uid' | 'gid' | 'mtimeNs' | 'xattrs'>;

/** A child as captured at the instant. */
type Captured =
  | { name: string; node: Node; kind: 'reuse'; entry: TreeEntry }
  | { name: string; node: Node; kind: 'file'; attrs: Attrs; chunks: readonly ChunkRef[] }
  | { name: string; node: FileNode; kind: 'upper'; attrs: Attrs; file: UpperFile; frozen: Promise<Release> }
  | { name: string; node: Node; kind: 'symlink'; attrs: Attrs; target: string }
  | { name: string; node: DirNode; kind: 'dir'; attrs: Attrs; tree: ObjectId | null };

interface CapturedDir {
  path: string;
  node: DirNode;
  attrs: Attrs;
  children: Captured[];
}

export interface SnapshotResult {
  seq: number;
  changes: number;
  bytesChunked: number;
  /** Bytes a direct snapshot wrote into the repository (new objects only); 0 otherwise. */
  bytesWritten: number;
}

/**
 * Where a snapshot's new objects go. Default: the local store, made durable by one syncfs of the
 * cache. `direct`: the repository itself (logout, when it is reachable): the new chunks are
 * written once, straight into the repository, instead of into the local store and then copied by
 * the commit; the snapshot's trees go to both. Durable by the repository's barrier before the
 * log entry; recovery and the commit find chunks missing from the local store in the repository
 * (ChunkLoader, uploadChanges).
 */
export interface SnapshotTarget {
  direct?: { repo: Repository };
}

/** Chunk writes in flight while a file is being cut (the store works through the thread pool). */
const PUTS_IN_FLIGHT = 4;

export class Snapshotter {
  /** Changes marked with an epoch <= this are in the last durable snapshot (or the base). */
  private doneEpoch = 0;
  /** The step running now (a snapshot or a rebase): they never overlap. */
  private running: Promise<unknown> | null = null;
  /** See `unsettled`. */
  private keptPaths = false;
  /** The profile root of the last durable snapshot (or of the mounted commit). */
  private prevRoot: RootRef;

  constructor(
    private readonly d: SnapshotterDeps,
    baseRoot: RootRef,
    /** The repository commit the overlay's base comes from (recorded in each snapshot; moved by rebaseOnto). */
    private baseCommit: ObjectId,
    private nextSeq: number,
  ) {
    this.prevRoot = baseRoot;
  }

  /** True when the overlay has changes not yet in a snapshot. */
  get dirty(): boolean {
    const r = this.d.overlay.root;
    return r.treeEpoch > this.doneEpoch || r.changedEpoch > this.doneEpoch;
  }

  get lastRoot(): RootRef {
    return this.prevRoot;
  }

  /**
   * The last pick-up kept paths where the commit differs (changed here, or open): the next one
   * looks at them again even if the head has not moved (they may be closed, or committed, by then).
   */
  get unsettled(): boolean {
    return this.keptPaths;
  }

  /** The repository commit the overlay's base comes from. */
  get baseCommitId(): ObjectId {
    return this.baseCommit;
  }

  /** Take one snapshot (serialized: a call while one runs waits for it and then runs). Null when nothing changed. */
  snapshotOnce(target: SnapshotTarget = {}): Promise<SnapshotResult | null> {
    return this.serialized(() => this.take(target));
  }

  /**
   * Pick up a newer committed root (other desktops' work, merged with ours): see rebase.ts.
   * Serialized with snapshots. `target` is asked inside the serialization, where no snapshot
   * can start: it returns the commit to move to (the repository's head as of now), or null to do
   * nothing — it must return null unless every snapshot is committed (pending snapshots are
   * merged against the base they were taken on), and the head it names must contain them.
   */
  rebaseOnto(target: () => Promise<{ commit: ObjectId; root: RootRef } | null>): Promise<(RebaseResult & { commit: ObjectId }) | null> {
    return this.serialized(async () => {
      const to = await target();
      if (!to || (to.commit === this.baseCommit && !this.keptPaths)) return null;
      const r = await rebase({ overlay: this.d.overlay, loadTree: (id) => this.d.loader.loadTree(id), store: this.d.cache.repo, sync: () => this.d.cache.sync() }, this.prevRoot, to.root, this.doneEpoch);
      this.prevRoot = r.root;
      this.baseCommit = to.commit;
      this.keptPaths = r.kept.length > 0;
      return { ...r, commit: to.commit };
    });
  }

  private async serialized<T>(step: () => Promise<T>): Promise<T> {
    while (this.running) await this.running.catch(() => {});
    const p = step();
    this.running = p;
    try {
      return await p;
    } finally {
      this.running = null;
    }
  }

  private async take(target: SnapshotTarget): Promise<SnapshotResult | null> {
    if (!this.dirty) return null;
    const direct = target.direct?.repo ?? null;
    const chunkStore = direct ?? this.d.cache.repo;
    const { overlay } = this.d;
    const since = this.doneEpoch;
    // ---- the instant (synchronous) ----
    const epoch = overlay.beginEpoch();
    const time = this.d.now();
    const dirs: CapturedDir[] = [];
    for (const { path, dir } of overlay.changedDirs(since)) {
      const children: Captured[] = [];
      for (const [name, node] of dir.children!) if (!node.excluded) children.push(this.capture(name, node, since));
      // Committed entries hidden by an exclusion stay in the tree as they are (see DirNode.hidden).
      for (const e of dir.hidden ?? []) if (!dir.children!.has(e.name) || dir.children!.get(e.name)!.excluded) children.push({ name: e.name, node: dir, kind: 'reuse', entry: e });
      dirs.push({ path, node: dir, attrs: this.attrsOf(dir), children });
    }
    // ---- end of the instant ----
    let bytesChunked = 0;
    let bytesWritten = 0;
    /** Upper files chunked by this snapshot, with their change tracking from before it. */
    const rechunked: { file: UpperFile; prev: Chunked | null }[] = [];
    let durable = false;
    const counted = (n: number, written: boolean) => {
      bytesChunked += n;
      if (direct && written) bytesWritten += n;
    };
    try {
      // Build trees bottom-up (children before parents: reverse of the parent-first order).
      const treeOf = new Map<DirNode, ObjectId>();
      const entryOf = new Map<Node, TreeEntry>();
      for (const cd of [...dirs].reverse()) {
        const entries: TreeEntry[] = [];
        for (const c of cd.children) {
          const e = await this.entryFor(c, treeOf, chunkStore, counted, rechunked);
          entries.push(e);
          if (c.kind !== 'reuse') entryOf.set(c.node, e);
        }
        const payload = encodeTree(entries);
        treeOf.set(cd.node, (await this.d.cache.repo.putObject(TYPE_TREE, payload)).id);
        if (direct && (await direct.putObject(TYPE_TREE, payload)).written) bytesWritten += payload.length;
      }
      const rootCap = dirs[0];
      const root: RootRef = rootCap
        ? { tree: treeOf.get(rootCap.node)!, mode: rootCap.attrs.mode, uid: rootCap.attrs.uid, gid: rootCap.attrs.gid, mtimeNs: rootCap.attrs.mtimeNs }
        : { ...this.prevRoot, ...this.attrsOf(overlay.root) };
      const changes = await this.diff(this.prevRoot, root, dirs, treeOf);
      if (changes.length > 0) {
        if (direct) await direct.backend.barrier();
        else await this.d.cache.sync();
        const snap: Snapshot = { seq: this.nextSeq, time, base: this.baseCommit, root, prev: this.prevRoot, changes, ...(bytesWritten > 0 ? { written: bytesWritten } : {}) };
        await this.d.log.append(snap);
        this.nextSeq++;
      }
      // The snapshot is durable: it becomes the base of the change marks.
      for (const [node, e] of entryOf) node.base = e;
      for (const cd of dirs) {
        const a = cd.attrs;
        cd.node.base = { name: cd.node.name, type: 'dir', tree: treeOf.get(cd.node)!, mode: a.mode, uid: a.uid, gid: a.gid, mtimeNs: a.mtimeNs, ...(a.xattrs ? { xattrs: a.xattrs } : {}) };
      }
      this.prevRoot = root;
      this.doneEpoch = epoch;
      durable = true;
      return changes.length > 0 ? { seq: this.nextSeq - 1, changes: changes.length, bytesChunked, bytesWritten } : null;
    } finally {
      // A failed snapshot's chunks may exist nowhere durable (or only in the repository, for a
      // direct one): the files go back to their earlier chunk lists, with every range written
      // since then still marked.
      if (!durable) {
        for (const { file, prev } of rechunked) {
          const since = file.chunked;
          file.chunked = prev && since ? { chunks: prev.chunks, from: Math.min(prev.from, since.from), to: Math.max(prev.to, since.to) } : null;
        }
      }
      // Every frozen file is thawed, also when the snapshot failed half-way (releases are idempotent).
      for (const cd of dirs) for (const c of cd.children) if (c.kind === 'upper') void c.frozen.then((r) => r());
    }
  }

  /** Copy what the snapshot needs of one child, synchronously. */
  private capture(name: string, node: Node, since: number): Captured {
    const changed = node.changedEpoch > since || !node.base;
    if (node.kind === 'dir') {
      const inTree = node.treeEpoch > since || !node.base;
      if (!changed && !inTree) return { name, node, kind: 'reuse', entry: { ...node.base!, name } };
      const base = node.base;
      return { name, node, kind: 'dir', attrs: this.attrsOf(node), tree: inTree || !base || base.type !== 'dir' ? null : base.tree };
    }
    if (!changed) return { name, node, kind: 'reuse', entry: { ...node.base!, name } };
    const attrs = this.attrsOf(node);
    if (node.kind === 'symlink') return { name, node, kind: 'symlink', attrs, target: node.target };
    const c = node.content;
    if (c.kind === 'base') return { name, node, kind: 'file', attrs, chunks: c.map.chunks };
    // Queued now, inside the instant: later writes wait behind it.
    return { name, node, kind: 'upper', attrs, file: c.file, frozen: node.gate.acquireExclusive() };
  }

  private attrsOf(node: Node): Attrs {
    const ids = this.d.overlay.ids;
    const a: Attrs = { mode: node.perm, uid: ids.uidToStored(node.uid), gid: ids.gidToStored(node.gid), mtimeNs: node.mtimeNs };
    if (node.xattrs.size > 0) a.xattrs = Object.fromEntries(node.xattrs);
    return a;
  }

  private async entryFor(
    c: Captured,
    treeOf: Map<DirNode, ObjectId>,
    store: Repository,
    onBytes: (n: number, written: boolean) => void,
    rechunked: { file: UpperFile; prev: Chunked | null }[],
  ): Promise<TreeEntry> {
    switch (c.kind) {
      case 'reuse':
        return c.entry;
      case 'symlink':
        return { name: c.name, type: 'symlink', target: c.target, ...c.attrs };
      case 'dir':
        return { name: c.name, type: 'dir', tree: c.tree ?? treeOf.get(c.node)!, ...c.attrs };
      case 'file':
        return { name: c.name, type: 'file', size: c.chunks.reduce((s, x) => s + x.size, 0), chunks: [...c.chunks], ...c.attrs };
      case 'upper': {
        const r = await c.frozen;
        try {
          // Under the exclusive gate: nothing changes the content until r() below.
          const prev = c.file.chunked;
          const chunks = await this.chunkFile(c.file, store, onBytes, prev);
          // Tentatively the new base of the file's change tracking (writes from now on are
          // measured against it); put back, with those writes, if the snapshot fails.
          c.file.chunked = { chunks, from: Infinity, to: -Infinity };
          rechunked.push({ file: c.file, prev });
          // Like ContentStore.closeIdle: nobody can be reading without an open handle.
          if (c.node.openCount === 0) await c.file.close();
          return { name: c.name, type: 'file', size: chunks.reduce((s, x) => s + x.size, 0), chunks, ...c.attrs };
        } finally {
          r();
        }
      }
    }
  }

  /**
   * Cut an upper file into chunks and store them (a few stores in flight while cutting goes on).
   *
   * With `prev` (the chunk list of this file's content at its last chunking, and the range
   * changed since), only what the change can have moved is cut again: FastCDC's cut at the end
   * of a chunk depends only on that chunk's bytes, so the chunks that end before the first
   * changed byte stay (not the last one of the old content, which ended at its end of file),
   * and after the last changed byte, once a new cut falls on an old boundary, the rest is the
   * old rest. The result is what cutting the whole file gives, bytes read: the changed region
   * plus a chunk or two around it.
   */
  private async chunkFile(file: UpperFile, repo: Repository, onBytes: (n: number, written: boolean) => void, prev: Chunked | null = null): Promise<ChunkRef[]> {
    const size = file.size;
    const chunks: ChunkRef[] = [];
    let startAt = 0;
    /** Old chunks from the boundary at position p on, when p is a resynchronisation point. */
    let resync: (p: number) => readonly ChunkRef[] | null = () => null;
    if (prev && prev.chunks.length > 0) {
      const old = prev.chunks;
      const oldSize = old.reduce((n, c) => n + c.size, 0);
      if (prev.from === Infinity && size === oldSize) return [...old]; // unchanged
      const first = Math.min(prev.from, oldSize - 1);
      const boundary = new Map<number, number>(); // end offset of old chunk i -> i + 1
      let at = 0;
      for (let i = 0; i < old.length; i++) {
        if (at + old[i]!.size <= first) {
          chunks.push(old[i]!);
          startAt = at + old[i]!.size;
        }
        at += old[i]!.size;
        boundary.set(at, i + 1);
      }
      resync = (p) => {
        if (p < prev.to || p >= size) return null;
        const i = boundary.get(p);
        return i === undefined ? null : old.slice(i);
      };
    }
    // The repository's chunker: its parameters are part of the format (the local store's config
    // holds defaults), and a file's remembered chunk lists come from the repository too.
    const chunker = this.d.loader.remote.chunker;
    const max = chunker.params.maxSize;
    const inFlight = new Set<Promise<unknown>>();
    let failed: unknown = null;
    const bufSize = Math.min(size - startAt, 8 * max) || 1;
    // Chunks are stored from subarrays of the read buffer while the next reads go on, so a
    // round never reads over data a store in flight still uses: three buffers take turns (at
    // most PUTS_IN_FLIGHT stores are in flight, from the last two at most), and a buffer is
    // reused once the stores from it are done. Not a new buffer per round: first-touch page
    // faults on fresh memory made reading 100 MiB ~10x slower than the read itself.
    const ring: { buf: Buffer; puts: Promise<unknown>[] }[] = [];
    let cur = 0;
    /** Store one chunk; its id (computed by the store) is filled into `ref` when it is stored. */
    const put = async (data: Buffer, ref: { id: string }) => {
      while (inFlight.size >= PUTS_IN_FLIGHT) await Promise.race(inFlight);
      if (failed) throw failed;
      const p = repo.putChunk(data).then(
        ({ id, written }) => {
          ref.id = id;
          onBytes(data.length, written);
        },
        (err: unknown) => (failed ??= err),
      );
      inFlight.add(p);
      ring[cur]?.puts.push(p);
      void p.finally(() => inFlight.delete(p));
    };
    // A file that fits in one buffer (nearly every file) is read at once, without a thread-pool
    // round trip per open, read and close (a file in memory is not even copied: we hold its gate).
    const whole = startAt === 0 && size > 0 && size <= bufSize ? file.readAllSync() : null;
    if (!whole) ring.push({ buf: Buffer.allocUnsafe(bufSize), puts: [] });
    let buf = whole ?? ring[0]!.buf;
    let have = whole ? size : 0;
    let pos = startAt; // file offset of buf[0]
    let rest: readonly ChunkRef[] | null = null;
    try {
      while (pos < size && !rest) {
        while (have < buf.length && pos + have < size) {
          const bytesRead = await file.read(buf, have, Math.min(buf.length - have, size - pos - have), pos + have);
          if (bytesRead === 0) break;
          have += bytesRead;
        }
        if (pos + have < size && have < buf.length) {
          // The file on disk ended before its recorded size: the rest reads as zeros (as read() does).
          const end = Math.min(buf.length, size - pos);
          buf.fill(0, have, end);
          have = end;
        }
        const eof = pos + have >= size;
        let off = 0;
        while (have - off > 0 && (eof || have - off >= max)) {
          const len = chunker.cut(buf, off, have);
          const data = buf.subarray(off, off + len);
          const ref = { id: '', size: len };
          chunks.push(ref);
          await put(data, ref);
          off += len;
          rest = resync(pos + off);
          if (rest) break;
        }
        if (eof || rest) break;
        const n = (cur + 1) % 3;
        if (ring[n]) {
          await Promise.all(ring[n]!.puts);
          ring[n]!.puts = [];
        } else {
          ring[n] = { buf: Buffer.allocUnsafe(bufSize), puts: [] };
        }
        buf.copy(ring[n]!.buf, 0, off, have);
        buf = ring[n]!.buf;
        cur = n;
        have -= off;
        pos += off;
      }
    } finally {
      // Also on failure: the caller releases the file's gate next, and a store still in flight
      // reads a buffer that may be the file's own memory.
      await Promise.allSettled(inFlight);
    }
    if (failed) throw failed;
    if (rest) chunks.push(...rest);
    return chunks;
  }

  /**
   * The changes from prev to next: walk the captured (changed) directories from the root,
   * comparing each with the entry at the same path in the previous snapshot. A directory that
   * is new at its path (created, or moved there) is one `put` with its whole subtree.
   */
  private async diff(prev: RootRef, next: RootRef, dirs: CapturedDir[], treeOf: Map<DirNode, ObjectId>): Promise<Change[]> {
    const changes: Change[] = [];
    const byNode = new Map(dirs.map((d) => [d.node, d] as const));
    if (prev.mode !== next.mode || prev.uid !== next.uid || prev.gid !== next.gid || prev.mtimeNs !== next.mtimeNs) {
      changes.push({ op: 'attrs', path: '', attrs: { mode: next.mode, uid: next.uid, gid: next.gid, mtimeNs: next.mtimeNs } });
    }
    const walk = async (cd: CapturedDir, prevTree: ObjectId | null, path: string): Promise<void> => {
      const before = new Map((prevTree ? await this.d.loader.loadTree(prevTree) : []).map((e) => [e.name, e] as const));
      const after = await this.d.cache.repo.getTree(treeOf.get(cd.node)!);
      const join = (n: string) => (path ? `${path}/${n}` : n);
      for (const e of after) {
        const pe = before.get(e.name);
        before.delete(e.name);
        const child = cd.children.find((c) => c.name === e.name)!;
        const sub = child.kind === 'dir' ? byNode.get(child.node) : undefined;
        if (!pe || pe.type !== e.type) {
          changes.push({ op: 'put', path: join(e.name), entry: e });
        } else if (e.type === 'dir' && pe.type === 'dir') {
          if (sub) {
            if (!sameAttrs(e, pe)) changes.push({ op: 'attrs', path: join(e.name), attrs: { mode: e.mode, uid: e.uid, gid: e.gid, mtimeNs: e.mtimeNs } });
            if (e.tree !== pe.tree) await walk(sub, pe.tree, join(e.name));
          } else if (e.tree !== pe.tree) {
            changes.push({ op: 'put', path: join(e.name), entry: e });
          } else if (!sameAttrs(e, pe)) {
            changes.push({ op: 'attrs', path: join(e.name), attrs: { mode: e.mode, uid: e.uid, gid: e.gid, mtimeNs: e.mtimeNs } });
          }
        } else if (!sameEntry(e, pe)) {
          changes.push({ op: 'put', path: join(e.name), entry: e });
        }
      }
      for (const name of before.keys()) {
        // Hidden at mount (excluded), not deleted: the change list never mentions excluded paths.
        if (!this.d.overlay.exclusions.matchesOwn(join(name))) changes.push({ op: 'delete', path: join(name) });
      }
    };
    const rootCap = dirs[0];
    if (rootCap && next.tree !== prev.tree) await walk(rootCap, prev.tree, '');
    return changes;
  }
}
