/**
 * The prefetch planner: pure functions that decide in which order the rest of a profile is
 * fetched in the background. No I/O, no clock; the runner (prefetcher.ts) feeds it the learned
 * working set and the files it found walking the tree, and fetches in the order returned.
 *
 * Order (issue 3):
 *   (a) `workingset` - files this user opened during the first minutes of earlier sessions, best
 *       ranked first (working-set.ts learns and ranks them);
 *   (b) `small` - files of at most 64 KiB, everything under the usual configuration directories
 *       and the dotfiles at the top of the home;
 *   (c) `rest` - everything else.
 * Within (b) and (c) smaller files come first: a desktop opens many small files, so per byte
 * fetched they turn the most future opens into local ones. (b) is not "config first, then small
 * files": a big tree under .local/share (a game library, a mail store) would otherwise hold back
 * every small document.
 */

/** Files up to this size are fetched in phase (b). */
export const SMALL_FILE_BYTES = 64 * 1024;

/**
 * Home-relative directories whose whole content is fetched in phase (b): what desktop sessions
 * and applications read at start-up. Deliberately not "every dot-directory": .cache, .npm,
 * .cargo, .steam and friends are big and re-creatable.
 */
export const CONFIG_DIRS: readonly string[] = ['.config', '.local/share', '.local/state', '.mozilla', '.ssh', '.gnupg', '.pki', '.thunderbird'];

/** Excluded again from CONFIG_DIRS (below them, but neither configuration nor small). */
export const CONFIG_EXCLUDES: readonly string[] = ['.local/share/Trash'];

export type PlanPhase = 'workingset' | 'small' | 'rest';

/** What the planner needs of a file; anything else the caller attaches is passed through. */
export interface PlanInput {
  /** Profile-relative path ("a/b", no leading slash). */
  path: string;
  /** Content size in bytes. */
  size: number;
}

export interface PlannedFile<F extends PlanInput = PlanInput> {
  file: F;
  phase: PlanPhase;
}

function under(path: string, dir: string): boolean {
  return path.length > dir.length && path.startsWith(dir) && path[dir.length] === '/';
}

/** True for a configuration file: a dotfile at the top of the home, or a file below CONFIG_DIRS. */
export function isConfigPath(path: string): boolean {
  if (!path.includes('/')) return path.startsWith('.');
  if (CONFIG_EXCLUDES.some((d) => path === d || under(path, d))) return false;
  return CONFIG_DIRS.some((d) => under(path, d));
}

/** Phase (b) or (c) for a file that is not in the working set. */
export function classify(path: string, size: number, smallFileBytes = SMALL_FILE_BYTES): 'small' | 'rest' {
  return size <= smallFileBytes || isConfigPath(path) ? 'small' : 'rest';
}

const bySizeThenPath = (a: PlanInput, b: PlanInput): number => a.size - b.size || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/**
 * The fetch order for `files` (a walk of the tree, in any order): files named in `workingSet`
 * first, in the working set's order (best ranked first); then phase (b), then phase (c), each
 * by size ascending (then path, so the plan is deterministic). A path listed twice in `files`
 * is planned once (its first occurrence).
 */
export function planPrefetch<F extends PlanInput>(workingSet: readonly string[], files: Iterable<F>, opts: { smallFileBytes?: number } = {}): Array<PlannedFile<F>> {
  const rank = new Map<string, number>();
  workingSet.forEach((p, i) => {
    if (!rank.has(p)) rank.set(p, i);
  });
  const ws: Array<{ f: F; r: number }> = [];
  const small: F[] = [];
  const rest: F[] = [];
  const seen = new Set<string>();
  for (const f of files) {
    if (seen.has(f.path)) continue;
    seen.add(f.path);
    const r = rank.get(f.path);
    if (r !== undefined) ws.push({ f, r });
    else if (classify(f.path, f.size, opts.smallFileBytes) === 'small') small.push(f);
    else rest.push(f);
  }
  ws.sort((a, b) => a.r - b.r);
  small.sort(bySizeThenPath);
  rest.sort(bySizeThenPath);
  return [
    ...ws.map(({ f }) => ({ file: f, phase: 'workingset' as const })),
    ...small.map((f) => ({ file: f, phase: 'small' as const })),
    ...rest.map((f) => ({ file: f, phase: 'rest' as const })),
  ];
}
