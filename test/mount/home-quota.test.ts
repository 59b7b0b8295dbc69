/**
 * Quotas on a real mount: with a hard limit, `dd` fails with "Disk quota exceeded" once the
 * profile would grow past it; reading, truncating and deleting keep working; after `rm`
 * writing works again. The soft limit is a warning in the log and in `roamfs status`.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { mountedHome, run, runOk, type MountedHome } from '../helpers/mounted-home.js';
import { parsePrometheusText, sampleValue } from '../helpers/prom-text.js';

const KiB = 1024;

interface Usage {
  bytes: number;
  baseCount: string;
  softBytes: number | null;
  hardBytes: number | null;
  over: 'soft' | 'hard' | null;
}

async function usage(h: MountedHome): Promise<Usage> {
  return (await h.status()).usage as Usage;
}

async function counted(h: MountedHome): Promise<Usage> {
  const end = Date.now() + 30_000;
  for (;;) {
    const u = await usage(h);
    if (u.baseCount === 'done' || Date.now() > end) return u;
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('hard limit: dd fails with EDQUOT, the home stays usable, rm makes room; status and log show usage and limits', async (t) => {
  t.timeout(3 * 60_000);
  const h = await mountedHome(t, {
    prefix: 'roamfs-home-quota-',
    mountArgs: ['--quota-soft', '300KiB', '--quota-hard', '1MiB', '--snapshot-interval', 'off', '--prefetch-delay', 'off'],
    populate: async (src) => {
      await fsp.mkdir(path.join(src, 'Docs/deep'), { recursive: true });
      await fsp.writeFile(path.join(src, 'Docs/base.bin'), Buffer.alloc(100 * KiB, 7));
      await fsp.writeFile(path.join(src, 'Docs/deep/small.txt'), 'x'.repeat(1000));
      await fsp.mkdir(path.join(src, '.cache'));
      await fsp.writeFile(path.join(src, '.cache/hidden.bin'), Buffer.alloc(50 * KiB)); // excluded: hidden, not counted
    },
  });
  const u0 = await counted(h);
  t.deepEqual(u0, { bytes: 100 * KiB + 1000, baseCount: 'done', softBytes: 300 * KiB, hardBytes: 1024 * KiB, over: null }, 'the committed profile, counted from its trees');

  const dd = await run('dd', ['if=/dev/zero', `of=${h.p('big')}`, 'bs=64k', 'count=20'], { env: h.env });
  t.not(dd.code, 0);
  t.regex(dd.stderr, /Disk quota exceeded/);
  const big = (await fsp.stat(h.p('big'))).size;
  t.true(big <= 1024 * KiB - (100 * KiB + 1000), `the file stopped before the limit (${big} bytes)`);
  const u1 = await usage(h);
  t.is(u1.bytes, 100 * KiB + 1000 + big);
  t.is(u1.over, big === 1024 * KiB - (100 * KiB + 1000) ? 'hard' : 'soft');
  const metrics = parsePrometheusText((await h.cliOk('metrics', h.mountpoint)).stdout);
  t.is(sampleValue(metrics, 'roamfs_quota_hard_bytes'), 1024 * KiB);
  t.is(sampleValue(metrics, 'roamfs_quota_soft_bytes'), 300 * KiB);
  t.is(sampleValue(metrics, 'roamfs_profile_size_bytes'), u1.bytes);
  t.true((sampleValue(metrics, 'roamfs_fuse_op_errors_total', { op: 'write', errno: 'EDQUOT' }) ?? 0) >= 1);

  // Still usable for reading, truncating, deleting, renaming, creating empty files.
  t.is((await fsp.readFile(h.p('Docs/base.bin'))).length, 100 * KiB);
  await fsp.truncate(h.p('Docs/deep/small.txt'), 10);
  await fsp.rename(h.p('Docs/deep'), h.p('Docs/deeper'));
  await fsp.writeFile(h.p('empty'), '');
  const again = await run('sh', ['-c', `head -c 200000 /dev/zero > ${h.p('more')}`]);
  t.regex(again.stderr, /Disk quota exceeded/);

  const text = (await h.cliOk('status', h.mountpoint)).stdout;
  t.regex(text, /usage\s+\S+ \S+; quota soft 300\.0 KiB, hard 1\.0 MiB; OVER THE SOFT LIMIT/);

  await fsp.rm(h.p('big'));
  await fsp.rm(h.p('more'), { force: true });
  await runOk('dd', ['if=/dev/zero', `of=${h.p('after-rm')}`, 'bs=64k', 'count=4'], { env: h.env });
  const u2 = await usage(h);
  t.is(u2.bytes, 100 * KiB + 10 + 256 * KiB);
  t.is(u2.over, 'soft', 'under the hard limit again, above the soft one');

  const warn = (await h.logLines()).filter((l) => l.component === 'quota' && /above its soft quota/.test(String(l.msg)));
  t.true(warn.length >= 1, 'a warning in the log when the soft limit is crossed');
  t.is(warn[0]!.softBytes, 300 * KiB);

  const lo = await h.logout();
  t.is(lo.code, 0, lo.stderr);
  const ex = path.join(h.base, 'exported');
  await h.cliOk('export', h.repo, h.user, ex);
  t.is((await fsp.stat(path.join(ex, 'after-rm'))).size, 256 * KiB);
  t.is((await h.cli('fsck', h.repo)).code, 0);
});

test('without a quota nothing is counted and the mount stays fully lazy', async (t) => {
  const h = await mountedHome(t, {
    prefix: 'roamfs-home-noquota-',
    mountArgs: ['--prefetch-delay', 'off'],
    populate: async (src) => {
      await fsp.mkdir(path.join(src, 'a/b/c'), { recursive: true });
      await fsp.writeFile(path.join(src, 'a/b/c/f'), 'f');
    },
  });
  const s = await h.status();
  t.is((s.usage as Usage).baseCount, 'not-counted');
  t.is(s.cacheMisses, 1, 'only the root tree was read');
  t.regex((await h.cliOk('status', h.mountpoint)).stdout, /usage\s+not counted \(no quota is set\)/);
  const metrics = parsePrometheusText((await h.cliOk('metrics', h.mountpoint)).stdout);
  for (const name of ['roamfs_profile_size_bytes', 'roamfs_quota_soft_bytes', 'roamfs_quota_hard_bytes']) t.false(metrics.has(name), `no ${name} without a quota`);
});
