/**
 * The PAM session hook (mount/os/pam_roamfs.sh) driven through the real PAM stack: pamtester
 * runs a test service /etc/pam.d/roamfs-test-* whose session line is the shipped one
 * (mount/os/pam.d-roamfs: pam_exec seteuid quiet stdout) with this sandbox's --config, for a
 * real user (useradd) whose home is a temp mountpoint. Needs root, /dev/fuse, pamtester.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { alive, mountsAt, OS_DIR, OsEnv, oneLine, run, runOk, waitFor, which, type TestUser } from '../helpers/os-env.js';

const pamtesterPath = await which('pamtester');
const isRoot = process.getuid?.() === 0;
const fuse = await fsp.access('/dev/fuse').then(() => true, () => false);
const why = !isRoot ? 'needs root' : !fuse ? 'needs /dev/fuse' : !pamtesterPath ? 'needs pamtester (Debian package pamtester; scripts/setup.sh installs it)' : '';
const pamTest = test.serial;
const name = (s: string) => s;
if (why) test('PAM tests can run here', (t) => t.fail(why));

function pamtester(service: string, user: string, ...ops: string[]) {
  return run('pamtester', ['-v', service, user, ...ops], { timeoutMs: 180_000 });
}

async function setup(t: ExecutionContext, settings: Record<string, string> = {}, o: { profile?: boolean } = {}) {
  const env = await OsEnv.create(t, 'pam');
  const user = await env.user();
  if (o.profile ?? true) await env.profile(user.name);
  await env.writeConfig(settings);
  const { service, log } = await env.pamService();
  t.teardown(async () => {
    if (t.passed) return;
    t.log(`pam.log:\n${await fsp.readFile(log, 'utf8').catch(() => '(none)')}`);
  });
  return { env, user, service, log };
}

async function roamfsMounts(user: TestUser) {
  return (await mountsAt(user.home)).filter((m) => m.fstype === 'fuse.roamfs');
}

/** Write a file as the user (their own uid, not root's). */
async function writeAsUser(user: TestUser, rel: string, content: string) {
  await runOk('runuser', ['-u', user.name, '--', 'sh', '-c', 'printf %s "$1" > "$2"', 'sh', content, path.join(user.home, rel)]);
}

pamTest(name('open_session mounts the home before it returns; a second session only counts; the last close_session logs out and commits'), async (t) => {
  // no timed snapshots: what the session wrote reaches the repository only through the logout
  const { env, user, service } = await setup(t, { ROAMFS_SNAPSHOT_INTERVAL: 'off' });

  const open1 = await pamtester(service, user.name, 'open_session');
  t.is(open1.code, 0, oneLine(open1));
  // ready when pam_exec returned: mounted, the profile readable, shown as the user's files
  t.is((await roamfsMounts(user)).length, 1);
  t.is(await fsp.readFile(path.join(user.home, 'hello.txt'), 'utf8'), 'hello from the repository\n');
  const st = await fsp.stat(path.join(user.home, 'hello.txt'));
  t.is(st.uid, user.uid);
  t.is(st.gid, user.gid);
  t.is(await env.sessions(user.name), '1 roamfs');
  const status = await env.status(user.home);
  t.truthy(status);
  t.is(status!.user, user.name);
  t.is(status!.cache, path.join(env.cache, user.name));
  const pid = status!.pid as number;

  // the user works in the home with their own uid
  await writeAsUser(user, 'written-in-session.txt', 'made during the session\n');
  t.is((await fsp.stat(path.join(user.home, 'written-in-session.txt'))).uid, user.uid);
  // nothing user-visible on a successful login (pam_exec's stdout goes to the user)
  t.notRegex(open1.stdout + open1.stderr, /roamfs:/);

  const open2 = await pamtester(service, user.name, 'open_session');
  t.is(open2.code, 0, oneLine(open2));
  t.is((await roamfsMounts(user)).length, 1, 'a second session does not mount twice');
  t.is((await env.status(user.home))!.pid, pid, 'the same daemon serves it');
  t.is(await env.sessions(user.name), '2 roamfs');

  const close1 = await pamtester(service, user.name, 'close_session');
  t.is(close1.code, 0, oneLine(close1));
  t.is((await roamfsMounts(user)).length, 1, 'closing one of two sessions keeps the home');
  t.true(alive(pid));
  t.is(await env.sessions(user.name), '1 roamfs');
  await writeAsUser(user, 'written-late.txt', 'just before the last logout\n');

  const before = (await env.log(user.name)).length;
  const close2 = await pamtester(service, user.name, 'close_session');
  t.is(close2.code, 0, oneLine(close2));
  // the last close returns after the logout: unmounted, daemon gone, all committed
  t.is((await mountsAt(user.home)).length, 0);
  t.is(await env.sessions(user.name), null);
  await waitFor('the daemon to exit', async () => !alive(pid), 10_000);
  t.is((await env.log(user.name)).length, before + 1, 'the logout made one commit');
  const out = await env.export(user.name);
  t.is(await fsp.readFile(path.join(out, 'written-in-session.txt'), 'utf8'), 'made during the session\n');
  t.is(await fsp.readFile(path.join(out, 'written-late.txt'), 'utf8'), 'just before the last logout\n');
  t.deepEqual(await fsp.readdir(user.home), [], 'the mountpoint is left empty');
});

