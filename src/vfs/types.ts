/**
 * The kernel-free file system interface. The FUSE adapter (mount/fuse/) translates kernel
 * requests into these calls; the same conformance suite runs against an in-memory Vfs and
 * against a real mountpoint.
 *
 * Conventions:
 * - Paths are absolute within the profile: "/" is the root, "/a/b" a child; never "." or "..".
 * - Failures throw FsError with a POSIX errno name (ENOENT, EEXIST, ENOTDIR, EISDIR, ENOTEMPTY,
 *   EACCES, EPERM, EINVAL, EIO, EDQUOT, ENOSPC, EXDEV, ENAMETOOLONG, ENOTSUP, ENODATA, ...).
 *   Anything else that escapes a Vfs method is a bug: the adapter answers EIO and logs it.
 * - Times are nanoseconds since the epoch as bigint.
 * - File handles are small integers allocated by the Vfs; every successful open/create is
 *   matched by exactly one release.
 */

import { statfs } from 'node:fs/promises';

export type Errno =
  | 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EACCES' | 'EPERM' | 'EINVAL'
  | 'EIO' | 'EDQUOT' | 'ENOSPC' | 'EXDEV' | 'ENAMETOOLONG' | 'ENOTSUP' | 'ENODATA' | 'EBADF'
  | 'ELOOP' | 'EMLINK' | 'ERANGE' | 'EROFS' | 'EFBIG' | 'ENOSYS' | 'EBUSY';

/**
 * A file system answer, not a bug: it carries no stack trace (capturing one costs ~6 µs, and
 * a lookup of a missing name or the kernel's getxattr("security.capability") before every
 * write makes one per operation). Storage trouble behind an EIO is in `cause`, with its stack.
 */
export class FsError extends Error {
  readonly errno: Errno;
  constructor(errno: Errno, message?: string, opts?: { cause?: unknown }) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      super(message ?? errno, opts);
    } finally {
      Error.stackTraceLimit = limit;
    }
    this.name = 'FsError';
    this.errno = errno;
  }
}

export interface Attr {
  /** Inode number, stable for the life of the mount. */
  ino: number;
  /** File type and permission bits, as in st_mode (S_IFREG | 0o644, ...). */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export interface DirEntry {
  name: string;
  /** Present when cheap to provide (readdirplus-style); the adapter may call getattr otherwise. */
  attr?: Attr;
}

/** A time to set: nanoseconds, the current time, or leave unchanged (UTIME_NOW / UTIME_OMIT). */
export type TimeSpec = bigint | 'now' | 'omit';

export interface StatFs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

/** Who is asking; used for ownership of new entries. */
export interface Caller {
  uid: number;
  gid: number;
  pid: number;
}

export interface Vfs {
  getattr(path: string): Promise<Attr>;
  /** getattr through an open handle (fstat): works for open-unlinked files. */
  fgetattr(fh: number): Promise<Attr>;
  readdir(path: string): Promise<DirEntry[]>;
  readlink(path: string): Promise<string>;

  /** flags are open(2) flags (O_RDONLY, O_WRONLY, O_RDWR, O_TRUNC, O_APPEND, ...). */
  open(path: string, flags: number): Promise<number>;
  /** Create and open a regular file (O_CREAT); mode includes permission bits only. */
  create(path: string, mode: number, flags: number, caller?: Caller): Promise<number>;
  /** Read up to length bytes at position into buf; returns bytes read (0 at EOF). */
  read(fh: number, buf: Buffer, length: number, position: number): Promise<number>;
  /** Write length bytes from buf at position (ignored for O_APPEND handles); returns bytes written. */
  write(fh: number, buf: Buffer, length: number, position: number): Promise<number>;
  flush(fh: number): Promise<void>;
  fsync(fh: number, datasync: boolean): Promise<void>;
  release(fh: number): Promise<void>;

  truncate(path: string, size: number): Promise<void>;
  ftruncate(fh: number, size: number): Promise<void>;
  mkdir(path: string, mode: number, caller?: Caller): Promise<void>;
  unlink(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  /** rename(2) semantics: replaces an existing target (a directory only if empty). */
  rename(from: string, to: string): Promise<void>;
  symlink(target: string, path: string, caller?: Caller): Promise<void>;
  link(existing: string, path: string): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  /** uid or gid of -1 means unchanged. */
  chown(path: string, uid: number, gid: number): Promise<void>;
  utimens(path: string, atime: TimeSpec, mtime: TimeSpec): Promise<void>;
  statfs(): Promise<StatFs>;

  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void>;
  getxattr(path: string, name: string): Promise<Buffer>;
  listxattr(path: string): Promise<string[]>;
  removexattr(path: string, name: string): Promise<void>;
}

/** StatFs of the local file system holding `dir` (used by every Vfs backed by a local directory). */
export async function statfsOf(dir: string): Promise<StatFs> {
  const s = await statfs(dir);
  return { bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree, favail: s.ffree, namemax: 255 };
}
