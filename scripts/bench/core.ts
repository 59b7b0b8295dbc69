/**
 * Shared machinery of scripts/bench.ts: configuration, child processes that are killed on
 * failure, the registry of mounts and daemons that is cleaned up in every case (finally, SIGINT,
 * SIGTERM, SIGHUP, uncaught errors), the raw-result recorder and the roamfs CLI wrapper.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { mkdir, readFile } from 'node:fs/promises';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { median, mountsUnder, sleep, waitFor, type ProcIo, parseProcIo } from '../lib/bench-util.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository root (dist/scripts/bench/ -> ../../..). */
export const REPO_ROOT = path.resolve(here, '..', '..', '..');

/**
 * Where the roamfs CLI, the daemon and the helper scripts are run from. bench.ts points this at a
 * frozen copy of the build (freezeApp) so that a rebuild of dist/ by someone else during the run
 * cannot change, or break, the code being measured.
 */
export const app = {
  root: REPO_ROOT,
  /** bin/roamfs, the shell launcher users run (package.json "bin"). */
  get cli() {
    return path.join(this.root, 'bin', 'roamfs');
  },
  get distScripts() {
    return path.join(this.root, 'dist', 'scripts');
  },
};

/** Copy bin/, package.json, build/Release and dist/{src,mount,scripts,bundle} into dir; run from there. */
export async function freezeApp(dir: string): Promise<void> {
  await mkdir(path.join(dir, 'dist'), { recursive: true });
  await mkdir(path.join(dir, 'build'), { recursive: true });
  for (const p of ['bin', 'package.json', 'build/Release', 'dist/src', 'dist/mount', 'dist/scripts', 'dist/bundle']) {
    await sh('cp', ['-a', path.join(REPO_ROOT, p), path.join(dir, p)]);
  }
  // node_modules resolves upwards: dir is inside the checkout (.bench/), so the checkout's is found.
  app.root = dir;
}

export type Section = 'login' | 'storm' | 'workloads' | 'logout' | 'delta' | 'memory' | 'snapcost';
export const ALL_SECTIONS: Section[] = ['login', 'storm', 'workloads', 'logout', 'delta', 'memory', 'snapcost'];

export interface Config {
  quick: boolean;
  rounds: number;
  sections: Section[];
  /** .bench (cached inputs) and the per-run scratch directory under it. */
  benchDir: string;
  runDir: string;
  profile: { seed: number; size: number; sizeArg: string; files: number };
  storm: { users: number; size: number; sizeArg: string; files: number };
  seqBytes: number;
  smallFiles: number;
  gitFiles: number;
  sqliteTx: number;
  logoutBytes: number;
  deltaFileBytes: number;
  deltaChangeBytes: number;
  /** Memory: also the fuse-overlayfs / rclone daemons after a full read. */
  memoryPeers: boolean;
  keep: boolean;
}

// ---------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------

const t0 = Date.now();
export function log(msg: string): void {
  const s = ((Date.now() - t0) / 1000).toFixed(0).padStart(5);
  process.stderr.write(`[${s}s] ${msg}\n`);
}

// ---------------------------------------------------------------------------
// Child processes (tracked: killed by cleanup)
// ---------------------------------------------------------------------------

const children = new Set<ChildProcess>();

export interface ExecOpts {
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Kill the command (SIGKILL) after this long and reject. */
  timeoutMs?: number;
  input?: string;
  /** Run even while aborting (cleanup's own commands). */
  duringCleanup?: boolean;
}

/** Set by a signal: no new commands start (except cleanup's), so the main flow unwinds. */
let aborting = false;

/** The informative part of a stderr: error lines first (a Node stack trace ends with noise), then the end. */
function errSummary(err: string): string {
  const lines = err.trim().split('\n').filter((l) => l.trim() !== '');
  const errs = lines.filter((l) => /error|Error|ERR|denied|No such|cannot|failed/.test(l) && !/^\s+at /.test(l)).slice(0, 3);
  const tail = lines.filter((l) => !/^\s+at /.test(l)).slice(-2);
  return [...new Set([...errs, ...tail])].join(' | ').slice(0, 1500);
}

