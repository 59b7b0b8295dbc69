/**
 * Exclusions on a real mount: local-only paths work during the session (write, read back),
 * never reach the repository (export after logout, fsck clean), never keep the snapshotter
 * busy (status.dirty), and start empty at each login even when an imported profile has them.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { mountedHome, runOk } from '../helpers/mounted-home.js';

/** Every path below dir (relative, sorted; directories with a trailing /). */
async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, rel: string) => {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        out.push(`${r}/`);
        await walk(path.join(d, e.name), r);
      } else out.push(r);
    }
  };
  await walk(dir, '');
  return out.sort();
}

test('excluded paths are usable in the session, keep the snapshotter clean and are never committed', async (t) => {
  t.timeout(3 * 60_000);
  const h = await mountedHome(t, {
    prefix: 'roamfs-home-excl-',
    mountArgs: ['--snapshot-interval', 'off', '--idle', '3600s', '--prefetch-delay', 'off'],
    populate: async (src) => {
      await fsp.mkdir(path.join(src, 'Docs'));
      await fsp.writeFile(path.join(src, 'Docs/a.txt'), 'a');
    },
  });
  const chromium = h.p('.config/chromium/Default');
  await fsp.mkdir(h.p('.cache'));
  await fsp.writeFile(h.p('.cache/x'), 'cached x');
  await fsp.mkdir(path.join(chromium, 'Cache'), { recursive: true });
  await fsp.writeFile(path.join(chromium, 'Cache/y'), 'cached y');
  await fsp.writeFile(path.join(chromium, 'Bookmarks'), 'bookmarks');
  await fsp.writeFile(h.p('Docs/b.txt'), 'b');
  t.is(await fsp.readFile(h.p('.cache/x'), 'utf8'), 'cached x', 'usable during the session');
  t.is(await fsp.readFile(path.join(chromium, 'Cache/y'), 'utf8'), 'cached y');

  t.regex((await h.cliOk('snapshot', h.mountpoint)).stdout, /snapshot \d+ is durable/);
  t.false((await h.status()).dirty);
  // A busy cache after the snapshot: nothing for the snapshotter to do.
  for (let i = 0; i < 20; i++) await fsp.writeFile(h.p(`.cache/entry-${i}`), Buffer.alloc(4096, i));
  await fsp.appendFile(path.join(chromium, 'Cache/y'), ' more');
  await fsp.rm(h.p('.cache/entry-3'));
  const st = await h.status();
  t.false(st.dirty, 'writes to excluded paths do not make the home dirty');
  t.regex((await h.cliOk('snapshot', h.mountpoint)).stdout, /nothing changed since the last snapshot/);
  t.is(st.pendingSnapshots, 1);

  const lo = await h.logout();
  t.is(lo.code, 0, lo.stderr);
  const ex = path.join(h.base, 'exported');
  await h.cliOk('export', h.repo, h.user, ex);
  const tree = await listTree(ex);
  t.deepEqual(tree, ['.cache/', '.config/', '.config/chromium/', '.config/chromium/Default/', '.config/chromium/Default/Bookmarks', 'Docs/', 'Docs/a.txt', 'Docs/b.txt'], 'the excluded files are not in the repository');
  const fsck = await h.cli('fsck', h.repo);
  t.is(fsck.code, 0, fsck.stderr + fsck.stdout);
  // Nor any of their bytes.
  const grep = await runOk('grep', ['-rl', 'cached', path.join(h.repo, 'objects')]).catch(() => ({ stdout: '' }));
  t.is(grep.stdout, '', 'no object holds the excluded content');
});

test('an imported profile with caches: the mount shows them empty, the next mount too; admins add and remove patterns', async (t) => {
  t.timeout(3 * 60_000);
  const h = await mountedHome(t, {
    prefix: 'roamfs-home-excl-import-',
    mount: false,
    populate: async (src) => {
      await fsp.mkdir(path.join(src, '.cache/thumbnails/large'), { recursive: true });
      await fsp.writeFile(path.join(src, '.cache/thumbnails/large/t.png'), 'png');
      await fsp.mkdir(path.join(src, '.config/google-chrome/Default/Code Cache/js'), { recursive: true });
      await fsp.writeFile(path.join(src, '.config/google-chrome/Default/Code Cache/js/index'), 'idx');
      await fsp.writeFile(path.join(src, '.config/google-chrome/Default/Preferences'), '{}');
      await fsp.mkdir(path.join(src, '.local/share/Trash/files'), { recursive: true });
      await fsp.writeFile(path.join(src, '.local/share/Trash/files/old.txt'), 'old');
      await fsp.mkdir(path.join(src, 'Downloads'));
      await fsp.writeFile(path.join(src, 'Downloads/setup.iso'), 'iso');
    },
  });
  await h.mount(['--snapshot-interval', 'off', '--prefetch-delay', 'off']);
  t.deepEqual(await fsp.readdir(h.p('.cache')), [], '.cache starts empty');
  t.deepEqual(await fsp.readdir(h.p('.config/google-chrome/Default')), ['Preferences']);
  t.deepEqual(await fsp.readdir(h.p('.local/share/Trash')), [], 'the trash starts empty');
  t.deepEqual(await fsp.readdir(h.p('Downloads')), ['setup.iso']);
  await fsp.writeFile(h.p('.cache/new'), 'n');
  t.is((await h.logout()).code, 0);

  // The admin's file: Downloads is local-only too, and the trash roams after all.
  const conf = path.join(h.base, 'roamfs.json');
  await fsp.writeFile(conf, JSON.stringify({ excludeAdd: ['Downloads/**'], excludeRemove: ['.local/share/Trash/**'] }));
  h.env.ROAMFS_CONFIG = conf;
  const printed = (await h.cliOk('config', '--print')).stdout;
  t.regex(printed, /excludeAdd\s+"Downloads\/\*\*"\s+file \(/);
  await h.mount(['--snapshot-interval', 'off', '--prefetch-delay', 'off']);
  t.deepEqual(await fsp.readdir(h.p('.cache')), [], 'still empty at the next login');
  t.deepEqual(await fsp.readdir(h.p('Downloads')), []);
  t.deepEqual(await fsp.readdir(h.p('.local/share/Trash/files')), ['old.txt']);
  t.is((await h.logout()).code, 0);
  t.is((await h.cli('fsck', h.repo)).code, 0);
});
