/**
 * Kernel requests (fuse-native handler table) → Vfs calls.
 *
 * buildHandlers is pure: it allocates nothing global, loads no addon, and its handlers touch
 * only the Vfs, the callbacks and the injected hooks. Guarantees of every handler:
 * - the fuse-native callback is called exactly once (a second answer is dropped and logged);
 * - FsError / RoamfsError → negative errno (errno.ts); any other error, including a Vfs
 *   method that throws synchronously or returns a malformed value → EIO plus a log line;
 * - buffers owned by the native side are valid until the kernel is answered, which happens
 *   only once the Vfs's promise has settled: a read fills the native buffer before answering,
 *   and write data goes to the Vfs as it is (copying 128 KiB costs ~100 µs) unless
 *   `copyWriteData` asks for a copy (with fuse-native's per-op timeout, which can answer
 *   first); a setxattr value is copied before the Vfs sees it;
 * - onActivity('op', 'start' | 'end') around every operation, and optional per-op counters;
 *   onOpEnd(op, path, ns, result) after each one (metrics, trace logging).
 *
 * Open-unlinked files. libfuse 2.9's high-level API serves fstat/fchmod/futimens/ftruncate by
 * path (modern kernels send GETATTR without the file handle), so it cannot let the Vfs keep
 * serving an unlinked open file by handle alone. Without hard_remove it instead renames such
 * a file to "<dir>/.fuse_hidden<16 hex>" and unlinks that name at the last close. The handlers
 * turn this back into what the Vfs contract expects: the rename becomes vfs.unlink(src) (the
 * Vfs never sees a .fuse_hidden name), later path operations on the hidden name ("ghost") go
 * to the open handle (getattr → fgetattr, truncate → ftruncate), chmod/chown/utimens on a
 * ghost succeed without effect (the Vfs has no handle-based form), and the final unlink of the
 * hidden name is answered without a Vfs call. This needs the handlers to know which handles
 * are open on which path; they track that from open/create/rename/release.
 */
import type { Attr, Caller, DirEntry, StatFs, TimeSpec, Vfs } from '../../src/vfs/types.js';
import { FsError } from '../../src/vfs/types.js';
import type { FuseCaller, FuseOpName, FuseOps, FuseStat, FuseStatfs, FuseTimespec } from './binding.js';
import { UTIME_NOW, UTIME_OMIT } from './binding.js';
import { mapError } from './errno.js';

export type ActivityPhase = 'start' | 'end';

export interface OpCounter {
  count: number;
  errors: number;
  /** Total latency in nanoseconds. */
  totalNs: bigint;
  maxNs: bigint;
}

/** Per-op counters (count, errors, total and max latency), keyed by fuse op name. */
export class OpCounters {
  private readonly byOp = new Map<string, OpCounter>();
  private current = 0;
  private peak = 0;

  /** Called by the handlers; not for general use. */
  begin(): void {
    this.current++;
    if (this.current > this.peak) this.peak = this.current;
  }

  /** Called by the handlers; not for general use. */
  end(op: string, ns: bigint, failed: boolean): void {
    this.current--;
    let c = this.byOp.get(op);
    if (!c) {
      c = { count: 0, errors: 0, totalNs: 0n, maxNs: 0n };
      this.byOp.set(op, c);
    }
    c.count++;
    if (failed) c.errors++;
    c.totalNs += ns;
    if (ns > c.maxNs) c.maxNs = ns;
  }

  /** Operations in flight now. */
  get inFlight(): number {
    return this.current;
  }

  /** The most operations ever in flight at once (since the last reset). */
  get maxInFlight(): number {
    return this.peak;
  }

