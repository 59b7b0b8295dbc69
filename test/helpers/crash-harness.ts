/**
 * Crash-consistency harness: a chain of kill points on one real mounted home.
 *
 * Each kill point: a seeded workload (test/helpers/crash-workload.ts) runs on the mount while
 * the harness forces snapshots (`snapshot` on the control socket, the request `roamfs snapshot`
 * sends) and idle commits happen (--idle 200ms, pauses in the workload); at a random moment —
 * during the workload, during a forced snapshot, or a little after the idle delay so that a
 * commit is under way — the daemon gets SIGKILL. Then: `fusermount -u -z` the dead mount, fsck
 * the repository (must be clean), check every new commit against the model of the snapshot it
 * says it contains, and remount (the next kill point's mount) — with the same cache, or, for a
 * "VM lost" kill point, with the cache deleted. The remounted home must be EXACTLY:
 *
 *   mode 'exact' (--snapshot-interval off: only forced snapshots make anything durable)
 *     same cache: the model recorded at the last forced snapshot whose request returned, or the
 *                 one being taken when the daemon died (its request got no answer);
 *     VM lost:    the model of the snapshot that the head commit contains (commit.origin =
 *                 {log, snapshot}; the import's model for the imported commit).
 *   mode 'prefix' (--snapshot-interval 250ms: timer snapshots at unknown instants)
 *     same cache: a state the workload went through since the last forced snapshot returned
 *                 (types and content; a write(2) may reach the daemon as several FUSE requests
 *                 split at page boundaries, and the workload records those states too, so every
 *                 state a snapshot can capture is one of the recorded ones).
 *
 * In both modes a head commit is never newer than what is remounted: in 'exact' mode the
 * head's snapshot seq (when made from the current log) is <= the seq of the remounted snapshot.
 * At the end: `roamfs logout` must exit 0 and `roamfs export` must equal the home as it was at
 * logout (mode, mtime in ns, content), and `roamfs fsck` must pass.
 */
import { watch, type FSWatcher } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { Rng } from '../../scripts/lib/rng.js';
import { countObjects, fsckRepo, control, Homes, openRepo, roamfs, roamfsOk, sleep, type Daemon, type HomeSpec } from './crash-daemon.js';
import { contentKey, diffModels, sameModel, treeModel, walkDir, type Model } from './crash-model.js';
import { Workload } from './crash-workload.js';

export interface ChainOptions {
  seed: number;
  kills: number;
  mode: 'exact' | 'prefix';
  /** Probability that a kill point also loses the cache ('exact' mode only). */
  vmLostRate?: number;
  /** Parent of the chain's temp directory (default os.tmpdir()). */
  baseDir?: string;
  /** How the daemon is started: the CLI (`roamfs mount`), or its program directly (faster). */
  via?: 'cli' | 'daemon';
  idle?: string;
  snapshotInterval?: string;
  /** Longest time before a 'random' kill (ms). */
  maxKillDelayMs?: number;
  /** Stop after this long even if fewer kills were made (0: no limit). */
  timeLimitMs?: number;
  log?: (line: string) => void;
  /** Owner of everything started (the caller cleans it up in teardown); a fresh one otherwise. */
  homes?: Homes;
}

/**
 * Where a kill lands:
 *   random   at a random time of the workload (anything can be running);
 *   snapshot 0-25 ms after a forced snapshot request was sent;
 *   log      the instant the change log's files change during a forced snapshot (inotify):
 *            the snapshot is durable, its request unanswered;
 *   commit   idle delay + 0-80 ms after a forced snapshot (the idle commit is under way);
 *   upload   at the 1st-6th file the idle commit writes in the repository's tmp/ (objects,
 *            the commit, the ref), i.e. between uploads;
 *   ref      the instant a new ref appears (head moved; the log does not know it is shipped).
 */
export type Strategy = 'random' | 'snapshot' | 'log' | 'commit' | 'upload' | 'ref';
const STRATEGIES: Strategy[] = ['random', 'snapshot', 'log', 'commit', 'upload', 'ref'];
const WEIGHTS = [4, 2, 1, 2, 2, 2];

