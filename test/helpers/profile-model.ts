import type { Repository } from '../../src/repository/repository.js';
import type { RootRef } from '../../src/repository/objects.js';
import type { Vfs } from '../../src/vfs/types.js';
import { constants as C } from 'node:fs';

/** What a profile looks like to a user: path -> type, mode, content/target, mtime (ns as string). */
export type Model = Record<string, string>;

function describe(type: string, mode: number, mtimeNs: bigint, payload: string): string {
  return `${type} ${(mode & 0o7777).toString(8)} ${mtimeNs} ${payload}`;
}

/** The model of a committed (or snapshot) root in a repository. */
export async function modelOfTree(repo: Repository, root: RootRef): Promise<Model> {
  const out: Model = {};
  async function walk(tree: string, prefix: string): Promise<void> {
    for (const e of await repo.getTree(tree)) {
      const p = prefix ? `${prefix}/${e.name}` : e.name;
      if (e.type === 'dir') {
        out[p] = describe('d', e.mode, e.mtimeNs, '');
        await walk(e.tree, p);
      } else if (e.type === 'symlink') {
        out[p] = describe('l', e.mode, e.mtimeNs, e.target);
      } else {
        const parts = await Promise.all(e.chunks.map((c) => repo.getChunk(c.id, c.size)));
        out[p] = describe('f', e.mode, e.mtimeNs, Buffer.concat(parts).toString('base64'));
      }
    }
  }
  await walk(root.tree, '');
  return out;
}

/** The model of what a Vfs shows now. Symlink modes are not compared (Linux shows 0777). */
export async function modelOfVfs(vfs: Vfs): Promise<Model> {
  const out: Model = {};
  async function walk(dir: string, prefix: string): Promise<void> {
    for (const { name } of await vfs.readdir(dir)) {
      if (name === '.' || name === '..') continue;
      const abs = dir === '/' ? `/${name}` : `${dir}/${name}`;
      const p = prefix ? `${prefix}/${name}` : name;
      const a = await vfs.getattr(abs);
      const type = a.mode & C.S_IFMT;
      if (type === C.S_IFDIR) {
        out[p] = describe('d', a.mode, a.mtimeNs, '');
        await walk(abs, p);
      } else if (type === C.S_IFLNK) {
        out[p] = describe('l', 0o777, a.mtimeNs, await vfs.readlink(abs));
      } else {
        const fh = await vfs.open(abs, C.O_RDONLY);
        const buf = Buffer.alloc(a.size);
        let got = 0;
        while (got < a.size) {
          const n = await vfs.read(fh, buf.subarray(got), a.size - got, got);
          if (n === 0) break;
          got += n;
        }
        await vfs.release(fh);
        out[p] = describe('f', a.mode, a.mtimeNs, buf.subarray(0, got).toString('base64'));
      }
    }
  }
  await walk('/', '');
  return out;
}

/** Symlink modes as the repository stores them may differ from 0777; normalise for comparison. */
export function normaliseLinks(m: Model): Model {
  const out: Model = {};
  for (const [k, v] of Object.entries(m)) out[k] = v.startsWith('l ') ? v.replace(/^l \d+ /, 'l 777 ') : v;
  return out;
}
