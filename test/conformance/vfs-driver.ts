import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { Repository } from '../../src/repository/repository.js';
import { OverlayVfs, type OverlayVfsOptions } from '../../src/vfs/overlay-vfs.js';
import { FsError, type Attr, type Caller } from '../../src/vfs/types.js';
import type { DriverFactory, FsDriver, FsFile, FsStat } from './driver.js';

/** FsError -> an Error with `code`, like node:fs, so the suite sees one error shape. */
async function call<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof FsError) throw Object.assign(new Error(err.message), { code: err.errno, cause: err });
    throw err;
  }
}

function stat(a: Attr): FsStat {
  return { ...a };
}

/** An FsDriver over an OverlayVfs, for the conformance suite without a kernel. */
export function vfsDriver(vfs: OverlayVfs, clock: ManualClock, caller: Caller): FsDriver {
  const file = (fh: number): FsFile => ({
    read: (buf, pos) => call(() => vfs.read(fh, buf, buf.length, pos)),
    write: (buf, pos) => call(() => vfs.write(fh, buf, buf.length, pos)),
    truncate: (size) => call(() => vfs.ftruncate(fh, size)),
    sync: () => call(() => vfs.fsync(fh, false)),
    stat: async () => stat(await call(() => vfs.fgetattr(fh))),
    close: () =>
      call(async () => {
        await vfs.flush(fh);
        await vfs.release(fh);
      }),
  });
  return {
    uid: caller.uid,
    gid: caller.gid,
    caps: { chown: true, xattr: true, hardlinks: 'eperm' },
    tick: async () => clock.advance(1000),
    open: async (p, flags, mode = 0o644) =>
      file(await call(() => ((flags & fsp.constants.O_CREAT) !== 0 ? vfs.create(p, mode, flags, caller) : vfs.open(p, flags)))),
    stat: async (p) => stat(await call(() => vfs.getattr(p))),
    readdir: async (p) => (await call(() => vfs.readdir(p))).map((e) => e.name),
    mkdir: (p, mode) => call(() => vfs.mkdir(p, mode, caller)),
    rmdir: (p) => call(() => vfs.rmdir(p)),
    unlink: (p) => call(() => vfs.unlink(p)),
    rename: (a, b) => call(() => vfs.rename(a, b)),
    symlink: (target, p) => call(() => vfs.symlink(target, p, caller)),
    readlink: (p) => call(() => vfs.readlink(p)),
    link: (a, b) => call(() => vfs.link(a, b)),
    chmod: (p, mode) => call(() => vfs.chmod(p, mode)),
    chown: (p, uid, gid) => call(() => vfs.chown(p, uid, gid)),
    utimens: (p, a, m) => call(() => vfs.utimens(p, a, m)),
    truncate: (p, size) => call(() => vfs.truncate(p, size)),
    statfs: () => call(() => vfs.statfs()),
    setxattr: (p, n, v, f) => call(() => vfs.setxattr(p, n, v, f)),
    getxattr: (p, n) => call(() => vfs.getxattr(p, n)),
    listxattr: (p) => call(() => vfs.listxattr(p)),
    removexattr: (p, n) => call(() => vfs.removexattr(p, n)),
  };
}

/**
 * Each test: a new empty profile in an in-memory repository, a temp cache directory.
 * `upperFiles`: where written files live (default: small ones in memory), named in the suite.
 */
export function memoryVfsFactory(o: { name?: string; upperFiles?: OverlayVfsOptions['upperFiles'] } = {}): DriverFactory {
  const dirs = new Map<FsDriver, string>();
  const vfss = new Map<FsDriver, OverlayVfs>();
  return {
    name: o.name ?? 'vfs',
    async open() {
      const clock = new ManualClock();
      const repo = await Repository.init(new MemoryBackend(clock));
      const cacheDir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-conf-'));
      const vfs = await OverlayVfs.open({ remote: repo, user: 'alice', cacheDir, clock, uid: 1000, gid: 1000, ...(o.upperFiles ? { upperFiles: o.upperFiles } : {}) });
      const d = vfsDriver(vfs, clock, { uid: 1000, gid: 1000, pid: 1 });
      dirs.set(d, cacheDir);
      vfss.set(d, vfs);
      return d;
    },
    async close(d) {
      await vfss.get(d)?.close();
      await fsp.rm(dirs.get(d)!, { recursive: true, force: true });
    },
  };
}
