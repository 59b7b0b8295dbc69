import * as path from 'node:path';
import type { Command } from 'commander';
import { formatDuration } from '../../src/core/units.js';
import { control, listMounts, type MountRecord } from '../control.js';
import { formatBytes, progressBar, staticBar } from '../progress.js';
import type { LeaseView } from '../../src/profile.js';
import { DEFAULT_CONFIG_FILE, loadConfig, printConfig } from '../config.js';
import { mount } from '../launch.cjs';
import { defineMountCommand } from './mount.js';

export function registerSessionCommands(program: Command): void {
  // bin/roamfs.js starts the daemon itself (mount/launch.cts); this action runs for the CLI
  // started otherwise (node dist/mount/cli.js): the same path, with the same arguments.
  defineMountCommand(program).action(() => mount(process.argv.slice(3)));

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
  lease?: LeaseView | null;
  readOnly?: boolean;
  pickedUp?: number;
  lastPickUp?: { commit: string; time: number; adopted: number; kept: number } | null;
  metricsUrl?: string | null;
}

/** This session's lease and the other desktops of the user, in one line. */
function formatLease(s: StatusView): string {
  const l = s.lease;
  if (!l) return 'no lease';
  const what = `${l.mode === 'ro' ? 'read-only' : 'read-write'}, ${l.policy}${l.generation !== null ? ` (exclusive lease generation ${l.generation})` : ''}`;
  const state = l.state === 'lost' ? `LOST: ${l.lostReason ?? 'taken over by another desktop'}` : l.state === 'held' && l.failures > 0 ? `held, ${l.failures} renewal(s) failed` : l.state;
  const others = l.others.length === 0 ? 'no other desktop' : l.others.map((o) => `${o.host} (pid ${o.pid}, ${o.mode === 'ro' ? 'read-only' : o.exclusive ? 'exclusive' : 'read-write'})`).join(', ');
  const picked = s.pickedUp ? `; picked up ${s.pickedUp} commit(s) of other desktops${s.lastPickUp ? `, last ${formatDuration(Date.now() - s.lastPickUp.time)} ago` : ''}` : '';
  return `${what}; ${state}; ${others}${picked}`;
}

/** The human form of one home's status. */
function formatStatus(raw: Record<string, unknown>): string {
  const s = raw as unknown as StatusView;
  const lines = [`${s.mountpoint}  user ${s.user ?? '?'}  ${s.state}${s.repositoryReachable === false ? ' (repository unreachable)' : ''}${s.readOnly ? ' (read-only)' : ''}${s.pid ? `  pid ${s.pid}` : ''}`];
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
  row('sessions', formatLease(s));
  row('last commit', s.lastCommit ? `${s.lastCommit.id.slice(0, 12)} (${formatDuration(Date.now() - s.lastCommit.time)} ago)` : '-');
  row('last error', s.lastError ? `${s.lastError.message} (${formatDuration(Date.now() - s.lastError.time)} ago)` : '-');
  if (s.metricsUrl) row('metrics', s.metricsUrl);
  return lines.join('\n');
}
