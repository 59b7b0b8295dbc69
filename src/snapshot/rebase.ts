import { sha256, type ObjectId } from '../core/hash.js';
import { sameAttrs, sameEntry } from '../repository/entry.js';
import { TYPE_TREE, encodeTree, type DirEntry, type RootRef, type TreeEntry } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';
import { rootEntry } from '../repository/walk.js';
import type { Overlay } from '../overlay/overlay.js';
import type { DirNode, Node } from '../overlay/nodes.js';

/**
 * Picking up what other desktops committed: move the overlay's base from the root of the last
 * snapshot (`from`) to a newer committed root (`to`) at every path this session has not changed
 * since that snapshot, and keep the session's own changes everywhere else.
 *
 * Per path, comparing `from` and `to`:
 * - same entry: nothing to do;
 * - the overlay still holds exactly the `from` entry there, unchanged since the snapshot (change
 *   marks <= `since`): it takes the `to` entry (added, replaced, removed; a replaced or removed
 *   file that is open keeps its content for its handles, like after a rename over it);
 * - the same directory on both sides: the same rules, path by path below it; a directory that
 *   was never listed just gets the new tree;
 * - anything else (this session created, changed, removed or renamed something there since the
 *   snapshot): kept, and the result's entry stays the `from` one.
 * - excluded (local-only) paths: the hidden committed entries follow `to`; the session's local
 *   content there is never touched.
 *
 * The result is the new base of the change marks: `to` where the overlay took it, `from` where a
 * change of the session was kept. The next snapshot's changes are computed against it, and so is
 * the next commit's merge: a kept path that the other desktop also changed is a conflict there
 * (conflict copy, or an edit that beats a delete), exactly as if it had been committed before.
 *
 * Call only when every snapshot is committed (the change log holds nothing pending: the merge
 * base of pending snapshots is their own `prev`) and with snapshots excluded; FUSE operations go
 * on: the overlay is changed in one synchronous section, after every tree it needs is loaded.
 */
export interface RebaseDeps {
  overlay: Overlay;
  /** Trees of either root: the local store first, then the repository (ChunkLoader.loadTree). */
  loadTree(id: ObjectId): Promise<TreeEntry[]>;
  /** Where the new trees of the result go (the local object store). */
  store: Repository;
  /**
   * Makes what was written to `store` durable. The result's own trees (where a change of this
   * session was kept) exist nowhere else, and a snapshot that is merged against them after a
   * crash must find them: they are synced right away (rare: only when something was kept).
   */
  sync(): Promise<void>;
}

export interface RebaseResult {
  /** The new base root (= `to` when nothing was kept). */
  root: RootRef;
  /** Paths whose entry the overlay took from `to` (added, replaced, removed, attributes). */
  adopted: string[];
  /** Paths where `to` differs but a change of this session since the snapshot was kept. */
  kept: string[];
}

type Listing = Map<string, TreeEntry>;

