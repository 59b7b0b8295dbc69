import * as fs from 'node:fs';
import * as path from 'node:path';
import { ioError, isRoamfsError } from '../core/errors.js';
import { sha256, type ObjectId } from '../core/hash.js';
import { syncfsDir } from '../core/native.js';
import { defaultIoMode } from '../core/io-mode.js';
import { PosixBackend } from '../repository/posix.js';
import { Repository } from '../repository/repository.js';
import type { ObjectType } from '../repository/objects.js';
import type { Backend, ObjectBytes, ObjectInfo } from '../repository/backend.js';
import { PACK_MAX_OBJECT, PackStore, type PackLocation } from './packs.js';

/**
 * The local store's backend: objects of at most PACK_MAX_OBJECT stored bytes go into packs
 * (packs.ts), bigger ones into object files of the POSIX layout; everything else (config, refs,
 * state) is the POSIX backend's. A decorator, so the local store stays a Repository like any other.
 */
export class PackingBackend implements Backend {
  readonly location: string;
  /**
   * An object file was written since the last barrier, or may have been: true at first when the
   * store already holds object files (an earlier process may have written one without a sync).
   */
  private filesWritten: boolean;

  constructor(
    private readonly files: PosixBackend,
    readonly packs: PackStore,
    /** The clock for a packed object's mtime (ms). */
    private readonly now: () => number = Date.now,
  ) {
    this.location = files.location;
    this.filesWritten = fs.readdirSync(path.join(files.location, 'objects')).length > 0;
  }

  /** Where an object's own file is (whether or not it exists). */
  objectPath(id: ObjectId): string {
    return this.files.objectPath(id);
  }

  readConfig(): Promise<Buffer | null> {
    return this.files.readConfig();
  }
  initialize(config: Buffer): Promise<void> {
    return this.files.initialize(config);
  }

  async getObject(id: ObjectId): Promise<Buffer> {
    return (await this.packs.read(id)) ?? this.files.getObject(id);
  }

  /** Packed objects are never touched: the local store has no gc that would look at mtimes. */
  async putObject(id: ObjectId, data: ObjectBytes): Promise<boolean> {
    if (this.packs.has(id)) return false;
    const parts = Array.isArray(data) ? (data as readonly Uint8Array[]) : [data as Uint8Array];
    if (parts.reduce((n, p) => n + p.length, 0) > PACK_MAX_OBJECT) {
      const written = await this.files.putObject(id, parts);
      this.filesWritten ||= written;
      return written;
    }
    await this.packs.append(id, parts);
    return true;
  }

  async touchObject(id: ObjectId): Promise<boolean> {
    return this.packs.has(id) || this.files.touchObject(id);
  }

  /**
   * Make every object put so far durable: the packs' fdatasync, and a syncfs(2) of the file
   * system when an object too big for a pack was written as a file (the POSIX backend of the
   * local store is not durable by itself).
   */
  async barrier(): Promise<void> {
    await this.packs.sync();
    if (!this.filesWritten) return;
    this.filesWritten = false;
    try {
      await syncfsDir(this.location);
    } catch (err) {
      this.filesWritten = true;
      throw ioError(`sync ${this.location}`, err);
    }
  }

  async statObject(id: ObjectId): Promise<ObjectInfo | null> {
    const at = this.packs.locate(id);
    return at ? { id, size: at.size, mtimeMs: this.now() } : this.files.statObject(id);
  }

  async *listObjects(): AsyncIterable<ObjectInfo> {
    const now = this.now();
    for (const { id, size } of this.packs.list()) yield { id, size, mtimeMs: now };
    for await (const o of this.files.listObjects()) if (!this.packs.has(o.id)) yield o;
  }

  async deleteObject(id: ObjectId): Promise<void> {
    this.packs.forget(id);
    await this.files.deleteObject(id);
  }

  /** gc's quarantine is for shared repositories; the local store is never collected by gc. */
  async trashObject(id: ObjectId, batch: string): Promise<ObjectInfo | null> {
    if (this.packs.has(id)) throw new Error(`packed object ${id} of the local store cannot be moved to gc's trash`);
    return this.files.trashObject(id, batch);
  }
  restoreObject(id: ObjectId, batch: string): Promise<void> {
    return this.files.restoreObject(id, batch);
  }
  emptyTrash(batch: string): Promise<void> {
    return this.files.emptyTrash(batch);
  }

