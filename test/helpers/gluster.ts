/**
 * GlusterFS test harness: a real single-node GlusterFS volume on this machine, for the tests
 * that check roamfs's storage assumptions on a shared file system (test/gluster/).
 *
 *   const g = await startGluster(t);          // in a test: torn down by t.teardown
 *   const get = sharedGluster(test);          // one volume for all tests of a file
 *   g.mount                                   // first FUSE mount of the volume
 *   await g.addMount('desktop-b')             // a second, independent FUSE mount (client process)
 *
 * What it does (nothing is installed here: scripts/setup.sh installs glusterfs-server and
 * glusterfs-client): takes a machine-wide lock (glusterd's management port 24007 is fixed: the
 * brick processes glusterd spawns always fetch their volfile from port 24007, there is no option
 * to change that, so one harness instance runs at a time per machine); starts `glusterd -N` with
 * its working directory, run directory and CLI socket under a fresh temp dir (no systemd, nothing
 * under /var/lib/glusterd); creates and starts a one-brick volume whose brick host is the
 * machine's hostname (glusterd refuses `localhost` bricks); mounts it with the FUSE client
 * (`glusterfs --volfile-server=HOST --volfile-id=VOL DIR`).
 *
 * Teardown (stop(), always, also after a failed test): unmount every mount, stop and delete the
 * volume, stop glusterd, kill whatever process still runs from the temp dir (brick, clients), and
 * remove the temp dir, the brick's log and socket. A process that died without tearing down (a
 * killed ava worker) is cleaned up by the next startGluster, which finds its temp dir; a
 * synchronous best-effort teardown also runs on process exit.
 *
 * Nothing is skipped: when GlusterFS cannot start, startGluster throws with the reason and the
 * tail of the logs, so the test fails and says why.
 *
 * The same module is the worker process of the multi-process tests (`runWorker`): a client that
 * executes file system operations sent as JSON lines, so that races happen between two real
 * processes, each on its own mount.
 */
import type { ExecutionContext, TestFn } from 'ava';
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { constants as C, openSync, closeSync, readFileSync, readdirSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import * as fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import * as dns from 'node:dns/promises';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { systemClock } from '../../src/core/clock.js';
import { Lease, isLeaseError, monotonicClock, type LeasePolicy, type SessionMode } from '../../src/repository/lease.js';
import { PosixBackend } from '../../src/repository/posix.js';

const execFileP = promisify(execFile);
const require = createRequire(import.meta.url);
type FsExt = {
  flock(fd: number, flags: string, cb: (err: NodeJS.ErrnoException | null) => void): void;
  flockSync(fd: number, flags: string): void;
};
const fsExt = require('fs-ext') as FsExt;

const HERE = fileURLToPath(import.meta.url);
/** Prefix of every harness temp dir (stale ones are found by it). */
const DIR_PREFIX = 'roamfs-gluster-';
/** Machine-wide lock: one harness glusterd per machine (port 24007 is fixed). */
const LOCK_FILE = path.join(os.tmpdir(), 'roamfs-gluster.lock');
const GLUSTERD_PORT = 24007;
/** Brick ports glusterd may hand out (it picks from this range). */
const BRICK_PORTS = { base: 49152, max: 49451 };
const BINARIES = ['glusterd', 'gluster', 'glusterfs', 'glusterfsd'];

export interface GlusterTimings {
  /** Waiting for the machine-wide lock (another harness instance running). */
  lockMs: number;
  /** glusterd spawned until its CLI answers. */
  glusterdMs: number;
  /** volume create + start. */
  volumeMs: number;
  /** First FUSE mount until usable. */
  mountMs: number;
  totalMs: number;
}

export interface Gluster {
  /** Host name used for the brick and as volfile server (the machine's hostname). */
  readonly host: string;
  readonly volume: string;
  /** Temp dir holding glusterd's state, the brick, the mounts and the logs. */
  readonly root: string;
  readonly brick: string;
  /** The first FUSE mount of the volume. */
  readonly mount: string;
  /** All current mounts (the first one first). */
  readonly mounts: readonly string[];
  readonly timings: GlusterTimings;
  /** `glusterfs --version` first line. */
  readonly version: string;
  /**
   * Mount the volume again on a new directory: another FUSE client process, as a second desktop
   * would have. Unmounted by stop(). Returns the mountpoint.
   */
  addMount(label?: string): Promise<string>;
  /** Unmount one mount (waits for its client process to exit). */
  unmount(dir: string): Promise<void>;
  /** Run the gluster CLI against this glusterd; resolves with stdout, rejects with its output. */
  cli(...args: string[]): Promise<string>;
  /** The last lines of every log the harness knows of (glusterd, brick, clients, cli). */
  logTail(lines?: number): Promise<string>;
  /** Tear everything down. Idempotent; throws (after doing all it can) if something resisted. */
  stop(): Promise<void>;
}

export interface GlusterOptions {
  /** Volume options to set before the volume starts (`gluster volume set VOL KEY VALUE`). */
  volumeOptions?: Record<string, string>;
  /**
   * Extra arguments for every FUSE client (`glusterfs ... DIR`), e.g. `--entry-timeout=0`,
   * `--attribute-timeout=0`, `--negative-timeout=0`.
   */
  clientArgs?: string[];
  /** FUSE mounts to make at start (default 1): `mounts[0]` (= `mount`), `mounts[1]`, ... */
  mounts?: number;
  /** How long to wait for another harness instance to finish (default 4 min). */
  lockTimeoutMs?: number;
}

class GlusterSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GlusterSetupError';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** pid's command line (NUL-separated args joined by spaces), or null when it is gone. */
function cmdline(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return null;
  }
}

