/**
 * Login (issue 5 item 2): from starting the mount (or the copy) to a working `ls -la` of the
 * home (a child process), then the time to open+read the 20 startup files (one `cat`), and the
 * bytes read from the repository meanwhile. Page cache dropped before each system.
 */
import { rotate } from '../lib/bench-util.js';
import { type Ctx, cold, rollback, scratchDir } from './context.js';
import { log, shIo, timed } from './core.js';
import { type SystemName, bytesNote, login, removeScratch } from './systems.js';

export const LOGIN_SYSTEMS: SystemName[] = ['native', 'overlayfs', 'fuse-overlayfs', 'rclone', 'cp -a', 'rsync -a', 'roamfs'];

export async function runLogin(ctx: Ctx, round: number): Promise<void> {
  const { rec } = ctx;
  for (const sys of rotate(LOGIN_SYSTEMS, round)) {
    const scratch = scratchDir(ctx, 'login', `r${round}-${sys}`);
    let home: Awaited<ReturnType<typeof login>> | undefined;
    try {
      await cold(ctx);
      const t0 = performance.now();
      home = await login(ctx.cfg, sys, { profile: ctx.profile, scratch, roamfs: { repo: ctx.repo, user: ctx.user } });
      const tMount = (performance.now() - t0) / 1000;
      const ls = await shIo('ls', ['-la', home.home]);
      const tLogin = (performance.now() - t0) / 1000;
      const [tStartup, cat] = await timed(() => shIo('cat', ctx.startup, { cwd: home!.home }));
      const dio = await home.daemonIo();
      const st = home.status ? await home.status() : null;
      const clientDisk = ls.read_bytes + cat.read_bytes;
      const disk = clientDisk + (dio?.read_bytes ?? 0) + (home.copyIo?.read_bytes ?? 0);
      let repoBytes: number;
      if (sys === 'roamfs') repoBytes = st!.remoteBytesRead;
      else if (sys === 'rsync -a') repoBytes = home.copyIo!.read_bytes; // rchar counts the sender->receiver pipe too
      else if (home.copyIo) repoBytes = home.copyIo.rchar;
      else if (dio) repoBytes = dio.rchar;
      else repoBytes = ls.rchar + cat.rchar;
      rec.set('login', 'mount s', sys, round, tMount);
      rec.set('login', 'login s', sys, round, tLogin);
      rec.set('login', 'startup files s', sys, round, tStartup);
      rec.set('login', 'login+startup s', sys, round, tLogin + tStartup);
      rec.set('login', 'repo bytes', sys, round, repoBytes);
      rec.set('login', 'disk read bytes', sys, round, disk);
      rec.add('login', { round, system: sys, bytesMeasure: bytesNote(sys), ls, cat, daemonIo: dio, copyIo: home.copyIo ?? null, roamfs: st ? { remoteBytesRead: st.remoteBytesRead, cacheHits: st['cacheHits'], cacheMisses: st['cacheMisses'], fuse: st.fuse } : null });
      log(`login r${round + 1} ${sys}: ${tLogin.toFixed(3)} s + startup ${tStartup.toFixed(3)} s, repo ${repoBytes} B`);
    } catch (e) {
      rec.error('login', sys, round, 'login', e);
    } finally {
      await home?.close().catch((e) => rec.error('login', sys, round, 'logout', e));
      await removeScratch(scratch).catch((e) => rec.error('login', sys, round, 'cleanup', e));
      if (sys === 'roamfs') await rollback(ctx, home).catch((e) => rec.error('login', sys, round, 'rollback', e));
    }
  }
}
