import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { RoamfsError } from './core/errors.js';
import type { Clock, Timer } from './core/clock.js';
import type { ObjectId } from './core/hash.js';
import { errorFields, type Logger } from './core/log.js';
import type { Repository } from './repository/repository.js';
import { openDb, recoveryWarnings, type Db } from './store/db.js';
import { ChangeLog, type Shipped } from './changelog/changelog.js';
import { Snapshotter } from './snapshot/snapshot.js';
import { commitOnce, type CommitResult } from './commit/committer.js';
import { DEFAULT_COMMIT_POLICY, decideCommit, type CommitPolicyConfig } from './commit/policy.js';
import { uploadChanges } from './commit/upload.js';
import { OverlayVfs } from './vfs/overlay-vfs.js';
import { BackgroundLoading } from './prefetch/background.js';
import type { PrefetchProgress } from './prefetch/prefetcher.js';
import { WORKING_SET_WINDOW_MS } from './prefetch/working-set.js';
import { Exclusions } from './core/exclusions.js';
import type { QuotaLimits, UsageStatus } from './overlay/usage.js';
import type { FetchObserver } from './base/chunk-loader.js';
import { Lease, isLeaseError, type LeaseError, type LeasePolicy } from './repository/lease.js';
import type { RebaseResult } from './snapshot/rebase.js';
import type { Commit } from './repository/objects.js';

export interface ProfileConfig {
  /** Take a snapshot this often when something changed; null: only on demand and at close. */
  snapshotIntervalMs: number | null;
  /**
   * An fsync / fdatasync brings a snapshot forward to this long after it, so that what a
   * program synced is durable that soon (requestSnapshot; at most one such snapshot per this
   * interval). null: fsync does not start snapshots.
   */
  fsyncSnapshotDelayMs: number | null;
  commit: CommitPolicyConfig;
  /** How long close()/flush() keep retrying an unreachable repository before giving up. */
  flushTimeoutMs: number;
  /** Fetch the rest of the profile in the background this long after mount; null: never (src/prefetch/). */
  prefetchDelayMs: number | null;
  /** Learn the working set from the files opened during this long after mount; null: do not learn. */
  workingSetWindowMs: number | null;
  /**
   * Exclusion patterns, the effective list (src/core/exclusions.ts; the config layer adds the
   * defaults): local-only paths, never snapshotted, hidden in the committed tree. Default none.
   */
  exclude: readonly string[];
  /** Soft / hard limits of the profile's size (src/overlay/usage.ts). Default none. */
  quota: QuotaLimits;
  /**
   * Other desktops of the same user (src/repository/lease.ts, docs/shared-storage.md): policy
   * 'concurrent' (default: every desktop works, commits merge) or 'exclusive' (a second
   * read-write login waits up to waitMs, default 1.5 x ttl, then fails naming the holder);
   * ttlMs: a session whose heartbeats stop for this long is expired (default 30 s).
   */
  sessions: { policy: LeasePolicy; ttlMs: number; waitMs: number | null };
  /**
   * A read-only session: the mounted head and what other desktops commit, never a snapshot or a
   * commit (the Vfs refuses changes with EROFS); never waits for or blocks an exclusive lease.
   */
  readOnly: boolean;
}

export const DEFAULT_PROFILE_CONFIG: ProfileConfig = {
  snapshotIntervalMs: 60_000,
  fsyncSnapshotDelayMs: 1000,
  commit: DEFAULT_COMMIT_POLICY,
  flushTimeoutMs: 30_000,
  prefetchDelayMs: 30_000,
  workingSetWindowMs: WORKING_SET_WINDOW_MS,
  exclude: [],
  quota: { softBytes: null, hardBytes: null },
  sessions: { policy: 'concurrent', ttlMs: 30_000, waitMs: null },
  readOnly: false,
};

/**
 * Observers of the profile's steps, for metrics (the daemon times them; the core keeps no
 * clock for it). Each start function returns the function called once when the step ends.
 * Must not throw.
 */
export interface ProfileObservers {
  /** A snapshot step; ended with whether it succeeded. */
  snapshot?: () => (ok: boolean) => void;
  /** A commit step that had something to commit or failed. */
  commit?: () => (ok: boolean, committed: boolean) => void;
  /** Remote object fetches (hydration). */
  fetch?: FetchObserver;
}

