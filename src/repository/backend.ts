import type { ObjectId } from '../core/hash.js';

/** An object's stored bytes, whole or in parts to be stored one after the other (no copy to join them). */
export type ObjectBytes = Uint8Array | readonly Uint8Array[];

export interface ObjectInfo {
  id: ObjectId;
  size: number;
  /** Last write or touch, in the storage's clock (ms since the epoch). */
  mtimeMs: number;
}

/**
 * The storage port: everything roamfs needs from shared storage, and nothing more.
 * Object bytes are opaque here; hashing and decoding are the Repository's job (so a backend
 * can never hand out an unverified object).
 *
 * Implementations: PosixBackend (a directory, e.g. on a NAS or GlusterFS mount) and
 * MemoryBackend (unit tests). Methods may be retried by callers: each states whether that is safe.
 */
export interface Backend {
  /** Human-readable location for messages ("/srv/roamfs"). */
  readonly location: string;

  /** The config document, or null when the location holds no repository. Throws NO_REPOSITORY when the location itself is missing. */
  readConfig(): Promise<Buffer | null>;
  /**
   * Create the repository: refuse (NOT_EMPTY) when the location holds anything, then write the config
   * and the skeleton. Not idempotent: a second call fails with NOT_EMPTY.
   */
  initialize(config: Buffer): Promise<void>;

  /** Stored bytes of an object. Throws MISSING_OBJECT when absent. Retry-safe. */
  getObject(id: ObjectId): Promise<Buffer>;
  /**
   * Make the object durable under its id. Idempotent: when it already exists, refresh its mtime
   * instead (gc relies on this "touch", see the format spec) and return false; true when written.
   * Never leaves a partial object under the final name.
   */
  putObject(id: ObjectId, data: ObjectBytes): Promise<boolean>;
  /**
   * Refresh an existing object's mtime without its bytes (the "touch" of putObject, for an
   * object that a new commit references again): true when it exists and was touched, false when
   * absent. Retry-safe.
   */
  touchObject(id: ObjectId): Promise<boolean>;
  /**
   * Make every object put so far durable (for backends that batch durability; a no-op for
   * those that make each object durable in putObject). The Repository calls it before it
   * creates a ref, so a ref never names an object that a crash could lose.
   */
  barrier(): Promise<void>;
  /** Size and mtime, or null when absent. */
  statObject(id: ObjectId): Promise<ObjectInfo | null>;
  /** Every object, in no particular order. A concurrent put may or may not be listed. */
  listObjects(): AsyncIterable<ObjectInfo>;
  /** Remove an object; absent is not an error. Only gc and tests call this. */
  deleteObject(id: ObjectId): Promise<void>;

  /**
   * gc quarantine: move an object into the named trash batch and return its info as seen
   * there (null when it vanished meanwhile). restoreObject moves it back (idempotent);
   * emptyTrash deletes the batch.
   */
  trashObject(id: ObjectId, batch: string): Promise<ObjectInfo | null>;
  restoreObject(id: ObjectId, batch: string): Promise<void>;
  emptyTrash(batch: string): Promise<void>;

  /** Users that have a refs directory (sorted). */
  listUsers(): Promise<string[]>;
  /** Sequence numbers of the user's refs, ascending; [] for an unknown user. */
  listRefs(user: string): Promise<number[]>;
  /** A ref's bytes, or null when absent (pruned or never written). */
  readRef(user: string, seq: number): Promise<Buffer | null>;
  /**
   * Create ref `seq` with exactly these bytes, atomically and exclusively: durable when it
   * resolves; rejects with HEAD_CONFLICT if that seq exists (whoever wrote it). Not retry-safe
   * blindly: after an ambiguous failure, read the ref back to learn whether it is ours.
   */
  createRef(user: string, seq: number, data: Uint8Array): Promise<void>;
  /** Remove a ref; absent is not an error. */
  deleteRef(user: string, seq: number): Promise<void>;

  /** A per-user state document, or null. */
  readState(user: string, name: string): Promise<Buffer | null>;
  /** Replace a per-user state document atomically and durably. Idempotent. */
  writeState(user: string, name: string, data: Uint8Array): Promise<void>;
  /**
   * Names of the user's state documents, sorted; [] for an unknown user. A document being
   * replaced (writeState) is listed; temp files never are. Used by leases (src/repository/lease.ts).
   */
  listState(user: string): Promise<string[]>;
  /**
   * Create a state document with exactly these bytes, atomically and exclusively (link(2) of a
   * durable temp file, like createRef): true when created and durable, false when the name
   * already existed (whoever wrote it). Not retry-safe blindly: after an ambiguous failure, read
   * the document back to learn whether it is ours.
   */
  createState(user: string, name: string, data: Uint8Array): Promise<boolean>;
  /** Remove a state document; absent is not an error. */
  deleteState(user: string, name: string): Promise<void>;

  /** The storage's notion of now (ms), e.g. the mtime of a freshly written file. */
  storageNow(): Promise<number>;
}
