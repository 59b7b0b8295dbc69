/**
 * The systems compared: how each one makes a home usable ("login"), what it read from the
 * repository, and how it is torn down. Every mount and daemon is registered with the cleanup
 * registry the moment it exists.
 */
import * as path from 'node:path';
import { openSync, closeSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { type ProcIo, isMountPoint, mountsUnder, procIo, sleep } from '../lib/bench-util.js';
import {
  type Config,
  type RoamfsStatus,
  cleanup,
  alive,
  killPid,
  log,
  roamfs,
  roamfsControl,
  roamfsStatus,
  sh,
  shIo,
  startDaemonProcess,
  unmountTracked,
  waitExit,
  waitFor,
} from './core.js';

export type SystemName = 'native' | 'overlayfs' | 'fuse-overlayfs' | 'rclone' | 'cp -a' | 'rsync -a' | 'roamfs';

export interface Home {
  system: SystemName;
  /** The usable home directory. */
  home: string;
  /** The FUSE daemon, when there is one. */
  pid: number | null;
  /** I/O counters of the copy that made the home (cp -a / rsync -a). */
  copyIo?: ProcIo;
  /** /proc/<pid>/io of the daemon now (null: no daemon). */
  daemonIo(): Promise<ProcIo | null>;
  status?(): Promise<RoamfsStatus>;
  /** Unmount / log out (not timed by callers unless they want to). */
  close(): Promise<void>;
  /** roamfs: the logout made a commit (the profile changed). */
  committed?: boolean;
}

export interface LoginSpec {
  /** The plain profile directory (read-only use: lower dir, copy source, rclone remote). */
  profile: string;
  /** A directory owned by this login (mountpoint, upper/work dirs, caches); created here. */
  scratch: string;
  /** rclone remote when it must be writable (default: profile). */
  rcloneRemote?: string;
  roamfs?: { repo: string; user: string; args?: string[] };
}

async function mountpoint(scratch: string): Promise<string> {
  const mp = path.join(scratch, 'home');
  await mkdir(mp, { recursive: true });
  return mp;
}

function mountedOrDead(mp: string, pid: number, what: string) {
  return waitFor(
    `${what} to mount ${mp}`,
    async () => {
      if (await isMountPoint(mp)) return true;
      if (!alive(pid)) throw new Error(`${what} exited before mounting ${mp} (see ${path.join(path.dirname(mp), 'daemon.log')})`);
      return false;
    },
    120_000,
    5,
  );
}

/** Stop a FUSE daemon started in the foreground: fusermount -u, then wait for it (kill if stuck). */
async function stopFuseDaemon(mp: string, pid: number, waitMs: number): Promise<void> {
  // fusermount -u can fail with EBUSY for a moment after the last user of the mount exited:
  // retry, then detach lazily rather than wait for a daemon that was never asked to stop.
  let lastErr: unknown = null;
  for (let i = 0; i < 20 && (await isMountPoint(mp)); i++) {
    try {
      await sh('fusermount', ['-u', mp], { timeoutMs: 60_000, duringCleanup: true });
      lastErr = null;
    } catch (e) {
      lastErr = e;
      await sleep(500);
    }
  }
  if (lastErr && (await isMountPoint(mp))) {
    log(`fusermount -u ${mp} kept failing (${(lastErr as Error).message}); lazy unmount`);
    await sh('fusermount', ['-u', '-z', mp], { timeoutMs: 60_000, duringCleanup: true }).catch(() => {});
  }
  if (!(await waitExit(pid, waitMs))) await killPid(pid);
  await unmountTracked(mp, 'fuse');
  cleanup.untrackPid(pid);
}

/**
 * Make the home usable with `system`; resolves when the mount is up or the copy is complete
 * (the caller times this plus its own `ls -la`).
 */
export async function login(cfg: Config, system: SystemName, s: LoginSpec): Promise<Home> {
  await mkdir(s.scratch, { recursive: true });
  const none = async () => null;
  switch (system) {
    case 'native':
      return { system, home: s.profile, pid: null, daemonIo: none, close: async () => {} };

    case 'overlayfs': {
      const mp = await mountpoint(s.scratch);
      const upper = path.join(s.scratch, 'upper');
      const work = path.join(s.scratch, 'work');
      await mkdir(upper);
      await mkdir(work);
      cleanup.trackMount(mp, 'kernel');
      await sh('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${s.profile},upperdir=${upper},workdir=${work}`, mp]);
      return { system, home: mp, pid: null, daemonIo: none, close: () => unmountTracked(mp, 'kernel') };
    }

    case 'fuse-overlayfs': {
      const mp = await mountpoint(s.scratch);
      const upper = path.join(s.scratch, 'upper');
      const work = path.join(s.scratch, 'work');
      await mkdir(upper);
      await mkdir(work);
      const fd = openSync(path.join(s.scratch, 'daemon.log'), 'a');
      const p = startDaemonProcess('fuse-overlayfs', ['-f', '-o', `lowerdir=${s.profile},upperdir=${upper},workdir=${work}`, mp], fd);
      closeSync(fd);
      cleanup.trackMount(mp, 'fuse', p.pid!);
      await mountedOrDead(mp, p.pid!, 'fuse-overlayfs');
      return { system, home: mp, pid: p.pid!, daemonIo: () => procIo(p.pid!), close: () => stopFuseDaemon(mp, p.pid!, 30_000) };
    }

    case 'rclone': {
      const mp = await mountpoint(s.scratch);
      const fd = openSync(path.join(s.scratch, 'daemon.log'), 'a');
      const remote = s.rcloneRemote ?? s.profile;
      const p = startDaemonProcess(
        'rclone',
        ['mount', `:local:${remote}`, mp, '--vfs-cache-mode', 'full', '--allow-other', '--cache-dir', path.join(s.scratch, 'rclone-cache'), '--config', '/dev/null', '--log-level', 'ERROR'],
        fd,
      );
      closeSync(fd);
      cleanup.trackMount(mp, 'fuse', p.pid!);
      await mountedOrDead(mp, p.pid!, 'rclone');
      // rclone finishes pending uploads before it exits after the unmount.
      return { system, home: mp, pid: p.pid!, daemonIo: () => procIo(p.pid!), close: () => stopFuseDaemon(mp, p.pid!, 10 * 60_000) };
    }

    case 'cp -a':
    case 'rsync -a': {
      const home = path.join(s.scratch, 'home');
      const io = system === 'cp -a' ? await shIo('cp', ['-a', s.profile, home]) : await shIo('rsync', ['-a', `${s.profile}/`, `${home}/`]);
      return { system, home, pid: null, copyIo: io, daemonIo: none, close: async () => {} };
    }

    case 'roamfs': {
      if (!s.roamfs) throw new Error('roamfs login needs a repository and a user');
      const mp = await mountpoint(s.scratch);
      const cache = path.join(s.scratch, 'cache');
      cleanup.trackMount(mp, 'roamfs', undefined, path.join(cache, 'lock'));
      await roamfs(cfg, ['mount', s.roamfs.repo, s.roamfs.user, mp, '--cache', cache, ...(s.roamfs.args ?? [])], { timeoutMs: 10 * 60_000 });
      const st = await roamfsStatus(cfg, mp);
      const pid = st.pid;
      cleanup.trackMount(mp, 'roamfs', pid);
      const h: Home = {
        system,
        home: mp,
        pid,
        daemonIo: () => procIo(pid),
        status: () => roamfsStatus(cfg, mp),
        close: async () => {
          try {
            // What `roamfs logout` sends, over the control socket (no CLI start-up: untimed use).
            const r = (await roamfsControl(mp, 'logout')) as { committed: { id: string } | null };
            h.committed = r.committed !== null;
          } finally {
            if (!(await waitExit(pid, 30_000))) await killPid(pid);
            await unmountTracked(mp, 'roamfs');
          }
        },
      };
      return h;
    }
  }
}

/** Remove a scratch directory (after its mounts are gone). */
export async function removeScratch(dir: string): Promise<void> {
  const m = await mountsUnder(path.resolve(dir));
  if (m.length) throw new Error(`refusing to delete ${dir}: ${m.join(', ')} still mounted`);
  await rm(dir, { recursive: true, force: true, maxRetries: 3 });
}

/** Repository bytes a login read. See docs/benchmarks.md for what each number means. */
export function bytesNote(system: SystemName): string {
  switch (system) {
    case 'native':
    case 'overlayfs':
      return 'rchar of ls + cat';
    case 'fuse-overlayfs':
    case 'rclone':
      return 'rchar of the daemon (incl. FUSE requests)';
    case 'cp -a':
      return 'rchar of cp';
    case 'rsync -a':
      return 'read_bytes of rsync (disk)';
    case 'roamfs':
      return 'status remoteBytesRead';
  }
}
