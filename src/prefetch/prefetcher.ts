import type { Clock, Timer } from '../core/clock.js';
import type { ObjectId } from '../core/hash.js';
import { isRoamfsError } from '../core/errors.js';
import { errorFields, type Logger } from '../core/log.js';
import type { ChunkLoader } from '../base/chunk-loader.js';
import type { ChunkMap } from '../base/chunk-map.js';
import type { DirNode, FileNode, Node } from '../overlay/nodes.js';
import type { Overlay } from '../overlay/overlay.js';
import type { ChunkRef } from '../repository/objects.js';
import { SMALL_FILE_BYTES, planPrefetch, type PlanPhase } from './plan.js';

/**
 * Background loading of the rest of a mounted profile (issue 3): after `delayMs`, fetch every
 * committed file's chunks into the local cache, in the planner's order (plan.ts), without
 * slowing the foreground:
 *   - at most `maxInFlight` (2) units of work at once: a unit is one chunk fetch (through the
 *     loader's background slots, shared with read-ahead), one tree load, or one working-set
 *     lookup, so a pause takes effect within one chunk;
 *   - no new unit while the file system is busy: an operation in flight, or one that ended
 *     less than `quietMs` (150 ms) ago (Profile.noteActivity feeds `activity`);
 *   - stop() (at logout: Profile.flush and close) issues nothing more and waits for what is
 *     in flight;
 *   - it stops for good when the local disk runs low (`diskFree` under `reserveBytes`, or a
 *     NO_SPACE error): the cache must never take the space the user's writes need.
 *
 * Stages: `workingset` looks the learned paths up *through the overlay* (materializing the
 * directories on the way, which the user is about to need anyway; nothing is ever joined onto
 * the local file system) and fetches each file; `scanning` walks the tree - materialized
 * directories from the overlay (so files with upper content and deleted entries are skipped),
 * the others lazily from their base trees with ChunkLoader.loadTree (without materializing them:
 * a walk of a 500,000-file profile must not create 500,000 inodes); then phases `small` and
 * `rest` fetch what the planner ordered. Files whose chunks are already cached cost a local
 * check each (ensureChunkBackground answers from the cache).
 *
 * The loop (start) only schedules the public single step prefetchStep() with the injected
 * clock; tests call the step directly.
 */

export type PrefetchPhase = 'off' | 'waiting' | 'workingset' | 'scanning' | PlanPhase | 'done' | 'stopped';

export interface PrefetchProgress {
  phase: PrefetchPhase;
  /** Files handled (fetched, found cached, or skipped because they changed) / planned so far. */
  filesDone: number;
  filesTotal: number;
  /** Content bytes of those files. Totals grow while the tree is being walked. */
  bytesDone: number;
  bytesTotal: number;
}

/** Where the prefetcher learns that the file system is busy (Profile.noteActivity). */
export interface ActivitySource {
  /** Clock ms of the last start or end of a file system operation. */
  lastActivityMs(): number;
  /** Operations started and not yet ended. */
  activeOps(): number;
}

export interface PrefetcherOptions {
  overlay: Overlay;
  loader: ChunkLoader;
  clock: Clock;
  log: Logger;
  activity: ActivitySource;
  /** The ranked working set (profile-relative paths, best first); called once, when prefetching starts. */
  workingSet: () => Promise<readonly string[]>;
  /** Start this long after construction. */
  delayMs: number;
  maxInFlight?: number;
  quietMs?: number;
  smallFileBytes?: number;
  /** Free bytes on the cache's file system; omitted: not checked (NO_SPACE still stops). */
  diskFree?: () => Promise<number>;
  /** Stop when fetching the next file would leave less than this free (default 1 GiB). */
  reserveBytes?: number;
}

export type PrefetchStepResult =
  /** Nothing done; call again after delayMs (before the delay, paused for activity, or all slots busy). */
  | { state: 'waiting' | 'paused' | 'busy'; delayMs: number }
  /** One unit of work done. */
  | { state: 'worked' }
  /** Nothing left to do, or stopped: the loop ends. */
  | { state: 'done' | 'stopped' };

export const PREFETCH_MAX_IN_FLIGHT = 2;
export const PREFETCH_QUIET_MS = 150;
export const PREFETCH_RESERVE_BYTES = 1024 ** 3;
/** How often (clock ms) diskFree is asked at most. */
const DISK_CHECK_MS = 1_000;

/** A file to fetch; `node` when it came from the overlay (re-checked before fetching). */
interface Target {
  path: string;
  size: number;
  chunks: readonly ChunkRef[];
  node?: FileNode;
  map?: ChunkMap;
}

