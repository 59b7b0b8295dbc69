import test from 'ava';
import { constants } from 'node:os';

import { buildHandlers, OpCounters, toFuseStatfs, toTimeSpec } from '../../mount/fuse/adapter.js';
import type { AdapterOptions } from '../../mount/fuse/adapter.js';
import { UTIME_NOW, UTIME_OMIT } from '../../mount/fuse/binding.js';
import type { FuseOps, FuseStat } from '../../mount/fuse/binding.js';
import { mapError, negErrno } from '../../mount/fuse/errno.js';
import { RoamfsError } from '../../src/core/errors.js';
import { FsError } from '../../src/vfs/types.js';
import type { Attr, Errno, TimeSpec, Vfs } from '../../src/vfs/types.js';

const E = constants.errno;

const VFS_METHODS = [
  'getattr', 'fgetattr', 'readdir', 'readlink', 'open', 'create', 'read', 'write', 'flush', 'fsync',
  'release', 'truncate', 'ftruncate', 'mkdir', 'unlink', 'rmdir', 'rename', 'symlink', 'link', 'chmod',
  'chown', 'utimens', 'statfs', 'setxattr', 'getxattr', 'listxattr', 'removexattr',
] as const satisfies readonly (keyof Vfs)[];

/** A Vfs whose every method fails with ENOSYS unless overridden. */
function fakeVfs(over: Partial<Vfs> = {}): Vfs {
  const base: Record<string, unknown> = {};
  for (const m of VFS_METHODS) base[m] = () => Promise.reject(new FsError('ENOSYS'));
  return Object.assign(base, over) as unknown as Vfs;
}

const attr = (over: Partial<Attr> = {}): Attr => ({
  ino: 42,
  mode: 0o100644,
  nlink: 1,
  uid: 1000,
  gid: 1000,
  size: 1025,
  atimeNs: 1_700_000_000_123_456_789n,
  mtimeNs: 1_600_000_000_000_000_001n,
  ctimeNs: 1_650_000_000_999_999_999n,
  ...over,
});

interface Harness {
  ops: FuseOps;
  logs: string[];
  activity: string[];
  counters: OpCounters;
}