export interface ProfileOptions {
  remote: Repository;
  user: string;
  cacheDir: string;
  clock: Clock;
  log: Logger;
  host: string;
  session: string;
  /** The local owner the profile's files are shown as. */
  uid: number;
  gid: number;
  config?: Partial<ProfileConfig>;
  observers?: ProfileObservers;
  /** This process, named in the lease documents (default 0). */
  pid?: number;
  /** Lease durations are measured with it (default `clock`); the daemon passes a monotonic clock. */
  leaseClock?: Clock;
  /** With isProcessAlive: a dead lease holder on this very machine is taken over at once. */
  bootId?: string | null;
  isProcessAlive?: (pid: number) => boolean;
  /**
   * Paths (profile-relative, '' = root) whose content another desktop changed and this session
   * picked up: the daemon drops the kernel's caches of them. Must not throw.
   */
  onRemoteChange?: (paths: string[]) => void;
}

export type ProfileState = 'mounted' | 'closing' | 'closed';

export interface ProfileStatus {
  user: string;
  state: ProfileState;
  /** Commit the mount started from. */
  base: ObjectId | null;
  snapshots: number;
  pendingSnapshots: number;
  /** Age of the oldest snapshot not yet in the repository (the live RPO), ms; null when none. */
  oldestPendingAgeMs: number | null;
  /**
   * Bytes chunked into the snapshots not yet in the repository (an upper bound of the next
   * upload: the repository may have some chunks already). Snapshots recovered from an earlier
   * session count the sizes of the files they put.
   */
  pendingBytes: number;
  /** Changes since the last snapshot exist. */
  dirty: boolean;
  commits: number;
  lastCommit: { id: ObjectId; time: number } | null;
  bytesUploaded: number;
  repositoryReachable: boolean;
  lastError: { message: string; time: number } | null;
  remoteBytesRead: number;
  cacheHits: number;
  cacheMisses: number;
  openHandles: number;
  recoveredSnapshots: number;
  /** Background loading of the rest of the profile (phase 'off' when disabled). */
  prefetch: PrefetchProgress;
  /** The profile's size and quota (src/overlay/usage.ts). */
  usage: UsageStatus;
  /** Exclusion patterns in effect. */
  exclude: readonly string[];
  /** Read-only session (no snapshots, no commits). */
  readOnly: boolean;
  /** This session's lease and the other desktops of this user seen at its last heartbeat. */
  lease: LeaseView | null;
  /** Commits of other desktops picked up during this session, and the last one. */
  pickedUp: number;
  lastPickUp: { commit: ObjectId; time: number; adopted: number; kept: number } | null;
}

/** The lease part of the status (JSON-friendly). */
export interface LeaseView {
  policy: LeasePolicy;
  mode: 'rw' | 'ro';
  /** 'lost': another desktop took the exclusive lease over; commits go on through the merge. */
  state: 'held' | 'lost' | 'released';
  /** Fencing token of an exclusive lease, else null. */
  generation: number | null;
  /** How long this session still trusts its lease without renewing it (ms; <= 0: lapsed). */
  validForMs: number;
  /** Renewals that failed in a row. */
  failures: number;
  /** The other live sessions of this user (their documents' host, pid, mode). */
  others: Array<{ host: string; pid: number; session: string; mode: 'rw' | 'ro'; policy: LeasePolicy; exclusive: boolean; sinceHeartbeatMs: number }>;
  lostReason: string | null;
}

export interface FlushResult {
  ok: boolean;
  /** Snapshots still only in the local log. */
  pending: number;
  error?: string;
}

/**
 * One mounted profile's lifecycle (the composition of the core):
 *   open    = recover (mount the last durable snapshot if the log holds unshipped ones) and
 *             start the loops: snapshot every interval, commit when idle or before max-lag;
 *   close   = stop the loops, take a final snapshot, commit everything (bounded retries),
 *             close the Vfs and the log. Unshipped snapshots stay durable in the log.
 * Loops only schedule the public single steps (snapshotNow, commitNow), which tests call
 * directly with a manual clock.
 */
