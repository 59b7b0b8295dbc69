/**
 * Delta (issue 5 item 6): a 1 GiB file of random bytes is committed once; then, per round, 1 MiB
 * inside it is overwritten on the mounted home and the next commit is awaited. Bytes uploaded to
 * the repository at that commit: `status --json` bytesUploaded, and `du -sb objects/` before and
 * after. The user `delta` starts empty (an import of an empty directory).
 */
import * as path from 'node:path';
import { mkdir } from 'node:fs/promises';
import { type Ctx, scratchDir } from './context.js';
import { MiB, type RoamfsStatus, log, roamfs, sh, timed, waitFor } from './core.js';
import { type Home, login, removeScratch } from './systems.js';

async function duObjects(repo: string): Promise<number> {
  return Number((await sh('du', ['-sb', path.join(repo, 'objects')])).split(/\s/)[0]);
}

/** Take a snapshot now and wait until it is committed; returns the status after. */
async function commitNow(ctx: Ctx, home: Home, commitsBefore: number): Promise<RoamfsStatus> {
  await roamfs(ctx.cfg, ['snapshot', home.home]);
  return waitFor(
    'the commit',
    async () => {
      const st = await home.status!();
      return st.commits > commitsBefore && st.pendingSnapshots === 0 && !st.dirty ? st : null;
    },
    30 * 60_000,
    100,
  );
}

export async function runDelta(ctx: Ctx): Promise<void> {
  const { rec, cfg } = ctx;
  const user = 'delta';
  const empty = scratchDir(ctx, 'delta-empty');
  await mkdir(empty, { recursive: true });
  await roamfs(cfg, ['import', ctx.repo, user, empty, '-m', 'empty']);
  const scratch = scratchDir(ctx, 'delta');
  let home: Home | undefined;
  try {
    home = await login(cfg, 'roamfs', { profile: ctx.profile, scratch, roamfs: { repo: ctx.repo, user, args: ['--snapshot-interval', 'off', '--idle', '500ms', ...ctx.noPrefetch] } });
    const big = path.join(home.home, 'big.bin');
    const blocks = cfg.deltaFileBytes / MiB;
    await sh('dd', ['if=/dev/urandom', `of=${big}`, 'bs=1M', `count=${blocks}`, 'status=none']);
    let st = await home.status!();
    const [tFirst, st1] = await timed(() => commitNow(ctx, home!, st.commits));
    log(`delta: the ${blocks} MiB file committed in ${tFirst.toFixed(1)} s, ${st1.bytesUploaded} B uploaded`);
    rec.add('delta', { what: 'initial commit of the big file', seconds: tFirst, bytesUploaded: st1.bytesUploaded });
    st = st1;
    for (let r = 0; r < cfg.rounds; r++) {
      const du0 = await duObjects(ctx.repo);
      const up0 = st.bytesUploaded;
      // A different MiB each round, spread over the file.
      const seek = Math.floor(((r + 1) * blocks) / (cfg.rounds + 1));
      await sh('dd', ['if=/dev/urandom', `of=${big}`, 'bs=1M', 'count=' + String(cfg.deltaChangeBytes / MiB), `seek=${seek}`, 'conv=notrunc', 'status=none']);
      const [t, st2] = await timed(() => commitNow(ctx, home!, st.commits));
      const du1 = await duObjects(ctx.repo);
      rec.set('delta', 'bytes uploaded (status)', 'roamfs', r, st2.bytesUploaded - up0);
      rec.set('delta', 'objects/ growth (du -sb)', 'roamfs', r, du1 - du0);
      rec.set('delta', 'snapshot+commit s', 'roamfs', r, t);
      log(`delta r${r + 1}: ${st2.bytesUploaded - up0} B uploaded, objects/ +${du1 - du0} B, ${t.toFixed(2)} s`);
      st = st2;
    }
  } catch (e) {
    rec.error('delta', 'roamfs', 0, 'delta', e);
  } finally {
    await home?.close().catch((e) => rec.error('delta', 'roamfs', 0, 'logout', e));
    await removeScratch(scratch).catch(() => {});
    await removeScratch(empty).catch(() => {});
  }
}
