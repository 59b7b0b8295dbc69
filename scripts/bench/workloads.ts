/**
 * File workloads on the mounted home (issue 5 item 4), identical on every system, in a fresh
 * directory of the home. For roamfs, the FUSE per-op counters (`status --json` field `fuse`) are
 * diffed around every workload (item 9).
 */
import * as path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { rotate } from '../lib/bench-util.js';
import { type Ctx, cold, rollback, scratchDir } from './context.js';
import { app, MiB, type RoamfsStatus, log, sh } from './core.js';
import { type Home, type SystemName, login, removeScratch } from './systems.js';
import { ensureGitSource } from './inputs.js';

export const WORKLOAD_SYSTEMS: SystemName[] = ['native', 'overlayfs', 'fuse-overlayfs', 'rclone', 'roamfs'];

export interface Workload {
  id: string;
  label: (ctx: Ctx) => string;
  /** Returns seconds; `before` runs untimed first (cache drops). */
  cold?: boolean;
  run: (ctx: Ctx, w: WorkDirs) => Promise<number>;
  /** Untimed set-up, before the cache drop and the FUSE counters are read. */
  before?: (ctx: Ctx, w: WorkDirs) => Promise<unknown>;
  /** Untimed clean-up, after the FUSE counters were read (so its ops are not counted). */
  after?: (ctx: Ctx, w: WorkDirs) => Promise<unknown>;
}

interface WorkDirs {
  dir: string;
  gitSrc: string;
}

const env = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', LC_ALL: 'C', GIT_CONFIG_COUNT: '2', GIT_CONFIG_KEY_0: 'gc.auto', GIT_CONFIG_VALUE_0: '0', GIT_CONFIG_KEY_1: 'maintenance.auto', GIT_CONFIG_VALUE_1: 'false' };

