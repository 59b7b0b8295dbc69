/**
 * Memory (issue 5 item 7): the daemon's peak RSS (VmHWM) with the main profile mounted, and after
 * a full read of every file (find | xargs cat > /dev/null: the "full background load");
 * with `--prefetch-delay 1s` when `roamfs mount --help` lists it, after the background prefetch
 * has finished. The FUSE peers (fuse-overlayfs, rclone) after the same full read, for scale.
 */
import { procMem } from '../lib/bench-util.js';
import { type Ctx, cold, rollback, scratchDir } from './context.js';
import { log, mountSupports, sh, timed, waitFor } from './core.js';
import { type Home, type SystemName, login, removeScratch } from './systems.js';
import { rotate } from '../lib/bench-util.js';

async function fullRead(home: string): Promise<void> {
  await sh('sh', ['-c', 'find . -type f -print0 | xargs -0 -r cat > /dev/null', 'sh'], { cwd: home, timeoutMs: 60 * 60_000 });
}

export async function runMemory(ctx: Ctx, round: number): Promise<void> {
  const { rec, cfg } = ctx;
  const variants: Array<{ name: string; system: SystemName; args?: string[]; prefetch?: boolean }> = [{ name: 'roamfs', system: 'roamfs', args: ctx.noPrefetch }];
  if (await mountSupports(cfg, '--prefetch-delay')) variants.push({ name: 'roamfs --prefetch-delay 1s', system: 'roamfs', args: ['--prefetch-delay', '1s'], prefetch: true });
  else rec.note('memory: `roamfs mount --help` does not list --prefetch-delay; the prefetch variant was skipped');
  if (cfg.memoryPeers) variants.push({ name: 'fuse-overlayfs', system: 'fuse-overlayfs' }, { name: 'rclone', system: 'rclone' });
  for (const v of rotate(variants, round)) {
    const scratch = scratchDir(ctx, 'memory', `r${round}-${v.name}`);
    let home: Home | undefined;
    try {
      await cold(ctx);
      home = await login(cfg, v.system, { profile: ctx.profile, scratch, roamfs: { repo: ctx.repo, user: ctx.user, ...(v.args ? { args: v.args } : {}) } });
      await sh('ls', ['-la', home.home]);
      const m0 = await procMem(home.pid!);
      rec.set('memory', 'VmHWM after mount+ls', v.name, round, m0?.hwm ?? null);
      if (v.prefetch) {
        const h = home;
        const [t, st] = await timed(() =>
          waitFor(
            'the background prefetch',
            async () => {
              const s = await h.status!();
              return s.prefetch && ['done', 'stopped'].includes(s.prefetch.phase) ? s : null;
            },
            60 * 60_000,
            250,
          ),
        );
        const m1 = await procMem(home.pid!);
        rec.set('memory', 'VmHWM after full load', v.name, round, m1?.hwm ?? null);
        rec.set('memory', 'full load s', v.name, round, t);
        rec.set('memory', 'repo bytes read', v.name, round, st.remoteBytesRead);
        rec.add('memory', { round, variant: v.name, prefetch: st.prefetch, mem: m1 });
        log(`memory r${round + 1} ${v.name}: prefetch ${st.prefetch?.phase} in ${t.toFixed(1)} s, VmHWM ${m0?.hwm} -> ${m1?.hwm}`);
      } else {
        const [t] = await timed(() => fullRead(home!.home));
        const m1 = await procMem(home.pid!);
        const st = home.status ? await home.status() : null;
        rec.set('memory', 'VmHWM after full load', v.name, round, m1?.hwm ?? null);
        rec.set('memory', 'full load s', v.name, round, t);
        const dio = await home.daemonIo();
        rec.set('memory', 'repo bytes read', v.name, round, st ? st.remoteBytesRead : (dio?.rchar ?? null));
        rec.add('memory', { round, variant: v.name, mem: m1, fuse: st?.fuse ?? null });
        log(`memory r${round + 1} ${v.name}: full read in ${t.toFixed(1)} s, VmHWM ${m0?.hwm} -> ${m1?.hwm}`);
      }
    } catch (e) {
      rec.error('memory', v.name, round, 'memory', e);
    } finally {
      await home?.close().catch((e) => rec.error('memory', v.name, round, 'logout', e));
      await removeScratch(scratch).catch((e) => rec.error('memory', v.name, round, 'cleanup', e));
      if (v.system === 'roamfs') await rollback(ctx, home).catch(() => {});
    }
  }
}
