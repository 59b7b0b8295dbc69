import { constants as C } from 'node:fs';
import { FsError, type Vfs } from './types.js';

/**
 * A Vfs that refuses every change with EROFS, as a read-only mount does (`roamfs mount
 * --read-only`; the FUSE mount is also made with `ro`, so the kernel refuses most changes
 * before they get here). Reads, listings, attributes and opens for reading pass through.
 */
export function readOnlyVfs(inner: Vfs): Vfs {
  const refuse = (): Promise<never> => Promise.reject(new FsError('EROFS'));
  const writes = C.O_WRONLY | C.O_RDWR | C.O_TRUNC | C.O_APPEND | C.O_CREAT;
  return {
    getattr: (p) => inner.getattr(p),
    fgetattr: (fh) => inner.fgetattr(fh),
    readdir: (p) => inner.readdir(p),
    readlink: (p) => inner.readlink(p),
    open: (p, flags) => ((flags & writes) !== 0 ? refuse() : inner.open(p, flags)),
    create: refuse,
    read: (fh, buf, length, position) => inner.read(fh, buf, length, position),
    write: refuse,
    flush: (fh) => inner.flush(fh),
    fsync: (fh, datasync) => inner.fsync(fh, datasync),
    release: (fh) => inner.release(fh),
    truncate: refuse,
    ftruncate: refuse,
    mkdir: refuse,
    unlink: refuse,
    rmdir: refuse,
    rename: refuse,
    symlink: refuse,
    link: refuse,
    chmod: refuse,
    chown: refuse,
    utimens: refuse,
    statfs: () => inner.statfs(),
    setxattr: refuse,
    getxattr: (p, name) => inner.getxattr(p, name),
    listxattr: (p) => inner.listxattr(p),
    removexattr: refuse,
  };
}