async function wall(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

export async function smallFiles(op: 'create' | 'stat' | 'read' | 'delete', dir: string, n: number): Promise<number> {
  const out = await sh(process.execPath, [path.join(app.distScripts, 'bench', 'smallfiles.js'), op, dir, String(n)], { timeoutMs: 30 * 60_000 });
  return (JSON.parse(out.trim()) as { seconds: number }).seconds;
}

const mib = (b: number) => `${Math.round(b / MiB)} MiB`;

export const WORKLOADS: Workload[] = [
  {
    id: 'seq-write',
    label: (c) => `seq write ${mib(c.cfg.seqBytes)} (dd bs=1M conv=fsync)`,
    run: (c, w) => wall(() => sh('dd', ['if=/dev/zero', `of=${path.join(w.dir, 'seq.bin')}`, 'bs=1M', `count=${c.cfg.seqBytes / MiB}`, 'conv=fsync'])),
  },
  {
    id: 'seq-read-cold',
    label: () => 'seq read cold (dd bs=1M)',
    cold: true,
    run: (_c, w) => wall(() => sh('dd', [`if=${path.join(w.dir, 'seq.bin')}`, 'of=/dev/null', 'bs=1M'])),
  },
  {
    id: 'seq-read-warm',
    label: () => 'seq read warm',
    run: (_c, w) => wall(() => sh('dd', [`if=${path.join(w.dir, 'seq.bin')}`, 'of=/dev/null', 'bs=1M'])),
    after: (_c, w) => sh('rm', ['-f', path.join(w.dir, 'seq.bin')]),
  },
  { id: 'sf-create', label: (c) => `create ${c.cfg.smallFiles} x 4 KiB`, run: (c, w) => smallFiles('create', path.join(w.dir, 'sf'), c.cfg.smallFiles) },
  { id: 'sf-stat', label: (c) => `stat ${c.cfg.smallFiles} cold (readdir+lstat)`, cold: true, run: (c, w) => smallFiles('stat', path.join(w.dir, 'sf'), c.cfg.smallFiles) },
  { id: 'sf-read', label: (c) => `read ${c.cfg.smallFiles} cold`, cold: true, run: (c, w) => smallFiles('read', path.join(w.dir, 'sf'), c.cfg.smallFiles) },
  { id: 'sf-delete', label: (c) => `delete ${c.cfg.smallFiles}`, run: (c, w) => smallFiles('delete', path.join(w.dir, 'sf'), c.cfg.smallFiles) },
  {
    id: 'git-clone',
    label: (c) => `git clone (${c.cfg.gitFiles} files)`,
    run: (_c, w) => wall(() => sh('git', ['clone', '-q', '--no-hardlinks', w.gitSrc, path.join(w.dir, 'checkout')], { env })),
  },
  {
    id: 'git-status-cold',
    label: () => 'git status cold',
    cold: true,
    run: (_c, w) => wall(() => sh('git', ['-C', path.join(w.dir, 'checkout'), 'status', '--porcelain'], { env })),
  },
  { id: 'git-status-warm', label: () => 'git status warm', run: (_c, w) => wall(() => sh('git', ['-C', path.join(w.dir, 'checkout'), 'status', '--porcelain'], { env })) },
  {
    id: 'sqlite',
    label: (c) => `sqlite WAL ${c.cfg.sqliteTx} INSERT tx`,
    before: (_c, w) => sh('sqlite3', ['-batch', '-bail', path.join(w.dir, 'bench.sqlite')], { input: 'PRAGMA journal_mode=WAL;\nCREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);\n' }),
    run: (c, w) => {
      const db = path.join(w.dir, 'bench.sqlite');
      const sql = 'PRAGMA journal_mode=WAL;\n' + 'INSERT INTO t(v) VALUES(randomblob(200));\n'.repeat(c.cfg.sqliteTx);
      return wall(() => sh('sqlite3', ['-batch', '-bail', db], { input: sql, timeoutMs: 30 * 60_000 }));
    },
    after: (_c, w) => {
      const db = path.join(w.dir, 'bench.sqlite');
      return sh('rm', ['-f', db, `${db}-wal`, `${db}-shm`]);
    },
  },
  { id: 'rm-rf', label: (c) => `rm -rf the ${c.cfg.gitFiles}-file checkout`, run: (_c, w) => wall(() => sh('rm', ['-rf', path.join(w.dir, 'checkout')])) },
];

type FuseOps = NonNullable<RoamfsStatus['fuse']>;

/** after - before, per op: count and total time (ms); mean in µs. */
export function diffOps(before: FuseOps | undefined, after: FuseOps | undefined): Record<string, { count: number; totalMs: number; meanUs: number }> {
  const out: Record<string, { count: number; totalMs: number; meanUs: number }> = {};
  for (const [op, a] of Object.entries(after ?? {})) {
    const b = before?.[op];
    const count = a.count - (b?.count ?? 0);
    const totalMs = a.totalMs - (b?.totalMs ?? 0);
    if (count > 0) out[op] = { count, totalMs, meanUs: (totalMs * 1000) / count };
  }
  return out;
}

export interface WorkloadRunOpts {
  section: string;
  systems: Array<{ name: string; system: SystemName; roamfsArgs?: string[] }>;
  workloads: Workload[];
}

/** One round: every system (rotated) logs in, runs every workload, logs out. */
export async function runWorkloadRound(ctx: Ctx, round: number, o: WorkloadRunOpts): Promise<void> {
  const { rec } = ctx;
  const gitSrc = o.workloads.some((w) => w.id.startsWith('git')) ? await ensureGitSource(ctx.cfg.benchDir, ctx.cfg.gitFiles) : '';
  for (const s of rotate(o.systems, round)) {
    const scratch = scratchDir(ctx, o.section, `r${round}-${s.name}`);
    let home: Home | undefined;
    try {
      await mkdir(scratch, { recursive: true });
      let profile = ctx.profile;
      let rcloneRemote: string | undefined;
      if (s.system === 'native') {
        profile = path.join(scratch, 'native-home');
        await mkdir(profile);
      }
      if (s.system === 'rclone') {
        // rclone writes through to its remote: give it a hard-linked copy (new files only).
        rcloneRemote = path.join(scratch, 'remote');
        await sh('cp', ['-al', ctx.profile, rcloneRemote]);
      }
      home = await login(ctx.cfg, s.system, {
        profile,
        scratch,
        ...(rcloneRemote ? { rcloneRemote } : {}),
        roamfs: { repo: ctx.repo, user: ctx.user, args: s.roamfsArgs ?? ctx.noPrefetch },
      });
      await sh('ls', ['-la', home.home]);
      const w: WorkDirs = { dir: path.join(home.home, 'bench-work'), gitSrc };
      await mkdir(w.dir);
      for (const wl of o.workloads) {
        try {
          await wl.before?.(ctx, w);
          if (wl.cold) await cold(ctx);
          const before = home.status ? (await home.status()).fuse : undefined;
          const t = await wl.run(ctx, w);
          rec.set(o.section, wl.id, s.name, round, t);
          if (home.status) {
            const ops = diffOps(before, (await home.status()).fuse);
            rec.add(o.section, { round, system: s.name, workload: wl.id, seconds: t, ops });
          }
          await wl.after?.(ctx, w);
          log(`${o.section} r${round + 1} ${s.name} ${wl.id}: ${t.toFixed(3)} s`);
        } catch (e) {
          rec.set(o.section, wl.id, s.name, round, null);
          rec.error(o.section, s.name, round, wl.id, e);
        }
      }
      await sh('rm', ['-rf', w.dir]).catch((e) => rec.error(o.section, s.name, round, 'rm bench-work', e));
    } catch (e) {
      rec.error(o.section, s.name, round, 'session', e);
    } finally {
      await home?.close().catch((e) => rec.error(o.section, s.name, round, 'logout', e));
      await removeScratch(scratch).catch((e) => rec.error(o.section, s.name, round, 'cleanup', e));
      if (s.system === 'roamfs') await rollback(ctx, home).catch((e) => rec.error(o.section, s.name, round, 'rollback', e));
    }
  }
}
