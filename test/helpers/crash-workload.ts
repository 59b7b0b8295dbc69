/**
 * A seeded random file-system workload on a mounted home (async fs only), with a prediction of
 * the content it leaves: creates, writes, appends, truncates, renames of files and directories
 * (also over an existing file), deletes, mkdir/rmdir, symlinks and chmods across a few
 * directories.
 *
 * Every state-changing system call is one step. Before issuing it the workload updates its
 * prediction and calls `onState` with the predicted state, so that a caller that cannot know
 * whether the call completed (the daemon was killed) has the states before and after it. Writes
 * are at most `maxWrite` bytes (larger files are written by several steps), and a write(2) is
 * not always one FUSE request: the kernel ends a WRITE request after a partly written page that
 * is not in its page cache (fs/fuse/file.c, fuse_fill_write_pages), so a write that starts or
 * goes on inside such a page and crosses a page boundary reaches the daemon in pieces that end
 * at page boundaries, and a snapshot can fall between them. Each write therefore also announces
 * the states with its data applied up to each page boundary inside it.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ByteStream, Rng } from '../../scripts/lib/rng.js';
import { sha, type Entry, type Model } from './crash-model.js';

export type PEntry = { t: 'd' } | { t: 'f'; data: Buffer } | { t: 'l'; target: string };

export interface WorkloadOptions {
  /** Largest write(2) (default 64 KiB). */
  maxWrite?: number;
  /** Keep the home around this size. */
  maxFiles?: number;
  maxBytes?: number;
  /** Probability that a new file is large (256 KiB - 1.5 MiB, several chunks). */
  bigFileRate?: number;
}

/** The kernel's page size (x86-64, arm64 with 4 KiB pages). */
const PAGE = 4096;

type Op = 'create' | 'overwrite' | 'append' | 'truncate' | 'rewrite' | 'renameFile' | 'renameDir' | 'unlink' | 'mkdir' | 'rmdir' | 'symlink' | 'chmod';
const OPS: Op[] = ['create', 'overwrite', 'append', 'truncate', 'rewrite', 'renameFile', 'renameDir', 'unlink', 'mkdir', 'rmdir', 'symlink', 'chmod'];

export class Workload {
  /** Predicted content: profile-relative path -> entry (the root is implicit). */
  readonly files = new Map<string, PEntry>();
  /** Called with the predicted state before each state-changing call (only when set). */
  onState: ((m: Model) => void) | null = null;
  ops = 0;
  syscalls = 0;
  private readonly o: Required<WorkloadOptions>;

  constructor(
    private readonly rng: Rng,
    readonly root: string,
    /** Unique-name counter, shared across the workloads of one chain. */
    private readonly names: { n: number },
    opts: WorkloadOptions = {},
  ) {
    this.o = { maxWrite: 64 * 1024, maxFiles: 40, maxBytes: 3 << 20, bigFileRate: 0.06, ...opts };
  }

  /** Continue from a state read from the mount (with content). */
  static fromModel(rng: Rng, root: string, names: { n: number }, m: Model, opts: WorkloadOptions = {}): Workload {
    const w = new Workload(rng, root, names, opts);
    for (const [p, e] of m) {
      if (p === '') continue;
      if (e.t === 'd') w.files.set(p, { t: 'd' });
      else if (e.t === 'l') w.files.set(p, { t: 'l', target: e.hash });
      else {
        if (!e.data) throw new Error('fromModel needs a model read with content');
        w.files.set(p, { t: 'f', data: e.data });
      }
    }
    return w;
  }

  dataOf(p: string): Buffer | undefined {
    const e = this.files.get(p);
    return e?.t === 'f' ? e.data : undefined;
  }

  /** The predicted state as a content-only model. */
  contentModel(): Model {
    const m: Model = new Map();
    m.set('', { t: 'd', mode: 0, mtimeNs: 0n, size: 0, hash: '' });
    for (const [p, e] of this.files) {
      const z = { mode: 0, mtimeNs: 0n };
      if (e.t === 'd') m.set(p, { t: 'd', ...z, size: 0, hash: '' });
      else if (e.t === 'l') m.set(p, { t: 'l', ...z, size: e.target.length, hash: e.target });
      else m.set(p, { t: 'f', ...z, size: e.data.length, hash: sha(e.data) } satisfies Entry);
    }
    return m;
  }

