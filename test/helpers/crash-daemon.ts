/**
 * Process and mount plumbing for the crash tests (test/mount/crash-*.test.ts) and the soak
 * script: start a roamfs daemon for a home (through the real CLI, or by spawning the daemon
 * program directly, which is what `roamfs mount` does minus one node start-up), talk to its
 * control socket, SIGKILL it, clean up the dead FUSE mount, and undo everything in teardown.
 *
 * Every run has its own ROAMFS_RUN_DIR, so the control socket is computed here rather than
 * through mount/control.ts's module-level RUN_DIR (one test process runs many homes).
 *
 * Rule: this process never does a blocking (*Sync) call on a mountpoint; the daemon is always
 * another process, so async fs calls and child processes on the mount are fine.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAnswer } from '../../mount/launch.cjs';
import { mountId } from '../../mount/control.js';
import { PosixBackend } from '../../src/repository/posix.js';
import { Repository } from '../../src/repository/repository.js';
import { fsck, type FsckReport } from '../../src/repository/fsck.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/test/helpers -> <root>/bin/roamfs.js and dist/mount/daemon-main.js */
export const BIN = path.resolve(here, '../../../bin/roamfs.js');
export const DAEMON_MAIN = path.resolve(here, '../../mount/daemon-main.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run `roamfs ...args` with ROAMFS_RUN_DIR=runDir; never throws for a non-zero exit. */
export function roamfs(runDir: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      { maxBuffer: 64 << 20, env: env(runDir), timeout: opts.timeoutMs ?? 120_000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err && typeof (err as { code?: unknown }).code !== 'number' && !(err as { killed?: boolean }).killed) return reject(err);
        const code = err ? ((err as { code?: number }).code ?? 137) : 0;
        resolve({ code: typeof code === 'number' ? code : 1, stdout: String(stdout), stderr: String(stderr), ms: performance.now() - t0 });
      },
    );
  });
}

export async function roamfsOk(runDir: string, args: string[]): Promise<CliResult> {
  const r = await roamfs(runDir, args);
  if (r.code !== 0) throw new Error(`roamfs ${args.join(' ')} exited ${r.code}: ${r.stderr.trim()} ${r.stdout.trim()}`);
  return r;
}

function env(runDir: string): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, ROAMFS_RUN_DIR: runDir, NO_COLOR: '1', FORCE_COLOR: '0', UV_THREADPOOL_SIZE: '16' };
  delete e.NODE_OPTIONS;
  delete e.ROAMFS_READY_FD;
  return e;
}

export interface HomeSpec {
  repo: string;
  user: string;
  mountpoint: string;
  cache: string;
  runDir: string;
  /** CLI duration syntax: '300ms', '2s', 'off'. */
  snapshotInterval: string;
  idle: string;
  maxLag?: string;
  /** Only with via 'daemon' (the CLI has no option for it): how long logout retries an unreachable repository. */
  flushTimeoutMs?: number;
}

export interface Daemon {
  pid: number;
  spec: HomeSpec;
  /** Set when we are the daemon's parent (via 'daemon'): resolves when it exits. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | null;
}

const ms = (d: string): string => {
  if (d === 'off') return 'off';
  const m = /^(\d+)(ms|s)$/.exec(d);
  if (!m) throw new Error(`duration ${d}`);
  return String(Number(m[1]) * (m[2] === 's' ? 1000 : 1));
};

/**
 * Everything a test started (daemons, FUSE mounts, tmpfs mounts, bind mounts, directories), undone
 * by cleanup() in reverse: SIGKILL live daemons, `fusermount -u -z` mounts, `umount -l` the rest,
 * and remove directories only once nothing is mounted below them.
 */
export class Homes {
  readonly pids = new Set<number>();
  readonly fuseMounts = new Set<string>();
  readonly otherMounts: string[] = [];
  readonly dirs: string[] = [];