export class Profile {
  state: ProfileState = 'mounted';
  private snapshotTimer: Timer | null = null;
  private commitTimer: Timer | null = null;
  private lastActivityMs: number;
  private failures = 0;
  private lastFailureMs: number | null = null;
  private committing: Promise<CommitResult | null> | null = null;
  private readonly stats = { snapshots: 0, commits: 0, bytesUploaded: 0, lastCommit: null as { id: ObjectId; time: number } | null, lastError: null as { message: string; time: number } | null };
  private oldestPendingMs: number | null = null;
  private pendingCount = 0;
  /** Bytes per pending snapshot seq (see ProfileStatus.pendingBytes). */
  private readonly pendingBytesBySeq = new Map<number, number>();
  private usageTimer: Timer | null = null;
  /** File system operations started and not ended (noteActivity('start'/'end')). */
  private activeOps = 0;
  private background: BackgroundLoading | null = null;
  private readonly pickups = { count: 0, last: null as ProfileStatus['lastPickUp'] };
  /**
   * requestSnapshot: the armed timer, a snapshot it started still running, a request meanwhile,
   * and the earliest time of the next one (ms).
   */
  private readonly soon = { timer: null as Timer | null, running: false, again: false, notBefore: 0 };

  private constructor(
    private readonly o: ProfileOptions,
    private readonly config: ProfileConfig,
    readonly vfs: OverlayVfs,
    private readonly db: Db,
    readonly log: ChangeLog,
    private readonly snapshotter: Snapshotter,
    private readonly logId: string,
    readonly recoveredSnapshots: number,
    private readonly lease: Lease | null,
  ) {
    this.lastActivityMs = o.clock.now();
  }

  /** Read-only session (see ProfileConfig.readOnly). */
  get readOnly(): boolean {
    return this.config.readOnly;
  }

