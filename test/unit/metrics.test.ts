/**
 * mount/metrics.ts loads prom-client only after the login; what its hooks saw before (FUSE ops,
 * fetches, snapshots, commits) must still be counted, in the same collectors, once it is loaded.
 */
import test from 'ava';
import { DaemonMetrics } from '../../mount/metrics.js';
import type { ProfileStatus } from '../../src/profile.js';

const status = {
  cacheHits: 3,
  cacheMisses: 1,
  remoteBytesRead: 100,
  bytesUploaded: 0,
  snapshots: 0,
  commits: 0,
  pendingSnapshots: 0,
  pendingBytes: 0,
  oldestPendingAgeMs: null,
  repositoryReachable: true,
  openHandles: 0,
  usage: { bytes: 0 },
  prefetch: { bytesDone: 0, bytesTotal: 0 },
} as unknown as ProfileStatus;

/** The value of the sample `name{labels}` (labels in any order; user and mountpoint implied). */
function value(text: string, name: string, labels: Record<string, string> = {}): string | undefined {
  const want = { user: 'alice', mountpoint: '/home/alice', ...labels };
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const got = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.keys(got).length === Object.keys(want).length && Object.entries(want).every(([k, v]) => got[k] === v)) return m[3];
  }
  return undefined;
}

test('observations made before prom-client is loaded are replayed into its collectors', async (t) => {
  const m = new DaemonMetrics({ user: 'alice', mountpoint: '/home/alice' }, () => status);
  const obs = m.observers();
  m.fuseOp('getattr', 1000n, 'ok');
  m.fuseOp('getattr', 2000n, 'ok');
  m.fuseOp('lookup', 3000n, 'ENOENT');
  obs.fetch!('tree')(true, 100);
  obs.fetch!('chunk')(false, 0);
  obs.snapshot!()(true);
  obs.commit!()(false, false);
  const text = await m.text(); // loads prom-client
  t.is(value(text, 'roamfs_fuse_ops_total', { op: 'getattr' }), '2');
  t.is(value(text, 'roamfs_fuse_ops_total', { op: 'lookup' }), '1');
  t.is(value(text, 'roamfs_fuse_op_errors_total', { op: 'lookup', errno: 'ENOENT' }), '1');
  t.is(value(text, 'roamfs_fuse_op_duration_seconds_count', { op: 'getattr' }), '2');
  t.is(value(text, 'roamfs_fuse_op_duration_seconds_sum', { op: 'getattr' }), '0.000003');
  t.is(value(text, 'roamfs_fetch_duration_seconds_count', { kind: 'tree' }), '1');
  t.is(value(text, 'roamfs_fetch_failures_total', { kind: 'chunk' }), '1');
  t.is(value(text, 'roamfs_snapshot_duration_seconds_count'), '1');
  t.is(value(text, 'roamfs_commit_failures_total'), '1');
  t.is(value(text, 'roamfs_cache_hits_total'), '3');
  // After the load, hooks go straight to the collectors.
  m.fuseOp('getattr', 1000n, 'ok');
  t.is(value(await m.text(), 'roamfs_fuse_ops_total', { op: 'getattr' }), '3');
});