  /** Start the daemon for `spec` and wait until the home is usable. Throws with the CLI's message. */
  async mount(spec: HomeSpec, via: 'cli' | 'daemon' = 'cli'): Promise<Daemon> {
    this.fuseMounts.add(spec.mountpoint);
    if (via === 'cli') {
      const args = ['mount', spec.repo, spec.user, spec.mountpoint, '--cache', spec.cache, '--snapshot-interval', spec.snapshotInterval, '--idle', spec.idle];
      if (spec.maxLag) args.push('--max-lag', spec.maxLag);
      const r = await roamfs(spec.runDir, args);
      if (r.code !== 0) throw new MountError(r);
      const m = /daemon pid (\d+)/.exec(r.stdout);
      if (!m) throw new Error(`roamfs mount: no pid in ${JSON.stringify(r.stdout)}`);
      const pid = Number(m[1]);
      this.pids.add(pid);
      return { pid, spec, exited: null };
    }
    await fsp.mkdir(spec.cache, { recursive: true, mode: 0o700 });
    const errFd = openSync(path.join(spec.cache, 'daemon.stderr'), 'a', 0o600);
    const args = [DAEMON_MAIN, '--user', spec.user, '--repo', spec.repo, '--cache', spec.cache, '--uid', '0', '--gid', '0'];
    args.push('--snapshot-interval-ms', ms(spec.snapshotInterval), '--idle-ms', ms(spec.idle), '--max-lag-ms', ms(spec.maxLag ?? '300s'));
    if (spec.flushTimeoutMs !== undefined) args.push('--flush-timeout-ms', String(spec.flushTimeoutMs));
    args.push(spec.mountpoint);
    const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', errFd, 'pipe'], env: { ...env(spec.runDir), ROAMFS_READY_FD: '3' } });
    closeSync(errFd);
    this.pids.add(child.pid!);
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    const answer = parseAnswer(
      await new Promise<string>((resolve) => {
        let buf = '';
        const pipe = child.stdio[3] as NodeJS.ReadableStream;
        pipe.setEncoding('utf8');
        pipe.on('data', (d: string) => (buf += d));
        pipe.on('end', () => resolve(buf));
      }),
    );
    if (answer.status !== 0) {
      await exited;
      throw new MountError({ code: answer.status ?? 1, stdout: '', stderr: `roamfs: ${answer.status === null ? 'the daemon exited before the mount was ready' : answer.message}`, ms: 0 });
    }
    return { pid: child.pid!, spec, exited };
  }

  /** SIGKILL a daemon and wait until it is gone (or a zombie). */
  async kill(d: Daemon): Promise<void> {
    try {
      process.kill(d.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    if (d.exited) await d.exited;
    else await waitGone(d.pid);
    this.pids.delete(d.pid);
  }

  /** Wait for a daemon to exit by itself (after logout). */
  async waitExit(d: Daemon, timeoutMs = 60_000): Promise<void> {
    if (d.exited) await Promise.race([d.exited, sleep(timeoutMs)]);
    else await waitGone(d.pid, timeoutMs);
    if (!alive(d.pid)) this.pids.delete(d.pid);
  }

  /** `fusermount -u -z` a (dead) FUSE mount; a no-op when nothing is mounted there. */
  async lazyUnmount(mp: string): Promise<void> {
    if (await isMounted(mp)) await run('fusermount', ['-u', '-z', mp]).catch(() => run('umount', ['-l', mp]));
    this.fuseMounts.delete(mp);
  }

  /** Kill, unmount and remove everything started; `keepDirs` leaves the directories (to look at a violation). */
  async cleanup(log: (s: string) => void = () => {}, opts: { keepDirs?: boolean } = {}): Promise<void> {
    for (const pid of this.pids) {
      if (alive(pid) && !(await isZombie(pid))) {
        log(`cleanup: SIGKILL leftover daemon ${pid}`);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
        await waitGone(pid, 5000);
      }
    }
    this.pids.clear();
    for (const mp of this.fuseMounts) {
      if (await isMounted(mp)) {
        log(`cleanup: fusermount -u -z ${mp}`);
        await run('fusermount', ['-u', '-z', mp]).catch(() => run('umount', ['-l', mp]).catch(() => {}));
      }
    }
    this.fuseMounts.clear();
    for (const m of this.otherMounts.reverse()) {
      while (await isMounted(m)) {
        log(`cleanup: umount -l ${m}`);
        if (!(await run('umount', ['-l', m]).then(() => true, () => false))) break;
      }
    }
    this.otherMounts.length = 0;
    if (opts.keepDirs) {
      for (const d of this.dirs) log(`cleanup: kept ${d}`);
      this.dirs.length = 0;
      return;
    }
    for (const d of this.dirs.reverse()) {
      // Never rm -rf through a live mount.
      const below = (await mounts()).filter((m) => m === d || m.startsWith(d + '/'));
      if (below.length > 0) {
        log(`cleanup: not removing ${d}: still mounted: ${below.join(', ')}`);
        continue;
      }
      await fsp.rm(d, { recursive: true, force: true }).catch((e) => log(`cleanup: rm ${d}: ${String(e)}`));
    }
    this.dirs.length = 0;
  }
}

export class MountError extends Error {
  constructor(readonly result: CliResult) {
    super(`roamfs mount failed (exit ${result.code}): ${result.stderr.trim()}`);
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A zombie (dead, not yet reaped by its parent) counts as gone.
  return true;
}

async function isZombie(pid: number): Promise<boolean> {
  const s = await fsp.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (s === null) return true;
  return s.slice(s.lastIndexOf(')') + 2).startsWith('Z');
}

async function waitGone(pid: number, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (alive(pid) && !(await isZombie(pid))) {
    if (Date.now() > until) throw new Error(`process ${pid} did not exit`);
    await sleep(5);
  }
}

export const sleep = (n: number) => new Promise<void>((r) => setTimeout(r, n));

export function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) =>
    execFile(cmd, args, { timeout: 30_000 }, (err, stdout, stderr) => (err ? reject(Object.assign(err, { stderr: String(stderr) })) : resolve({ stdout: String(stdout), stderr: String(stderr) }))),
  );
}

/** Mount points (unescaped) from /proc/self/mountinfo. */
export async function mounts(): Promise<string[]> {
  const info = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  return info
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

export async function isMounted(p: string): Promise<boolean> {
  return (await mounts()).includes(p);
}

/** One control-socket request (the protocol of mount/control.ts); events are ignored. */
export function control(runDir: string, mountpoint: string, cmd: string, timeoutMs = 60_000): Promise<unknown> {
  const sock = path.join(runDir, `${mountId(mountpoint)}.sock`);
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(sock);
    let buf = '';
    let done = false;
    const timer = setTimeout(() => {
      conn.destroy();
      if (!done) reject(new Error(`control ${cmd}: no answer in ${timeoutMs} ms`));
      done = true;
    }, timeoutMs);
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(JSON.stringify({ cmd, args: {} }) + '\n'));
    conn.on('data', (d: string) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buf.slice(0, nl)) as { event?: unknown; ok?: boolean; result?: unknown; error?: { code: string; message: string } };
        buf = buf.slice(nl + 1);
        if ('event' in msg) continue;
        done = true;
        clearTimeout(timer);
        if (msg.ok) resolve(msg.result);
        else reject(Object.assign(new Error(msg.error!.message), { code: msg.error!.code }));
      }
    });
    conn.on('error', (err) => {
      clearTimeout(timer);
      if (!done) reject(err);
      done = true;
    });
    conn.on('close', () => {
      clearTimeout(timer);
      if (!done) reject(new Error(`control ${cmd}: connection closed without an answer`));
      done = true;
    });
  });
}

