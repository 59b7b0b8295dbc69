import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import type { BigIntStats } from 'node:fs';
import * as path from 'node:path';
import { RoamfsError, errnoCode, ioError, isRoamfsError } from '../core/errors.js';
import { mapLimit } from '../core/async.js';
import type { Clock } from '../core/clock.js';
import type { ObjectId } from '../core/hash.js';
import { assertUserName, entryNameProblem } from '../core/names.js';
import type { ChunkRef, Commit, RootRef, TreeEntry } from '../repository/objects.js';
import type { Ref } from '../repository/objects.js';
import type { Repository } from '../repository/repository.js';
import { countChangedFiles } from '../repository/walk.js';

export interface ImportProgress {
  files: number;
  bytes: number;
  totalFiles: number;
  totalBytes: number;
}

export interface ImportOptions {
  clock: Clock;
  host: string;
  session: string;
  message?: string;
  /** Files stored in parallel. */
  concurrency?: number;
  /**
   * Read the files with synchronous calls, one after the other (the CLI: no event loop to keep
   * free; a thread-pool round trip per call costs more than the call).
   */
  sync?: boolean;
  onProgress?: (p: ImportProgress) => void;
  /** Called for entries that are not part of a profile (sockets, FIFOs, devices). */
  onSkip?: (relPath: string, why: string) => void;
}

export interface ImportResult {
  commit: ObjectId;
  ref: Ref;
  files: number;
  dirs: number;
  symlinks: number;
  bytes: number;
  /** Bytes of objects that were new to the repository. */
  bytesNew: number;
  /** Paths changed versus the previous head. */
  changed: number;
}

interface ScanNode {
  name: string;
  rel: string;
  abs: string;
  st: BigIntStats;
  kind: 'file' | 'dir' | 'symlink';
  children?: ScanNode[];
  target?: string;
  chunks?: ChunkRef[];
  size?: number;
  /** Removed after the scan saw it (a lock or cache file): left out of the snapshot. */
  vanished?: boolean;
}

const BLOCK = 8 * 1024 * 1024;

/** Walk `dir` with lstat, validating names; returns the root node and totals. */
async function scan(dir: string, onSkip: (rel: string, why: string) => void, sync = false) {
  const totals = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  const all: ScanNode[] = [];
  const readdir = (p: string) => (sync ? fs.readdirSync(p, { encoding: 'buffer' }) : fsp.readdir(p, { encoding: 'buffer' }));
  const lstat = (p: string) => (sync ? fs.lstatSync(p, { bigint: true }) : fsp.lstat(p, { bigint: true }));
  const readlink = (p: string) => (sync ? fs.readlinkSync(p) : fsp.readlink(p));
  async function visit(node: ScanNode): Promise<void> {
    let raw: Buffer[];
    try {
      raw = (await readdir(node.abs)) as Buffer[];
    } catch (err) {
      if (errnoCode(err) === 'ENOENT' && node.rel !== '') {
        node.vanished = true; // removed since its parent was listed: not part of this snapshot
        return;
      }
      throw ioError(`read directory ${node.abs}`, err);
    }
    const kids: ScanNode[] = [];
    for (const b of raw) {
      const name = b.toString('utf8');
      const rel = node.rel ? `${node.rel}/${name}` : name;
      if (!Buffer.from(name, 'utf8').equals(b)) {
        throw new RoamfsError('UNSUPPORTED', `file name is not valid UTF-8: ${path.join(node.abs, name)}`);
      }
      const why = entryNameProblem(name);
      if (why) throw new RoamfsError('INVALID_NAME', `invalid file name ${JSON.stringify(rel)}: ${why}`);
      const abs = path.join(node.abs, name);
      let st: BigIntStats;
      try {
        st = await lstat(abs);
      } catch (err) {
        if (errnoCode(err) === 'ENOENT') continue; // vanished while we looked: not part of this snapshot
        throw ioError(`stat ${abs}`, err);
      }
      const kind = st.isFile() ? 'file' : st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : null;
      if (!kind) {
        onSkip(rel, st.isSocket() ? 'socket' : st.isFIFO() ? 'FIFO' : 'device');
        continue;
      }
      kids.push({ name, rel, abs, st, kind });
    }
    node.children = kids;
    await mapLimit(kids, 8, async (k) => {
      all.push(k);
      if (k.kind === 'dir') {
        totals.dirs++;
        await visit(k);
      } else if (k.kind === 'file') {
        totals.files++;
        totals.bytes += Number(k.st.size);
      } else {
        totals.symlinks++;
        try {
          k.target = await readlink(k.abs);
        } catch (err) {
          if (errnoCode(err) === 'ENOENT') k.vanished = true;
          else throw ioError(`readlink ${k.abs}`, err);
        }
      }
    });
  }
  let st: BigIntStats;
  try {
    st = await fsp.stat(dir, { bigint: true });
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new RoamfsError('NOT_FOUND', `directory ${dir} does not exist`);
    throw ioError(`stat ${dir}`, err);
  }
  if (!st.isDirectory()) throw new RoamfsError('NOT_FOUND', `${dir} is not a directory`);
  const root: ScanNode = { name: '', rel: '', abs: path.resolve(dir), st, kind: 'dir' };
  await visit(root);
  return { root, all, totals };
}

/** Read a file block by block, cut it into chunks and store them. */
/** The open source file: `read` at the current position, `close`. */
interface Source {
  read(buf: Buffer, offset: number, length: number): Promise<number>;
  close(): Promise<void>;
}

