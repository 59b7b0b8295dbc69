/**
 * Test helper: a Vfs that passes through to a directory on disk, with knobs for the FUSE
 * tests (artificial delays, write-size histogram, in-flight tracking).
 *
 * Not a product: xattrs live in memory (Node has no xattr API), utimens shells out to
 * touch(1) (Node's utimes takes floating-point seconds, which cannot carry nanoseconds, and
 * cannot leave one of the two times unchanged).
 */
import { execFile } from 'node:child_process';
import { constants as fsConstants } from 'node:fs';
import type { BigIntStats } from 'node:fs';
import fs from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

import { FsError, statfsOf } from '../../src/vfs/types.js';
import type { Attr, Caller, DirEntry, Errno, StatFs, TimeSpec, Vfs } from '../../src/vfs/types.js';

const execFileP = promisify(execFile);

const KNOWN: ReadonlySet<string> = new Set<Errno>([
  'ENOENT', 'EEXIST', 'ENOTDIR', 'EISDIR', 'ENOTEMPTY', 'EACCES', 'EPERM', 'EINVAL', 'EIO', 'EDQUOT',
  'ENOSPC', 'EXDEV', 'ENAMETOOLONG', 'ENOTSUP', 'ENODATA', 'EBADF', 'ELOOP', 'EMLINK', 'ERANGE',
  'EROFS', 'EFBIG', 'ENOSYS', 'EBUSY',
]);

