/**
 * roamfs side by side with its peers (issue 5). Run as root on a machine with /dev/fuse:
 *
 *   npm run bench                 # full: 2 GiB / 50,000-file profile, 3 rounds (~30 min)
 *   npm run bench -- --quick      # small sizes, 3 rounds (~3-4 min)
 *
 * Options: --rounds N, --sections login,storm,workloads,logout,delta,memory,snapcost,
 * --profile-size 2GiB --profile-files 50000, --memory-rounds N, --memory-peers on|off, --keep
 * (keep the scratch directory), --out FILE (JSON; default .bench/results-<date>.json).
 *
 * Systems: native ext4 directory (the limit), kernel overlayfs (the copy-on-write limit),
 * fuse-overlayfs (a C FUSE file system), rclone mount --vfs-cache-mode full of a :local: copy,
 * full copies (cp -a / rsync -a, i.e. roaming profiles) and roamfs (repository and cache on the
 * local disk). Each measurement is repeated in rounds, the order of the systems rotating from one
 * round to the next; tables show medians, and ratios = the median of the per-round ratios to the
 * reference measured in the same round. Everything mounted or started is unmounted and killed on
 * the way out, also on failure and on SIGINT/SIGTERM/SIGHUP. See docs/benchmarks.md.
 */
import * as path from 'node:path';
import * as os from 'node:os';
import { mkdir, readFile, readdir, rm, writeFile, access } from 'node:fs/promises';
import { constants, rmSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { dropCaches, mountsUnder } from './lib/bench-util.js';
import { startupFiles, parseSize } from './gen-profile.js';
import {
  ALL_SECTIONS,
  alive,
  waitExit,
  type Config,
  GiB,
  MiB,
  REPO_ROOT,
  Recorder,
  type Section,
  cleanup,
  freezeApp,
  installSignalHandlers,
  log,
  mountSupports,
  roamfs,
  roamfsRunDir,
  sh,
} from './bench/core.js';
import { type Ctx, importProfile } from './bench/context.js';
import { ensureProfile } from './bench/inputs.js';
import { runLogin } from './bench/login.js';
import { prepareStorm, runStorm } from './bench/storm.js';
import { WORKLOADS, WORKLOAD_SYSTEMS, runWorkloadRound } from './bench/workloads.js';
import { runLogout } from './bench/logout.js';
import { runDelta } from './bench/delta.js';
import { runMemory } from './bench/memory.js';
import { deltaTable, fuseTable, loginTable, logoutPhasesTable, logoutTable, memoryTable, snapcostTable, stormTable, workloadTable } from './bench/report.js';

const { values: o } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    rounds: { type: 'string' },
    sections: { type: 'string' },
    'profile-size': { type: 'string' },
    'profile-files': { type: 'string' },
    'memory-rounds': { type: 'string' },
    'memory-peers': { type: 'string' },
    keep: { type: 'boolean', default: false },
    out: { type: 'string' },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (o.help) {
  const src = await readFile(new URL(import.meta.url), 'utf8').catch(() => '');
  console.log(/\/\*\*([\s\S]*?)\*\//.exec(src)?.[1]?.replace(/^ \* ?/gm, '') ?? 'see docs/benchmarks.md');
  process.exit(0);
}

const quick = !!o.quick;
const benchDir = path.join(REPO_ROOT, '.bench');
const stamp = new Date().toISOString().replace(/[:.]/g, '-').slice(0, 19);
const sections = (o.sections ? o.sections.split(',') : ALL_SECTIONS) as Section[];
for (const s of sections) if (!ALL_SECTIONS.includes(s)) throw new Error(`unknown section ${s} (known: ${ALL_SECTIONS.join(', ')})`);
const pSize = o['profile-size'] ?? (quick ? '100MiB' : '2GiB');
const cfg: Config = {
  quick,
  rounds: Number(o.rounds ?? 3),
  sections,
  benchDir,
  runDir: path.join(benchDir, `run-${stamp}`),
  profile: { seed: 1, sizeArg: pSize, size: parseSize(pSize), files: Number(o['profile-files'] ?? (quick ? 3000 : 50_000)) },
  storm: quick ? { users: 4, sizeArg: '10MiB', size: 10 * MiB, files: 300 } : { users: 20, sizeArg: '100MiB', size: 100 * MiB, files: 3000 },
  seqBytes: quick ? 64 * MiB : 1 * GiB,
  smallFiles: quick ? 500 : 10_000,
  gitFiles: quick ? 500 : 10_000,
  sqliteTx: quick ? 200 : 2000,
  logoutBytes: quick ? 20 * MiB : 100 * MiB,
  deltaFileBytes: quick ? 64 * MiB : 1 * GiB,
  deltaChangeBytes: 1 * MiB,
  memoryPeers: (o['memory-peers'] ?? (quick ? 'off' : 'on')) === 'on',
  keep: !!o.keep,
};
process.env.ROAMFS_RUN_DIR = roamfsRunDir(cfg); // for roamfsStatus (the control socket client)
const memoryRounds = Number(o['memory-rounds'] ?? 1);
const outFile = path.resolve(o.out ?? path.join(benchDir, `results-${stamp}.json`));

async function has(cmd: string): Promise<boolean> {
  return sh('sh', ['-c', `command -v ${cmd}`]).then(() => true, () => false);
}

async function preflight(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench: run as root (mounts, drop_caches)');
  await access('/dev/fuse', constants.R_OK | constants.W_OK).catch(() => {
    throw new Error('bench: /dev/fuse is missing');
  });
  const missing: string[] = [];
  for (const [cmd, pkg] of [['rclone', 'rclone'], ['fuse-overlayfs', 'fuse-overlayfs'], ['sqlite3', 'sqlite3'], ['rsync', 'rsync'], ['git', 'git']] as const) if (!(await has(cmd))) missing.push(pkg);
  if (missing.length) {
    log(`installing ${missing.join(' ')} from Debian`);
    await sh('apt-get', ['install', '-y', ...missing], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 20 * 60_000 }).catch(async () => {
      await sh('apt-get', ['update'], { timeoutMs: 10 * 60_000 });
      await sh('apt-get', ['install', '-y', ...missing], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }, timeoutMs: 20 * 60_000 });
    });
  }
  for (const f of ['bin/roamfs.js', 'dist/mount/cli.js', 'dist/scripts/bench/smallfiles.js']) {
    await access(path.join(REPO_ROOT, f)).catch(() => {
      throw new Error(`bench: ${f} is missing; build first (npx tsc -p tsconfig.json)`);
    });
  }
}

