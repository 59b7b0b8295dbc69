/**
 * The repository on GlusterFS vs on a local directory, side by side in one run (issue 6): the
 * same profile imported into a repository on the local ext4 disk and into one on a single-node
 * GlusterFS volume (started by the test harness, test/helpers/gluster.ts, mounted with its FUSE
 * client), then per round, in rotating order:
 *   - import of a new profile (every object new: per-object fsync on GlusterFS);
 *   - login: `roamfs mount` (fresh cache) until `ls -la` of the home returned;
 *   - commit latency: 10 small files written, then from the snapshot request until the daemon
 *     reports the commit (status: nothing pending), both over the control socket;
 *   - logout: `roamfs logout` (final snapshot, commit, unmount).
 * Prints medians (min-max) in ms and writes every number to .bench/gluster-<date>.json.
 *
 * Usage (root, /dev/fuse; GlusterFS from scripts/setup.sh):
 *   npm run bench:gluster -- [--rounds 5] [--files 1000] [--size 20MiB]
 */
import { parseArgs } from 'node:util';
import { execFile } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { startGluster } from '../test/helpers/gluster.js';
import { median, rotate, table } from './lib/bench-util.js';

const exec = promisify(execFile);
const { values: o } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    files: { type: 'string', default: '1000' },
    size: { type: 'string', default: '20MiB' },
  },
});
const ROOT = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..', '..');
const CLI = path.join(ROOT, 'bin', 'roamfs');
const rounds = Number(o.rounds);
const work = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-bench-gluster-'));
const env = { ...process.env, ROAMFS_RUN_DIR: path.join(work, 'run'), ROAMFS_CONFIG: '/dev/null' };
// The snapshot request and the status polls go over the control socket directly (what the CLI
// sends), so that a Node start-up per poll does not count as commit latency.
process.env.ROAMFS_RUN_DIR = env.ROAMFS_RUN_DIR;
const { control } = await import('../mount/control.js');
const roamfs = (...args: string[]) => exec(CLI, args, { env: { ...env, ROAMFS_NODE: process.execPath }, maxBuffer: 64 << 20 });
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

type Step = 'import' | 'login' | 'commit' | 'logout';
type Where = 'local ext4' | 'GlusterFS';
const raw: Record<Where, Record<Step, number[]>> = {
  'local ext4': { import: [], login: [], commit: [], logout: [] },
  GlusterFS: { import: [], login: [], commit: [], logout: [] },
};

const g = await startGluster(null, { mounts: 1 });
const mounted: string[] = [];
try {
  const repos: Record<Where, string> = { 'local ext4': path.join(work, 'repo'), GlusterFS: path.join(g.mount, 'repo') };
  for (const r of Object.values(repos)) await roamfs('init', r);
  console.error(`GlusterFS ${g.version}, volume ${g.volume}; ${rounds} rounds, ${o.files} files / ${o.size} per profile`);
  for (let round = 0; round < rounds; round++) {
    const src = path.join(work, `src-${round}`);
    await exec(process.execPath, [path.join(ROOT, 'dist', 'scripts', 'gen-profile.js'), src, '--seed', String(100 + round), '--size', o.size!, '--files', o.files!, '--big-files', 'off', '-q']);
    for (const where of rotate(['local ext4', 'GlusterFS'] as Where[], round)) {
      const repo = repos[where];
      const user = `u${round}`;
      let t0 = process.hrtime.bigint();
      await roamfs('import', repo, user, src);
      raw[where].import.push(ms(t0));
      const home = path.join(work, `home-${round}-${where === 'GlusterFS' ? 'g' : 'l'}`);
      const cache = `${home}.cache`;
      await fsp.mkdir(home);
      await exec('sync');
      t0 = process.hrtime.bigint();
      await roamfs('mount', repo, user, home, '--cache', cache, '--prefetch-delay', 'off', '--snapshot-interval', 'off', '--idle', '100ms');
      mounted.push(home);
      await exec('ls', ['-la', home]);
      raw[where].login.push(ms(t0));
      for (let i = 0; i < 10; i++) await fsp.writeFile(path.join(home, `bench-${i}.txt`), `round ${round} file ${i}\n`);
      t0 = process.hrtime.bigint();
      await control(home, 'snapshot');
      for (;;) {
        const s = (await control(home, 'status')) as { pendingSnapshots: number; commits: number };
        if (s.commits > 0 && s.pendingSnapshots === 0) break;
        await new Promise((r) => setTimeout(r, 5));
      }
      raw[where].commit.push(ms(t0));
      t0 = process.hrtime.bigint();
      await roamfs('logout', home);
      raw[where].logout.push(ms(t0));
      mounted.pop();
    }
    await fsp.rm(src, { recursive: true, force: true });
  }
} finally {
  for (const m of mounted) await roamfs('logout', m).catch(() => exec('fusermount', ['-u', '-z', m]).catch(() => {}));
  await g.stop();
  await fsp.rm(work, { recursive: true, force: true });
}

const fmt = (xs: number[]) => `${Math.round(median(xs)).toLocaleString('en-US')} (${Math.round(Math.min(...xs))}-${Math.round(Math.max(...xs))})`;
const labels: Record<Step, string> = {
  import: `roamfs import of a new profile (${o.files} files, ${o.size})`,
  login: 'login: roamfs mount (fresh cache) until ls -la returned',
  commit: 'commit latency: 10 small files, snapshot until committed',
  logout: 'roamfs logout (final snapshot, commit, unmount)',
};
const rows = [['step', 'local ext4', 'GlusterFS', 'GlusterFS / local'], ...(Object.keys(labels) as Step[]).map((s) => [labels[s], fmt(raw['local ext4'][s]), fmt(raw.GlusterFS[s]), (median(raw.GlusterFS[s]) / median(raw['local ext4'][s])).toFixed(2)])];
console.log(`\nrepository on local ext4 vs GlusterFS ${g.version} (single brick, same machine), ${rounds} rounds, medians (min-max) in ms:\n`);
console.log(table(rows));
await fsp.mkdir(path.join(ROOT, '.bench'), { recursive: true });
const out = path.join(ROOT, '.bench', `gluster-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
await fsp.writeFile(out, JSON.stringify({ rounds, files: o.files, size: o.size, gluster: g.version, raw }, null, 2));
console.error(`raw numbers: ${out}`);
