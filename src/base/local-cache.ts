import * as fsp from 'node:fs/promises';
import { constants as C } from 'node:fs';
import * as path from 'node:path';
import { errnoCode, ioError, isRoamfsError } from '../core/errors.js';
import { sha256, type ObjectId } from '../core/hash.js';
import { syncfsAsync } from '../core/native.js';
import { defaultIoMode } from '../core/io-mode.js';
import { PosixBackend } from '../repository/posix.js';
import { Repository } from '../repository/repository.js';
import type { ObjectType } from '../repository/objects.js';

/**
 * The desktop's local object cache: itself a roamfs repository (same content addresses, same
 * layout) in CACHE/objects-repo, written without per-object fsync. Durability comes from one
 * `sync()` (syncfs) barrier that the snapshotter issues when it needs one; after a crash an
 * object may be missing or (on some file systems) hold garbage, so every object is verified
 * against its id the first time this process uses it (`present` remembers the verified ones).
 */
export class LocalCache {
  /** Objects known to be complete and verified in this process. */
  private readonly present = new Set<ObjectId>();

  private constructor(
    readonly dir: string,
    readonly repo: Repository,
    private readonly backend: PosixBackend,
  ) {}

  /** Open (creating if needed) the cache under `cacheDir`. */
  static async open(cacheDir: string): Promise<LocalCache> {
    const dir = path.join(path.resolve(cacheDir), 'objects-repo');
    // Fan-out directories as objects arrive: a fresh cache (every login of a non-persistent
    // desktop) is then a few mkdirs, not 256 before the home can be mounted.
    const backend = new PosixBackend(dir, { durable: false, eagerFanOut: false, syncIo: defaultIoMode() });
    let repo: Repository;
    try {
      repo = await Repository.open(backend);
    } catch (err) {
      if (!isRoamfsError(err, 'NO_REPOSITORY') && !isRoamfsError(err, 'NOT_A_REPOSITORY')) throw err;
      // The cache never chunks anything itself; the chunker parameters in its config are unused.
      repo = await Repository.init(backend);
    }
    return new LocalCache(dir, repo, backend);
  }

  /** Path of an object's stored bytes; chunk content starts at offset 1 (after the type byte). */
  objectPath(id: ObjectId): string {
    return this.backend.objectPath(id);
  }

  /**
   * True when a complete, verified copy of the object (payload `size` bytes, when given) is here.
   * The first check of an object in this process reads and hashes it; a bad copy is removed.
   */
  async has(id: ObjectId, size?: number): Promise<boolean> {
    if (this.present.has(id)) return true;
    let data: Buffer;
    try {
      data = await fsp.readFile(this.objectPath(id));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return false;
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

  /** One durability barrier for everything written to the cache so far (syncfs(2)). */
  async sync(): Promise<void> {
    const h = await fsp.open(this.dir, C.O_RDONLY | C.O_DIRECTORY);
    try {
      await syncfsAsync(h.fd);
    } finally {
      await h.close();
    }
  }
}
