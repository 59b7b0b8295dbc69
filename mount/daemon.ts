import * as fsp from 'node:fs/promises';
import { constants as C } from 'node:fs';
import * as path from 'node:path';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import pino from 'pino';
import { RoamfsError, errnoCode } from '../src/core/errors.js';
import { systemClock } from '../src/core/clock.js';
import { errorFields, type Logger } from '../src/core/log.js';
import { PosixBackend } from '../src/repository/posix.js';
import { defaultIoMode } from '../src/core/io-mode.js';
import { Repository } from '../src/repository/repository.js';
import { Profile, type ProfileConfig } from '../src/profile.js';
import { monotonicClock } from '../src/repository/lease.js';
import { readOnlyVfs } from '../src/vfs/read-only.js';
import { mountFuse, OpCounters, type FuseMount } from './fuse/mount.js';
import { serveControl, type MountRecord } from './control.js';
import { mountAt } from './mountinfo.js';
import { DaemonMetrics } from './metrics.js';
import type { LogLevel } from './config.js';

const require = createRequire(import.meta.url);
const fsExt = require('fs-ext') as { flock(fd: number, flags: string, cb: (err: NodeJS.ErrnoException | null) => void): void };

export interface DaemonArgs {
  repo: string;
  user: string;
  mountpoint: string;
  cache: string;
  uid: number;
  gid: number;
  /** Log to stderr (foreground) instead of CACHE/roamfs.log. */
  logToStderr: boolean;
  /** Trace logging: one line per FUSE operation (overrides logLevel). */
  debug: boolean;
  /** Default info. */
  logLevel?: LogLevel;
  profile: Partial<ProfileConfig>;
  /** Serve Prometheus metrics over HTTP (port null: only through the control socket). */
  metrics?: { port: number | null; address: string };
}

/** Checks made before anything is mounted: each failure is one clear line. */
async function checkMountpoint(mp: string): Promise<void> {
  let st;
  try {
    st = await fsp.stat(mp);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') throw new RoamfsError('NOT_FOUND', `mountpoint ${mp} does not exist`);
    if (errnoCode(err) === 'ENOTCONN') throw new RoamfsError('INVALID_ARGUMENT', `mountpoint ${mp} is a dead FUSE mount; clean it up with: fusermount -u -z ${mp}`);
    throw err;
  }
  if (!st.isDirectory()) throw new RoamfsError('INVALID_ARGUMENT', `mountpoint ${mp} is not a directory`);
  const m = await mountAt(mp);
  if (m) throw new RoamfsError('INVALID_ARGUMENT', `mountpoint ${mp} is busy: ${m.source} (${m.fstype}) is mounted there`);
  if ((await fsp.readdir(mp)).length > 0) throw new RoamfsError('INVALID_ARGUMENT', `mountpoint ${mp} is not empty; roamfs mounts on an empty directory`);
}

/** This boot of this machine (/proc/sys/kernel/random/boot_id): a dead lease holder here is taken over at once. */
async function bootId(): Promise<string | null> {
  return (await fsp.readFile('/proc/sys/kernel/random/boot_id', 'utf8').catch(() => '')).trim() || null;
}

function isProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) === 'EPERM';
  }
}

/** One daemon per cache directory: an exclusive flock, released by the kernel if we die. */
async function lockCache(cache: string): Promise<fsp.FileHandle> {
  await fsp.mkdir(cache, { recursive: true, mode: 0o700 });
  const h = await fsp.open(path.join(cache, 'lock'), C.O_RDWR | C.O_CREAT, 0o600);
  try {
    await new Promise<void>((resolve, reject) => fsExt.flock(h.fd, 'exnb', (err) => (err ? reject(err) : resolve())));
  } catch (err) {
    await h.close();
    const code = errnoCode(err);
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
      const pid = (await fsp.readFile(path.join(cache, 'lock'), 'utf8').catch(() => '')).trim();
      throw new RoamfsError('INVALID_ARGUMENT', `cache ${cache} is in use by another roamfs daemon${pid ? ` (pid ${pid})` : ''}`);
    }
    throw err;
  }
  await h.truncate(0);
  await h.write(`${process.pid}\n`, 0);
  return h;
}

