/**
 * Ownership on a real home mounted for an unprivileged user (`--uid/--gid`): the profile
 * owner's files show as that user's; the user reads and writes their home; another
 * unprivileged user is refused a 0600 file by the kernel (default_permissions) and may not
 * write into the 0755 home, while reading a 0644 file is allowed. Users are switched with
 * setpriv (no passwd entry needed): 65534 (nobody) owns the home, 4242 is a stranger.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { mountedHome, run, runOk } from '../helpers/mounted-home.js';

const OWNER = 65534;
const STRANGER = 4242;


/** Run a shell snippet as uid:gid with no supplementary groups. */
function as(uid: number, script: string, env: NodeJS.ProcessEnv) {
  return run('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', '--', '/bin/sh', '-c', script], { env: { ...env, HOME: '/' } });
}

test('mounted with --uid/--gid: files show as the user, who reads and writes; another user gets EACCES on a 0600 file', async (t) => {
  const h = await mountedHome(t, {
    prefix: 'roamfs-home-own-',
    mountArgs: ['--uid', String(OWNER), '--gid', String(OWNER)],
    populate: async (src) => {
      await fsp.mkdir(path.join(src, '.ssh'), { mode: 0o700 });
      await fsp.writeFile(path.join(src, '.ssh/id_ed25519'), 'PRIVATE KEY\n', { mode: 0o600 });
      await fsp.writeFile(path.join(src, 'public.txt'), 'hello\n', { mode: 0o644 });
      await fsp.writeFile(path.join(src, 'secret.txt'), 'only mine\n', { mode: 0o600 });
      await fsp.chmod(src, 0o755);
    },
  });
  // The test's temp directory is 0700 root: let the unprivileged users walk to the home.
  await fsp.chmod(h.base, 0o755);
  const q = (p: string) => `'${p.replace(/'/g, `'\\''`)}'`;

  // Owner shown: the profile owner's files (imported as root) appear as the mount's user.
  const ids = await runOk('stat', ['-c', '%n %u %g %a', h.mountpoint, h.p('public.txt'), h.p('secret.txt'), h.p('.ssh'), h.p('.ssh/id_ed25519')]);
  for (const line of ids.stdout.trim().split('\n')) {
    const [, u, g] = line.split(' ');
    t.is(`${u}:${g}`, `${OWNER}:${OWNER}`, line);
  }

  // The owner reads everything of theirs, writes, creates, renames, removes.
  const own = await as(
    OWNER,
    [
      `cat ${q(h.p('secret.txt'))} ${q(h.p('.ssh/id_ed25519'))}`,
      `echo new > ${q(h.p('made-by-owner.txt'))}`,
      `mkdir ${q(h.p('Documents'))} && echo doc > ${q(h.p('Documents/a.txt'))}`,
      `mv ${q(h.p('Documents/a.txt'))} ${q(h.p('Documents/b.txt'))}`,
      `echo more >> ${q(h.p('public.txt'))}`,
      `chmod 600 ${q(h.p('made-by-owner.txt'))}`,
      `rm ${q(h.p('Documents/b.txt'))}`,
      `touch -d '2020-01-01 00:00:00' ${q(h.p('public.txt'))}`,
      `stat -c '%u %g %a' ${q(h.p('made-by-owner.txt'))} ${q(h.p('Documents'))}`,
    ].join(' && '),
    h.env,
  );
  t.is(own.code, 0, own.stderr);
  t.true(own.stdout.startsWith('only mine\nPRIVATE KEY\n'));
  t.deepEqual(own.stdout.trim().split('\n').slice(-2), [`${OWNER} ${OWNER} 600`, `${OWNER} ${OWNER} 755`], 'new entries belong to their creator');
  t.is(await fsp.readFile(h.p('public.txt'), 'utf8'), 'hello\nmore\n');

  // The owner may not chown to someone else (only root may): EPERM from the kernel's checks.
  const chown = await as(OWNER, `chown ${STRANGER} ${q(h.p('public.txt'))}`, h.env);
  t.not(chown.code, 0);
  t.regex(chown.stderr, /Operation not permitted/);

  // A stranger: may read the 0644 file, not the 0600 ones, and not write into the home.
  const readable = await as(STRANGER, `cat ${q(h.p('public.txt'))}`, h.env);
  t.is(readable.code, 0, readable.stderr);
  for (const f of ['secret.txt', 'made-by-owner.txt', '.ssh/id_ed25519']) {
    const r = await as(STRANGER, `cat ${q(h.p(f))}`, h.env);
    t.not(r.code, 0, `stranger cannot read ${f}`);
    t.regex(r.stderr, /Permission denied/, f);
  }
  const write = await as(STRANGER, `echo x > ${q(h.p('intruder.txt'))}`, h.env);
  t.not(write.code, 0);
  t.regex(write.stderr, /Permission denied/);
  const append = await as(STRANGER, `echo x >> ${q(h.p('public.txt'))}`, h.env);
  t.not(append.code, 0, 'a 0644 file is not writable by others');
  await t.throwsAsync(fsp.stat(h.p('intruder.txt')), { code: 'ENOENT' });

  // After logout the repository keeps the owner as the profile's (the stored ids do not
  // become 65534): a mount for another local uid shows the same files as that uid's.
  const lo = await h.logout();
  t.is(lo.code, 0, lo.stderr);
  await h.mount(['--uid', '1234', '--gid', '1234']);
  const again = await runOk('stat', ['-c', '%u:%g', h.p('public.txt'), h.p('made-by-owner.txt'), h.p('Documents')]);
  t.deepEqual(again.stdout.trim().split('\n'), ['1234:1234', '1234:1234', '1234:1234']);
  t.is((await h.logout()).code, 0);
});