/** Pids of processes whose command line mentions `needle` (a harness temp dir), except us. */
function processesMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    if (pid === process.pid) continue;
    const cl = cmdline(pid);
    if (cl && cl.includes(needle)) out.push(pid);
  }
  return out;
}

/** Mountpoints (from /proc/self/mountinfo) at or under `dir`, deepest first. */
function mountsUnder(dir: string): Array<{ mountpoint: string; fstype: string }> {
  const out: Array<{ mountpoint: string; fstype: string }> = [];
  let text = '';
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 10) continue;
    const mp = f[4]!.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    const sep = f.indexOf('-');
    const fstype = sep > 0 ? f[sep + 1]! : '';
    if (mp === dir || mp.startsWith(dir + '/')) out.push({ mountpoint: mp, fstype });
  }
  return out.sort((a, b) => b.mountpoint.length - a.mountpoint.length);
}

async function kill(pid: number, graceMs: number): Promise<boolean> {
  if (!alive(pid)) return true;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return !alive(pid);
  }
  const until = Date.now() + graceMs;
  while (Date.now() < until) {
    if (!alive(pid) || isZombie(pid)) return true;
    await sleep(50);
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  for (let i = 0; i < 40 && alive(pid) && !isZombie(pid); i++) await sleep(50);
  return !alive(pid) || isZombie(pid);
}

function isZombie(pid: number): boolean {
  try {
    return / Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\)/, ')'));
  } catch {
    return false;
  }
}

async function which(bin: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, bin);
    try {
      await fsp.access(p, C.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host: '0.0.0.0', exclusive: true }, () => s.close(() => resolve(true)));
  });
}

async function tail(file: string, lines: number): Promise<string> {
  try {
    const text = await fsp.readFile(file, 'utf8');
    return text.split('\n').slice(-lines - 1).join('\n');
  } catch {
    return '';
  }
}

/** Hold the machine-wide lock: an flock on LOCK_FILE, polled (released by the kernel if we die). */
async function takeLock(timeoutMs: number): Promise<number> {
  const fd = openSync(LOCK_FILE, C.O_RDWR | C.O_CREAT, 0o600);
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      fsExt.flockSync(fd, 'exnb');
      writeFileSync(fd, `${process.pid}\n`);
      return fd;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EAGAIN' && code !== 'EWOULDBLOCK') {
        closeSync(fd);
        throw err;
      }
    }
    if (Date.now() > until) {
      const holder = readFileSync(LOCK_FILE, 'utf8').trim();
      closeSync(fd);
      throw new GlusterSetupError(`another GlusterFS harness instance (pid ${holder || '?'}) held ${LOCK_FILE} for more than ${timeoutMs} ms`);
    }
    await sleep(200);
  }
}

/**
 * Remove what a dead harness instance left: its mounts, processes and temp dir. Only dirs
 * whose owner process is gone are touched (we hold the lock, so a live owner cannot exist
 * unless it is us).
 */
async function cleanStale(): Promise<string[]> {
  const cleaned: string[] = [];
  const tmp = os.tmpdir();
  for (const name of await fsp.readdir(tmp)) {
    if (!name.startsWith(DIR_PREFIX)) continue;
    const dir = path.join(tmp, name);
    const owner = Number((await fsp.readFile(path.join(dir, 'owner'), 'utf8').catch(() => '0')).trim());
    if (owner && owner !== process.pid && alive(owner)) continue;
    syncTeardown(dir);
    cleaned.push(dir);
  }
  return cleaned;
}