function fsError(err: unknown): FsError {
  if (err instanceof FsError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  let name = typeof code === 'string' ? code : 'EIO';
  if (name === 'EOPNOTSUPP') name = 'ENOTSUP';
  return new FsError((KNOWN.has(name) ? name : 'EIO') as Errno, String((err as Error)?.message ?? err), { cause: err });
}

function attrOf(st: BigIntStats): Attr {
  return {
    ino: Number(st.ino),
    mode: Number(st.mode),
    nlink: Number(st.nlink),
    uid: Number(st.uid),
    gid: Number(st.gid),
    size: Number(st.size),
    atimeNs: st.atimeNs,
    mtimeNs: st.mtimeNs,
    ctimeNs: st.ctimeNs,
  };
}

function timeArg(t: bigint): string {
  const sec = t / 1_000_000_000n;
  let ns = t % 1_000_000_000n;
  let s = sec;
  if (ns < 0n) {
    ns += 1_000_000_000n;
    s -= 1n;
  }
  return `@${s}.${ns.toString().padStart(9, '0')}`;
}

export interface PassthroughOptions {
  /** Delay every operation on a path whose last component starts with slowPrefix. */
  slowPrefix?: string;
  slowMs?: number;
}

export interface PassthroughStats {
  /** write request size → count */
  writeSizes: Record<string, number>;
  ops: Record<string, number>;
  maxInFlight: number;
}

export class PassthroughVfs implements Vfs {
  private readonly handles = new Map<number, { fh: FileHandle; path: string }>();
  private nextFh = 1;
  private readonly xattrs = new Map<string, Map<string, Buffer>>();
  private inFlight = 0;
  readonly stats: PassthroughStats = { writeSizes: {}, ops: {}, maxInFlight: 0 };

  constructor(
    readonly root: string,
    private readonly opts: PassthroughOptions = {},
  ) {}

  private real(p: string): string {
    if (!p.startsWith('/')) throw new FsError('EINVAL', `relative path ${p}`);
    return path.join(this.root, p);
  }

  private async op<T>(name: string, p: string | null, fn: () => Promise<T>): Promise<T> {
    this.stats.ops[name] = (this.stats.ops[name] ?? 0) + 1;
    this.inFlight++;
    if (this.inFlight > this.stats.maxInFlight) this.stats.maxInFlight = this.inFlight;
    try {
      const { slowPrefix, slowMs } = this.opts;
      if (slowPrefix && slowMs && p !== null && path.basename(p).startsWith(slowPrefix)) {
        await new Promise((r) => setTimeout(r, slowMs));
      }
      return await fn();
    } catch (err) {
      throw fsError(err);
    } finally {
      this.inFlight--;
    }
  }

  private handle(fh: number): { fh: FileHandle; path: string } {
    const h = this.handles.get(fh);
    if (!h) throw new FsError('EBADF', `no handle ${fh}`);
    return h;
  }

  private addHandle(fh: FileHandle, p: string): number {
    const n = this.nextFh++;
    this.handles.set(n, { fh, path: p });
    return n;
  }

  getattr(p: string): Promise<Attr> {
    return this.op('getattr', p, async () => attrOf(await fs.lstat(this.real(p), { bigint: true })));
  }

  fgetattr(fh: number): Promise<Attr> {
    return this.op('fgetattr', null, async () => {
      const h = this.handle(fh);
      return attrOf(await h.fh.stat({ bigint: true }));
    });
  }

  readdir(p: string): Promise<DirEntry[]> {
    return this.op('readdir', p, async () => {
      const names = await fs.readdir(this.real(p));
      return names.map((name) => ({ name }));
    });
  }

  readlink(p: string): Promise<string> {
    return this.op('readlink', p, () => fs.readlink(this.real(p)));
  }

  open(p: string, flags: number): Promise<number> {
    return this.op('open', p, async () => this.addHandle(await fs.open(this.real(p), flags), p));
  }

  create(p: string, mode: number, flags: number, caller?: Caller): Promise<number> {
    return this.op('create', p, async () => {
      const real = this.real(p);
      const fh = await fs.open(real, flags | fsConstants.O_CREAT, mode);
      if (caller) await fs.lchown(real, caller.uid, caller.gid).catch(() => undefined);
      return this.addHandle(fh, p);
    });
  }

  read(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    return this.op('read', null, async () => {
      const h = this.handle(fh);
      const { bytesRead } = await h.fh.read(buf, 0, length, position);
      return bytesRead;
    });
  }

  write(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    return this.op('write', null, async () => {
      const k = String(length);
      this.stats.writeSizes[k] = (this.stats.writeSizes[k] ?? 0) + 1;
      const h = this.handle(fh);
      let done = 0;
      while (done < length) {
        const { bytesWritten } = await h.fh.write(buf, done, length - done, position + done);
        if (bytesWritten === 0) break;
        done += bytesWritten;
      }
      return done;
    });
  }

  flush(fh: number): Promise<void> {
    return this.op('flush', null, async () => {
      this.handle(fh);
    });
  }

  fsync(fh: number, datasync: boolean): Promise<void> {
    return this.op('fsync', null, async () => {
      const h = this.handle(fh);
      if (datasync) await h.fh.datasync();
      else await h.fh.sync();
    });
  }

  release(fh: number): Promise<void> {
    return this.op('release', null, async () => {
      const h = this.handle(fh);
      this.handles.delete(fh);
      await h.fh.close();
    });
  }

  truncate(p: string, size: number): Promise<void> {
    return this.op('truncate', p, () => fs.truncate(this.real(p), size));
  }

  ftruncate(fh: number, size: number): Promise<void> {
    return this.op('ftruncate', null, () => this.handle(fh).fh.truncate(size));
  }

  mkdir(p: string, mode: number, caller?: Caller): Promise<void> {
    return this.op('mkdir', p, async () => {
      await fs.mkdir(this.real(p), { mode });
      if (caller) await fs.lchown(this.real(p), caller.uid, caller.gid).catch(() => undefined);
    });
  }

  unlink(p: string): Promise<void> {
    return this.op('unlink', p, async () => {
      await fs.unlink(this.real(p));
      this.xattrs.delete(p);
    });
  }

  rmdir(p: string): Promise<void> {
    return this.op('rmdir', p, () => fs.rmdir(this.real(p)));
  }

  rename(from: string, to: string): Promise<void> {
    return this.op('rename', from, async () => {
      await fs.rename(this.real(from), this.real(to));
      const x = this.xattrs.get(from);
      this.xattrs.delete(from);
      if (x) this.xattrs.set(to, x);
    });
  }

  symlink(target: string, p: string, caller?: Caller): Promise<void> {
    return this.op('symlink', p, async () => {
      await fs.symlink(target, this.real(p));
      if (caller) await fs.lchown(this.real(p), caller.uid, caller.gid).catch(() => undefined);
    });
  }

  link(existing: string, p: string): Promise<void> {
    return this.op('link', p, () => fs.link(this.real(existing), this.real(p)));
  }

  chmod(p: string, mode: number): Promise<void> {
    return this.op('chmod', p, () => fs.chmod(this.real(p), mode));
  }

  chown(p: string, uid: number, gid: number): Promise<void> {
    return this.op('chown', p, () => fs.lchown(this.real(p), uid, gid));
  }

  utimens(p: string, atime: TimeSpec, mtime: TimeSpec): Promise<void> {
    return this.op('utimens', p, async () => {
      const real = this.real(p);
      // touch -a / -m change one time and leave the other alone (UTIME_OMIT); without -d
      // the time is UTIME_NOW.
      const run = async (flag: '-a' | '-m', t: TimeSpec) => {
        if (t === 'omit') return;
        const args = ['-h', '-c', flag];
        if (t !== 'now') args.push('-d', timeArg(t));
        await execFileP('touch', [...args, '--', real]);
      };
      await fs.lstat(real);
      await run('-a', atime);
      await run('-m', mtime);
    });
  }

  statfs(): Promise<StatFs> {
    return this.op('statfs', null, async () => {
      return statfsOf(this.root);
    });
  }

  setxattr(p: string, name: string, value: Buffer, flags: number): Promise<void> {
    return this.op('setxattr', p, async () => {
      await fs.lstat(this.real(p));
      let m = this.xattrs.get(p);
      const XATTR_CREATE = 1;
      const XATTR_REPLACE = 2;
      if (flags & XATTR_CREATE && m?.has(name)) throw new FsError('EEXIST');
      if (flags & XATTR_REPLACE && !m?.has(name)) throw new FsError('ENODATA');
      if (!m) this.xattrs.set(p, (m = new Map()));
      m.set(name, Buffer.from(value));
    });
  }

  getxattr(p: string, name: string): Promise<Buffer> {
    return this.op('getxattr', p, async () => {
      await fs.lstat(this.real(p));
      const v = this.xattrs.get(p)?.get(name);
      if (!v) throw new FsError('ENODATA');
      return v;
    });
  }

  listxattr(p: string): Promise<string[]> {
    return this.op('listxattr', p, async () => {
      await fs.lstat(this.real(p));
      return [...(this.xattrs.get(p)?.keys() ?? [])];
    });
  }

  removexattr(p: string, name: string): Promise<void> {
    return this.op('removexattr', p, async () => {
      await fs.lstat(this.real(p));
      if (!this.xattrs.get(p)?.delete(name)) throw new FsError('ENODATA');
    });
  }
}
