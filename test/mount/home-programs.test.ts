/**
 * Real programs on a real roamfs home (mounted by the CLI, served by the detached daemon):
 * sqlite3 in WAL mode (shared-memory mmap, fsync, many small transactions), git (thousands of
 * files, renames of lock files, index stat data), tar (extract with mtimes/modes/symlinks,
 * then --compare) and rsync (temp file + rename, then a checksum dry run). Every test ends
 * with a logout; the sqlite, tar and rsync tests then check that `roamfs export` of the
 * repository equals the home as it was at logout (diff -r and an rsync itemize dry run), the
 * git test that the exported repository is clean and passes fsck.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { generateProfile } from '../../scripts/gen-profile.js';
import { logoutAndCompareExport, mountedHome, mountsAt, run, runOk, stopwatch, type MountedHome } from '../helpers/mounted-home.js';

const MiB = 1024 * 1024;

async function exportMatches(t: ExecutionContext, h: MountedHome, lap?: (s: string) => void): Promise<void> {
  const { problems, logout, ms } = await logoutAndCompareExport(h);
  lap?.(`export check (copy ${(ms.copy / 1000).toFixed(1)}s, logout ${(ms.logout / 1000).toFixed(1)}s, export ${(ms.export / 1000).toFixed(1)}s, compare)`);
  t.deepEqual(problems, [], 'export of the repository equals the home at logout');
  t.is(logout.code, 0);
  t.deepEqual(await mountsAt(h.mountpoint), [], 'nothing mounted after logout');
}

/** A source tree outside the home: a small generated profile (modes, mtimes, symlinks, sqlite, git). */
async function sourceTree(dir: string, seed: number): Promise<void> {
  await generateProfile(dir, { seed, sizeBytes: 12 * MiB, files: 1500, bigFiles: true });
  // Things a generated profile may lack: odd modes, an empty dir, a dangling symlink, a name
  // with spaces and UTF-8, an mtime before 1970, an empty file.
  await fsp.mkdir(path.join(dir, 'edge cases/empty dir'), { recursive: true });
  await fsp.writeFile(path.join(dir, 'edge cases/exec.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
  await fsp.writeFile(path.join(dir, 'edge cases/private'), 'secret\n', { mode: 0o600 });
  await fsp.writeFile(path.join(dir, 'edge cases/Grüße – ☃.txt'), 'unicode\n');
  await fsp.writeFile(path.join(dir, 'edge cases/old'), 'old\n');
  await fsp.utimes(path.join(dir, 'edge cases/old'), new Date(-86_400_000), new Date(-86_400_000));
  await fsp.symlink('../does/not/exist', path.join(dir, 'edge cases/dangling'));
  await fsp.writeFile(path.join(dir, 'edge cases/empty'), '');
  await fsp.chmod(path.join(dir, 'edge cases/empty dir'), 0o750);
}

test('sqlite3 in WAL mode: 500 transactions, integrity ok, data still there after logout and remount', async (t) => {
  t.timeout(6 * 60_000); // a guard against a hang, not a timing assertion
  const lap = stopwatch(t);
  const h = await mountedHome(t, { prefix: 'roamfs-home-sqlite-', mountArgs: ['--snapshot-interval', '1s', '--idle', '1s'] });
  lap('mount');
  const db = h.p('.local/share/app/data.sqlite');
  await fsp.mkdir(path.dirname(db), { recursive: true });

  const lines = ['PRAGMA journal_mode=WAL;', 'PRAGMA synchronous=FULL;', 'CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT NOT NULL, v BLOB NOT NULL);', 'CREATE INDEX t_k ON t(k);'];
  for (let i = 0; i < 500; i++) {
    lines.push('BEGIN;');
    lines.push(`INSERT INTO t(k, v) VALUES ('key-${i}', randomblob(${100 + (i % 7) * 300}));`);
    lines.push(`INSERT INTO t(k, v) VALUES ('dup-${i % 50}', zeroblob(${i % 1000}));`);
    if (i % 10 === 9) lines.push(`DELETE FROM t WHERE k = 'dup-${(i * 7) % 50}';`);
    lines.push(`UPDATE t SET v = randomblob(64) WHERE k = 'key-${Math.floor(i / 2)}';`);
    lines.push('COMMIT;');
  }
  lines.push("SELECT 'mode', journal_mode FROM pragma_journal_mode;");
  const r = await runOk('sqlite3', ['-batch', '-bail', db], { input: lines.join('\n') + '\n' });
  lap('500 transactions');
  t.regex(r.stdout, /mode\|wal/);
  t.true((await fsp.readdir(path.dirname(db))).includes('data.sqlite'));

  const check = async () => {
    const c = await runOk('sqlite3', ['-batch', '-bail', db, 'PRAGMA integrity_check;', "SELECT count(*) FROM t WHERE k LIKE 'key-%';", 'SELECT count(*) FROM t;']);
    return c.stdout.trim().split('\n');
  };
  const first = await check();
  t.is(first[0], 'ok', 'integrity_check');
  t.is(first[1], '500');
  const total = first[2];

  // Log out, mount again (same repository, same cache): the database is intact.
  const lo = await h.logout();
  t.is(lo.code, 0, lo.stderr);
  t.deepEqual(await mountsAt(h.mountpoint), []);
  lap('check + logout');
  await h.mount();
  lap('remount');
  const again = await check();
  t.deepEqual(again, ['ok', '500', total!], 'same rows after remount');
  const mode = await runOk('sqlite3', ['-batch', db, 'PRAGMA journal_mode;']);
  t.is(mode.stdout.trim(), 'wal', 'still a WAL database');
  // A few more transactions on the remounted home, then the final check against the export.
  await runOk('sqlite3', ['-batch', '-bail', db], { input: "BEGIN; INSERT INTO t(k, v) VALUES ('after', x'00'); COMMIT;\n" });
  lap('check');
  await exportMatches(t, h, lap);
});

test('git: add and commit 3,000 files; status clean; fsck --full ok', async (t) => {
  t.timeout(8 * 60_000); // a guard against a hang, not a timing assertion
  const lap = stopwatch(t);
  const h = await mountedHome(t, { prefix: 'roamfs-home-git-' });
  lap('mount');
  const proj = h.p('src/project');
  await fsp.mkdir(proj, { recursive: true });
  // 3,000 files in 60 directories, sizes from a few bytes to 64 KiB, a few shared contents.
  const jobs: Array<() => Promise<void>> = [];
  for (let d = 0; d < 60; d++) {
    jobs.push(() => fsp.mkdir(path.join(proj, `pkg${d}`, 'lib'), { recursive: true }).then(() => undefined));
  }
  await Promise.all(jobs.map((j) => j()));
  const files: string[] = [];
  for (let d = 0; d < 60; d++) for (let f = 0; f < 50; f++) files.push(path.join(proj, `pkg${d}`, f % 5 === 0 ? 'lib' : '', `file${f}.${f % 3 ? 'ts' : 'md'}`));
  for (let i = 0; i < files.length; i += 32) {
    await Promise.all(
      files.slice(i, i + 32).map((f, j) => {
        const n = i + j;
        const body = n % 97 === 0 ? 'shared content\n' : `// file ${n}\n` + `export const v${n} = ${n};\n`.repeat(1 + ((n * 7919) % 2000));
        return fsp.writeFile(f, body);
      }),
    );
  }
  lap('write 3000 files');
  const env = { ...h.env, GIT_AUTHOR_NAME: 'Test', GIT_AUTHOR_EMAIL: 't@example.com', GIT_COMMITTER_NAME: 'Test', GIT_COMMITTER_EMAIL: 't@example.com', GIT_CONFIG_NOSYSTEM: '1', HOME: h.base };
  const git = (...args: string[]) => runOk('git', ['-C', proj, ...args], { env, timeoutMs: 300_000 });
  await git('init', '-q', '-b', 'main');
  await git('config', 'gc.auto', '0');
  await git('add', '-A');
  lap('git init + add');
  await git('commit', '-q', '-m', 'three thousand files');
  lap('git commit');
  t.is((await git('status', '--porcelain')).stdout, '', 'git status --porcelain is empty');
  t.is(Number((await git('ls-files')).stdout.trim().split('\n').length), 3000);
  const fsck = await run('git', ['-C', proj, 'fsck', '--full', '--strict'], { env, timeoutMs: 300_000 });
  t.is(fsck.code, 0, fsck.stderr);
  t.notRegex(fsck.stderr + fsck.stdout, /error|missing|corrupt/i);
  lap('status + fsck');
  // A second commit that renames and edits (index rewrite, lock files renamed into place).
  await git('mv', 'pkg0', 'pkg0-renamed');
  await fsp.appendFile(path.join(proj, 'pkg1/file1.ts'), '// edited\n');
  await git('commit', '-q', '-am', 'rename and edit');
  t.is((await git('status', '--porcelain')).stdout, '');
  t.is((await git('rev-list', '--count', 'HEAD')).stdout.trim(), '2');
  await git('fsck', '--full');
  lap('second commit');
  // Logout, then the exported profile holds the same, working repository (the full
  // export-equals-home comparison runs in the other tests: copying 6,000 files out of the
  // home first would double this test's time).
  const lo = await h.logout();
  t.is(lo.code, 0, lo.stderr);
  t.deepEqual(await mountsAt(h.mountpoint), [], 'nothing mounted after logout');
  const exported = path.join(h.base, 'exported');
  await h.cliOk('export', h.repo, h.user, exported);
  const eproj = path.join(exported, 'src/project');
  const egit = (...args: string[]) => runOk('git', ['-C', eproj, ...args], { env, timeoutMs: 300_000 });
  t.is((await egit('status', '--porcelain')).stdout, '', 'exported repository: status clean');
  t.is((await egit('rev-list', '--count', 'HEAD')).stdout.trim(), '2');
  await egit('fsck', '--full', '--strict');
  lap('logout + export + fsck');
});

test('tar -x of an archive, then tar -d reports no differences (mtimes, modes, symlinks)', async (t) => {
  t.timeout(6 * 60_000); // a guard against a hang, not a timing assertion
  const lap = stopwatch(t);
  const h = await mountedHome(t, { prefix: 'roamfs-home-tar-' });
  lap('mount');
  const tree = path.join(h.base, 'tree');
  await sourceTree(tree, 11);
  lap('generate');
  const archive = path.join(h.base, 'tree.tar');
  await runOk('tar', ['-C', tree, '-cf', archive, '.']);
  const dest = h.p('restored');
  await fsp.mkdir(dest);
  await runOk('tar', ['-C', dest, '-xf', archive]);
  lap('tar -x');
  const d = await run('tar', ['-C', dest, '-df', archive]);
  t.is(d.stdout + d.stderr, '', 'tar --compare output');
  t.is(d.code, 0);
  // tar -d does not compare directories' mtimes: check one, and the pre-1970 file.
  t.is((await fsp.stat(path.join(dest, 'edge cases/old'))).mtimeMs, -86_400_000);
  t.is((await fsp.lstat(path.join(dest, 'edge cases/dangling'))).isSymbolicLink(), true);
  lap('tar -d');
  await exportMatches(t, h, lap);
});

test('rsync -a into the home, then a --checksum dry run reports nothing', async (t) => {
  t.timeout(6 * 60_000); // a guard against a hang, not a timing assertion
  const lap = stopwatch(t);
  const h = await mountedHome(t, { prefix: 'roamfs-home-rsync-' });
  lap('mount');
  const tree = path.join(h.base, 'tree');
  await sourceTree(tree, 12);
  lap('generate');
  const dest = h.p('x');
  await runOk('rsync', ['-a', tree + '/', dest + '/']);
  lap('rsync');
  const r = await run('rsync', ['-a', '--checksum', '--dry-run', '--itemize-changes', tree + '/', dest + '/']);
  t.is(r.code, 0, r.stderr);
  t.is(r.stdout, '', 'rsync --itemize-changes lists nothing');
  // And a second real rsync after changing a few files in the source (delta transfer, --inplace off).
  await fsp.appendFile(path.join(tree, 'edge cases/exec.sh'), 'echo more\n');
  await fsp.rm(path.join(tree, 'edge cases/empty'));
  await runOk('rsync', ['-a', '--delete', tree + '/', dest + '/']);
  const r2 = await run('rsync', ['-a', '--delete', '--checksum', '--dry-run', '--itemize-changes', tree + '/', dest + '/']);
  t.is(r2.stdout, '', 'in sync after the second rsync');
  lap('checks + second rsync');
  await exportMatches(t, h, lap);
});