/** Best effort, synchronous (usable in an exit handler): lazy-unmount, kill, remove. */
function syncTeardown(dir: string): void {
  for (const m of mountsUnder(dir)) {
    try {
      execFileSync('umount', ['-l', m.mountpoint], { stdio: 'ignore' });
    } catch {
      /* keep going */
    }
  }
  for (const pid of processesMentioning(dir + '/')) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  // glusterd state names the volume; the brick log lives under /var/log/glusterfs/bricks.
  removeBrickLeftovers(dir);
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    /* a lazily unmounted dir may stay busy a moment */
  }
}

/** glusterd names the brick log after the brick path: /a/b/brick → a-b-brick.log. */
function brickLogPath(brick: string): string {
  return path.join('/var/log/glusterfs/bricks', `${brick.replace(/^\//, '').replace(/\//g, '-')}.log`);
}

function removeBrickLeftovers(dir: string): void {
  try {
    rmSync(brickLogPath(path.join(dir, 'brick')), { force: true });
  } catch {
    /* fine */
  }
  // The brick's socket: /var/run/gluster/<hash>.socket, named in the brick's pid dir marker.
  try {
    const sock = readFileSync(path.join(dir, 'brick-socket'), 'utf8').trim();
    if (sock.startsWith('/var/run/gluster/') || sock.startsWith('/run/gluster/')) rmSync(sock, { force: true });
  } catch {
    /* none */
  }
}

/** Wait until `dir` is a glusterfs FUSE mount answering stat. */
async function waitMounted(dir: string, pidFile: string, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const m = mountsUnder(dir).find((x) => x.mountpoint === dir);
    if (m && m.fstype === 'fuse.glusterfs') {
      try {
        const st = await fsp.statfs(dir);
        if (st.blocks > 0) {
          await fsp.readdir(dir);
          return;
        }
      } catch {
        /* not yet */
      }
    }
    const pid = Number((await fsp.readFile(pidFile, 'utf8').catch(() => '0')).trim());
    if (pid && !alive(pid) && !m) throw new GlusterSetupError(`the glusterfs client for ${dir} exited before the mount was ready`);
    if (Date.now() > until) throw new GlusterSetupError(`the glusterfs mount at ${dir} was not ready after ${timeoutMs} ms`);
    await sleep(50);
  }
}

/**
 * Start glusterd, a one-brick volume and one FUSE mount; see the module comment. With an ava
 * ExecutionContext, stop() is registered as its teardown; otherwise the caller stops it (see
 * sharedGluster).
 */
export async function startGluster(t: ExecutionContext | null, opts: GlusterOptions = {}): Promise<Gluster> {
  const t0 = Date.now();
  if (process.getuid?.() !== 0) throw new GlusterSetupError('GlusterFS tests need root (glusterd, FUSE mounts)');
  const missing: string[] = [];
  for (const b of BINARIES) if (!(await which(b))) missing.push(b);
  if (missing.length) {
    throw new GlusterSetupError(`GlusterFS is not installed: ${missing.join(', ')} not found (scripts/setup.sh installs glusterfs-server and glusterfs-client)`);
  }
  try {
    await fsp.access('/dev/fuse', C.R_OK | C.W_OK);
  } catch {
    throw new GlusterSetupError('/dev/fuse is not usable: the GlusterFS client mounts through FUSE');
  }
  const host = os.hostname();
  const addrs = await dns.lookup(host, { all: true }).catch(() => []);
  const local = new Set(Object.values(os.networkInterfaces()).flatMap((l) => (l ?? []).map((i) => i.address)));
  if (addrs.length === 0 || !addrs.some((a) => local.has(a.address) || a.address.startsWith('127.'))) {
    throw new GlusterSetupError(`the hostname ${host} does not resolve to this machine (${addrs.map((a) => a.address).join(', ') || 'no address'}); glusterd needs the brick host to be local (add it to /etc/hosts)`);
  }

  const lockFd = await takeLock(opts.lockTimeoutMs ?? 240_000);
  const lockMs = Date.now() - t0;
  let g: Instance | undefined;
  try {
    await cleanStale();
    if (!(await portFree(GLUSTERD_PORT))) {
      const pids = (await execFileP('pgrep', ['-x', 'glusterd']).catch(() => ({ stdout: '' }))).stdout.trim().split('\n').filter(Boolean);
      throw new GlusterSetupError(
        `port ${GLUSTERD_PORT} (glusterd management) is already in use${pids.length ? ` by glusterd pid ${pids.join(', ')}` : ''}: a GlusterFS server not started by this harness runs on this machine; stop it first (e.g. systemctl stop glusterd; the brick processes always talk to port ${GLUSTERD_PORT}, so two cannot run side by side)`,
      );
    }
    const root = await fsp.mkdtemp(path.join(os.tmpdir(), DIR_PREFIX));
    await fsp.writeFile(path.join(root, 'owner'), `${process.pid}\n`);
    g = new Instance(root, host, lockFd);
    await g.start(opts, t0, lockMs);
  } catch (err) {
    const logs = g ? await g.logTail(25).catch(() => '') : '';
    await g?.stop().catch(() => {});
    if (!g) closeSync(lockFd);
    const msg = err instanceof Error ? err.message : String(err);
    throw new GlusterSetupError(`GlusterFS could not start: ${msg}${logs ? `\n--- logs ---\n${logs}` : ''}`);
  }
  if (t) t.teardown(() => g!.stop());
  return g;
}

