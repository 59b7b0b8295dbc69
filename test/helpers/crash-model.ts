/**
 * Models of a home for the crash tests: what a user sees (path -> type, permission bits, mtime in
 * ns, content), read from a mounted home, an exported directory, or a commit in the repository,
 * so that all three can be compared exactly.
 *
 * Paths are profile-relative ('' is the root directory itself). Content is kept as a SHA-256 (and
 * optionally the bytes, so that a workload can continue from a recovered state). Symlink modes are
 * not compared (Linux always shows 0777).
 */
import { createHash } from 'node:crypto';
import { constants as C } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Repository } from '../../src/repository/repository.js';
import type { RootRef } from '../../src/repository/objects.js';

export interface Entry {
  t: 'd' | 'f' | 'l';
  mode: number;
  mtimeNs: bigint;
  size: number;
  /** Files: sha256 of the content; symlinks: the target; directories: ''. */
  hash: string;
  /** File bytes, when the model was read with content. */
  data?: Buffer;
}
export type Model = Map<string, Entry>;

const hashes = new WeakMap<Buffer, string>();
export function sha(b: Buffer): string {
  let h = hashes.get(b);
  if (h === undefined) {
    h = createHash('sha256').update(b).digest('hex');
    hashes.set(b, h);
  }
  return h;
}

const join = (p: string, n: string) => (p ? `${p}/${n}` : n);

/** One comparable line per entry: everything (full) or type and content only. */
export function describe(e: Entry, full: boolean): string {
  if (!full) return `${e.t} ${e.hash}`;
  const mode = e.t === 'l' ? '-' : (e.mode & 0o7777).toString(8);
  return `${e.t} ${mode} ${e.mtimeNs} ${e.size} ${e.hash}`;
}

/** Differences between two models, as readable lines (empty when equal). */
export function diffModels(expected: Model, actual: Model, full = true, max = 20): string[] {
  const out: string[] = [];
  const keys = [...new Set([...expected.keys(), ...actual.keys()])].sort();
  for (const k of keys) {
    const a = expected.get(k);
    const b = actual.get(k);
    const da = a ? describe(a, full) : null;
    const db = b ? describe(b, full) : null;
    if (da !== db) out.push(`/${k}: expected ${da ?? 'absent'}, got ${db ?? 'absent'}`);
    if (out.length >= max) {
      out.push('...');
      break;
    }
  }
  return out;
}

export function sameModel(a: Model, b: Model, full = true): boolean {
  if (a.size !== b.size) return false;
  for (const [k, e] of a) {
    const f = b.get(k);
    if (!f || describe(e, full) !== describe(f, full)) return false;
  }
  return true;
}

/** A short fingerprint of a model's types and contents (for prefix checks). */
export function contentKey(m: Model): string {
  const h = createHash('sha256');
  for (const k of [...m.keys()].sort()) h.update(`${k}\0${describe(m.get(k)!, false)}\n`);
  return h.digest('hex');
}

/**
 * Read a directory tree (a mounted home or an export) with async fs only. With `content` the
 * files are read (and their bytes kept); otherwise `contentOf` supplies the hash of each file
 * (the workload's prediction) and only sizes are read.
 */
export async function walkDir(root: string, opts: { content: boolean; contentOf?: (p: string) => Buffer | undefined }): Promise<Model> {
  const out: Model = new Map();
  const st = await fsp.lstat(root, { bigint: true });
  out.set('', { t: 'd', mode: Number(st.mode) & 0o7777, mtimeNs: st.mtimeNs, size: 0, hash: '' });
  async function walk(abs: string, rel: string): Promise<void> {
    const names = (await fsp.readdir(abs)).sort();
    for (const name of names) {
      const a = path.join(abs, name);
      const r = join(rel, name);
      const s = await fsp.lstat(a, { bigint: true });
      const type = Number(s.mode) & C.S_IFMT;
      const base = { mode: Number(s.mode) & 0o7777, mtimeNs: s.mtimeNs };
      if (type === C.S_IFDIR) {
        out.set(r, { t: 'd', ...base, size: 0, hash: '' });
        await walk(a, r);
      } else if (type === C.S_IFLNK) {
        const target = await fsp.readlink(a);
        out.set(r, { t: 'l', ...base, size: Buffer.byteLength(target), hash: target });
      } else if (type === C.S_IFREG) {
        if (opts.content) {
          const data = await fsp.readFile(a);
          out.set(r, { t: 'f', ...base, size: data.length, hash: sha(data), data });
        } else {
          const data = opts.contentOf?.(r);
          out.set(r, { t: 'f', ...base, size: Number(s.size), hash: data && data.length === Number(s.size) ? sha(data) : `?size ${s.size}` });
        }
      } else {
        throw new Error(`unexpected file type ${type.toString(8)} at ${a}`);
      }
    }
  }
  await walk(root, '');
  return out;
}

/** The model of a committed (or snapshot) root in a repository. */
export async function treeModel(repo: Repository, root: RootRef): Promise<Model> {
  const out: Model = new Map();
  out.set('', { t: 'd', mode: root.mode & 0o7777, mtimeNs: root.mtimeNs, size: 0, hash: '' });
  const chunkHash = new Map<string, Buffer>();
  async function walk(tree: string, rel: string): Promise<void> {
    for (const e of await repo.getTree(tree)) {
      const r = join(rel, e.name);
      const base = { mode: e.mode & 0o7777, mtimeNs: e.mtimeNs };
      if (e.type === 'dir') {
        out.set(r, { t: 'd', ...base, size: 0, hash: '' });
        await walk(e.tree, r);
      } else if (e.type === 'symlink') {
        out.set(r, { t: 'l', ...base, size: Buffer.byteLength(e.target), hash: e.target });
      } else {
        const parts: Buffer[] = [];
        for (const c of e.chunks) {
          let b = chunkHash.get(c.id);
          if (!b) chunkHash.set(c.id, (b = await repo.getChunk(c.id, c.size)));
          parts.push(b);
        }
        const data = Buffer.concat(parts);
        out.set(r, { t: 'f', ...base, size: e.size, hash: sha(data) });
      }
    }
  }
  await walk(root.tree, '');
  return out;
}
