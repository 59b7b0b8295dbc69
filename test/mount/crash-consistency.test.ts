/**
 * Crash consistency on a real mount: chains of SIGKILLed daemons (test/helpers/crash-harness.ts)
 * - 200 kill points in all - each followed by fsck and a remount that
 * must show exactly the last durable snapshot (or, after a "VM lost" kill point, the last commit),
 * and at the end of every chain a logout whose export equals the home. The long version is
 * `node dist/scripts/crash-soak.js --kills 2000 --seed N`.
 *
 * The daemons are child processes; this process drives the mounts with async fs only.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { Rng } from '../../scripts/lib/rng.js';
import { Homes, newHome, roamfs, sleep } from '../helpers/crash-daemon.js';
import { formatResult, runChain, type ChainResult } from '../helpers/crash-harness.js';
import { diffModels, walkDir } from '../helpers/crash-model.js';
import { Workload } from '../helpers/crash-workload.js';

async function usable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return 'needs root (the control socket is root-only)';
  try {
    await fsp.access('/dev/fuse');
  } catch {
    return '/dev/fuse is not accessible';
  }
  return undefined;
}
const why = await usable();
const concurrent = test;
if (why) test('crash consistency tests can run here', (t) => t.fail(why));

const KILLS_PER_CHAIN = 25;
/**
 * Two lanes of four chains run side by side (the kill points of one home are of course
 * sequential); most of a kill point is waiting for a daemon to start or for a kill moment.
 */
const LANES: Array<Array<{ seed: number; mode: 'exact' | 'prefix' }>> = [
  [{ seed: 1, mode: 'exact' }, { seed: 2, mode: 'exact' }, { seed: 3, mode: 'exact' }, { seed: 7, mode: 'prefix' }],
  [{ seed: 4, mode: 'exact' }, { seed: 5, mode: 'exact' }, { seed: 6, mode: 'exact' }, { seed: 8, mode: 'prefix' }],
];

LANES.forEach((lane, i) => {
  const kills = lane.length * KILLS_PER_CHAIN;
  const desc = lane.map((c) => `${c.mode} seed ${c.seed}`).join(', ');
  concurrent(`crash consistency, lane ${i + 1} of ${LANES.length}: ${kills} kill points (${desc}); ${LANES.length * kills} in all`, async (t) => {
    const homes = new Homes();
    t.teardown(() => homes.cleanup((s) => t.log(s)));
    const results: ChainResult[] = [];
    for (const { seed, mode } of lane) {
      const r = await runChain({ seed, kills: KILLS_PER_CHAIN, mode, vmLostRate: 0.15, homes, log: (s) => t.log(s) });
      await homes.cleanup((s) => t.log(s));
      results.push(r);
      t.log(formatResult(r));
    }
    const total = results.reduce((s, r) => s + r.killPoints, 0);
    const ms = results.reduce((s, r) => s + r.ms, 0);
    const sum = (f: (r: ChainResult) => number) => results.reduce((s, r) => s + f(r), 0);
    t.log(
      `lane ${i + 1}: ${total} kill points in ${(ms / 1000).toFixed(0)} s (${(ms / Math.max(1, total)).toFixed(0)} ms each): ${sum((r) => r.vmLost)} VM lost, ` +
        `${sum((r) => r.inflightSnapshots)} kills in a snapshot request (${sum((r) => r.inflightDurable)} durable), ${sum((r) => r.midUploadKills)} mid-upload, ` +
        `${sum((r) => r.replayedCommits)} replayed commits, ${sum((r) => r.commitsChecked)} commits checked`,
    );
    t.is(total, kills);
  });
});

concurrent('logout: the export equals the home as it was at logout (timer snapshots and idle commits running)', async (t) => {
  const homes = new Homes();
  t.teardown(() => homes.cleanup((s) => t.log(s)));
  const spec = { ...(await newHome(homes)), snapshotInterval: '200ms', idle: '200ms' };
  const d = await homes.mount(spec, 'cli');
  const rng = new Rng(42);
  const before = await walkDir(spec.mountpoint, { content: true });
  const wl = Workload.fromModel(rng, spec.mountpoint, { n: 0 }, before, { bigFileRate: 0.1 });
  const until = Date.now() + 3000;
  while (Date.now() < until) {
    if (rng.chance(0.1)) await sleep(rng.int(100, 400));
    else await wl.step();
  }
  const atLogout = await walkDir(spec.mountpoint, { content: true });
  t.deepEqual(diffModels(wl.contentModel(), atLogout, false), [], 'the home shows what was written');
  const r = await roamfs(spec.runDir, ['logout', spec.mountpoint]);
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /everything is in the repository/);
  await homes.waitExit(d);
  homes.fuseMounts.delete(spec.mountpoint);
  const exp = path.join(spec.dir, 'export');
  const e = await roamfs(spec.runDir, ['export', spec.repo, spec.user, exp]);
  t.is(e.code, 0, e.stderr);
  t.deepEqual(diffModels(atLogout, await walkDir(exp, { content: true })), [], 'export vs home at logout');
  const log = await roamfs(spec.runDir, ['log', spec.repo, spec.user]);
  t.log(`${wl.ops} operations, ${log.stdout.trim().split('\n').length - 1} commits in the session`);
});