interface Job {
  t: Target;
  phase: PlanPhase;
  /** Next chunk to issue. */
  next: number;
  /** Chunks issued and not settled, or not issued yet. */
  left: number;
  failed: boolean;
  /** Checks before the first chunk: 'checking' while the disk-space check runs. */
  start: 'new' | 'checking' | 'ready';
}

type PendingDir = { path: string; node: DirNode } | { path: string; tree: ObjectId };

const join = (dir: string, name: string) => (dir ? `${dir}/${name}` : name);

export class Prefetcher {
  readonly startAtMs: number;
  private readonly maxInFlight: number;
  private readonly quietMs: number;
  private readonly reserveBytes: number;
  private phase: PrefetchPhase = 'waiting';
  private stage: 'init' | 'loading' | 'workingset' | 'scanning' | 'fetching' | 'finished' = 'init';
  private stopped = false;
  private inFlight = 0;
  private readonly running = new Set<Promise<void>>();
  private readonly timers: Array<Timer | null> = [];
  private readonly counts = { filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0 };

  private ws: readonly string[] = [];
  private wsNext = 0;
  /** Working-set paths already handled in stage `workingset` (skipped when the walk meets them). */
  private readonly wsHandled = new Set<string>();
  /** Files whose chunks are being issued, in order; the head is issued first. */
  private readonly jobs: Job[] = [];
  private readonly dirs: PendingDir[] = [];
  private dirsLoading = 0;
  private walked: Target[] = [];
  private planned: Array<{ file: Target; phase: PlanPhase } | undefined> = [];
  private plannedNext = 0;
  private lastDiskCheckMs = -Infinity;
  private lastDiskFree = Infinity;
  private bytesSinceDiskCheck = 0;

  constructor(private readonly o: PrefetcherOptions) {
    this.startAtMs = o.clock.now() + o.delayMs;
    this.maxInFlight = o.maxInFlight ?? PREFETCH_MAX_IN_FLIGHT;
    this.quietMs = o.quietMs ?? PREFETCH_QUIET_MS;
    this.reserveBytes = o.reserveBytes ?? PREFETCH_RESERVE_BYTES;
  }

  progress(): PrefetchProgress {
    return { phase: this.phase, ...this.counts };
  }

  /** Units of work running now (never more than maxInFlight). */
  get unitsInFlight(): number {
    return this.inFlight;
  }

  /**
   * One step: unless it is too early, the file system is busy, all slots are taken or there is
   * nothing left, start the next unit of work and wait for it. Never throws: a failed fetch or
   * tree load is logged and skipped (the file is fetched on demand later, if it is ever read).
   */
  async prefetchStep(): Promise<PrefetchStepResult> {
    if (this.stopped) return { state: 'stopped' };
    if (this.phase === 'done') return { state: 'done' };
    const now = this.o.clock.now();
    if (now < this.startAtMs) return { state: 'waiting', delayMs: this.startAtMs - now };
    const quiet = this.o.activity.activeOps() > 0 ? 0 : now - this.o.activity.lastActivityMs();
    if (quiet < this.quietMs) return { state: 'paused', delayMs: this.quietMs - Math.max(0, quiet) };
    if (this.inFlight >= this.maxInFlight) return { state: 'busy', delayMs: this.quietMs };
    const unit = await this.nextUnit();
    if (unit === 'wait') return this.stopped ? { state: 'stopped' } : { state: 'busy', delayMs: this.quietMs };
    if (unit === null) {
      if (this.stopped) return { state: 'stopped' };
      if (this.inFlight > 0) return { state: 'busy', delayMs: this.quietMs };
      this.phase = 'done';
      return { state: 'done' };
    }
    await unit.run;
    return { state: 'worked' };
  }

  /**
   * Start a unit of work. Called synchronously where the unit is chosen, so that another step
   * never sees the queues empty and nothing in flight while a chosen unit has not started yet
   * (it would plan from half a walk).
   */
  private launch(work: () => Promise<void>): { run: Promise<void> } {
    this.inFlight++;
    const run = work().finally(() => {
      this.inFlight--;
      this.running.delete(run);
    });
    this.running.add(run);
    return { run }; // wrapped: an async function must not flatten it into its own result
  }

  /** The loop: `maxInFlight` chains of steps, each scheduled with the injected clock. */
  start(): void {
    for (let i = 0; i < this.maxInFlight; i++) this.schedule(i, Math.max(0, this.startAtMs - this.o.clock.now()));
  }

