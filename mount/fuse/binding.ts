/**
 * Typed access to the roamfs-patched fuse-native (patches/fuse-native+2.2.6.patch, built from
 * source against the system libfuse2 by scripts/build-fuse-native.sh).
 *
 * The types describe the PATCHED contract, which differs from upstream fuse-native:
 * - callbacks take a negative errno (or 0 / a byte count for read and write);
 * - stat times are bigint nanoseconds (number = ms and Date are still accepted);
 * - utimens receives raw timespecs whose nsec may be UTIME_NOW / UTIME_OMIT;
 * - create receives the open flags and the caller; mkdir / symlink / mknod the caller;
 * - paths of file-handle operations may be null (nullPathOk / noPath);
 * - no per-operation timeout unless `timeout` is given.
 *
 * The addon is loaded lazily (loadFuseNative) so that importing this module, e.g. for the
 * types or from the adapter's unit tests, never needs /dev/fuse or a native build.
 */
import { createRequire } from 'node:module';

/** Linux values of UTIME_NOW / UTIME_OMIT (checked against the addon when it is loaded). */
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;
/** The kernel node id of the mount's root directory. */
export const FUSE_ROOT_ID = 1;
/** The patch contract version this wrapper is written for. */
export const ROAMFS_ABI = 1;

/** A result callback: 0 or a negative errno (read/write: bytes transferred or negative errno). */
export type FuseErrCb = (err: number) => void;
export type FuseValueCb<T> = (err: number, value?: T) => void;

export interface FuseStat {
  mode: number;
  uid: number;
  gid: number;
  size: number;
  nlink: number;
  ino: number;
  dev?: number;
  rdev?: number;
  blksize?: number;
  blocks?: number;
  /** Nanoseconds since the epoch. */
  atime: bigint;
  mtime: bigint;
  ctime: bigint;
}

export interface FuseStatfs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  fsid?: number;
  flag?: number;
  namemax: number;
}

/** A raw struct timespec as libfuse passes it to utimens. */
export interface FuseTimespec {
  sec: number;
  /** 0..999999999, or UTIME_NOW / UTIME_OMIT. */
  nsec: number;
}

/** fuse_get_context() of the request. */
export interface FuseCaller {
  uid: number;
  gid: number;
  pid: number;
}

/** The handler table (the subset of fuse-native operations roamfs implements). */
export interface FuseOps {
  init?(cb: FuseErrCb): void;
  getattr?(path: string, cb: FuseValueCb<FuseStat>): void;
  fgetattr?(path: string | null, fd: number, cb: FuseValueCb<FuseStat>): void;
  /** path is null only for a directory removed while open (nullPathOk) or with noPath. */
  readdir?(path: string | null, cb: (err: number, names?: string[], stats?: FuseStat[]) => void): void;
  readlink?(path: string, cb: FuseValueCb<string>): void;
  open?(path: string, flags: number, cb: FuseValueCb<number>): void;
  create?(path: string, mode: number, flags: number, caller: FuseCaller, cb: FuseValueCb<number>): void;
  /** buf is owned by the native side and valid only until cb is called. */
  read?(path: string | null, fd: number, buf: Buffer, len: number, pos: number, cb: FuseErrCb): void;
  /** buf is owned by the native side and valid only until cb is called. */
  write?(path: string | null, fd: number, buf: Buffer, len: number, pos: number, cb: FuseErrCb): void;
  flush?(path: string | null, fd: number, cb: FuseErrCb): void;
  fsync?(path: string | null, datasync: number, fd: number, cb: FuseErrCb): void;
  release?(path: string | null, fd: number, cb: FuseErrCb): void;
  truncate?(path: string, size: number, cb: FuseErrCb): void;
  ftruncate?(path: string | null, fd: number, size: number, cb: FuseErrCb): void;
  mkdir?(path: string, mode: number, caller: FuseCaller, cb: FuseErrCb): void;
  unlink?(path: string, cb: FuseErrCb): void;
  rmdir?(path: string, cb: FuseErrCb): void;
  rename?(src: string, dest: string, cb: FuseErrCb): void;
  /** target is the link's content, path the new link. */
  symlink?(target: string, path: string, caller: FuseCaller, cb: FuseErrCb): void;
  /** existing → new path. */
  link?(existing: string, path: string, cb: FuseErrCb): void;
  chmod?(path: string, mode: number, cb: FuseErrCb): void;
  /** uid / gid of 0xffffffff mean unchanged. */
  chown?(path: string, uid: number, gid: number, cb: FuseErrCb): void;
  utimens?(path: string, atime: FuseTimespec, mtime: FuseTimespec, cb: FuseErrCb): void;
  statfs?(path: string, cb: FuseValueCb<FuseStatfs>): void;
  /** value is owned by the native side and valid only until cb is called. */
  setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: FuseErrCb): void;
  getxattr?(path: string, name: string, position: number, cb: FuseValueCb<Buffer>): void;
  listxattr?(path: string, cb: FuseValueCb<string[]>): void;
  removexattr?(path: string, name: string, cb: FuseErrCb): void;
}

