/**
 * Metrics and logs of a real mount: the Prometheus text from `roamfs metrics` (control socket)
 * and from the opt-in HTTP port, parsed (HELP/TYPE before samples, well-formed labels, numeric
 * values, histogram buckets cumulative); values that follow what the test did; and the
 * --debug trace: one log line per FUSE operation with op, path, duration and result.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import * as path from 'node:path';
import { mountedHome, type MountedHome } from '../helpers/mounted-home.js';
import { parsePrometheusText, sampleValue, type Family } from '../helpers/prom-text.js';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function httpGet(url: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }));
      })
      .on('error', reject);
  });
}

async function scrape(h: MountedHome): Promise<Map<string, Family>> {
  return parsePrometheusText((await h.cliOk('metrics', h.mountpoint)).stdout);
}

const EXPECTED: Record<string, Family['type']> = {
  roamfs_fuse_ops_total: 'counter',
  roamfs_fuse_op_errors_total: 'counter',
  roamfs_fuse_op_duration_seconds: 'histogram',
  roamfs_fetch_duration_seconds: 'histogram',
  roamfs_fetch_failures_total: 'counter',
  roamfs_cache_hits_total: 'counter',
  roamfs_cache_misses_total: 'counter',
  roamfs_cache_hit_ratio: 'gauge',
  roamfs_pending_snapshots: 'gauge',
  roamfs_pending_bytes: 'gauge',
  roamfs_oldest_unshipped_age_seconds: 'gauge',
  roamfs_snapshot_duration_seconds: 'histogram',
  roamfs_commit_duration_seconds: 'histogram',
  roamfs_commit_failures_total: 'counter',
  roamfs_upload_bytes_total: 'counter',
  roamfs_download_bytes_total: 'counter',
};

test('metrics from a real mount parse, follow the workload, and come over the control socket and the HTTP port', async (t) => {
  t.timeout(3 * 60_000);
  const port = await freePort();
  const h = await mountedHome(t, {
    prefix: 'roamfs-home-metrics-',
    mountArgs: ['--metrics-port', String(port), '--debug', '--snapshot-interval', 'off', '--idle', '1s', '--prefetch-delay', 'off'],
    populate: async (src) => {
      await fsp.writeFile(path.join(src, 'committed.bin'), Buffer.alloc(300_000, 3));
    },
  });
  const m0 = await scrape(h);
  for (const [name, type] of Object.entries(EXPECTED)) {
    const f = m0.get(name);
    t.truthy(f, `${name} is exposed`);
    t.is(f?.type, type, `${name} is a ${type}`);
    t.true((f?.help.length ?? 0) > 10, `${name} has help`);
  }
  for (const f of m0.values()) {
    t.regex(f.name, /^roamfs_[a-z]+(_[a-z]+)*$/, 'roamfs_<noun>_<unit>');
    for (const s of f.samples) t.like(s.labels, { user: 'alice', mountpoint: h.mountpoint }, `${s.name} names the home`);
  }

  // A workload: writes, reads of committed data (fetched from the repository), an error, a commit.
  await fsp.writeFile(h.p('written.txt'), Buffer.alloc(200_000, 1));
  t.is((await fsp.readFile(h.p('committed.bin'))).length, 300_000);
  await t.throwsAsync(fsp.stat(h.p('missing')));
  await h.cliOk('snapshot', h.mountpoint);
  const end = Date.now() + 30_000;
  while ((await h.status()).pendingSnapshots > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 200));

  const m = await scrape(h);
  const v = (name: string, labels: Record<string, string> = {}) => sampleValue(m, name, labels) ?? NaN;
  t.true(v('roamfs_fuse_ops_total', { op: 'write' }) > 0, 'writes counted');
  t.true(v('roamfs_fuse_ops_total', { op: 'read' }) > 0, 'reads counted');
  t.true(v('roamfs_fuse_op_errors_total', { op: 'getattr', errno: 'ENOENT' }) >= 1, 'the failed stat');
  t.true(v('roamfs_fetch_duration_seconds_count', { kind: 'chunk' }) >= 1, 'chunk fetches timed');
  t.true(v('roamfs_cache_misses_total') >= 1);
  t.true(v('roamfs_download_bytes_total') >= 300_000);
  t.true(v('roamfs_snapshot_duration_seconds_count') >= 1);
  t.true(v('roamfs_commit_duration_seconds_count') >= 1, 'the commit after idle');
  t.is(v('roamfs_commit_failures_total'), 0);
  t.true(v('roamfs_upload_bytes_total') >= 200_000);
  t.is(v('roamfs_pending_snapshots'), 0);
  t.is(v('roamfs_oldest_unshipped_age_seconds'), 0);
  const ratio = v('roamfs_cache_hit_ratio');
  t.true(ratio >= 0 && ratio <= 1);

  // Histograms: cumulative buckets ending in +Inf == _count, for every op.
  const hist = m.get('roamfs_fuse_op_duration_seconds')!;
  const ops = new Set(hist.samples.map((s) => s.labels.op!));
  t.true(ops.has('write'));
  for (const op of ops) {
    const buckets = hist.samples.filter((s) => s.name.endsWith('_bucket') && s.labels.op === op);
    const les = buckets.map((b) => Number(b.labels.le === '+Inf' ? Infinity : b.labels.le));
    t.deepEqual(les, [...les].sort((a, b) => a - b), `${op}: buckets in order`);
    for (let i = 1; i < buckets.length; i++) t.true(buckets[i]!.value >= buckets[i - 1]!.value, `${op}: cumulative`);
    t.is(buckets.at(-1)!.labels.le, '+Inf');
    t.is(buckets.at(-1)!.value, v('roamfs_fuse_op_duration_seconds_count', { op }));
    t.is(v('roamfs_fuse_op_duration_seconds_count', { op }), v('roamfs_fuse_ops_total', { op }));
  }

  // The same over HTTP, on 127.0.0.1 only.
  const res = await httpGet(`http://127.0.0.1:${port}/metrics`);
  t.is(res.status, 200);
  t.regex(res.type, /^text\/plain; version=0\.0\.4/);
  const viaHttp = parsePrometheusText(res.body);
  t.true((sampleValue(viaHttp, 'roamfs_fuse_ops_total', { op: 'write' }) ?? 0) >= v('roamfs_fuse_ops_total', { op: 'write' }));
  t.is((await httpGet(`http://127.0.0.1:${port}/other`)).status, 404);
  t.is((await h.status()).metricsUrl, `http://127.0.0.1:${port}/metrics`);

  // --debug: trace lines, one per operation, from the fuse component.
  const lines = (await h.logLines()).filter((l) => l.component === 'fuse' && l.msg === 'op');
  t.true(lines.length > 10, `${lines.length} trace lines`);
  const w = lines.find((l) => l.op === 'write' && l.path === '/written.txt');
  t.truthy(w, 'a write of /written.txt');
  t.like(w, { level: 10, result: 'ok' });
  t.is(typeof w!.us, 'number');
  t.truthy(lines.find((l) => l.op === 'getattr' && l.path === '/missing' && l.result === 'ENOENT'), 'failures with their errno');
  const lo = await h.logout();
  t.is(lo.code, 0, lo.stderr);
  // One child logger per component.
  const components = new Set((await h.logLines()).map((l) => l.component).filter(Boolean));
  for (const c of ['profile', 'snapshot', 'commit', 'fuse', 'metrics']) t.true(components.has(c), `component ${c} logs`);
  await t.throwsAsync(httpGet(`http://127.0.0.1:${port}/metrics`), undefined, 'the port is closed at logout');
});

test('without --metrics-port nothing listens; a busy port is logged and the mount still works', async (t) => {
  const busy = net.createServer();
  await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => busy.close());
  const port = (busy.address() as net.AddressInfo).port;
  const h = await mountedHome(t, { prefix: 'roamfs-home-metrics-busy-', mountArgs: ['--metrics-port', String(port), '--prefetch-delay', 'off'] });
  t.is((await h.status()).metricsUrl, null);
  const err = (await h.logLines()).find((l) => l.component === 'metrics' && l.level === 50);
  t.truthy(err, 'an error line about the port');
  t.true((await scrape(h)).has('roamfs_fuse_ops_total'), 'metrics through the control socket still work');
});
