/**
 * Prometheus metrics of one daemon (one mounted profile), with prom-client. Served through the
 * control socket (`roamfs metrics MOUNTPOINT`) and, when `metricsPort` is set, over HTTP on
 * metricsAddress:metricsPort (GET /metrics; 127.0.0.1 by default).
 *
 * Names are roamfs_<noun>_<unit> (counters end in _total, Prometheus style). Every sample has
 * the labels user and mountpoint, so several homes on one desktop can be told apart.
 * Counters and gauges that mirror the profile's own state are read at scrape time (collect);
 * histograms are fed by hooks: FUSE operations (adapter onOpEnd), remote object fetches
 * (ChunkLoader onFetch: the hydration latency), snapshots and commits (Profile observers).
 *
 * prom-client is loaded only after the login (LOAD_DELAY_MS after start, or at the first scrape):
 * evaluating it costs a daemon start some 15 ms, and a login waits for the daemon. The hooks
 * work from the start; what they see before the load is kept and replayed into the collectors.
 * node:http likewise, only when a metrics port is served.
 */
import type * as PromClient from 'prom-client';
import type { FetchObserver } from '../src/base/chunk-loader.js';
import type { Logger } from '../src/core/log.js';
import { errorFields } from '../src/core/log.js';
import type { ProfileObservers, ProfileStatus } from '../src/profile.js';
import type { QuotaLimits } from '../src/overlay/usage.js';

type Client = typeof import('prom-client');

/** After this long the login is over: load prom-client (unless a scrape asked for it earlier). */
const LOAD_DELAY_MS = 3000;
/** Observations kept before the load; more make it load at once (they are replayed then). */
const EARLY_MAX = 10_000;

const LATENCY_BUCKETS = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

/** Seconds since `start` (process.hrtime.bigint()). */
function since(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** A counter whose value is read from a monotonic source at scrape time. */
function mirroredCounter(client: Client, registry: PromClient.Registry, name: string, help: string, read: () => number): void {
  let last = 0;
  new client.Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const v = read();
      if (v > last) this.inc(v - last);
      last = Math.max(last, v);
    },
  });
}

/** A gauge read at scrape time; null (undefined, e.g. a ratio of nothing) is exposed as NaN. */
function gauge(client: Client, registry: PromClient.Registry, name: string, help: string, read: () => number | null): void {
  new client.Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(read() ?? NaN);
    },
  });
}

/** The prom-client registry and collectors (made when prom-client is loaded). */
class Collectors {
  readonly registry: PromClient.Registry;
  readonly fuseOps: PromClient.Counter<'op'>;
  readonly fuseErrors: PromClient.Counter<'op' | 'errno'>;
  readonly fuseLatency: PromClient.Histogram<'op'>;
  readonly fetchLatency: PromClient.Histogram<'kind'>;
  readonly fetchFailures: PromClient.Counter<'kind'>;
  readonly snapshotLatency: PromClient.Histogram;
  readonly snapshotFailures: PromClient.Counter;
  readonly commitLatency: PromClient.Histogram;
  readonly commitFailures: PromClient.Counter;

