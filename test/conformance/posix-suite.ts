import { constants as C } from 'node:fs';
import type { ExecutionContext, TestFn } from 'ava';
import type { DriverFactory, FsDriver } from './driver.js';

/**
 * One POSIX conformance suite, run against every FsDriver (in-memory OverlayVfs, real mount).
 * Each test gets a fresh, empty root from the factory. Expectations follow Linux (ext4) except
 * where roamfs documents a difference, which the driver's `caps` declare.
 */

const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_APPEND } = C;
const IFMT = C.S_IFMT;

type T = ExecutionContext<unknown>;

async function code(t: T, p: Promise<unknown>, expected: string | string[]): Promise<void> {
  const err = await t.throwsAsync(p);
  const want = Array.isArray(expected) ? expected : [expected];
  t.true(want.includes((err as { code?: string })?.code ?? ''), `expected ${want.join('|')}, got ${(err as { code?: string })?.code} (${err?.message})`);
}

export async function writeFile(fs: FsDriver, p: string, data: Buffer | string, mode = 0o644): Promise<void> {
  const f = await fs.open(p, O_WRONLY | O_CREAT | O_TRUNC, mode);
  try {
    const b = Buffer.isBuffer(data) ? data : Buffer.from(data);
    for (let off = 0; off < b.length; ) off += await f.write(b.subarray(off, Math.min(off + 1024 * 1024, b.length)), off);
  } finally {
    await f.close();
  }
}

export async function readFile(fs: FsDriver, p: string): Promise<Buffer> {
  const f = await fs.open(p, O_RDONLY);
  try {
    const parts: Buffer[] = [];
    for (let pos = 0; ; ) {
      const b = Buffer.alloc(256 * 1024);
      const n = await f.read(b, pos);
      if (n === 0) break;
      parts.push(b.subarray(0, n));
      pos += n;
    }
    return Buffer.concat(parts);
  } finally {
    await f.close();
  }
}

async function readAt(f: { read(b: Buffer, pos: number): Promise<number> }, pos: number, len: number): Promise<Buffer> {
  const b = Buffer.alloc(len);
  let got = 0;
  while (got < len) {
    const n = await f.read(b.subarray(got), pos + got);
    if (n === 0) break;
    got += n;
  }
  return b.subarray(0, got);
}

function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

