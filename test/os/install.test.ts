/**
 * scripts/install.sh and scripts/uninstall.sh into a temp root (--root), so the machine's own
 * /etc, /sbin and /usr/local are not touched: idempotence, the manifest, "uninstall removes
 * exactly what install put there", --enable-pam through pam-auth-update --root on copies of
 * this machine's PAM configuration, --force backups, and the PAM safety check of uninstall.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { CHECKOUT, exists, oneLine, run, which } from '../helpers/os-env.js';

const INSTALL = path.join(CHECKOUT, 'scripts/install.sh');
const UNINSTALL = path.join(CHECKOUT, 'scripts/uninstall.sh');
const pamAuthUpdate = await which('pam-auth-update');

/** A fake root with copies of the machine's PAM configuration (what pam-auth-update edits). */
async function fakeRoot(t: ExecutionContext): Promise<string> {
  const root = await fsp.mkdtemp('/tmp/roamfs-install-');
  t.teardown(() => fsp.rm(root, { recursive: true, force: true }));
  await fsp.mkdir(path.join(root, 'etc/pam.d'), { recursive: true });
  await fsp.mkdir(path.join(root, 'usr/share'), { recursive: true });
  await fsp.mkdir(path.join(root, 'var/lib'), { recursive: true });
  if (pamAuthUpdate) {
    await fsp.cp('/usr/share/pam-configs', path.join(root, 'usr/share/pam-configs'), { recursive: true });
    await fsp.cp('/var/lib/pam', path.join(root, 'var/lib/pam'), { recursive: true }).catch(() => undefined);
    for (const f of await fsp.readdir('/etc/pam.d')) {
      if (f.startsWith('common-')) await fsp.copyFile(path.join('/etc/pam.d', f), path.join(root, 'etc/pam.d', f));
    }
  }
  return root;
}

/** Every path below root -> sha256 of a file, '->target' of a link, 'dir' of a directory. */
async function tree(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  async function walk(d: string) {
    for (const e of await fsp.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const rel = '/' + path.relative(root, p);
      if (e.isSymbolicLink()) out.set(rel, '->' + (await fsp.readlink(p)));
      else if (e.isDirectory()) {
        out.set(rel, 'dir');
        await walk(p);
      } else out.set(rel, createHash('sha256').update(await fsp.readFile(p)).digest('hex') + ' ' + ((await fsp.stat(p)).mode & 0o777).toString(8));
    }
  }
  await walk(root);
  return out;
}

function diff(a: Map<string, string>, b: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [k, v] of a) if (b.get(k) !== v) out.push(`${k}: ${v} -> ${b.get(k) ?? '(gone)'}`);
  for (const [k, v] of b) if (!a.has(k)) out.push(`${k}: (new) ${v}`);
  return out.sort();
}

function sh(script: string, args: string[]) {
  return run('bash', [script, ...args], { timeoutMs: 120_000 });
}