function makeLogger(a: DaemonArgs): pino.Logger {
  const dest = a.logToStderr ? pino.destination({ fd: 2, sync: true }) : pino.destination({ dest: path.join(a.cache, 'roamfs.log'), sync: true, mkdir: true });
  // The log lives on the cache disk. When that is full, pino's synchronous destination throws
  // ENOSPC out of every log call - a snapshot that had become durable was then reported failed
  // and its commit never scheduled. Logging must never fail an operation: the destination keeps
  // what it could not write and writes it once there is space again.
  const safe = {
    write(line: string) {
      try {
        dest.write(line);
      } catch {
        // kept in the destination's buffer; written by a later call
      }
    },
  };
  return pino({ level: a.debug ? 'trace' : (a.logLevel ?? 'info'), base: { user: a.user, mountpoint: a.mountpoint, pid: process.pid } }, safe);
}

export interface Daemon {
  /** Resolves with the process exit code once the daemon has shut down. */
  done: Promise<number>;
}

/**
 * Serve one profile: checks, lock, recovery, FUSE mount, control socket; then wait for a
 * logout (control socket), SIGTERM/SIGINT, or an external umount, and shut down in order:
 * flush while still mounted, unmount, flush what arrived meanwhile, close. `ready` is called
 * once with null when the home is usable, or with the error that stopped it.
 */
