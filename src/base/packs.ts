import * as fs from 'node:fs';
import { constants as C } from 'node:fs';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { crc32 } from 'node:zlib';
import { errnoCode, ioError } from '../core/errors.js';
import { idFromBytes, idToBytes, type ObjectId } from '../core/hash.js';
import type { IoMode } from '../core/io-mode.js';
import { fsyncDir } from '../repository/posix.js';

/**
 * The objects of the desktop's local object store, appended to pack files instead of one file
 * each.
 *
 * A snapshot stores one object per new small file (and one per changed directory). As files,
 * each costs a create, a link and an unlink (~250-500 µs of kernel time on the machines of
 * docs/benchmarks.md, as much as the user's own create of the file): a snapshot of 10,000 new
 * small files held the event loop for seconds. Appended to a pack, an object is one pwritev.
 * And a snapshot's barrier is an fdatasync of the packs it wrote (`sync`), where a syncfs of the
 * cache's file system also wrote back every dirty page of the upper files (a 1 GiB file being
 * edited: a second or more per snapshot), which no snapshot needs.
 *
 * Layout, in the local store's `packs/` directory (never in a shared repository):
 * - `<process>-<n>.pack`: the 8-byte magic "RFSPACK1", then records back to back:
 *   "RPK1" | stored size (u32 BE) | object id (32 bytes) | stored bytes (type byte first).
 *   Only the process that created a pack appends to it; a pack is never rewritten.
 * - `<process>-<n>.idx`: 44-byte entries — id (32) | record offset (u32 BE) | stored size
 *   (u32 BE) | CRC-32 of those 40 bytes — appended at every `sync`. An open takes the entries
 *   whose checksum matches (the unsynced end of an index after a crash may be garbage), then
 *   reads the pack from the end of the indexed records that follow each other from its start,
 *   record by record, until the first one that does not parse (a crash's torn tail). Records
 *   are contiguous, so every synced record is found that way; only a pack with a failed append
 *   in it (a torn record in the middle, see below) also has its index made durable at `sync`.
 *
 * Durability: `sync` (LocalCache.sync calls it before each snapshot's log entry). After a crash a
 * pack may end in a torn record, or (with delayed allocation) hold zeros or garbage where the
 * last unsynced records were; nothing here trusts the bytes: every object is verified against
 * its id when it is first used (LocalCache), and a bad one is forgotten (`forget`). Packs of
 * earlier processes are synced at the first `sync` too: this process may reference an object the
 * last one appended without syncing it (it was killed before its barrier).
 *
 * Appends never overlap: each offset is reserved synchronously. A failed append (a full disk)
 * retires its pack; appends already under way in it (thread-pool I/O) may still land after the
 * torn record, where reading the pack does not reach: they are found through the index, which
 * is made durable for such a pack.
 */

/**
 * Objects whose stored size (type byte included) is at most this go into packs: every chunk of
 * the default chunker (at most 1 MiB) and of any sensible one. Bigger objects are files, and
 * make the owner's next barrier a syncfs of the whole file system (LocalCache.sync).
 */
export const PACK_MAX_OBJECT = 8 * 1024 * 1024 + 1;
/** A pack that reached this size is left for a new one. */
export const PACK_TARGET_SIZE = 64 * 1024 * 1024;

const FILE_MAGIC = Buffer.from('RFSPACK1');
const RECORD_MAGIC = 0x52504b31; // "RPK1"
const HEADER = 40; // magic 4 + size 4 + id 32
const IDX_ENTRY = 44; // id 32 + offset 4 + size 4 + crc32 of those 40 bytes 4
const FILE_MODE = 0o600;

const readAsync = promisify(fs.read);
const writevAsync = promisify(fs.writev);
const fdatasyncAsync = promisify(fs.fdatasync);

interface Pack {
  name: string;
  /** Path of the pack file. */
  path: string;
  /** Bytes reserved so far (the end of the last record appended or found). */
  size: number;
  /** Read (and, for the pack this process appends to, write) descriptor, opened on demand. */
  fd: number | null;
  /** Index entries not yet appended to the .idx file. */
  unindexed: Buffer[];
  /** The .idx file, opened for appending on demand. */
  idxFd: number | null;
  /** An append failed in this pack: records after it are found only through the index. */
  torn: boolean;
  /** Appends under way (thread-pool I/O): one of them may still fail before a record synced now. */
  inflight: number;
}

