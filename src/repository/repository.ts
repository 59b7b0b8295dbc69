import { randomBytes } from 'node:crypto';
import { RoamfsError, isRoamfsError } from '../core/errors.js';
import { systemClock, type Clock } from '../core/clock.js';
import { sha256, type ObjectId } from '../core/hash.js';
import { assertUserName } from '../core/names.js';
import type { Backend } from './backend.js';
import { Chunker, DEFAULT_CHUNKER, validateChunkerParams, type ChunkerParams } from './chunker.js';
import {
  TYPE_CHUNK, TYPE_COMMIT, TYPE_TREE, decodeCommit, decodeRef, decodeTree, encodeCommit, encodeRef, encodeTree,
  type Commit, type ObjectType, type Ref, type TreeEntry,
} from './objects.js';

export const FORMAT_NAME = 'roamfs-repository';
export const FORMAT_VERSION = 1;

export interface RepoConfig {
  format: typeof FORMAT_NAME;
  version: number;
  id: string;
  chunker: ChunkerParams & { algorithm: 'fastcdc' };
}

export interface RepoStats {
  objectsRead: number;
  bytesRead: number;
  objectsWritten: number;
  bytesWritten: number;
}

const TYPE_NAMES: Record<ObjectType, string> = { [TYPE_CHUNK]: 'chunk', [TYPE_TREE]: 'tree', [TYPE_COMMIT]: 'commit' };

/**
 * How long a put (write or touch) by this process vouches for an object before the next put of
 * the same id touches it again. Must stay well below gc's grace period (default 1 h): an object
 * that became unreachable can be deleted by gc once its mtime is older than the grace period, and
 * only a fresh touch (or ENOENT and a rewrite) protects a writer that references it again.
 */
export const KNOWN_TTL_MS = 10 * 60_000;

/**
 * A roamfs repository over any Backend: typed, verified objects and the per-user refs with
 * compare-and-swap (docs/repository-format.md). Stateless apart from counters and a cache of
 * object ids already made durable by this process.
 */
export class Repository {
  readonly stats: RepoStats = { objectsRead: 0, bytesRead: 0, objectsWritten: 0, bytesWritten: 0 };
  readonly chunker: Chunker;
  /** Objects this process has stored or touched, and when (clock ms): no need to touch them again for KNOWN_TTL_MS. */
  private readonly known = new Map<ObjectId, number>();

  private constructor(
    readonly backend: Backend,
    readonly config: RepoConfig,
    private readonly clock: Clock = systemClock,
  ) {
    this.chunker = new Chunker(config.chunker);
  }

  static async init(backend: Backend, chunker: ChunkerParams = DEFAULT_CHUNKER, opts: { clock?: Clock } = {}): Promise<Repository> {
    const config: RepoConfig = {
      format: FORMAT_NAME,
      version: FORMAT_VERSION,
      id: randomBytes(8).toString('hex'),
      chunker: { algorithm: 'fastcdc', ...chunker },
    };
    const existing = await backend.readConfig().catch((e) => (isRoamfsError(e, 'NO_REPOSITORY') ? null : Promise.reject(e)));
    if (existing) throw new RoamfsError('NOT_EMPTY', `${backend.location} is already a roamfs repository`);
    await backend.initialize(Buffer.from(JSON.stringify(config, null, 2) + '\n'));
    return new Repository(backend, config, opts.clock);
  }

  static async open(backend: Backend, opts: { clock?: Clock } = {}): Promise<Repository> {
    const raw = await backend.readConfig();
    if (!raw) {
      throw new RoamfsError('NOT_A_REPOSITORY', `${backend.location} is not a roamfs repository`, {
        hint: 'create one with `roamfs init`',
      });
    }
    let cfg: RepoConfig;
    try {
      cfg = JSON.parse(raw.toString('utf8'));
    } catch {
      throw new RoamfsError('NOT_A_REPOSITORY', `${backend.location}: unreadable repository config`);
    }
    if (!cfg || cfg.format !== FORMAT_NAME) throw new RoamfsError('NOT_A_REPOSITORY', `${backend.location} is not a roamfs repository`);
    if (cfg.version !== FORMAT_VERSION) {
      throw new RoamfsError('REPOSITORY_VERSION', `${backend.location} has format version ${cfg.version}; this roamfs reads version ${FORMAT_VERSION}`);
    }
    const bad = cfg.chunker?.algorithm !== 'fastcdc' ? 'unknown chunker' : validateChunkerParams(cfg.chunker);
    if (bad) throw new RoamfsError('NOT_A_REPOSITORY', `${backend.location}: bad repository config: ${bad}`);
    return new Repository(backend, cfg, opts.clock);
  }

  // ---- objects ---------------------------------------------------------------------------

  /** Store a typed object; returns its id and whether new bytes were written. */
  async putObject(type: ObjectType, payload: Uint8Array): Promise<{ id: ObjectId; written: boolean }> {
    const head = Buffer.of(type);
    const id = sha256(head, payload);
    const now = this.clock.now();
    const seen = this.known.get(id);
    if (seen !== undefined && now - seen < KNOWN_TTL_MS) return { id, written: false };
    const written = await this.backend.putObject(id, [head, payload]);
    if (written) {
      this.stats.objectsWritten++;
      this.stats.bytesWritten += payload.length + 1;
    }
    this.known.set(id, now);
    return { id, written };
  }

  /**
   * Touch an object that a new commit references again without having its bytes at hand (see
   * Backend.touchObject); false when the repository does not have it.
   */
  async touchObject(id: ObjectId): Promise<boolean> {
    const now = this.clock.now();
    const seen = this.known.get(id);
    if (seen !== undefined && now - seen < KNOWN_TTL_MS) return true;
    const present = await this.backend.touchObject(id);
    if (present) this.known.set(id, now);
    return present;
  }