pamTest(name('root, system users and users outside ROAMFS_MIN_UID..ROAMFS_MAX_UID or ROAMFS_GROUP are skipped'), async (t) => {
  const { env, user, service } = await setup(t);
  for (const who of ['root', 'daemon', 'nobody']) {
    const r = await pamtester(service, who, 'open_session', 'close_session');
    t.is(r.code, 0, `${who}: ${oneLine(r)}`);
    t.is(await env.sessions(who), null, who);
  }
  await env.writeConfig({ ROAMFS_MIN_UID: String(user.uid + 1) });
  let r = await pamtester(service, user.name, 'open_session');
  t.is(r.code, 0, oneLine(r));
  t.is((await mountsAt(user.home)).length, 0, 'below ROAMFS_MIN_UID: not mounted');
  await env.writeConfig({ ROAMFS_MAX_UID: String(user.uid - 1) });
  r = await pamtester(service, user.name, 'open_session');
  t.is((await mountsAt(user.home)).length, 0, 'above ROAMFS_MAX_UID: not mounted');
  await env.writeConfig({ ROAMFS_GROUP: 'roamfs-no-such-group' });
  r = await pamtester(service, user.name, 'open_session');
  t.is((await mountsAt(user.home)).length, 0, 'not in ROAMFS_GROUP: not mounted');
  await env.writeConfig({ ROAMFS_GROUP: user.name });
  r = await pamtester(service, user.name, 'open_session');
  t.is(r.code, 0, oneLine(r));
  t.is((await roamfsMounts(user)).length, 1, 'in ROAMFS_GROUP: mounted');
  r = await pamtester(service, user.name, 'close_session');
  t.is((await mountsAt(user.home)).length, 0);
});

pamTest(name('two logins at once mount the home once (the per-user flock); both closes log out once'), async (t) => {
  const { env, user, service } = await setup(t);
  const [a, b] = await Promise.all([pamtester(service, user.name, 'open_session'), pamtester(service, user.name, 'open_session')]);
  t.is(a.code, 0, oneLine(a));
  t.is(b.code, 0, oneLine(b));
  t.is((await roamfsMounts(user)).length, 1);
  t.is((await env.daemonPids()).length, 1);
  t.is(await env.sessions(user.name), '2 roamfs');
  const [c, d] = await Promise.all([pamtester(service, user.name, 'close_session'), pamtester(service, user.name, 'close_session')]);
  t.is(c.code, 0, oneLine(c));
  t.is(d.code, 0, oneLine(d));
  t.is((await mountsAt(user.home)).length, 0);
  t.is(await env.sessions(user.name), null);
});