/**
 * Scratch directories of earlier runs that died without cleaning up (SIGKILL, power loss): their
 * pid file names a process that is gone. Unmount whatever is still mounted there, then remove
 * them. A run that is alive (another `npm run bench` right now) is left alone.
 */
async function clearStaleRuns(): Promise<void> {
  const names = await readdir(benchDir).catch(() => [] as string[]);
  for (const n of names.filter((x) => x.startsWith('run-'))) {
    const dir = path.join(benchDir, n);
    const pid = Number((await readFile(path.join(dir, 'pid'), 'utf8').catch(() => '')).trim());
    if (pid > 0 && alive(pid)) continue;
    // Its roamfs daemons (their control-socket records name them): the run is garbage, SIGKILL.
    const recs = path.join(dir, 'roamfs-run');
    for (const r of (await readdir(recs).catch(() => [] as string[])).filter((x) => x.endsWith('.json'))) {
      const dpid = Number((JSON.parse(await readFile(path.join(recs, r), 'utf8').catch(() => '{}')) as { pid?: number }).pid);
      const cmd = await readFile(`/proc/${dpid}/cmdline`, 'utf8').catch(() => '');
      if (dpid > 0 && cmd.includes(dir)) {
        log(`stale run ${n}: killing roamfs daemon ${dpid}`);
        process.kill(dpid, 'SIGKILL');
        await waitExit(dpid, 5000);
      }
    }
    for (const mp of await mountsUnder(dir)) {
      log(`stale run ${n}: unmounting ${mp}`);
      await sh('fusermount', ['-u', '-z', mp]).catch(() => sh('umount', ['-l', mp]).catch(() => {}));
    }
    if ((await mountsUnder(dir)).length === 0) await rm(dir, { recursive: true, force: true, maxRetries: 5 }).catch((e) => log(`stale run ${n}: ${(e as Error).message}`));
  }
}

async function machine(): Promise<Record<string, unknown>> {
  const q = (cmd: string, args: string[]) => sh(cmd, args).then((s) => s.trim(), () => '?');
  const disk = await q('findmnt', ['-no', 'SOURCE,FSTYPE', '-T', benchDir]);
  const dev = disk.split(/\s+/)[0] ?? '';
  return {
    date: new Date().toISOString(),
    host: os.hostname(),
    nproc: os.cpus().length,
    cpu: os.cpus()[0]?.model,
    memory: os.totalmem(),
    kernel: os.release(),
    os: (await readFile('/etc/debian_version', 'utf8').catch(() => '?')).trim(),
    disk,
    diskInfo: await q('lsblk', ['-dno', 'NAME,SIZE,ROTA,MODEL', dev]),
    node: process.version,
    rclone: (await q('rclone', ['version'])).split('\n')[0],
    fuseOverlayfs: (await q('fuse-overlayfs', ['--version'])).split('\n')[0],
    sqlite3: await q('sqlite3', ['--version']),
    git: await q('git', ['--version']),
    roamfsCommit: await q('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']),
    roamfsDirty: (await q('git', ['-C', REPO_ROOT, 'status', '--porcelain', '--untracked-files=no'])) !== '',
    loadavg: os.loadavg(),
    command: `npm run bench${process.argv.length > 2 ? ' -- ' + process.argv.slice(2).join(' ') : ''}`,
  };
}