export async function rebase(d: RebaseDeps, from: RootRef, to: RootRef, since: number): Promise<RebaseResult> {
  const o = d.overlay;
  const trees = new Map<ObjectId, Listing>();
  const exclusions = o.exclusions;
  const join = (dir: string, name: string) => (dir ? `${dir}/${name}` : name);

  /** One pass over the differing directories the overlay has listed; applies only with `apply`. */
  function pass(apply: boolean) {
    const missing = new Set<ObjectId>();
    const adopted: string[] = [];
    const kept: string[] = [];
    const newTrees = new Map<ObjectId, Buffer>();
    /** Directories added, replaced or removed whole (for the quota's total; files count themselves in adoptEntry). */
    const wholesale: Array<{ before: DirEntry | null; after: DirEntry | null; path: string }> = [];

    /** The hybrid tree of `dir` (which holds `fromTree` as base); null when a tree is missing. */
    const walk = (dir: DirNode, path: string, fromTree: ObjectId, toTree: ObjectId): ObjectId | null => {
      if (fromTree === toTree || !dir.children) return toTree;
      const F = trees.get(fromTree);
      const T = trees.get(toTree);
      if (!F) missing.add(fromTree);
      if (!T) missing.add(toTree);
      if (!F || !T) return null;
      const out = new Map(F);
      let complete = true;
      for (const name of new Set([...F.keys(), ...T.keys()])) {
        const f = F.get(name) ?? null;
        const t = T.get(name) ?? null;
        if (sameEntry(f, t)) continue;
        const p = join(path, name);
        if (!dir.excluded && !exclusions.empty && exclusions.matchesOwn(p)) {
          // Hidden when the directory was listed: the hidden committed entry follows `to`.
          if (apply) {
            const hidden = (dir.hidden ?? []).filter((e) => e.name !== name);
            if (t) hidden.push(t);
            dir.hidden = hidden.length > 0 ? hidden : null;
          }
          if (t) out.set(name, t);
          else out.delete(name);
          continue;
        }
        const c = dir.children.get(name);
        if (f?.type === 'dir' && t?.type === 'dir' && c?.kind === 'dir' && c.base?.type === 'dir' && c.base.tree === f.tree) {
          // The same directory on both sides: path by path below it.
          const sub = walk(c, p, f.tree, t.tree);
          if (sub === null) {
            complete = false;
            continue;
          }
          const ownAttrs = c.changedEpoch <= since;
          const e: DirEntry = { ...(ownAttrs ? t : f), name, tree: sub };
          if (apply) {
            const attrsMoved = ownAttrs && !sameAttrs(f, t);
            o.adoptBase(c, e, attrsMoved);
            if (attrsMoved) adopted.push(p);
          }
          out.set(name, e);
          continue;
        }
        if (!untouched(c, f, since)) {
          if (apply) kept.push(p);
          continue;
        }
        if (apply) {
          o.adoptEntry(dir, name, t);
          adopted.push(p);
          if (f?.type === 'dir' || t?.type === 'dir') wholesale.push({ before: f?.type === 'dir' ? f : null, after: t?.type === 'dir' ? t : null, path: p });
        }
        if (t) out.set(name, t);
        else out.delete(name);
      }
      if (!complete) return null;
      const payload = encodeTree([...out.values()]);
      const id = sha256(Buffer.of(TYPE_TREE), payload);
      if (id !== fromTree && id !== toTree) newTrees.set(id, payload);
      return id;
    };

    const root = o.root;
    const tree = walk(root, '', from.tree, to.tree);
    let result: RootRef | null = null;
    if (tree !== null) {
      const ownAttrs = root.changedEpoch <= since;
      result = { ...(ownAttrs ? attrsOfRoot(to) : attrsOfRoot(from)), tree };
      if (apply) {
        const attrsMoved = ownAttrs && !sameAttrs(from, to);
        o.adoptBase(root, rootEntry(result), attrsMoved);
        if (attrsMoved) adopted.push('');
      }
    }
    return { missing, result, adopted, kept, newTrees, wholesale };
  }

  // Load what the overlay needs and store (durably) the trees the result needs, then change the
  // overlay in one synchronous section: a failure before it leaves the home as it was. The
  // overlay may change while we wait (a directory listed, a file touched): look again until the
  // dry pass needs nothing more, and apply in the same synchronous section as that last look.
  const stored = new Set<ObjectId>();
  for (;;) {
    const dry = pass(false);
    if (dry.missing.size > 0) {
      await Promise.all([...dry.missing].map(async (id) => trees.set(id, new Map((await d.loadTree(id)).map((e) => [e.name, e] as const)))));
      continue;
    }
    const unstored = [...dry.newTrees].filter(([id]) => !stored.has(id));
    if (unstored.length > 0) {
      for (const [id, payload] of unstored) {
        await d.store.putObject(TYPE_TREE, payload);
        stored.add(id);
      }
      await d.sync();
      continue;
    }
    const r = pass(true);
    if (o.usage.limited) {
      for (const w of r.wholesale) o.usage.change((await sizeOf(d, w.after, w.path)) - (await sizeOf(d, w.before, w.path)));
    }
    return { root: r.result!, adopted: r.adopted, kept: r.kept };
  }
}

/** The overlay holds exactly the committed entry `f` at this name, unchanged since the snapshot (or nothing, when f is null). */
function untouched(c: Node | undefined, f: TreeEntry | null, since: number): boolean {
  if (!f) return c === undefined;
  if (!c || !c.base || !sameEntry(c.base, f)) return false;
  if (c.changedEpoch > since) return false;
  // A file open for writing may have a write on its way (marked changed only once it lands), which
  // would land in a detached file and be lost: it keeps this desktop's version until closed (then
  // the next pick-up takes the commit's, or the merge makes a conflict copy). Read-only handles
  // keep reading the old content after the replacement, as after a rename over an open file.
  if (c.kind === 'file' && (c.writers > 0 || !c.gate.idle)) return false;
  return c.kind !== 'dir' || c.treeEpoch <= since;
}

function attrsOfRoot(r: RootRef): Omit<RootRef, 'tree'> {
  return { mode: r.mode, uid: r.uid, gid: r.gid, mtimeNs: r.mtimeNs };
}

/** Regular-file bytes below a directory (excluded paths skipped, as the mount hides them). */
async function sizeOf(d: RebaseDeps, e: DirEntry | null, path: string): Promise<number> {
  if (!e) return 0;
  let total = 0;
  for (const c of await d.loadTree(e.tree)) {
    const p = `${path}/${c.name}`;
    if (!d.overlay.exclusions.empty && d.overlay.exclusions.matchesOwn(p)) continue;
    if (c.type === 'file') total += c.size;
    else if (c.type === 'dir') total += await sizeOf(d, c, p);
  }
  return total;
}
