/**
 * A real roamfs home for the mount tests, made the way an operator makes one: `roamfs init`,
 * `roamfs import`, `roamfs mount` (which leaves a detached daemon serving the FUSE mount, so
 * the test process may use the mountpoint with async fs calls and child processes freely).
 *
 * Every home lives in its own temp directory BASE:
 *   BASE/repo   the repository          BASE/src    the imported tree
 *   BASE/home   the mountpoint          BASE/cache  the daemon's cache (roamfs.log, daemon.stderr)
 *   BASE/run    ROAMFS_RUN_DIR of every CLI call (control sockets and mount records), so
 *               concurrent tests never share /run/roamfs
 *
 * teardown() (registered with t.teardown by mountedHome) always leaves nothing behind, even
 * after a failed test: `roamfs logout` of every daemon recorded in BASE/run; if that fails,
 * SIGKILL the daemon (pid from its record or the cache lock file, checked against its command
 * line) and `fusermount -u -z` / `umount -l` every mount below BASE; BASE is removed only once
 * nothing is mounted below it (an rm -rf through a live mount would delete a profile).
 */
import { execFile } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import { decodeCommit, decodeRef, decodeTree, type TreeEntry } from '../../src/repository/objects.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/test/helpers -> <root>/bin/roamfs.js */
export const ROAMFS_BIN = path.resolve(here, '../../../bin/roamfs.js');
/** The shell launcher users run (package.json "bin"): the mount path without a second Node start-up. */
export const ROAMFS_SH = path.resolve(here, '../../../bin/roamfs');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Kill the command after this long (default 120 s): a hung test must still end. */
  timeoutMs?: number;
  input?: string;
}

/** Run a program; never throws for a non-zero exit (code is -1 when killed by a signal). */
export function run(file: string, args: readonly string[], o: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      { env: o.env ?? process.env, cwd: o.cwd, maxBuffer: 256 * 1024 * 1024, timeout: o.timeoutMs ?? 120_000, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        if (err && typeof (err as { code?: unknown }).code !== 'number' && !(err as { killed?: boolean }).killed && (err as { signal?: unknown }).signal == null) {
          return reject(err); // could not start it at all (ENOENT, ...)
        }
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
    if (o.input !== undefined) child.stdin?.end(o.input);
  });
}