const rec = new Recorder();
let meta: Record<string, unknown> = {};
const started = Date.now();
const sectionSeconds: Record<string, number> = {};
let ctx: Ctx | undefined;
let exitCode = 0;

installSignalHandlers(async (why) => {
  await finish(why);
  // Synchronously, right before the exit: the main flow, still unwinding, cannot recreate it.
  if (!cfg.keep && (await mountsUnder(cfg.runDir)).length === 0) rmSync(cfg.runDir, { recursive: true, force: true });
});
cleanup.addRoot(cfg.runDir);
try {
  await preflight();
  meta = await machine();
  await clearStaleRuns();
  await mkdir(cfg.runDir, { recursive: true });
  await writeFile(path.join(cfg.runDir, 'pid'), `${process.pid}\n`);
  await freezeApp(path.join(cfg.runDir, 'app'));

  const profile = await ensureProfile(benchDir, cfg.profile.seed, cfg.profile.sizeArg, cfg.profile.files);
  const repo = path.join(cfg.runDir, 'repo');
  await roamfs(cfg, ['init', repo]);
  const t0 = Date.now();
  const c0 = await importProfile(cfg, repo, 'alex', profile);
  rec.add('setup', { what: 'roamfs import of the main profile', seconds: (Date.now() - t0) / 1000 });
  const canDrop = await dropCaches();
  if (!canDrop) rec.note('could not drop the page cache: "cold" numbers are warm');
  const noPrefetch = (await mountSupports(cfg, '--prefetch-delay')) ? ['--prefetch-delay', 'off'] : [];
  ctx = { cfg, rec, profile, repo, user: 'alex', c0, startup: await startupFiles(profile), noPrefetch, canDropCaches: canDrop };
  const c = ctx;
  log(`profile ${profile}: ${c.startup.length} startup files; run dir ${cfg.runDir}`);

  const snapWorkloads = WORKLOADS.filter((w) => w.id.startsWith('sf-'));
  const phases: Array<[Section, (r: number) => Promise<void>, number]> = [
    ['login', (r) => runLogin(c, r), cfg.rounds],
    ['workloads', (r) => runWorkloadRound(c, r, { section: 'workloads', systems: WORKLOAD_SYSTEMS.map((s) => ({ name: s, system: s })), workloads: WORKLOADS }), cfg.rounds],
    ['logout', (r) => runLogout(c, r), cfg.rounds],
    [
      'snapcost',
      async (r) => {
        await runWorkloadRound(c, r, {
          section: 'snapcost',
          systems: [
            { name: 'roamfs snap off', system: 'roamfs', roamfsArgs: ['--snapshot-interval', 'off', ...noPrefetch] },
            { name: 'roamfs snap 1s', system: 'roamfs', roamfsArgs: ['--snapshot-interval', '1s', ...noPrefetch] },
          ],
          workloads: snapWorkloads,
        });
        for (const s of ['roamfs snap off', 'roamfs snap 1s']) {
          const parts = snapWorkloads.map((w) => rec.get('snapcost', w.id, s)[r] ?? null);
          rec.set('snapcost', 'total', s, r, parts.some((x) => x === null) ? null : parts.reduce((a, b) => a! + b!, 0));
        }
      },
      cfg.rounds,
    ],
    ['delta', async (r) => (r === 0 ? runDelta(c) : undefined), 1],
    ['memory', (r) => runMemory(c, r), memoryRounds],
  ];
  let storm: Awaited<ReturnType<typeof prepareStorm>> | undefined;
  phases.push(['storm', async (r) => {
    storm ??= await prepareStorm(c);
    await runStorm(c, storm, r);
  }, cfg.rounds]);

  for (const [name, fn, rounds] of phases) {
    if (!sections.includes(name)) continue;
    const ts = Date.now();
    try {
      for (let r = 0; r < rounds; r++) {
        log(`== ${name}, round ${r + 1}/${rounds}`);
        await fn(r);
      }
    } catch (e) {
      rec.error(name, '-', 0, 'section', e);
      await cleanup.all();
    }
    sectionSeconds[name] = (Date.now() - ts) / 1000;
    log(`== ${name} took ${sectionSeconds[name]!.toFixed(0)} s`);
  }
} catch (e) {
  console.error(`bench: ${(e as Error).stack ?? e}`);
  exitCode = 1;
} finally {
  await cleanup.all();
  if (!cfg.keep) await rm(cfg.runDir, { recursive: true, force: true }).catch(() => {});
}