  /** Issue nothing more and wait for the units in flight. Idempotent. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.timers) t?.cancel();
    if (this.phase !== 'done') this.phase = 'stopped';
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }

  private schedule(i: number, ms: number): void {
    if (this.stopped) return;
    this.timers[i] = this.o.clock.setTimer(ms, () => {
      this.timers[i] = null;
      this.prefetchStep().then(
        (r) => {
          if (r.state === 'worked') this.schedule(i, 0);
          else if ('delayMs' in r) this.schedule(i, r.delayMs);
        },
        (err) => {
          this.o.log.error(errorFields(err), 'prefetch: step failed unexpectedly; retrying in 1s');
          this.schedule(i, 1_000);
        },
      );
    });
  }

  /**
   * The next unit of work, chosen synchronously except for the disk-space check: issuing chunks
   * of started files first, then the stage's own work. 'wait': nothing to start until another
   * unit finishes; null: nothing left.
   */
  private async nextUnit(): Promise<{ run: Promise<void> } | 'wait' | null> {
    for (;;) {
      const job = this.jobs[0];
      if (job) {
        if (job.start === 'checking') return 'wait'; // another step is checking it
        if (job.start === 'new') {
          // Everything up to the disk check is synchronous, so two steps never start one job twice.
          if (!this.keepJob(job)) {
            this.jobs.shift();
            this.fileDone(job);
            continue;
          }
          const check = this.diskHasRoom(job.t.size);
          let room: boolean;
          if (typeof check === 'boolean') room = check;
          else {
            job.start = 'checking';
            room = await check;
          }
          job.start = 'ready';
          if (!room) {
            this.jobs.length = 0;
            this.planned = [];
            this.stage = 'finished';
            this.stopped = true;
            this.phase = 'stopped';
            return null;
          }
          continue; // the queue may have changed while we waited: look at its head again
        }
        if (this.stopped) return 'wait';
        return this.launch(this.chunkUnit(job));
      }
      switch (this.stage) {
        case 'init':
          this.stage = 'loading';
          this.phase = 'workingset';
          return this.launch(() => this.loadWorkingSet());
        case 'loading':
          return 'wait';
        case 'workingset':
          if (this.wsNext < this.ws.length) {
            const p = this.ws[this.wsNext++]!;
            this.phase = 'workingset';
            return this.launch(() => this.resolveWorkingSetPath(p));
          }
          this.stage = 'scanning';
          this.dirs.push({ path: '', node: this.o.overlay.root });
          continue;
        case 'scanning': {
          const d = this.dirs.pop();
          if (d) {
            this.phase = 'scanning';
            return this.launch(() => this.walkDir(d));
          }
          if (this.dirsLoading > 0 || this.inFlight > 0) return 'wait';
          const planned = planPrefetch(this.ws, this.walked, { smallFileBytes: this.o.smallFileBytes ?? SMALL_FILE_BYTES }).filter(
            (p) => !this.wsHandled.has(p.file.path),
          );
          this.walked = [];
          let bytes = 0;
          for (const p of planned) bytes += p.file.size;
          this.counts.filesTotal += planned.length;
          this.counts.bytesTotal += bytes;
          this.planned = planned;
          this.stage = 'fetching';
          this.o.log.info({ files: planned.length, bytes }, 'prefetch: tree walked; fetching the rest of the profile');
          continue;
        }
        case 'fetching': {
          const p = this.planned[this.plannedNext];
          if (!p) {
            this.planned = [];
            this.stage = 'finished';
            continue;
          }
          this.planned[this.plannedNext++] = undefined; // let it be collected once fetched
          this.jobs.push(this.job(p.file, p.phase));
          continue;
        }
        case 'finished':
          if (this.jobs.length === 0) return null;
      }
    }
  }

  private job(t: Target, phase: PlanPhase): Job {
    return { t, phase, next: 0, left: t.chunks.length, failed: false, start: 'new' };
  }

  /**
   * Before a file's first chunk: false to skip it - deleted, rewritten (upper content) or
   * truncated since it was planned, or known to be fully cached.
   */
  private keepJob(job: Job): boolean {
    const n = job.t.node;
    const changed = n !== undefined && (n.unlinked || n.content.kind !== 'base' || n.content.map !== job.t.map);
    return !changed && job.t.chunks.length > 0 && !job.t.map?.allCached;
  }

  private chunkUnit(job: Job): () => Promise<void> {
    const c = job.t.chunks[job.next++]!;
    if (job.next === job.t.chunks.length) this.jobs.shift();
    this.phase = job.phase;
    return async () => {
      try {
        await this.o.loader.ensureChunkBackground(c.id, c.size);
      } catch (err) {
        if (isRoamfsError(err, 'NO_SPACE')) {
          this.o.log.warn(errorFields(err), 'prefetch: the local disk is full; prefetching stops');
          this.stopped = true;
          this.phase = 'stopped';
        } else if (!job.failed) {
          this.o.log.warn({ ...errorFields(err), path: job.t.path }, 'prefetch: cannot fetch a chunk of this file; skipping it (it is fetched on demand if read)');
        }
        job.failed = true;
      }
      if (--job.left === 0) this.fileDone(job);
    };
  }