/** Run a command; resolve with stdout, reject with stderr on a non-zero exit. */
export function sh(cmd: string, args: string[], o: ExecOpts = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    if (aborting && !o.duringCleanup) {
      reject(new Error(`not running ${cmd}: the benchmark is being aborted`));
      return;
    }
    const p = spawn(cmd, args, { cwd: o.cwd, env: o.env ?? process.env, stdio: [o.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    children.add(p);
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    if (o.timeoutMs) timer = setTimeout(() => p.kill('SIGKILL'), o.timeoutMs);
    p.stdout!.on('data', (d) => (out += d));
    p.stderr!.on('data', (d) => (err = (err + d).slice(-64_000)));
    if (o.input !== undefined) {
      p.stdin!.on('error', () => {});
      p.stdin!.end(o.input);
    }
    p.on('error', (e) => {
      children.delete(p);
      if (timer) clearTimeout(timer);
      reject(e);
    });
    p.on('close', (code, sig) => {
      children.delete(p);
      if (timer) clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${cmd} ${args.join(' ').slice(0, 200)} ${sig ? `killed by ${sig}` : `exited ${code}`}: ${errSummary(err)}`));
    });
  });
}

/** Like sh, but returns the /proc/<pid>/io counters of the command and its descendants. */
export async function shIo(cmd: string, args: string[], o: ExecOpts = {}): Promise<ProcIo> {
  return parseProcIo(await sh('sh', ['-c', '"$@" >/dev/null || exit $?; exec cat /proc/$$/io', 'sh', cmd, ...args], o));
}

/** Seconds taken by fn (wall clock, measured here). */
export async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const a = performance.now();
  const v = await fn();
  return [(performance.now() - a) / 1000, v];
}

/** Start a long-running process (a FUSE daemon in the foreground); it is tracked for cleanup. */
export function startDaemonProcess(cmd: string, args: string[], logFile: number): ChildProcess {
  const p = spawn(cmd, args, { stdio: ['ignore', logFile, logFile], detached: true });
  cleanup.trackPid(p.pid!);
  p.on('exit', () => cleanup.untrackPid(p.pid!));
  return p;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitExit(pid: number, timeoutMs: number): Promise<boolean> {
  const t = Date.now();
  while (alive(pid)) {
    if (Date.now() - t > timeoutMs) return false;
    await sleep(20);
  }
  return true;
}

/** SIGTERM, wait, SIGKILL. */
export async function killPid(pid: number, graceMs = 5000): Promise<void> {
  if (!alive(pid)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  if (await waitExit(pid, graceMs)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
  await waitExit(pid, 2000);
}

// ---------------------------------------------------------------------------
// Cleanup registry
// ---------------------------------------------------------------------------

type MountKind = 'kernel' | 'fuse' | 'roamfs';

class Cleanup {
  private readonly mounts = new Map<string, { kind: MountKind; pid?: number; pidFile?: string }>();
  private readonly pids = new Set<number>();
  private roots: string[] = [];
  private running: Promise<void> | null = null;

  addRoot(dir: string): void {
    this.roots.push(dir);
  }
  /** pidFile: where the daemon writes its pid once started (roamfs: CACHE/lock), for a daemon
   * that is still starting when we are interrupted. */
  trackMount(mp: string, kind: MountKind, pid?: number, pidFile?: string): void {
    this.mounts.set(mp, { kind, ...(pid === undefined ? {} : { pid }), ...(pidFile === undefined ? {} : { pidFile }) });
  }
  untrackMount(mp: string): void {
    this.mounts.delete(mp);
  }
  trackPid(pid: number): void {
    this.pids.add(pid);
  }
  untrackPid(pid: number): void {
    this.pids.delete(pid);
  }

  /** Unmount everything we mounted, kill every daemon we started. Safe to call repeatedly. */
  all(): Promise<void> {
    this.running ??= (async () => {
      for (const c of children) c.kill('SIGKILL');
      const mounts = [...this.mounts.entries()].reverse();
      for (const [mp, m] of mounts) {
        log(`cleanup: unmounting ${mp}`);
        if (!m.pid && m.pidFile) {
          const pid = Number((await readFile(m.pidFile, 'utf8').catch(() => '')).trim());
          if (pid > 0 && alive(pid)) m.pid = pid;
        }
        if (m.kind === 'roamfs' && m.pid && alive(m.pid)) {
          // SIGTERM: the daemon flushes, unmounts and exits by itself.
          try {
            process.kill(m.pid, 'SIGTERM');
          } catch {
            // gone
          }
          if (!(await waitExit(m.pid, 60_000))) {
            try {
              process.kill(m.pid, 'SIGKILL');
            } catch {
              // gone
            }
          }
        }
        await forceUnmount(mp, m.kind);
        if (m.pid) await killPid(m.pid);
        this.mounts.delete(mp);
      }
      for (const pid of [...this.pids]) await killPid(pid);
      this.pids.clear();
      // Anything still mounted under our scratch directories (a daemon that mounted but was not
      // recorded yet): lazy-unmount it.
      for (const root of this.roots) {
        for (const mp of await mountsUnder(root).catch(() => [] as string[])) {
          log(`cleanup: stray mount ${mp}`);
          await forceUnmount(mp, 'fuse');
        }
      }
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }
}

export const cleanup = new Cleanup();

async function forceUnmount(mp: string, kind: MountKind): Promise<void> {
  const mounted = async () => (await mountsUnder(mp).catch(() => [] as string[])).includes(mp);
  if (!(await mounted())) return;
  const c = { timeoutMs: 10_000, duringCleanup: true };
  if (kind !== 'kernel') await sh('fusermount', ['-u', mp], c).catch(() => {});
  else await sh('umount', [mp], c).catch(() => {});
  if (!(await mounted())) return;
  if (kind !== 'kernel') await sh('fusermount', ['-u', '-z', mp], c).catch(() => {});
  if (await mounted()) await sh('umount', ['-l', mp], c).catch(() => {});
}

export async function unmountTracked(mp: string, kind: MountKind): Promise<void> {
  await forceUnmount(mp, kind);
  cleanup.untrackMount(mp);
}

let handlersInstalled = false;
/** Clean up on SIGINT/SIGTERM/SIGHUP and on an uncaught error, then exit. */
export function installSignalHandlers(afterCleanup?: (why: string) => Promise<void>): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  let bailing = false;
  const bail = (why: string, code: number) => {
    if (bailing) return;
    bailing = true;
    aborting = true;
    log(`${why}: cleaning up`);
    const hard = setTimeout(() => process.exit(code), 180_000);
    hard.unref();
    void cleanup
      .all()
      .then(() => afterCleanup?.(why))
      .catch((e) => console.error(e))
      .finally(() => process.exit(code));
  };
  process.on('SIGINT', () => bail('SIGINT', 130));
  process.on('SIGTERM', () => bail('SIGTERM', 143));
  process.on('SIGHUP', () => bail('SIGHUP', 129));
  process.on('uncaughtException', (e) => {
    console.error(e);
    bail('uncaught exception', 1);
  });
  process.on('unhandledRejection', (e) => {
    console.error(e);
    bail('unhandled rejection', 1);
  });
}

// ---------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------

export type Val = number | null;

/** Raw numbers: section -> metric -> system -> one value per round (null: failed). */
export class Recorder {
  readonly data: Record<string, Record<string, Record<string, Val[]>>> = {};
  /** Free-form per-section details (bytes, FUSE op counts, notes). */
  readonly extra: Record<string, unknown[]> = {};
  readonly errors: Array<{ section: string; system: string; round: number; what: string; message: string }> = [];
  readonly notes: string[] = [];

  set(section: string, metric: string, system: string, round: number, v: Val): void {
    const m = ((this.data[section] ??= {})[metric] ??= {});
    const arr = (m[system] ??= []);
    while (arr.length <= round) arr.push(null);
    arr[round] = v;
  }
  get(section: string, metric: string, system: string): Val[] {
    return this.data[section]?.[metric]?.[system] ?? [];
  }
  add(section: string, item: unknown): void {
    (this.extra[section] ??= []).push(item);
  }
  error(section: string, system: string, round: number, what: string, e: unknown): void {
    if (aborting) return; // the consequences of the abort itself are not results
    const message = e instanceof Error ? e.message : String(e);
    this.errors.push({ section, system, round, what, message });
    log(`ERROR ${section}/${system}/${what} round ${round + 1}: ${message}`);
  }
  note(s: string): void {
    if (!this.notes.includes(s)) this.notes.push(s);
  }

  /** Median of the values (nulls skipped); null when none. */
  med(section: string, metric: string, system: string): number | null {
    const xs = this.get(section, metric, system).filter((x): x is number => x !== null && Number.isFinite(x));
    return xs.length ? median(xs) : null;
  }
  /** Median of per-round ratios system / ref (rounds where either failed are skipped). */
  ratio(section: string, metric: string, system: string, ref: string, refMetric = metric): number | null {
    const a = this.get(section, metric, system);
    const b = this.get(section, refMetric, ref);
    const rs: number[] = [];
    for (let i = 0; i < a.length; i++) {
      const x = a[i];
      const y = b[i];
      if (x !== null && x !== undefined && y !== null && y !== undefined && y > 0) rs.push(x / y);
    }
    return rs.length ? median(rs) : null;
  }
}

// ---------------------------------------------------------------------------
// roamfs CLI
// ---------------------------------------------------------------------------

export function roamfsRunDir(cfg: Config): string {
  return path.join(cfg.runDir, 'roamfs-run');
}

export function roamfsEnv(cfg: Config): NodeJS.ProcessEnv {
  return { ...process.env, ROAMFS_RUN_DIR: roamfsRunDir(cfg), ROAMFS_NODE: process.execPath };
}

export function roamfs(cfg: Config, args: string[], o: { timeoutMs?: number } = {}): Promise<string> {
  return sh(app.cli, args, { env: roamfsEnv(cfg), timeoutMs: o.timeoutMs ?? 30 * 60_000 });
}

export interface RoamfsStatus {
  pid: number;
  remoteBytesRead: number;
  bytesUploaded: number;
  commits: number;
  pendingSnapshots: number;
  snapshots: number;
  dirty: boolean;
  fuse?: Record<string, { count: number; errors: number; totalMs: number; meanUs: number; maxMs: number }>;
  prefetch?: { phase: string; filesDone: number; filesTotal: number; bytesDone: number; bytesTotal: number };
  [k: string]: unknown;
}

type ControlFn = (mountpoint: string, cmd: string) => Promise<unknown>;
let controlFn: ControlFn | null = null;

/** One command over the daemon's control socket (what the CLI sends), without the CLI. */
export async function roamfsControl(mp: string, cmd: string): Promise<unknown> {
  if (!controlFn) {
    const m = (await import(pathToFileURL(path.join(app.root, 'dist', 'mount', 'control.js')).href)) as { control: ControlFn };
    controlFn = m.control;
  }
  return controlFn(mp, cmd);
}

/**
 * `roamfs status MP --json`, asked over the daemon's control socket directly (the same call the
 * CLI makes, without a Node start-up of ~0.5 s per call, which would dominate the gaps between
 * workloads). ROAMFS_RUN_DIR must be set before the first call (bench.ts does).
 */
export async function roamfsStatus(_cfg: Config, mp: string): Promise<RoamfsStatus> {
  return (await roamfsControl(mp, 'status')) as RoamfsStatus;
}

let helpText: string | null = null;
/** Does `roamfs mount --help` list this option? */
export async function mountSupports(cfg: Config, option: string): Promise<boolean> {
  helpText ??= await roamfs(cfg, ['mount', '--help']).catch(() => '');
  return helpText.includes(option);
}

export async function ensureDir(d: string): Promise<string> {
  await mkdir(d, { recursive: true });
  return d;
}

export { waitFor };