export type FuseOpName = keyof FuseOps;

export interface FuseNativeOptions {
  /** Raw -o options, e.g. ['big_writes', 'max_write=131072']; no commas or spaces inside one. */
  options?: string[];
  /** flag_nullpath_ok: file-handle ops on unlinked files get a null path (use with hard_remove). */
  nullPathOk?: boolean;
  /** flag_nopath: file-handle ops never compute the path. */
  noPath?: boolean;
  /** getxattr of a name outside user.* is answered ENODATA natively, never reaching the handlers. */
  xattrUserOnly?: boolean;
  /** Per-operation JS timeout in ms (answers ETIMEDOUT); absent / 0 / false: none. */
  timeout?: number | false | Record<string, number | false>;
  /** Unmount a stale (ENOTCONN) mount at the mountpoint first. */
  force?: boolean;
  mkdir?: boolean;
  debug?: boolean;
}

export interface FuseInstance {
  readonly mnt: string;
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
  /** FUSE_NOTIFY_INVAL_INODE for a kernel node id (only FUSE_ROOT_ID is knowable); cb(0 | -errno). */
  notifyInvalInode(ino: number, off: number, len: number, cb: (res: number) => void): void;
  /** FUSE_NOTIFY_INVAL_ENTRY for name in the directory with kernel node id parentIno. */
  notifyInvalEntry(parentIno: number, name: string, cb: (res: number) => void): void;
}

export interface FuseNativeModule {
  new (mnt: string, ops: FuseOps, opts?: FuseNativeOptions): FuseInstance;
  /** fusermount -uz (as root falling back to umount -l). */
  unmount(mnt: string, cb: (err: Error | null) => void): void;
  readonly UTIME_NOW: number;
  readonly UTIME_OMIT: number;
  readonly FUSE_ROOT_ID: number;
  readonly ROAMFS_ABI: number;
  /** libfuse version the addon runs with (29 = 2.9). */
  readonly FUSE_VERSION: number;
  /** The .node file that was loaded. */
  readonly bindingPath: string;
}

let cached: FuseNativeModule | undefined;

/**
 * Load the patched fuse-native. Throws (with the remedy in the message) when the addon is
 * missing or is not the patched build.
 */
export function loadFuseNative(): FuseNativeModule {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  let mod: FuseNativeModule;
  try {
    mod = require('fuse-native') as FuseNativeModule;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw new Error(`cannot load fuse-native (run scripts/build-fuse-native.sh; needs libfuse-dev): ${msg}`, {
      cause: err,
    });
  }
  if (mod.ROAMFS_ABI !== ROAMFS_ABI || mod.UTIME_NOW !== UTIME_NOW || mod.UTIME_OMIT !== UTIME_OMIT) {
    throw new Error(
      `fuse-native at ${String(mod.bindingPath)} is not the roamfs-patched build ` +
        `(ABI ${String(mod.ROAMFS_ABI)}, want ${ROAMFS_ABI}); run scripts/build-fuse-native.sh`,
    );
  }
  cached = mod;
  return mod;
}
