/**
 * Real FUSE mounts of a PassthroughVfs, served by a child process (test/helpers/child-mount.ts)
 * so that this process can drive the mountpoint with async fs calls and child processes.
 * Every test mounts its own temp dirs and unmounts in t.teardown, falling back to
 * `fusermount -u -z` (and, as root, `umount -l`).
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { loadFuseNative } from '../../mount/fuse/binding.js';
import type { PassthroughStats } from '../helpers/passthrough-vfs.js';

const execFileP = promisify(execFile);
const CHILD = fileURLToPath(new URL('../helpers/child-mount.js', import.meta.url));

async function fuseUsable(): Promise<string | undefined> {
  try {
    await fs.access('/dev/fuse', fsConstants.R_OK | fsConstants.W_OK);
  } catch {
    return '/dev/fuse is not accessible';
  }
  try {
    loadFuseNative();
  } catch (err) {
    return `patched fuse-native not loadable: ${String(err)}`;
  }
  if (process.getuid?.() !== 0) {
    try {
      await execFileP('fusermount', ['-V']);
    } catch {
      return 'not root and no fusermount';
    }
  }
  return undefined;
}

const unusable = await fuseUsable();
const fuseTest = test;
if (unusable) {
  test('FUSE mount tests can run here', (t) => t.fail(unusable));
}

interface ChildStats extends PassthroughStats {
  counters: Record<string, { count: number; errors: number; totalMs: number }>;
  maxInFlightOps: number;
  options: string[];
}

interface Mounted {
  mnt: string;
  backing: string;
  stats(): Promise<ChildStats>;
  /** Ask the child to invalidate kernel caches for a path; resolves with its answer line. */
  invalidate(p: string): Promise<string>;
}

async function isMounted(mnt: string): Promise<boolean> {
  const info = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return info.split('\n').some((line) => line.split(' ')[4] === mnt);
}

async function startMount(t: ExecutionContext, extra: string[] = []): Promise<Mounted> {
  const base = await fs.mkdtemp(path.join(os.tmpdir(), 'roamfs-fuse-test-'));
  const mnt = path.join(base, 'mnt');
  const backing = path.join(base, 'backing');
  await fs.mkdir(mnt);
  await fs.mkdir(backing);

  const child: ChildProcessWithoutNullStreams = spawn(
    process.execPath,
    [CHILD, '--mnt', mnt, '--backing', backing, ...extra],
    { stdio: ['pipe', 'pipe', 'pipe'] },
  );
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => (stderr += d));
  const exited = once(child, 'exit');
  const waiters: { prefix: string; resolve: (line: string) => void }[] = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const i = waiters.findIndex((w) => line.startsWith(w.prefix));
    if (i >= 0) waiters.splice(i, 1)[0]!.resolve(line);
  });
  const nextLine = (prefix: string, ms: number) =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`child-mount: no "${prefix}" within ${ms} ms\n${stderr}`)), ms);
      waiters.push({
        prefix,
        resolve: (line) => {
          clearTimeout(timer);
          resolve(line);
        },
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`child-mount exited (code ${String(child.exitCode)}) before "${prefix}"\n${stderr}`));
      });
    });

  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      const res = await Promise.race([
        exited.then(() => 'exited'),
        new Promise((r) => (timer = setTimeout(r, 10_000, 'timeout'))),
      ]);
      clearTimeout(timer);
      if (res === 'timeout') {
        child.kill('SIGKILL');
        await exited;
      }
    }
    if (await isMounted(mnt)) {
      await execFileP('fusermount', ['-u', '-z', mnt]).catch(() => execFileP('umount', ['-l', mnt]).catch(() => undefined));
    }
    if (await isMounted(mnt)) {
      t.log(`still mounted: ${mnt}`);
      await fs.rm(backing, { recursive: true, force: true });
      return;
    }
    await fs.rm(base, { recursive: true, force: true });
    if (stderr.trim()) t.log(`child-mount stderr:\n${stderr}`);
  });

  await nextLine('ready', 20_000);
  t.true(await isMounted(mnt), 'mounted');

  return {
    mnt,
    backing,
    async stats() {
      const line = nextLine('stats ', 10_000);
      child.stdin.write('stats\n');
      return JSON.parse((await line).slice('stats '.length)) as ChildStats;
    },
    async invalidate(p: string) {
      const line = nextLine(`invalidated ${p}`, 10_000);
      child.stdin.write(`invalidate ${p}\n`);
      return line;
    },
  };
}

