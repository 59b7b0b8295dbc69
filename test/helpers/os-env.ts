/**
 * A sandbox for the OS-integration tests (test/os/): real users, PAM service files, mount(8)
 * and real roamfs daemons, everything under one temp directory BASE and undone in teardown
 * even when the test failed:
 *
 *   BASE/repo          repository            BASE/run     ROAMFS_RUN_DIR of every call
 *   BASE/home/USER     the users' homes      BASE/cache   ROAMFS_CACHE_ROOT
 *   BASE/roamfs        ROAMFS_CLI wrapper    BASE/roamfs.env   the config the scripts read
 *
 * Cleanup (LIFO, each step even if an earlier one failed): every roamfs mount below BASE is
 * logged out (`roamfs logout`), or else its daemon killed (pid from the mount records in
 * BASE/run, checked against its command line) and the mount lazily unmounted; tmpfs fallback
 * homes are unmounted; PAM files and the /sbin helper link removed; users deleted (userdel
 * without -r: a home may still be a mount); BASE removed only when nothing is mounted below it.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/test/helpers -> the checkout */
export const CHECKOUT = path.resolve(here, '../../..');
export const OS_DIR = path.join(CHECKOUT, 'mount/os');
export const ROAMFS_JS = path.join(CHECKOUT, 'bin/roamfs.js');
/** What the installed PREFIX/bin/roamfs runs (scripts/install.sh). */
export const ROAMFS_SH = path.join(CHECKOUT, 'bin/roamfs');

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a program; never throws for a non-zero exit (code -1 when killed). */
export function run(file: string, args: readonly string[], o: { env?: NodeJS.ProcessEnv; timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { env: o.env ?? process.env, maxBuffer: 64 * 1024 * 1024, timeout: o.timeoutMs ?? 120_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; killed?: boolean; signal?: unknown }) | null;
      if (e && typeof e.code !== 'number' && !e.killed && e.signal == null) return reject(e);
      resolve({ code: e ? (typeof e.code === 'number' ? e.code : -1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
    if (o.input !== undefined) child.stdin?.end(o.input);
  });
}

export async function runOk(file: string, args: readonly string[], o: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<RunResult> {
  const r = await run(file, args, o);
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`.slice(0, 6000));
  return r;
}

export function oneLine(r: RunResult): string {
  return `exit ${r.code}: ${(r.stderr + r.stdout).trim()}`;
}

export async function exists(p: string): Promise<boolean> {
  return fsp.lstat(p).then(
    () => true,
    () => false,
  );
}

export async function which(cmd: string): Promise<string | undefined> {
  for (const d of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(d, cmd);
    if (await fsp.access(p, 1).then(() => true, () => false)) return p;
  }
  return undefined;
}

export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
}

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export async function mountTable(): Promise<MountEntry[]> {
  const text = await fsp.readFile('/proc/self/mountinfo', 'utf8');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [left, right] = line.split(' - ');
      const f = left!.split(' ');
      const r = (right ?? '').split(' ');
      return { mountpoint: unescape(f[4]!), fstype: r[0] ?? '', source: unescape(r[1] ?? '') };
    });
}

export async function mountsAt(p: string): Promise<MountEntry[]> {
  return (await mountTable()).filter((m) => m.mountpoint === p);
}

export async function mountsBelow(dir: string): Promise<MountEntry[]> {
  return (await mountTable()).filter((m) => m.mountpoint === dir || m.mountpoint.startsWith(dir + '/'));
}

export async function waitFor(what: string, pred: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export interface TestUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
}

/** /etc/passwd and friends are locked by each useradd/userdel: concurrent test files retry. */
async function withPasswdLock(file: string, args: string[]): Promise<RunResult> {
  let r: RunResult = { code: -1, stdout: '', stderr: '' };
  for (let i = 0; i < 40; i++) {
    r = await run(file, args);
    if (r.code === 0 || !/lock|try again/i.test(r.stderr)) return r;
    await new Promise((res) => setTimeout(res, 250));
  }
  return r;
}

export class OsEnv {
  readonly id = randomBytes(4).toString('hex');
  readonly repo: string;
  readonly run: string;
  readonly cache: string;
  readonly homes: string;
  readonly cli: string;
  readonly config: string;
  private readonly cleanups: Array<{ what: string; fn: () => Promise<void> }> = [];

  private constructor(readonly base: string) {
    this.repo = path.join(base, 'repo');
    this.run = path.join(base, 'run');
    this.cache = path.join(base, 'cache');
    this.homes = path.join(base, 'home');
    this.cli = path.join(base, 'roamfs');
    this.config = path.join(base, 'roamfs.env');
  }

  /** A new sandbox; its cleanup is registered with t.teardown. */
  static async create(t: ExecutionContext, name: string): Promise<OsEnv> {
    const base = await fsp.mkdtemp(path.join(os.tmpdir(), `roamfs-os-${name}-`));
    // the test users must reach their homes below it
    await fsp.chmod(base, 0o755);
    const env = new OsEnv(base);
    t.teardown(() => env.cleanup((m) => t.log(m)));
    await fsp.mkdir(env.homes, { mode: 0o755 });
    // As scripts/install.sh writes PREFIX/bin/roamfs.
    await fsp.writeFile(env.cli, `#!/bin/sh\nROAMFS_NODE=\${ROAMFS_NODE:-${process.execPath}}\nexport ROAMFS_NODE\nexec ${ROAMFS_SH} "$@"\n`, { mode: 0o755 });
    await env.roamfsOk(['init', env.repo]);
    return env;
  }

  /** Run fn at cleanup (before what was registered earlier). */
  onCleanup(what: string, fn: () => Promise<void>): void {
    this.cleanups.push({ what, fn });
  }

  /** Environment for the CLI and the scripts: this sandbox's run dir, CLI and config. */
  env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
    return { ...process.env, ROAMFS_RUN_DIR: this.run, ROAMFS_CLI: this.cli, ROAMFS_CONFIG: this.config, ...extra };
  }

  roamfs(args: string[], timeoutMs = 120_000): Promise<RunResult> {
    return run(process.execPath, [ROAMFS_JS, ...args], { env: this.env(), timeoutMs });
  }

  roamfsOk(args: string[], timeoutMs = 120_000): Promise<RunResult> {
    return runOk(process.execPath, [ROAMFS_JS, ...args], { env: this.env(), timeoutMs });
  }

  /** The config file the scripts read (KEY=VALUE), with this sandbox's paths as defaults. */
  async writeConfig(settings: Record<string, string> = {}, file = this.config): Promise<string> {
    const all: Record<string, string> = {
      ROAMFS_REPO: this.repo,
      ROAMFS_CACHE_ROOT: this.cache,
      ROAMFS_RUN_DIR: this.run,
      ROAMFS_CLI: this.cli,
      ROAMFS_SNAPSHOT_INTERVAL: '1s',
      ROAMFS_IDLE: '1s',
      ROAMFS_PREFETCH_DELAY: 'off',
      ROAMFS_PAM_METHOD: 'direct',
      ROAMFS_NEW_USER_SKEL: '',
      ...settings,
    };
    await fsp.writeFile(file, `# test config\n${Object.entries(all).map(([k, v]) => `${k}=${v}`).join('\n')}\n`);
    return file;
  }

  /**
   * A real user (useradd, unique name) whose home in /etc/passwd is BASE/home/NAME (created
   * empty and owned by the user unless createHome is false). Deleted at cleanup.
   */
  async user(o: { createHome?: boolean } = {}): Promise<TestUser> {
    const name = `rfs${randomBytes(5).toString('hex')}`;
    const home = path.join(this.homes, name);
    const r = await withPasswdLock('useradd', ['--no-create-home', '--home-dir', home, '--shell', '/bin/sh', '--comment', 'roamfs test user', name]);
    if (r.code !== 0) throw new Error(`useradd ${name}: ${oneLine(r)}`);
    this.onCleanup(`userdel ${name}`, async () => {
      const d = await withPasswdLock('userdel', [name]);
      if (d.code !== 0 && !/does not exist/.test(d.stderr)) throw new Error(`userdel ${name}: ${oneLine(d)}`);
      // USERGROUPS_ENAB normally removes the group with the user; make sure
      const g = await run('getent', ['group', name]);
      if (g.code === 0) await withPasswdLock('groupdel', [name]);
    });
    const id = (await runOk('id', ['-u', name])).stdout.trim();
    const gid = (await runOk('id', ['-g', name])).stdout.trim();
    const u = { name, uid: Number(id), gid: Number(gid), home };
    if (o.createHome ?? true) {
      await fsp.mkdir(home, { mode: 0o700 });
      await fsp.chown(home, u.uid, u.gid);
    }
    return u;
  }

  /** Import a small profile for user: files name -> content. */
  async profile(user: string, files: Record<string, string> = { 'hello.txt': 'hello from the repository\n' }): Promise<void> {
    const src = path.join(this.base, `src-${user}`);
    await fsp.mkdir(src, { recursive: true, mode: 0o700 });
    for (const [n, c] of Object.entries(files)) {
      await fsp.mkdir(path.dirname(path.join(src, n)), { recursive: true });
      await fsp.writeFile(path.join(src, n), c);
    }
    await this.roamfsOk(['import', this.repo, user, src, '-m', 'test profile']);
  }

  /** `roamfs log --json` of user's profile (one JSON object a line, newest first). */
  async log(user: string): Promise<Array<{ id: string; seq: number; message?: string }>> {
    const out = (await this.roamfsOk(['log', this.repo, user, '--json'])).stdout;
    return out
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as { id: string; seq: number; message?: string });
  }

  /** Export the head of user's profile into a new dir; returns it. */
  async export(user: string): Promise<string> {
    const out = path.join(this.base, `export-${user}-${randomBytes(3).toString('hex')}`);
    await this.roamfsOk(['export', this.repo, user, out]);
    return out;
  }

  /** `roamfs status MP --json`, or null when no daemon serves it. */
  async status(mp: string): Promise<Record<string, unknown> | null> {
    const r = await this.roamfs(['status', mp, '--json'], 30_000);
    return r.code === 0 ? (JSON.parse(r.stdout) as Record<string, unknown>) : null;
  }

  /** The pids of the daemons recorded in BASE/run. */
  async daemonPids(): Promise<number[]> {
    const names = await fsp.readdir(this.run).catch(() => [] as string[]);
    const out: number[] = [];
    for (const n of names.filter((x) => x.endsWith('.json'))) {
      try {
        const r = JSON.parse(await fsp.readFile(path.join(this.run, n), 'utf8')) as { pid: number };
        out.push(r.pid);
      } catch {
        // being written or removed
      }
    }
    return out;
  }

  /**
   * A PAM service /etc/pam.d/roamfs-test-ID whose session line is the shipped one
   * (mount/os/pam.d-roamfs) with the script of this checkout and `--config`/`--log` of this
   * sandbox. Returns the service name. Removed at cleanup.
   */
  async pamService(config = this.config): Promise<{ service: string; log: string }> {
    const shipped = await fsp.readFile(path.join(OS_DIR, 'pam.d-roamfs'), 'utf8');
    const line = shipped.split('\n').find((l) => /^session\s/.test(l));
    if (!line) throw new Error('mount/os/pam.d-roamfs has no session line');
    const log = path.join(this.base, 'pam.log');
    const session = line.replace('/usr/local/lib/roamfs/pam_roamfs.sh', path.join(OS_DIR, 'pam_roamfs.sh')) + ` --config ${config} --log ${log}`;
    const service = `roamfs-test-${this.id}-${randomBytes(2).toString('hex')}`;
    const file = path.join('/etc/pam.d', service);
    this.onCleanup(`rm ${file}`, () => fsp.rm(file, { force: true }));
    await fsp.writeFile(file, `# roamfs test service (removed by the test's teardown)\nauth required pam_permit.so\naccount required pam_permit.so\n${session}\n`);
    return { service, log };
  }

  /** The session counter of pam_roamfs.sh for user ("COUNT MODE"), or null. */
  async sessions(user: string): Promise<string | null> {
    return fsp.readFile(path.join(this.run, 'sessions', user), 'utf8').then(
      (s) => s.trim(),
      () => null,
    );
  }

  async cleanup(log: (m: string) => void = () => {}): Promise<void> {
    const errors: string[] = [];
    // 1. homes: log out what is still mounted (a failed test), then force
    try {
      await this.unmountAll(log);
    } catch (err) {
      errors.push(`unmount: ${String(err)}`);
    }
    // 2. registered cleanups, newest first
    for (const c of this.cleanups.reverse()) {
      try {
        await c.fn();
      } catch (err) {
        errors.push(`${c.what}: ${String(err)}`);
      }
    }
    // 3. the sandbox, only when nothing is mounted below it
    const left = await mountsBelow(this.base);
    if (left.length === 0) await fsp.rm(this.base, { recursive: true, force: true });
    else errors.push(`left ${this.base} in place: still mounted ${left.map((m) => m.mountpoint).join(' ')}`);
    if (errors.length) throw new Error(`cleanup: ${errors.join('; ')}`);
  }

  private async unmountAll(log: (m: string) => void): Promise<void> {
    for (const m of (await mountsBelow(this.base)).reverse()) {
      if (m.fstype === 'fuse.roamfs') {
        log(`cleanup: logging out ${m.mountpoint}`);
        const r = await this.roamfs(['logout', m.mountpoint], 60_000);
        if (r.code !== 0) log(`cleanup: logout failed (${oneLine(r)})`);
      }
    }
    for (const pid of await this.daemonPids()) {
      const cmd = await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
      if (cmd.includes('daemon-main') && cmd.includes(this.base)) {
        log(`cleanup: killing daemon ${pid}`);
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    for (const m of (await mountsBelow(this.base)).reverse()) {
      log(`cleanup: unmounting ${m.mountpoint} (${m.fstype})`);
      const u = await run('umount', [m.mountpoint], { timeoutMs: 30_000 });
      if (u.code !== 0) await run('umount', ['-l', m.mountpoint], { timeoutMs: 30_000 });
    }
  }
}
