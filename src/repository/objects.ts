import { Packr } from 'msgpackr';
import { RoamfsError } from '../core/errors.js';
import { idFromBytes, idToBytes, isObjectId, type ObjectId } from '../core/hash.js';
import { entryNameProblem } from '../core/names.js';

/** Object kinds and their type byte (see docs/repository-format.md). */
export const TYPE_CHUNK = 0x01;
export const TYPE_TREE = 0x02;
export const TYPE_COMMIT = 0x03;
export type ObjectType = typeof TYPE_CHUNK | typeof TYPE_TREE | typeof TYPE_COMMIT;

/** Times are nanoseconds since the epoch. */
export type TimeNs = bigint;

export interface ChunkRef {
  id: ObjectId;
  size: number;
}

interface EntryBase {
  name: string;
  /** Permission bits only (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: TimeNs;
  xattrs?: Record<string, Buffer>;
}
export interface FileEntry extends EntryBase {
  type: 'file';
  size: number;
  chunks: ChunkRef[];
}
export interface DirEntry extends EntryBase {
  type: 'dir';
  tree: ObjectId;
}
export interface SymlinkEntry extends EntryBase {
  type: 'symlink';
  target: string;
}
export type TreeEntry = FileEntry | DirEntry | SymlinkEntry;

/** The root directory's own attributes and tree. */
export interface RootRef {
  tree: ObjectId;
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: TimeNs;
}

export interface Commit {
  parents: ObjectId[];
  root: RootRef;
  /** ms since the epoch */
  time: number;
  host: string;
  session: string;
  message: string;
  stats: { files: number; bytes: number };
  /** For commits made from a mounted session's change log: which log and snapshot (replay detection). */
  origin?: { log: string; snapshot: number };
}

export interface Ref {
  seq: number;
  commit: ObjectId;
  prev: ObjectId | null;
  time: number;
  host: string;
  session: string;
}

const packr = new Packr({ useRecords: false, mapsAsObjects: true, variableMapSize: true, moreTypes: false });

const NS = 1_000_000_000n;
export function nsToPair(ns: TimeNs): [number, number] {
  let s = ns / NS;
  let n = ns % NS;
  if (n < 0n) {
    n += NS;
    s -= 1n;
  }
  return [Number(s), Number(n)];
}
export function pairToNs(p: unknown): TimeNs {
  if (!Array.isArray(p) || p.length !== 2) throw new Error('bad time');
  const [s, n] = p as unknown[];
  if (!Number.isSafeInteger(s) || !Number.isInteger(n) || (n as number) < 0 || (n as number) >= 1e9) throw new Error('bad time');
  return BigInt(s as number) * NS + BigInt(n as number);
}

function corrupt(id: ObjectId | undefined, why: string): RoamfsError {
  return new RoamfsError('CORRUPT_OBJECT', `corrupt object ${id ?? '(new)'}: ${why}`);
}

function u32(v: unknown, what: string): number {
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 0xffffffff) throw new Error(`bad ${what}`);
  return v as number;
}
function size(v: unknown): number {
  if (!Number.isSafeInteger(v) || (v as number) < 0) throw new Error('bad size');
  return v as number;
}
function bin32(v: unknown, what: string): ObjectId {
  if (!(v instanceof Uint8Array) || v.length !== 32) throw new Error(`bad ${what}`);
  return idFromBytes(v);
}

function encodeBase(e: EntryBase): Record<string, unknown> {
  const o: Record<string, unknown> = { n: e.name, m: e.mode & 0o7777, u: e.uid, g: e.gid, mt: nsToPair(e.mtimeNs) };
  if (e.xattrs && Object.keys(e.xattrs).length > 0) o.x = e.xattrs;
  return o;
}