  static async open(o: ProfileOptions): Promise<Profile> {
    const config = {
      ...DEFAULT_PROFILE_CONFIG,
      ...o.config,
      commit: { ...DEFAULT_COMMIT_POLICY, ...o.config?.commit },
      quota: { ...DEFAULT_PROFILE_CONFIG.quota, ...o.config?.quota },
      sessions: { ...DEFAULT_PROFILE_CONFIG.sessions, ...o.config?.sessions },
    };
    const log = o.log.child({ component: 'profile' });
    await fsp.mkdir(o.cacheDir, { recursive: true, mode: 0o700 }).catch((e) => {
      throw new RoamfsError('IO', `cannot create cache directory ${o.cacheDir}: ${(e as Error).message}`, { cause: e });
    });
    const db = await openDb(path.join(o.cacheDir, 'log'));
    let lease: Lease | null = null;
    try {
      const changelog = new ChangeLog(db);
      const owner = await changelog.getMeta<{ user: string; repo: string }>('owner');
      if (owner && (owner.user !== o.user || owner.repo !== o.remote.config.id)) {
        throw new RoamfsError('INVALID_ARGUMENT', `cache ${o.cacheDir} belongs to user ${owner.user} of repository ${owner.repo}; use another --cache`);
      }
      if (!owner) await changelog.setMeta('owner', { user: o.user, repo: o.remote.config.id });
      let logId = await changelog.getMeta<string>('logId');
      if (!logId) {
        logId = randomBytes(8).toString('hex');
        await changelog.setMeta('logId', logId);
      }
      const dropped = await recoveryWarnings(path.join(o.cacheDir, 'log'));
      let pending = await changelog.pending();
      let shipped = await changelog.shipped();
      let last: (typeof pending)[number] | undefined = pending[pending.length - 1];
      if (last && config.readOnly) {
        // A read-only session shows the repository's head; snapshots an earlier read-write
        // session left in this cache stay in the log for the next read-write login.
        log.warn({ snapshots: pending.length }, 'read-only: unshipped snapshots in this cache are left for the next read-write login');
        last = undefined;
      }
      if (last) {
        // Recovery relies on an intact chain of unshipped snapshots (each holds only the changes
        // since the previous one). Two kinds of damage are recoverable from the repository: the
        // log lost its end after a commit of ours holding a newer snapshot (the head has it all),
        // or it has a gap but everything in it is committed. Any other damage: CORRUPT_LOG.
        const ours = await ourHead(o.remote, o.user, logId);
        const damage = await changelog.verify().then(() => null, (err: unknown) => err);
        if (ours && (ours.seq > last.seq || (damage && ours.seq >= last.seq))) {
          log.warn({ lastInLog: last.seq, committed: ours.seq, commit: ours.commit, damage: (damage as Error | null)?.message }, 'the change log is damaged or lost snapshots, but all of it is committed: mounting the head commit');
          await changelog.markShipped(ours);
          [pending, shipped, last] = [[], ours, undefined];
        } else if (damage) {
          throw damage;
        }
      }
      if (!last) await o.remote.requireHead(o.user); // unknown user: refuse before anything is mounted
      // Other desktops of this user: register (concurrent), or take the exclusive lease, waiting
      // for the holder or failing with a message that names it - before anything is mounted.
      let lostBeforeOpen: LeaseError | null = null;
      let self: Profile | null = null;
      lease = await Lease.acquire({
        backend: o.remote.backend,
        user: o.user,
        host: o.host,
        pid: o.pid ?? 0,
        session: o.session,
        clock: o.leaseClock ?? o.clock,
        mode: config.readOnly ? 'ro' : 'rw',
        config: { policy: config.sessions.policy, ttlMs: config.sessions.ttlMs, ...(config.sessions.waitMs !== null ? { waitMs: config.sessions.waitMs } : {}) },
        bootId: o.bootId ?? null,
        ...(o.isProcessAlive ? { isProcessAlive: o.isProcessAlive } : {}),
        log: o.log,
        onLost: (e) => (self ? self.leaseLost(e) : (lostBeforeOpen = e)),
      });
      // Upper files of earlier sessions are garbage (recovery uses the snapshots in the log and
      // the local store, never upper files); without this they fill the cache disk over time.
      await fsp.rm(path.join(o.cacheDir, 'upper'), { recursive: true, force: true });
      const vfs = await OverlayVfs.open({
        remote: o.remote,
        user: o.user,
        cacheDir: o.cacheDir,
        clock: o.clock,
        uid: o.uid,
        gid: o.gid,
        log: (line) => o.log.child({ component: 'vfs' }).error({}, line),
        ...(last ? { snapshot: { root: last.root, commit: last.base } } : {}),
        exclusions: new Exclusions(config.exclude),
        quota: config.quota,
      });
      if (o.observers?.fetch) vfs.loader.onFetch = o.observers.fetch;
      if (last) log.warn({ snapshots: pending.length, oldest: pending[0]!.time }, 'recovered unshipped snapshots from the local log; they will be committed');
      const nextSeq = Math.max(last?.seq ?? 0, shipped?.seq ?? 0) + 1;
      const snap = new Snapshotter(
        { overlay: vfs.overlay, cache: vfs.loader.cache, loader: vfs.loader, log: changelog, now: () => o.clock.now() },
        vfs.baseRoot!,
        vfs.baseCommitId!,
        nextSeq,
      );
      const p = new Profile(o, config, vfs, db, changelog, snap, logId, pending.length, lease);
      self = p;
      vfs.onFsync = () => p.requestSnapshot();
      if (lostBeforeOpen) p.leaseLost(lostBeforeOpen);
      lease.start();
      if (dropped.length > 0) {
        const message = `the change log was damaged: LevelDB dropped records while opening it (${dropped[0]}); snapshots in them are lost, commits are not`;
        log.warn({ leveldb: dropped }, message);
        p.stats.lastError = { message, time: o.clock.now() };
      }
      await p.refreshPending();
      p.scheduleSnapshot();
      if (!config.readOnly) p.scheduleCommit();
      p.startUsageCount();
      p.background = BackgroundLoading.start({
        vfs,
        backend: o.remote.backend,
        user: o.user,
        host: o.host,
        session: o.session,
        clock: o.clock,
        log: o.log,
        activity: { lastActivityMs: () => p.lastActivityMs, activeOps: () => p.activeOps },
        prefetchDelayMs: config.prefetchDelayMs,
        workingSetWindowMs: config.workingSetWindowMs,
        diskFree: async () => {
          const s = await fsp.statfs(o.cacheDir);
          return s.bavail * s.bsize;
        },
      });
      return p;
    } catch (err) {
      await lease?.release().catch(() => {});
      await db.close().catch(() => {});
      throw err;
    }
  }

  /**
   * Called on every file system operation (cheap: one assignment); with the phase when the
   * caller reports both ends, so that background prefetching waits while an operation is in
   * flight.
   */
  noteActivity(phase?: 'start' | 'end'): void {
    this.lastActivityMs = this.o.clock.now();
    if (phase === 'start') this.activeOps++;
    else if (phase === 'end' && this.activeOps > 0) this.activeOps--;
  }

