import * as fsp from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { lutimens } from '../../src/core/native.js';
import type { FsDriver, FsFile, FsStat } from './driver.js';

function stat(s: BigIntStats): FsStat {
  return {
    ino: Number(s.ino),
    mode: Number(s.mode),
    nlink: Number(s.nlink),
    uid: Number(s.uid),
    gid: Number(s.gid),
    size: Number(s.size),
    atimeNs: s.atimeNs,
    mtimeNs: s.mtimeNs,
    ctimeNs: s.ctimeNs,
  };
}

function notSupported(): Promise<never> {
  return Promise.reject(Object.assign(new Error('xattrs are not available through node:fs'), { code: 'ENOTSUP' }));
}

/**
 * An FsDriver over a real directory through node:fs/promises: a roamfs mountpoint (the mount
 * tests), or a plain local directory (to check that the suite itself expects what Linux does).
 * node:fs has no xattr calls, so caps.xattr is false unless a subclass provides them.
 */
export function nodeDriver(root: string, opts: { hardlinks: 'eperm' | 'posix'; tickMs?: number }): FsDriver {
  const abs = (p: string) => path.join(root, p);
  const file = (h: fsp.FileHandle): FsFile => ({
    read: async (buf, pos) => (await h.read(buf, 0, buf.length, pos)).bytesRead,
    write: async (buf, pos) => (await h.write(buf, 0, buf.length, pos)).bytesWritten,
    truncate: (size) => h.truncate(size),
    sync: () => h.sync(),
    stat: async () => stat(await h.stat({ bigint: true })),
    close: () => h.close(),
  });
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  return {
    uid,
    gid,
    caps: { chown: uid === 0, xattr: false, hardlinks: opts.hardlinks },
    // Kernel timestamps are taken from a coarse clock (one jiffy, up to 10 ms).
    tick: () => new Promise((resolve) => setTimeout(resolve, opts.tickMs ?? 25)),
    open: async (p, flags, mode) => file(await fsp.open(abs(p), flags, mode)),
    stat: async (p) => stat(await fsp.lstat(abs(p), { bigint: true })),
    readdir: (p) => fsp.readdir(abs(p)),
    mkdir: async (p, mode) => {
      await fsp.mkdir(abs(p), { mode });
    },
    rmdir: (p) => fsp.rmdir(abs(p)),
    unlink: (p) => fsp.unlink(abs(p)),
    rename: (a, b) => fsp.rename(abs(a), abs(b)),
    symlink: (target, p) => fsp.symlink(target, abs(p)),
    readlink: (p) => fsp.readlink(abs(p)),
    link: (a, b) => fsp.link(abs(a), abs(b)),
    chmod: (p, mode) => fsp.chmod(abs(p), mode),
    chown: (p, u, g) => fsp.lchown(abs(p), u, g),
    utimens: async (p, a, m) => lutimens(abs(p), a, m),
    truncate: (p, size) => fsp.truncate(abs(p), size),
    statfs: () => fsp.statfs(root),
    setxattr: notSupported,
    getxattr: notSupported,
    listxattr: notSupported,
    removexattr: notSupported,
  };
}
