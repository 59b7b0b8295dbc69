/**
 * Login storm (issue 5 item 3): U users log in at once on one repository: U `roamfs mount`s vs
 * U concurrent `cp -a` (and, as the limit, U concurrent `ls -la` of local copies). Per user: the
 * time from the common start to a working `ls -la` of that user's home; the storm is over when
 * the last home is usable. Half the users share one profile (seed 1000), the others each have
 * their own (seeds 1001...), so deduplication helps only as much as it would in real life.
 */
import * as path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { percentile, rotate } from '../lib/bench-util.js';
import { type Ctx, cold, scratchDir } from './context.js';
import { log, roamfs, sh, timed } from './core.js';
import { ensureProfile } from './inputs.js';
import { type Home, login, removeScratch } from './systems.js';

export const STORM_SYSTEMS = ['native', 'cp -a', 'roamfs'] as const;

export interface StormUsers {
  users: Array<{ name: string; seed: number; profile: string }>;
}

export function stormSeed(i: number, n: number): number {
  const shared = Math.floor(n / 2);
  return i < shared ? 1000 : 1001 + (i - shared);
}

export async function prepareStorm(ctx: Ctx): Promise<StormUsers> {
  const { cfg } = ctx;
  const users: StormUsers['users'] = [];
  for (let i = 0; i < cfg.storm.users; i++) {
    const seed = stormSeed(i, cfg.storm.users);
    const profile = await ensureProfile(cfg.benchDir, seed, cfg.storm.sizeArg, cfg.storm.files);
    users.push({ name: `storm${String(i).padStart(2, '0')}`, seed, profile });
  }
  const [t] = await timed(async () => {
    for (const u of users) await roamfs(cfg, ['import', ctx.repo, u.name, u.profile, '-m', 'storm']);
  });
  ctx.rec.add('storm', { what: `import of ${users.length} users`, seconds: t });
  log(`storm: imported ${users.length} users in ${t.toFixed(1)} s`);
  return { users };
}

export async function runStorm(ctx: Ctx, su: StormUsers, round: number): Promise<void> {
  const { rec, cfg } = ctx;
  for (const sys of rotate(STORM_SYSTEMS, round)) {
    const base = scratchDir(ctx, 'storm', `r${round}-${sys}`);
    const homes: Array<Home | undefined> = [];
    try {
      await mkdir(base, { recursive: true });
      await cold(ctx);
      const t0 = performance.now();
      const per = await Promise.all(
        su.users.map(async (u, i) => {
          const h = await login(cfg, sys, { profile: u.profile, scratch: path.join(base, u.name), roamfs: { repo: ctx.repo, user: u.name } });
          homes[i] = h;
          await sh('ls', ['-la', h.home]);
          return { t: (performance.now() - t0) / 1000, h };
        }),
      );
      const times = per.map((p) => p.t);
      let bytes = 0;
      for (const p of per) {
        if (p.h.status) bytes += (await p.h.status()).remoteBytesRead;
        else if (p.h.copyIo) bytes += p.h.copyIo.rchar;
      }
      rec.set('storm', 'all usable s', sys, round, Math.max(...times));
      rec.set('storm', 'p50 user s', sys, round, percentile(times, 50));
      rec.set('storm', 'p95 user s', sys, round, percentile(times, 95));
      rec.set('storm', 'repo bytes', sys, round, bytes);
      rec.add('storm', { round, system: sys, perUser: times });
      log(`storm r${round + 1} ${sys}: all ${Math.max(...times).toFixed(2)} s, p50 ${percentile(times, 50).toFixed(2)} s, ${bytes} B`);
    } catch (e) {
      rec.error('storm', sys, round, 'storm', e);
    } finally {
      await Promise.all(homes.map((h) => h?.close().catch((e) => rec.error('storm', sys, round, 'logout', e))));
      await removeScratch(base).catch((e) => rec.error('storm', sys, round, 'cleanup', e));
    }
  }
}