  /**
   * A program asked for durability (fsync): take a snapshot fsyncSnapshotDelayMs from now.
   * Requests while one is armed join it; requests while its snapshot runs (they may come after
   * its instant) arm one more once it is done. A snapshot that took long (a big file to chunk)
   * keeps the next one away for three times as long: snapshots started by fsync use at most a
   * quarter of the time (a database that syncs all the time must not keep the daemon busy
   * chunking it). Cheap; never throws.
   */
  requestSnapshot(): void {
    const delay = this.config.fsyncSnapshotDelayMs;
    if (delay === null || this.readOnly || this.state !== 'mounted' || this.soon.timer) return;
    if (this.soon.running) {
      this.soon.again = true;
      return;
    }
    this.soon.timer = this.o.clock.setTimer(Math.max(delay, this.soon.notBefore - this.o.clock.now()), () => {
      this.soon.timer = null;
      if (this.state !== 'mounted') return;
      this.soon.running = true;
      const started = this.o.clock.now();
      void this.snapshotNow()
        .catch(() => {})
        .finally(() => {
          const now = this.o.clock.now();
          this.soon.notBefore = now + 3 * (now - started);
          this.soon.running = false;
          if (this.soon.again) {
            this.soon.again = false;
            this.requestSnapshot();
          }
        });
    });
  }

  /**
   * Take a snapshot now (if anything changed). One step of the snapshot loop. `direct`: its new
   * data goes straight into the repository (see SnapshotTarget; logout does this).
   */
  async snapshotNow(opts: { direct?: boolean } = {}): Promise<number | null> {
    const observed = this.snapshotter.dirty ? this.o.observers?.snapshot?.() : undefined;
    try {
      const r = await this.snapshotter.snapshotOnce(opts.direct ? { direct: { repo: this.o.remote } } : {});
      observed?.(true);
      if (r) {
        this.pendingBytesBySeq.set(r.seq, r.bytesChunked);
        this.stats.snapshots++;
        this.stats.bytesUploaded += r.bytesWritten; // a direct snapshot uploads as it goes
        this.o.log.child({ component: 'snapshot' }).info({ seq: r.seq, changes: r.changes, bytes: r.bytesChunked, ...(opts.direct ? { uploaded: r.bytesWritten } : {}) }, 'snapshot durable');
      }
      await this.refreshPending();
      this.scheduleCommit();
      return r?.seq ?? null;
    } catch (err) {
      observed?.(false);
      this.stats.lastError = { message: `snapshot failed: ${(err as Error).message}`, time: this.o.clock.now() };
      this.o.log.child({ component: 'snapshot' }).error(errorFields(err), 'snapshot failed; changes stay in the overlay and are retried at the next snapshot');
      throw err;
    }
  }

  /** Commit everything pending now. One step of the commit loop; serialized. */
  async commitNow(onProgress?: (uploadedBytes: number) => void): Promise<CommitResult | null> {
    if (this.readOnly) return null;
    while (this.committing) await this.committing.catch(() => {});
    const run = commitOnce({
      beforeMoveHead: () => this.fence(),
      local: this.vfs.loader.cache.repo,
      remote: this.o.remote,
      log: this.log,
      user: this.o.user,
      logId: this.logId,
      host: this.o.host,
      session: this.o.session,
      clock: this.o.clock,
      onProgress,
    });
    this.committing = run;
    const observed = this.pendingCount > 0 ? this.o.observers?.commit?.() : undefined;
    try {
      const r = await run;
      observed?.(true, r !== null);
      this.failures = 0;
      this.lastFailureMs = null;
      if (r) {
        this.stats.commits++;
        this.stats.bytesUploaded += r.uploadedBytes;
        this.stats.lastCommit = { id: r.commit, time: this.o.clock.now() };
        this.o.log.child({ component: 'commit' }).info({ commit: r.commit, seq: r.seq, uploaded: r.uploadedBytes, replayed: r.replayed }, 'committed');
      }
      return r;
    } catch (err) {
      (observed ?? this.o.observers?.commit?.())?.(false, false);
      this.failures++;
      this.lastFailureMs = this.o.clock.now();
      this.stats.lastError = { message: `commit failed: ${(err as Error).message}`, time: this.o.clock.now() };
      this.o.log.child({ component: 'commit' }).warn({ ...errorFields(err), failures: this.failures }, 'commit failed; will retry');
      throw err;
    } finally {
      this.committing = null;
      await this.refreshPending();
    }
  }

  /**
   * Fencing, right before the head moves: an exclusive session makes sure it still holds its
   * lease. One that lost it (another desktop took over) is told so (status, log) and commits
   * anyway, through the merge: the compare-and-swap of the head never lets it overwrite newer
   * work, and its changes are kept (conflict copies where both edited).
   */
  private async fence(): Promise<void> {
    try {
      await this.lease?.assertHeld();
    } catch (err) {
      if (!isLeaseError(err, 'lost')) throw err; // repository unreachable: the commit fails and is retried
      if (this.lease?.status().state !== 'lost') return; // released at logout: nothing to say
    }
  }