export interface ChainResult {
  seed: number;
  mode: 'exact' | 'prefix';
  killPoints: number;
  byStrategy: Record<Strategy, number>;
  vmLost: number;
  /** Kills during a forced snapshot whose request got no answer, and how many of those were durable. */
  inflightSnapshots: number;
  inflightDurable: number;
  forcedSnapshots: number;
  commitsChecked: number;
  commitsUnverified: number;
  /** Kill points after which the repository held new unreferenced objects (killed mid-upload). */
  midUploadKills: number;
  /** Commits a restarted session found already made (killed after the head moved, before the log knew). */
  replayedCommits: number;
  ops: number;
  syscalls: number;
  ms: number;
  msPerKill: number;
  /** Time spent per phase (ms, summed). */
  phases: Record<string, number>;
}

export class CrashCheckError extends Error {}

interface Gen {
  /** Models of the forced snapshots of this change log, by seq. */
  models: Map<number, Model>;
  logId: string | null;
}

/** Run one chain; throws CrashCheckError (with seed and kill point) on the first violation. */
export async function runChain(o: ChainOptions): Promise<ChainResult> {
  const log = o.log ?? (() => {});
  const homes = o.homes ?? new Homes();
  const own = !o.homes;
  try {
    return await chain(o, homes, log);
  } finally {
    if (own) await homes.cleanup(log);
  }
}