pamTest(name('a failed mount refuses the login (ROAMFS_ON_FAILURE=deny) with a reason for the user, and leaves nothing behind'), async (t) => {
  // no profile in the repository, and no skeleton to make one from
  const { env, user, service } = await setup(t, { ROAMFS_NEW_USER_SKEL: '' }, { profile: false });
  const r = await pamtester(service, user.name, 'open_session');
  t.not(r.code, 0, 'the session is refused');
  t.regex(r.stdout + r.stderr, /roamfs: your home directory could not be mounted \(.*has no profile.*\); the login is refused/);
  t.is((await mountsAt(user.home)).length, 0);
  t.is(await env.sessions(user.name), null, 'a refused session is not counted');
  t.deepEqual(await fsp.readdir(user.home), []);
  // a repository that is not there: refused the same way
  await env.profile(user.name);
  await env.writeConfig({ ROAMFS_REPO: path.join(env.base, 'no-such-repo') });
  const r2 = await pamtester(service, user.name, 'open_session');
  t.not(r2.code, 0);
  t.regex(r2.stdout + r2.stderr, /could not be mounted \(.*no-such-repo.*\)/);
  t.is((await mountsAt(user.home)).length, 0);
});

pamTest(name('a user without a profile gets one from ROAMFS_NEW_USER_SKEL at the first login (home created 0700)'), async (t) => {
  const env0 = await OsEnv.create(t, 'pam');
  const user = await env0.user({ createHome: false });
  const skel = path.join(env0.base, 'skel');
  await fsp.mkdir(path.join(skel, '.config'), { recursive: true });
  await fsp.writeFile(path.join(skel, '.profile'), '# skeleton profile\n');
  await fsp.writeFile(path.join(skel, '.config', 'app.conf'), 'x=1\n');
  await env0.writeConfig({ ROAMFS_NEW_USER_SKEL: skel });
  const { service } = await env0.pamService();
  const r = await pamtester(service, user.name, 'open_session');
  t.is(r.code, 0, oneLine(r));
  t.is((await roamfsMounts(user)).length, 1);
  t.is(await fsp.readFile(path.join(user.home, '.profile'), 'utf8'), '# skeleton profile\n');
  const root = await fsp.stat(user.home);
  t.is(root.uid, user.uid, 'the skeleton is the user\'s');
  t.is(root.mode & 0o777, 0o700);
  t.is((await fsp.stat(path.join(user.home, '.config', 'app.conf'))).uid, user.uid);
  await writeAsUser(user, '.config/app.conf', 'x=2\n');
  const c = await pamtester(service, user.name, 'close_session');
  t.is(c.code, 0, oneLine(c));
  t.is((await mountsAt(user.home)).length, 0);
  const log = await env0.log(user.name);
  t.regex(log[log.length - 1]!.message ?? '', /new profile from/);
  t.is(await fsp.readFile(path.join(await env0.export(user.name), '.config', 'app.conf'), 'utf8'), 'x=2\n');
});

pamTest(name('ROAMFS_ON_FAILURE=tmpfs logs in with a temporary home that the last logout discards'), async (t) => {
  const { env, user, service } = await setup(t, { ROAMFS_ON_FAILURE: 'tmpfs', ROAMFS_FALLBACK_SIZE: '16M' });
  await env.writeConfig({ ROAMFS_ON_FAILURE: 'tmpfs', ROAMFS_FALLBACK_SIZE: '16M', ROAMFS_REPO: path.join(env.base, 'unreachable') });
  const r = await pamtester(service, user.name, 'open_session');
  t.is(r.code, 0, oneLine(r));
  t.regex(r.stdout + r.stderr, /TEMPORARY home/);
  const m = await mountsAt(user.home);
  t.is(m.length, 1);
  t.is(m[0]!.fstype, 'tmpfs');
  t.is((await fsp.stat(user.home)).uid, user.uid);
  await writeAsUser(user, 'scratch.txt', 'lost at logout\n');
  t.is(await env.sessions(user.name), '1 tmpfs');
  const r2 = await pamtester(service, user.name, 'open_session');
  t.is(r2.code, 0, oneLine(r2));
  t.is((await mountsAt(user.home)).length, 1, 'the second session joins the temporary home');
  t.is(await env.sessions(user.name), '2 tmpfs');
  await pamtester(service, user.name, 'close_session');
  t.is((await mountsAt(user.home)).length, 1);
  await pamtester(service, user.name, 'close_session');
  t.is((await mountsAt(user.home)).length, 0);
  t.deepEqual(await fsp.readdir(user.home), []);
});

