import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import * as path from 'node:path';
import type { Command } from 'commander';
import { RoamfsError } from '../../src/core/errors.js';
import { systemClock } from '../../src/core/clock.js';
import { shortId } from '../../src/core/hash.js';
import { assertUserName } from '../../src/core/names.js';
import { PosixBackend } from '../../src/repository/posix.js';
import { Repository } from '../../src/repository/repository.js';
import { importDirectory } from '../../src/transfer/import.js';
import { exportTree } from '../../src/transfer/export.js';
import { logEntries } from '../../src/history/log.js';
import { rollback } from '../../src/history/rollback.js';
import { fsck } from '../../src/repository/fsck.js';
import { choosePrune, type KeepPolicy } from '../../src/repository/prune.js';
import { gc } from '../../src/repository/gc.js';
import { blockingIoMode } from '../../src/core/io-mode.js';
import { formatBytes, progressBar } from '../progress.js';

export const session = randomBytes(8).toString('hex');
const ctx = () => ({ clock: systemClock, host: hostname(), session });

/**
 * The CLI's repository: objects read and written with synchronous calls on a local file system
 * (the CLI has no event loop to keep free, and import/export move tens of thousands of objects).
 */
export function openRepo(dir: string): Promise<Repository> {
  return Repository.open(new PosixBackend(dir, { syncIo: blockingIoMode() }));
}

function count(v: string): number {
  if (!/^\d+$/.test(v)) throw new RoamfsError('INVALID_ARGUMENT', `not a non-negative number: ${v}`);
  return Number(v);
}