  listUsers(): Promise<string[]> {
    return this.files.listUsers();
  }
  listRefs(user: string): Promise<number[]> {
    return this.files.listRefs(user);
  }
  readRef(user: string, seq: number): Promise<Buffer | null> {
    return this.files.readRef(user, seq);
  }
  createRef(user: string, seq: number, data: Uint8Array): Promise<void> {
    return this.files.createRef(user, seq, data);
  }
  deleteRef(user: string, seq: number): Promise<void> {
    return this.files.deleteRef(user, seq);
  }
  readState(user: string, name: string): Promise<Buffer | null> {
    return this.files.readState(user, name);
  }
  writeState(user: string, name: string, data: Uint8Array): Promise<void> {
    return this.files.writeState(user, name, data);
  }
  listState(user: string): Promise<string[]> {
    return this.files.listState(user);
  }
  createState(user: string, name: string, data: Uint8Array): Promise<boolean> {
    return this.files.createState(user, name, data);
  }
  deleteState(user: string, name: string): Promise<void> {
    return this.files.deleteState(user, name);
  }
  storageNow(): Promise<number> {
    return this.files.storageNow();
  }
}

/**
 * The desktop's local object cache: itself a roamfs repository (same content addresses, same
 * layout) in CACHE/objects-repo, written without per-object fsync, except that objects (all
 * but huge ones) are appended to pack files in CACHE/objects-repo/packs (packs.ts). Durability comes from one
 * `sync()` barrier that the snapshotter issues when it needs one; after a crash an
 * object may be missing or (on some file systems) hold garbage, so every object is verified
 * against its id the first time this process uses it (`present` remembers the verified ones).
 */
export class LocalCache {
  /** Objects known to be complete and verified in this process. */
  private readonly present = new Set<ObjectId>();

  private constructor(
    readonly dir: string,
    readonly repo: Repository,
    private readonly backend: PackingBackend,
  ) {}

  /** Open (creating if needed) the cache under `cacheDir`. */
  static async open(cacheDir: string): Promise<LocalCache> {
    const dir = path.join(path.resolve(cacheDir), 'objects-repo');
    // Fan-out directories as objects arrive: a fresh cache (every login of a non-persistent
    // desktop) is then a few mkdirs, not 256 before the home can be mounted.
    const io = defaultIoMode();
    const files = new PosixBackend(dir, { durable: false, eagerFanOut: false, syncIo: io });
    let repo: Repository;
    try {
      await Repository.open(files);
    } catch (err) {
      if (!isRoamfsError(err, 'NO_REPOSITORY') && !isRoamfsError(err, 'NOT_A_REPOSITORY')) throw err;
      // The cache never chunks anything itself; the chunker parameters in its config are unused.
      await Repository.init(files);
    }
    const backend = new PackingBackend(files, PackStore.open(path.join(dir, 'packs'), io));
    repo = await Repository.open(backend);
    return new LocalCache(dir, repo, backend);
  }

  /**
   * Where an object's stored bytes are, for readers that pread in place: a pack and the offset
   * of the type byte, or the object's own file (offset 0). Chunk content starts at offset + 1.
   */
  locate(id: ObjectId): PackLocation {
    return this.backend.packs.locate(id) ?? { path: this.backend.objectPath(id), offset: 0, size: -1 };
  }

  /**
   * True when a complete, verified copy of the object (payload `size` bytes, when given) is here.
   * The first check of an object in this process reads and hashes it; a bad copy is removed.
   */
  async has(id: ObjectId, size?: number): Promise<boolean> {
    if (this.present.has(id)) return true;
    let data: Buffer;
    try {
      data = await this.backend.getObject(id);
    } catch (err) {
      if (isRoamfsError(err, 'MISSING_OBJECT')) return false;
      throw ioError(`read cached object ${id}`, err);
    }
    if ((size !== undefined && data.length !== size + 1) || sha256(data) !== id) {
      await this.backend.deleteObject(id);
      return false;
    }
    this.present.add(id);
    return true;
  }

  /** The payload of a cached object, or null when absent or damaged. */
  async get(id: ObjectId, type: ObjectType): Promise<Buffer | null> {
    try {
      const b = await this.repo.getObject(id, type);
      this.present.add(id);
      return b;
    } catch (err) {
      if (isRoamfsError(err, 'MISSING_OBJECT')) return null;
      if (isRoamfsError(err, 'CORRUPT_OBJECT')) {
        await this.backend.deleteObject(id);
        return null;
      }
      throw err;
    }
  }

  /**
   * Store an object whose payload was already verified against `id` (it came from the remote
   * repository, which checks every read), without hashing it again.
   */
  async putVerified(id: ObjectId, type: ObjectType, payload: Uint8Array): Promise<void> {
    await this.backend.putObject(id, [Buffer.of(type), payload]);
    this.present.add(id);
  }

  /** One durability barrier for everything written to the cache so far (PackingBackend.barrier). */
  sync(): Promise<void> {
    return this.backend.barrier();
  }

  /** Write the packs' pending index entries and close their descriptors (at unmount; the cache stays usable). */
  close(): void {
    this.backend.packs.close();
  }
}