export function encodeTree(entries: readonly TreeEntry[]): Buffer {
  const sorted = [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const e = sorted.map((x, i) => {
    const why = entryNameProblem(x.name);
    if (why) throw new RoamfsError('INVALID_NAME', `invalid entry name ${JSON.stringify(x.name)}: ${why}`);
    if (i > 0 && sorted[i - 1]!.name === x.name) throw new Error(`duplicate entry ${x.name}`);
    const o = encodeBase(x);
    switch (x.type) {
      case 'file':
        o.t = 'f';
        o.s = x.size;
        o.c = x.chunks.map((c) => [idToBytes(c.id), c.size]);
        break;
      case 'dir':
        o.t = 'd';
        o.s = 0;
        o.d = idToBytes(x.tree);
        break;
      case 'symlink':
        o.t = 'l';
        o.s = Buffer.byteLength(x.target);
        o.l = x.target;
        break;
    }
    return o;
  });
  return packr.pack({ v: 1, e });
}

function decodeEntry(o: Record<string, unknown>): TreeEntry {
  const why = entryNameProblem(o.n);
  if (why) throw new Error(`invalid name ${JSON.stringify(o.n)}: ${why}`);
  const base: EntryBase = {
    name: o.n as string,
    mode: u32(o.m, 'mode') & 0o7777,
    uid: u32(o.u, 'uid'),
    gid: u32(o.g, 'gid'),
    mtimeNs: pairToNs(o.mt),
  };
  if (o.x !== undefined) {
    if (!o.x || typeof o.x !== 'object') throw new Error('bad xattrs');
    const x: Record<string, Buffer> = {};
    for (const [k, v] of Object.entries(o.x as Record<string, unknown>)) {
      if (!(v instanceof Uint8Array)) throw new Error('bad xattr value');
      x[k] = Buffer.from(v);
    }
    base.xattrs = x;
  }
  switch (o.t) {
    case 'f': {
      const s = size(o.s);
      if (!Array.isArray(o.c)) throw new Error('bad chunk list');
      let sum = 0;
      const chunks = o.c.map((c: unknown) => {
        if (!Array.isArray(c) || c.length !== 2) throw new Error('bad chunk ref');
        const r = { id: bin32(c[0], 'chunk id'), size: size(c[1]) };
        if (r.size === 0) throw new Error('empty chunk');
        sum += r.size;
        return r;
      });
      if (sum !== s) throw new Error(`chunk sizes sum to ${sum}, not ${s}`);
      return { ...base, type: 'file', size: s, chunks };
    }
    case 'd':
      return { ...base, type: 'dir', tree: bin32(o.d, 'subtree id') };
    case 'l':
      if (typeof o.l !== 'string' || o.l.length === 0 || o.l.includes('\0')) throw new Error('bad symlink target');
      return { ...base, type: 'symlink', target: o.l };
    default:
      throw new Error(`unknown entry type ${JSON.stringify(o.t)}`);
  }
}

/** Decode and validate a tree payload; anything unexpected is CORRUPT_OBJECT naming id. */
export function decodeTree(payload: Uint8Array, id?: ObjectId): TreeEntry[] {
  try {
    const o = packr.unpack(payload) as { v?: unknown; e?: unknown };
    if (!o || o.v !== 1 || !Array.isArray(o.e)) throw new Error('not a version 1 tree');
    const entries = o.e.map((x) => {
      if (!x || typeof x !== 'object') throw new Error('bad entry');
      return decodeEntry(x as Record<string, unknown>);
    });
    for (let i = 1; i < entries.length; i++) {
      if (!(entries[i - 1]!.name < entries[i]!.name)) throw new Error('entries not sorted or duplicated');
    }
    return entries;
  } catch (err) {
    throw corrupt(id, `bad tree: ${(err as Error).message}`);
  }
}

export function encodeCommit(c: Commit): Buffer {
  return packr.pack({
    v: 1,
    parents: c.parents.map(idToBytes),
    root: { d: idToBytes(c.root.tree), m: c.root.mode & 0o7777, u: c.root.uid, g: c.root.gid, mt: nsToPair(c.root.mtimeNs) },
    time: c.time,
    host: c.host,
    session: c.session,
    message: c.message,
    stats: c.stats,
    ...(c.origin ? { origin: { log: c.origin.log, snapshot: c.origin.snapshot } } : {}),
  });
}

function decodeOrigin(v: unknown): { log: string; snapshot: number } {
  const o = v as { log?: unknown; snapshot?: unknown };
  if (!o || typeof o.log !== 'string' || !Number.isSafeInteger(o.snapshot)) throw new Error('bad origin');
  return { log: o.log, snapshot: o.snapshot as number };
}

export function decodeCommit(payload: Uint8Array, id?: ObjectId): Commit {
  try {
    const o = packr.unpack(payload) as Record<string, unknown>;
    if (!o || o.v !== 1) throw new Error('not a version 1 commit');
    if (!Array.isArray(o.parents)) throw new Error('bad parents');
    const r = o.root as Record<string, unknown>;
    if (!r || typeof r !== 'object') throw new Error('bad root');
    const st = o.stats as Record<string, unknown>;
    for (const k of ['host', 'session', 'message'] as const) if (typeof o[k] !== 'string') throw new Error(`bad ${k}`);
    return {
      parents: o.parents.map((p) => bin32(p, 'parent')),
      root: { tree: bin32(r.d, 'root tree'), mode: u32(r.m, 'mode') & 0o7777, uid: u32(r.u, 'uid'), gid: u32(r.g, 'gid'), mtimeNs: pairToNs(r.mt) },
      time: size(o.time),
      host: o.host as string,
      session: o.session as string,
      message: o.message as string,
      stats: { files: size(st?.files), bytes: size(st?.bytes) },
      ...(o.origin === undefined ? {} : { origin: decodeOrigin(o.origin) }),
    };
  } catch (err) {
    throw corrupt(id, `bad commit: ${(err as Error).message}`);
  }
}

export function encodeRef(r: Ref): Buffer {
  return packr.pack({
    v: 1,
    seq: r.seq,
    commit: idToBytes(r.commit),
    prev: r.prev ? idToBytes(r.prev) : null,
    time: r.time,
    host: r.host,
    session: r.session,
  });
}

export function decodeRef(data: Uint8Array, where: string): Ref {
  try {
    const o = packr.unpack(data) as Record<string, unknown>;
    if (!o || o.v !== 1) throw new Error('not a version 1 ref');
    return {
      seq: size(o.seq),
      commit: bin32(o.commit, 'commit'),
      prev: o.prev === null ? null : bin32(o.prev, 'prev'),
      time: size(o.time),
      host: String(o.host),
      session: String(o.session),
    };
  } catch (err) {
    throw new RoamfsError('CORRUPT_OBJECT', `corrupt ref ${where}: ${(err as Error).message}`);
  }
}

/** Generic msgpack for small state documents. */
export function packState(v: unknown): Buffer {
  return packr.pack(v);
}
export function unpackState(b: Uint8Array): unknown {
  return packr.unpack(b);
}

export { isObjectId };
