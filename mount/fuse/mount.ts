/**
 * Mount a Vfs with the patched fuse-native (libfuse 2.9, multi-threaded loop).
 *
 * Default options: big_writes + max_write=131072 (128 KiB write requests instead of 4 KiB),
 * auto_cache (page cache kept across opens while mtime/size are unchanged) with 1 s attr /
 * entry timeouts, default_permissions (the kernel checks mode bits), allow_other, use_ino,
 * fsname=roamfs, subtype=roamfs (shows as "fuse.roamfs" in /proc/mounts). No per-operation
 * timeout. Not hard_remove: libfuse then hides open-unlinked files as .fuse_hidden*, which
 * the adapter turns back into vfs.unlink + handle-based access (see adapter.ts); with
 * hard_remove, fstat/fchmod/futimens of an unlinked open file fail with ENOENT.
 */
import path from 'node:path';

import type { Vfs } from '../../src/vfs/types.js';
import { buildHandlers, OpCounters } from './adapter.js';
import type { AdapterOptions } from './adapter.js';
import { FUSE_ROOT_ID, loadFuseNative } from './binding.js';
import type { FuseInstance, FuseNativeOptions } from './binding.js';
import { errnoNumber } from './errno.js';

export interface MountOptions extends AdapterOptions {
  /** big_writes + max_write (default true). */
  bigWrites?: boolean;
  /** Bytes per write request with bigWrites (default 131072, the libfuse 2.9 maximum). */
  maxWrite?: number;
  /** max_read=N (default: unset, i.e. kernel default). */
  maxRead?: number;
  /**
   * Page cache policy across opens: 'auto' (auto_cache: keep while mtime/size unchanged;
   * default), 'kernel' (kernel_cache: always keep; only safe if nothing but this mount
   * changes the data), 'none' (drop on every open).
   */
  cache?: 'auto' | 'kernel' | 'none';
  /** Seconds the kernel caches attributes (attr_timeout, default 1). */
  attrTimeout?: number;
  /** Seconds the kernel caches name lookups (entry_timeout, default 1). */
  entryTimeout?: number;
  /** Seconds the kernel caches failed lookups (negative_timeout, default 0). */
  negativeTimeout?: number;
  /** default_permissions (default true). */
  defaultPermissions?: boolean;
  /** allow_other (default true; non-root needs user_allow_other in /etc/fuse.conf). */
  allowOther?: boolean;
  /** use_ino: st_ino from the Vfs (default true). */
  useIno?: boolean;
  /**
   * hard_remove + null paths for handle ops on unlinked files (default false: fstat, fchmod
   * and futimens of an unlinked open file then fail with ENOENT under libfuse 2.9).
   */
  hardRemove?: boolean;
  fsname?: string;
  subtype?: string;
  /** More raw -o options, appended last. */
  extraOptions?: string[];
  /** Fail an operation still running after this many ms with ETIMEDOUT (default 0: never). */
  opTimeoutMs?: number;
  /**
   * The Vfs stores extended attributes in the user.* namespace only: a getxattr of any other
   * name (security.capability before every write, the ACL and SELinux names `ls -l` asks for) is
   * answered ENODATA by the binding itself, without the round trip to JavaScript (default false).
   */
  userXattrsOnly?: boolean;
  /** Lazily unmount a stale (ENOTCONN) mount at the mountpoint first. */
  force?: boolean;
  /** libfuse debug output on stderr. */
  debug?: boolean;
}

export interface FuseMount {
  readonly mountpoint: string;
  /** The -o options the mount was made with. */
  readonly options: readonly string[];
  /** The counters given in the options, or undefined. */
  readonly counters: OpCounters | undefined;
  /** Unmount (fusermount -uz; as root falling back to umount -l). Idempotent. */
  unmount(): Promise<void>;
  /**
   * Ask the kernel to drop cached state for path. libfuse 2.9's high-level API does not expose
   * kernel node ids, so this is exact only for "/" (root inode: attributes and directory) and
   * for direct children of the root; for a deeper path the top-level entry containing it is
   * invalidated, which makes the kernel look up (and re-stat) that whole subtree again.
   * Page-cache data of a regular file below the root is not dropped by this (auto_cache drops
   * it on the next open once getattr shows a changed mtime or size).
   */
  invalidate(p: string): Promise<void>;
}

