/**
 * File system helpers for the repository tests: temp dirs cleaned up in t.teardown, a
 * metadata-exact snapshot of a directory tree (lstat, bigint), and a listing of a repository
 * directory for "nothing changed" checks.
 */
import type { ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

export const execFileP = promisify(execFile);

/** A fresh directory under the system temp dir, removed when the test ends. */
export async function tempDir(t: ExecutionContext, label = 'roamfs-test'): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `${label}-`));
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Mount a tmpfs of `size` (e.g. "8m") on a new directory; unmounted (and removed) at teardown.
 * Needs root.
 */
export async function tmpfs(t: ExecutionContext, size: string): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-tmpfs-'));
  await execFileP('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  t.teardown(async () => {
    await execFileP('umount', [dir]).catch(() => execFileP('umount', ['-l', dir]));
    await fsp.rm(dir, { recursive: true, force: true });
  });
  return dir;
}

export interface NodeInfo {
  type: 'file' | 'dir' | 'symlink' | 'other';
  mode: number;
  uid: number;
  gid: number;
  mtimeNs: bigint;
  /** Regular files and symlinks only (directory sizes are file system specific). */
  size?: bigint;
  target?: string;
  /** SHA-256 of a regular file's content. */
  sha256?: string;
}

async function hashFile(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(p, { highWaterMark: 4 * 1024 * 1024 })) h.update(b as Buffer);
  return h.digest('hex');
}

/**
 * Everything that a round trip must preserve, per path ("" is the root), from lstat with
 * bigint times: type, permission bits (incl. setuid/setgid/sticky), owner, mtime in ns, size,
 * symlink target, content hash. Symlinks are never followed.
 */
export async function snapshotTree(root: string): Promise<Map<string, NodeInfo>> {
  const out = new Map<string, NodeInfo>();
  async function visit(abs: string, rel: string): Promise<void> {
    const st = await fsp.lstat(abs, { bigint: true });
    const type = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'other';
    const info: NodeInfo = { type, mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), mtimeNs: st.mtimeNs };
    if (type === 'file') {
      info.size = st.size;
      info.sha256 = await hashFile(abs);
    } else if (type === 'symlink') {
      info.size = st.size;
      info.target = await fsp.readlink(abs);
    }
    out.set(rel, info);
    if (type === 'dir') {
      const names = (await fsp.readdir(abs)).sort();
      for (const n of names) await visit(path.join(abs, n), rel ? `${rel}/${n}` : n);
    }
  }
  await visit(root, '');
  return out;
}

/** Sorted plain object of a snapshot, for t.deepEqual with readable diffs. */
export function asObject(m: Map<string, NodeInfo>): Record<string, NodeInfo> {
  return Object.fromEntries([...m.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * One line per path of a directory (type, mode, size, mtime in ns, content hash), ignoring
 * the tmp/ of any repository in it (garbage by definition). Equal listings mean nothing was written, touched,
 * created or removed.
 */
export async function listRepo(repo: string): Promise<string[]> {
  const lines: string[] = [];
  async function visit(abs: string, rel: string): Promise<void> {
    let st;
    try {
      st = await fsp.lstat(abs, { bigint: true });
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT' && rel === '') {
        lines.push('(absent)');
        return;
      }
      throw err;
    }
    const kind = st.isFile() ? 'f' : st.isDirectory() ? 'd' : st.isSymbolicLink() ? 'l' : '?';
    let extra = '';
    if (kind === 'f') extra = (await hashFile(abs)).slice(0, 16);
    lines.push(`${rel || '.'} ${kind} ${(st.mode & 0o7777n).toString(8)} ${kind === 'd' ? '-' : st.size} ${st.mtimeNs} ${extra}`);
    if (kind === 'd') {
      const names = (await fsp.readdir(abs)).sort();
      const isRepo = names.includes('roamfs-repository.json');
      for (const n of names) {
        if (isRepo && n === 'tmp') continue; // a repository's tmp/ (at any depth of the listing)
        await visit(path.join(abs, n), rel ? `${rel}/${n}` : n);
      }
    }
  }
  await visit(repo, '');
  return lines;
}

/** `du -sb DIR`: apparent size in bytes of everything under dir. */
export async function duBytes(dir: string): Promise<number> {
  const { stdout } = await execFileP('du', ['-sb', dir]);
  return Number(stdout.split(/\s/)[0]);
}