pamTest(name('a home whose daemon died is mounted again at the next login, and its snapshots are recovered'), async (t) => {
  const { env, user, service } = await setup(t);
  const r = await pamtester(service, user.name, 'open_session');
  t.is(r.code, 0, oneLine(r));
  const pid = (await env.status(user.home))!.pid as number;
  await writeAsUser(user, 'before-crash.txt', 'in a durable snapshot\n');
  await env.roamfsOk(['snapshot', user.home]);
  process.kill(pid, 'SIGKILL');
  await waitFor('the daemon to die', async () => !alive(pid), 10_000);
  t.is((await roamfsMounts(user)).length, 1, 'a dead FUSE mount is left behind');
  const r2 = await pamtester(service, user.name, 'open_session');
  t.is(r2.code, 0, oneLine(r2));
  t.is((await roamfsMounts(user)).length, 1, 'the dead mount was replaced, not stacked');
  t.is(await env.sessions(user.name), '2 roamfs');
  t.is(await fsp.readFile(path.join(user.home, 'before-crash.txt'), 'utf8'), 'in a durable snapshot\n');
  await pamtester(service, user.name, 'close_session');
  t.is((await roamfsMounts(user)).length, 1);
  const c = await pamtester(service, user.name, 'close_session');
  t.is(c.code, 0, oneLine(c));
  t.is((await mountsAt(user.home)).length, 0);
  t.is(await fsp.readFile(path.join(await env.export(user.name), 'before-crash.txt'), 'utf8'), 'in a durable snapshot\n');
});

pamTest(name('ROAMFS_PAM_METHOD=systemd starts roamfs@USER.service at login and stops it at the last logout'), async (t) => {
  const { env, user, service } = await setup(t);
  // a stand-in systemctl that records its calls and does what the unit's ExecStart/ExecStop do
  const calls = path.join(env.base, 'systemctl.calls');
  const stub = path.join(env.base, 'systemctl');
  await fsp.writeFile(
    stub,
    `#!/bin/sh
echo "$*" >> ${calls}
u=\${2#roamfs@}; u=\${u%.service}
case $1 in
  start) exec ${path.join(OS_DIR, 'roamfs-home')} --config ${env.config} mount "$u" ;;
  stop) exec ${path.join(OS_DIR, 'roamfs-home')} --config ${env.config} logout "$u" ;;
esac
`,
    { mode: 0o755 },
  );
  await env.writeConfig({ ROAMFS_PAM_METHOD: 'systemd', ROAMFS_SYSTEMCTL: stub });
  for (const op of ['open_session', 'open_session', 'close_session', 'close_session']) {
    const r = await pamtester(service, user.name, op);
    t.is(r.code, 0, `${op}: ${oneLine(r)}`);
    if (op === 'open_session') t.is((await roamfsMounts(user)).length, 1);
  }
  t.is((await mountsAt(user.home)).length, 0);
  // every login makes sure the unit runs (a no-op when it does; it restarts a crashed one); only
  // the last logout stops it
  t.deepEqual((await fsp.readFile(calls, 'utf8')).trim().split('\n'), [`start roamfs@${user.name}.service`, `start roamfs@${user.name}.service`, `stop roamfs@${user.name}.service`]);
});