  private fileDone(job: Job): void {
    this.counts.filesDone++;
    this.counts.bytesDone += job.t.size;
  }

  /**
   * Whether fetching `size` more bytes leaves the reserve free. Synchronous unless diskFree
   * has to be asked (at most every second, or sooner when the last answer is nearly used up).
   */
  private diskHasRoom(size: number): boolean | Promise<boolean> {
    const diskFree = this.o.diskFree;
    if (!diskFree) return true;
    const now = this.o.clock.now();
    if (now - this.lastDiskCheckMs < DISK_CHECK_MS && this.lastDiskFree - this.bytesSinceDiskCheck - size >= this.reserveBytes) {
      this.bytesSinceDiskCheck += size;
      return true;
    }
    return diskFree().then(
      (free) => {
        this.lastDiskFree = free;
        this.lastDiskCheckMs = now;
        this.bytesSinceDiskCheck = 0;
        if (free - size < this.reserveBytes) {
          this.o.log.warn({ free, reserve: this.reserveBytes }, 'prefetch: the local disk is low; prefetching stops');
          return false;
        }
        this.bytesSinceDiskCheck = size;
        return true;
      },
      (err) => {
        this.o.log.warn(errorFields(err), 'prefetch: cannot check free disk space; prefetching stops');
        return false;
      },
    );
  }

  private async loadWorkingSet(): Promise<void> {
    try {
      this.ws = await this.o.workingSet();
    } catch (err) {
      this.o.log.warn(errorFields(err), 'prefetch: cannot read the working set; prefetching without it');
      this.ws = [];
    }
    this.stage = 'workingset';
    this.o.log.info({ paths: this.ws.length }, 'prefetch: started');
  }

  /** Look a working-set path up through the overlay; a file found there becomes the next job. */
  private async resolveWorkingSetPath(p: string): Promise<void> {
    let node: Node = this.o.overlay.root;
    try {
      for (const name of p.split('/')) {
        if (node.kind !== 'dir') return;
        const next: Node | undefined = (await this.o.overlay.children(node)).get(name);
        if (!next) return;
        node = next;
      }
    } catch (err) {
      this.o.log.debug({ ...errorFields(err), path: p }, 'prefetch: cannot look up a working-set path');
      return;
    }
    if (node.kind !== 'file' || node.content.kind !== 'base' || node.size === 0 || this.wsHandled.has(p)) return;
    this.wsHandled.add(p);
    const map = node.content.map;
    this.counts.filesTotal++;
    this.counts.bytesTotal += map.size;
    this.jobs.push(this.job({ path: p, size: map.size, chunks: map.chunks, node, map }, 'workingset'));
  }

  /** One directory of the walk: its files become plan inputs, its subdirectories pending dirs. */
  private async walkDir(d: PendingDir): Promise<void> {
    this.dirsLoading++;
    try {
      if ('node' in d && d.node.children) {
        for (const [name, n] of d.node.children) {
          const path = join(d.path, name);
          if (n.excluded) continue; // local-only: nothing there roams, nothing to fetch
          if (n.kind === 'dir') this.dirs.push({ path, node: n });
          else if (n.kind === 'file' && n.content.kind === 'base' && n.content.map.size > 0) {
            this.walked.push({ path, size: n.content.map.size, chunks: n.content.map.chunks, node: n, map: n.content.map });
          }
        }
        return;
      }
      const tree = 'node' in d ? (d.node.base?.type === 'dir' ? d.node.base.tree : null) : d.tree;
      if (!tree) return;
      const entries = await this.o.loader.loadTree(tree);
      const exclusions = this.o.overlay.exclusions;
      for (const e of entries) {
        const path = join(d.path, e.name);
        if (exclusions.matchesOwn(path)) continue; // hidden by the mount (excluded paths start empty)
        if (e.type === 'dir') this.dirs.push({ path, tree: e.tree });
        else if (e.type === 'file' && e.size > 0) this.walked.push({ path, size: e.size, chunks: e.chunks });
      }
    } catch (err) {
      this.o.log.warn({ ...errorFields(err), path: d.path }, 'prefetch: cannot load a directory; skipping it');
    } finally {
      this.dirsLoading--;
    }
  }
}
