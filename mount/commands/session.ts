import { spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { RoamfsError } from '../../src/core/errors.js';
import { assertUserName } from '../../src/core/names.js';
import { formatDuration, parseDuration } from '../../src/core/units.js';
import { startDaemon } from '../daemon.js';
import { control, listMounts, type MountRecord } from '../control.js';
import { formatBytes, progressBar } from '../progress.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const DAEMON_MAIN = path.join(here, '..', 'daemon-main.js');

interface MountOpts {
  cache?: string;
  foreground?: boolean;
  uid?: string;
  gid?: string;
  snapshotInterval: string;
  idle: string;
  maxLag: string;
  prefetchDelay: string;
  debug?: boolean;
}

function int(v: string | undefined, what: string): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v)) throw new RoamfsError('INVALID_ARGUMENT', `${what} must be a number: ${v}`);
  return Number(v);
}

export function registerSessionCommands(program: Command): void {
  program
    .command('mount')
    .description("mount USER's profile from REPO at MOUNTPOINT; returns when the home is ready, leaving the daemon running")
    .argument('<repo>', 'repository directory')
    .argument('<user>', 'user name')
    .argument('<mountpoint>', 'an empty directory (e.g. /home/USER)')
    .option('--cache <dir>', 'local cache, change log and written files (default /var/cache/roamfs/USER)')
    .option('--foreground', 'stay attached and log to stderr (for systemd)')
    .option('--uid <n>', 'owner shown for the profile owner\'s files (default: owner of MOUNTPOINT)')
    .option('--gid <n>', 'group shown for the profile owner\'s files (default: group of MOUNTPOINT)')
    .option('--snapshot-interval <duration>', 'snapshot every DURATION when something changed (500ms, 30s, 5m, off)', '60s')
    .option('--idle <duration>', 'commit after this long without file system activity', '10s')
    .option('--max-lag <duration>', 'commit before the oldest unshipped snapshot is this old', '5m')
    .option('--prefetch-delay <duration>', 'after DURATION, fetch the rest of the profile in the background (off: only on demand)', '30s')
    .option('--debug', 'debug logging')
    .action(async (repo: string, user: string, mountpoint: string, o: MountOpts) => {
      assertUserName(user);
      const mp = path.resolve(mountpoint);
      const cache = path.resolve(o.cache ?? path.join('/var/cache/roamfs', user));
      const snap = parseDuration(o.snapshotInterval, '--snapshot-interval', true);
      const idle = parseDuration(o.idle, '--idle')!;
      const maxLag = parseDuration(o.maxLag, '--max-lag')!;
      const prefetchDelay = parseDuration(o.prefetchDelay, '--prefetch-delay', true);
      let uid = int(o.uid, '--uid');
      let gid = int(o.gid, '--gid');
      if (uid === undefined || gid === undefined) {
        const st = await fsp.stat(mp).catch(() => null);
        uid ??= st?.uid ?? 0;
        gid ??= st?.gid ?? 0;
      }
      if (o.foreground) {
        const d = await startDaemon(
          { repo, user, mountpoint: mp, cache, uid, gid, logToStderr: true, debug: !!o.debug, profile: { snapshotIntervalMs: snap, prefetchDelayMs: prefetchDelay, commit: { idleMs: idle, maxLagMs: maxLag, retryBaseMs: 1000, retryMaxMs: 60_000 } } },
          (err) => {
            if (err) throw err;
            console.error(`roamfs: ${user}'s profile is mounted at ${mp} (stop with: roamfs logout ${mp})`);
          },
        );
        process.exitCode = await d.done;
        return;
      }
      await fsp.mkdir(cache, { recursive: true, mode: 0o700 });
      const errPath = path.join(cache, 'daemon.stderr');
      const errFd = openSync(errPath, 'a', 0o600);
      const args = [DAEMON_MAIN, '--user', user, '--repo', path.resolve(repo), '--cache', cache, '--uid', String(uid), '--gid', String(gid)];
      args.push('--snapshot-interval-ms', snap === null ? 'off' : String(snap), '--idle-ms', String(idle), '--max-lag-ms', String(maxLag));
      args.push('--prefetch-delay-ms', prefetchDelay === null ? 'off' : String(prefetchDelay));
      if (o.debug) args.push('--debug');
      args.push(mp);
      const child = spawn(process.execPath, args, {
        detached: true,
        stdio: ['ignore', 'ignore', errFd, 'pipe'],
        env: { ...process.env, ROAMFS_READY_FD: '3' },
      });
      closeSync(errFd);
      const answer = await new Promise<{ ready?: boolean; error?: string; code?: string; pid?: number }>((resolve) => {
        let buf = '';
        const pipe = child.stdio[3] as NodeJS.ReadableStream;
        pipe.setEncoding('utf8');
        pipe.on('data', (d: string) => (buf += d));
        pipe.on('end', () => {
          try {
            resolve(JSON.parse(buf.trim().split('\n')[0] ?? ''));
          } catch {
            resolve({ error: `the daemon exited before the mount was ready (see ${errPath})` });
          }
        });
      });
      if (!answer.ready) {
        throw new RoamfsError('INVALID_ARGUMENT', answer.error ?? 'mount failed');
      }
      child.unref();
      console.log(`${user}'s profile is mounted at ${mp} (daemon pid ${child.pid}; log ${path.join(cache, 'roamfs.log')}; log out with: roamfs logout ${mp})`);
    });

  program
    .command('logout')
    .description('final snapshot, commit everything, unmount; exit 0 only when everything is in the repository')
    .argument('<mountpoint>', 'the mounted home')
    .action(async (mountpoint: string) => {
      const bar = progressBar('logout', 'bytes');
      let started = false;
      try {
        const r = (await control(mountpoint, 'logout', {}, (e) => {
          const ev = e as { phase: string; bytes?: number };
          if (ev.phase === 'upload') {
            if (!started) bar.start(0);
            started = true;
            bar.update(ev.bytes ?? 0, ev.bytes ?? 0);
          }
        })) as { committed: { id: string } | null };
        bar.stop();
        console.log(`logged out of ${path.resolve(mountpoint)}: everything is in the repository${r.committed ? ` (last commit ${r.committed.id.slice(0, 12)})` : ''}`);
      } finally {
        bar.stop();
      }
    });

  program
    .command('snapshot')
    .description('take a snapshot of a mounted home now')
    .argument('<mountpoint>', 'the mounted home')
    .action(async (mountpoint: string) => {
      const r = (await control(mountpoint, 'snapshot')) as { seq: number | null };
      console.log(r.seq === null ? 'nothing changed since the last snapshot' : `snapshot ${r.seq} is durable`);
    });

  program
    .command('status')
    .description('state of the mounted homes on this machine (all, or one)')
    .argument('[mountpoint]', 'one mounted home')
    .option('--json', 'machine-readable output')
    .action(async (mountpoint: string | undefined, o: { json?: boolean }) => {
      const recs: Array<Pick<MountRecord, 'mountpoint'>> = mountpoint ? [{ mountpoint: path.resolve(mountpoint) }] : await listMounts();
      const out: Array<Record<string, unknown>> = [];
      for (const r of recs) out.push((await control(r.mountpoint, 'status')) as Record<string, unknown>);
      if (o.json) {
        console.log(JSON.stringify(mountpoint ? out[0] : out, null, 2));
        return;
      }
      if (out.length === 0) console.log('no roamfs homes are mounted');
      for (const s of out) {
        const age = s.oldestPendingAgeMs as number | null;
        const err = s.lastError as { message: string } | null;
        const pf = s.prefetch as { phase: string; filesDone: number; filesTotal: number; bytesDone: number; bytesTotal: number } | undefined;
        console.log(
          `${s.mountpoint}  user ${s.user}  ${s.state}${s.repositoryReachable ? '' : ' (repository unreachable)'}\n` +
            `  snapshots ${s.snapshots}, pending ${s.pendingSnapshots}${age === null ? '' : ` (oldest ${formatDuration(age)} ago: the current RPO)`}${s.dirty ? ', changes since the last snapshot' : ''}\n` +
            `  commits ${s.commits}, uploaded ${formatBytes(s.bytesUploaded as number)}, read ${formatBytes(s.remoteBytesRead as number)}, cache hits ${s.cacheHits} misses ${s.cacheMisses}\n` +
            `  last commit ${(s.lastCommit as { id: string } | null)?.id.slice(0, 12) ?? '-'}${err ? `\n  last error: ${err.message}` : ''}` +
            (pf ? `\n  prefetch ${pf.phase}: ${pf.filesDone}/${pf.filesTotal} files, ${formatBytes(pf.bytesDone)}/${formatBytes(pf.bytesTotal)}` : ''),
        );
      }
    });
}
