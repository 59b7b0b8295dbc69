import type { ObjectId } from '../core/hash.js';
import type { Change } from '../repository/edit.js';
import type { RootRef, TreeEntry } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';
import { sameContent, sameEntry } from '../repository/entry.js';

/**
 * Three-way, per-path merge of one session's changes onto a head that another session moved.
 *
 * base  = the commit this session's snapshots were built on (what it last saw);
 * head  = the repository's head now (the other sessions' work on top of base);
 * ours  = this session's changes since base (the change log).
 *
 * Rules (nothing is ever lost):
 * - a path the other side did not touch (same entry in head as in base) takes our change;
 * - both changed a file (or symlink): ours, the later commit, takes the path; theirs is kept
 *   beside it as `NAME (conflict HOST YYYY-MM-DD HHMMSS).EXT`;
 * - we deleted what they edited: their edit stays (our delete is dropped);
 * - we edited what they deleted: our edit is put back (missing parents are recreated);
 * - both sides' directory attribute changes: ours (harmless);
 * - both created/replaced a directory at the same path: ours takes the path, theirs is kept as
 *   a conflict copy of the whole directory.
 */
export interface MergeContext {
  /** Where the base's trees are (the local store: our snapshot trees), falling back to theirs. */
  ours: Repository;
  /** The shared repository (the head's trees). */
  theirs: Repository;
  base: RootRef;
  head: RootRef;
  /** Who made the head's version of a path (for conflict copy names). */
  author(path: string, entry: TreeEntry): Promise<{ host: string; time: number }>;
}

export interface MergeResult {
  changes: Change[];
  conflicts: Array<{ path: string; copy: string }>;
  /** Our deletes dropped because the other side edited the path. */
  keptEdits: string[];
}

function pad(n: number): string {
  return String(n).padStart(2, '0');
}

/** `report.odt` -> `report (conflict desk2 2026-11-25 143005).odt`; dotfiles keep their name whole. */
export function conflictName(name: string, host: string, timeMs: number): string {
  const d = new Date(timeMs);
  const stamp = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}${pad(d.getMinutes())}${pad(d.getSeconds())}`;
  const safeHost = host.replace(/[/\0]/g, '_').slice(0, 64) || 'unknown';
  const dot = name.lastIndexOf('.');
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ''];
  const tag = ` (conflict ${safeHost} ${stamp})`;
  // Stay within NAME_MAX (255 bytes): shorten the stem if needed.
  let s = stem;
  while (Buffer.byteLength(s + tag + ext) > 255 && s.length > 1) s = s.slice(0, -1);
  return s + tag + ext;
}

export class Lookup {
  private readonly trees = new Map<ObjectId, Map<string, TreeEntry>>();
  constructor(private readonly getTree: (id: ObjectId) => Promise<TreeEntry[]>) {}
  async at(root: RootRef, path: string): Promise<TreeEntry | null> {
    let tree: ObjectId = root.tree;
    const parts = path.split('/');
    for (let i = 0; i < parts.length; i++) {
      let m = this.trees.get(tree);
      if (!m) {
        m = new Map((await this.getTree(tree)).map((e) => [e.name, e] as const));
        this.trees.set(tree, m);
      }
      const e = m.get(parts[i]!);
      if (!e) return null;
      if (i === parts.length - 1) return e;
      if (e.type !== 'dir') return null;
      tree = e.tree;
    }
    return null;
  }
}

export async function mergeChanges(ctx: MergeContext, ours: readonly Change[]): Promise<MergeResult> {
  const baseLook = new Lookup((id) => ctx.ours.getTree(id).catch(() => ctx.theirs.getTree(id)));
  const headLook = new Lookup((id) => ctx.theirs.getTree(id));
  const out: Change[] = [];
  const conflicts: MergeResult['conflicts'] = [];
  const keptEdits: string[] = [];
  for (const c of ours) {
    if (c.op === 'attrs' || c.path === '') {
      out.push(c);
      continue;
    }
    const [baseE, headE] = await Promise.all([baseLook.at(ctx.base, c.path), headLook.at(ctx.head, c.path)]);
    if (sameEntry(baseE, headE)) {
      out.push(c); // they did not touch it
      continue;
    }
    if (c.op === 'delete') {
      if (headE) keptEdits.push(c.path); // they edited (or created) what we deleted: keep theirs
      continue;
    }
    // We put something where they changed something.
    if (!headE || sameContent(c.entry, headE)) {
      out.push(c); // they deleted it (our edit wins back) or wrote the same content
      continue;
    }
    const slash = c.path.lastIndexOf('/');
    const dir = slash < 0 ? '' : c.path.slice(0, slash);
    const name = c.path.slice(slash + 1);
    const who = await ctx.author(c.path, headE);
    const copyName = conflictName(name, who.host, who.time);
    const copy = dir ? `${dir}/${copyName}` : copyName;
    out.push({ op: 'put', path: copy, entry: { ...headE, name: copyName } });
    out.push(c);
    conflicts.push({ path: c.path, copy });
  }
  return { changes: out, conflicts, keptEdits };
}

/**
 * The net effect of a sequence of changes, in an order that applies correctly: a later change
 * to a path replaces an earlier one, and a put or delete of a path replaces every earlier change
 * below it (so several snapshots merge as one).
 */
export function collapseChanges(changes: readonly Change[]): Change[] {
  const byPath = new Map<string, Change>();
  /** Ancestor path -> paths below it that were recorded (may hold stale names: harmless). */
  const below = new Map<string, Set<string>>();
  for (const c of changes) {
    if (c.op !== 'attrs') for (const k of below.get(c.path) ?? []) byPath.delete(k);
    const prev = byPath.get(c.path);
    byPath.delete(c.path); // re-insert at the end: order of application follows the last change
    // An attrs change after a put of the same directory folds into that put.
    if (c.op === 'attrs' && prev?.op === 'put' && prev.entry.type === 'dir') {
      byPath.set(c.path, { op: 'put', path: c.path, entry: { ...prev.entry, ...c.attrs } });
    } else {
      byPath.set(c.path, c);
    }
    for (let i = c.path.indexOf('/'); i >= 0; i = c.path.indexOf('/', i + 1)) {
      const a = c.path.slice(0, i);
      let set = below.get(a);
      if (!set) below.set(a, (set = new Set()));
      set.add(c.path);
    }
  }
  return [...byPath.values()];
}
