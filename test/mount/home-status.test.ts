/**
 * `roamfs status` of all the homes on a machine (text and JSON) and the control socket's
 * protection: a non-root user (setpriv --reuid 65534) is refused with one clear line, for one
 * home and for the list, even when the directories on the way are open to it.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ROAMFS_BIN, mountedHome, run } from '../helpers/mounted-home.js';
import { mountId } from '../../mount/control.js';

test('status lists every home: user, state, background load, cache, pending and RPO, transfers, lease, last error', async (t) => {
  t.timeout(3 * 60_000);
  const h = await mountedHome(t, {
    prefix: 'roamfs-home-status-',
    mountArgs: ['--snapshot-interval', 'off', '--idle', '3600s', '--prefetch-delay', '1s'],
    populate: async (src) => {
      await fsp.mkdir(path.join(src, 'Docs'));
      for (let i = 0; i < 5; i++) await fsp.writeFile(path.join(src, `Docs/f${i}`), Buffer.alloc(20_000, i));
    },
  });
  // A second user's home on the same machine (same run directory).
  const srcB = path.join(h.base, 'src-bob');
  await fsp.mkdir(srcB);
  await fsp.writeFile(path.join(srcB, 'notes'), 'bob');
  await h.cliOk('import', h.repo, 'bob', srcB);
  const mpB = path.join(h.base, 'home-bob');
  await fsp.mkdir(mpB);
  const noRepo = await h.cli('mount', 'bob', mpB);
  t.is(noRepo.code, 1);
  t.is(noRepo.stderr.trim(), 'roamfs: no repository: give REPO, or set "repository" in /etc/roamfs/roamfs.json or ROAMFS_REPO');
  // USER MOUNTPOINT alone: the repository comes from the configuration (here the environment).
  h.env.ROAMFS_REPO = h.repo;
  try {
    await h.cliOk('mount', 'bob', mpB, '--cache', path.join(h.base, 'cache-bob'), '--snapshot-interval', 'off', '--prefetch-delay', 'off');
  } finally {
    delete h.env.ROAMFS_REPO;
  }

  await fsp.writeFile(h.p('new.txt'), 'new');
  await h.cliOk('snapshot', h.mountpoint);
  // Background load of alice's profile finishes quickly (5 files).
  const end = Date.now() + 30_000;
  while (((await h.status()).prefetch as { phase: string }).phase !== 'done' && Date.now() < end) await new Promise((r) => setTimeout(r, 200));

  const all = JSON.parse((await h.cliOk('status', '--json')).stdout) as Array<Record<string, unknown>>;
  t.deepEqual(all.map((s) => s.user).sort(), ['alice', 'bob']);
  const a = all.find((s) => s.user === 'alice')!;
  for (const k of ['mountpoint', 'state', 'prefetch', 'cacheHits', 'cacheMisses', 'pendingSnapshots', 'pendingBytes', 'oldestPendingAgeMs', 'bytesUploaded', 'remoteBytesRead', 'lease', 'lastError', 'usage']) {
    t.true(k in a, `status has ${k}`);
  }
  t.is(a.state, 'mounted');
  t.like(a.lease as object, { policy: 'concurrent', mode: 'rw', state: 'held', generation: null, failures: 0, others: [], lostReason: null }, "alice's session holds its lease; bob is another user");
  t.true((a.lease as { validForMs: number }).validForMs > 0);
  t.is(a.pendingSnapshots, 1);
  t.true((a.oldestPendingAgeMs as number) >= 0);
  t.true((a.pendingBytes as number) >= 3);
  t.like(a.prefetch as object, { phase: 'done', filesDone: 5, filesTotal: 5, bytesDone: 100_000, bytesTotal: 100_000 });

  const text = (await h.cliOk('status')).stdout;
  t.regex(text, new RegExp(`^${h.mountpoint}  user alice  mounted  pid \\d+$`, 'm'));
  t.regex(text, new RegExp(`^${mpB}  user bob  mounted  pid \\d+$`, 'm'));
  t.regex(text, /background load \[100%\]  done: 5\/5 files, 97\.7 KiB\/97\.7 KiB/, 'not a terminal: the bar is a percentage');
  t.regex(text, /pending\s+1 snapshot\(s\), [\d.]+ \S+; RPO \S+ \(oldest unshipped snapshot\)/);
  t.regex(text, /cache\s+hits \d+, misses \d+/);
  t.regex(text, /transfers\s+up 0 B, down [\d.]+ \S+/);
  t.regex(text, /sessions\s+read-write, concurrent; held; no other desktop$/m);
  t.regex(text, /last error\s+-/);
  t.is((await h.cli('logout', mpB)).code, 0);
});

test('the control socket is root-only: a non-root user gets one clear line, the home is unaffected', async (t) => {
  t.timeout(3 * 60_000);
  const h = await mountedHome(t, { prefix: 'roamfs-home-ctl-', mountArgs: ['--snapshot-interval', 'off', '--prefetch-delay', 'off'] });
  // Let the unprivileged user walk to the run directory: only its own protection remains.
  await fsp.chmod(h.base, 0o755);
  const sock = path.join(h.runDir, `${mountId(h.mountpoint)}.sock`);
  t.is((await fsp.stat(h.runDir)).mode & 0o777, 0o700);
  t.is((await fsp.stat(sock)).mode & 0o777, 0o600);
  const asNobody = (...args: string[]) => run('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, ROAMFS_BIN, ...args], { env: h.env });

  for (const args of [['status', h.mountpoint], ['metrics', h.mountpoint], ['snapshot', h.mountpoint], ['logout', h.mountpoint]]) {
    const r = await asNobody(...args);
    t.not(r.code, 0, args.join(' '));
    t.is(r.stderr.trim(), `roamfs: permission denied: the control socket of ${h.mountpoint} is root-only (run this as root)`, args.join(' '));
  }
  const list = await asNobody('status');
  t.not(list.code, 0);
  t.is(list.stderr.trim(), `roamfs: permission denied: ${h.runDir} (the control sockets of the mounted homes) is root-only (run this as root)`, 'not "no homes are mounted"');

  // The socket itself refuses too, should the directory be opened up.
  await fsp.chmod(h.runDir, 0o755);
  try {
    const r = await asNobody('status', h.mountpoint);
    t.regex(r.stderr, /permission denied: the control socket .* is root-only/);
  } finally {
    await fsp.chmod(h.runDir, 0o700);
  }
  t.is((await h.status()).state, 'mounted', 'root still gets answers');
  t.true(await h.isMounted());
});