async function finish(aborted: string | null): Promise<void> {
  meta.seconds = (Date.now() - started) / 1000;
  meta.loadavgEnd = os.loadavg();
  const report: string[] = [];
  if (ctx) {
    const mb = (b: number) => `${Math.round(b / MiB)} MiB`;
    const h = (s: string) => report.push(`\n### ${s}\n`);
    report.push(
      `machine: ${meta.nproc} x ${meta.cpu}, ${(Number(meta.memory) / GiB).toFixed(1)} GiB RAM, Linux ${meta.kernel}, Debian ${meta.os}, disk ${meta.disk} (${meta.diskInfo}); ` +
        `node ${meta.node}, ${meta.rclone}, ${meta.fuseOverlayfs}, sqlite ${String(meta.sqlite3).split(' ')[0]}; roamfs ${meta.roamfsCommit}${meta.roamfsDirty ? ' + uncommitted changes' : ''}`,
      `date: ${meta.date}; command: \`${meta.command}\`; took ${(Number(meta.seconds) / 60).toFixed(1)} min; ${cfg.rounds} rounds; load average at start ${(meta.loadavg as number[]).map((x) => x.toFixed(1)).join(' ')}, at end ${(meta.loadavgEnd as number[]).map((x) => x.toFixed(1)).join(' ')}`,
      `profile: ${cfg.profile.sizeArg} / ${cfg.profile.files} files (seed ${cfg.profile.seed}); cells: median over rounds (ratio: median of per-round ratios to the reference in the same round)`,
    );
    if (sections.includes('login')) {
      h('Login (cold page cache): time to a working `ls -la`, then to read the 20 startup files (ratio to native ext4)');
      report.push(loginTable(rec));
    }
    if (sections.includes('storm')) {
      h(`Login storm: ${cfg.storm.users} users at once, ${cfg.storm.sizeArg} / ${cfg.storm.files} files each (half identical), ratio to native \`ls -la\``);
      report.push(stormTable(rec, cfg));
    }
    if (sections.includes('workloads')) {
      h(`File workloads (ratio to native ext4 in the same round; roamfs with --prefetch-delay off)`);
      report.push(workloadTable(ctx, 'workloads', WORKLOAD_SYSTEMS));
      h('Where roamfs spends its time: FUSE ops per workload (status --json `fuse`, mean per round)');
      report.push(fuseTable(ctx, 'workloads'));
    }
    if (sections.includes('logout')) {
      h(`Logout after writing ${mb(cfg.logoutBytes)} / nothing (2 GiB profile; issue 4 target: roamfs logout <= 1.5x raw copy)`.replace('2 GiB profile', `${cfg.profile.sizeArg} profile`));
      report.push(logoutTable(rec, cfg));
      h('Where a roamfs logout spends its time (medians, from the daemon log)');
      report.push(logoutPhasesTable(rec, cfg));
    }
    if (sections.includes('delta')) {
      h('Delta upload');
      report.push(deltaTable(rec, cfg));
    }
    if (sections.includes('memory')) {
      h(`Daemon memory, ${cfg.profile.sizeArg} / ${cfg.profile.files}-file profile (${memoryRounds} round${memoryRounds > 1 ? 's' : ''})`);
      report.push(memoryTable(rec));
    }
    if (sections.includes('snapcost')) {
      const sw = WORKLOADS.filter((w) => w.id.startsWith('sf-'));
      h('Snapshot cost: small-file workload, roamfs --snapshot-interval 1s vs off');
      report.push(snapcostTable(ctx, sw));
      h('FUSE ops, --snapshot-interval 1s');
      report.push(fuseTable(ctx, 'snapcost', 'roamfs snap 1s', sw));
    }
    if (rec.notes.length) {
      h('Notes');
      report.push(rec.notes.map((n) => `- ${n}`).join('\n'));
    }
    if (rec.errors.length) {
      h('Errors');
      report.push(rec.errors.map((e) => `- ${e.section} / ${e.system} / ${e.what} (round ${e.round + 1}): ${e.message}`).join('\n'));
    }
    report.push(`\nsection times: ${Object.entries(sectionSeconds).map(([k, v]) => `${k} ${v.toFixed(0)} s`).join(', ')}`);
  }
  if (aborted) report.push(`\n**aborted (${aborted}): partial results**`);
  const text = report.join('\n');
  console.log(text);
  await mkdir(path.dirname(outFile), { recursive: true });
  await writeFile(outFile, JSON.stringify({ meta, config: cfg, sectionSeconds, raw: rec.data, details: rec.extra, errors: rec.errors, notes: rec.notes }, null, 1));
  await writeFile(outFile.replace(/\.json$/, '') + '.md', text + '\n');
  log(`raw numbers: ${outFile} (tables: ${outFile.replace(/\.json$/, '')}.md)`);
}

await finish(null);
process.exit(exitCode);