export function posixSuite(test: TestFn, factory: DriverFactory): void {
  const def = (title: string, fn: (t: T, fs: FsDriver) => Promise<void>) =>
    test(`${factory.name}: ${title}`, async (t) => {
      const fs = await factory.open();
      try {
        await fn(t, fs);
      } finally {
        await factory.close(fs);
      }
    });

  def('create, write, read back; attributes of a new file', async (t, fs) => {
    await writeFile(fs, '/a.txt', 'hello world', 0o640);
    t.is((await readFile(fs, '/a.txt')).toString(), 'hello world');
    const st = await fs.stat('/a.txt');
    t.is(st.mode & IFMT, C.S_IFREG);
    t.is(st.mode & 0o7777, 0o640);
    t.is(st.size, 11);
    t.is(st.nlink, 1);
    t.is(st.uid, fs.uid);
    t.is(st.gid, fs.gid);
    t.deepEqual(await fs.readdir('/'), ['a.txt']);
  });

  def('ENOENT, EEXIST, ENOTDIR, EISDIR, ENAMETOOLONG', async (t, fs) => {
    await writeFile(fs, '/f', 'x');
    await fs.mkdir('/d', 0o755);
    await code(t, fs.open('/missing', O_RDONLY), 'ENOENT');
    await code(t, fs.open('/nodir/x', O_WRONLY | O_CREAT, 0o644), 'ENOENT');
    await code(t, fs.stat('/missing'), 'ENOENT');
    await code(t, fs.open('/f', O_WRONLY | O_CREAT | O_EXCL, 0o644), 'EEXIST');
    await code(t, fs.mkdir('/d', 0o755), 'EEXIST');
    await code(t, fs.mkdir('/f', 0o755), 'EEXIST');
    await code(t, fs.symlink('t', '/f'), 'EEXIST');
    await code(t, fs.stat('/f/x'), 'ENOTDIR');
    await code(t, fs.open('/f/x', O_WRONLY | O_CREAT, 0o644), 'ENOTDIR');
    await code(t, fs.mkdir('/f/x', 0o755), 'ENOTDIR');
    await code(t, fs.open('/d', O_WRONLY), 'EISDIR');
    await code(t, fs.open('/d', O_RDWR), 'EISDIR');
    await code(t, fs.unlink('/d'), ['EISDIR', 'EPERM']);
    await code(t, fs.rmdir('/f'), 'ENOTDIR');
    await code(t, fs.rmdir('/missing'), 'ENOENT');
    await code(t, fs.unlink('/missing'), 'ENOENT');
    await code(t, fs.readlink('/f'), 'EINVAL');
    const long = 'x'.repeat(256);
    await code(t, fs.open(`/${long}`, O_WRONLY | O_CREAT, 0o644), 'ENAMETOOLONG');
    await code(t, fs.mkdir(`/${long}`, 0o755), 'ENAMETOOLONG');
    await code(t, fs.stat(`/${long}`), 'ENAMETOOLONG');
    const ok = 'é'.repeat(127); // 254 bytes
    await writeFile(fs, `/${ok}`, 'y');
    t.is((await fs.stat(`/${ok}`)).size, 1);
    await code(t, fs.open(`/${'é'.repeat(128)}`, O_WRONLY | O_CREAT, 0o644), 'ENAMETOOLONG');
  });

  def('O_TRUNC empties the file and moves mtime', async (t, fs) => {
    await writeFile(fs, '/f', 'some content');
    const before = await fs.stat('/f');
    await fs.tick();
    const f = await fs.open('/f', O_WRONLY | O_TRUNC);
    await f.close();
    const after = await fs.stat('/f');
    t.is(after.size, 0);
    t.true(after.mtimeNs > before.mtimeNs);
    t.true(after.ctimeNs > before.ctimeNs);
    t.is((await readFile(fs, '/f')).length, 0);
  });

  def('O_APPEND writes go to the end regardless of position', async (t, fs) => {
    await writeFile(fs, '/log', 'abc');
    const f = await fs.open('/log', O_WRONLY | O_APPEND);
    await f.write(Buffer.from('def'), 0);
    await f.write(Buffer.from('gh'), 1);
    await f.close();
    const g = await fs.open('/log', O_RDWR | O_APPEND);
    await g.write(Buffer.from('!'), 0);
    t.is((await readAt(g, 0, 100)).toString(), 'abcdefgh!');
    await g.close();
    t.is((await readFile(fs, '/log')).toString(), 'abcdefgh!');
  });

  def('truncate and ftruncate shrink and grow with zeros', async (t, fs) => {
    await writeFile(fs, '/f', '0123456789');
    await fs.truncate('/f', 4);
    t.is((await readFile(fs, '/f')).toString(), '0123');
    await fs.truncate('/f', 8);
    t.deepEqual(await readFile(fs, '/f'), Buffer.concat([Buffer.from('0123'), Buffer.alloc(4)]));
    const f = await fs.open('/f', O_RDWR);
    await f.truncate(2);
    t.is((await f.stat()).size, 2);
    await f.write(Buffer.from('Z'), 5);
    t.deepEqual(await readAt(f, 0, 100), Buffer.from([0x30, 0x31, 0, 0, 0, 0x5a]));
    await f.close();
    await fs.truncate('/f', 0);
    t.is((await fs.stat('/f')).size, 0);
    await code(t, fs.truncate('/missing', 1), 'ENOENT');
    await fs.mkdir('/d', 0o755);
    await code(t, fs.truncate('/d', 0), 'EISDIR');
  });

  def('sparse writes past EOF read back as zeros', async (t, fs) => {
    const f = await fs.open('/sparse', O_RDWR | O_CREAT, 0o644);
    await f.write(Buffer.from('head'), 0);
    await f.write(Buffer.from('tail'), 3 * 1024 * 1024);
    t.is((await f.stat()).size, 3 * 1024 * 1024 + 4);
    const mid = await readAt(f, 1024 * 1024, 4096);
    t.true(mid.equals(Buffer.alloc(4096)));
    t.is((await readAt(f, 3 * 1024 * 1024 - 2, 10)).toString('latin1'), '\0\0tail');
    t.is(await f.read(Buffer.alloc(10), 3 * 1024 * 1024 + 4), 0, 'read at EOF returns 0');
    await f.close();
  });

  def('rename files: move, replace, keep inode and content', async (t, fs) => {
    await writeFile(fs, '/a', 'A');
    await writeFile(fs, '/b', 'B');
    await fs.mkdir('/d', 0o755);
    const ino = (await fs.stat('/a')).ino;
    await fs.rename('/a', '/d/a2');
    await code(t, fs.stat('/a'), 'ENOENT');
    t.is((await fs.stat('/d/a2')).ino, ino);
    t.is((await readFile(fs, '/d/a2')).toString(), 'A');
    await fs.rename('/d/a2', '/b'); // replace file over file
    t.is((await readFile(fs, '/b')).toString(), 'A');
    t.deepEqual((await fs.readdir('/')).sort(), ['b', 'd']);
    t.deepEqual(await fs.readdir('/d'), []);
    await fs.rename('/b', '/b'); // same name: nothing happens
    t.is((await readFile(fs, '/b')).toString(), 'A');
    await code(t, fs.rename('/missing', '/x'), 'ENOENT');
    await code(t, fs.rename('/b', '/nodir/x'), 'ENOENT');
    await code(t, fs.rename('/b', '/d'), 'EISDIR');
  });

  def('rename directories: whole subtrees, replace empty dir, errors', async (t, fs) => {
    await fs.mkdir('/src', 0o755);
    await fs.mkdir('/src/sub', 0o700);
    await writeFile(fs, '/src/sub/f', 'deep');
    await writeFile(fs, '/file', 'x');
    await fs.mkdir('/empty', 0o755);
    await fs.mkdir('/full', 0o755);
    await writeFile(fs, '/full/x', 'x');

    await code(t, fs.rename('/src', '/src/sub/inside'), 'EINVAL');
    await code(t, fs.rename('/src', '/src/new'), 'EINVAL');
    await code(t, fs.rename('/src', '/file'), 'ENOTDIR');
    await code(t, fs.rename('/src', '/full'), ['ENOTEMPTY', 'EEXIST']);
    await code(t, fs.rename('/file', '/empty'), 'EISDIR');

    await fs.rename('/src', '/empty'); // dir over empty dir
    await code(t, fs.stat('/src'), 'ENOENT');
    t.is((await readFile(fs, '/empty/sub/f')).toString(), 'deep');
    t.is((await fs.stat('/empty/sub')).mode & 0o7777, 0o700);
    await fs.rename('/empty', '/full/moved');
    t.is((await readFile(fs, '/full/moved/sub/f')).toString(), 'deep');
    t.deepEqual((await fs.readdir('/')).sort(), ['file', 'full']);
    t.deepEqual((await fs.readdir('/full')).sort(), ['moved', 'x']);
  });

  def('unlink while open: the handle keeps reading and writing', async (t, fs) => {
    await writeFile(fs, '/f', 'before');
    const f = await fs.open('/f', O_RDWR);
    await fs.unlink('/f');
    await code(t, fs.stat('/f'), 'ENOENT');
    t.deepEqual(await fs.readdir('/'), []);
    t.is((await readAt(f, 0, 100)).toString(), 'before');
    await f.write(Buffer.from('AFTER'), 6);
    t.is((await readAt(f, 0, 100)).toString(), 'beforeAFTER');
    const st = await f.stat();
    t.is(st.size, 11);
    t.is(st.nlink, 0);
    await f.close();
    await writeFile(fs, '/f', 'new');
    t.is((await readFile(fs, '/f')).toString(), 'new');
  });

  def('rename over an open file: the old handle keeps the old content', async (t, fs) => {
    await writeFile(fs, '/old', 'old content');
    await writeFile(fs, '/new', 'new');
    const f = await fs.open('/old', O_RDONLY);
    await fs.rename('/new', '/old');
    t.is((await readAt(f, 0, 100)).toString(), 'old content');
    await f.close();
    t.is((await readFile(fs, '/old')).toString(), 'new');
  });

  def('rmdir: empty only', async (t, fs) => {
    await fs.mkdir('/d', 0o755);
    await writeFile(fs, '/d/f', 'x');
    await code(t, fs.rmdir('/d'), ['ENOTEMPTY', 'EEXIST']);
    await fs.unlink('/d/f');
    await fs.rmdir('/d');
    await code(t, fs.stat('/d'), 'ENOENT');
    t.deepEqual(await fs.readdir('/'), []);
  });

  def('symlinks: create, lstat, readlink, never followed', async (t, fs) => {
    await fs.symlink('target/does/not/exist', '/dangling');
    await writeFile(fs, '/real', 'content');
    await fs.symlink('real', '/link');
    const st = await fs.stat('/dangling');
    t.is(st.mode & IFMT, C.S_IFLNK);
    t.is(st.size, 'target/does/not/exist'.length);
    t.is(await fs.readlink('/dangling'), 'target/does/not/exist');
    t.is(await fs.readlink('/link'), 'real');
    t.is((await fs.stat('/link')).mode & IFMT, C.S_IFLNK);
    await fs.rename('/link', '/link2');
    t.is(await fs.readlink('/link2'), 'real');
    await fs.unlink('/link2');
    t.is((await readFile(fs, '/real')).toString(), 'content');
  });

  def('hard links', async (t, fs) => {
    await writeFile(fs, '/f', 'x');
    if (fs.caps.hardlinks === 'eperm') {
      await code(t, fs.link('/f', '/g'), 'EPERM');
      await code(t, fs.stat('/g'), 'ENOENT');
    } else {
      await fs.link('/f', '/g');
      t.is((await fs.stat('/f')).nlink, 2);
    }
  });

  def('chmod, chown, ctime', async (t, fs) => {
    await writeFile(fs, '/f', 'x', 0o644);
    await fs.mkdir('/d', 0o755);
    const before = await fs.stat('/f');
    await fs.tick();
    await fs.chmod('/f', 0o600);
    let st = await fs.stat('/f');
    t.is(st.mode & 0o7777, 0o600);
    t.is(st.mode & IFMT, C.S_IFREG);
    t.true(st.ctimeNs > before.ctimeNs);
    t.is(st.mtimeNs, before.mtimeNs);
    await fs.chmod('/d', 0o1750);
    t.is((await fs.stat('/d')).mode & 0o7777, 0o1750);
    await fs.chown('/f', -1, -1);
    st = await fs.stat('/f');
    t.is(st.uid, fs.uid);
    t.is(st.gid, fs.gid);
    if (fs.caps.chown) {
      await fs.chown('/f', 4242, -1);
      st = await fs.stat('/f');
      t.is(st.uid, 4242);
      t.is(st.gid, fs.gid);
      await fs.chown('/f', -1, 4343);
      st = await fs.stat('/f');
      t.is(st.uid, 4242);
      t.is(st.gid, 4343);
    }
  });

  def('utimens: nanoseconds, omit, now', async (t, fs) => {
    await writeFile(fs, '/f', 'x');
    await fs.symlink('f', '/l');
    const a = 1_234_567_890_123_456_789n;
    const m = 987_654_321_987_654_321n;
    await fs.utimens('/f', a, m);
    let st = await fs.stat('/f');
    t.is(st.atimeNs, a);
    t.is(st.mtimeNs, m);
    await fs.utimens('/f', 'omit', 5n);
    st = await fs.stat('/f');
    t.is(st.atimeNs, a);
    t.is(st.mtimeNs, 5n);
    await fs.utimens('/f', 7n, 'omit');
    st = await fs.stat('/f');
    t.is(st.atimeNs, 7n);
    t.is(st.mtimeNs, 5n);
    const c0 = st.ctimeNs;
    await fs.tick();
    await fs.utimens('/f', 'now', 'now');
    st = await fs.stat('/f');
    t.true(st.mtimeNs >= c0 && st.atimeNs >= c0);
    t.true(st.ctimeNs > c0);
    await fs.utimens('/f', -1_500_000_000n, -2n); // before the epoch
    st = await fs.stat('/f');
    t.is(st.atimeNs, -1_500_000_000n);
    t.is(st.mtimeNs, -2n);
    await fs.utimens('/l', 11n, 12n); // the symlink itself
    t.is((await fs.stat('/l')).mtimeNs, 12n);
    t.is((await fs.stat('/f')).mtimeNs, -2n);
  });

  def('mkdir modes and nested directories', async (t, fs) => {
    await fs.mkdir('/a', 0o755);
    await fs.mkdir('/a/b', 0o700);
    await fs.mkdir('/a/b/c', 0o750);
    t.is((await fs.stat('/a')).mode & 0o7777, 0o755);
    t.is((await fs.stat('/a/b')).mode & 0o7777, 0o700);
    const st = await fs.stat('/a/b/c');
    t.is(st.mode & IFMT, C.S_IFDIR);
    t.is(st.mode & 0o7777, 0o750);
    t.is(st.uid, fs.uid);
    await code(t, fs.mkdir('/x/y', 0o755), 'ENOENT');
  });

  def('content and entry changes move mtime/ctime of the file and its directory', async (t, fs) => {
    await fs.mkdir('/d', 0o755);
    await writeFile(fs, '/d/f', 'x');
    let d0 = await fs.stat('/d');
    const f0 = await fs.stat('/d/f');
    await fs.tick();
    const f = await fs.open('/d/f', O_WRONLY);
    await f.write(Buffer.from('y'), 1);
    await f.close();
    const f1 = await fs.stat('/d/f');
    t.true(f1.mtimeNs > f0.mtimeNs);
    t.true(f1.ctimeNs > f0.ctimeNs);
    t.is((await fs.stat('/d')).mtimeNs, d0.mtimeNs, 'writing a file does not touch its directory');
    for (const op of [
      () => writeFile(fs, '/d/g', 'new'),
      () => fs.rename('/d/g', '/d/h'),
      () => fs.unlink('/d/h'),
      () => fs.mkdir('/d/sub', 0o755),
      () => fs.rmdir('/d/sub'),
      () => fs.symlink('x', '/d/s'),
    ]) {
      d0 = await fs.stat('/d');
      await fs.tick();
      await op();
      const d1 = await fs.stat('/d');
      t.true(d1.mtimeNs > d0.mtimeNs);
      t.true(d1.ctimeNs > d0.ctimeNs);
    }
  });

  def('readdir after many operations matches a model', async (t, fs) => {
    const model = new Map<string, string | null>(); // name -> file content, null for a directory
    const r = rng(7);
    for (let i = 0; i < 60; i++) {
      await writeFile(fs, `/f${i}`, `file ${i}`);
      model.set(`f${i}`, `file ${i}`);
    }
    for (let i = 0; i < 200; i++) {
      const names = [...model.keys()];
      const pick = names[Math.floor(r() * names.length)]!;
      const isDir = model.get(pick) === null;
      const k = r();
      if (k < 0.3) {
        await (isDir ? fs.rmdir(`/${pick}`) : fs.unlink(`/${pick}`));
        model.delete(pick);
      } else if (k < 0.6) {
        const to = r() < 0.3 ? names[Math.floor(r() * names.length)]! : `r${i}`;
        const toIsDir = model.get(to) === null;
        if (to !== pick && model.has(to) && isDir !== toIsDir) continue; // EISDIR/ENOTDIR, tested elsewhere
        await fs.rename(`/${pick}`, `/${to}`);
        const v = model.get(pick)!;
        model.delete(pick);
        model.set(to, v);
      } else if (k < 0.8) {
        await writeFile(fs, `/n${i}`, `new ${i}`);
        model.set(`n${i}`, `new ${i}`);
      } else {
        await fs.mkdir(`/dir${i}`, 0o755);
        model.set(`dir${i}`, null);
      }
    }
    t.deepEqual((await fs.readdir('/')).sort(), [...model.keys()].sort());
    for (const [n, v] of model) {
      if (v === null) t.is((await fs.stat(`/${n}`)).mode & IFMT, C.S_IFDIR);
      else t.is((await readFile(fs, `/${n}`)).toString(), v);
    }
  });

  def('xattrs: user namespace, flags, ENODATA', async (t, fs) => {
    if (!fs.caps.xattr) {
      t.pass('driver has no xattr support');
      return;
    }
    const XATTR_CREATE = 1;
    const XATTR_REPLACE = 2;
    await writeFile(fs, '/f', 'x');
    await fs.mkdir('/d', 0o755);
    await code(t, fs.getxattr('/f', 'user.none'), 'ENODATA');
    await fs.setxattr('/f', 'user.a', Buffer.from('1'), 0);
    await fs.setxattr('/f', 'user.b', Buffer.from([0, 1, 2, 255]), XATTR_CREATE);
    await code(t, fs.setxattr('/f', 'user.b', Buffer.from('z'), XATTR_CREATE), 'EEXIST');
    await code(t, fs.setxattr('/f', 'user.c', Buffer.from('z'), XATTR_REPLACE), 'ENODATA');
    await fs.setxattr('/f', 'user.a', Buffer.from('22'), XATTR_REPLACE);
    t.deepEqual(await fs.getxattr('/f', 'user.a'), Buffer.from('22'));
    t.deepEqual(await fs.getxattr('/f', 'user.b'), Buffer.from([0, 1, 2, 255]));
    t.deepEqual((await fs.listxattr('/f')).filter((n) => n.startsWith('user.')).sort(), ['user.a', 'user.b']);
    await fs.removexattr('/f', 'user.a');
    await code(t, fs.removexattr('/f', 'user.a'), 'ENODATA');
    await code(t, fs.getxattr('/f', 'user.a'), 'ENODATA');
    await fs.setxattr('/d', 'user.dir', Buffer.from('yes'), 0);
    t.deepEqual(await fs.getxattr('/d', 'user.dir'), Buffer.from('yes'));
    await fs.rename('/f', '/g');
    t.deepEqual(await fs.getxattr('/g', 'user.b'), Buffer.from([0, 1, 2, 255]));
  });

  def('statfs reports space', async (t, fs) => {
    const s = await fs.statfs();
    t.true(s.bsize > 0);
    t.true(s.blocks > 0);
    t.true(s.bfree <= s.blocks);
    t.true(s.bavail <= s.blocks);
    t.true(s.files >= s.ffree);
  });

  def('large file: random writes, truncates and reads against a model', async (t, fs) => {
    const SIZE = 3 * 1024 * 1024;
    const r = rng(42);
    let model = Buffer.alloc(0);
    const f = await fs.open('/big', O_RDWR | O_CREAT, 0o644);
    const initial = Buffer.alloc(SIZE);
    for (let i = 0; i < SIZE; i++) initial[i] = (i * 7 + (i >> 10)) & 0xff;
    for (let off = 0; off < SIZE; off += 512 * 1024) await f.write(initial.subarray(off, off + 512 * 1024), off);
    model = Buffer.from(initial);
    for (let i = 0; i < 300; i++) {
      const k = r();
      if (k < 0.7) {
        const len = 1 + Math.floor(r() * (r() < 0.2 ? 300_000 : 5000));
        const pos = Math.floor(r() * (model.length + 100_000));
        const data = Buffer.alloc(len, i & 0xff);
        data[0] = 0xaa;
        await f.write(data, pos);
        if (pos + len > model.length) model = Buffer.concat([model, Buffer.alloc(pos + len - model.length)]);
        data.copy(model, pos);
      } else if (k < 0.75) {
        const size = Math.floor(r() * SIZE * 1.2);
        await f.truncate(size);
        model = size <= model.length ? Buffer.from(model.subarray(0, size)) : Buffer.concat([model, Buffer.alloc(size - model.length)]);
      } else {
        const pos = Math.floor(r() * model.length);
        const len = 1 + Math.floor(r() * 200_000);
        const got = await readAt(f, pos, len);
        t.true(got.equals(model.subarray(pos, pos + len)), `read ${len} at ${pos} (step ${i})`);
      }
    }
    t.is((await f.stat()).size, model.length);
    await f.sync();
    await f.close();
    const whole = await readFile(fs, '/big');
    t.is(whole.length, model.length);
    t.true(whole.equals(model));
  });
}