async function openSource(abs: string, sync: boolean): Promise<Source> {
  if (sync) {
    const fd = fs.openSync(abs, 'r');
    return {
      read: async (buf, offset, length) => fs.readSync(fd, buf, offset, length, null),
      close: async () => fs.closeSync(fd),
    };
  }
  const h = await fsp.open(abs, 'r');
  return {
    read: async (buf, offset, length) => (await h.read(buf, offset, length, null)).bytesRead,
    close: () => h.close(),
  };
}

async function storeFile(repo: Repository, node: ScanNode, onBytes: (n: number) => void, sync = false): Promise<void> {
  let h: Source;
  try {
    h = await openSource(node.abs, sync);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') {
      node.vanished = true; // removed since the scan: not part of this snapshot
      return;
    }
    throw ioError(`open ${node.abs}`, err);
  }
  const chunks: ChunkRef[] = [];
  let total = 0;
  try {
    const expected = Number(node.st.size);
    let buf = Buffer.allocUnsafe(Math.min(Math.max(expected + 1, 4096), BLOCK + repo.chunker.params.maxSize));
    let have = 0; // bytes buffered, starting at 0
    let eof = false;
    while (!eof || have > 0) {
      while (!eof && have < buf.length) {
        const bytesRead = await h.read(buf, have, buf.length - have);
        if (bytesRead === 0) eof = true;
        have += bytesRead;
        if (!eof && have === buf.length && buf.length < BLOCK + repo.chunker.params.maxSize) {
          // The file grew past its stat size: widen the buffer.
          const nb = Buffer.allocUnsafe(BLOCK + repo.chunker.params.maxSize);
          buf.copy(nb, 0, 0, have);
          buf = nb;
        }
      }
      let off = 0;
      // Without EOF we must leave at least maxSize bytes for the chunker's look-ahead.
      while (have - off > 0 && (eof || have - off >= repo.chunker.params.maxSize)) {
        const len = repo.chunker.cut(buf, off, have);
        const piece = buf.subarray(off, off + len);
        const { id } = await repo.putChunk(piece);
        chunks.push({ id, size: len });
        total += len;
        onBytes(len);
        off += len;
      }
      buf.copy(buf, 0, off, have);
      have -= off;
    }
  } catch (err) {
    throw ioError(`import ${node.abs}`, err);
  } finally {
    await h.close();
  }
  node.chunks = chunks;
  node.size = total;
}

function attrs(st: BigIntStats) {
  return { mode: Number(st.mode & 0o7777n), uid: Number(st.uid), gid: Number(st.gid), mtimeNs: st.mtimeNs };
}

/** Store the trees bottom-up; returns the root's RootRef. */
async function storeTrees(repo: Repository, root: ScanNode): Promise<RootRef> {
  async function tree(node: ScanNode): Promise<ObjectId> {
    const entries: TreeEntry[] = [];
    for (const k of node.children ?? []) {
      if (k.vanished) continue;
      const a = { name: k.name, ...attrs(k.st) };
      if (k.kind === 'dir') entries.push({ ...a, type: 'dir', tree: await tree(k) });
      else if (k.kind === 'file') entries.push({ ...a, type: 'file', size: k.size!, chunks: k.chunks! });
      else entries.push({ ...a, type: 'symlink', target: k.target! });
    }
    return repo.putTree(entries);
  }
  return { tree: await tree(root), ...attrs(root.st) };
}

/**
 * Commit the directory `dir` as the profile of `user`: a new user, or a new commit on top of
 * the current head. Objects are durable before the head moves; a crash at any point leaves
 * the head at the old commit or the new one.
 */
export async function importDirectory(repo: Repository, user: string, dir: string, opts: ImportOptions): Promise<ImportResult> {
  assertUserName(user);
  const onSkip = opts.onSkip ?? (() => {});
  const { root, all, totals } = await scan(dir, onSkip, opts.sync ?? false);
  const bytesBefore = repo.stats.bytesWritten;
  const progress: ImportProgress = { files: 0, bytes: 0, totalFiles: totals.files, totalBytes: totals.bytes };
  opts.onProgress?.(progress);
  // Big files first: they take longest, and small ones fill in around them.
  const files = all.filter((n) => n.kind === 'file').sort((a, b) => Number(b.st.size - a.st.size));
  const sync = opts.sync ?? false;
  await mapLimit(files, sync ? 1 : (opts.concurrency ?? 16), async (n) => {
    await storeFile(
      repo,
      n,
      (b) => {
        progress.bytes += b;
      },
      sync,
    );
    progress.files++;
    opts.onProgress?.(progress);
  });
  const rootRef = await storeTrees(repo, root);

  for (let attempt = 0; ; attempt++) {
    const head = await repo.head(user);
    const parent = head ? await repo.getCommit(head.commit) : null;
    const changed = await countChangedFiles(repo, parent?.root.tree ?? null, rootRef.tree);
    const commit: Commit = {
      parents: head ? [head.commit] : [],
      root: rootRef,
      time: opts.clock.now(),
      host: opts.host,
      session: opts.session,
      message: opts.message ?? `import ${path.resolve(dir)}`,
      stats: { files: changed, bytes: repo.stats.bytesWritten - bytesBefore },
    };
    const id = await repo.putCommit(commit);
    try {
      const ref = await repo.moveHead(user, head, id, { time: commit.time, host: opts.host, session: opts.session });
      return { commit: id, ref, ...totals, bytesNew: commit.stats.bytes, changed };
    } catch (err) {
      // An import replaces the profile with DIR, so on a race we simply build on the newer head.
      if (!isRoamfsError(err, 'HEAD_CONFLICT') || attempt >= 4) throw err;
    }
  }
}