async function statTimes(file: string): Promise<string> {
  const { stdout } = await execFileP('stat', ['-c', '%x|%y', file], { env: { ...process.env, TZ: 'UTC' } });
  return stdout.trim();
}

async function touch(...args: string[]): Promise<void> {
  await execFileP('touch', args, { env: { ...process.env, TZ: 'UTC' } });
}

fuseTest('utimens: ns precision, atime-only and mtime-only changes reach the Vfs', async (t) => {
  const m = await startMount(t);
  const f = path.join(m.mnt, 'times.txt');
  const b = path.join(m.backing, 'times.txt');
  await fs.writeFile(f, 'x');

  await touch('-d', '2001-02-03 04:05:06.123456789', f);
  t.is(await statTimes(f), '2001-02-03 04:05:06.123456789 +0000|2001-02-03 04:05:06.123456789 +0000');

  await touch('-a', '-d', '2010-01-01 00:00:00.111111111', f);
  t.is(await statTimes(f), '2010-01-01 00:00:00.111111111 +0000|2001-02-03 04:05:06.123456789 +0000');

  await touch('-m', '-d', '2011-01-01 00:00:00.222222222', f);
  t.is(await statTimes(f), '2010-01-01 00:00:00.111111111 +0000|2011-01-01 00:00:00.222222222 +0000');

  // The Vfs (backing file) got exactly these times, and getattr returns nanoseconds.
  const st = await fs.stat(b, { bigint: true });
  t.is(st.atimeNs, 1_262_304_000_111_111_111n);
  t.is(st.mtimeNs, 1_293_840_000_222_222_222n);
  const viaMount = await fs.stat(f, { bigint: true });
  t.is(viaMount.atimeNs, st.atimeNs);
  t.is(viaMount.mtimeNs, st.mtimeNs);

  // UTIME_NOW for atime only: mtime stays.
  const before = BigInt(Date.now() - 1000) * 1_000_000n;
  await touch('-a', f);
  const after = await fs.stat(b, { bigint: true });
  t.true(after.atimeNs >= before, 'atime set to now');
  t.is(after.mtimeNs, 1_293_840_000_222_222_222n);
});

fuseTest('writes arrive as 128 KiB requests (big_writes, max_write=131072)', async (t) => {
  const m = await startMount(t);
  await execFileP('dd', ['if=/dev/zero', `of=${path.join(m.mnt, 'big')}`, 'bs=1M', 'count=8', 'conv=fsync']);
  const s = await m.stats();
  t.log('write sizes', s.writeSizes);
  t.true(s.options.includes('big_writes') && s.options.includes('max_write=131072'));
  const sizes = Object.entries(s.writeSizes).map(([k, n]) => [Number(k), n] as const);
  const total = sizes.reduce((acc, [k, n]) => acc + k * n, 0);
  t.is(total, 8 * 1024 * 1024);
  t.is(Math.max(...sizes.map(([k]) => k)), 131072);
  t.true((s.writeSizes['131072'] ?? 0) * 131072 >= 0.9 * total, 'nearly all bytes in 128 KiB requests');
  t.is((await fs.stat(path.join(m.backing, 'big'))).size, 8 * 1024 * 1024);
});

fuseTest('userXattrsOnly: getxattr outside user.* (ls -l, every write) never reaches the handlers; user.* still does', async (t) => {
  const count = async (m: Mounted) => (await m.stats()).counters['getxattr']?.count ?? 0;
  const work = async (m: Mounted) => {
    await execFileP('dd', ['if=/dev/zero', `of=${path.join(m.mnt, 'f')}`, 'bs=64k', 'count=16']); // security.capability per write
    await execFileP('ls', ['-la', m.mnt]); // ACL and SELinux names per entry
    await t.throwsAsync(execFileP('getfattr', ['-n', 'security.selinux', path.join(m.mnt, 'f')]), { message: /No such attribute/ });
  };
  const plain = await startMount(t);
  await work(plain);
  const asked = await count(plain);
  t.true(asked >= 16, `without the option the handlers see the kernel's getxattr calls (${asked})`);

  const m = await startMount(t, ['--user-xattrs-only']);
  await work(m);
  t.is(await count(m), 0, 'none reached the handlers');
  await execFileP('setfattr', ['-n', 'user.colour', '-v', 'blue', path.join(m.mnt, 'f')]);
  const { stdout } = await execFileP('getfattr', ['--only-values', '-n', 'user.colour', path.join(m.mnt, 'f')]);
  t.is(stdout, 'blue');
  t.true((await count(m)) >= 1, 'a user.* name goes to the handler (getfattr asks for the size, then the value)');
});