/**
 * One GlusterFS volume shared by all tests of a file: started in test.before (a failure fails
 * every test of the file, with the reason), stopped in test.after.always. Returns a getter.
 */
export function sharedGluster(test: TestFn, opts: GlusterOptions = {}): () => Gluster {
  let g: Gluster | undefined;
  test.serial.before(async (t) => {
    g = await startGluster(null, opts);
    t.log(`GlusterFS ${g.version}: volume ${g.volume} on ${g.host}, started in ${g.timings.totalMs} ms (glusterd ${g.timings.glusterdMs}, volume ${g.timings.volumeMs}, mount ${g.timings.mountMs}, lock wait ${g.timings.lockMs})`);
  });
  test.after.always(async () => {
    await g?.stop();
  });
  return () => {
    if (!g) throw new Error('GlusterFS was not started (see the before hook)');
    return g;
  };
}

const liveInstances = new Set<Instance>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const g of liveInstances) syncTeardown(g.root);
  });
}

class Instance implements Gluster {
  readonly volume: string;
  readonly brick: string;
  readonly mounts: string[] = [];
  version = '';
  timings: GlusterTimings = { lockMs: 0, glusterdMs: 0, volumeMs: 0, mountMs: 0, totalMs: 0 };
  private glusterd: ChildProcess | null = null;
  private volumeCreated = false;
  private stopping: Promise<void> | null = null;
  private mountSeq = 0;
  private readonly clientPids = new Map<string, string>();
  private clientArgs: string[] = [];

  constructor(
    readonly root: string,
    readonly host: string,
    private lockFd: number | null,
  ) {
    this.volume = `roamfs${path.basename(root).slice(DIR_PREFIX.length).replace(/[^A-Za-z0-9]/g, '')}`;
    this.brick = path.join(root, 'brick');
    liveInstances.add(this);
    installExitHook();
  }

  get mount(): string {
    return this.mounts[0]!;
  }

  private p(...parts: string[]): string {
    return path.join(this.root, ...parts);
  }

