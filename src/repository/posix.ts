import * as fs from 'node:fs';
import { constants as C } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { RoamfsError, errnoCode, ioError } from '../core/errors.js';
import { isObjectId, type ObjectId } from '../core/hash.js';
import { syncfsDir } from '../core/native.js';
import type { IoMode } from '../core/io-mode.js';
import type { Backend, ObjectBytes, ObjectInfo } from './backend.js';

export const CONFIG_FILE = 'roamfs-repository.json';
const DIR_MODE = 0o700;
const FILE_MODE = 0o600;

/**
 * readFile, retried on ESTALE: on NFS and GlusterFS a file that another client replaced by
 * rename (two writers publishing the same object) invalidates handles opened just before.
 * The content under the name is the same immutable object, so reading it again is correct.
 */
async function readStable(p: string): Promise<Buffer> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fsp.readFile(p);
    } catch (err) {
      const code = errnoCode(err);
      if ((code !== 'ESTALE' && (err as { errno?: number }).errno !== -116) || attempt >= 5) throw err;
      // The client's cached name -> inode mapping is stale until its entry timeout passes.
      await new Promise((resolve) => setTimeout(resolve, 50 * 2 ** attempt));
    }
  }
}

/** Zero-padded so that lexical order is numeric order. */
export function refName(seq: number): string {
  return String(seq).padStart(12, '0');
}

/**
 * Put a name into the fan-out directory `dir` with `op` (link or rename); on ENOENT create the
 * directory (it may not exist: see eagerFanOut) and try once more. True when it was created
 * here (a durable write then also syncs objects/, which holds the new directory's name).
 */
async function inFanOut(dir: string, op: () => Promise<void>): Promise<boolean> {
  try {
    await op();
    return false;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
    const created = await fsp.mkdir(dir, { mode: DIR_MODE }).then(
      () => true,
      (e: unknown) => {
        if (errnoCode(e) !== 'EEXIST') throw e;
        return false;
      },
    );
    await op();
    return created;
  }
}

/** fsync(2) of a directory (its entries: a new name in it becomes durable). */
export async function fsyncDir(dir: string): Promise<void> {
  const h = await fsp.open(dir, C.O_RDONLY | C.O_DIRECTORY);
  try {
    await h.sync();
  } finally {
    await h.close();
  }
}

export interface PosixBackendOptions {
  /**
   * false: skip the per-object fsync of the file and its directory. Only for a local cache that
   * is made durable by one syncfs(2) barrier at a time of its owner's choosing (objects are still
   * written to a temp name and renamed, so a crash never leaves a partial object under its id,
   * but it may lose recent ones). Default true; refs and state are always durable.
   */
  durable?: boolean;
  /**
   * How a durable backend makes objects durable:
   * - 'object': fsync each object file and its directory (needed where syncfs is not a barrier
   *   for the storage behind it: NFS, FUSE file systems such as GlusterFS);
   * - 'barrier': write objects without fsync and issue one syncfs(2) in `barrier()`, which the
   *   Repository calls before every ref it creates (local file systems: one flush per commit
   *   instead of one per object);
   * - 'auto' (default): 'barrier' on ext4, xfs, btrfs, f2fs and tmpfs, 'object' elsewhere.
   */
  syncMode?: 'object' | 'barrier' | 'auto';
  /**
   * true (default): `initialize` creates the 256 fan-out directories of objects/ up front, one
   * mkdir less per object write (a shared repository is made once and written for years).
   * false: each is made by the first object stored in it (the desktop's local cache, made anew
   * at every login of a non-persistent desktop, where 256 mkdirs would delay the login). Either
   * way every write path creates a missing fan-out directory: repositories made before they
   * were pre-created have none.
   */
  eagerFanOut?: boolean;
  /**
   * Read and write objects with synchronous calls when this says so (see IoMode), where no
   * per-object fsync is needed (`durable: false`, or the 'barrier' sync mode of a local file
   * system): a thread-pool round trip per call costs more than the call. The daemon's local
   * cache, the daemon's repository when it is on a local file system (never a NAS or GlusterFS
   * mount: those take per-object fsyncs), and the CLI's import and export.
   */
  syncIo?: IoMode;
}

/** statfs(2) f_type of file systems whose syncfs(2) flushes everything to stable storage. */
const BARRIER_FS_TYPES = new Set([0xef53 /* ext2/3/4 */, 0x58465342 /* xfs */, 0x9123683e /* btrfs */, 0xf2f52010 /* f2fs */, 0x01021994 /* tmpfs */]);