/** Where an object's stored bytes are: `offset` is the type byte's position in `path`. */
export interface PackLocation {
  path: string;
  offset: number;
  size: number;
}

interface Entry {
  pack: Pack;
  /** Offset of the stored bytes (after the record header). */
  offset: number;
  size: number;
}

export class PackStore {
  private readonly index = new Map<ObjectId, Entry>();
  private readonly packs: Pack[] = [];
  /** The pack this process appends to; null until the first append (and after it was left). */
  private current: Pack | null = null;
  private readonly prefix = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  private seq = 0;
  /** Packs with appends completed since the last `sync`. */
  private readonly unsynced = new Set<Pack>();
  /** A pack was created since the last `sync` (its name is in the directory, not yet durable). */
  private newName = false;

  private constructor(
    readonly dir: string,
    private readonly io: IoMode,
  ) {}

  /** Open the packs in `dir` (created if missing): load their indexes, read their unindexed tails. */
  static open(dir: string, io: IoMode): PackStore {
    const s = new PackStore(dir, io);
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      for (const name of fs.readdirSync(dir).filter((n) => n.endsWith('.pack')).sort()) s.load(name.slice(0, -'.pack'.length));
    } catch (err) {
      throw ioError(`open object packs in ${dir}`, err);
    }
    return s;
  }

  get objects(): number {
    return this.index.size;
  }

  has(id: ObjectId): boolean {
    return this.index.has(id);
  }

  locate(id: ObjectId): PackLocation | undefined {
    const e = this.index.get(id);
    return e && { path: e.pack.path, offset: e.offset, size: e.size };
  }

  /** Every packed object: id and stored size. */
  *list(): Iterable<{ id: ObjectId; size: number }> {
    for (const [id, e] of this.index) yield { id, size: e.size };
  }

  /** The stored bytes of a packed object (unverified), or null when it is not in a pack. */
  async read(id: ObjectId): Promise<Buffer | null> {
    const e = this.index.get(id);
    if (!e) return null;
    const buf = Buffer.allocUnsafe(e.size);
    try {
      const fd = this.fdOf(e.pack);
      let got = 0;
      while (got < e.size) {
        const n = this.io.sync
          ? this.io.time(() => fs.readSync(fd, buf, got, e.size - got, e.offset + got))
          : await readAsync(fd, buf, got, e.size - got, e.offset + got).then((r) => r.bytesRead);
        if (n === 0) break;
        got += n;
      }
      // A pack cut short (a crash): the caller's verification fails on the zeros, as on garbage.
      if (got < e.size) buf.fill(0, got);
    } catch (err) {
      throw ioError(`read object ${id} from ${e.pack.path}`, err);
    }
    return buf;
  }

  /** Append an object (its stored bytes in parts); a no-op when it is already packed. */
  async append(id: ObjectId, parts: readonly Uint8Array[]): Promise<void> {
    if (this.index.has(id)) return;
    const size = parts.reduce((n, p) => n + p.length, 0);
    if (size > PACK_MAX_OBJECT || size === 0) throw new Error(`object ${id} of ${size} bytes does not go into a pack`);
    const pack = this.writable();
    const at = pack.size;
    pack.size += HEADER + size;
    if (pack.size >= PACK_TARGET_SIZE) this.leave(pack);
    const head = Buffer.allocUnsafe(HEADER);
    head.writeUInt32BE(RECORD_MAGIC, 0);
    head.writeUInt32BE(size, 4);
    idToBytes(id).copy(head, 8);
    const bufs = [head, ...parts.filter((p) => p.length > 0)] as NodeJS.ArrayBufferView[];
    pack.inflight++;
    try {
      const fd = this.fdOf(pack);
      if (this.io.sync) this.io.time(() => writeAllSync(fd, bufs, at));
      else await writeAll(fd, bufs, at);
    } catch (err) {
      // The reserved region may hold part of the record: nothing new goes after it.
      pack.torn = true;
      this.unsynced.add(pack);
      this.leave(pack);
      throw ioError(`store object ${id} in ${pack.path}`, err);
    } finally {
      pack.inflight--;
    }
    this.unsynced.add(pack);
    if (this.index.has(id)) return; // appended twice concurrently: the first copy wins
    this.index.set(id, { pack, offset: at + HEADER, size });
    pack.unindexed.push(idxEntry(id, at, size));
  }

  /**
   * Make every append completed so far durable: the pending index entries written, an fdatasync
   * of each pack appended to since the last call (and of its index where reading the pack cannot
   * be relied on: see the class comment), and of the directory when a pack was created. Through the thread pool (it can
   * take long); appends may go on meanwhile, and belong to the next call. On failure everything
   * stays due for the next call.
   */
  async sync(): Promise<void> {
    const packs = [...this.unsynced];
    const dir = this.newName;
    this.unsynced.clear();
    this.newName = false;
    try {
      for (const p of packs) this.writeIndex(p);
      for (const p of packs) {
        await fdatasyncAsync(this.fdOf(p));
        if (p.torn || p.inflight > 0) await fdatasyncAsync(this.idxFdOf(p));
      }
      if (dir) await fsyncDir(this.dir);
    } catch (err) {
      for (const p of packs) this.unsynced.add(p);
      this.newName ||= dir;
      throw ioError(`sync object packs in ${this.dir}`, err);
    }
  }

  /** Forget a packed object (found damaged): it is absent from now on; its bytes stay where they are. */
  forget(id: ObjectId): void {
    this.index.delete(id);
  }

  /**
   * Write the pending index entries (best effort: what fails stays pending, and the next open
   * finds those records by reading the pack) and close every descriptor. The store stays
   * usable: descriptors reopen on demand. Call it with no append or sync under way.
   */
  close(): void {
    this.current = null;
    for (const p of this.packs) {
      try {
        this.writeIndex(p);
      } catch {
        // kept pending
      }
      if (p.fd !== null) fs.closeSync(p.fd);
      if (p.idxFd !== null) fs.closeSync(p.idxFd);
      p.fd = null;
      p.idxFd = null;
    }
  }

  // ---- internals -----------------------------------------------------------------------------

  private writable(): Pack {
    if (this.current) return this.current;
    const name = `${this.prefix}-${(++this.seq).toString(36)}`;
    const p: Pack = { name, path: path.join(this.dir, `${name}.pack`), size: FILE_MAGIC.length, fd: null, unindexed: [], idxFd: null, torn: false, inflight: 0 };
    try {
      p.fd = fs.openSync(p.path, C.O_RDWR | C.O_CREAT | C.O_EXCL, FILE_MODE);
      writeAllSync(p.fd, [FILE_MAGIC], 0);
    } catch (err) {
      if (p.fd !== null) fs.closeSync(p.fd);
      throw ioError(`create object pack ${p.path}`, err);
    }
    this.packs.push(p);
    this.current = p;
    this.newName = true;
    return p;
  }

  /** Stop appending to `pack` (full, or a failed append); its index entries are written at the next flush. */
  private leave(pack: Pack): void {
    if (this.current === pack) this.current = null;
  }

  private fdOf(p: Pack): number {
    p.fd ??= fs.openSync(p.path, p === this.current ? C.O_RDWR : C.O_RDONLY);
    return p.fd;
  }

  private idxFdOf(p: Pack): number {
    p.idxFd ??= fs.openSync(path.join(this.dir, `${p.name}.idx`), C.O_WRONLY | C.O_CREAT | C.O_APPEND, FILE_MODE);
    return p.idxFd;
  }

  /** Append the pack's pending index entries; on failure they stay pending (and it throws). */
  private writeIndex(p: Pack): void {
    if (p.unindexed.length === 0) return;
    const entries = p.unindexed;
    p.unindexed = [];
    try {
      // Whole entries or an error: a short append is completed here, never left torn mid-entry.
      writeAllSync(this.idxFdOf(p), [Buffer.concat(entries)], null);
    } catch (err) {
      p.unindexed = [...entries, ...p.unindexed];
      throw ioError(`write the index of ${p.path}`, err);
    }
  }

  /** Load one pack of an earlier process: its index, then the records past the last indexed one. */
  private load(name: string): void {
    const file = path.join(this.dir, `${name}.pack`);
    let fd: number;
    try {
      fd = fs.openSync(file, C.O_RDONLY);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      throw err;
    }
    try {
      const fileSize = fs.fstatSync(fd).size;
      const magic = Buffer.alloc(FILE_MAGIC.length);
      if (fileSize < FILE_MAGIC.length || fs.readSync(fd, magic, 0, magic.length, 0) < magic.length || !magic.equals(FILE_MAGIC)) return; // not a pack (or empty: created, then a crash)
      const pack: Pack = { name, path: file, size: FILE_MAGIC.length, fd: null, unindexed: [], idxFd: null, torn: false, inflight: 0 };
      const entries: { at: number; size: number }[] = [];
      let idx: Buffer | null = null;
      try {
        idx = fs.readFileSync(path.join(this.dir, `${name}.idx`));
      } catch {
        // none yet: read the whole pack
      }
      for (let i = 0; idx && i + IDX_ENTRY <= idx.length; i += IDX_ENTRY) {
        const at = idx.readUInt32BE(i + 32);
        const size = idx.readUInt32BE(i + 36);
        // An entry that cannot be a record of this pack (garbage or zeros after a crash) is skipped.
        if (crc32(idx.subarray(i, i + 40)) !== idx.readUInt32BE(i + 40)) continue;
        if (size === 0 || size > PACK_MAX_OBJECT || at < FILE_MAGIC.length || at + HEADER + size > fileSize) continue;
        this.add(idFromBytes(idx.subarray(i, i + 32)), pack, at, size);
        entries.push({ at, size });
      }
      // Read the pack from the end of the indexed records that follow each other from its start.
      let indexed = FILE_MAGIC.length;
      entries.sort((a, b) => a.at - b.at);
      for (const e of entries) {
        if (e.at > indexed) break;
        if (e.at === indexed) indexed = e.at + HEADER + e.size;
      }
      pack.size = indexed;
      // Found records are indexed at the first sync, which also syncs the pack (see the class comment).
      pack.unindexed = this.scan(fd, pack, indexed, fileSize);
      this.packs.push(pack);
      this.unsynced.add(pack);
    } finally {
      fs.closeSync(fd);
    }
  }

  /** Read records from `from` until the first one that does not parse; returns their index entries. */
  private scan(fd: number, pack: Pack, from: number, fileSize: number): Buffer[] {
    const found: Buffer[] = [];
    const head = Buffer.allocUnsafe(HEADER);
    let at = from;
    while (at + HEADER <= fileSize) {
      if (fs.readSync(fd, head, 0, HEADER, at) < HEADER) break;
      const size = head.readUInt32BE(4);
      if (head.readUInt32BE(0) !== RECORD_MAGIC || size === 0 || size > PACK_MAX_OBJECT || at + HEADER + size > fileSize) break;
      const id = idFromBytes(head.subarray(8));
      this.add(id, pack, at, size);
      found.push(idxEntry(id, at, size));
      at += HEADER + size;
    }
    pack.size = Math.max(pack.size, at);
    return found;
  }

  private add(id: ObjectId, pack: Pack, at: number, size: number): void {
    if (!this.index.has(id)) this.index.set(id, { pack, offset: at + HEADER, size });
  }
}

