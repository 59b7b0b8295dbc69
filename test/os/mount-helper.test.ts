/**
 * The mount(8) helper mount/os/mount.fuse.roamfs, through mount(8) itself: `mount -t
 * fuse.roamfs` and an fstab line (`mount --fstab FILE`, so /etc/fstab is not touched) dispatch
 * to /sbin/mount.fuse.roamfs, which this test links to the checkout's helper for its duration
 * (an existing one is put aside and restored). Needs root and /dev/fuse.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { alive, exists, mountsAt, OS_DIR, OsEnv, oneLine, run, waitFor, type TestUser } from '../helpers/os-env.js';

const HELPER = '/sbin/mount.fuse.roamfs';
const isRoot = process.getuid?.() === 0;
const fuse = await fsp.access('/dev/fuse').then(() => true, () => false);
const why = !isRoot ? 'needs root' : !fuse ? 'needs /dev/fuse' : '';
const mtest = test.serial;
const name = (s: string) => s;
if (why) test('mount helper tests can run here', (t) => t.fail(why));

/** /sbin/mount.fuse.roamfs -> this checkout's helper while the test runs. */
async function linkHelper(env: OsEnv): Promise<void> {
  const ours = path.join(OS_DIR, 'mount.fuse.roamfs');
  if ((await fsp.realpath(HELPER).catch(() => null)) === ours) return;
  const aside = `${HELPER}.roamfs-test-${env.id}`;
  const had = await exists(HELPER);
  if (had) await fsp.rename(HELPER, aside);
  await fsp.symlink(ours, HELPER);
  env.onCleanup(`restore ${HELPER}`, async () => {
    if ((await fsp.readlink(HELPER).catch(() => null)) === ours) await fsp.rm(HELPER, { force: true });
    if (had) await fsp.rename(aside, HELPER);
  });
}

async function setup(t: ExecutionContext) {
  const env = await OsEnv.create(t, 'mount');
  await linkHelper(env);
  const user = await env.user();
  await env.profile(user.name);
  // the helper reads ROAMFS_CONFIG (not /etc/roamfs/roamfs.env) in these tests
  await env.writeConfig({ ROAMFS_REPO: '' });
  return { env, user };
}

function mount(env: OsEnv, args: string[]) {
  return run('mount', args, { env: env.env(), timeoutMs: 120_000 });
}

/** umount, then wait for the daemon to notice, flush and exit (the external-unmount path). */
async function umountAndWait(env: OsEnv, user: TestUser, pid: number) {
  const u = await run('umount', [user.home], { env: env.env() });
  if (u.code !== 0) throw new Error(`umount: ${oneLine(u)}`);
  await waitFor('the daemon to flush and exit after umount', async () => !alive(pid), 60_000);
}

mtest(name('mount -t fuse.roamfs REPO#USER MP -o ... mounts the home; roamfs status shows it; umount flushes it to the repository'), async (t) => {
  const { env, user } = await setup(t);
  const cache = path.join(env.base, 'cache-a');
  const r = await mount(env, ['-t', 'fuse.roamfs', `${env.repo}#${user.name}`, user.home, '-o', `cache=${cache},snapshot-interval=30s,idle=1s,max-lag=1m,prefetch-delay=off,uid=${user.uid},gid=${user.gid},rw,nosuid,nodev,_netdev,noauto,x-systemd.automount`]);
  t.is(r.code, 0, oneLine(r));
  t.is(r.stdout, '', 'silent on success, as mount(8) is');
  const m = await mountsAt(user.home);
  t.is(m.length, 1);
  t.is(m[0]!.fstype, 'fuse.roamfs');
  // ready when mount(8) returned
  t.is(await fsp.readFile(path.join(user.home, 'hello.txt'), 'utf8'), 'hello from the repository\n');
  t.is((await fsp.stat(path.join(user.home, 'hello.txt'))).uid, user.uid);
  const all = JSON.parse((await env.roamfsOk(['status', '--json'])).stdout) as Array<Record<string, unknown>>;
  const s = all.find((x) => x.mountpoint === user.home);
  t.truthy(s, 'roamfs status --json lists the home');
  t.is(s!.user, user.name);
  t.is(s!.repo, env.repo);
  t.is(s!.cache, cache);
  t.is(s!.state, 'mounted');

  await fsp.writeFile(path.join(user.home, 'before-umount.txt'), 'written before umount\n');
  const before = (await env.log(user.name)).length;
  await umountAndWait(env, user, s!.pid as number);
  t.is((await mountsAt(user.home)).length, 0);
  t.true((await env.log(user.name)).length > before, 'umount led to a commit');
  t.is(await fsp.readFile(path.join(await env.export(user.name), 'before-umount.txt'), 'utf8'), 'written before umount\n');
});