test.serial('install.sh puts every piece in place, a second run changes nothing, uninstall.sh restores the root exactly (twice is fine)', async (t) => {
  const root = await fakeRoot(t);
  const before = await tree(root);
  const pam = pamAuthUpdate ? ['--enable-pam'] : [];
  const r1 = await sh(INSTALL, ['--root', root, '--no-build', '--repo', '/srv/roamfs/repo', ...pam]);
  t.is(r1.code, 0, oneLine(r1));
  const installed = await tree(root);
  const expect: Record<string, RegExp> = {
    '/usr/local/bin/roamfs': / 755$/,
    '/usr/local/lib/roamfs/roamfs-home': / 755$/,
    '/usr/local/lib/roamfs/pam_roamfs.sh': / 755$/,
    '/usr/local/lib/roamfs/mount.fuse.roamfs': / 755$/,
    '/usr/local/lib/roamfs/roamfs-lib.sh': / 644$/,
    '/usr/local/lib/roamfs/install-manifest': / 644$/,
    '/sbin/mount.fuse.roamfs': /^->\/usr\/local\/lib\/roamfs\/mount\.fuse\.roamfs$/,
    '/usr/local/lib/systemd/system/roamfs@.service': / 644$/,
    '/etc/systemd/system/roamfs@.service.d/10-repository.conf': / 644$/,
    '/etc/pam.d/roamfs': / 644$/,
    '/usr/share/pam-configs/roamfs': / 644$/,
    '/etc/roamfs/roamfs.env': / 644$/,
    '/etc/roamfs/roamfs.env.example': / 644$/,
    '/usr/local/share/doc/roamfs/deployment.md': / 644$/,
  };
  for (const [p, re] of Object.entries(expect)) t.regex(installed.get(p) ?? '(missing)', re, p);
  t.regex(await fsp.readFile(path.join(root, 'etc/roamfs/roamfs.env'), 'utf8'), /^ROAMFS_REPO=\/srv\/roamfs\/repo$/m);
  t.regex(await fsp.readFile(path.join(root, 'etc/systemd/system/roamfs@.service.d/10-repository.conf'), 'utf8'), /^RequiresMountsFor=\/srv\/roamfs\/repo$/m);
  t.regex(await fsp.readFile(path.join(root, 'etc/pam.d/roamfs'), 'utf8'), /^session required pam_exec\.so .*\/usr\/local\/lib\/roamfs\/pam_roamfs\.sh$/m);
  if (pamAuthUpdate) {
    const cs = await fsp.readFile(path.join(root, 'etc/pam.d/common-session'), 'utf8');
    t.regex(cs, /^session\s+include\s+roamfs\s*$/m, 'common-session includes roamfs');
    const lines = cs.split('\n');
    const ours = lines.findIndex((l) => /include\s+roamfs/.test(l));
    const sd = lines.findIndex((l) => /pam_systemd/.test(l));
    if (sd >= 0) t.true(ours < sd, 'before pam_systemd');
  } else {
    t.log('pam-auth-update is not installed: --enable-pam not exercised');
  }
  // the wrapper runs this checkout's CLI
  const v = await run(path.join(root, 'usr/local/bin/roamfs'), ['--version']);
  t.is(v.code, 0, oneLine(v));
  t.is(v.stdout.trim(), '0.1.0');

  const r2 = await sh(INSTALL, ['--root', root, '--no-build', '--repo', '/srv/roamfs/repo', ...pam]);
  t.is(r2.code, 0, oneLine(r2));
  t.regex(r2.stderr, /nothing changed/);
  t.deepEqual(diff(installed, await tree(root)), [], 'a second install changes nothing');

  const u1 = await sh(UNINSTALL, ['--root', root]);
  t.is(u1.code, 0, oneLine(u1));
  t.deepEqual(diff(before, await tree(root)), [], 'uninstall leaves the root as it was');
  const u2 = await sh(UNINSTALL, ['--root', root]);
  t.is(u2.code, 0, oneLine(u2));
  t.regex(u2.stderr, /nothing to do/);
});