/** writeParts with synchronous calls (one writev in the usual case). */
function writePartsSync(fd: number, parts: readonly Uint8Array[]): void {
  let rest = parts.filter((p) => p.length > 0);
  let position = 0;
  while (rest.length > 0) {
    const n = fs.writevSync(fd, rest as NodeJS.ArrayBufferView[], position);
    if (n <= 0) throw new Error('writev wrote nothing');
    position += n;
    let skip = n;
    while (rest.length > 0 && skip >= rest[0]!.length) skip -= rest.shift()!.length;
    if (skip > 0) rest[0] = rest[0]!.subarray(skip);
  }
}

/** Write the parts one after the other from offset 0 (writev; a short write goes on where it stopped). */
async function writeParts(h: fsp.FileHandle, parts: readonly Uint8Array[]): Promise<void> {
  let rest = parts.filter((p) => p.length > 0).map((p) => Buffer.from(p.buffer, p.byteOffset, p.length));
  let position = 0;
  while (rest.length > 0) {
    const { bytesWritten } = await h.writev(rest, position);
    if (bytesWritten <= 0) throw new Error('writev wrote nothing');
    position += bytesWritten;
    let skip = bytesWritten;
    while (rest.length > 0 && skip >= rest[0]!.length) skip -= rest.shift()!.length;
    if (skip > 0) rest[0] = rest[0]!.subarray(skip);
  }
}

/**
 * A repository in a POSIX directory: a local disk, a NAS mount, GlusterFS. Relies on atomic
 * rename(2), exclusive link(2) and fsync, as the format spec describes.
 */
export class PosixBackend implements Backend {
  readonly location: string;
  private readonly durable: boolean;
  private syncMode: 'object' | 'barrier' | 'auto';
  private readonly eagerFanOut: boolean;
  private readonly syncIo: IoMode | null;
  private readonly tmpPrefix = randomBytes(8).toString('hex');
  private tmpSeq = 0;
  /** Objects written since the last barrier (barrier mode only). */
  private unsynced = false;
  /** The barrier's sync in flight, if any (a concurrent barrier waits for it). */
  private syncing: Promise<void> | null = null;

  constructor(root: string, opts: PosixBackendOptions = {}) {
    this.location = path.resolve(root);
    this.durable = opts.durable ?? true;
    this.syncMode = opts.syncMode ?? 'auto';
    this.eagerFanOut = opts.eagerFanOut ?? true;
    this.syncIo = opts.syncIo ?? null;
  }

  /** Where an object's stored bytes live (type byte first); for readers that pread in place. */
  objectPath(id: ObjectId): string {
    return this.objPath(id);
  }

  private objPath(id: ObjectId): string {
    if (!isObjectId(id)) throw new Error(`not an object id: ${id}`);
    return path.join(this.location, 'objects', id.slice(0, 2), id);
  }
  private tmpDir(): string {
    return path.join(this.location, 'tmp');
  }
  private userDir(user: string): string {
    return path.join(this.location, 'users', user);
  }

  /** Write a file durably under tmp/ and return its path. */
  private async writeTemp(data: ObjectBytes, sync = true): Promise<string> {
    const tmp = this.tmpName();
    let h: fsp.FileHandle | undefined;
    try {
      h = await fsp.open(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL, FILE_MODE);
      await writeParts(h, Array.isArray(data) ? data : [data as Uint8Array]);
      if (sync) await h.sync();
      await h.close();
      h = undefined;
      return tmp;
    } catch (err) {
      await h?.close().catch(() => {});
      await fsp.rm(tmp, { force: true }).catch(() => {});
      throw ioError(`write ${tmp}`, err);
    }
  }