async function chain(o: ChainOptions, homes: Homes, log: (s: string) => void): Promise<ChainResult> {
  const t0 = performance.now();
  const rng = new Rng(o.seed, 0xc4a5);
  const exact = o.mode === 'exact';
  const idleMs = Number(/^(\d+)ms$/.exec(o.idle ?? '200ms')?.[1] ?? 200);
  const dir = await fsp.mkdtemp(path.join(o.baseDir ?? os.tmpdir(), `roamfs-crash-${o.mode}-${o.seed}-`));
  homes.dirs.push(dir);
  const spec: HomeSpec = {
    repo: path.join(dir, 'repo'),
    user: 'alice',
    mountpoint: path.join(dir, 'home'),
    cache: path.join(dir, 'cache'),
    runDir: path.join(dir, 'run'),
    snapshotInterval: exact ? 'off' : (o.snapshotInterval ?? '250ms'),
    idle: o.idle ?? '200ms',
  };
  const res: ChainResult = {
    seed: o.seed, mode: o.mode, killPoints: 0, byStrategy: { random: 0, snapshot: 0, log: 0, commit: 0, upload: 0, ref: 0 }, vmLost: 0,
    inflightSnapshots: 0, inflightDurable: 0, forcedSnapshots: 0, commitsChecked: 0, commitsUnverified: 0,
    midUploadKills: 0, replayedCommits: 0, ops: 0, syscalls: 0, ms: 0, msPerKill: 0, phases: {},
  };
  const trace = process.env.ROAMFS_CRASH_TRACE ? (s: string) => log(`  kp ${kp}: ${s}`) : null;
  const phase = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const s = performance.now();
    try {
      return await f();
    } finally {
      const d = performance.now() - s;
      res.phases[name] = (res.phases[name] ?? 0) + d;
      trace?.(`${name} ${d.toFixed(0)} ms`);
    }
  };
  let kp = 0;
  const fail = (msg: string): never => {
    throw new CrashCheckError(`seed ${o.seed} mode ${o.mode} kill point ${kp}: ${msg} (work dir ${dir})`);
  };

  // ---- the initial profile ----
  const src = path.join(dir, 'src');
  // (Names the workload never makes: it names things <letter><number>.)
  for (const d of ['docs/sub', 'music', 'cfg']) await fsp.mkdir(path.join(src, d), { recursive: true });
  const seedRng = rng.fork(1);
  for (const f of ['top', 'docs/a', 'docs/b', 'docs/sub/e', 'music/c']) await fsp.writeFile(path.join(src, f), Buffer.from(seedRng.hex(seedRng.int(1, 3000))));
  await fsp.mkdir(spec.mountpoint);
  await roamfsOk(spec.runDir, ['init', spec.repo]);
  await roamfsOk(spec.runDir, ['import', spec.repo, spec.user, src]);
  const repo = await openRepo(spec.repo);
  const importCommit = (await repo.requireHead(spec.user)).commit;
  const importModel = await treeModel(repo, (await repo.getCommit(importCommit)).root);

  // ---- chain state ----
  const gens: Gen[] = [{ models: new Map(), logId: null }];
  const logToGen = new Map<string, number>();
  let refsSeen = (await repo.refs(spec.user)).length;
  let orphans = 0;
  /** The state a remount must show (exact mode), and its seq in the current log (0: none yet). */
  let durable: { seq: number; model: Model } = { seq: 0, model: importModel };
  let nextSeq = 1;
  let stepKeys = new Set<string>();
  const names = { n: 0 };

  /** Model of the snapshot a commit says it contains (null: unknown, a timer snapshot). */
  const modelOfCommit = (id: string, origin: { log: string; snapshot: number } | undefined): Model | null => {
    if (!origin) {
      if (id !== importCommit) fail(`commit ${id} has no origin and is not the import`);
      return importModel;
    }
    let g = logToGen.get(origin.log);
    if (g === undefined) {
      // The first commit of a log we have not seen: it belongs to the current cache (old caches
      // were scanned before they were deleted).
      g = gens.length - 1;
      if (gens[g]!.logId !== null) fail(`commit ${id} from unknown log ${origin.log}, but the current log is ${gens[g]!.logId}`);
      gens[g]!.logId = origin.log;
      logToGen.set(origin.log, g);
    }
    return gens[g]!.models.get(origin.snapshot) ?? null;
  };

  /** fsck, then check the commits made since the last look. */
  const checkRepository = async () => {
    const r = await fsckRepo(spec.repo);
    if (r.damage.length > 0) fail(`fsck: ${r.damage.map((d) => `${d.problem} (${d.usedBy.join(', ')})`).join('; ')}`);
    const stored = await countObjects(spec.repo);
    const unref = stored - (r.commits + r.trees + r.chunks);
    if (unref > orphans) res.midUploadKills++;
    orphans = unref;
    const refs = (await repo.refs(spec.user)).reverse(); // oldest first
    for (const ref of refs.slice(refsSeen)) {
      const c = await repo.getCommit(ref.commit);
      const want = modelOfCommit(ref.commit, c.origin);
      if (want === null) {
        if (exact) fail(`commit ${ref.commit} (${c.message}) contains snapshot ${c.origin?.snapshot}, which was never recorded`);
        res.commitsUnverified++;
        continue;
      }
      const got = await treeModel(repo, c.root);
      const d = diffModels(want, got);
      if (d.length > 0) fail(`commit ${ref.commit} (${c.message}) differs from the recorded snapshot:\n  ${d.join('\n  ')}`);
      res.commitsChecked++;
    }
    refsSeen = refs.length;
  };

  const countReplays = async () => {
    const text = await fsp.readFile(path.join(spec.cache, 'roamfs.log'), 'utf8').catch(() => '');
    return text.split('"replayed":true').length - 1;
  };

  let daemon: Daemon = await phase('mount', () => homes.mount(spec, o.via ?? 'daemon'));
  let current = await phase('walk', () => walkDir(spec.mountpoint, { content: true }));
  {
    const d = diffModels(importModel, current);
    if (d.length > 0) fail(`first mount differs from the import:\n  ${d.join('\n  ')}`);
  }

  const deadline = o.timeLimitMs ? t0 + o.timeLimitMs : Infinity;
  for (kp = 1; kp <= o.kills && performance.now() < deadline; kp++) {
    const krng = rng.fork(kp);
    const wl = Workload.fromModel(krng.fork(2), spec.mountpoint, names, current, { maxWrite: exact ? 256 << 10 : 64 << 10 });
    stepKeys = new Set([contentKey(wl.contentModel())]);
    if (!exact) wl.onState = (m) => stepKeys.add(contentKey(m));

    const strategy = krng.weighted<Strategy>(STRATEGIES, WEIGHTS);
    res.byStrategy[strategy]++;
    let killed = false;
    const kill = async () => {
      if (killed) return;
      killed = true;
      await homes.kill(daemon);
    };
    let inflight: Model | null = null;
    const watchers: FSWatcher[] = [];
    /** SIGKILL at the nth change in a directory (inotify). */
    const killOnChange = (dirPath: string, nth: number) => {
      let n = 0;
      const w = watch(dirPath, () => {
        if (++n === nth) void kill();
      });
      w.on('error', () => {});
      watchers.push(w);
    };

    /** Force a snapshot with the workload paused; records the model. */
    const forceSnapshot = async (killDuring: 'timed' | 'log' | null) => {
      const model = await walkDir(spec.mountpoint, { content: false, contentOf: (p) => wl.dataOf(p) });
      if (killed) return;
      const d = diffModels(wl.contentModel(), model, false);
      if (d.length > 0) fail(`the mount does not show what was written:\n  ${d.join('\n  ')}`);
      if (killDuring === 'log') killOnChange(path.join(spec.cache, 'log'), 1);
      const req = control(spec.runDir, spec.mountpoint, 'snapshot');
      let seq: number | null;
      if (killDuring === 'timed') {
        await sleep(krng.int(0, 25));
        void kill();
      }
      try {
        seq = ((await req) as { seq: number | null }).seq;
      } catch (err) {
        if (!killed) throw err;
        inflight = model;
        res.inflightSnapshots++;
        return;
      }
      res.forcedSnapshots++;
      if (seq === null) {
        if (exact && !sameModel(durable.model, model)) fail(`snapshot returned "nothing changed" but the home differs from the last snapshot:\n  ${diffModels(durable.model, model).join('\n  ')}`);
      } else {
        if (exact && seq !== nextSeq) fail(`snapshot seq ${seq}, expected ${nextSeq}`);
        nextSeq = seq + 1;
        gens[gens.length - 1]!.models.set(seq, model);
      }
      durable = { seq: seq ?? durable.seq, model };
      stepKeys = new Set([contentKey(model)]);
    };

    // ---- the workload, until the kill ----
    await phase('workload', async () => {
      const started = performance.now();
      const killAfter = krng.int(20, o.maxKillDelayMs ?? 450);
      const snapAt = krng.int(1, 2);
      const commitAfterOps = krng.int(1, 8);
      let timer: NodeJS.Timeout | null = null;
      if (strategy === 'random') timer = setTimeout(() => void kill(), killAfter);
      let snaps = 0;
      try {
        while (!killed) {
          if (performance.now() - started > 4000) {
            await kill();
            break;
          }
          const r = krng.float();
          if (r < 0.15) {
            snaps++;
            const now = snaps === snapAt && (strategy === 'snapshot' || strategy === 'log');
            await forceSnapshot(now ? (strategy === 'snapshot' ? 'timed' : 'log') : null);
          } else if (r < 0.2) {
            await sleep(krng.int(idleMs - 50, idleMs + 250)); // let an idle commit run
          } else {
            await wl.step();
          }
          if ((strategy === 'commit' || strategy === 'upload' || strategy === 'ref') && wl.ops >= commitAfterOps && !killed) {
            await wl.create(); // something for the commit to do
            await forceSnapshot(null);
            if (killed) break;
            // The idle commit starts idleMs after the last file system operation (the walk).
            if (strategy === 'commit') await sleep(idleMs + krng.int(0, 80));
            else {
              if (strategy === 'upload') killOnChange(path.join(spec.repo, 'tmp'), krng.int(1, 6));
              else killOnChange(path.join(spec.repo, 'users', spec.user, 'refs'), 1);
              for (let i = 0; i < 150 && !killed; i++) await sleep(10);
            }
            await kill();
          }
        }
      } catch (err) {
        if (!killed) {
          const e = err as NodeJS.ErrnoException;
          fail(`workload failed on a live mount: ${e.code ?? ''} ${e.message}`);
        }
      } finally {
        if (timer) clearTimeout(timer);
      }
      await kill();
      for (const w of watchers) w.close();
    });
    res.ops += wl.ops;
    res.syscalls += wl.syscalls;

    // ---- after the crash ----
    await phase('unmount', () => homes.lazyUnmount(spec.mountpoint));
    await phase('check-repo', checkRepository);
    const vmLost = exact && krng.chance(o.vmLostRate ?? 0.15);
    if (vmLost) {
      res.replayedCommits += await countReplays();
      await fsp.rm(spec.cache, { recursive: true, force: true });
      gens.push({ models: new Map(), logId: null });
      res.vmLost++;
    }
    trace?.(`remount${vmLost ? ' (VM lost)' : ''} after a ${strategy} kill`);
    daemon = await phase('mount', () => homes.mount(spec, o.via ?? 'daemon'));
    const actual = await phase('walk', () => walkDir(spec.mountpoint, { content: true }));

    await phase('verify', async () => {
      if (vmLost) {
        const head = await repo.requireHead(spec.user);
        const c = await repo.getCommit(head.commit);
        const want = modelOfCommit(head.commit, c.origin);
        if (!want) return fail(`head ${head.commit} contains an unrecorded snapshot`);
        const d = diffModels(want, actual);
        if (d.length > 0) fail(`VM lost: the home differs from the head commit ${head.commit} (${c.message}):\n  ${d.join('\n  ')}`);
        durable = { seq: 0, model: actual };
        nextSeq = 1;
        return;
      }
      if (exact) {
        if (!sameModel(durable.model, actual)) {
          if (inflight && sameModel(inflight, actual)) {
            res.inflightDurable++;
            gens[gens.length - 1]!.models.set(nextSeq, inflight);
            durable = { seq: nextSeq, model: inflight };
            nextSeq++;
          } else {
            fail(
              `remount differs from the last durable snapshot ${durable.seq}${inflight ? ' (and from the one in flight)' : ''}:\n  ${diffModels(durable.model, actual).join('\n  ')}` +
                (inflight ? `\n vs in flight:\n  ${diffModels(inflight, actual).join('\n  ')}` : ''),
            );
          }
        }
        // Never older than a commit: the head, if made from this log, holds a snapshot <= the remounted one.
        const head = await repo.requireHead(spec.user);
        const c = await repo.getCommit(head.commit);
        const g = c.origin ? logToGen.get(c.origin.log) : undefined;
        if (g === gens.length - 1 && c.origin!.snapshot > durable.seq) fail(`head commit holds snapshot ${c.origin!.snapshot}, newer than the remounted ${durable.seq}`);
        return;
      }
      const key = contentKey(actual);
      if (!stepKeys.has(key)) {
        fail(`remount shows a state the workload never went through since the last durable snapshot:\n  ${diffModels(durable.model, actual, false).join('\n  ')}`);
      }
      durable = { seq: durable.seq, model: actual };
    });
    current = actual;
    res.killPoints++;
    if (kp % 25 === 0) log(`${o.mode} seed ${o.seed}: ${kp} kill points, ${((performance.now() - t0) / kp).toFixed(0)} ms each`);
  }

  // ---- logout: the repository must equal the home as it was at logout ----
  await phase('logout', async () => {
    const before = await walkDir(spec.mountpoint, { content: true });
    const out = await roamfs(spec.runDir, ['logout', spec.mountpoint]);
    if (out.code !== 0) {
      const tail = (await fsp.readFile(path.join(spec.cache, 'roamfs.log'), 'utf8').catch(() => '')).trim().split('\n').slice(-15);
      fail(`logout exited ${out.code}: ${out.stderr.trim()}\n  daemon log, last lines:\n  ${tail.join('\n  ')}`);
    }
    await homes.waitExit(daemon);
    homes.fuseMounts.delete(spec.mountpoint);
    res.replayedCommits += await countReplays();
    const f = await roamfs(spec.runDir, ['fsck', spec.repo]);
    if (f.code !== 0) fail(`fsck after logout: ${f.stderr.trim()}`);
    const exp = path.join(dir, 'export');
    await roamfsOk(spec.runDir, ['export', spec.repo, spec.user, exp]);
    const exported = await walkDir(exp, { content: true });
    const d = diffModels(before, exported);
    if (d.length > 0) fail(`export after logout differs from the home at logout:\n  ${d.join('\n  ')}`);
    await checkRepository();
  });

  res.ms = performance.now() - t0;
  res.msPerKill = res.ms / Math.max(1, res.killPoints);
  return res;
}

export function formatResult(r: ChainResult): string {
  const ph = Object.entries(r.phases)
    .map(([k, v]) => `${k} ${(v / Math.max(1, r.killPoints)).toFixed(0)}`)
    .join(', ');
  return (
    `${r.mode} seed ${r.seed}: ${r.killPoints} kill points (${STRATEGIES.map((k) => `${k} ${r.byStrategy[k]}`).join(', ')}), ` +
    `${r.vmLost} VM lost, ${r.inflightSnapshots} kills in a snapshot request${r.mode === 'exact' ? ` (${r.inflightDurable} durable)` : ''}, ${r.forcedSnapshots} forced snapshots, ` +
    `${r.commitsChecked} commits checked${r.commitsUnverified ? ` (+${r.commitsUnverified} of timer snapshots)` : ''}, ${r.midUploadKills} kills mid-upload, ${r.replayedCommits} replayed commits, ` +
    `${r.ops} ops / ${r.syscalls} calls; ${(r.ms / 1000).toFixed(1)} s, ${r.msPerKill.toFixed(0)} ms per kill point (${ph} ms)`
  );
}
