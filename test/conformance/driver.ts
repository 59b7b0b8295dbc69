/**
 * The abstract file system the POSIX conformance suite runs against. Two drivers exist:
 * an in-memory one over OverlayVfs (vfs-driver.ts) and one over a real mountpoint through
 * node:fs/promises (wired by the mount tests). Paths are absolute within the driver's root
 * ("/a/b"). Failures reject with an Error whose `code` is the errno name ('ENOENT', ...), as
 * node:fs does.
 */
export type TimeSpec = bigint | 'now' | 'omit';

export interface FsStat {
  ino: number;
  /** st_mode: type bits | permission bits. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  atimeNs: bigint;
  mtimeNs: bigint;
  ctimeNs: bigint;
}

export interface FsStatFs {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}

export interface FsFile {
  /** pread: up to buf.length bytes at pos; returns bytes read. */
  read(buf: Buffer, pos: number): Promise<number>;
  /** pwrite at pos (for O_APPEND handles the file system appends regardless). */
  write(buf: Buffer, pos: number): Promise<number>;
  truncate(size: number): Promise<void>;
  sync(): Promise<void>;
  stat(): Promise<FsStat>;
  close(): Promise<void>;
}

export interface FsDriver {
  /** Owner that new entries created through this driver get. */
  readonly uid: number;
  readonly gid: number;
  readonly caps: {
    /** chown to arbitrary ids works (root on a real mount). */
    chown: boolean;
    /** xattr calls are available (node:fs has none; a mount driver may use a helper). */
    xattr: boolean;
    /** What link() does: roamfs refuses hard links with EPERM. */
    hardlinks: 'eperm' | 'posix';
  };
  /** Let the file system's clock move on, so that a later timestamp is strictly greater. */
  tick(): Promise<void>;

  /** open(2) with numeric flags (fs.constants.O_*); mode for O_CREAT. */
  open(path: string, flags: number, mode?: number): Promise<FsFile>;
  /** lstat: never follows a final symlink. */
  stat(path: string): Promise<FsStat>;
  readdir(path: string): Promise<string[]>;
  mkdir(path: string, mode: number): Promise<void>;
  rmdir(path: string): Promise<void>;
  unlink(path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  symlink(target: string, path: string): Promise<void>;
  readlink(path: string): Promise<string>;
  link(existing: string, path: string): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  chown(path: string, uid: number, gid: number): Promise<void>;
  /** utimensat(2) without following symlinks; 'now' / 'omit' as UTIME_NOW / UTIME_OMIT. */
  utimens(path: string, atime: TimeSpec, mtime: TimeSpec): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  statfs(): Promise<FsStatFs>;

  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void>;
  getxattr(path: string, name: string): Promise<Buffer>;
  listxattr(path: string): Promise<string[]>;
  removexattr(path: string, name: string): Promise<void>;
}

export interface DriverFactory {
  name: string;
  /** A fresh, empty file system root for one test. */
  open(): Promise<FsDriver>;
  close(driver: FsDriver): Promise<void>;
}
