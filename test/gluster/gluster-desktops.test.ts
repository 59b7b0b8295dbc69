/**
 * One user on two desktops for real: two roamfs daemons (separate caches, separate mounts) of
 * one profile whose repository lives on a GlusterFS volume, each desktop reaching it through its
 * own GlusterFS FUSE client. Everything goes through the CLI, as a desktop's login would.
 */
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { sharedGluster } from '../helpers/gluster.js';
import { ROAMFS_BIN, cliEnv, homeAt, runOk, type MountedHome } from '../helpers/mounted-home.js';

const gluster = sharedGluster(test, { mounts: 2 });
let seq = 0;

/** A repository on the volume (made through mount A) holding alice's small profile. */
async function sharedRepo(t: ExecutionContext): Promise<string> {
  const name = `desktops-${++seq}`;
  const src = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-desktops-src-'));
  t.teardown(() => fsp.rm(src, { recursive: true, force: true }));
  await fsp.writeFile(path.join(src, 'notes.txt'), 'notes v1\n');
  await fsp.writeFile(path.join(src, 'shared.txt'), 'shared v1\n');
  await fsp.writeFile(path.join(src, 'del.txt'), 'to be deleted on one desktop and edited on the other\n');
  await fsp.mkdir(path.join(src, 'docs'));
  await fsp.writeFile(path.join(src, 'docs', 'report.odt'), randomBytes(300_000));
  const env = cliEnv(path.join(src, '.run'));
  const repo = path.join(gluster().mounts[0]!, name);
  await runOk(process.execPath, [ROAMFS_BIN, 'init', repo], { env });
  await runOk(process.execPath, [ROAMFS_BIN, 'import', repo, 'alice', src], { env });
  return name;
}

/** A desktop: its own cache and mountpoint; the repository through GlusterFS mount `via`. */
async function desktop(t: ExecutionContext, via: string, repoName: string, label: string, args: string[]): Promise<MountedHome> {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), `roamfs-desk-${label}-`));
  const h = homeAt(base, 'alice', ['--prefetch-delay', 'off', ...args]);
  h.repo = path.join(via, repoName);
  t.teardown(async () => {
    const note = await h.teardown();
    if (note) t.log(note);
  });
  await fsp.mkdir(h.mountpoint);
  return h;
}