function harness(vfs: Vfs, opts: AdapterOptions = {}): Harness {
  const logs: string[] = [];
  const activity: string[] = [];
  const counters = new OpCounters();
  const ops = buildHandlers(vfs, {
    log: (line) => logs.push(line),
    onActivity: (op, phase) => activity.push(`${op}:${phase}`),
    counters,
    ...opts,
  });
  return { ops, logs, activity, counters };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

/**
 * Call a handler with a recording callback appended; resolves with the callback's arguments
 * once it was called, after checking (a few event-loop turns later) that it was called once.
 */
async function call(fn: ((...args: never[]) => void) | undefined, ...args: unknown[]): Promise<unknown[]> {
  if (!fn) throw new Error('handler missing');
  const calls: unknown[][] = [];
  let resolve!: () => void;
  const first = new Promise<void>((r) => (resolve = r));
  (fn as unknown as (...a: unknown[]) => void)(...args, (...cbArgs: unknown[]) => {
    calls.push(cbArgs);
    resolve();
  });
  await Promise.race([first, new Promise((_, rej) => setTimeout(() => rej(new Error('callback never called')), 2000))]);
  for (let i = 0; i < 5; i++) await tick();
  if (calls.length !== 1) throw new Error(`callback called ${calls.length} times`);
  return calls[0]!;
}

// --- errno mapping ---

test('every Vfs errno name maps to its os.constants.errno value', (t) => {
  const names: Errno[] = [
    'ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOTEMPTY', 'EACCES', 'EPERM', 'EINVAL', 'EIO', 'EDQUOT',
    'ENOSPC', 'EXDEV', 'ENAMETOOLONG', 'ENOTSUP', 'ENODATA', 'EBADF', 'ELOOP', 'EMLINK', 'ERANGE',
    'EROFS', 'EFBIG', 'ENOSYS', 'EBUSY',
  ];
  for (const name of names) {
    const n = (E as Record<string, number>)[name];
    t.is(typeof n, 'number', name);
    t.is(negErrno(name), -n!, name);
    const m = mapError(new FsError(name));
    t.is(m.errno, -n!, name);
    t.is(m.log, name === 'EIO', name);
  }
  t.is(negErrno('ENOENT'), -2);
  t.is(negErrno('ENOTAREALERRNO'), -E.EIO);
});

test('RoamfsError codes map to errno; EIO-class codes are logged', (t) => {
  t.deepEqual(mapError(new RoamfsError('NO_SPACE', 'x')), { errno: -E.ENOSPC, name: 'ENOSPC', log: false });
  t.deepEqual(mapError(new RoamfsError('UNSUPPORTED', 'x')), { errno: -E.ENOTSUP, name: 'ENOTSUP', log: false });
  t.deepEqual(mapError(new RoamfsError('CORRUPT_OBJECT', 'x')), { errno: -E.EIO, name: 'EIO', log: true });
  t.deepEqual(mapError(new RoamfsError('IO', 'x')), { errno: -E.EIO, name: 'EIO', log: true });
});

test('non-FsError errors map to EIO and are logged', (t) => {
  t.deepEqual(mapError(new TypeError('boom')), { errno: -E.EIO, name: 'EIO', log: true });
  t.deepEqual(mapError('a string'), { errno: -E.EIO, name: 'EIO', log: true });
  t.deepEqual(mapError(Object.assign(new Error('raw fs error'), { code: 'ENOENT' })), {
    errno: -E.EIO,
    name: 'EIO',
    log: true,
  });
});

// --- handlers: errors and exactly-once ---

test('FsError from the Vfs is answered with its negative errno, once, without logging', async (t) => {
  const h = harness(fakeVfs({ getattr: async () => Promise.reject(new FsError('ENOENT')) }));
  t.deepEqual(await call(h.ops.getattr, '/missing'), [-E.ENOENT]);
  t.deepEqual(h.logs, []);
});

test('an unknown error becomes EIO plus one log line naming op and path', async (t) => {
  const h = harness(fakeVfs({ unlink: async () => Promise.reject(new TypeError('kaputt')) }));
  t.deepEqual(await call(h.ops.unlink, '/a/b'), [-E.EIO]);
  t.is(h.logs.length, 1);
  t.regex(h.logs[0]!, /unlink \/a\/b: EIO: kaputt/);
});

test('a Vfs method that throws synchronously is answered with EIO once', async (t) => {
  const h = harness(
    fakeVfs({
      rmdir: () => {
        throw new Error('sync throw');
      },
    }),
  );
  t.deepEqual(await call(h.ops.rmdir, '/d'), [-E.EIO]);
  t.is(h.logs.length, 1);
});

test('a synchronously thrown FsError keeps its errno', async (t) => {
  const h = harness(
    fakeVfs({
      mkdir: () => {
        throw new FsError('EEXIST');
      },
    }),
  );
  t.deepEqual(await call(h.ops.mkdir, '/d', 0o755, { uid: 0, gid: 0, pid: 1 }), [-E.EEXIST]);
});

test('malformed Vfs results are EIO (bad attr, over-long read, bad handle)', async (t) => {
  const h = harness(
    fakeVfs({
      getattr: async () => attr({ size: -1 }),
      fgetattr: async () => ({ ...attr(), mtimeNs: 5 as unknown as bigint }),
      read: async () => 99,
      open: async () => -3,
    }),
  );
  t.deepEqual(await call(h.ops.getattr, '/x'), [-E.EIO]);
  t.deepEqual(await call(h.ops.fgetattr, null, 3), [-E.EIO]);
  t.deepEqual(await call(h.ops.read, '/x', 3, Buffer.alloc(10), 10, 0), [-E.EIO]);
  t.deepEqual(await call(h.ops.open, '/x', 0), [-E.EIO]);
  t.is(h.logs.length, 4);
});

test('a callback that throws is not called a second time', async (t) => {
  const h = harness(fakeVfs({ flush: async () => undefined }));
  let calls = 0;
  h.ops.flush!('/f', 1, () => {
    calls++;
    throw new Error('native side threw');
  });
  for (let i = 0; i < 10; i++) await tick();
  t.is(calls, 1);
  t.is(h.logs.length, 1);
  t.regex(h.logs[0]!, /native callback threw/);
});

// --- buffers ---

test('write copies the native buffer before the Vfs awaits', async (t) => {
  let seen: Buffer | undefined;
  let seenContent = '';
  const native = Buffer.from('hello world, this is the kernel buffer');
  const h = harness(
    fakeVfs({
      write: async (_fh, buf, length) => {
        seen = buf;
        await tick();
        seenContent = buf.subarray(0, length).toString();
        return length;
      },
    }),
  );
  const done = call(h.ops.write, null, 7, native, 11, 4096);
  // The native side reuses / detaches its buffer as soon as it can: clobber it now.
  native.fill(0x2a);
  t.deepEqual(await done, [11]);
  t.not(seen, native);
  t.is(seen!.length, 11);
  t.is(seenContent, 'hello world');
});

test('copyWriteData false: the Vfs writes from the native buffer, and the kernel is answered only after it is done', async (t) => {
  const native = Buffer.from('hello world, this is the kernel buffer');
  let seen: Buffer | undefined;
  let finishWrite: (() => void) | undefined;
  const h = harness(
    fakeVfs({
      write: async (_fh, buf, length) => {
        seen = buf;
        await new Promise<void>((r) => (finishWrite = r));
        return length;
      },
    }),
    { copyWriteData: false },
  );
  let answered = false;
  const done = call(h.ops.write, null, 7, native, 11, 4096).then((a) => ((answered = true), a));
  for (let i = 0; i < 5; i++) await tick();
  t.is(seen, native, 'no copy');
  t.false(answered, 'no answer while the Vfs holds the buffer');
  finishWrite!();
  t.deepEqual(await done, [11]);
});

test('setxattr copies the value before the Vfs awaits', async (t) => {
  let content = '';
  const native = Buffer.from('value-1');
  const h = harness(
    fakeVfs({
      setxattr: async (_p, _n, value) => {
        await tick();
        content = value.toString();
      },
    }),
  );
  const done = call(h.ops.setxattr, '/f', 'user.k', native, 0, 0);
  native.fill(0);
  t.deepEqual(await done, [0]);
  t.is(content, 'value-1');
});

test('read fills the native buffer and answers the byte count', async (t) => {
  const h = harness(
    fakeVfs({
      read: async (fh, buf, length, position) => {
        t.is(fh, 5);
        t.is(position, 2 ** 40);
        return buf.write('abc', 0, Math.min(3, length));
      },
    }),
  );
  const buf = Buffer.alloc(16);
  t.deepEqual(await call(h.ops.read, '/f', 5, buf, 16, 2 ** 40), [3]);
  t.is(buf.subarray(0, 3).toString(), 'abc');
});

// --- conversions ---

test('utimens maps UTIME_OMIT, UTIME_NOW and nanosecond times', async (t) => {
  const got: [TimeSpec, TimeSpec][] = [];
  const h = harness(
    fakeVfs({
      utimens: async (_p, a, m) => {
        got.push([a, m]);
      },
    }),
  );
  await call(h.ops.utimens, '/f', { sec: 0, nsec: UTIME_NOW }, { sec: 0, nsec: UTIME_OMIT });
  await call(h.ops.utimens, '/f', { sec: 0, nsec: UTIME_OMIT }, { sec: 1_234_567_890, nsec: 123_456_789 });
  await call(h.ops.utimens, '/f', { sec: -2, nsec: 500_000_000 }, { sec: 0, nsec: 0 });
  t.deepEqual(got, [
    ['now', 'omit'],
    ['omit', 1_234_567_890_123_456_789n],
    [-1_500_000_000n, 0n],
  ]);
  t.is(toTimeSpec({ sec: 4_102_444_800, nsec: 999_999_999 }), 4_102_444_800_999_999_999n);
});

test('getattr answers a stat with nanosecond times, blocks and blksize', async (t) => {
  const h = harness(fakeVfs({ getattr: async () => attr() }), { blksize: 65536 });
  const [err, st] = (await call(h.ops.getattr, '/f')) as [number, FuseStat];
  t.is(err, 0);
  t.like(st, { ino: 42, mode: 0o100644, nlink: 1, uid: 1000, gid: 1000, size: 1025, blocks: 3, blksize: 65536 });
  t.is(st.atime, 1_700_000_000_123_456_789n);
  t.is(st.mtime, 1_600_000_000_000_000_001n);
  t.is(st.ctime, 1_650_000_000_999_999_999n);
});

test('fgetattr goes by handle, not path (works for a null path)', async (t) => {
  const h = harness(
    fakeVfs({
      fgetattr: async (fh) => {
        t.is(fh, 9);
        return attr({ size: 0 });
      },
    }),
  );
  const [err, st] = (await call(h.ops.fgetattr, null, 9)) as [number, FuseStat];
  t.is(err, 0);
  t.is(st.blocks, 0);
});

test('readdir adds . and .., passes stats only when every entry has one', async (t) => {
  const withAttrs = harness(
    fakeVfs({ readdir: async () => [{ name: 'a', attr: attr({ ino: 7 }) }, { name: 'b', attr: attr({ ino: 8 }) }] }),
  );
  const [err, names, stats] = (await call(withAttrs.ops.readdir, '/')) as [number, string[], FuseStat[]];
  t.is(err, 0);
  t.deepEqual(names, ['.', '..', 'a', 'b']);
  t.is(stats.length, 4);
  t.is(stats[2]!.ino, 7);

  const partial = harness(fakeVfs({ readdir: async () => [{ name: 'a', attr: attr() }, { name: 'b' }] }));
  t.deepEqual(await call(partial.ops.readdir, '/'), [0, ['.', '..', 'a', 'b']]);

  t.deepEqual(await call(partial.ops.readdir, null), [-E.ENOENT]);
});

test('create passes permission bits, open flags and the caller', async (t) => {
  const h = harness(
    fakeVfs({
      create: async (p, mode, flags, caller) => {
        t.is(p, '/new');
        t.is(mode, 0o640);
        t.is(flags, 0o101);
        t.deepEqual(caller, { uid: 1001, gid: 1002, pid: 3 });
        return 12;
      },
    }),
  );
  t.deepEqual(await call(h.ops.create, '/new', 0o100640, 0o101, { uid: 1001, gid: 1002, pid: 3 }), [0, 12]);
});

test('mkdir and symlink pass the caller; chmod masks the file type', async (t) => {
  const seen: unknown[] = [];
  const h = harness(
    fakeVfs({
      mkdir: async (p, mode, caller) => void seen.push(['mkdir', p, mode, caller]),
      symlink: async (target, p, caller) => void seen.push(['symlink', target, p, caller]),
      chmod: async (p, mode) => void seen.push(['chmod', p, mode]),
    }),
  );
  const caller = { uid: 5, gid: 6, pid: 7 };
  await call(h.ops.mkdir, '/d', 0o40755, caller);
  await call(h.ops.symlink, '../t', '/d/l', caller);
  await call(h.ops.chmod, '/d', 0o41777);
  t.deepEqual(seen, [
    ['mkdir', '/d', 0o755, caller],
    ['symlink', '../t', '/d/l', caller],
    ['chmod', '/d', 0o1777],
  ]);
});

test('chown maps 0xffffffff ("unchanged") to -1', async (t) => {
  const seen: [number, number][] = [];
  const h = harness(fakeVfs({ chown: async (_p, u, g) => void seen.push([u, g]) }));
  await call(h.ops.chown, '/f', 0xffffffff, 100);
  await call(h.ops.chown, '/f', 0, 0xffffffff);
  t.deepEqual(seen, [
    [-1, 100],
    [0, -1],
  ]);
});

test('fsync passes datasync as a boolean; truncate / ftruncate / release route correctly', async (t) => {
  const seen: unknown[] = [];
  const h = harness(
    fakeVfs({
      fsync: async (fh, ds) => void seen.push(['fsync', fh, ds]),
      truncate: async (p, s) => void seen.push(['truncate', p, s]),
      ftruncate: async (fh, s) => void seen.push(['ftruncate', fh, s]),
      release: async (fh) => void seen.push(['release', fh]),
    }),
  );
  await call(h.ops.fsync, null, 1, 4);
  await call(h.ops.fsync, null, 0, 4);
  await call(h.ops.truncate, '/f', 2 ** 33);
  await call(h.ops.ftruncate, null, 4, 10);
  await call(h.ops.release, null, 4);
  t.deepEqual(seen, [
    ['fsync', 4, true],
    ['fsync', 4, false],
    ['truncate', '/f', 2 ** 33],
    ['ftruncate', 4, 10],
    ['release', 4],
  ]);
});

test('xattrs: get / list / ENODATA', async (t) => {
  const h = harness(
    fakeVfs({
      getxattr: async (_p, name) => {
        if (name === 'user.a') return Buffer.from('1');
        throw new FsError('ENODATA');
      },
      listxattr: async () => ['user.a'],
      removexattr: async () => Promise.reject(new FsError('ENODATA')),
    }),
  );
  t.deepEqual(await call(h.ops.getxattr, '/f', 'user.a', 0), [0, Buffer.from('1')]);
  t.deepEqual(await call(h.ops.getxattr, '/f', 'user.b', 0), [-E.ENODATA]);
  t.deepEqual(await call(h.ops.listxattr, '/f'), [0, ['user.a']]);
  t.deepEqual(await call(h.ops.removexattr, '/f', 'user.a'), [-E.ENODATA]);
});

test('statfs scales frsize instead of overflowing 32-bit block counts', (t) => {
  const s = toFuseStatfs({
    bsize: 4096,
    frsize: 4096,
    blocks: 2 ** 34,
    bfree: 2 ** 33,
    bavail: 2 ** 33,
    files: 2 ** 40,
    ffree: 10,
    favail: 10,
    namemax: 255,
  });
  t.is(s.frsize * s.blocks, 4096 * 2 ** 34);
  t.true(s.blocks <= 0xffffffff);
  t.is(s.files, 0xffffffff);
});

// --- hooks ---

test('onActivity brackets every op and counters record count, errors and latency', async (t) => {
  const h = harness(
    fakeVfs({
      getattr: async (p) => (p === '/' ? attr() : Promise.reject(new FsError('ENOENT'))),
    }),
  );
  await call(h.ops.getattr, '/');
  await call(h.ops.getattr, '/nope');
  await call(h.ops.statfs, '/');
  t.deepEqual(h.activity, ['getattr:start', 'getattr:end', 'getattr:start', 'getattr:end', 'statfs:start', 'statfs:end']);
  const snap = h.counters.snapshot();
  t.is(snap['getattr']!.count, 2);
  t.is(snap['getattr']!.errors, 1);
  t.is(snap['statfs']!.errors, 1); // fakeVfs: ENOSYS
  t.true(snap['getattr']!.totalMs >= 0);
  t.is(h.counters.inFlight, 0);
  t.is(h.counters.maxInFlight, 1);
});

test('counters and hooks are optional; a throwing hook does not break the answer', async (t) => {
  const ops = buildHandlers(fakeVfs({ getattr: async () => attr() }), {
    log: () => undefined,
    onActivity: () => {
      throw new Error('hook');
    },
  });
  const [err] = await call(ops.getattr, '/');
  t.is(err, 0);
});

test('buildHandlers is pure: building does not call the Vfs', (t) => {
  let touched = 0;
  const vfs = new Proxy(fakeVfs(), {
    get(target, prop, recv) {
      touched++;
      return Reflect.get(target, prop, recv);
    },
  });
  const ops = buildHandlers(vfs);
  t.is(touched, 0);
  t.is(typeof ops.getattr, 'function');
  t.is(typeof ops.utimens, 'function');
});

// --- open-unlinked files (libfuse hide_node → ghosts) ---

test('libfuse hiding an open file becomes vfs.unlink; the hidden name is served by handle', async (t) => {
  const calls: string[] = [];
  const h = harness(
    fakeVfs({
      create: async (p) => (calls.push(`create ${p}`), 3),
      open: async (p) => (calls.push(`open ${p}`), 4),
      unlink: async (p) => void calls.push(`unlink ${p}`),
      rename: async (a, b) => void calls.push(`rename ${a} ${b}`),
      fgetattr: async (fh) => (calls.push(`fgetattr ${fh}`), attr({ nlink: 0, size: 3 })),
      ftruncate: async (fh, size) => void calls.push(`ftruncate ${fh} ${size}`),
      release: async (fh) => void calls.push(`release ${fh}`),
      getattr: async (p) => (calls.push(`getattr ${p}`), Promise.reject(new FsError('ENOENT'))),
    }),
  );
  const caller = { uid: 0, gid: 0, pid: 1 };
  const hidden = '/d/.fuse_hidden0000000200000001';
  t.deepEqual(await call(h.ops.create, '/a/f', 0o644, 0o2, caller), [0, 3]);
  t.deepEqual(await call(h.ops.rename, '/a', '/d'), [0]); // the directory moves; handle 3 follows
  t.deepEqual(await call(h.ops.getattr, hidden), [-E.ENOENT]); // libfuse probing for a free name
  t.deepEqual(await call(h.ops.rename, '/d/f', hidden), [0]);
  const [err, st] = (await call(h.ops.getattr, hidden)) as [number, FuseStat];
  t.is(err, 0);
  t.is(st.size, 3);
  t.deepEqual(await call(h.ops.truncate, hidden, 1), [0]);
  t.deepEqual(await call(h.ops.chmod, hidden, 0o600), [0]);
  t.deepEqual(await call(h.ops.utimens, hidden, { sec: 0, nsec: UTIME_NOW }, { sec: 0, nsec: UTIME_NOW }), [0]);
  t.deepEqual(await call(h.ops.open, hidden, 0), [-E.ENOENT]);
  t.deepEqual(await call(h.ops.release, null, 3), [0]);
  t.deepEqual(await call(h.ops.unlink, hidden), [0]);
  // Renaming to a hidden-looking name with no open handle is a plain rename.
  t.deepEqual(await call(h.ops.rename, '/x', '/.fuse_hidden00000000000000ff'), [0]);
  t.deepEqual(calls, [
    'create /a/f',
    'rename /a /d',
    `getattr ${hidden}`,
    'unlink /d/f',
    'fgetattr 3',
    'ftruncate 3 1',
    'release 3',
    'rename /x /.fuse_hidden00000000000000ff',
  ]);
});