  /** Read an object, verify it against its name and type, return the payload. */
  async getObject(id: ObjectId, type: ObjectType): Promise<Buffer> {
    const data = await this.backend.getObject(id);
    this.stats.objectsRead++;
    this.stats.bytesRead += data.length;
    if (sha256(data) !== id) throw new RoamfsError('CORRUPT_OBJECT', `corrupt object ${id}: content does not match its hash`);
    if (data[0] !== type) {
      throw new RoamfsError('CORRUPT_OBJECT', `corrupt object ${id}: expected a ${TYPE_NAMES[type]}, found type byte ${data[0]}`);
    }
    return data.subarray(1);
  }

  putChunk(data: Uint8Array) {
    return this.putObject(TYPE_CHUNK, data);
  }
  async getChunk(id: ObjectId, expectedSize?: number): Promise<Buffer> {
    const b = await this.getObject(id, TYPE_CHUNK);
    if (expectedSize !== undefined && b.length !== expectedSize) {
      throw new RoamfsError('CORRUPT_OBJECT', `corrupt object ${id}: chunk is ${b.length} bytes, tree says ${expectedSize}`);
    }
    return b;
  }
  async putTree(entries: readonly TreeEntry[]): Promise<ObjectId> {
    return (await this.putObject(TYPE_TREE, encodeTree(entries))).id;
  }
  async getTree(id: ObjectId): Promise<TreeEntry[]> {
    return decodeTree(await this.getObject(id, TYPE_TREE), id);
  }
  async putCommit(c: Commit): Promise<ObjectId> {
    return (await this.putObject(TYPE_COMMIT, encodeCommit(c))).id;
  }
  async getCommit(id: ObjectId): Promise<Commit> {
    return decodeCommit(await this.getObject(id, TYPE_COMMIT), id);
  }

  // ---- refs ------------------------------------------------------------------------------

  async users(): Promise<string[]> {
    const out: string[] = [];
    for (const u of await this.backend.listUsers()) if ((await this.backend.listRefs(u)).length > 0) out.push(u);
    return out;
  }

  /** All refs of a user, newest first. */
  async refs(user: string): Promise<Ref[]> {
    assertUserName(user);
    const out: Ref[] = [];
    for (const seq of (await this.backend.listRefs(user)).reverse()) {
      const raw = await this.backend.readRef(user, seq);
      if (raw) out.push(decodeRef(raw, `${user}/${seq}`));
    }
    return out;
  }

  /** The head ref of a user, or null when the user has no profile. */
  async head(user: string): Promise<Ref | null> {
    assertUserName(user);
    // A ref can vanish between list and read (prune of an old one); the highest never does.
    for (let attempt = 0; attempt < 5; attempt++) {
      const seqs = await this.backend.listRefs(user);
      const top = seqs[seqs.length - 1];
      if (top === undefined) return null;
      const raw = await this.backend.readRef(user, top);
      if (raw) return decodeRef(raw, `${user}/${top}`);
    }
    throw new RoamfsError('IO', `head of ${user} keeps changing; try again`);
  }

  async requireHead(user: string): Promise<Ref> {
    const h = await this.head(user);
    if (!h) throw new RoamfsError('UNKNOWN_USER', `no profile for user ${user} in ${this.backend.location}`);
    return h;
  }

  /**
   * Compare-and-swap the head of `user` from `expected` (the ref the caller built on, or null
   * for a new user) to `commit`. Throws HEAD_CONFLICT when someone else moved it first.
   */
  async moveHead(
    user: string,
    expected: Ref | null,
    commit: ObjectId,
    meta: { time: number; host: string; session: string },
  ): Promise<Ref> {
    assertUserName(user);
    const seq = (expected?.seq ?? 0) + 1;
    const ref: Ref = { seq, commit, prev: expected?.commit ?? null, ...meta };
    await this.backend.barrier(); // everything the commit references is durable before the ref
    await this.backend.createRef(user, seq, encodeRef(ref));
    // Stale check (format spec, "Moving the head", step 3).
    const later = (await this.backend.listRefs(user)).filter((s) => s > seq);
    if (later.length > 0) {
      const raw = await this.backend.readRef(user, later[0]!);
      const next = raw ? decodeRef(raw, `${user}/${later[0]}`) : null;
      if (!next || next.prev !== commit) {
        await this.backend.deleteRef(user, seq);
        throw new RoamfsError('HEAD_CONFLICT', `head of ${user} had moved past ref ${seq}`);
      }
    }
    return ref;
  }

  /**
   * Find a commit of `user` by full id or unique prefix (>= 4 hex chars), among the commits its
   * refs name and their parents.
   */
  async resolveCommit(user: string, prefix: string): Promise<ObjectId> {
    if (!/^[0-9a-f]{4,64}$/.test(prefix)) throw new RoamfsError('INVALID_ARGUMENT', `not a commit id: ${prefix}`);
    const refs = await this.refs(user);
    if (refs.length === 0) throw new RoamfsError('UNKNOWN_USER', `no profile for user ${user} in ${this.backend.location}`);
    const ids = new Set<ObjectId>();
    for (const r of refs) ids.add(r.commit);
    const matches = [...ids].filter((id) => id.startsWith(prefix));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) throw new RoamfsError('INVALID_ARGUMENT', `commit prefix ${prefix} is ambiguous`);
    throw new RoamfsError('UNKNOWN_COMMIT', `no commit ${prefix} in the history of ${user}`);
  }
}