  private abs(p: string): string {
    return path.join(this.root, p);
  }
  private dirs(): string[] {
    return ['', ...[...this.files].filter(([, e]) => e.t === 'd').map(([p]) => p)];
  }
  private regular(): string[] {
    return [...this.files].filter(([, e]) => e.t === 'f').map(([p]) => p);
  }
  private totalBytes(): number {
    let n = 0;
    for (const e of this.files.values()) if (e.t === 'f') n += e.data.length;
    return n;
  }
  private newName(prefix: string): string {
    return `${prefix}${this.names.n++}`;
  }
  private depth(p: string): number {
    return p === '' ? 0 : p.split('/').length;
  }
  private bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    new ByteStream(this.rng.u32(), this.rng.u32()).fill(b);
    return b;
  }

  /** Apply a predicted change, announce the state, then make the call. */
  private async sys<T>(apply: () => void, call: () => Promise<T>): Promise<T> {
    apply();
    this.syscalls++;
    if (this.onState) this.onState(this.contentModel());
    return call();
  }

  private async writeAt(h: fsp.FileHandle, p: string, data: Buffer, pos: number): Promise<void> {
    for (let off = 0; off < data.length; ) {
      const n = Math.min(this.o.maxWrite, data.length - off);
      const piece = data.subarray(off, off + n);
      const at = pos + off;
      const old = (this.files.get(p) as { data: Buffer }).data;
      /** The file with the first `len` bytes of this write applied. */
      const applied = (len: number): Buffer => {
        const next = Buffer.alloc(Math.max(old.length, at + len));
        old.copy(next);
        piece.copy(next, at, 0, len);
        return next;
      };
      if (this.onState) {
        // The pieces the kernel may split this write into end at page boundaries (see above).
        for (let b = (Math.floor(at / PAGE) + 1) * PAGE; b < at + n; b += PAGE) {
          this.files.set(p, { t: 'f', data: applied(b - at) });
          this.onState(this.contentModel());
        }
      }
      await this.sys(
        () => this.files.set(p, { t: 'f', data: applied(n) }),
        () => h.write(piece, 0, n, at),
      );
      off += n;
    }
  }

  private fileSize(): number {
    const r = this.rng.float();
    if (r < this.o.bigFileRate) return this.rng.int(256 << 10, 1536 << 10);
    if (r < 0.35) return this.rng.int(4096, 128 << 10);
    return this.rng.int(0, 4096);
  }

  /** Create one small file (a change that is sure to make the next snapshot non-empty). */
  async create(): Promise<void> {
    this.ops++;
    await this.run('create', this.regular(), this.dirs());
  }

  /** One random operation (one or more steps). */
  async step(): Promise<Op> {
    const files = this.regular();
    const dirs = this.dirs();
    const full = files.length >= this.o.maxFiles || this.totalBytes() >= this.o.maxBytes;
    const w: Record<Op, number> = {
      create: full ? 2 : 30,
      overwrite: files.length ? 12 : 0,
      append: files.length ? 10 : 0,
      truncate: files.length ? 6 : 0,
      rewrite: files.length ? 4 : 0,
      renameFile: files.length ? 8 : 0,
      renameDir: dirs.length > 1 ? 4 : 0,
      unlink: files.length ? (full ? 40 : 10) : 0,
      mkdir: dirs.length < 12 ? 6 : 1,
      rmdir: dirs.length > 4 ? 4 : 0,
      symlink: 3,
      chmod: files.length ? 3 : 0,
    };
    const op = this.rng.weighted(OPS, OPS.map((o) => w[o]));
    this.ops++;
    await this.run(op, files, dirs);
    return op;
  }

  private async run(op: Op, files: string[], dirs: string[]): Promise<void> {
    const rng = this.rng;
    switch (op) {
      case 'create': {
        const p = path.posix.join(rng.pick(dirs), this.newName('f'));
        const data = this.bytes(this.fileSize());
        const h = await this.sys(() => this.files.set(p, { t: 'f', data: Buffer.alloc(0) }), () => fsp.open(this.abs(p), 'wx', 0o644));
        try {
          await this.writeAt(h, p, data, 0);
        } finally {
          await h.close().catch(() => {});
        }
        return;
      }
      case 'rewrite': {
        const p = rng.pick(files);
        const data = this.bytes(this.fileSize());
        const h = await this.sys(() => this.files.set(p, { t: 'f', data: Buffer.alloc(0) }), () => fsp.open(this.abs(p), 'w'));
        try {
          await this.writeAt(h, p, data, 0);
        } finally {
          await h.close().catch(() => {});
        }
        return;
      }
      case 'overwrite':
      case 'append': {
        const p = rng.pick(files);
        const size = (this.files.get(p) as { data: Buffer }).data.length;
        const n = rng.chance(0.8) ? rng.int(1, 8192) : rng.int(8192, 200 << 10);
        const pos = op === 'append' ? size : rng.int(0, size);
        const h = await fsp.open(this.abs(p), 'r+');
        try {
          await this.writeAt(h, p, this.bytes(n), pos);
        } finally {
          await h.close().catch(() => {});
        }
        return;
      }
      case 'truncate': {
        const p = rng.pick(files);
        const old = (this.files.get(p) as { data: Buffer }).data;
        const len = rng.chance(0.6) ? rng.int(0, old.length) : old.length + rng.int(1, 64 << 10);
        await this.sys(
          () => {
            const next = Buffer.alloc(len);
            old.copy(next, 0, 0, Math.min(len, old.length));
            this.files.set(p, { t: 'f', data: next });
          },
          () => fsp.truncate(this.abs(p), len),
        );
        return;
      }
      case 'renameFile': {
        const from = rng.pick(files);
        const others = files.filter((f) => f !== from);
        const to = others.length && rng.chance(0.3) ? rng.pick(others) : path.posix.join(rng.pick(dirs), this.newName('r'));
        await this.sys(
          () => {
            const e = this.files.get(from)!;
            this.files.delete(from);
            this.files.set(to, e);
          },
          () => fsp.rename(this.abs(from), this.abs(to)),
        );
        return;
      }
      case 'renameDir': {
        const from = rng.pick(dirs.filter((d) => d !== ''));
        const sub = (d: string) => d === from || d.startsWith(from + '/');
        const height = Math.max(...dirs.filter(sub).map((d) => this.depth(d))) - this.depth(from);
        const parents = dirs.filter((d) => !sub(d) && this.depth(d) + 1 + height <= 5);
        if (parents.length === 0) return;
        const to = path.posix.join(rng.pick(parents), this.newName('D'));
        await this.sys(
          () => {
            for (const [p, e] of [...this.files]) {
              if (p === from || p.startsWith(from + '/')) {
                this.files.delete(p);
                this.files.set(to + p.slice(from.length), e);
              }
            }
          },
          () => fsp.rename(this.abs(from), this.abs(to)),
        );
        return;
      }
      case 'unlink': {
        const p = rng.pick(files);
        await this.sys(() => this.files.delete(p), () => fsp.unlink(this.abs(p)));
        return;
      }
      case 'mkdir': {
        const parents = dirs.filter((d) => this.depth(d) < 4);
        const p = path.posix.join(rng.pick(parents), this.newName('d'));
        await this.sys(() => this.files.set(p, { t: 'd' }), () => fsp.mkdir(this.abs(p), { mode: rng.pick([0o755, 0o700, 0o750]) }));
        return;
      }
      case 'rmdir': {
        const empty = dirs.filter((d) => d !== '' && ![...this.files.keys()].some((p) => p.startsWith(d + '/')));
        if (empty.length === 0) return;
        const p = rng.pick(empty);
        await this.sys(() => this.files.delete(p), () => fsp.rmdir(this.abs(p)));
        return;
      }
      case 'symlink': {
        const p = path.posix.join(rng.pick(dirs), this.newName('l'));
        const target = rng.chance(0.5) && files.length ? `../${rng.pick(files)}` : `target-${rng.hex(rng.int(1, 40))}`;
        await this.sys(() => this.files.set(p, { t: 'l', target }), () => fsp.symlink(target, this.abs(p)));
        return;
      }
      case 'chmod': {
        const p = rng.pick(files);
        await this.sys(() => {}, () => fsp.chmod(this.abs(p), rng.pick([0o600, 0o644, 0o640, 0o755])));
        return;
      }
    }
  }
}
