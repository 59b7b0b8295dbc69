import { spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import { openSync, closeSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { RoamfsError } from '../../src/core/errors.js';
import { assertUserName } from '../../src/core/names.js';
import { formatDuration } from '../../src/core/units.js';
import { startDaemon } from '../daemon.js';
import { control, listMounts, type MountRecord } from '../control.js';
import { formatBytes, progressBar, staticBar } from '../progress.js';
import { DEFAULT_CONFIG_FILE, flagOptions, givenFlags, loadConfig, logLevelOf, printConfig, profileConfigOf } from '../config.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const DAEMON_MAIN = path.join(here, '..', 'daemon-main.js');

/** The settings `roamfs mount` takes as flags (names, help and defaults from the schema). */
const MOUNT_FLAGS = flagOptions([
  'cacheDir', 'uid', 'gid', 'snapshotIntervalMs', 'idleMs', 'maxLagMs', 'prefetchDelayMs', 'flushTimeoutMs',
  'excludeAdd', 'excludeRemove', 'excludeDefaults', 'quotaSoftBytes', 'quotaHardBytes',
  'metricsPort', 'metricsAddress', 'logLevel', 'debug',
]);

export function registerSessionCommands(program: Command): void {
  const mount = program
    .command('mount')
    .description("mount USER's profile from REPO (default: the configured repository) at MOUNTPOINT; returns when the home is ready, leaving the daemon running")
    .usage('[options] [REPO] USER MOUNTPOINT')
    .argument('<args...>', 'REPO (a repository directory; optional when configured), USER, MOUNTPOINT (an empty directory, e.g. /home/USER)')
    .option('--foreground', 'stay attached and log to stderr (for systemd)');
  for (const f of MOUNT_FLAGS) {
    if (f.list) mount.option(f.syntax, f.help, (v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    else mount.option(f.syntax, f.help);
  }
  mount.addHelpText('after', `\nSettings come from ${DEFAULT_CONFIG_FILE} (or ROAMFS_CONFIG), then ROAMFS_* variables, then these flags: roamfs config --print shows them.`);
  mount.action(async (positional: string[], o: Record<string, unknown>) => {
      if (positional.length < 2 || positional.length > 3) {
        throw new RoamfsError('INVALID_ARGUMENT', `mount takes [REPO] USER MOUNTPOINT (got ${positional.length} argument${positional.length === 1 ? '' : 's'})`);
      }
      const [repoArg, user, mountpoint] = positional.length === 3 ? positional : [undefined, ...positional];
      assertUserName(user!);
      const { config: c } = await loadConfig({ flags: givenFlags(o, MOUNT_FLAGS), args: repoArg === undefined ? {} : { repository: repoArg } });
      if (!c.repository) throw new RoamfsError('INVALID_ARGUMENT', `no repository: give REPO, or set "repository" in ${DEFAULT_CONFIG_FILE} or ROAMFS_REPO`);
      const repo = path.resolve(c.repository);
      const mp = path.resolve(mountpoint!);
      const cache = path.resolve(c.cacheDir ?? path.join(c.cacheRoot, user!));
      let uid = c.uid ?? undefined;
      let gid = c.gid ?? undefined;
      if (uid === undefined || gid === undefined) {
        const st = await fsp.stat(mp).catch(() => null);
        uid ??= st?.uid ?? 0;
        gid ??= st?.gid ?? 0;
      }
      if (o.foreground) {
        const d = await startDaemon(
          {
            repo,
            user: user!,
            mountpoint: mp,
            cache,
            uid,
            gid,
            logToStderr: true,
            debug: c.debug,
            logLevel: logLevelOf(c),
            profile: profileConfigOf(c),
            metrics: { port: c.metricsPort, address: c.metricsAddress },
          },
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
      // The daemon's command line names user and mountpoint (ps); the settings go in the environment.
      const args = [DAEMON_MAIN, '--user', user!, '--repo', repo, '--cache', cache, '--uid', String(uid), '--gid', String(gid), mp];
      const child = spawn(process.execPath, args, {
        detached: true,
        stdio: ['ignore', 'ignore', errFd, 'pipe'],
        env: { ...process.env, ROAMFS_READY_FD: '3', ROAMFS_DAEMON_SETTINGS: JSON.stringify(c) },
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
    .description('state of the mounted homes on this machine (all, or one): background load, cache, pending snapshots and RPO, transfers, quota, lease, last error')
    .argument('[mountpoint]', 'one mounted home')
    .option('--json', 'machine-readable output')
    .action(async (mountpoint: string | undefined, o: { json?: boolean }) => {
      const recs: Array<Pick<MountRecord, 'mountpoint'>> = mountpoint ? [{ mountpoint: path.resolve(mountpoint) }] : await listMounts();
      const out: Array<Record<string, unknown>> = [];
      for (const r of recs) {
        if (mountpoint) out.push((await control(r.mountpoint, 'status')) as Record<string, unknown>);
        else {
          // All homes: one daemon that does not answer must not hide the others.
          out.push(await control(r.mountpoint, 'status').then(
            (x) => x as Record<string, unknown>,
            (err: unknown) => ({ mountpoint: r.mountpoint, state: 'not answering', lastError: { message: (err as Error).message, time: Date.now() } }),
          ));
        }
      }
      if (o.json) {
        console.log(JSON.stringify(mountpoint ? out[0] : out, null, 2));
        return;
      }
      if (out.length === 0) console.log('no roamfs homes are mounted');
      console.log(out.map(formatStatus).join('\n\n'));
    });

  program
    .command('metrics')
    .description('Prometheus metrics of a mounted home (the text format; also served on metricsPort when configured)')
    .argument('<mountpoint>', 'the mounted home')
    .action(async (mountpoint: string) => {
      process.stdout.write((await control(mountpoint, 'metrics')) as string);
    });

  program
    .command('config')
    .description(`the effective configuration: every setting, its value and where it came from (${DEFAULT_CONFIG_FILE} or ROAMFS_CONFIG, ROAMFS_* variables, defaults)`)
    .option('--print', 'print the effective configuration (the default action)')
    .option('--json', 'machine-readable output (with defaults, units, flags, variables and help)')
    .action(async (o: { print?: boolean; json?: boolean }) => {
      console.log(printConfig(await loadConfig(), { json: !!o.json }));
    });
}

interface StatusView {
  mountpoint: string;
  user?: string;
  pid?: number;
  state: string;
  repositoryReachable?: boolean;
  snapshots?: number;
  pendingSnapshots?: number;
  pendingBytes?: number;
  oldestPendingAgeMs?: number | null;
  dirty?: boolean;
  commits?: number;
  lastCommit?: { id: string; time: number } | null;
  bytesUploaded?: number;
  remoteBytesRead?: number;
  cacheHits?: number;
  cacheMisses?: number;
  lastError?: { message: string; time: number } | null;
  prefetch?: { phase: string; filesDone: number; filesTotal: number; bytesDone: number; bytesTotal: number };
  usage?: { bytes: number; baseCount: string; softBytes: number | null; hardBytes: number | null; over: 'soft' | 'hard' | null };
  lease?: unknown;
  metricsUrl?: string | null;
}

/** The human form of one home's status. */
function formatStatus(raw: Record<string, unknown>): string {
  const s = raw as unknown as StatusView;
  const lines = [`${s.mountpoint}  user ${s.user ?? '?'}  ${s.state}${s.repositoryReachable === false ? ' (repository unreachable)' : ''}${s.pid ? `  pid ${s.pid}` : ''}`];
  const row = (k: string, v: string) => lines.push(`  ${k.padEnd(16)}${v}`);
  if (s.state === 'not answering') {
    row('error', s.lastError?.message ?? '');
    return lines.join('\n');
  }
  const pf = s.prefetch;
  if (pf) {
    if (pf.phase === 'off') row('background load', 'off (files load on demand)');
    else if (pf.phase === 'waiting') row('background load', 'waiting for the prefetch delay (files load on demand until then)');
    else {
      const frac = pf.bytesTotal > 0 ? pf.bytesDone / pf.bytesTotal : pf.phase === 'done' ? 1 : 0;
      row('background load', `${staticBar(frac)}  ${pf.phase}: ${pf.filesDone}/${pf.filesTotal} files, ${formatBytes(pf.bytesDone)}/${formatBytes(pf.bytesTotal)}`);
    }
  }
  const hits = s.cacheHits ?? 0;
  const misses = s.cacheMisses ?? 0;
  row('cache', `hits ${hits}, misses ${misses}${hits + misses > 0 ? ` (${((100 * hits) / (hits + misses)).toFixed(1)}% hits)` : ''}`);
  const age = s.oldestPendingAgeMs ?? null;
  row(
    'pending',
    `${s.pendingSnapshots ?? 0} snapshot(s), ${formatBytes(s.pendingBytes ?? 0)}; ` +
      (age === null ? 'RPO 0 (everything is in the repository)' : `RPO ${formatDuration(age)} (oldest unshipped snapshot)`) +
      (s.dirty ? '; changes since the last snapshot' : ''),
  );
  row('transfers', `up ${formatBytes(s.bytesUploaded ?? 0)}, down ${formatBytes(s.remoteBytesRead ?? 0)}; ${s.snapshots ?? 0} snapshots, ${s.commits ?? 0} commits`);
  const u = s.usage;
  if (u) {
    const limits = [u.softBytes !== null ? `soft ${formatBytes(u.softBytes)}` : '', u.hardBytes !== null ? `hard ${formatBytes(u.hardBytes)}` : ''].filter(Boolean).join(', ');
    if (u.baseCount === 'not-counted') row('usage', 'not counted (no quota is set)');
    else {
      const counted = u.baseCount === 'done' ? '' : ` (${u.baseCount === 'counting' ? 'still counting' : 'count failed, retrying'}: at least this)`;
      row('usage', `${formatBytes(u.bytes)}${counted}${limits ? `; quota ${limits}` : ''}${u.over ? `; OVER THE ${u.over.toUpperCase()} LIMIT` : ''}`);
    }
  }
  row('lease', s.lease === null || s.lease === undefined ? 'none (leases are not implemented yet)' : JSON.stringify(s.lease));
  row('last commit', s.lastCommit ? `${s.lastCommit.id.slice(0, 12)} (${formatDuration(Date.now() - s.lastCommit.time)} ago)` : '-');
  row('last error', s.lastError ? `${s.lastError.message} (${formatDuration(Date.now() - s.lastError.time)} ago)` : '-');
  if (s.metricsUrl) row('metrics', s.metricsUrl);
  return lines.join('\n');
}