fuseTest('control: without big_writes the kernel sends 4 KiB writes', async (t) => {
  const m = await startMount(t, ['--no-big-writes']);
  await execFileP('dd', ['if=/dev/zero', `of=${path.join(m.mnt, 'big')}`, 'bs=1M', 'count=1', 'conv=fsync']);
  const s = await m.stats();
  t.false(s.options.includes('big_writes'));
  t.is(Math.max(...Object.keys(s.writeSizes).map(Number)), 4096);
});

fuseTest('an operation slower than 15 s does not fail (no default timeout)', async (t) => {
  t.timeout(90_000);
  const m = await startMount(t, ['--slow-prefix', 'slow', '--slow-ms', '16000']);
  await fs.writeFile(path.join(m.backing, 'slow.txt'), 'patience');
  const start = Date.now();
  const st = await fs.stat(path.join(m.mnt, 'slow.txt'));
  const elapsed = Date.now() - start;
  t.is(st.size, 8);
  t.true(elapsed >= 15_500, `took ${elapsed} ms`);
});

fuseTest('a configured per-op timeout still answers ETIMEDOUT (the code path is opt-in)', async (t) => {
  const m = await startMount(t, ['--slow-prefix', 'slow', '--slow-ms', '2500', '--op-timeout-ms', '1000']);
  await fs.writeFile(path.join(m.backing, 'slow.txt'), 'x');
  const start = Date.now();
  const err = await t.throwsAsync(fs.stat(path.join(m.mnt, 'slow.txt')));
  t.is((err as NodeJS.ErrnoException).code, 'ETIMEDOUT');
  t.true(Date.now() - start < 2400);
});

fuseTest('requests are served concurrently (libfuse multi-threaded loop)', async (t) => {
  const m = await startMount(t, ['--slow-prefix', 'slow', '--slow-ms', '1000']);
  // Different parent directories: without FUSE_PARALLEL_DIROPS (protocol 7.25; libfuse 2.9
  // speaks 7.19) the kernel serializes lookups within one directory itself.
  const dirs = ['d1', 'd2', 'd3', 'd4'];
  for (const d of dirs) {
    await fs.mkdir(path.join(m.backing, d));
    await fs.writeFile(path.join(m.backing, d, 'slow'), d);
  }
  await Promise.all(dirs.map((d) => fs.stat(path.join(m.mnt, d))));
  // Separate processes, not fs.stat: this worker's libuv pool (4 threads) is shared with the
  // other tests running concurrently, e.g. the one blocked for 16 s.
  const start = Date.now();
  await Promise.all(dirs.map((d) => execFileP('stat', [path.join(m.mnt, d, 'slow')])));
  const elapsed = Date.now() - start;
  const s = await m.stats();
  t.log(`4 x 1 s lookups in 4 directories took ${elapsed} ms; max in flight ${s.maxInFlight}`);
  t.true(s.maxInFlight >= 2, `max in flight ${s.maxInFlight}`);
  t.true(elapsed < 3500, `took ${elapsed} ms`);
});