  async start(opts: GlusterOptions, t0: number, lockMs: number): Promise<void> {
    this.clientArgs = opts.clientArgs ?? [];
    for (const d of ['wd', 'run', 'log', 'brick', 'mnt']) await fsp.mkdir(this.p(d), { recursive: true });
    this.version = (await execFileP('glusterfs', ['--version'])).stdout.split('\n')[0]!.trim();
    // glusterd's volfile: everything under the temp dir, CLI on a unix socket of our own.
    await fsp.writeFile(
      this.p('glusterd.vol'),
      [
        'volume management',
        '    type mgmt/glusterd',
        `    option working-directory ${this.p('wd')}`,
        `    option run-directory ${this.p('run')}`,
        `    option glusterd-sockfile ${this.p('run', 'glusterd.socket')}`,
        '    option transport-type socket',
        '    option transport.socket.bind-address 127.0.0.1',
        `    option transport.socket.listen-port ${GLUSTERD_PORT}`,
        '    option ping-timeout 0',
        '    option event-threads 1',
        `    option base-port ${BRICK_PORTS.base}`,
        `    option max-port ${BRICK_PORTS.max}`,
        'end-volume',
        '',
      ].join('\n'),
    );
    const tg = Date.now();
    const child = spawn('glusterd', ['-N', '-f', this.p('glusterd.vol'), '-p', this.p('run', 'glusterd.pid'), '-l', this.p('log', 'glusterd.log'), '--log-level=INFO'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.glusterd = child;
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    let exited: string | null = null;
    child.once('exit', (code, sig) => (exited = `glusterd exited (${sig ?? code})${stderr ? `: ${stderr.trim()}` : ''}`));
    for (;;) {
      if (exited) throw new GlusterSetupError(exited);
      try {
        await this.cli('volume', 'list');
        break;
      } catch {
        /* not up yet */
      }
      if (Date.now() - tg > 30_000) throw new GlusterSetupError('glusterd did not answer within 30 s');
      await sleep(100);
    }
    const glusterdMs = Date.now() - tg;

    const tv = Date.now();
    await this.cli('volume', 'create', this.volume, `${this.host}:${this.brick}`, 'force');
    this.volumeCreated = true;
    for (const [k, v] of Object.entries(opts.volumeOptions ?? {})) await this.cli('volume', 'set', this.volume, k, v);
    await this.cli('volume', 'start', this.volume);
    // Remember the brick's socket (glusterd puts it under /var/run/gluster) for cleanup.
    const brickPid = await this.brickPid();
    const sock = brickPid ? /-S (\S+)/.exec(cmdline(brickPid) ?? '')?.[1] : undefined;
    if (sock) await fsp.writeFile(this.p('brick-socket'), sock);
    const volumeMs = Date.now() - tv;

    const tm = Date.now();
    await this.addMount('a');
    const mountMs = Date.now() - tm;
    for (let i = 1; i < (opts.mounts ?? 1); i++) await this.addMount(String.fromCharCode(97 + i));
    this.timings = { lockMs, glusterdMs, volumeMs, mountMs, totalMs: Date.now() - t0 };
  }

  private async brickPid(): Promise<number | null> {
    const dir = this.p('run', 'vols', this.volume);
    for (const f of await fsp.readdir(dir).catch(() => [] as string[])) {
      if (!f.endsWith('.pid')) continue;
      const pid = Number((await fsp.readFile(path.join(dir, f), 'utf8').catch(() => '0')).trim());
      if (pid) return pid;
    }
    return null;
  }

  async cli(...args: string[]): Promise<string> {
    try {
      const r = await execFileP('gluster', [`--glusterd-sock=${this.p('run', 'glusterd.socket')}`, '--mode=script', `--log-file=${this.p('log', 'cli.log')}`, ...args], { timeout: 120_000 });
      return r.stdout;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      throw new GlusterSetupError(`gluster ${args.join(' ')} failed: ${(e.stderr || e.stdout || e.message).trim()}`);
    }
  }

  async addMount(label?: string): Promise<string> {
    const name = label ?? `m${++this.mountSeq}`;
    if (!/^[a-z0-9-]+$/i.test(name)) throw new Error(`bad mount label ${name}`);
    const dir = this.p('mnt', name);
    await fsp.mkdir(dir);
    const pidFile = this.p('run', `client-${name}.pid`);
    await execFileP('glusterfs', [`--volfile-server=${this.host}`, `--volfile-id=${this.volume}`, '--process-name', 'fuse', `--log-file=${this.p('log', `client-${name}.log`)}`, '-p', pidFile, ...this.clientArgs, dir]).catch((err) => {
      throw new GlusterSetupError(`glusterfs client for ${dir} failed: ${(err as Error).message}`);
    });
    this.clientPids.set(dir, pidFile);
    this.mounts.push(dir);
    await waitMounted(dir, pidFile, 30_000);
    return dir;
  }

  async unmount(dir: string): Promise<void> {
    const pidFile = this.clientPids.get(dir);
    const pid = pidFile ? Number((await fsp.readFile(pidFile, 'utf8').catch(() => '0')).trim()) : 0;
    let lastErr = '';
    for (let i = 0; i < 20 && mountsUnder(dir).some((m) => m.mountpoint === dir); i++) {
      try {
        await execFileP('umount', [dir]);
      } catch (err) {
        lastErr = (err as { stderr?: string }).stderr?.trim() || (err as Error).message;
        await sleep(100);
      }
    }
    if (mountsUnder(dir).some((m) => m.mountpoint === dir)) {
      await execFileP('umount', ['-l', dir]).catch(() => {});
    }
    if (pid) await kill(pid, 5_000);
    const i = this.mounts.indexOf(dir);
    if (i >= 0) this.mounts.splice(i, 1);
    this.clientPids.delete(dir);
    if (mountsUnder(dir).some((m) => m.mountpoint === dir)) throw new Error(`could not unmount ${dir}: ${lastErr}`);
  }

  async logTail(lines = 20): Promise<string> {
    const files = [this.p('log', 'glusterd.log'), brickLogPath(this.brick), this.p('log', 'cli.log')];
    for (const f of await fsp.readdir(this.p('log')).catch(() => [] as string[])) if (f.startsWith('client-')) files.push(this.p('log', f));
    const parts: string[] = [];
    for (const f of files) {
      const text = await tail(f, lines);
      if (text.trim()) parts.push(`== ${f}\n${text}`);
    }
    return parts.join('\n');
  }

  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const problems: string[] = [];
    for (const m of [...this.mounts].reverse()) await this.unmount(m).catch((e) => problems.push((e as Error).message));
    if (this.volumeCreated && this.glusterd && this.glusterd.exitCode === null) {
      await this.cli('volume', 'stop', this.volume, 'force').catch((e) => problems.push((e as Error).message));
      await this.cli('volume', 'delete', this.volume).catch((e) => problems.push((e as Error).message));
    }
    if (this.glusterd?.pid) {
      const pid = this.glusterd.pid;
      if (!(await kill(pid, 5_000))) problems.push(`glusterd ${pid} did not exit`);
    }
    // Anything else started from our temp dir (a brick the volume stop missed, a client).
    for (const pid of processesMentioning(this.root + '/')) if (!(await kill(pid, 3_000))) problems.push(`process ${pid} (${cmdline(pid)}) did not exit`);
    for (const m of mountsUnder(this.root)) {
      await execFileP('umount', ['-l', m.mountpoint]).catch(() => {});
      problems.push(`${m.mountpoint} was still mounted`);
    }
    removeBrickLeftovers(this.root);
    await fsp.rm(this.root, { recursive: true, force: true }).catch((e) => problems.push(`remove ${this.root}: ${(e as Error).message}`));
    liveInstances.delete(this);
    if (this.lockFd !== null) {
      closeSync(this.lockFd);
      this.lockFd = null;
    }
    if (problems.length) throw new Error(`GlusterFS teardown: ${problems.join('; ')}`);
  }
}

// ---- worker process ----------------------------------------------------------------------

/**
 * A worker: another process operating on a mount, driven by JSON lines on stdin, answering one
 * JSON line per request on stdout (`{id, ok: true, ...}` or `{id, ok: false, code, message}`).
 */
export interface Worker {
  readonly pid: number;
  call<T = Record<string, unknown>>(op: string, args?: Record<string, unknown>): Promise<T>;
  /** Kill -9 (simulates a crashed desktop). */
  crash(): Promise<void>;
  close(): Promise<void>;
}

/** Start a worker process (see runWorker for the operations). Closed at t's teardown. */
export function startWorker(t: ExecutionContext | null): Worker {
  const child = spawn(process.execPath, [HERE, '--gluster-worker'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let seq = 0;
  const waiting = new Map<number, { resolve: (v: never) => void; reject: (e: Error) => void }>();
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const rl = createInterface({ input: child.stdout! });
  rl.on('line', (line) => {
    const msg = JSON.parse(line) as { id: number; ok: boolean; code?: string; message?: string };
    const w = waiting.get(msg.id);
    if (!w) return;
    waiting.delete(msg.id);
    if (msg.ok) w.resolve(msg as never);
    else w.reject(Object.assign(new Error(`worker: ${msg.message}`), { code: msg.code }));
  });
  const gone = new Promise<void>((resolve) =>
    child.once('exit', (code, sig) => {
      for (const w of waiting.values()) w.reject(new Error(`worker exited (${sig ?? code}): ${stderr.trim()}`));
      waiting.clear();
      resolve();
    }),
  );
  const w: Worker = {
    pid: child.pid!,
    call(op, args = {}) {
      const id = ++seq;
      return new Promise((resolve, reject) => {
        if (child.exitCode !== null || child.signalCode !== null) return reject(new Error(`worker is gone: ${stderr.trim()}`));
        waiting.set(id, { resolve: resolve as (v: never) => void, reject });
        child.stdin!.write(JSON.stringify({ id, op, ...args }) + '\n');
      });
    },
    async crash() {
      child.kill('SIGKILL');
      await gone;
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin!.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await gone;
        clearTimeout(timer);
      }
    },
  };
  if (t) t.teardown(() => w.close());
  return w;
}

/** Random-ish bytes of a version: every byte depends on (version, offset), so a torn read shows. */
function versionBytes(version: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  b.writeUInt32LE(version, 0);
  b.writeUInt32LE(size, 4);
  for (let i = 8; i < size; i++) b[i] = (version * 31 + i * 7 + (i >> 8)) & 0xff;
  return b;
}

/** Checks a file read back against versionBytes: the version, or a description of the damage. */
function checkVersion(b: Buffer): { version: number } | { torn: string } {
  if (b.length < 8) return { torn: `short read of ${b.length} bytes` };
  const v = b.readUInt32LE(0);
  const size = b.readUInt32LE(4);
  if (size !== b.length) return { torn: `version ${v}: ${b.length} bytes, expected ${size}` };
  if (!versionBytes(v, size).equals(b)) return { torn: `version ${v}: content differs` };
  return { version: v };
}

type Req = { id: number; op: string } & Record<string, unknown>;

/** errno name of an error; ESTALE (116), which libuv does not name, included. */
function errCode(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  if (e?.errno === -116 || e?.errno === 116 || e?.code === 'Unknown system error -116') return 'ESTALE';
  return e?.code ?? String(err);
}

/** Busy-wait (1 ms sleeps, then spin) until the wall clock reaches `at`; false when already past it. */
async function untilSlot(at: number): Promise<boolean> {
  if (Date.now() > at) return false;
  while (at - Date.now() > 3) await sleep(1);
  while (Date.now() < at) {
    /* spin the last milliseconds */
  }
  return true;
}

/** The worker's lease (one per worker) and what happened to it. */
const workerLease: { lease: Lease | null; lost: string[] } = { lease: null, lost: [] };

/** The worker's operations. Paths are absolute; errors come back with their errno code. */
async function workerOp(r: Req, held: Map<string, fsp.FileHandle>): Promise<Record<string, unknown>> {
  const s = (k: string) => r[k] as string;
  const n = (k: string) => r[k] as number;
  switch (r.op) {
    case 'ping':
      return { pid: process.pid };
    case 'write': {
      // Temp file, fsync, then optionally link or rename into place.
      const h = await fsp.open(s('path'), 'wx', 0o600);
      await h.writeFile(Buffer.from(s('data'), 'utf8'));
      await h.sync();
      await h.close();
      return {};
    }
    case 'link':
      await fsp.link(s('src'), s('dst'));
      return {};
    case 'excl': {
      const h = await fsp.open(s('path'), 'wx', 0o600);
      await h.writeFile(Buffer.from(s('data'), 'utf8'));
      await h.close();
      return {};
    }
    case 'read': {
      // data: as UTF-8 text; b64: the exact bytes (binary content does not survive UTF-8).
      const b = await fsp.readFile(s('path'));
      return { data: b.toString('utf8'), b64: b.toString('base64') };
    }
    case 'unlink':
      await fsp.rm(s('path'), { force: true });
      return {};
    case 'linkRace': {
      // Many rounds, each on its own name: write a temp file with our tag (fsync), then at the
      // round's time slot (startAt + i * slotMs, the same wall clock as the other worker) link it
      // to the round's name.
      const rounds = n('rounds');
      const results: Array<'won' | 'EEXIST' | string> = [];
      let late = 0;
      for (let i = 0; i < rounds; i++) {
        const tmp = path.join(s('tmpDir'), `${s('tag')}-${i}.tmp`);
        const h = await fsp.open(tmp, 'wx', 0o600);
        await h.writeFile(`${s('tag')} ${i}`);
        await h.sync();
        await h.close();
        if (!(await untilSlot(n('startAt') + i * n('slotMs')))) late++;
        try {
          await fsp.link(tmp, path.join(s('dir'), String(i).padStart(12, '0')));
          results.push('won');
        } catch (err) {
          results.push(errCode(err));
        }
        await fsp.unlink(tmp);
      }
      return { results, late };
    }
    case 'exclRace': {
      const rounds = n('rounds');
      const results: string[] = [];
      let late = 0;
      for (let i = 0; i < rounds; i++) {
        if (!(await untilSlot(n('startAt') + i * n('slotMs')))) late++;
        try {
          const h = await fsp.open(path.join(s('dir'), `f${i}`), C.O_WRONLY | C.O_CREAT | C.O_EXCL, 0o600);
          await h.writeFile(`${s('tag')} ${i}`);
          await h.close();
          results.push('won');
        } catch (err) {
          results.push(errCode(err));
        }
      }
      return { results, late };
    }
    case 'renameWriter': {
      // Replace `target` `versions` times: temp + fsync + rename, as writeState does. With
      // `spanMs`, the replacements are spread over at least that long (a version every
      // spanMs/versions ms), so readers elsewhere get to see several of them through their caches.
      const size = n('size');
      const gapMs = r['spanMs'] === undefined ? 0 : n('spanMs') / n('versions');
      const t0 = Date.now();
      let done = 0;
      for (let v = n('first'); v < n('first') + n('versions'); v++) {
        const due = t0 + done * gapMs;
        if (Date.now() < due) await new Promise((res) => setTimeout(res, due - Date.now()));
        const tmp = path.join(s('tmpDir'), `w-${v}.tmp`);
        const h = await fsp.open(tmp, 'wx', 0o600);
        await h.writeFile(versionBytes(v, size));
        await h.sync();
        await h.close();
        await fsp.rename(tmp, s('target'));
        done++;
      }
      return { done };
    }
    case 'renameReader': {
      // Read `target` in a loop until `untilFile` exists; classify every read.
      let reads = 0;
      const torn: string[] = [];
      const errors: Record<string, number> = {};
      let lastVersion = -1;
      let backwards = 0;
      const versions = new Set<number>();
      for (;;) {
        try {
          const b = await fsp.readFile(s('target'));
          reads++;
          const c = checkVersion(b);
          if ('torn' in c) torn.push(c.torn);
          else {
            versions.add(c.version);
            if (c.version < lastVersion) backwards++;
            lastVersion = c.version;
          }
        } catch (err) {
          const code = errCode(err);
          errors[code] = (errors[code] ?? 0) + 1;
        }
        if (reads % 16 === 0 && existsSync(s('untilFile'))) break;
      }
      return { reads, torn: torn.slice(0, 10), tornCount: torn.length, errors, distinctVersions: versions.size, backwards };
    }
    case 'flock': {
      const h = await fsp.open(s('path'), C.O_RDWR | C.O_CREAT, 0o600);
      try {
        await new Promise<void>((resolve, reject) => fsExt.flock(h.fd, s('how'), (err) => (err ? reject(err) : resolve())));
      } catch (err) {
        await h.close();
        throw err;
      }
      held.set(s('path'), h);
      return {};
    }
    case 'funlock': {
      const h = held.get(s('path'));
      if (h) {
        held.delete(s('path'));
        await h.close();
      }
      return {};
    }
    case 'fsync': {
      // fsync a file and its directory; returns how long each took.
      const t0 = performance.now();
      const h = await fsp.open(s('path'), 'w', 0o600);
      await h.writeFile(Buffer.alloc(n('size')));
      const t1 = performance.now();
      await h.sync();
      const t2 = performance.now();
      await h.close();
      const d = await fsp.open(path.dirname(s('path')), C.O_RDONLY | C.O_DIRECTORY);
      await d.sync();
      await d.close();
      return { writeMs: t1 - t0, fsyncMs: t2 - t1, dirFsyncMs: performance.now() - t2 };
    }
    case 'mtimeOfNew': {
      // Create a file and report its mtime as stored, with our clock around it.
      const before = Date.now();
      const h = await fsp.open(s('path'), 'wx', 0o600);
      await h.close();
      const st = await fsp.stat(s('path'));
      return { before, after: Date.now(), mtimeMs: st.mtimeMs };
    }
    case 'leaseAcquire': {
      // Acquire a lease on a repository through this worker's mount and start its heartbeats.
      const t0 = Date.now();
      const lease = await Lease.acquire({
        backend: new PosixBackend(s('repo')),
        user: s('user'),
        host: s('host'),
        pid: process.pid,
        session: s('session'),
        clock: r.clock === 'system' ? systemClock : monotonicClock,
        mode: (r.mode as SessionMode | undefined) ?? 'rw',
        config: { policy: s('policy') as LeasePolicy, ttlMs: n('ttlMs'), waitMs: n('waitMs'), ...(r.pollMs ? { pollMs: n('pollMs') } : {}) },
        onLost: (e) => workerLease.lost.push(e.message),
      }).catch((err: Error) => {
        throw Object.assign(new Error(err.message), { code: isLeaseError(err) ? `LEASE_${err.reason.toUpperCase()}` : 'ERR' });
      });
      lease.start();
      workerLease.lease = lease;
      return { generation: lease.generation, waitedMs: Date.now() - t0 };
    }
    case 'leaseStatus': {
      const st = workerLease.lease?.status();
      return { status: st ? { ...st, others: st.others.map((h) => ({ host: h.host, mode: h.mode, generation: h.generation, unchangedMs: h.unchangedMs })) } : null, lost: workerLease.lost, heldLocally: workerLease.lease?.heldLocally() ?? false };
    }
    case 'leaseAssertHeld':
      await workerLease.lease!.assertHeld().catch((err: Error) => {
        throw Object.assign(new Error(err.message), { code: isLeaseError(err) ? `LEASE_${err.reason.toUpperCase()}` : 'ERR' });
      });
      return {};
    case 'leaseRelease':
      await workerLease.lease?.release();
      return {};
    default:
      throw new Error(`unknown op ${r.op}`);
  }
}

/** Worker main loop (this file run as `node gluster.js --gluster-worker`). */
async function runWorker(): Promise<void> {
  const held = new Map<string, fsp.FileHandle>();
  const rl = createInterface({ input: process.stdin });
  const pending: Promise<void>[] = [];
  for await (const line of rl) {
    const r = JSON.parse(line) as Req;
    pending.push(
      workerOp(r, held).then(
        (res) => void process.stdout.write(JSON.stringify({ id: r.id, ok: true, ...res }) + '\n'),
        (err: NodeJS.ErrnoException) => void process.stdout.write(JSON.stringify({ id: r.id, ok: false, code: errCode(err), message: err.message }) + '\n'),
      ),
    );
  }
  await Promise.all(pending);
  for (const h of held.values()) await h.close();
}

export { versionBytes, checkVersion };

if (process.argv[1] && path.resolve(process.argv[1]) === HERE && process.argv[2] === '--gluster-worker') {
  await runWorker();
}