  async readConfig(): Promise<Buffer | null> {
    try {
      const st = await fsp.stat(this.location);
      if (!st.isDirectory()) throw new RoamfsError('NOT_A_REPOSITORY', `${this.location} is not a directory`);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') {
        throw new RoamfsError('NO_REPOSITORY', `repository ${this.location} does not exist`, {
          hint: 'create it with `roamfs init`',
        });
      }
      throw ioError(`stat ${this.location}`, err);
    }
    try {
      return await fsp.readFile(path.join(this.location, CONFIG_FILE));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw ioError(`read ${CONFIG_FILE}`, err);
    }
  }

  async initialize(config: Buffer): Promise<void> {
    await fsp.mkdir(this.location, { recursive: true, mode: DIR_MODE }).catch((e) => {
      throw ioError(`create ${this.location}`, e);
    });
    const entries = await fsp.readdir(this.location);
    if (entries.length > 0) {
      throw new RoamfsError('NOT_EMPTY', `${this.location} is not empty and is not a roamfs repository`);
    }
    try {
      await fsp.chmod(this.location, DIR_MODE);
      for (const d of ['objects', 'users', 'tmp']) await fsp.mkdir(path.join(this.location, d), { mode: DIR_MODE });
      // All 256 fan-out directories up front: one mkdir less per object write.
      if (this.eagerFanOut) for (let i = 0; i < 256; i++) await fsp.mkdir(path.join(this.location, 'objects', i.toString(16).padStart(2, '0')), { mode: DIR_MODE });
      const tmp = await this.writeTemp(config);
      // link, not rename: two concurrent inits cannot both succeed.
      await fsp.link(tmp, path.join(this.location, CONFIG_FILE));
      await fsp.unlink(tmp);
      await fsyncDir(this.location);
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') throw new RoamfsError('NOT_EMPTY', `${this.location} was initialized concurrently`);
      throw ioError(`initialize ${this.location}`, err);
    }
  }

  async getObject(id: ObjectId): Promise<Buffer> {
    try {
      if (await this.syncNowOk()) {
        const io = this.syncIo!;
        return io.time(() => fs.readFileSync(this.objPath(id)));
      }
      return await readStable(this.objPath(id));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') throw new RoamfsError('MISSING_OBJECT', `missing object ${id}`);
      throw ioError(`read object ${id}`, err);
    }
  }

  async touchObject(id: ObjectId): Promise<boolean> {
    const now = new Date();
    try {
      await fsp.utimes(this.objPath(id), now, now); // so that a running gc keeps it
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
      throw ioError(`touch object ${id}`, err);
    }
    // Another process (maybe one that was killed) may have written it without a sync yet: the
    // ref we are about to create must not reach it before a barrier.
    if (this.durable && (await this.mode()) === 'barrier') this.unsynced = true;
    return true;
  }

  /** Whether objects are read and written with synchronous calls now (see `syncIo`). */
  private async syncNowOk(): Promise<boolean> {
    return this.syncIo !== null && this.syncIo.sync && (!this.durable || (await this.mode()) === 'barrier');
  }

  async putObject(id: ObjectId, data: ObjectBytes): Promise<boolean> {
    if (await this.syncNowOk()) {
      const io = this.syncIo!;
      return io.time(() => this.putObjectSync(id, data));
    }
    const final = this.objPath(id);
    if (await this.touchObject(id)) return false; // exists: touched
    const perObject = this.durable && (await this.mode()) === 'object';
    const tmp = await this.writeTemp(data, perObject);
    const dir = path.dirname(final);
    // Publish with link(2), not rename(2): an object that another writer published meanwhile
    // is never replaced, so readers on NFS/GlusterFS never hold a handle to a replaced inode
    // (ESTALE). EEXIST simply means the same bytes are already there.
    let written = true;
    try {
      let newDir = false;
      try {
        newDir = await inFanOut(dir, () => fsp.link(tmp, final));
      } catch (err) {
        if (errnoCode(err) === 'EEXIST') written = false;
        else throw err;
      }
      if (perObject && newDir) await fsyncDir(path.dirname(dir));
      if (perObject) await fsyncDir(dir);
      else this.unsynced = true;
      return written;
    } catch (err) {
      throw ioError(`store object ${id}`, err);
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => {});
    }
  }

  /**
   * A temp file name no other writer uses: this backend's random prefix and a counter (a random
   * name per object cost ~12 µs of getrandom per object; O_EXCL catches the impossible clash).
   */
  private tmpName(): string {
    return path.join(this.tmpDir(), `${this.tmpPrefix}-${(++this.tmpSeq).toString(36)}.tmp`);
  }

  /** putObject with synchronous calls, for a non-durable store (the same steps, no fsync). */
  private putObjectSync(id: ObjectId, data: ObjectBytes): boolean {
    const final = this.objPath(id);
    // A stat that does not throw first: a failing utimesSync costs ~15 µs (Node builds an
    // exception), a stat ~4 µs, and most objects written are new.
    let exists: boolean;
    try {
      exists = fs.statSync(final, { throwIfNoEntry: false }) !== undefined;
    } catch (err) {
      throw ioError(`stat object ${id}`, err);
    }
    if (exists) {
      const now = new Date();
      try {
        fs.utimesSync(final, now, now);
        // As in touchObject: a killed writer may have left it unsynced; the next ref needs a barrier.
        if (this.durable) this.unsynced = true;
        return false; // exists: touched
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw ioError(`touch object ${id}`, err); // else: removed meanwhile (gc): write it
      }
    }
    const tmp = this.tmpName();
    const link = (): boolean => {
      try {
        fs.linkSync(tmp, final);
        return true;
      } catch (err) {
        if (errnoCode(err) === 'EEXIST') return false;
        throw err;
      }
    };
    try {
      const fd = fs.openSync(tmp, C.O_WRONLY | C.O_CREAT | C.O_EXCL, FILE_MODE);
      try {
        writePartsSync(fd, Array.isArray(data) ? data : [data as Uint8Array]);
      } finally {
        fs.closeSync(fd);
      }
      let written: boolean;
      try {
        written = link();
      } catch (err) {
        if (errnoCode(err) !== 'ENOENT') throw err;
        try {
          fs.mkdirSync(path.dirname(final), { mode: DIR_MODE }); // a fan-out directory made on demand
        } catch (e) {
          if (errnoCode(e) !== 'EEXIST') throw e;
        }
        written = link();
      }
      this.unsynced = true;
      return written;
    } catch (err) {
      throw ioError(`store object ${id}`, err);
    } finally {
      try {
        fs.unlinkSync(tmp);
      } catch {
        // never created
      }
    }
  }

  /** Resolve 'auto' once, from the file system type of the repository. */
  private async mode(): Promise<'object' | 'barrier'> {
    if (this.syncMode === 'auto') {
      const st = await fsp.statfs(this.location).catch(() => null);
      this.syncMode = st && BARRIER_FS_TYPES.has(st.type) ? 'barrier' : 'object';
    }
    return this.syncMode;
  }

  async barrier(): Promise<void> {
    // A sync in flight may have begun after this caller's objects were put, or before: wait for
    // it (without it, a second caller saw `unsynced` false and returned before the disk flush),
    // then sync whatever is still unsynced.
    while (this.syncing) await this.syncing.catch(() => {});
    if (!this.unsynced) return;
    this.unsynced = false;
    const run = this.syncNow();
    this.syncing = run;
    try {
      await run;
    } finally {
      if (this.syncing === run) this.syncing = null;
    }
  }

  private async syncNow(): Promise<void> {
    try {
      await syncfsDir(this.location); // objects put meanwhile set `unsynced` again: the next barrier takes them
    } catch (err) {
      this.unsynced = true;
      throw ioError(`sync ${this.location}`, err);
    }
  }

  async statObject(id: ObjectId): Promise<ObjectInfo | null> {
    try {
      const st = await fsp.stat(this.objPath(id));
      return { id, size: st.size, mtimeMs: st.mtimeMs };
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw ioError(`stat object ${id}`, err);
    }
  }

  async *listObjects(): AsyncIterable<ObjectInfo> {
    const base = path.join(this.location, 'objects');
    const fans = (await fsp.readdir(base)).filter((d) => /^[0-9a-f]{2}$/.test(d)).sort();
    for (const fan of fans) {
      let names: string[];
      try {
        names = await fsp.readdir(path.join(base, fan));
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue;
        throw ioError(`list objects/${fan}`, err);
      }
      for (const name of names.sort()) {
        if (!isObjectId(name) || !name.startsWith(fan)) continue;
        const info = await this.statObject(name);
        if (info) yield info;
      }
    }
  }

  async deleteObject(id: ObjectId): Promise<void> {
    await fsp.rm(this.objPath(id), { force: true });
  }

  private trashPath(id: ObjectId, batch: string): string {
    if (!/^[A-Za-z0-9_-]+$/.test(batch)) throw new Error(`bad trash batch ${batch}`);
    return path.join(this.tmpDir(), `trash-${batch}`, id);
  }

  async trashObject(id: ObjectId, batch: string): Promise<ObjectInfo | null> {
    const dest = this.trashPath(id, batch);
    await fsp.mkdir(path.dirname(dest), { recursive: true, mode: DIR_MODE });
    try {
      await fsp.rename(this.objPath(id), dest);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw ioError(`trash object ${id}`, err);
    }
    const st = await fsp.stat(dest);
    return { id, size: st.size, mtimeMs: st.mtimeMs };
  }

  async restoreObject(id: ObjectId, batch: string): Promise<void> {
    const final = this.objPath(id);
    try {
      // ENOENT after that: the object is not in the trash (restored already).
      if (await inFanOut(path.dirname(final), () => fsp.rename(this.trashPath(id, batch), final))) await fsyncDir(path.dirname(path.dirname(final)));
      await fsyncDir(path.dirname(final));
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT') throw ioError(`restore object ${id}`, err);
    }
  }

  async emptyTrash(batch: string): Promise<void> {
    await fsp.rm(path.dirname(this.trashPath('0'.repeat(64), batch)), { recursive: true, force: true });
  }

  async listUsers(): Promise<string[]> {
    try {
      return (await fsp.readdir(path.join(this.location, 'users'))).sort();
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw ioError('list users', err);
    }
  }

  async listRefs(user: string): Promise<number[]> {
    try {
      const names = await fsp.readdir(path.join(this.userDir(user), 'refs'));
      return names
        .filter((n) => /^\d{12}$/.test(n))
        .map(Number)
        .sort((a, b) => a - b);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw ioError(`list refs of ${user}`, err);
    }
  }

  async readRef(user: string, seq: number): Promise<Buffer | null> {
    try {
      return await readStable(path.join(this.userDir(user), 'refs', refName(seq)));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw ioError(`read ref ${user}/${seq}`, err);
    }
  }

  async createRef(user: string, seq: number, data: Uint8Array): Promise<void> {
    const dir = path.join(this.userDir(user), 'refs');
    try {
      await fsp.mkdir(dir, { recursive: true, mode: DIR_MODE });
    } catch (err) {
      throw ioError(`create ${dir}`, err);
    }
    const tmp = await this.writeTemp(data);
    try {
      await fsp.link(tmp, path.join(dir, refName(seq)));
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') {
        throw new RoamfsError('HEAD_CONFLICT', `head of ${user} moved: ref ${seq} already exists`);
      }
      throw ioError(`create ref ${user}/${seq}`, err);
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => {});
    }
    await fsyncDir(dir);
  }

  async deleteRef(user: string, seq: number): Promise<void> {
    await fsp.rm(path.join(this.userDir(user), 'refs', refName(seq)), { force: true });
  }

  private statePath(user: string, name: string): string {
    if (!/^[a-z0-9][a-z0-9._-]*$/.test(name)) throw new Error(`bad state name ${name}`);
    return path.join(this.userDir(user), 'state', name);
  }

  async readState(user: string, name: string): Promise<Buffer | null> {
    try {
      return await readStable(this.statePath(user, name));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return null;
      throw ioError(`read state ${user}/${name}`, err);
    }
  }

  async writeState(user: string, name: string, data: Uint8Array): Promise<void> {
    const final = this.statePath(user, name);
    await fsp.mkdir(path.dirname(final), { recursive: true, mode: DIR_MODE });
    const tmp = await this.writeTemp(data);
    try {
      await fsp.rename(tmp, final);
      await fsyncDir(path.dirname(final));
    } catch (err) {
      await fsp.rm(tmp, { force: true }).catch(() => {});
      throw ioError(`write state ${user}/${name}`, err);
    }
  }

  async listState(user: string): Promise<string[]> {
    try {
      const names = await fsp.readdir(path.join(this.userDir(user), 'state'));
      return names.filter((n) => /^[a-z0-9][a-z0-9._-]*$/.test(n)).sort();
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return [];
      throw ioError(`list state of ${user}`, err);
    }
  }

  async createState(user: string, name: string, data: Uint8Array): Promise<boolean> {
    const final = this.statePath(user, name);
    await fsp.mkdir(path.dirname(final), { recursive: true, mode: DIR_MODE });
    const tmp = await this.writeTemp(data);
    try {
      await fsp.link(tmp, final);
    } catch (err) {
      if (errnoCode(err) === 'EEXIST') return false;
      throw ioError(`create state ${user}/${name}`, err);
    } finally {
      await fsp.rm(tmp, { force: true }).catch(() => {});
    }
    await fsyncDir(path.dirname(final));
    return true;
  }

  async deleteState(user: string, name: string): Promise<void> {
    try {
      await fsp.rm(this.statePath(user, name), { force: true });
    } catch (err) {
      throw ioError(`delete state ${user}/${name}`, err);
    }
  }

  async storageNow(): Promise<number> {
    const tmp = await this.writeTemp(Buffer.alloc(0));
    try {
      return (await fsp.stat(tmp)).mtimeMs;
    } finally {
      await fsp.rm(tmp, { force: true });
    }
  }
}
