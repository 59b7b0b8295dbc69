/**
 * Logout (issue 5 item 5): after writing N MiB (and after writing nothing), the time until
 * `roamfs logout` returns, vs the copy back of the changed profile (`rsync -a --delete` of the
 * home onto the "repository" copy) and vs a raw copy of those N MiB into the repository
 * directory (`cp`, and `dd conv=fsync`: durable like a roamfs logout). Every timed step starts
 * after a `sync`, so that no system pays for another's writeback.
 */
import * as path from 'node:path';
import { mkdir, readFile } from 'node:fs/promises';
import { rotate } from '../lib/bench-util.js';
import { type Ctx, rollback, scratchDir } from './context.js';
import { MiB, log, roamfs, sh, timed, unmountTracked, waitExit } from './core.js';
import { type Home, login, removeScratch } from './systems.js';
import { ensureRandomFile } from './inputs.js';

type Variant = 'roamfs logout (wrote N)' | 'roamfs logout (wrote nothing)' | 'rsync back (wrote N)' | 'rsync back (wrote nothing)' | 'cp N' | 'cp N + fsync';
const VARIANTS: Variant[] = ['roamfs logout (wrote N)', 'roamfs logout (wrote nothing)', 'rsync back (wrote N)', 'rsync back (wrote nothing)', 'cp N', 'cp N + fsync'];

export function variantLabel(v: string, bytes: number): string {
  return v.replace(/\bN\b/, `${Math.round(bytes / MiB)} MiB`);
}
export const LOGOUT_VARIANTS = VARIANTS;

/**
 * Where a `roamfs logout` spends its time, from the daemon's log (pino JSON lines, ms clock):
 * CLI start-up + request, final snapshot, commit (upload + syncfs + ref), close + unmount + exit,
 * and the answer back to the CLI. Seconds per phase.
 */
export async function logoutPhases(logFile: string, wall0: number, wall1: number): Promise<Record<string, number>> {
  const lines = (await readFile(logFile, 'utf8').catch(() => ''))
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      try {
        return JSON.parse(l) as { time: number; msg: string };
      } catch {
        return null;
      }
    })
    .filter((x): x is { time: number; msg: string } => x !== null && x.time >= wall0 - 5);
  const at = (re: RegExp) => lines.find((l) => re.test(l.msg))?.time ?? null;
  const down = at(/^shutting down/);
  const snap = at(/^snapshot durable/);
  const commit = at(/^committed/);
  const out = at(/^logged out/);
  const r: Record<string, number> = {};
  if (down === null || out === null) return r;
  r['CLI start + request'] = (down - wall0) / 1000;
  r['final snapshot'] = ((snap ?? down) - down) / 1000;
  r['commit (upload, syncfs, ref)'] = commit === null ? 0 : (commit - (snap ?? down)) / 1000;
  r['close, unmount'] = (out - (commit ?? snap ?? down)) / 1000;
  r['answer + CLI exit'] = (wall1 - out) / 1000;
  return r;
}

export async function runLogout(ctx: Ctx, round: number): Promise<void> {
  const { rec, cfg } = ctx;
  const src = await ensureRandomFile(cfg.benchDir, cfg.logoutBytes);
  await sh('cat', [src]); // into the page cache: every system copies from memory
  for (const v of rotate(VARIANTS, round)) {
    const scratch = scratchDir(ctx, 'logout', `r${round}-${v}`);
    let home: Home | undefined;
    try {
      await mkdir(scratch, { recursive: true });
      const wrote = v.includes('(wrote N)');
      let t: number;
      if (v.startsWith('roamfs')) {
        home = await login(cfg, 'roamfs', { profile: ctx.profile, scratch, roamfs: { repo: ctx.repo, user: ctx.user, args: ctx.noPrefetch } });
        await sh('ls', ['-la', home.home]);
        await sh('cat', ctx.startup, { cwd: home.home });
        if (wrote) await sh('cp', [src, path.join(home.home, 'logout-test.bin')]);
        await sh('sync', []);
        const mp = home.home;
        const st = await home.status!();
        const wall0 = Date.now();
        [t] = await timed(() => roamfs(cfg, ['logout', mp], { timeoutMs: 30 * 60_000 }));
        const wall1 = Date.now();
        home = undefined;
        await waitExit(st.pid, 30_000);
        await unmountTracked(mp, 'roamfs');
        const phases = await logoutPhases(path.join(scratch, 'cache', 'roamfs.log'), wall0, wall1);
        for (const [k, x] of Object.entries(phases)) rec.set('logout-phases', k, v, round, x);
        rec.add('logout', { round, variant: v, bytesUploadedBefore: st.bytesUploaded, phases });
      } else if (v.startsWith('rsync')) {
        const h = path.join(scratch, 'home');
        const repoCopy = path.join(scratch, 'repo-copy');
        await sh('cp', ['-al', ctx.profile, h]);
        await sh('cp', ['-al', ctx.profile, repoCopy]);
        if (wrote) await sh('cp', [src, path.join(h, 'logout-test.bin')]);
        await sh('sync', []);
        [t] = await timed(() => sh('rsync', ['-a', '--delete', `${h}/`, `${repoCopy}/`]));
      } else {
        const dst = path.join(scratch, 'repo-dir');
        await mkdir(dst);
        await sh('sync', []);
        if (v === 'cp N') [t] = await timed(() => sh('cp', [src, path.join(dst, 'logout-test.bin')]));
        else [t] = await timed(() => sh('dd', [`if=${src}`, `of=${path.join(dst, 'logout-test.bin')}`, 'bs=1M', 'conv=fsync']));
      }
      rec.set('logout', 'seconds', v, round, t);
      log(`logout r${round + 1} ${variantLabel(v, cfg.logoutBytes)}: ${t.toFixed(3)} s`);
    } catch (e) {
      rec.error('logout', v, round, 'logout', e);
    } finally {
      await home?.close().catch((e) => rec.error('logout', v, round, 'logout', e));
      await removeScratch(scratch).catch((e) => rec.error('logout', v, round, 'cleanup', e));
      if (v.startsWith('roamfs')) await rollback(ctx).catch((e) => rec.error('logout', v, round, 'rollback', e));
    }
  }
}