function localTime(ms: number): string {
  const d = new Date(ms);
  const p = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

async function commitOf(repo: Repository, user: string, at?: string) {
  assertUserName(user);
  const id = at ? await repo.resolveCommit(user, at) : (await repo.requireHead(user)).commit;
  return { id, commit: await repo.getCommit(id) };
}

export function registerRepoCommands(program: Command): void {
  program
    .command('init')
    .description('create a repository in REPO (a new or empty directory)')
    .argument('<repo>', 'repository directory (local disk, NAS or GlusterFS mount)')
    .action(async (repoDir: string) => {
      const repo = await Repository.init(new PosixBackend(repoDir));
      console.log(`initialized roamfs repository ${repo.backend.location} (id ${repo.config.id})`);
    });

  program
    .command('import')
    .description("commit DIR as USER's profile (a new user, or a new commit on top of the head)")
    .argument('<repo>', 'repository directory')
    .argument('<user>', 'user name')
    .argument('<dir>', 'directory to import')
    .option('-m, --message <text>', 'commit message')
    .action(async (repoDir: string, user: string, dir: string, o: { message?: string }) => {
      assertUserName(user);
      const repo = await openRepo(repoDir);
      const bar = progressBar('import', 'bytes');
      let started = false;
      const t0 = performance.now();
      const r = await importDirectory(repo, user, dir, {
        ...ctx(),
        sync: true,
        message: o.message,
        onProgress: (p) => {
          if (!started) bar.start(p.totalBytes);
          started = true;
          bar.update(p.bytes);
        },
        onSkip: (rel, why) => console.error(`roamfs: skipped ${rel} (${why}: not part of a profile)`),
      }).finally(() => bar.stop());
      const secs = (performance.now() - t0) / 1000;
      console.log(
        `${user}: commit ${shortId(r.commit)} (ref ${r.ref.seq}): ${r.files} files, ${r.dirs} dirs, ${r.symlinks} symlinks, ` +
          `${formatBytes(r.bytes)}; ${r.changed} changed, ${formatBytes(r.bytesNew)} new in ${secs.toFixed(1)}s`,
      );
    });

  program
    .command('export')
    .description("write USER's profile (or an older commit) into DIR, which must be new or empty")
    .argument('<repo>', 'repository directory')
    .argument('<user>', 'user name')
    .argument('<dir>', 'destination directory')
    .option('--at <commit>', 'commit id or unique prefix (default: the head)')
    .action(async (repoDir: string, user: string, dir: string, o: { at?: string }) => {
      const repo = await openRepo(repoDir);
      const { id, commit } = await commitOf(repo, user, o.at);
      const bar = progressBar('export', 'items');
      bar.start(0);
      const p = await exportTree(repo, commit.root, dir, { sync: true, onProgress: (x) => bar.update(x.files, x.files) }).finally(() => bar.stop());
      console.log(`${user}: exported ${shortId(id)} to ${path.resolve(dir)}: ${p.files} files, ${formatBytes(p.bytes)}`);
    });

  program
    .command('log')
    .description("list USER's commits, newest first")
    .argument('<repo>', 'repository directory')
    .argument('<user>', 'user name')
    .option('-n, --max <n>', 'show at most n commits', count)
    .option('--json', 'one JSON object per line')
    .action(async (repoDir: string, user: string, o: { max?: number; json?: boolean }) => {
      const repo = await openRepo(repoDir);
      await repo.requireHead(user);
      for await (const e of logEntries(repo, user, o.max ?? Infinity)) {
        const c = e.commit;
        if (o.json) {
          console.log(JSON.stringify({ seq: e.ref.seq, id: e.id, time: c.time, host: c.host, session: c.session, files: c.stats.files, bytes: c.stats.bytes, message: c.message }));
        } else {
          console.log(`${shortId(e.id)}  ${localTime(c.time)}  ${c.host}  ${c.stats.files} files changed, ${formatBytes(c.stats.bytes)} added  ${c.message}`);
        }
      }
    });

  program
    .command('fsck')
    .description('verify every object reachable from the refs; exit 1 naming each damaged object')
    .argument('<repo>', 'repository directory')
    .option('--user <user>', 'check only this user')
    .action(async (repoDir: string, o: { user?: string }) => {
      const repo = await openRepo(repoDir);
      if (o.user) await repo.requireHead(o.user);
      const bar = progressBar('fsck', 'bytes');
      bar.start(0);
      const r = await fsck(repo, { users: o.user ? [o.user] : undefined, onProgress: (x) => bar.update(x.bytes, x.bytes) }).finally(() => bar.stop());
      for (const d of r.damage) console.error(`damaged: ${d.problem}; used by ${d.usedBy.join(', ')}`);
      const summary = `${r.users} users, ${r.refs} refs, ${r.commits} commits, ${r.trees} trees, ${r.chunks} chunks (${formatBytes(r.bytes)})`;
      if (r.damage.length > 0) {
        console.error(`roamfs: fsck found ${r.damage.length} damaged object(s) in ${summary}`);
        process.exitCode = 1;
      } else {
        console.log(`fsck ok: ${summary} verified`);
      }
    });

  program
    .command('rollback')
    .description('make a new commit that restores the whole profile, or one PATH, to COMMIT')
    .argument('<repo>', 'repository directory')
    .argument('<user>', 'user name')
    .argument('<commit>', 'commit id or unique prefix')
    .argument('[path]', 'profile-relative path to restore (default: everything)')
    .action(async (repoDir: string, user: string, target: string, p?: string) => {
      const repo = await openRepo(repoDir);
      const id = await repo.resolveCommit(user, target);
      const r = await rollback(repo, user, id, { ...ctx(), path: p });
      console.log(`${user}: commit ${shortId(r.commit)} restores ${p ?? 'the profile'} to ${shortId(id)} (${r.changed} files changed)`);
    });

  program
    .command('prune')
    .description('forget old commits by a keep policy (the head is always kept); run gc to free space')
    .argument('<repo>', 'repository directory')
    .argument('[user]', 'only this user (default: all users)')
    .option('--keep-last <n>', 'keep the n newest commits', count)
    .option('--keep-hourly <n>', 'keep the newest commit of each of the last n hours that have one', count)
    .option('--keep-daily <n>', 'keep the newest commit of each of the last n days that have one', count)
    .option('--keep-weekly <n>', 'keep the newest commit of each of the last n weeks that have one', count)
    .option('--dry-run', 'only show what would be forgotten')
    .action(async (repoDir: string, user: string | undefined, o: { keepLast?: number; keepHourly?: number; keepDaily?: number; keepWeekly?: number; dryRun?: boolean }) => {
      const policy: KeepPolicy = { last: o.keepLast, hourly: o.keepHourly, daily: o.keepDaily, weekly: o.keepWeekly };
      if (Object.values(policy).every((v) => v === undefined)) {
        throw new RoamfsError('INVALID_ARGUMENT', 'prune needs at least one --keep-* option');
      }
      const repo = await openRepo(repoDir);
      const users = user ? [user] : await repo.users();
      if (user) await repo.requireHead(user);
      for (const u of users) {
        const d = choosePrune(await repo.refs(u), policy);
        if (!o.dryRun) for (const r of d.forget) await repo.backend.deleteRef(u, r.seq);
        console.log(`${u}: ${o.dryRun ? 'would keep' : 'kept'} ${d.keep.length}, ${o.dryRun ? 'would forget' : 'forgot'} ${d.forget.length} commits`);
      }
    });

  program
    .command('gc')
    .description('delete objects that no kept commit reaches (safe while others import or commit)')
    .argument('<repo>', 'repository directory')
    .option('--grace <minutes>', 'never delete objects younger than this', count, 60)
    .option('--dry-run', 'only count what would be deleted')
    .action(async (repoDir: string, o: { grace: number; dryRun?: boolean }) => {
      const repo = await openRepo(repoDir);
      const r = await gc(repo, { graceMs: o.grace * 60_000, dryRun: o.dryRun });
      console.log(`gc: ${r.live} live objects, ${r.scanned} scanned, ${o.dryRun ? 'would delete' : 'deleted'} ${r.deleted} (${formatBytes(r.deletedBytes)}), ${r.restored} kept because a writer reused them`);
    });
}