async function until<T>(what: string, fn: () => Promise<T | undefined | null | false>, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Snapshot now and wait until that snapshot is in the repository. */
async function commitNow(h: MountedHome): Promise<void> {
  await h.cliOk('snapshot', h.mountpoint);
  await until(`${h.mountpoint} to commit`, async () => {
    const s = await h.status();
    return s.pendingSnapshots === 0 && !s.dirty;
  });
}

async function exportOf(t: ExecutionContext, h: MountedHome): Promise<string> {
  const out = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-desktops-export-'));
  t.teardown(() => fsp.rm(out, { recursive: true, force: true }));
  await fsp.rm(out, { recursive: true });
  await h.cliOk('export', h.repo, 'alice', out);
  return out;
}

test.serial('both desktops edit: different files merge, the same file keeps both versions (a conflict copy), an edit beats a delete', async (t) => {
  const repo = await sharedRepo(t);
  const g = gluster();
  const args = ['--snapshot-interval', 'off', '--idle', '300ms'];
  const a = await desktop(t, g.mounts[0]!, repo, 'a', args);
  const b = await desktop(t, g.mounts[1]!, repo, 'b', args);
  await a.mount();
  await b.mount();
  t.is((await a.status()).lease && ((await a.status()).lease as { policy: string }).policy, 'concurrent');

  const aShared = Buffer.concat([Buffer.from('A wrote this\n'), randomBytes(200_000)]);
  const bShared = Buffer.concat([Buffer.from('B wrote this\n'), randomBytes(150_000)]);
  await fsp.writeFile(a.p('from-a.txt'), 'only on A\n');
  await fsp.writeFile(a.p('shared.txt'), aShared);
  await fsp.unlink(a.p('del.txt'));
  await fsp.writeFile(b.p('from-b.txt'), 'only on B\n');
  await fsp.writeFile(b.p('shared.txt'), bShared);
  await fsp.appendFile(b.p('del.txt'), 'edited on B\n');
  await commitNow(a);
  await commitNow(b); // the later commit: merged onto A's

  t.is((await a.logout()).code, 0);
  t.is((await b.logout()).code, 0);
  const out = await exportOf(t, a);
  t.is(await fsp.readFile(path.join(out, 'from-a.txt'), 'utf8'), 'only on A\n');
  t.is(await fsp.readFile(path.join(out, 'from-b.txt'), 'utf8'), 'only on B\n');
  t.true((await fsp.readFile(path.join(out, 'shared.txt'))).equals(bShared), 'the later commit takes the path');
  const copies = (await fsp.readdir(out)).filter((n) => /^shared \(conflict .+ \d{4}-\d\d-\d\d \d{6}\)\.txt$/.test(n));
  t.is(copies.length, 1, `one conflict copy: ${(await fsp.readdir(out)).join(', ')}`);
  t.true((await fsp.readFile(path.join(out, copies[0]!))).equals(aShared), "the conflict copy is A's version, byte for byte");
  t.is(await fsp.readFile(path.join(out, 'del.txt'), 'utf8'), 'to be deleted on one desktop and edited on the other\nedited on B\n', 'the edit survived the delete');
  await runOk(process.execPath, [ROAMFS_BIN, 'fsck', a.repo], { env: a.env });
});

test.serial("a running desktop picks up the other's commits at its next snapshot, through its mount", async (t) => {
  const repo = await sharedRepo(t);
  const g = gluster();
  const args = ['--snapshot-interval', '1s', '--idle', '300ms'];
  const a = await desktop(t, g.mounts[0]!, repo, 'a', args);
  const b = await desktop(t, g.mounts[1]!, repo, 'b', args);
  await a.mount();
  await b.mount();
  t.is(await fsp.readFile(b.p('notes.txt'), 'utf8'), 'notes v1\n'); // B has it cached (kernel and daemon)
  const t0 = Date.now();
  await fsp.writeFile(a.p('notes.txt'), 'notes v2, written on A\n');
  await fsp.writeFile(a.p('docs', 'new-on-a.txt'), 'new\n');
  await until('B to show A\'s edit', async () => (await fsp.readFile(b.p('notes.txt'), 'utf8')) === 'notes v2, written on A\n');
  t.is(await fsp.readFile(b.p('docs', 'new-on-a.txt'), 'utf8'), 'new\n');
  t.log(`A's edit visible on B after ${Date.now() - t0} ms (snapshot 1 s, idle 300 ms, then B's next snapshot tick)`);
  const s = await b.status();
  t.true((s.pickedUp as number) >= 1);
  t.deepEqual(((s.lease as { others: Array<{ mode: string }> }).others ?? []).map((o) => o.mode), ['rw'], 'B sees A in its status');
  // B keeps working on top: its commit lands without a conflict copy.
  await fsp.appendFile(b.p('notes.txt'), 'and a line from B\n');
  await until('A to show B\'s line', async () => (await fsp.readFile(a.p('notes.txt'), 'utf8')).endsWith('and a line from B\n'));
  t.is((await a.logout()).code, 0);
  t.is((await b.logout()).code, 0);
  const out = await exportOf(t, a);
  t.deepEqual((await fsp.readdir(out)).filter((n) => n.includes('conflict')), []);
});

test.serial('exclusive: a second login fails naming the desktop that holds the profile; read-only is allowed; after logout the second login works', async (t) => {
  const repo = await sharedRepo(t);
  const g = gluster();
  const args = ['--sessions', 'exclusive', '--lease-ttl', '3s', '--lease-wait', '2s', '--snapshot-interval', 'off'];
  const a = await desktop(t, g.mounts[0]!, repo, 'a', args);
  const b = await desktop(t, g.mounts[1]!, repo, 'b', args);
  const r = await desktop(t, g.mounts[1]!, repo, 'ro', ['--read-only']);
  await a.mount();
  const holder = await a.status();
  const refused = await b.cli('mount', b.repo, 'alice', b.mountpoint, '--cache', b.cache, '--prefetch-delay', 'off', ...args);
  t.not(refused.code, 0);
  t.regex(refused.stderr, new RegExp(`^roamfs: the profile of alice is in use on host ${os.hostname()} \\(pid ${holder.pid}, session [0-9a-f]+, exclusive lease generation 1`));
  t.is(refused.stderr.trim().split('\n').length, 1, 'one line');
  t.false(await b.isMounted());

  await r.mount();
  t.is(await fsp.readFile(r.p('notes.txt'), 'utf8'), 'notes v1\n');
  t.is(((await t.throwsAsync(fsp.writeFile(r.p('x'), 'no'))) as NodeJS.ErrnoException).code, 'EROFS');
  t.like((await r.status()).lease as object, { mode: 'ro', state: 'held' });

  await fsp.writeFile(a.p('notes.txt'), 'notes from A\n');
  t.is((await a.logout()).code, 0);
  await b.mount();
  t.like((await b.status()).lease as object, { policy: 'exclusive', generation: 2, state: 'held' });
  t.is(await fsp.readFile(b.p('notes.txt'), 'utf8'), 'notes from A\n');
});

test.serial('a desktop that loses the repository keeps working, says so, keeps its changes in the local log at logout, and commits them at its next login', async (t) => {
  const repo = await sharedRepo(t);
  const g = gluster();
  const mc = await g.addMount('lost');
  const args = ['--snapshot-interval', '1s', '--idle', '300ms', '--flush-timeout', '2s'];
  const a = await desktop(t, g.mounts[0]!, repo, 'a', args);
  const b = await desktop(t, mc, repo, 'b', args);
  await a.mount();
  await b.mount();
  // B's GlusterFS client dies: its repository path answers ENOTCONN from now on.
  const clientPid = Number((await fsp.readFile(path.join(g.root, 'run', 'client-lost.pid'), 'utf8')).trim());
  process.kill(clientPid, 'SIGKILL');
  t.teardown(() => g.unmount(mc).catch(() => {}));
  await fsp.writeFile(b.p('offline.txt'), 'written while the repository was gone\n');
  await fsp.writeFile(a.p('online.txt'), 'written on A meanwhile\n');
  await commitNow(a);
  const st = await until('B to report the repository unreachable', async () => {
    const s = await b.status();
    return s.repositoryReachable === false && s.pendingSnapshots > 0 ? s : null;
  });
  t.truthy(st.lastError);
  t.is(await fsp.readFile(b.p('offline.txt'), 'utf8'), 'written while the repository was gone\n', 'the home stays usable');
  const lo = await b.logout();
  t.not(lo.code, 0);
  t.regex(lo.stderr, /^roamfs: the repository could not be reached: \d+ snapshot\(s\) stay in the local log at .+ and will be committed at the next login on this machine/);
  t.false(await b.isMounted());

  // B comes back (a new GlusterFS client), logs in with the same cache: recovery commits it.
  const md = await g.addMount('back');
  t.teardown(() => g.unmount(md).catch(() => {}));
  b.repo = path.join(md, repo);
  await b.mount();
  t.is(await fsp.readFile(b.p('offline.txt'), 'utf8'), 'written while the repository was gone\n');
  await until('B to commit what it kept', async () => (await b.status()).pendingSnapshots === 0);
  t.is((await b.logout()).code, 0);
  t.is((await a.logout()).code, 0);
  const out = await exportOf(t, a);
  t.is(await fsp.readFile(path.join(out, 'offline.txt'), 'utf8'), 'written while the repository was gone\n');
  t.is(await fsp.readFile(path.join(out, 'online.txt'), 'utf8'), 'written on A meanwhile\n');
});