test.serial('the admin\'s edits survive: an existing roamfs.env is never replaced, an edited one is kept by uninstall (removed by --purge)', async (t) => {
  const root = await fakeRoot(t);
  const before = await tree(root);
  t.is((await sh(INSTALL, ['--root', root, '--no-build', '--repo', '/srv/a'])).code, 0);
  const envFile = path.join(root, 'etc/roamfs/roamfs.env');
  await fsp.writeFile(envFile, 'ROAMFS_REPO=/srv/b\nROAMFS_SNAPSHOT_INTERVAL=30s\n');
  const r = await sh(INSTALL, ['--root', root, '--no-build', '--repo', '/srv/a']);
  t.is(r.code, 0, oneLine(r));
  t.regex(r.stderr, /--repo \/srv\/a not applied/);
  t.is(await fsp.readFile(envFile, 'utf8'), 'ROAMFS_REPO=/srv/b\nROAMFS_SNAPSHOT_INTERVAL=30s\n');
  // the drop-in follows the config
  t.regex(await fsp.readFile(path.join(root, 'etc/systemd/system/roamfs@.service.d/10-repository.conf'), 'utf8'), /^RequiresMountsFor=\/srv\/b$/m);
  const u = await sh(UNINSTALL, ['--root', root]);
  t.is(u.code, 0, oneLine(u));
  t.regex(u.stderr, /kept \/etc\/roamfs\/roamfs.env/);
  t.true(await exists(envFile));
  t.false(await exists(path.join(root, 'usr/local/bin/roamfs')));
  const p = await sh(UNINSTALL, ['--root', root, '--purge']);
  t.is(p.code, 0, oneLine(p));
  t.deepEqual(diff(before, await tree(root)), []);
});

test.serial('install refuses to replace a file it did not put there unless --force, which keeps a backup that uninstall puts back', async (t) => {
  const root = await fakeRoot(t);
  await fsp.mkdir(path.join(root, 'usr/local/bin'), { recursive: true });
  await fsp.writeFile(path.join(root, 'usr/local/bin/roamfs'), '#!/bin/sh\necho someone else\n', { mode: 0o755 });
  const before = await tree(root);
  const r = await sh(INSTALL, ['--root', root, '--no-build']);
  t.not(r.code, 0);
  t.regex(r.stderr, /\/usr\/local\/bin\/roamfs exists and is not the one this install put there; --force/);
  const f = await sh(INSTALL, ['--root', root, '--no-build', '--force']);
  t.is(f.code, 0, oneLine(f));
  t.regex(await fsp.readFile(path.join(root, 'usr/local/bin/roamfs'), 'utf8'), /exec \/\S+\/bin\/roamfs "\$@"/);
  t.is(await fsp.readFile(path.join(root, 'usr/local/bin/roamfs.roamfs-backup'), 'utf8'), '#!/bin/sh\necho someone else\n');
  t.is((await sh(INSTALL, ['--root', root, '--no-build'])).code, 0, 'once installed, it is ours: no --force needed');
  const u = await sh(UNINSTALL, ['--root', root, '--purge']);
  t.is(u.code, 0, oneLine(u));
  t.deepEqual(diff(before, await tree(root)), [], 'the original is back');
});

test.serial('uninstall keeps the PAM hook while a PAM file still includes it', async (t) => {
  const root = await fakeRoot(t);
  t.is((await sh(INSTALL, ['--root', root, '--no-build', '--enable-pam'])).code, 0);
  // an admin also included it by hand in a service
  await fsp.writeFile(path.join(root, 'etc/pam.d/xrdp-sesman'), '@include common-auth\nsession include roamfs\n');
  const u = await sh(UNINSTALL, ['--root', root]);
  t.is(u.code, 0, oneLine(u));
  t.regex(u.stderr, /PAM files still use roamfs: .*xrdp-sesman/);
  t.notRegex(await fsp.readFile(path.join(root, 'etc/pam.d/common-session'), 'utf8'), /roamfs/, 'pam-auth-update removed it from common-session');
  t.true(await exists(path.join(root, 'etc/pam.d/roamfs')), 'kept: xrdp-sesman would fail on a missing include');
  t.true(await exists(path.join(root, 'usr/local/lib/roamfs/pam_roamfs.sh')));
  t.false(await exists(path.join(root, 'sbin/mount.fuse.roamfs')), 'the rest is gone');
  await fsp.rm(path.join(root, 'etc/pam.d/xrdp-sesman'));
  const u2 = await sh(UNINSTALL, ['--root', root]);
  t.is(u2.code, 0, oneLine(u2));
  t.false(await exists(path.join(root, 'etc/pam.d/roamfs')));
  t.false(await exists(path.join(root, 'usr/local/lib/roamfs')));
});