  /** A JSON-friendly copy: { op: { count, errors, totalMs, meanUs, maxMs } }. */
  snapshot(): Record<string, { count: number; errors: number; totalMs: number; meanUs: number; maxMs: number }> {
    const out: Record<string, { count: number; errors: number; totalMs: number; meanUs: number; maxMs: number }> = {};
    for (const [op, c] of [...this.byOp.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
      out[op] = {
        count: c.count,
        errors: c.errors,
        totalMs: Number(c.totalNs) / 1e6,
        meanUs: c.count ? Number(c.totalNs) / c.count / 1e3 : 0,
        maxMs: Number(c.maxNs) / 1e6,
      };
    }
    return out;
  }

  reset(): void {
    this.byOp.clear();
    this.peak = this.current;
  }
}

export interface AdapterOptions {
  /** Log sink for unexpected errors (EIO) and protocol violations; default: stderr. */
  log?: (line: string, err?: unknown) => void;
  /** Called at the start and end of every operation (idleness tracking). */
  onActivity?: (op: FuseOpName, phase: ActivityPhase) => void;
  /** Per-op counters for profiling; omitted = no timing overhead. */
  counters?: OpCounters;
  /**
   * Called once per operation, just before the kernel is answered: the op, its path, the time
   * it took (ns) and 'ok' or the errno name of the failure. Omitted = no timing overhead.
   */
  onOpEnd?: (op: FuseOpName, path: string | null, ns: bigint, result: string) => void;
  /** st_blksize reported in stat (the preferred I/O size tools like cp use); default 131072. */
  blksize?: number;
  /**
   * Copy write data out of the native buffer before the Vfs sees it (default true). Needed
   * only when something other than these handlers may answer the kernel while the Vfs still
   * holds the buffer: fuse-native's per-operation timeout (mountFuse decides).
   */
  copyWriteData?: boolean;
}

const S_IFDIR = 0o040000;
const PERM_MASK = 0o7777;
const UNCHANGED_ID = 0xffffffff;
const FUSE_UNKNOWN_INO = 0xffffffff;
const U32_MAX = 0xffffffff;

function defaultLog(line: string, err?: unknown): void {
  const detail = err instanceof Error ? (err.stack ?? err.message) : err === undefined ? '' : String(err);
  process.stderr.write(`${line}${detail ? `\n${detail}` : ''}\n`);
}

/** Malformed value from the Vfs: a bug, answered with EIO and logged. */
class VfsContractError extends Error {
  override readonly name = 'VfsContractError';
}

function checkCount(n: unknown, max: number, what: string): number {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > max) {
    throw new VfsContractError(`${what} returned ${String(n)} (want an integer 0..${max})`);
  }
  return n;
}

/** Attr → the stat fuse-native encodes (ns times, 512-byte blocks). */
export function toFuseStat(attr: Attr, blksize: number): FuseStat {
  const { ino, mode, nlink, uid, gid, size, atimeNs, mtimeNs, ctimeNs } = attr;
  for (const [k, v] of [['ino', ino], ['mode', mode], ['nlink', nlink], ['uid', uid], ['gid', gid], ['size', size]] as const) {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new VfsContractError(`attr.${k} is ${String(v)}`);
  }
  for (const [k, v] of [['atimeNs', atimeNs], ['mtimeNs', mtimeNs], ['ctimeNs', ctimeNs]] as const) {
    if (typeof v !== 'bigint') throw new VfsContractError(`attr.${k} is not a bigint`);
  }
  return {
    ino,
    mode,
    nlink,
    uid,
    gid,
    size,
    dev: 0,
    rdev: 0,
    blksize,
    blocks: Math.ceil(size / 512),
    atime: atimeNs,
    mtime: mtimeNs,
    ctime: ctimeNs,
  };
}

/** A raw timespec from utimens → the Vfs TimeSpec. */
export function toTimeSpec(ts: FuseTimespec): TimeSpec {
  if (ts.nsec === UTIME_NOW) return 'now';
  if (ts.nsec === UTIME_OMIT) return 'omit';
  return BigInt(ts.sec) * 1_000_000_000n + BigInt(ts.nsec);
}

/** StatFs → the statvfs fuse-native encodes (32-bit fields: scale frsize rather than wrap). */
export function toFuseStatfs(s: StatFs): FuseStatfs {
  let frsize = s.frsize || s.bsize || 4096;
  let { blocks, bfree, bavail } = s;
  while (blocks > U32_MAX || bfree > U32_MAX || bavail > U32_MAX) {
    frsize *= 2;
    blocks = Math.floor(blocks / 2);
    bfree = Math.floor(bfree / 2);
    bavail = Math.floor(bavail / 2);
  }
  const clamp = (n: number) => Math.min(Math.max(0, Math.floor(n)), U32_MAX);
  return {
    bsize: clamp(s.bsize),
    frsize: clamp(frsize),
    blocks: clamp(blocks),
    bfree: clamp(bfree),
    bavail: clamp(bavail),
    files: clamp(s.files),
    ffree: clamp(s.ffree),
    favail: clamp(s.favail),
    namemax: clamp(s.namemax),
  };
}