/** fsck in this process (the same code as `roamfs fsck`). */
export async function fsckRepo(repoDir: string): Promise<FsckReport> {
  const repo = await Repository.open(new PosixBackend(repoDir));
  return fsck(repo);
}

export function openRepo(repoDir: string): Promise<Repository> {
  return Repository.open(new PosixBackend(repoDir));
}

/** Number of object files stored in a repository (reachable or not). */
export async function countObjects(repoDir: string): Promise<number> {
  let n = 0;
  const top = path.join(repoDir, 'objects');
  for (const d of await fsp.readdir(top).catch(() => [] as string[])) n += (await fsp.readdir(path.join(top, d)).catch(() => [] as string[])).length;
  return n;
}

/**
 * A fresh repository with one user imported from a small tree, in its own temp directory
 * (registered for cleanup): files `top`, `docs/a`, `docs/b`, `music/c` (`music/c` 300 KiB).
 */
export async function newHome(homes: Homes, opts: { base?: string; repo?: string; snapshotInterval?: string; idle?: string } = {}): Promise<HomeSpec & { dir: string }> {
  const dir = await fsp.mkdtemp(path.join(opts.base ?? '/tmp', 'roamfs-crashbad-'));
  homes.dirs.push(dir);
  const spec = {
    dir,
    repo: opts.repo ?? path.join(dir, 'repo'),
    user: 'alice',
    mountpoint: path.join(dir, 'home'),
    cache: path.join(dir, 'cache'),
    runDir: path.join(dir, 'run'),
    snapshotInterval: opts.snapshotInterval ?? 'off',
    idle: opts.idle ?? '200ms',
  };
  const src = path.join(dir, 'src');
  await fsp.mkdir(path.join(src, 'docs'), { recursive: true });
  await fsp.mkdir(path.join(src, 'music'));
  await fsp.writeFile(path.join(src, 'top'), 'top\n');
  await fsp.writeFile(path.join(src, 'docs', 'a'), 'a'.repeat(1000));
  await fsp.writeFile(path.join(src, 'docs', 'b'), 'b'.repeat(5000));
  const big = Buffer.alloc(300 << 10);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
  await fsp.writeFile(path.join(src, 'music', 'c'), big);
  await fsp.mkdir(spec.mountpoint);
  await roamfsOk(spec.runDir, ['init', spec.repo]);
  await roamfsOk(spec.runDir, ['import', spec.repo, spec.user, src]);
  return spec;
}

export interface Status {
  pendingSnapshots: number;
  snapshots: number;
  commits: number;
  dirty: boolean;
  repositoryReachable: boolean;
  lastError: { message: string; time: number } | null;
  recoveredSnapshots: number;
}

export async function status(spec: HomeSpec): Promise<Status> {
  return (await control(spec.runDir, spec.mountpoint, 'status')) as Status;
}

/** Poll `cond` every 100 ms until it holds; throws with `what` after timeoutMs. */
export async function waitFor<T>(what: string, f: () => Promise<T>, cond: (v: T) => boolean, timeoutMs = 30_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (cond(v)) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}: last ${JSON.stringify(v)}`);
    await sleep(100);
  }
}
