/**
 * The fast login path: `roamfs mount` starts the daemon at once (bin/roamfs, the shell launcher
 * users run, and bin/roamfs.js through mount/launch.cts: both are tested), and the daemon parses
 * the arguments and the configuration. Errors found there are still one line on
 * stderr with the CLI's exit status (2 usage, 1 configuration), nothing is mounted and no daemon
 * is left; a daemon that dies before answering is pointed at CACHE/daemon.stderr, where its
 * stderr goes; and what runs is the bundles in dist/bundle/.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROAMFS_BIN, ROAMFS_SH, homeAt, mountedHome, mountsAt, run, type MountedHome, type RunResult } from '../helpers/mounted-home.js';

const BUNDLE_DIR = path.resolve(path.dirname(ROAMFS_BIN), '..', 'dist', 'bundle');

/** The two ways to run `roamfs mount` (the command line before its arguments); both must behave the same. */
const LAUNCHERS: Array<[string, string[]]> = [
  ['bin/roamfs', [ROAMFS_SH]],
  ['node bin/roamfs.js', [process.execPath, ROAMFS_BIN]],
];

/** Live processes whose command line names `mention`. */
async function processesNaming(mention: string): Promise<number[]> {
  const out: number[] = [];
  for (const d of await fsp.readdir('/proc')) {
    if (!/^\d+$/.test(d) || Number(d) === process.pid) continue;
    const argv = (await fsp.readFile(`/proc/${d}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (argv.includes(mention)) out.push(Number(d));
  }
  return out;
}

/** processesNaming, once those that are exiting (they answered, then exit) are gone; 10 s at most. */
async function leftNaming(mention: string): Promise<number[]> {
  const end = Date.now() + 10_000;
  for (;;) {
    const left = await processesNaming(mention);
    if (left.length === 0 || Date.now() > end) return left;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function unmounted(t: ExecutionContext): Promise<MountedHome> {
  return mountedHome(t, { prefix: 'roamfs-login-path-', mount: false, populate: (src) => fsp.writeFile(path.join(src, 'f'), 'x') });
}

/** One line on stderr matching `msg`, exit `code`, nothing mounted, no daemon for the mountpoint. */
async function failsWith(t: ExecutionContext, h: MountedHome, r: RunResult, code: number, msg: RegExp): Promise<void> {
  t.is(r.code, code, r.stderr);
  const lines = r.stderr.split('\n').filter((l) => l.trim());
  t.is(lines.length, 1, `one line on stderr: ${JSON.stringify(r.stderr)}`);
  t.regex(lines[0] ?? '', /^roamfs: /);
  t.regex(lines[0] ?? '', msg);
  t.is(r.stdout, '');
  t.deepEqual(await mountsAt(h.mountpoint), [], 'nothing mounted');
  t.deepEqual(await leftNaming(h.mountpoint), [], 'no daemon left for that mountpoint');
}

test('mount --help is the CLI\'s help, on stdout, exit 0', async (t) => {
  const r = await run(ROAMFS_SH, ['mount', '--help'], { env: homeAt(os.tmpdir(), 'alice', []).env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^Usage: roamfs mount \[options\] \[REPO\] USER MOUNTPOINT/);
  t.regex(r.stdout, /--snapshot-interval <duration>/);
  t.regex(r.stdout, /roamfs config --print shows them/);
});

for (const [name, cmd] of LAUNCHERS) {
  const launch = (args: string[], o: { env: NodeJS.ProcessEnv; cwd?: string }) => run(cmd[0]!, [...cmd.slice(1), ...args], o);

  test(`${name}: the daemon keeps none of its caller's descriptors (a login script's lock must not outlive the login)`, async (t) => {
    const h = await unmounted(t);
    const lock = path.join(h.base, 'caller.lock');
    // What pam_roamfs.sh does: fd 9 on a lock file, held while it runs roamfs mount.
    const r = await run('/bin/bash', ['-c', 'exec 9>>"$0" 7</dev/zero; exec "$@"', lock, ...cmd, 'mount', h.repo, h.user, h.mountpoint, '--cache', h.cache], { env: h.env });
    t.is(r.code, 0, r.stderr);
    const pid = Number(/daemon pid (\d+)/.exec(r.stdout)![1]);
    const fds = await fsp.readdir(`/proc/${pid}/fd`);
    const targets = await Promise.all(fds.map((fd) => fsp.readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')));
    t.false(targets.includes(lock), `the daemon holds ${lock}`);
    t.false(targets.includes('/dev/zero'));
    t.is((await h.logout()).code, 0);
  });

  test(`${name}: a bad value in the configuration file: one line naming file and key, exit 1`, async (t) => {
    const h = await unmounted(t);
    const conf = path.join(h.base, 'roamfs.json');
    await fsp.writeFile(conf, JSON.stringify({ snapshotIntervalMs: 'soon' }));
    const r = await launch(['mount', h.repo, h.user, h.mountpoint, '--cache', h.cache], { env: { ...h.env, ROAMFS_CONFIG: conf } });
    await failsWith(t, h, r, 1, new RegExp(`^roamfs: config ${conf.replace(/[.]/g, '\\.')}: snapshotIntervalMs: `));
  });

  test(`${name}: an unknown key in the configuration file, a bad variable, a missing file: exit 1, one line each`, async (t) => {
    const h = await unmounted(t);
    const conf = path.join(h.base, 'roamfs.json');
    await fsp.writeFile(conf, JSON.stringify({ snapshotInterval: '30s' }));
    const args = ['mount', h.repo, h.user, h.mountpoint, '--cache', h.cache];
    await failsWith(t, h, await launch(args, { env: { ...h.env, ROAMFS_CONFIG: conf } }), 1, /unknown key "snapshotInterval" \(did you mean snapshotIntervalMs\?\)/);
    await failsWith(t, h, await launch(args, { env: { ...h.env, ROAMFS_QUOTA_HARD: 'lots' } }), 1, /^roamfs: config environment ROAMFS_QUOTA_HARD: quotaHardBytes: /);
    await failsWith(t, h, await launch(args, { env: { ...h.env, ROAMFS_CONFIG: path.join(h.base, 'nope.json') } }), 1, /nope\.json: does not exist \(named by ROAMFS_CONFIG\)/);
    t.false(await fsp.stat(h.cache).then(() => true, () => false), 'no cache directory made for a mount that never started');
  });

  test(`${name}: usage errors: exit 2 and commander's one line; argument errors: exit 1`, async (t) => {
    const h = await unmounted(t);
    const cli = (...a: string[]) => launch(['mount', ...a], { env: h.env });
    await failsWith(t, h, await cli(h.repo, h.user, h.mountpoint, '--no-such-flag'), 2, /^roamfs: unknown option '--no-such-flag'$/);
    await failsWith(t, h, await cli(h.repo, h.user, h.mountpoint, '--snapshot-interval'), 2, /^roamfs: option '--snapshot-interval <duration>' argument missing$/);
    await failsWith(t, h, await cli(h.repo, h.user, h.mountpoint, '--idle', 'forever'), 1, /^roamfs: --idle: /);
    await failsWith(t, h, await cli(h.repo, 'no/body', h.mountpoint), 1, /^roamfs: invalid user name "no\/body"/);
    await failsWith(t, h, await cli(h.mountpoint), 1, /^roamfs: mount takes \[REPO\] USER MOUNTPOINT \(got 1 argument\)$/);
    const none = await cli();
    t.is(none.code, 2);
    t.is(none.stderr, "roamfs: missing required argument 'args'\n");
  });

  test(`${name}: a mounted home is served by the daemon bundle, with stderr in CACHE/daemon.stderr; relative paths are resolved`, async (t) => {
    const h = await unmounted(t);
    // Relative REPO, MOUNTPOINT and --cache, from the base directory.
    const r = await launch(['mount', 'repo', h.user, 'home', '--cache', 'cache'], { env: h.env, cwd: h.base });
    t.is(r.code, 0, r.stderr);
    t.is(r.stderr, '');
    t.regex(r.stdout, new RegExp(`^alice's profile is mounted at ${h.mountpoint} \\(daemon pid (\\d+); log ${path.join(h.cache, 'roamfs.log')}; log out with: roamfs logout ${h.mountpoint}\\)\\n$`));
    const pid = Number(/daemon pid (\d+)/.exec(r.stdout)![1]);
    t.is((await h.status()).pid, pid);
    const argv = (await fsp.readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0');
    t.true(argv.includes(path.join(BUNDLE_DIR, 'daemon-main.js')), argv.join(' '));
    t.true(argv.includes(h.user) && argv.includes('home'), 'the command line names user and mountpoint');
    t.is(await fsp.readlink(`/proc/${pid}/fd/2`), path.join(h.cache, 'daemon.stderr'));
    t.is(await fsp.readFile(h.p('f'), 'utf8'), 'x');
    t.is((await h.logout()).code, 0);
  });

  test(`${name}: a daemon that dies before it answers: the CLI points at CACHE/daemon.stderr, which has what it printed`, async (t) => {
    const h = await unmounted(t);
    // A preload that makes the daemon die right after its stderr went to CACHE/daemon.stderr.
    const probe = path.join(h.base, 'die.cjs');
    await fsp.writeFile(
      probe,
      `const fs = require('fs');
  const open = fs.openSync;
  fs.openSync = function (p, ...rest) {
    const fd = open.call(this, p, ...rest);
    if (String(p).endsWith('daemon.stderr') && fd === 2) setImmediate(() => { console.error('probe: the daemon dies now'); process.exit(9); });
    return fd;
  };
  `,
    );
    const r = await launch(['mount', h.repo, h.user, h.mountpoint, '--cache', h.cache], { env: { ...h.env, NODE_OPTIONS: `--require ${probe}` } });
    await failsWith(t, h, r, 1, new RegExp(`^roamfs: the daemon exited before the mount was ready \\(see ${path.join(h.cache, 'daemon.stderr')}\\)$`));
    t.regex(await fsp.readFile(path.join(h.cache, 'daemon.stderr'), 'utf8'), /probe: the daemon dies now/);
  });
}

test('--foreground: the daemon runs in the CLI process, says so on stderr and ends with the logout; its errors are the same one line', async (t) => {
  const h = await unmounted(t);
  const child = spawn(ROAMFS_SH, ['mount', h.repo, h.user, h.mountpoint, '--cache', h.cache, '--foreground'], { env: h.env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  let stderr = '';
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (stderr.includes('profile is mounted')) resolve();
    });
    void exited.then((code) => reject(new Error(`exited ${code} before the mount: ${stderr}`)));
  });
  t.regex(stderr, new RegExp(`^roamfs: alice's profile is mounted at ${h.mountpoint} \\(stop with: roamfs logout ${h.mountpoint}\\)$`, 'm'));
  t.is((await h.status()).pid, child.pid!, 'served by the CLI process itself');
  t.is(await fsp.readFile(h.p('f'), 'utf8'), 'x');
  t.is((await h.logout()).code, 0);
  t.is(await exited, 0);
  t.is(stdout, '');
  t.regex(stderr, /"msg":"logged out: everything is in the repository"/, 'the log goes to stderr');
  const bad = await run(ROAMFS_SH, ['mount', h.repo, h.user, path.join(h.base, 'nowhere'), '--foreground'], { env: h.env });
  t.is(bad.code, 1);
  t.is(bad.stderr, `roamfs: mountpoint ${path.join(h.base, 'nowhere')} does not exist\n`);
});

test('bin/roamfs runs the CLI bundle (through bin/roamfs.js) for every other command', async (t) => {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-login-path-'));
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  // A preload that records which file the process ran as its program, at exit.
  const probe = path.join(dir, 'probe.cjs');
  const out = path.join(dir, 'argv1');
  await fsp.writeFile(probe, `process.on('exit', () => require('fs').writeFileSync(${JSON.stringify(out)}, process.argv[1]));\n`);
  const env = { ...homeAt(dir, 'alice', []).env, NODE_OPTIONS: `--require ${probe}` };
  const r = await run(ROAMFS_SH, ['config', '--print'], { env });
  t.is(r.code, 0, r.stderr);
  t.regex(r.stdout, /^configuration file: /);
  t.is(await fsp.readFile(out, 'utf8'), path.join(BUNDLE_DIR, 'cli.js'));
});