function idxEntry(id: ObjectId, at: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(IDX_ENTRY);
  idToBytes(id).copy(b, 0);
  b.writeUInt32BE(at, 32);
  b.writeUInt32BE(size, 36);
  b.writeUInt32BE(crc32(b.subarray(0, 40)), 40);
  return b;
}

function advance(bufs: NodeJS.ArrayBufferView[], n: number): NodeJS.ArrayBufferView[] {
  const rest = [...bufs];
  while (rest.length > 0 && n >= rest[0]!.byteLength) n -= rest.shift()!.byteLength;
  if (n > 0 && rest.length > 0) {
    const b = rest[0]!;
    rest[0] = new Uint8Array(b.buffer, b.byteOffset + n, b.byteLength - n);
  }
  return rest;
}

/** Write all of `bufs` at `position` (null: at the end, for an O_APPEND descriptor). */
function writeAllSync(fd: number, bufs: NodeJS.ArrayBufferView[], position: number | null): void {
  let rest = bufs;
  while (rest.length > 0) {
    const n = position === null ? fs.writevSync(fd, rest) : fs.writevSync(fd, rest, position);
    if (n <= 0) throw new Error('writev wrote nothing');
    if (position !== null) position += n;
    rest = advance(rest, n);
  }
}

async function writeAll(fd: number, bufs: NodeJS.ArrayBufferView[], position: number): Promise<void> {
  let rest = bufs;
  while (rest.length > 0) {
    const { bytesWritten: n } = await writevAsync(fd, rest, position);
    if (n <= 0) throw new Error('writev wrote nothing');
    position += n;
    rest = advance(rest, n);
  }
}