/** Like run(), but throws with the output when the exit code is not 0. */
export async function runOk(file: string, args: readonly string[], o: RunOptions = {}): Promise<RunResult> {
  const r = await run(file, args, o);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`.slice(0, 8000));
  return r;
}

/** /proc/self/mountinfo field unescaping (\040 for a space, ...). */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface MountInfo {
  mountpoint: string;
  fstype: string;
  source: string;
  options: string;
}

export async function mountTable(): Promise<MountInfo[]> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  const out: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [left, right = ''] = line.split(' - ');
    const f = left!.split(' ');
    const r = right.split(' ');
    out.push({ mountpoint: unescape(f[4]!), fstype: r[0] ?? '', source: unescape(r[1] ?? ''), options: `${f[5] ?? ''},${r[2] ?? ''}` });
  }
  return out;
}

/** Mounts at exactly p (stacked ones included). */
export async function mountsAt(p: string): Promise<MountInfo[]> {
  const abs = path.resolve(p);
  return (await mountTable()).filter((m) => m.mountpoint === abs);
}

/** Mounts at or below dir. */
export async function mountsBelow(dir: string): Promise<MountInfo[]> {
  const abs = path.resolve(dir);
  return (await mountTable()).filter((m) => m.mountpoint === abs || m.mountpoint.startsWith(abs + '/'));
}

/** The status a daemon reports (`roamfs status MOUNTPOINT --json`), the fields tests use. */
export interface HomeStatus {
  mountpoint: string;
  user: string;
  pid: number;
  state: string;
  base: string | null;
  snapshots: number;
  pendingSnapshots: number;
  commits: number;
  lastCommit: { id: string; time: number } | null;
  remoteBytesRead: number;
  cacheHits: number;
  cacheMisses: number;
  openHandles: number;
  lastError: { message: string } | null;
  fuse?: Record<string, { count: number; errors: number }>;
  [k: string]: unknown;
}

export interface HomeOptions {
  /** Profile owner in the repository (default alice). */
  user?: string;
  /** Fill BASE/src before the import (default: an empty home). */
  populate?: (src: string) => Promise<void>;
  /** Import this directory instead of BASE/src. */
  importDir?: string;
  /** Run `roamfs init` + `roamfs import` (default true). */
  create?: boolean;
  /** Mount right away (default true). */
  mount?: boolean;
  /** More `roamfs mount` options (--uid, --gid, --snapshot-interval off, ...). */
  mountArgs?: string[];
  /** Prefix of the temp directory (default roamfs-home-). */
  prefix?: string;
}

export interface MountedHome {
  base: string;
  /** BASE/home: the mountpoint. */
  mountpoint: string;
  repo: string;
  cache: string;
  /** ROAMFS_RUN_DIR of every CLI call. */
  runDir: string;
  /** The imported tree. */
  src: string;
  user: string;
  /** The environment every CLI call gets (ROAMFS_RUN_DIR set). */
  env: NodeJS.ProcessEnv;
  /** `roamfs ...args`; never throws for a non-zero exit. */
  cli(...args: string[]): Promise<RunResult>;
  /** `roamfs ...args`; throws with the output for a non-zero exit. */
  cliOk(...args: string[]): Promise<RunResult>;
  /** `roamfs mount REPO USER MOUNTPOINT --cache CACHE [mountArgs] [extra]`; throws on failure. */
  mount(extra?: string[]): Promise<RunResult>;
  /** `roamfs status MOUNTPOINT --json`, parsed; throws when no daemon answers. */
  status(): Promise<HomeStatus>;
  /** `roamfs logout MOUNTPOINT` (non-throwing). */
  logout(): Promise<RunResult>;
  /** Is something mounted at the mountpoint (per /proc/self/mountinfo)? */
  isMounted(): Promise<boolean>;
  /** Parsed JSON lines of CACHE/roamfs.log (unparseable lines skipped). */
  logLines(): Promise<Array<Record<string, unknown>>>;
  /** Path inside the mounted home. */
  p(...parts: string[]): string;
  /**
   * Everything down and removed (idempotent; registered with t.teardown). Resolves with a
   * note when something needed force (kill, lazy unmount), else undefined.
   */
  teardown(): Promise<string | undefined>;
}

const execPath = process.execPath;

/**
 * The environment of the CLI and the programs a test runs: no colours, no TTY progress, and
 * no configuration file (this machine's /etc/roamfs/roamfs.json must not change the tests).
 */
export function cliEnv(runDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ROAMFS_RUN_DIR: runDir, ROAMFS_CONFIG: '/dev/null', NO_COLOR: '1', FORCE_COLOR: '0', ROAMFS_NODE: process.execPath };
  delete env.NODE_OPTIONS;
  return env;
}

async function alive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** pid, if it is a roamfs daemon whose command line mentions `mention` (not a recycled pid). */
async function daemonPid(pid: number, mention: string): Promise<boolean> {
  if (!Number.isInteger(pid) || pid <= 1 || !(await alive(pid))) return false;
  const cmd = await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return cmd.includes('daemon-main') && cmd.includes(mention);
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!(await alive(pid))) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !(await alive(pid));
}

/**
 * Make a home (repository + imported tree) and, unless told otherwise, mount it. Teardown is
 * registered on t before anything is created.
 */
export async function mountedHome(t: ExecutionContext, o: HomeOptions = {}): Promise<MountedHome> {
  const base = await fsp.mkdtemp(path.join(os.tmpdir(), o.prefix ?? 'roamfs-home-'));
  const user = o.user ?? 'alice';
  const h = homeAt(base, user, o.mountArgs ?? []);
  h.src = o.importDir ?? h.src;
  t.teardown(async () => {
    const left = await h.teardown();
    if (left) t.log(left);
  });
  await fsp.mkdir(h.mountpoint);
  if (!o.importDir) await fsp.mkdir(h.src);
  if (o.create ?? true) {
    if (o.populate) await o.populate(h.src);
    await h.cliOk('init', h.repo);
    await h.cliOk('import', h.repo, user, h.src);
  }
  if (o.mount ?? true) await h.mount();
  return h;
}

/** The paths and operations of a home in `base` (nothing created). */
export function homeAt(base: string, user: string, mountArgs: string[]): MountedHome {
  const runDir = path.join(base, 'run');
  const env = cliEnv(runDir);
  // As a user runs it: bin/roamfs (mount starts the daemon from the shell; the rest runs bin/roamfs.js).
  const cli = (...args: string[]) => run(ROAMFS_SH, args, { env, timeoutMs: 600_000 });
  const cliOk = (...args: string[]) => runOk(ROAMFS_SH, args, { env, timeoutMs: 600_000 });
  let tornDown: Promise<string | undefined> | undefined;
  const h: MountedHome = {
    base,
    mountpoint: path.join(base, 'home'),
    repo: path.join(base, 'repo'),
    cache: path.join(base, 'cache'),
    runDir,
    src: path.join(base, 'src'),
    user,
    env,
    cli,
    cliOk,
    mount(extra: string[] = []) {
      return cliOk('mount', h.repo, user, h.mountpoint, '--cache', h.cache, ...mountArgs, ...extra);
    },
    async status() {
      const r = await cliOk('status', h.mountpoint, '--json');
      return JSON.parse(r.stdout) as HomeStatus;
    },
    logout() {
      return cli('logout', h.mountpoint);
    },
    async isMounted() {
      return (await mountsAt(h.mountpoint)).length > 0;
    },
    async logLines() {
      const text = await fsp.readFile(path.join(h.cache, 'roamfs.log'), 'utf8').catch(() => '');
      const out: Array<Record<string, unknown>> = [];
      for (const line of text.split('\n')) {
        if (!line.trim()) continue;
        try {
          out.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          // a partial last line
        }
      }
      return out;
    },
    p(...parts: string[]) {
      return path.join(h.mountpoint, ...parts);
    },
    teardown() {
      tornDown ??= teardownBase(base, runDir, env, h.cache, h.mountpoint);
      return tornDown;
    },
  };
  return h;
}

/**
 * Log out every daemon recorded in runDir (and the one owning `cache`), kill what does not
 * go, lazily unmount whatever is still mounted below base, then remove base. Returns a note
 * for the test log when something needed force, or undefined.
 */
async function teardownBase(base: string, runDir: string, env: NodeJS.ProcessEnv, cache: string, mountpoint: string): Promise<string | undefined> {
  const notes: string[] = [];
  const records: Array<{ mountpoint: string; pid: number; cache: string }> = [];
  for (const n of await fsp.readdir(runDir).catch(() => [] as string[])) {
    if (!n.endsWith('.json')) continue;
    try {
      records.push(JSON.parse(await fsp.readFile(path.join(runDir, n), 'utf8')));
    } catch {
      // being written or removed
    }
  }
  if (!records.some((r) => r.mountpoint === mountpoint) && (await mountsAt(mountpoint)).some((m) => m.fstype === 'fuse.roamfs')) {
    const pid = Number((await fsp.readFile(path.join(cache, 'lock'), 'utf8').catch(() => '')).trim());
    records.push({ mountpoint, pid, cache });
  }
  for (const r of records) {
    // A record outliving its daemon by a moment (it is removed after the logout answer).
    if (!(await daemonPid(r.pid, r.cache)) && !(await mountsAt(r.mountpoint)).some((m) => m.fstype === 'fuse.roamfs')) continue;
    const lo = await run(execPath, [ROAMFS_BIN, 'logout', r.mountpoint], { env, timeoutMs: 60_000 });
    // "no daemon serves": it answered an earlier logout and is exiting; give it time to.
    const exiting = lo.code !== 0 && /no roamfs daemon serves/.test(lo.stderr);
    if ((lo.code === 0 || exiting) && (await waitGone(r.pid, 15_000))) continue;
    if (lo.code !== 0) notes.push(`teardown: logout ${r.mountpoint} failed (${lo.code}): ${lo.stderr.trim()}`);
    if (await daemonPid(r.pid, r.cache)) {
      notes.push(`teardown: killing daemon ${r.pid}`);
      process.kill(r.pid, 'SIGKILL');
      await waitGone(r.pid, 10_000);
    }
  }
  // Deepest first: whatever is still mounted below base (dead FUSE mounts, tmpfs of a test).
  const left = (await mountsBelow(base)).map((m) => m.mountpoint).sort((a, b) => b.length - a.length);
  for (const m of left) {
    notes.push(`teardown: unmounting ${m}`);
    const u = await run('fusermount', ['-u', '-z', m], { timeoutMs: 30_000 }).catch(() => ({ code: 1 }));
    if (u.code !== 0 || (await mountsAt(m)).length > 0) await run('umount', ['-l', m], { timeoutMs: 30_000 }).catch(() => undefined);
  }
  const still = await mountsBelow(base);
  if (still.length > 0) {
    notes.push(`teardown: still mounted, ${base} kept: ${still.map((m) => m.mountpoint).join(', ')}`);
    return notes.join('\n');
  }
  await fsp.rm(base, { recursive: true, force: true }).catch((err: unknown) => notes.push(`teardown: rm ${base}: ${String(err)}`));
  return notes.length ? notes.join('\n') : undefined;
}

/**
 * `roamfs mount` options that switch background prefetch off (empty if this build has none):
 * tests that count repository reads or look for one log line need only on-demand fetches.
 */
export async function noPrefetchArgs(): Promise<string[]> {
  const help = (await run(execPath, [ROAMFS_BIN, 'mount', '--help'], { env: cliEnv('/nonexistent') })).stdout;
  if (/--prefetch-delay <[^>]+>/.test(help)) return ['--prefetch-delay', 'off'];
  if (/--no-prefetch\b/.test(help)) return ['--no-prefetch'];
  if (/--prefetch <[^>]+>/.test(help)) return ['--prefetch', 'off'];
  return [];
}

/** Step timings for the test log: lap('name') logs the time since the previous lap. */
export function stopwatch(t: ExecutionContext): (step: string) => void {
  let last = Date.now();
  const laps: string[] = [];
  t.teardown(() => {
    if (laps.length) t.log(`timings: ${laps.join(', ')}`);
  });
  return (step) => {
    const now = Date.now();
    laps.push(`${step} ${((now - last) / 1000).toFixed(1)}s`);
    last = now;
  };
}

/** Errors of a failed CLI call are one line on stderr: that line (tests assert on it). */
export function oneLine(r: RunResult): string {
  return r.stderr.trim();
}

// ---- looking into the repository (what the tests expect the daemon to read) ------------------

/** objects/<hh>/<id> of a repository. */
export function objectPath(repo: string, id: string): string {
  return path.join(repo, 'objects', id.slice(0, 2), id);
}

/** Stored size of an object (type byte included): what the daemon counts in remoteBytesRead. */
export async function storedSize(repo: string, id: string): Promise<number> {
  return (await fsp.stat(objectPath(repo, id))).size;
}

async function payload(repo: string, id: string): Promise<Buffer> {
  return (await fsp.readFile(objectPath(repo, id))).subarray(1);
}

export interface PathInRepo {
  /** Commit object, then every tree from the root down to the entry's directory. */
  commit: { id: string; bytes: number };
  trees: Array<{ id: string; bytes: number; dir: string }>;
  entry: TreeEntry;
}

/** Follow a profile-relative path ("a/b/c") from a commit, reading the repository directly. */
export async function lookupInRepo(repo: string, commitId: string, rel: string): Promise<PathInRepo> {
  const commit = decodeCommit(await payload(repo, commitId), commitId);
  const trees: PathInRepo['trees'] = [];
  let tree = commit.root.tree;
  const parts = rel.split('/').filter(Boolean);
  let entry: TreeEntry | undefined;
  for (let i = 0; i < parts.length; i++) {
    trees.push({ id: tree, bytes: await storedSize(repo, tree), dir: parts.slice(0, i).join('/') });
    entry = decodeTree(await payload(repo, tree), tree).find((e) => e.name === parts[i]);
    if (!entry) throw new Error(`${rel}: ${parts[i]} not found in the repository`);
    if (i < parts.length - 1) {
      if (entry.type !== 'dir') throw new Error(`${rel}: ${parts[i]} is not a directory`);
      tree = entry.tree;
    }
  }
  if (!entry) throw new Error('empty path');
  return { commit: { id: commitId, bytes: await storedSize(repo, commitId) }, trees, entry };
}

/** The head commit id of a user, from the refs (users/<user>/refs/<highest seq>). */
export async function headCommit(repo: string, user: string): Promise<string> {
  const dir = path.join(repo, 'users', user, 'refs');
  const names = (await fsp.readdir(dir)).filter((n) => /^\d+$/.test(n)).sort();
  const last = names.at(-1);
  if (!last) throw new Error(`${user} has no refs`);
  return decodeRef(await fsp.readFile(path.join(dir, last)), `${dir}/${last}`).commit;
}

/**
 * Log out and check that the repository holds exactly what the home showed at logout: copy
 * the home (cp -a) just before the logout, `roamfs export` the head afterwards, then
 * `diff -r --no-dereference` (content, names, symlink targets) and an rsync dry run
 * (--itemize-changes: modes, mtimes, owners, types) between the two must report nothing.
 * Returns the problems found (empty when equal).
 */
export async function logoutAndCompareExport(h: MountedHome): Promise<{ problems: string[]; logout: RunResult; ms: { copy: number; logout: number; export: number } }> {
  const copy = path.join(h.base, 'at-logout');
  const exported = path.join(h.base, 'exported');
  await fsp.mkdir(copy);
  const t0 = Date.now();
  await runOk('cp', ['-a', '--', h.mountpoint + '/.', copy + '/'], { timeoutMs: 300_000 });
  const t1 = Date.now();
  const logout = await h.logout();
  const t2 = Date.now();
  const problems: string[] = [];
  if (logout.code !== 0) problems.push(`logout exited ${logout.code}: ${logout.stderr.trim()}`);
  if (await h.isMounted()) problems.push('still mounted after logout');
  const ex = await h.cli('export', h.repo, h.user, exported);
  const ms = { copy: t1 - t0, logout: t2 - t1, export: Date.now() - t2 };
  if (ex.code !== 0) {
    problems.push(`export exited ${ex.code}: ${ex.stderr.trim()}`);
    return { problems, logout, ms };
  }
  const diff = await run('diff', ['-r', '--no-dereference', copy, exported], { timeoutMs: 300_000 });
  if (diff.code !== 0) problems.push(`diff -r: ${(diff.stdout + diff.stderr).slice(0, 4000)}`);
  const rs = await run('rsync', ['-a', '--dry-run', '--itemize-changes', copy + '/', exported + '/'], { timeoutMs: 300_000 });
  if (rs.code !== 0 || rs.stdout.trim()) problems.push(`rsync -a --itemize-changes (${rs.code}): ${(rs.stdout + rs.stderr).slice(0, 4000)}`);
  return { problems, logout, ms };
}