  /** Our exclusive lease was taken over by another desktop (Lease onLost). */
  leaseLost(err: LeaseError): void {
    const message = `${err.message}; this session's changes are still committed, merged with the other desktop's work (conflict copies where both edited)`;
    this.stats.lastError = { message, time: this.o.clock.now() };
    this.o.log.child({ component: 'lease' }).error({ holders: err.holders.map((h) => ({ host: h.host, pid: h.pid, session: h.session })) }, message);
  }

  /**
   * Pick up what other desktops committed (src/snapshot/rebase.ts). One step of the snapshot
   * loop, after the snapshot: when the head is no longer the commit this session's view comes
   * from, pending snapshots are committed first (merged onto it), then every path this session
   * has not changed since takes the head's version. Null when there was nothing to pick up.
   */
  async followHead(): Promise<RebaseResult | null> {
    if (this.state !== 'mounted') return null;
    const user = this.o.user;
    const head = await this.o.remote.head(user);
    const base = this.snapshotter.baseCommitId;
    if (!head || (head.commit === base && !this.snapshotter.unsettled)) return null;
    if (this.pendingCount > 0 && !this.readOnly) {
      // Another desktop committed: ours are merged onto its work now (not when idle), so that
      // both sides see each other. Our own commits change nothing here: the idle policy goes on,
      // and the pick-up follows once everything is committed.
      if ((await this.o.remote.getCommit(head.commit)).origin?.log === this.logId) return null;
      await this.commitNow();
    }
    let commit: Commit | null = null;
    // The head is read again where no snapshot can start: only a head that contains every
    // snapshot of ours (nothing pending) may become the base.
    const r = await this.snapshotter.rebaseOnto(async () => {
      if (!this.readOnly && (await this.log.pending()).length > 0) return null;
      const h = await this.o.remote.head(user);
      if (!h) return null;
      commit = await this.o.remote.getCommit(h.commit);
      return { commit: h.commit, root: commit.root };
    });
    const c = commit as Commit | null;
    if (!r || !c) return null;
    // A retry of the same commit (paths were kept) is news only when it adopted something.
    const fresh = r.commit !== base;
    if (r.adopted.length > 0 || (fresh && (c.origin?.log !== this.logId || r.kept.length > 0))) {
      this.pickups.count++;
      this.pickups.last = { commit: r.commit, time: this.o.clock.now(), adopted: r.adopted.length, kept: r.kept.length };
      this.o.log.child({ component: 'pickup' }).info({ commit: r.commit, host: c.host, adopted: r.adopted.length, kept: r.kept.length, paths: r.adopted.slice(0, 20) }, "picked up another desktop's commit");
      if (r.adopted.length > 0) this.o.onRemoteChange?.(r.adopted);
    }
    return r;
  }

  status(): ProfileStatus {
    const v = this.vfs.stats();
    const now = this.o.clock.now();
    return {
      user: this.o.user,
      state: this.state,
      base: this.vfs.baseCommitId,
      snapshots: this.stats.snapshots,
      pendingSnapshots: this.pendingCount,
      oldestPendingAgeMs: this.oldestPendingMs === null ? null : now - this.oldestPendingMs,
      dirty: this.snapshotter.dirty,
      commits: this.stats.commits,
      lastCommit: this.stats.lastCommit,
      bytesUploaded: this.stats.bytesUploaded,
      repositoryReachable: this.failures === 0,
      lastError: this.stats.lastError,
      remoteBytesRead: v.remoteBytes,
      cacheHits: v.cacheHits,
      cacheMisses: v.cacheMisses,
      openHandles: v.openHandles,
      recoveredSnapshots: this.recoveredSnapshots,
      prefetch: this.background?.progress() ?? { phase: 'off', filesDone: 0, filesTotal: 0, bytesDone: 0, bytesTotal: 0 },
      pendingBytes: [...this.pendingBytesBySeq.values()].reduce((a, b) => a + b, 0),
      usage: this.vfs.overlay.usage.status(),
      exclude: this.config.exclude,
      readOnly: this.readOnly,
      lease: this.leaseView(),
      pickedUp: this.pickups.count,
      lastPickUp: this.pickups.last,
    };
  }