mtest(name('an fstab line mounts with names for uid/gid, generic options ignored, and USER alone takes the repository from the config'), async (t) => {
  const { env, user } = await setup(t);
  const fstab = path.join(env.base, 'fstab');
  await fsp.writeFile(
    fstab,
    `# test fstab\n${user.name}  ${user.home}  fuse.roamfs  noauto,nofail,_netdev,x-systemd.requires-mounts-for=${env.repo},uid=${user.name},gid=${user.name},cache=${path.join(env.base, 'cache-b')},snapshot_interval=1s,idle=1s,debug  0  0\n`,
  );
  await env.writeConfig({ ROAMFS_REPO: env.repo });
  const r = await mount(env, ['--fstab', fstab, user.home]);
  t.is(r.code, 0, oneLine(r));
  t.is((await mountsAt(user.home))[0]?.fstype, 'fuse.roamfs');
  t.is((await fsp.stat(path.join(user.home, 'hello.txt'))).gid, user.gid);
  const s = (await env.status(user.home))!;
  t.is(s.repo, env.repo);
  await fsp.writeFile(path.join(user.home, 'from-fstab.txt'), 'x\n');
  await umountAndWait(env, user, s.pid as number);
  t.is(await fsp.readFile(path.join(await env.export(user.name), 'from-fstab.txt'), 'utf8'), 'x\n');
});

mtest(name('bad sources and options are refused with a clear error and nothing is mounted; -s ignores unknown options; -f only checks'), async (t) => {
  const { env, user } = await setup(t);
  const src = `${env.repo}#${user.name}`;
  const cases: Array<[string[], RegExp]> = [
    [['-o', 'bogus=1'], /unknown option 'bogus=1'/],
    [['-o', 'ro'], /ro: roamfs homes are read-write/],
    [['-o', 'noexec'], /noexec is not supported/],
    [['-o', 'cache='], /cache= needs a value/],
    [['-o', 'uid=roamfs-no-such-user'], /uid=roamfs-no-such-user: no such user/],
  ];
  for (const [opts, msg] of cases) {
    const r = await mount(env, ['-t', 'fuse.roamfs', src, user.home, ...opts]);
    t.not(r.code, 0, opts.join(' '));
    t.regex(r.stderr, msg, opts.join(' '));
  }
  let r = await mount(env, ['-t', 'fuse.roamfs', user.name, user.home]);
  t.not(r.code, 0);
  t.regex(r.stderr, /give REPO#USER/);
  r = await mount(env, ['-t', 'fuse.roamfs', `${env.repo}#Bad/User`, user.home]);
  t.not(r.code, 0);
  t.regex(r.stderr, /not a valid user name/);
  // a bad duration or a missing repository: the CLI's own one-line error, mount(8) exit 32
  r = await mount(env, ['-t', 'fuse.roamfs', src, user.home, '-o', 'idle=soon']);
  t.is(r.code, 32, oneLine(r));
  t.regex(r.stderr, /--idle: not a duration/);
  r = await mount(env, ['-t', 'fuse.roamfs', `${env.base}/nowhere#${user.name}`, user.home]);
  t.is(r.code, 32, oneLine(r));
  t.regex(r.stderr, /does not exist/);
  t.is((await mountsAt(user.home)).length, 0);

  // sloppy (-s): unknown options are ignored with a warning; fake (-f): check, do not mount
  r = await mount(env, ['-f', '-s', '-t', 'fuse.roamfs', src, user.home, '-o', 'bogus=1,user']);
  t.is(r.code, 0, oneLine(r));
  t.regex(r.stderr, /ignoring unknown option bogus=1/);
  t.regex(r.stderr, /ignoring noexec \(implied by the 'user' option\)/);
  t.regex(r.stderr, new RegExp(`mount ${env.repo} ${user.name} ${user.home} --cache ${env.cache}/${user.name} --uid ${user.uid} --gid ${user.gid}`));
  t.is((await mountsAt(user.home)).length, 0);
});
