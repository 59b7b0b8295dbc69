/**
 * Source trees for the CLI tests: small helpers to write files/dirs/symlinks and set exact
 * attributes (owner, mode, mtime in ns) afterwards, children before parents.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { lutimens } from '../../src/core/native.js';
import { writeRandomFile } from './repo-data.js';

export class TreeWriter {
  private readonly attrs: Array<{ rel: string; mode?: number; uid?: number; gid?: number; mtimeNs: bigint; symlink: boolean }> = [];
  private n = 0;

  constructor(readonly root: string) {}

  abs(rel: string): string {
    return rel === '' ? this.root : path.join(this.root, rel);
  }

  /** A distinct mtime with a nanosecond part for every entry (deterministic). */
  private nextTime(): bigint {
    this.n++;
    return 1_600_000_000_000_000_000n + BigInt(this.n) * 86_400_123_456_789n + BigInt((this.n * 7919) % 1_000_000_000);
  }

  async dir(rel: string, o: { mode?: number; uid?: number; gid?: number; mtimeNs?: bigint } = {}): Promise<void> {
    await fsp.mkdir(this.abs(rel), { recursive: true });
    this.attrs.push({ rel, ...o, mtimeNs: o.mtimeNs ?? this.nextTime(), symlink: false });
  }

  async file(rel: string, content: Buffer | string | { random: number; seed: string } | { zeros: number }, o: { mode?: number; uid?: number; gid?: number; mtimeNs?: bigint } = {}): Promise<void> {
    const p = this.abs(rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    if (typeof content === 'string' || Buffer.isBuffer(content)) await fsp.writeFile(p, content);
    else if ('random' in content) await writeRandomFile(p, content.random, content.seed);
    else {
      const h = await fsp.open(p, 'w');
      try {
        const block = Buffer.alloc(Math.min(content.zeros, 8 << 20));
        for (let done = 0; done < content.zeros; done += block.length) await h.write(block, 0, Math.min(block.length, content.zeros - done));
      } finally {
        await h.close();
      }
    }
    this.attrs.push({ rel, mode: o.mode ?? 0o644, ...o, mtimeNs: o.mtimeNs ?? this.nextTime(), symlink: false });
  }

  async symlink(rel: string, target: string, o: { uid?: number; gid?: number; mtimeNs?: bigint } = {}): Promise<void> {
    const p = this.abs(rel);
    await fsp.mkdir(path.dirname(p), { recursive: true });
    await fsp.symlink(target, p);
    this.attrs.push({ rel, ...o, mtimeNs: o.mtimeNs ?? this.nextTime(), symlink: true });
  }

  /** Apply owners, modes and mtimes: deepest paths first, so directory mtimes stay put. */
  async finish(rootAttrs: { mode?: number; mtimeNs?: bigint } = {}): Promise<void> {
    const all = [...this.attrs, { rel: '', mode: rootAttrs.mode ?? 0o755, mtimeNs: rootAttrs.mtimeNs ?? this.nextTime(), symlink: false }];
    all.sort((a, b) => depth(b.rel) - depth(a.rel));
    for (const a of all) {
      const p = this.abs(a.rel);
      if ('uid' in a && a.uid !== undefined) await fsp.lchown(p, a.uid, (a as { gid?: number }).gid ?? a.uid);
      if (!a.symlink && 'mode' in a && a.mode !== undefined) await fsp.chmod(p, a.mode);
      lutimens(p, a.mtimeNs, a.mtimeNs);
    }
  }
}

function depth(rel: string): number {
  return rel === '' ? 0 : rel.split('/').length;
}