  private leaseView(): LeaseView | null {
    if (!this.lease) return null;
    const l = this.lease.status();
    const leaseNow = (this.o.leaseClock ?? this.o.clock).now();
    return {
      policy: l.policy,
      mode: l.mode,
      state: l.state,
      generation: l.generation,
      validForMs: Math.round(l.validUntil - leaseNow),
      failures: l.failures,
      others: l.others.map((h) => ({ host: h.host, pid: h.pid, session: h.session, mode: h.mode, policy: h.policy, exclusive: h.generation !== null, sinceHeartbeatMs: Math.round(h.unchangedMs) })),
      lostReason: l.lostReason,
    };
  }

  /**
   * Final snapshot and commit of everything, retrying an unreachable repository with backoff
   * for up to flushTimeoutMs. Does not close anything.
   */
  async flush(onProgress?: (uploadedBytes: number) => void, timeoutMs = this.config.flushTimeoutMs): Promise<FlushResult> {
    await this.background?.stopPrefetch(); // logout: background fetches must not compete with the upload
    if (this.readOnly) return { ok: true, pending: 0 };
    // The last snapshot writes its new data once, straight into the repository, when it can be
    // reached (it is committed right after); otherwise into the local log as usual.
    await this.snapshotNow({ direct: true }).catch(() => this.snapshotNow().catch(() => {}));
    const deadline = this.o.clock.now() + timeoutMs;
    let delay = 250;
    let lastErr: unknown;
    for (;;) {
      try {
        await this.commitNow(onProgress);
        if (this.pendingCount === 0) return { ok: true, pending: 0 };
      } catch (err) {
        lastErr = err;
      }
      if (this.o.clock.now() + delay > deadline) break;
      await this.o.clock.sleep(delay);
      delay = Math.min(delay * 2, 5_000);
    }
    await this.keepDirectLocally();
    return { ok: false, pending: this.pendingCount, error: (lastErr as Error)?.message ?? 'commit did not finish' };
  }

  /**
   * The logout could not commit after a direct snapshot: that snapshot's new data is only in the
   * repository, where no commit references it, so gc may delete it once its grace period is over,
   * while this machine's log still needs it for the commit of its next login. Copy it into the
   * local store (uploadChanges the other way round) while the repository can still be read.
   */
  private async keepDirectLocally(): Promise<void> {
    const log = this.o.log.child({ component: 'flush' });
    try {
      let copied = false;
      for (const p of await this.log.pending()) {
        const s = await this.log.get(p.seq);
        if (!s.written) continue;
        await uploadChanges(this.o.remote, this.vfs.loader.cache.repo, s.changes);
        copied = true;
      }
      if (copied) await this.vfs.loader.cache.sync();
    } catch (err) {
      log.warn(errorFields(err), "the logout snapshot's new data is only in the repository, not referenced by a commit until this machine's next login commits it (gc keeps it for its grace period)");
    }
  }

  /**
   * Stop the loops and flush (see flush; `flushTimeoutMs` overrides the configured retry time,
   * 0 = one attempt). The caller has stopped the file system first (or accepts that operations
   * arriving during close land after the final snapshot). Idempotent.
   */
  async close(onProgress?: (uploadedBytes: number) => void, flushTimeoutMs?: number): Promise<FlushResult> {
    if (this.state !== 'mounted') return { ok: this.pendingCount === 0, pending: this.pendingCount };
    this.state = 'closing';
    this.snapshotTimer?.cancel();
    this.commitTimer?.cancel();
    this.usageTimer?.cancel();
    let result: FlushResult;
    try {
      await this.background?.close(); // stop prefetching, save the working set; never throws
      result = await this.flush(onProgress, flushTimeoutMs);
    } finally {
      // Released also when the flush failed: what is left stays in this machine's log and is
      // committed (merged) at its next login; other desktops must not wait for that.
      await this.lease?.release().catch((err: unknown) => this.o.log.child({ component: 'lease' }).warn(errorFields(err), 'could not release the lease; it expires by itself'));
      await this.vfs.close().catch(() => {});
      await this.db.close().catch(() => {});
      this.state = 'closed';
    }
    this.o.log.child({ component: 'profile' }).info({ ...result }, result.ok ? 'closed: everything is in the repository' : 'closed with unshipped snapshots in the local log');
    return result;
  }

  /**
   * Stop at once, leaving exactly what a crash of the daemon leaves: no final snapshot, no
   * commit, no lease release (it expires); the loops stop and local files are closed. What the
   * change log holds durably is recovered by the next open of this cache. Idempotent.
   */
  async halt(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.snapshotTimer?.cancel();
    this.commitTimer?.cancel();
    this.usageTimer?.cancel();
    this.lease?.stop();
    await this.background?.stopPrefetch();
    await this.committing?.catch(() => {});
    await this.vfs.close().catch(() => {});
    await this.db.close().catch(() => {});
  }