  constructor(client: Client, labels: { user: string; mountpoint: string }, status: () => ProfileStatus, quota: QuotaLimits) {
    const r = (this.registry = new client.Registry());
    r.setDefaultLabels(labels);
    this.fuseOps = new client.Counter({ name: 'roamfs_fuse_ops_total', help: 'File system operations answered, by FUSE op', labelNames: ['op'], registers: [r] });
    this.fuseErrors = new client.Counter({ name: 'roamfs_fuse_op_errors_total', help: 'File system operations answered with an error, by FUSE op and errno', labelNames: ['op', 'errno'], registers: [r] });
    this.fuseLatency = new client.Histogram({ name: 'roamfs_fuse_op_duration_seconds', help: 'Time from a FUSE request to its answer, by op', labelNames: ['op'], buckets: LATENCY_BUCKETS, registers: [r] });
    this.fetchLatency = new client.Histogram({ name: 'roamfs_fetch_duration_seconds', help: 'Hydration latency: time to fetch one object (chunk, tree, commit) from the repository into the local cache', labelNames: ['kind'], buckets: LATENCY_BUCKETS, registers: [r] });
    this.fetchFailures = new client.Counter({ name: 'roamfs_fetch_failures_total', help: 'Repository fetches that failed (missing or corrupt objects, I/O)', labelNames: ['kind'], registers: [r] });
    this.snapshotLatency = new client.Histogram({ name: 'roamfs_snapshot_duration_seconds', help: 'Time to take a snapshot (freeze, chunk, build trees, persist in the change log)', buckets: STEP_BUCKETS, registers: [r] });
    this.snapshotFailures = new client.Counter({ name: 'roamfs_snapshot_failures_total', help: 'Snapshots that failed (retried at the next interval)', registers: [r] });
    this.commitLatency = new client.Histogram({ name: 'roamfs_commit_duration_seconds', help: 'Time to commit pending snapshots to the repository (upload, commit, head compare-and-swap)', buckets: STEP_BUCKETS, registers: [r] });
    this.commitFailures = new client.Counter({ name: 'roamfs_commit_failures_total', help: 'Commit attempts that failed (retried with backoff)', registers: [r] });

    // Read from the profile at scrape time. One status() per scrape would be nicer, but each
    // collect is separate in prom-client and status() is cheap (counters and a few sums).
    mirroredCounter(client, r, 'roamfs_cache_hits_total', 'Object lookups (chunks, trees) answered by the local cache', () => status().cacheHits);
    mirroredCounter(client, r, 'roamfs_cache_misses_total', 'Object lookups (chunks, trees) that had to go to the repository', () => status().cacheMisses);
    gauge(client, r, 'roamfs_cache_hit_ratio', 'cache hits / (hits + misses) since mount', () => {
      const s = status();
      return s.cacheHits + s.cacheMisses === 0 ? null : s.cacheHits / (s.cacheHits + s.cacheMisses);
    });
    mirroredCounter(client, r, 'roamfs_download_bytes_total', 'Bytes read from the repository (stored object sizes)', () => status().remoteBytesRead);
    mirroredCounter(client, r, 'roamfs_upload_bytes_total', 'Bytes uploaded to the repository by commits', () => status().bytesUploaded);
    mirroredCounter(client, r, 'roamfs_snapshots_total', 'Durable snapshots taken', () => status().snapshots);
    mirroredCounter(client, r, 'roamfs_commits_total', 'Commits made to the repository', () => status().commits);
    gauge(client, r, 'roamfs_pending_snapshots', 'Snapshots in the local change log not yet in the repository', () => status().pendingSnapshots);
    gauge(client, r, 'roamfs_pending_bytes', 'Bytes chunked into snapshots not yet in the repository (an upper bound of the next upload)', () => status().pendingBytes);
    gauge(client, r, 'roamfs_oldest_unshipped_age_seconds', 'Age of the oldest snapshot not yet in the repository: the live RPO (0 when nothing is pending)', () => (status().oldestPendingAgeMs ?? 0) / 1000);
    gauge(client, r, 'roamfs_repository_reachable', '1 when the last repository operation succeeded, else 0', () => (status().repositoryReachable ? 1 : 0));
    gauge(client, r, 'roamfs_open_handles', 'Open file handles', () => status().openHandles);
    if (quota.softBytes !== null || quota.hardBytes !== null) {
      // The size is counted only with a quota (src/overlay/usage.ts); a lower bound while counting.
      gauge(client, r, 'roamfs_profile_size_bytes', 'Logical size of the profile: the sum of its file sizes (a lower bound until counted, see roamfs status)', () => status().usage.bytes);
    }
    if (quota.softBytes !== null) gauge(client, r, 'roamfs_quota_soft_bytes', 'Soft quota of the profile: above it, a warning', () => quota.softBytes);
    if (quota.hardBytes !== null) gauge(client, r, 'roamfs_quota_hard_bytes', 'Hard quota of the profile: writes beyond it fail with EDQUOT', () => quota.hardBytes);
    gauge(client, r, 'roamfs_prefetch_done_bytes', 'Bytes of the profile loaded by background prefetch so far', () => status().prefetch.bytesDone);
    gauge(client, r, 'roamfs_prefetch_planned_bytes', 'Bytes of the profile background prefetch plans to load (grows while the tree is walked)', () => status().prefetch.bytesTotal);
  }
}

