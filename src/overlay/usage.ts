import { RoamfsError } from '../core/errors.js';
import type { Exclusions } from '../core/exclusions.js';
import type { ObjectId } from '../core/hash.js';
import type { TreeEntry } from '../repository/objects.js';

/**
 * The per-user quota: what counts, and how it is kept cheap.
 *
 * What counts: the logical size of the profile as the session sees it — the sum of the sizes of
 * the regular files in the home (not blocks, not directories or symlinks, not open-unlinked
 * files). Excluded paths count too: they are part of the home while the session runs, and
 * counting them keeps the total exact under renames (a rename into or out of an excluded
 * directory would otherwise need the size of a subtree that may never have been loaded).
 * Excluded paths start empty at each login, so they cost only what the session writes there.
 *
 * How: total = base + delta.
 * - delta is a running total kept by the overlay: every size change of an attached file
 *   (write past the end, truncate, unlink or replacement by a rename) adds its difference,
 *   synchronously, when the change happens.
 * - base is the size of the mounted tree (commit or recovered snapshot). Neither the
 *   repository format nor the commit stores it, and trees are loaded lazily, so it is counted
 *   by a walk of the trees (never file contents: sizes are in the tree entries) in the
 *   background after mount, skipping excluded paths like the mount does. Changes made while
 *   the walk runs are in delta, so the sum is exact once the walk is done. Only mounts with a
 *   quota walk (the walk reads every tree; a mount without limits stays fully lazy).
 *
 * Enforcement: a write or truncate that would grow the total beyond the hard limit fails with
 * EDQUOT before anything is written; shrinking (truncate, unlink, overwriting in place) always
 * works, so the user can get back under the limit. While the base is still being counted the
 * check uses what is counted so far (a lower bound). Concurrent writes are checked one by one
 * before their I/O, so together they may pass the limit by at most their own sizes.
 */
export interface QuotaLimits {
  /** Above this: a warning in the log and in status; null: none. */
  softBytes: number | null;
  /** Writes that would grow the profile beyond this fail with EDQUOT; null: none. */
  hardBytes: number | null;
}

export type BaseCount = 'not-counted' | 'counting' | 'done' | 'failed';

export interface UsageStatus {
  /** base counted so far + delta; exact once baseCount is 'done'. */
  bytes: number;
  baseCount: BaseCount;
  softBytes: number | null;
  hardBytes: number | null;
  /** 'soft' / 'hard' when at or past that limit, else null. */
  over: 'soft' | 'hard' | null;
}

export class Usage {
  private base = 0;
  private delta = 0;
  private softWarned = false;
  baseCount: BaseCount = 'not-counted';
  /** Called once each time the total crosses the soft limit upwards (a log line). */
  onSoftLimit: ((bytes: number, limit: number) => void) | null = null;

  constructor(readonly limits: QuotaLimits = { softBytes: null, hardBytes: null }) {}

  get bytes(): number {
    return this.base + this.delta;
  }

  get limited(): boolean {
    return this.limits.softBytes !== null || this.limits.hardBytes !== null;
  }

  /** Throw QUOTA_EXCEEDED (EDQUOT) if growing the profile by `grow` bytes would pass the hard limit. */
  checkGrow(grow: number): void {
    const hard = this.limits.hardBytes;
    if (hard === null || grow <= 0) return;
    if (this.bytes + grow > hard) {
      throw new RoamfsError('QUOTA_EXCEEDED', `disk quota exceeded: the profile would grow to ${this.bytes + grow} bytes, the hard limit is ${hard}`);
    }
  }

  /** A size change of an attached file (or a file removed: negative). */
  change(bytes: number): void {
    if (bytes === 0) return;
    this.delta += bytes;
    this.checkSoft();
  }

  /** A new count of the base starts (after a failed one). */
  resetBase(): void {
    this.base = 0;
  }

  /** Bytes of base files counted by the walk. */
  addBase(bytes: number): void {
    this.base += bytes;
    this.checkSoft();
  }

  status(): UsageStatus {
    const { softBytes, hardBytes } = this.limits;
    const b = this.bytes;
    const over = hardBytes !== null && b >= hardBytes ? 'hard' : softBytes !== null && b > softBytes ? 'soft' : null;
    return { bytes: b, baseCount: this.baseCount, softBytes, hardBytes, over };
  }

  private checkSoft(): void {
    const soft = this.limits.softBytes;
    if (soft === null) return;
    const above = this.bytes > soft;
    if (above && !this.softWarned) {
      this.softWarned = true;
      this.onSoftLimit?.(this.bytes, soft);
    } else if (!above) {
      this.softWarned = false;
    }
  }
}

/**
 * Count the regular-file bytes of a tree, loading trees only (a few at a time), skipping
 * excluded paths exactly as the overlay hides them. Adds to `usage` as it goes.
 */
export async function countTree(
  loadTree: (id: ObjectId) => Promise<TreeEntry[]>,
  tree: ObjectId,
  exclusions: Exclusions,
  usage: Usage,
  concurrency = 4,
): Promise<void> {
  usage.baseCount = 'counting';
  usage.resetBase();
  const queue: Array<{ tree: ObjectId; path: string }> = [{ tree, path: '' }];
  let active = 0;
  let failed: unknown = null;
  await new Promise<void>((resolve) => {
    const pump = (): void => {
      if (failed !== null || (queue.length === 0 && active === 0)) return resolve();
      while (active < concurrency && queue.length > 0) {
        const next = queue.shift()!;
        active++;
        loadTree(next.tree).then(
          (entries) => {
            let bytes = 0;
            for (const e of entries) {
              const p = next.path ? `${next.path}/${e.name}` : e.name;
              if (exclusions.matchesOwn(p)) continue;
              if (e.type === 'file') bytes += e.size;
              else if (e.type === 'dir') queue.push({ tree: e.tree, path: p });
            }
            usage.addBase(bytes);
            active--;
            pump();
          },
          (err: unknown) => {
            failed = err;
            active--;
            pump();
          },
        );
      }
    };
    pump();
  });
  if (failed !== null) {
    usage.baseCount = 'failed';
    throw failed;
  }
  usage.baseCount = 'done';
}
