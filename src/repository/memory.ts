import { RoamfsError } from '../core/errors.js';
import type { Clock } from '../core/clock.js';
import { systemClock } from '../core/clock.js';
import type { ObjectId } from '../core/hash.js';
import type { Backend, ObjectBytes, ObjectInfo } from './backend.js';

interface Stored {
  data: Buffer;
  mtimeMs: number;
}

/** An in-memory Backend with the same contract as PosixBackend, for unit tests. */
export class MemoryBackend implements Backend {
  readonly location: string;
  config: Buffer | null = null;
  readonly objects = new Map<ObjectId, Stored>();
  readonly trash = new Map<string, Map<ObjectId, Stored>>();
  readonly refs = new Map<string, Map<number, Buffer>>();
  readonly state = new Map<string, Buffer>();
  /** Counts for tests that check what was read. */
  readonly stats = { objectReads: 0, objectBytesRead: 0, objectWrites: 0 };

  constructor(
    private readonly clock: Clock = systemClock,
    location = 'memory:',
  ) {
    this.location = location;
  }

  async readConfig(): Promise<Buffer | null> {
    return this.config;
  }

  async initialize(config: Buffer): Promise<void> {
    if (this.config || this.objects.size > 0) throw new RoamfsError('NOT_EMPTY', `${this.location} is not empty`);
    this.config = Buffer.from(config);
  }

  async getObject(id: ObjectId): Promise<Buffer> {
    const o = this.objects.get(id);
    if (!o) throw new RoamfsError('MISSING_OBJECT', `missing object ${id}`);
    this.stats.objectReads++;
    this.stats.objectBytesRead += o.data.length;
    return Buffer.from(o.data);
  }

  async touchObject(id: ObjectId): Promise<boolean> {
    const o = this.objects.get(id);
    if (o) o.mtimeMs = this.clock.now();
    return o !== undefined;
  }

  async putObject(id: ObjectId, data: ObjectBytes): Promise<boolean> {
    if (await this.touchObject(id)) return false;
    this.stats.objectWrites++;
    this.objects.set(id, { data: Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Uint8Array), mtimeMs: this.clock.now() });
    return true;
  }

  async barrier(): Promise<void> {}

  async statObject(id: ObjectId): Promise<ObjectInfo | null> {
    const o = this.objects.get(id);
    return o ? { id, size: o.data.length, mtimeMs: o.mtimeMs } : null;
  }

  async *listObjects(): AsyncIterable<ObjectInfo> {
    for (const [id, o] of [...this.objects]) yield { id, size: o.data.length, mtimeMs: o.mtimeMs };
  }

  async deleteObject(id: ObjectId): Promise<void> {
    this.objects.delete(id);
  }

  async trashObject(id: ObjectId, batch: string): Promise<ObjectInfo | null> {
    const o = this.objects.get(id);
    if (!o) return null;
    this.objects.delete(id);
    let b = this.trash.get(batch);
    if (!b) this.trash.set(batch, (b = new Map()));
    b.set(id, o);
    return { id, size: o.data.length, mtimeMs: o.mtimeMs };
  }

  async restoreObject(id: ObjectId, batch: string): Promise<void> {
    const o = this.trash.get(batch)?.get(id);
    if (!o) return;
    this.trash.get(batch)!.delete(id);
    this.objects.set(id, o);
  }

  async emptyTrash(batch: string): Promise<void> {
    this.trash.delete(batch);
  }

  async listUsers(): Promise<string[]> {
    return [...this.refs.keys()].sort();
  }

  async listRefs(user: string): Promise<number[]> {
    return [...(this.refs.get(user)?.keys() ?? [])].sort((a, b) => a - b);
  }

  async readRef(user: string, seq: number): Promise<Buffer | null> {
    const r = this.refs.get(user)?.get(seq);
    return r ? Buffer.from(r) : null;
  }

  async createRef(user: string, seq: number, data: Uint8Array): Promise<void> {
    let m = this.refs.get(user);
    if (!m) this.refs.set(user, (m = new Map()));
    if (m.has(seq)) throw new RoamfsError('HEAD_CONFLICT', `head of ${user} moved: ref ${seq} already exists`);
    m.set(seq, Buffer.from(data));
  }

  async deleteRef(user: string, seq: number): Promise<void> {
    this.refs.get(user)?.delete(seq);
  }

  async readState(user: string, name: string): Promise<Buffer | null> {
    return this.state.get(`${user}/${name}`) ?? null;
  }

  async writeState(user: string, name: string, data: Uint8Array): Promise<void> {
    this.state.set(`${user}/${name}`, Buffer.from(data));
  }

  async listState(user: string): Promise<string[]> {
    const prefix = `${user}/`;
    return [...this.state.keys()].filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length)).sort();
  }

  async createState(user: string, name: string, data: Uint8Array): Promise<boolean> {
    const key = `${user}/${name}`;
    if (this.state.has(key)) return false;
    this.state.set(key, Buffer.from(data));
    return true;
  }

  async deleteState(user: string, name: string): Promise<void> {
    this.state.delete(`${user}/${name}`);
  }

  async storageNow(): Promise<number> {
    return this.clock.now();
  }
}