export class DaemonMetrics {
  private collectors: Collectors | null = null;
  private loading: Promise<Collectors> | null = null;
  /** What the hooks saw before prom-client was loaded, in order. */
  private early: Array<(c: Collectors) => void> = [];

  /** `quota`: the limits the profile was mounted with (its gauges exist only when set). */
  constructor(
    private readonly labels: { user: string; mountpoint: string },
    private readonly status: () => ProfileStatus,
    private readonly quota: QuotaLimits = { softBytes: null, hardBytes: null },
  ) {
    setTimeout(() => void this.load(), LOAD_DELAY_MS).unref();
  }

  /** Load prom-client and make the collectors (once); what the hooks saw so far is replayed. */
  load(): Promise<Collectors> {
    this.loading ??= import('prom-client').then(({ default: client }) => {
      const c = new Collectors(client, this.labels, this.status, this.quota);
      for (const f of this.early) f(c);
      this.early = [];
      this.collectors = c;
      return c;
    });
    return this.loading;
  }

  private record(f: (c: Collectors) => void): void {
    if (this.collectors) return f(this.collectors);
    this.early.push(f);
    if (this.early.length >= EARLY_MAX) void this.load();
  }

  /** The adapter's onOpEnd hook. */
  fuseOp(op: string, ns: bigint, result: string): void {
    this.record((c) => {
      c.fuseOps.inc({ op });
      if (result !== 'ok') c.fuseErrors.inc({ op, errno: result });
      c.fuseLatency.observe({ op }, Number(ns) / 1e9);
    });
  }

  /** Hooks for the profile: snapshot and commit latency and failures, fetch latency. */
  observers(): ProfileObservers {
    const fetch: FetchObserver = (kind) => {
      const start = process.hrtime.bigint();
      return (ok) => {
        const s = since(start);
        this.record((c) => (ok ? c.fetchLatency.observe({ kind }, s) : c.fetchFailures.inc({ kind })));
      };
    };
    return {
      fetch,
      snapshot: () => {
        const start = process.hrtime.bigint();
        return (ok) => {
          const s = since(start);
          this.record((c) => (ok ? c.snapshotLatency.observe(s) : c.snapshotFailures.inc()));
        };
      },
      commit: () => {
        const start = process.hrtime.bigint();
        return (ok, committed) => {
          const s = since(start);
          this.record((c) => {
            if (!ok) c.commitFailures.inc();
            else if (committed) c.commitLatency.observe(s);
          });
        };
      },
    };
  }

  /** The exposition text (text/plain; version=0.0.4). */
  async text(): Promise<string> {
    return (await this.load()).registry.metrics();
  }

  /**
   * Serve GET /metrics on address:port. A port that cannot be bound is logged and left alone:
   * metrics are not worth failing a login for (`roamfs metrics` still works).
   */
  async serve(address: string, port: number, log: Logger): Promise<{ url: string | null; close(): Promise<void> }> {
    // Loaded here: most daemons serve no port, and node:http is not needed to answer "ready".
    const http = await import('node:http');
    const server = http.createServer((req, res) => {
      if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('roamfs: GET /metrics\n');
        return;
      }
      this.load().then(
        async (c) => res.writeHead(200, { 'content-type': c.registry.contentType }).end(await c.registry.metrics()),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${String(err)}\n`),
      );
    });
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', (err) => {
        log.error({ ...errorFields(err), address, port }, 'metrics: cannot listen; metrics stay available through `roamfs metrics`');
        resolve(false);
      });
      server.listen(port, address, () => resolve(true));
    });
    if (!ok) return { url: null, close: async () => {} };
    server.unref();
    const url = `http://${address.includes(':') ? `[${address}]` : address}:${port}/metrics`;
    log.info({ url }, 'metrics: serving');
    return {
      url,
      close: () => new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
    };
  }
}