fuseTest('an unlinked open file stays usable and never reaches the Vfs as .fuse_hidden', async (t) => {
  const m = await startMount(t);
  const f = path.join(m.mnt, 'tmpfile');
  const h = await fs.open(f, 'w+');
  try {
    await h.write('0123456789', 0);
    await fs.unlink(f);
    await t.throwsAsync(fs.stat(f), { code: 'ENOENT' });
    t.deepEqual(await fs.readdir(m.mnt), []);
    t.deepEqual(await fs.readdir(m.backing), [], 'unlinked in the Vfs at once, no .fuse_hidden file');
    t.is((await h.stat()).size, 10);
    await h.truncate(4);
    await h.chmod(0o600);
    await h.utimes(1, 2);
    await h.write('xy', 4);
    await h.sync();
    const buf = Buffer.alloc(10);
    const { bytesRead } = await h.read(buf, 0, 10, 0);
    t.is(buf.subarray(0, bytesRead).toString(), '0123xy');
    t.is((await h.stat()).size, 6);
  } finally {
    await h.close();
  }
  t.deepEqual(await fs.readdir(m.backing), []);

  // Replacing an open file by rename: the old handle keeps the old content.
  await fs.writeFile(path.join(m.mnt, 'target'), 'old');
  const h2 = await fs.open(path.join(m.mnt, 'target'), 'r');
  try {
    await fs.writeFile(path.join(m.mnt, 'new'), 'new!');
    await fs.rename(path.join(m.mnt, 'new'), path.join(m.mnt, 'target'));
    t.is((await h2.readFile()).toString(), 'old');
    t.is((await h2.stat()).size, 3);
    t.deepEqual(await fs.readdir(m.backing), ['target']);
  } finally {
    await h2.close();
  }
  t.is(await fs.readFile(path.join(m.backing, 'target'), 'utf8'), 'new!');
  const s = await m.stats();
  t.false(JSON.stringify(s).includes('fuse_hidden'));
});

fuseTest('namespace operations and errno values', async (t) => {
  const m = await startMount(t);
  const p = (...s: string[]) => path.join(m.mnt, ...s);
  await fs.mkdir(p('d'));
  await fs.writeFile(p('d', 'f'), 'data');
  await fs.symlink('f', p('d', 'l'));
  t.is(await fs.readlink(p('d', 'l')), 'f');
  await fs.rename(p('d', 'f'), p('d', 'g'));
  t.deepEqual((await fs.readdir(p('d'))).sort(), ['g', 'l']);
  t.is(await fs.readFile(p('d', 'g'), 'utf8'), 'data');
  await fs.chmod(p('d', 'g'), 0o600);
  t.is((await fs.stat(p('d', 'g'))).mode & 0o7777, 0o600);
  await t.throwsAsync(fs.stat(p('nope')), { code: 'ENOENT' });
  await t.throwsAsync(fs.mkdir(p('d')), { code: 'EEXIST' });
  await t.throwsAsync(fs.rmdir(p('d')), { code: 'ENOTEMPTY' });
  const sfs = await fs.statfs(m.mnt);
  t.true(sfs.blocks > 0);
  const { stdout } = await execFileP('findmnt', ['-n', '-o', 'FSTYPE,SOURCE', m.mnt]).catch(() => ({ stdout: '' }));
  if (stdout) t.is(stdout.trim().split(/\s+/).join(' '), 'fuse.roamfs roamfs');
});

fuseTest('invalidate() makes the kernel drop cached entries and attributes', async (t) => {
  const m = await startMount(t, ['--opt', 'attr_timeout=3600', '--opt', 'entry_timeout=3600']);
  await fs.mkdir(path.join(m.backing, 'd'));
  await fs.writeFile(path.join(m.backing, 'top'), '1');
  await fs.writeFile(path.join(m.backing, 'd', 'deep'), '1');
  t.is((await fs.stat(path.join(m.mnt, 'top'))).size, 1);
  t.is((await fs.stat(path.join(m.mnt, 'd', 'deep'))).size, 1);
  // Changed behind the kernel's back: the cached attributes are stale for an hour.
  await fs.writeFile(path.join(m.backing, 'top'), '22');
  await fs.writeFile(path.join(m.backing, 'd', 'deep'), '333');
  await fs.writeFile(path.join(m.backing, 'new'), 'x');
  t.is((await fs.stat(path.join(m.mnt, 'top'))).size, 1, 'stale before invalidate');
  t.is((await fs.stat(path.join(m.mnt, 'd', 'deep'))).size, 1, 'stale before invalidate');

  t.is(await m.invalidate('/top'), 'invalidated /top');
  t.is((await fs.stat(path.join(m.mnt, 'top'))).size, 2);
  t.is(await m.invalidate('/d/deep'), 'invalidated /d/deep'); // coarse: drops the /d subtree
  t.is((await fs.stat(path.join(m.mnt, 'd', 'deep'))).size, 3);
  t.is(await m.invalidate('/'), 'invalidated /');
  t.is(await m.invalidate('/not-cached'), 'invalidated /not-cached');
  t.true((await fs.readdir(m.mnt)).includes('new'));
});