  private async refreshPending(): Promise<void> {
    if (this.state === 'closed') return;
    const p = await this.log.pending();
    this.pendingCount = p.length;
    this.oldestPendingMs = p[0]?.time ?? null;
    const seqs = new Set(p.map((x) => x.seq));
    for (const seq of this.pendingBytesBySeq.keys()) if (!seqs.has(seq)) this.pendingBytesBySeq.delete(seq);
    for (const x of p) {
      if (this.pendingBytesBySeq.has(x.seq)) continue;
      // Recovered from an earlier session: the sizes of the files it puts (directories put
      // whole are not walked: a lower bound).
      const snap = await this.log.get(x.seq).catch(() => null);
      let bytes = 0;
      for (const c of snap?.changes ?? []) if (c.op === 'put' && c.entry.type === 'file') bytes += c.entry.size;
      this.pendingBytesBySeq.set(x.seq, bytes);
    }
  }

  /**
   * With a quota, count the size of the mounted tree in the background (trees only; see
   * src/overlay/usage.ts), retrying every minute while the repository cannot be read.
   */
  private startUsageCount(): void {
    const usage = this.vfs.overlay.usage;
    if (!usage.limited || this.state !== 'mounted') return;
    const log = this.o.log.child({ component: 'quota' });
    usage.onSoftLimit = (bytes, limit) => log.warn({ bytes, softBytes: limit, hardBytes: usage.limits.hardBytes }, 'the profile is above its soft quota');
    void this.vfs.countUsage().then(
      () => log.info({ bytes: usage.bytes, ...usage.limits }, 'quota: the profile size is counted'),
      (err: unknown) => {
        log.warn(errorFields(err), 'quota: cannot count the profile size yet (limits are checked against what is counted so far); retrying in 60 s');
        if (this.state === 'mounted') this.usageTimer = this.o.clock.setTimer(60_000, () => this.startUsageCount());
      },
    );
  }

  private scheduleSnapshot(): void {
    const every = this.config.snapshotIntervalMs;
    if (every === null || this.state !== 'mounted') return;
    this.snapshotTimer = this.o.clock.setTimer(every, () => {
      void this.tick().finally(() => this.scheduleSnapshot());
    });
  }

  /** One step of the snapshot loop: a snapshot (read-write), then pick up other desktops' commits. */
  private async tick(): Promise<void> {
    if (!this.readOnly) await this.snapshotNow().catch(() => {});
    try {
      await this.followHead();
      this.followFailures = 0;
    } catch (err) {
      if (this.followFailures++ === 0) this.o.log.child({ component: 'pickup' }).warn(errorFields(err), "cannot look for other desktops' commits; will retry at every snapshot");
    }
  }
  private followFailures = 0;

  /** (Re)arm the commit timer from the policy's decision. */
  private scheduleCommit(): void {
    if (this.state !== 'mounted') return;
    this.commitTimer?.cancel();
    this.commitTimer = null;
    const d = decideCommit(this.config.commit, {
      now: this.o.clock.now(),
      lastActivityMs: this.lastActivityMs,
      oldestPendingMs: this.oldestPendingMs,
      consecutiveFailures: this.failures,
      lastFailureMs: this.lastFailureMs,
    });
    if (d.wakeAt === null) return;
    this.commitTimer = this.o.clock.setTimer(Math.max(0, d.wakeAt - this.o.clock.now()), () => {
      this.commitTimer = null;
      const again = decideCommit(this.config.commit, {
        now: this.o.clock.now(),
        lastActivityMs: this.lastActivityMs,
        oldestPendingMs: this.oldestPendingMs,
        consecutiveFailures: this.failures,
        lastFailureMs: this.lastFailureMs,
      });
      if (!again.commitNow) return this.scheduleCommit();
      void this.commitNow()
        .catch(() => {})
        .finally(() => this.scheduleCommit());
    });
  }
}

/**
 * The user's head as a shipped position, when it is a commit made from change log `logId`;
 * null otherwise, and when the repository cannot be read (the mount itself reports that).
 */
async function ourHead(remote: Repository, user: string, logId: string): Promise<Shipped | null> {
  try {
    const head = await remote.head(user);
    if (!head) return null;
    const c = await remote.getCommit(head.commit);
    return c.origin?.log === logId ? { seq: c.origin.snapshot, commit: head.commit } : null;
  } catch {
    return null;
  }
}
