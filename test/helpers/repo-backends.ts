/**
 * Backend kits: the same test suites run against MemoryBackend and PosixBackend. A kit gives a
 * fresh backend, a second independent handle on the same storage (another "desktop"), and the
 * few storage-level manipulations tests need (damage an object, age it).
 */
import type { ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { ObjectId } from '../../src/core/hash.js';
import type { Backend } from '../../src/repository/backend.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { PosixBackend } from '../../src/repository/posix.js';
import { tempDir } from './repo-fs.js';

export interface BackendKit {
  kind: 'memory' | 'posix';
  backend: Backend;
  /** Another handle on the same storage, as a second process or desktop would have. */
  other(): Backend;
  /** Replace an object's stored bytes behind the backend's back (damage). */
  overwriteObject(id: ObjectId, data: Buffer): Promise<void>;
  /** Set an object's mtime (storage clock, ms since the epoch). */
  setObjectMtime(id: ObjectId, ms: number): Promise<void>;
  /** Names of files under tmp/ (posix) or trash batches (memory): what gc leaves behind. */
  leftovers(): Promise<string[]>;
}

export type KitFactory = (t: ExecutionContext) => Promise<BackendKit>;

export const memoryKit: KitFactory = async () => {
  const backend = new MemoryBackend();
  return {
    kind: 'memory',
    backend,
    // Same maps, separate object: like a second client of one store.
    other: () => {
      const b = new MemoryBackend(undefined, backend.location);
      Object.assign(b, { objects: backend.objects, trash: backend.trash, refs: backend.refs, state: backend.state });
      Object.defineProperty(b, 'config', { get: () => backend.config, set: (v) => (backend.config = v) });
      return b;
    },
    async overwriteObject(id, data) {
      const o = backend.objects.get(id);
      if (!o) throw new Error(`no object ${id}`);
      o.data = Buffer.from(data);
    },
    async setObjectMtime(id, ms) {
      const o = backend.objects.get(id);
      if (!o) throw new Error(`no object ${id}`);
      o.mtimeMs = ms;
    },
    async leftovers() {
      return [...backend.trash.keys()];
    },
  };
};

export function objectFile(repoDir: string, id: ObjectId): string {
  return path.join(repoDir, 'objects', id.slice(0, 2), id);
}

export const posixKit: KitFactory = async (t) => {
  const dir = path.join(await tempDir(t, 'roamfs-posix'), 'repo');
  const backend = new PosixBackend(dir);
  return {
    kind: 'posix',
    backend,
    other: () => new PosixBackend(dir),
    async overwriteObject(id, data) {
      await fsp.writeFile(objectFile(dir, id), data);
    },
    async setObjectMtime(id, ms) {
      const d = new Date(ms);
      await fsp.utimes(objectFile(dir, id), d, d);
    },
    async leftovers() {
      return (await fsp.readdir(path.join(dir, 'tmp'))).sort();
    },
  };
};

export const KITS: Array<[string, KitFactory]> = [
  ['memory', memoryKit],
  ['posix', posixKit],
];

type AnyFn = (...args: any[]) => any;
/**
 * A Backend whose chosen methods are wrapped: `wrap[m](orig, ...args)` runs instead of m and
 * may call orig at any point, so a test can interleave another actor exactly there.
 */
export function intercept(b: Backend, wrap: { [K in keyof Backend]?: Backend[K] extends AnyFn ? (orig: Backend[K], ...args: Parameters<Backend[K]>) => ReturnType<Backend[K]> : never }): Backend {
  return new Proxy(b, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      const orig = (v as AnyFn).bind(target);
      const w = (wrap as Record<string | symbol, AnyFn | undefined>)[prop];
      return w ? (...args: unknown[]) => w(orig, ...args) : orig;
    },
  });
}