function toCaller(c: FuseCaller): Caller {
  return { uid: c.uid, gid: c.gid, pid: c.pid };
}

/** libfuse 2.9 hide_node(): ".fuse_hidden%08x%08x" in the same directory. */
const HIDDEN_NAME = /\/\.fuse_hidden[0-9a-f]{16}$/;

function dotStat(): FuseStat {
  return { ino: FUSE_UNKNOWN_INO, mode: S_IFDIR, nlink: 2, uid: 0, gid: 0, size: 0, atime: 0n, mtime: 0n, ctime: 0n };
}

/**
 * The fuse-native handler table for a Vfs. Pure: call it as often as you like; nothing happens
 * until the kernel (or a test) invokes a handler.
 */
export function buildHandlers(vfs: Vfs, opts: AdapterOptions = {}): FuseOps {
  const log = opts.log ?? defaultLog;
  const onActivity = opts.onActivity;
  const counters = opts.counters;
  const onOpEnd = opts.onOpEnd;
  const timed = counters !== undefined || onOpEnd !== undefined;
  const blksize = opts.blksize ?? 131072;
  const copyWriteData = opts.copyWriteData ?? true;

  const safeLog = (line: string, err?: unknown): void => {
    try {
      log(line, err);
    } catch {
      // a broken logger must not break answering the kernel
    }
  };

  const activity = (op: FuseOpName, phase: ActivityPhase): void => {
    if (!onActivity) return;
    try {
      onActivity(op, phase);
    } catch (err) {
      safeLog(`fuse: onActivity hook threw during ${op}`, err);
    }
  };

  /**
   * Run one operation: work() produces the Vfs result, reply() turns it into the callback's
   * arguments. The callback is called exactly once, with a negative errno on failure.
   */
  function run<T>(
    op: FuseOpName,
    path: string | null,
    cb: (...args: never[]) => void,
    work: () => Promise<T>,
    reply: (value: T) => unknown[],
  ): void {
    const answer = cb as unknown as (...args: unknown[]) => void;
    const start = timed ? process.hrtime.bigint() : 0n;
    let answered = false;
    counters?.begin();
    activity(op, 'start');

    const finish = (args: unknown[], failed: boolean, result = 'ok'): void => {
      if (answered) {
        safeLog(`fuse: ${op} ${path ?? ''}: second answer dropped`);
        return;
      }
      answered = true;
      if (timed) {
        const ns = process.hrtime.bigint() - start;
        counters?.end(op, ns, failed);
        if (onOpEnd) {
          try {
            onOpEnd(op, path, ns, result);
          } catch (err) {
            safeLog(`fuse: onOpEnd hook threw during ${op}`, err);
          }
        }
      }
      activity(op, 'end');
      try {
        answer(...args);
      } catch (err) {
        safeLog(`fuse: ${op} ${path ?? ''}: native callback threw`, err);
      }
    };

    const fail = (err: unknown): void => {
      const m = mapError(err);
      if (m.log) safeLog(`fuse: ${op} ${path ?? ''}: ${m.name}: ${err instanceof Error ? err.message : String(err)}`, err);
      finish([m.errno], true, m.name);
    };

    let promise: Promise<T>;
    try {
      promise = Promise.resolve(work());
    } catch (err) {
      promise = Promise.reject(err);
    }
    promise.then(
      (value) => {
        let args: unknown[];
        try {
          args = reply(value);
        } catch (err) {
          fail(err);
          return;
        }
        finish(args, false);
      },
      fail,
    );
  }

  const ok = (): unknown[] => [0];
  const noent = () => Promise.reject(new FsError('ENOENT'));

  // Handle → the path it was opened as (kept current across renames), and hidden names of
  // open-unlinked files → their handles (see the module comment).
  const openPaths = new Map<number, string>();
  const ghosts = new Map<string, number[]>();

  const isGhost = (path: string | null): boolean => ghosts.size > 0 && path !== null && ghosts.has(path);
  const ghostHandle = (path: string | null): number | undefined => (path === null ? undefined : ghosts.get(path)?.[0]);

  const movePaths = (from: string, to: string): void => {
    const prefix = from + '/';
    const moved = (p: string) => (p === from ? to : p.startsWith(prefix) ? to + p.slice(from.length) : undefined);
    for (const [fh, p] of openPaths) {
      const n = moved(p);
      if (n !== undefined) openPaths.set(fh, n);
    }
    for (const [g, fhs] of [...ghosts]) {
      const n = moved(g);
      if (n !== undefined) {
        ghosts.delete(g);
        ghosts.set(n, fhs);
      }
    }
  };

  const opened = (path: string, fh: number): number => {
    openPaths.set(fh, path);
    return fh;
  };

  return {
    init(cb) {
      cb(0);
    },

    getattr(path, cb) {
      const work = () => {
        if (!isGhost(path)) return vfs.getattr(path);
        const fh = ghostHandle(path);
        return fh === undefined ? noent() : vfs.fgetattr(fh);
      };
      run('getattr', path, cb, work, (a) => [0, toFuseStat(a, blksize)]);
    },

    fgetattr(path, fd, cb) {
      run('fgetattr', path, cb, () => vfs.fgetattr(fd), (a) => [0, toFuseStat(a, blksize)]);
    },

    readdir(path, cb) {
      // A null path: the directory was removed while open (hard_remove + nullpath_ok).
      const list = () => (path === null ? Promise.reject(new FsError('ENOENT')) : vfs.readdir(path));
      run('readdir', path, cb, list, (entries: DirEntry[]) => {
        const names = ['.', '..'];
        const stats: FuseStat[] = [dotStat(), dotStat()];
        let withStats = true;
        for (const e of entries) {
          if (typeof e.name !== 'string') throw new VfsContractError('readdir entry without a name');
          names.push(e.name);
          if (withStats && e.attr) stats.push(toFuseStat(e.attr, blksize));
          else withStats = false;
        }
        return withStats ? [0, names, stats] : [0, names];
      });
    },

    readlink(path, cb) {
      run('readlink', path, cb, () => vfs.readlink(path), (target) => {
        if (typeof target !== 'string') throw new VfsContractError('readlink returned a non-string');
        return [0, target];
      });
    },

    open(path, flags, cb) {
      const work = () => (isGhost(path) ? noent() : vfs.open(path, flags));
      run('open', path, cb, work, (fh) => [0, opened(path, checkCount(fh, 0x7fffffff, 'open'))]);
    },

    create(path, mode, flags, caller, cb) {
      run(
        'create',
        path,
        cb,
        () => vfs.create(path, mode & PERM_MASK, flags, toCaller(caller)),
        (fh) => [0, opened(path, checkCount(fh, 0x7fffffff, 'create'))],
      );
    },

    read(path, fd, buf, len, pos, cb) {
      // The native buffer stays valid until cb: the FUSE thread waits for the answer.
      run('read', path, cb, () => vfs.read(fd, buf, len, pos), (n) => [checkCount(n, len, 'read')]);
    },

    write(path, fd, buf, len, pos, cb) {
      // The native side owns buf and reuses / detaches it once the kernel is answered.
      let data = buf;
      if (copyWriteData) {
        data = Buffer.allocUnsafe(len);
        buf.copy(data, 0, 0, len);
      }
      run('write', path, cb, () => vfs.write(fd, data, len, pos), (n) => [checkCount(n, len, 'write')]);
    },

    flush(path, fd, cb) {
      run('flush', path, cb, () => vfs.flush(fd), ok);
    },

    fsync(path, datasync, fd, cb) {
      run('fsync', path, cb, () => vfs.fsync(fd, datasync !== 0), ok);
    },

    release(path, fd, cb) {
      // Forget the handle before the Vfs can hand its number out again.
      openPaths.delete(fd);
      for (const fhs of ghosts.values()) {
        const i = fhs.indexOf(fd);
        if (i >= 0) fhs.splice(i, 1);
      }
      run('release', path, cb, () => vfs.release(fd), ok);
    },

    truncate(path, size, cb) {
      const work = () => {
        if (!isGhost(path)) return vfs.truncate(path, size);
        const fh = ghostHandle(path);
        return fh === undefined ? noent() : vfs.ftruncate(fh, size);
      };
      run('truncate', path, cb, work, ok);
    },

    ftruncate(path, fd, size, cb) {
      run('ftruncate', path, cb, () => vfs.ftruncate(fd, size), ok);
    },

    mkdir(path, mode, caller, cb) {
      run('mkdir', path, cb, () => vfs.mkdir(path, mode & PERM_MASK, toCaller(caller)), ok);
    },

    unlink(path, cb) {
      if (isGhost(path)) {
        // libfuse removing the hidden name at the last close: the Vfs unlinked it long ago.
        ghosts.delete(path);
        run('unlink', path, cb, async () => undefined, ok);
        return;
      }
      run('unlink', path, cb, () => vfs.unlink(path), ok);
    },

    rmdir(path, cb) {
      run('rmdir', path, cb, () => vfs.rmdir(path), ok);
    },

    rename(src, dest, cb) {
      if (isGhost(src) || isGhost(dest)) {
        run('rename', src, cb, noent, ok);
        return;
      }
      const handles = HIDDEN_NAME.test(dest) ? [...openPaths].filter(([, p]) => p === src).map(([fh]) => fh) : [];
      if (handles.length > 0) {
        // libfuse hiding an open file it was asked to unlink (or to replace by a rename).
        run('rename', src, cb, () => vfs.unlink(src), () => {
          ghosts.set(dest, handles);
          for (const fh of handles) openPaths.set(fh, dest);
          return [0];
        });
        return;
      }
      run('rename', src, cb, () => vfs.rename(src, dest), () => {
        movePaths(src, dest);
        return [0];
      });
    },

    symlink(target, path, caller, cb) {
      run('symlink', path, cb, () => vfs.symlink(target, path, toCaller(caller)), ok);
    },

    link(existing, path, cb) {
      run('link', path, cb, () => vfs.link(existing, path), ok);
    },

    chmod(path, mode, cb) {
      const work = () => (isGhost(path) ? Promise.resolve() : vfs.chmod(path, mode & PERM_MASK));
      run('chmod', path, cb, work, ok);
    },

    chown(path, uid, gid, cb) {
      const u = uid === UNCHANGED_ID || uid === -1 ? -1 : uid;
      const g = gid === UNCHANGED_ID || gid === -1 ? -1 : gid;
      run('chown', path, cb, () => (isGhost(path) ? Promise.resolve() : vfs.chown(path, u, g)), ok);
    },

    utimens(path, atime, mtime, cb) {
      const work = () =>
        isGhost(path) ? Promise.resolve() : vfs.utimens(path, toTimeSpec(atime), toTimeSpec(mtime));
      run('utimens', path, cb, work, ok);
    },

    statfs(path, cb) {
      run('statfs', path, cb, () => vfs.statfs(), (s) => [0, toFuseStatfs(s)]);
    },

    setxattr(path, name, value, _position, flags, cb) {
      // Copy now: the native side owns value.
      const copy = Buffer.from(value);
      run('setxattr', path, cb, () => vfs.setxattr(path, name, copy, flags), ok);
    },

    getxattr(path, name, _position, cb) {
      run('getxattr', path, cb, () => vfs.getxattr(path, name), (v) => {
        if (!Buffer.isBuffer(v)) throw new VfsContractError('getxattr returned a non-Buffer');
        return [0, v];
      });
    },

    listxattr(path, cb) {
      run('listxattr', path, cb, () => vfs.listxattr(path), (names) => {
        if (!Array.isArray(names) || names.some((n) => typeof n !== 'string' || n === '')) {
          throw new VfsContractError('listxattr returned a bad list');
        }
        return [0, names];
      });
    },

    removexattr(path, name, cb) {
      run('removexattr', path, cb, () => vfs.removexattr(path, name), ok);
    },
  };
}
