import type { Clock, Timer } from '../core/clock.js';
import { errorFields, type Logger } from '../core/log.js';
import type { Node } from '../overlay/nodes.js';
import type { Overlay } from '../overlay/overlay.js';
import type { Backend } from '../repository/backend.js';
import type { OverlayVfs } from '../vfs/overlay-vfs.js';
import { Prefetcher, type ActivitySource, type PrefetchProgress } from './prefetcher.js';
import {
  WORKING_SET_STATE, WorkingSetRecorder, encodeWorkingSet, loadWorkingSet, mergeWorkingSet,
} from './working-set.js';

export interface BackgroundLoadingOptions {
  vfs: OverlayVfs;
  /** The shared repository's backend: the working set is users/<user>/state/workingset. */
  backend: Backend;
  user: string;
  host: string;
  session: string;
  clock: Clock;
  log: Logger;
  activity: ActivitySource;
  /** Start prefetching this long after mount; null: no prefetch. */
  prefetchDelayMs: number | null;
  /** Record the files opened this long after mount; null: do not learn. */
  workingSetWindowMs: number | null;
  /** Free bytes of the cache's file system (prefetch stops before filling it). */
  diskFree?: () => Promise<number>;
}

/** True when `path` names a regular file in the overlay now, without loading anything. */
function fileExists(overlay: Overlay, path: string): boolean {
  let node: Node = overlay.root;
  for (const name of path.split('/')) {
    if (node.kind !== 'dir' || !node.children) return false;
    const next = node.children.get(name);
    if (!next) return false;
    node = next;
  }
  return node.kind === 'file';
}

/**
 * The background side of a mounted profile (issue 3): learns the working set during the first
 * minutes and prefetches the rest after a delay. Profile owns one; it wires the Vfs's onOpen
 * hook to the recorder and calls close() at logout.
 *
 * The working set is saved once per session: when the window ends, or at close when the
 * session is shorter (or the save at window end failed). A save reads the current document,
 * merges and writes it (backend.writeState, atomic replace). Two desktops of the same user
 * saving at the same moment: the last write wins and the other session's opens are lost from
 * the ranking - acceptable for a hint (the next session learns them again), and cheaper than a
 * compare-and-swap protocol for a document that only orders a prefetch.
 */
export class BackgroundLoading {
  private windowTimer: Timer | null = null;
  private saving: Promise<boolean> | null = null;
  private saved = false;
  private readonly hook: (path: string) => void;

  private constructor(
    private readonly o: BackgroundLoadingOptions,
    readonly recorder: WorkingSetRecorder | null,
    readonly prefetcher: Prefetcher | null,
  ) {
    this.hook = (p) => recorder?.note(p);
  }

  /** Start recording and schedule the prefetch (nothing is fetched before the delay). */
  static start(o: BackgroundLoadingOptions): BackgroundLoading {
    const log = o.log.child({ component: 'prefetch' });
    const recorder = o.workingSetWindowMs === null ? null : new WorkingSetRecorder(o.clock, o.workingSetWindowMs);
    const prefetcher =
      o.prefetchDelayMs === null
        ? null
        : new Prefetcher({
            overlay: o.vfs.overlay,
            loader: o.vfs.loader,
            clock: o.clock,
            log,
            activity: o.activity,
            delayMs: o.prefetchDelayMs,
            workingSet: async () => (await loadWorkingSet(o.backend, o.user, log))?.entries.map((e) => e.path) ?? [],
            ...(o.diskFree ? { diskFree: o.diskFree } : {}),
          });
    const b = new BackgroundLoading({ ...o, log }, recorder, prefetcher);
    if (recorder) {
      o.vfs.onOpen = b.hook;
      b.windowTimer = o.clock.setTimer(o.workingSetWindowMs!, () => {
        b.windowTimer = null;
        void b.saveWorkingSet();
      });
    }
    prefetcher?.start();
    return b;
  }

  progress(): PrefetchProgress {
    return this.prefetcher?.progress() ?? { phase: 'off', filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0 };
  }

  /**
   * End the recording window and merge what it saw into the user's working set. True once
   * saved (or when there was nothing to save); false when the repository could not be read or
   * written (logged; close() tries again). Never throws.
   */
  async saveWorkingSet(): Promise<boolean> {
    while (this.saving) await this.saving;
    if (this.saved || !this.recorder) return this.saved;
    const run = this.doSave();
    this.saving = run;
    try {
      return await run;
    } finally {
      this.saving = null;
    }
  }

  /** Stop prefetching (logout is under way: nothing may compete with the final upload). */
  async stopPrefetch(): Promise<void> {
    await this.prefetcher?.stop();
  }

  /** Stop prefetching (waiting for fetches in flight) and save the working set. Never throws. */
  async close(): Promise<void> {
    this.windowTimer?.cancel();
    this.windowTimer = null;
    await this.prefetcher?.stop();
    await this.saveWorkingSet();
  }

  private async doSave(): Promise<boolean> {
    const rec = this.recorder!;
    rec.close();
    if (this.o.vfs.onOpen === this.hook) this.o.vfs.onOpen = null;
    // Files created and removed again (locks, temporary files) are not worth remembering.
    const session = rec.recorded().filter((p) => fileExists(this.o.vfs.overlay, p));
    if (session.length === 0) {
      this.saved = true;
      return true;
    }
    let prev;
    try {
      prev = await loadWorkingSet(this.o.backend, this.o.user, this.o.log);
    } catch (err) {
      this.o.log.warn(errorFields(err), 'cannot read the working set; not updating it now');
      return false;
    }
    const entries = mergeWorkingSet(prev?.entries ?? [], session);
    try {
      const doc = { time: this.o.clock.now(), host: this.o.host, session: this.o.session, sessions: (prev?.sessions ?? 0) + 1, entries };
      await this.o.backend.writeState(this.o.user, WORKING_SET_STATE, encodeWorkingSet(doc));
    } catch (err) {
      this.o.log.warn(errorFields(err), 'cannot write the working set; not updating it now');
      return false;
    }
    this.saved = true;
    this.o.log.info({ opened: session.length, paths: entries.length }, 'working set updated');
    return true;
  }
}