export async function startDaemon(a: DaemonArgs, ready: (err: Error | null) => void): Promise<Daemon> {
  let lock: fsp.FileHandle | undefined;
  let profile: Profile | undefined;
  let fuse: FuseMount | undefined;
  let log: Logger;
  let metrics: DaemonMetrics | undefined;
  let metricsServer: { url: string | null; close(): Promise<void> } | null = null;
  try {
    await checkMountpoint(a.mountpoint);
    lock = await lockCache(a.cache);
    const plog = makeLogger(a);
    log = plog as unknown as Logger;
    // Synchronous object I/O only where the backend allows it (a local file system in barrier
    // mode, never NFS or GlusterFS), and with IoMode's back-off when a call is slow.
    const remote = await Repository.open(new PosixBackend(a.repo, { syncIo: defaultIoMode() }));
    const session = randomBytes(8).toString('hex');
    let statusOf: (() => ReturnType<Profile['status']>) | null = null;
    const m = new DaemonMetrics({ user: a.user, mountpoint: a.mountpoint }, () => statusOf!(), a.profile.quota);
    metrics = m;
    let invalidate: ((paths: string[]) => void) | null = null;
    profile = await Profile.open({
      remote,
      user: a.user,
      cacheDir: a.cache,
      clock: systemClock,
      log,
      host: hostname(),
      session,
      uid: a.uid,
      gid: a.gid,
      config: a.profile,
      observers: m.observers(),
      pid: process.pid,
      leaseClock: monotonicClock,
      bootId: await bootId(),
      isProcessAlive,
      onRemoteChange: (paths) => invalidate?.(paths),
    });
    const p = profile;
    statusOf = () => p.status();
    const fuseLog = plog.child({ component: 'fuse' });
    // --debug (level trace): one line per operation with its path, duration and result.
    const trace = fuseLog.isLevelEnabled('trace');
    fuse = await mountFuse(a.mountpoint, a.profile.readOnly ? readOnlyVfs(profile.vfs) : profile.vfs, {
      userXattrsOnly: true, // OverlayVfs: user.* only (setxattr of another namespace is ENOTSUP)
      ...(a.profile.readOnly ? { extraOptions: ['ro'] } : {}),
      onActivity: (_op, phase) => p.noteActivity(phase),
      log: (line: string, err?: unknown) => fuseLog.error(err ? errorFields(err) : {}, line),
      counters: new OpCounters(),
      onOpEnd: (op, path, ns, result) => {
        m.fuseOp(op, ns, result);
        if (trace) fuseLog.trace({ op, path, us: Number(ns / 1000n), result }, 'op');
      },
    });
    const mounted = fuse;
    // Another desktop's changes picked up: drop what the kernel caches for them (entries and
    // attributes expire after 1 s anyway; page caches are checked against mtime/size at open).
    invalidate = (paths) => {
      const tops = new Set(paths.map((x) => x.split('/')[0]!));
      for (const top of tops) void mounted.invalidate(`/${top}`).catch((err) => fuseLog.debug(errorFields(err), 'kernel cache invalidation failed'));
    };
    log.info({ base: profile.vfs.baseCommitId, recovered: profile.recoveredSnapshots, exclude: a.profile.exclude?.length ?? 0, quota: a.profile.quota }, 'mounted');
    if (a.metrics?.port) metricsServer = await m.serve(a.metrics.address, a.metrics.port, log.child({ component: 'metrics' }));
  } catch (err) {
    await metricsServer?.close().catch(() => {});
    await fuse?.unmount().catch(() => {});
    await profile?.close().catch(() => {});
    await lock?.close().catch(() => {});
    // The CLI prints only the message it gets back: keep the operator's hint (what to do) in it.
    const e = err as Error;
    ready(e instanceof RoamfsError && e.hint ? new RoamfsError(e.code, `${e.message} (${e.hint})`, { cause: e }) : e);
    return { done: Promise.resolve(1) };
  }

  const p = profile;
  const f = fuse;
  const met = metrics!;
  const rec: MountRecord = { mountpoint: f.mountpoint, user: a.user, repo: path.resolve(a.repo), cache: path.resolve(a.cache), pid: process.pid, started: Date.now() };
  let shutdown: Promise<number> | null = null;
  let emit: ((e: unknown) => void) | null = null;
  let unmountPoll: NodeJS.Timeout | null = null;
  let finished!: (code: number) => void;
  // Done once shut down and the answer to a logout request has been written.
  const done = new Promise<number>((resolve) => (finished = resolve)).then(async (code) => {
    await control.close().catch(() => {});
    await metricsServer?.close().catch(() => {});
    return code;
  });

  const stop = (why: string, alreadyUnmounted: boolean): Promise<number> => {
    shutdown ??= (async () => {
      log.info({ why }, 'shutting down');
      if (unmountPoll) clearInterval(unmountPoll);
      const progress = (bytes: number) => emit?.({ phase: 'upload', bytes });
      let result = { ok: true, pending: 0 } as { ok: boolean; pending: number; error?: string };
      if (!alreadyUnmounted) {
        // Flush while the home is still usable (the logout is the slow part), then unmount.
        emit?.({ phase: 'flush', pending: p.status().pendingSnapshots, dirty: p.status().dirty });
        result = await p.flush(progress);
        emit?.({ phase: 'unmount' });
        await f.unmount().catch((err) => log.error(errorFields(err), 'unmount failed'));
      }
      // Whatever landed before the unmount completed goes into a last snapshot. If the flush
      // already gave up on the repository, one more attempt only (not another flush timeout).
      result = await p.close(progress, result.ok ? undefined : 0);
      await lock!.close().catch(() => {});
      log.info({ ...result }, result.ok ? 'logged out: everything is in the repository' : 'logged out with changes kept in the local log');
      const code = result.ok ? 0 : 3;
      finished(code);
      return code;
    })();
    return shutdown;
  };

  const control = await serveControl(rec, {
    status: async () => ({ ...rec, ...p.status(), fuse: f.counters?.snapshot(), metricsUrl: metricsServer?.url ?? null }),
    metrics: async () => met.text(),
    snapshot: async () => ({ seq: await p.snapshotNow() }),
    logout: async (_args, e) => {
      emit = e;
      const code = await stop('logout', false);
      const st = p.status();
      if (code !== 0) {
        throw new RoamfsError('REPOSITORY_UNAVAILABLE', `the repository could not be reached: ${st.pendingSnapshots} snapshot(s) stay in the local log at ${a.cache} and will be committed at the next login on this machine (${st.lastError?.message ?? ''})`);
      }
      return { committed: st.lastCommit };
    },
  });

  process.once('SIGTERM', () => void stop('SIGTERM', false));
  process.once('SIGINT', () => void stop('SIGINT', false));
  // An external `umount`/`fusermount -u` ends the FUSE session without telling us: watch for it.
  unmountPoll = setInterval(() => {
    void mountAt(f.mountpoint).then((m) => {
      if (!m && !shutdown) void stop('unmounted externally', true);
    });
  }, 1000);
  ready(null);
  return { done };
}
