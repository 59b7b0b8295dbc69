/**
 * Long crash-consistency soak: `node dist/scripts/crash-soak.js --kills 2000 --seed N
 * [--mode exact|prefix|both] [--vm-lost 0.15] [--via daemon|cli] [--base DIR] [--first-chain K]`.
 * Chain i runs with seed N*1000+i (--first-chain K starts at chain K, to rerun one that failed);
 * after a violation its directories are kept for inspection.
 * Runs chains of kill points (test/helpers/crash-harness.ts) on a real mount; 'both' alternates
 * exact and prefix chains of --chain kill points each (default 50). Prints one line per chain and
 * a summary; exits 1 on the first violation (the message names seed, mode and kill point).
 * Needs root (or fusermount) and /dev/fuse.
 */
import { parseArgs } from 'node:util';
import { Homes } from '../test/helpers/crash-daemon.js';
import { CrashCheckError, formatResult, runChain, type ChainResult } from '../test/helpers/crash-harness.js';

const { values: v } = parseArgs({
  options: {
    kills: { type: 'string', default: '2000' },
    seed: { type: 'string', default: '1' },
    mode: { type: 'string', default: 'both' },
    chain: { type: 'string', default: '50' },
    'vm-lost': { type: 'string', default: '0.15' },
    via: { type: 'string', default: 'daemon' },
    base: { type: 'string' },
    'first-chain': { type: 'string', default: '0' },
  },
});

const total = Number(v.kills);
const per = Number(v.chain);
const seed0 = Number(v.seed);
const modes: Array<'exact' | 'prefix'> = v.mode === 'both' ? ['exact', 'prefix'] : [v.mode as 'exact' | 'prefix'];
const t0 = performance.now();
let done = 0;
const results: ChainResult[] = [];
const homes = new Homes();
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  void homes.cleanup((s) => console.error(s)).finally(() => process.exit(130));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

try {
  for (let i = Number(v['first-chain']); done < total; i++) {
    const mode = modes[i % modes.length]!;
    const r = await runChain({ seed: seed0 * 1000 + i, kills: Math.min(per, total - done), mode, vmLostRate: Number(v['vm-lost']), via: v.via as 'cli' | 'daemon', baseDir: v.base, homes, log: (s) => console.log(`  ${s}`) });
    await homes.cleanup((s) => console.error(s));
    results.push(r);
    done += r.killPoints;
    console.log(formatResult(r));
  }
} catch (err) {
  await homes.cleanup((s) => console.error(s), { keepDirs: err instanceof CrashCheckError });
  console.error(err instanceof CrashCheckError ? `VIOLATION: ${err.message}` : err);
  process.exit(1);
}
const secs = (performance.now() - t0) / 1000;
const sum = (f: (r: ChainResult) => number) => results.reduce((s, r) => s + f(r), 0);
console.log(
  `crash soak: ${done} kill points in ${results.length} chains, ${secs.toFixed(0)} s (${((secs * 1000) / done).toFixed(0)} ms per kill point); ` +
    `${sum((r) => r.vmLost)} VM lost, ${sum((r) => r.inflightSnapshots)} kills in a snapshot request (${sum((r) => r.inflightDurable)} of them durable, exact chains), ` +
    `${sum((r) => r.midUploadKills)} mid-upload, ${sum((r) => r.replayedCommits)} replayed commits, ${sum((r) => r.commitsChecked)} commits checked: all consistent`,
);