/** The -o option list for MountOptions (exported for tests and logging). */
export function fuseMountOptions(o: MountOptions = {}): string[] {
  const out: string[] = [];
  const num = (name: string, v: number) => {
    if (!Number.isFinite(v) || v < 0) throw new Error(`mount option ${name}: bad value ${v}`);
    out.push(`${name}=${v}`);
  };
  const word = (name: string, v: string) => {
    if (!/^[A-Za-z0-9_.:-]+$/.test(v)) throw new Error(`mount option ${name}: bad value ${JSON.stringify(v)}`);
    out.push(`${name}=${v}`);
  };
  word('fsname', o.fsname ?? 'roamfs');
  word('subtype', o.subtype ?? 'roamfs');
  if (o.bigWrites ?? true) {
    out.push('big_writes');
    num('max_write', o.maxWrite ?? 131072);
  }
  if (o.maxRead !== undefined) num('max_read', o.maxRead);
  const cache = o.cache ?? 'auto';
  if (cache === 'auto') out.push('auto_cache');
  else if (cache === 'kernel') out.push('kernel_cache');
  num('attr_timeout', o.attrTimeout ?? 1);
  num('entry_timeout', o.entryTimeout ?? 1);
  num('negative_timeout', o.negativeTimeout ?? 0);
  if (o.defaultPermissions ?? true) out.push('default_permissions');
  if (o.allowOther ?? true) out.push('allow_other');
  if (o.useIno ?? true) out.push('use_ino');
  if (o.hardRemove ?? false) out.push('hard_remove');
  for (const x of o.extraOptions ?? []) out.push(x);
  return out;
}

function nodeCb(resolve: () => void, reject: (e: Error) => void) {
  return (err: Error | null) => (err ? reject(err) : resolve());
}

// fuse-native keeps libuv handles and the FUSE thread's state inside buffers owned by the
// Fuse object; the FUSE thread may still touch them after unmount returns. Never let a
// mounted-once instance be garbage collected.
const keepAlive = new Set<FuseInstance>();

/** Mount vfs at mountpoint; resolves once the kernel has completed the FUSE handshake. */
export async function mountFuse(mountpoint: string, vfs: Vfs, options: MountOptions = {}): Promise<FuseMount> {
  const Fuse = loadFuseNative();
  const mnt = path.resolve(mountpoint);
  const fuseOptions = fuseMountOptions(options);
  const hardRemove = options.hardRemove ?? false;
  const nativeOpts: FuseNativeOptions = {
    options: fuseOptions,
    nullPathOk: hardRemove,
    // Not flag_nopath: libfuse 2.9 then also withholds the path from readdir, which the Vfs
    // needs (it has no opendir handles).
    noPath: false,
    xattrUserOnly: options.userXattrsOnly ?? false,
    timeout: options.opTimeoutMs && options.opTimeoutMs > 0 ? options.opTimeoutMs : 0,
    force: options.force ?? false,
    mkdir: false,
    debug: options.debug ?? false,
  };
  // Without the per-op timeout only the handlers answer, after the Vfs is done with write data.
  const handlers = buildHandlers(vfs, { ...options, copyWriteData: options.copyWriteData ?? nativeOpts.timeout !== 0 });
  const fuse = new Fuse(mnt, handlers, nativeOpts);
  keepAlive.add(fuse);
  await new Promise<void>((resolve, reject) => fuse.mount(nodeCb(resolve, reject)));

  let unmounting: Promise<void> | undefined;
  const notify = (fn: (cb: (res: number) => void) => void) =>
    new Promise<void>((resolve, reject) => {
      fn((res) => {
        // ENOENT: nothing cached for that name, which is what we wanted.
        if (res === 0 || res === -(errnoNumber('ENOENT') ?? 2)) resolve();
        else reject(new Error(`fuse notify failed: errno ${-res}`));
      });
    });

  return {
    mountpoint: mnt,
    options: fuseOptions,
    counters: options.counters,
    unmount() {
      unmounting ??= new Promise<void>((resolve, reject) => fuse.unmount(nodeCb(resolve, reject)));
      return unmounting;
    },
    async invalidate(p: string) {
      if (unmounting) return;
      const parts = p.split('/').filter((s) => s !== '');
      if (parts.length === 0) {
        await notify((cb) => fuse.notifyInvalInode(FUSE_ROOT_ID, 0, 0, cb));
        return;
      }
      await notify((cb) => fuse.notifyInvalEntry(FUSE_ROOT_ID, parts[0]!, cb));
    },
  };
}

export { OpCounters };
