/**
 * What bin/roamfs.js runs: the CLI bundle, or, for `roamfs mount`, the fast login path.
 *
 * Login time is mostly process start-up, and a login starts two processes: this one and the
 * daemon. So `roamfs mount` does nothing here but start the daemon at once: the daemon parses
 * the arguments with the same commander definition (mount/commands/mount.ts), loads the
 * configuration (file, environment, flags), checks everything, mounts, and answers on an
 * inherited pipe (ROAMFS_READY_FD): see `parseAnswer`. An error (usage, configuration, a failed
 * mount) is printed here as the one line `roamfs: ...` with its exit status, exactly as the CLI
 * would. bin/roamfs, the shell launcher users run, does the same without this process.
 *
 * `roamfs mount --help` (and --version) go to the CLI; `--foreground` runs the daemon's code in
 * this process (systemd's roamfs@.service).
 *
 * CommonJS (.cts) so that bin/roamfs.js loads it with a plain require (no ES module loader).
 */
import { spawn } from 'node:child_process';
import * as path from 'node:path';

/** The checkout: dist/mount/ (or dist/bundle/, inside the CLI bundle) -> ../.. */
const ROOT = path.resolve(__dirname, '..', '..');
const BUNDLE_DIR = path.join(ROOT, 'dist', 'bundle');
export const CLI_BUNDLE = path.join(BUNDLE_DIR, 'cli.js');
/** The daemon's command line names this file (and user and mountpoint): `ps`, tests and cleanup find daemons by it. */
export const DAEMON_BUNDLE = path.join(BUNDLE_DIR, 'daemon-main.js');
/** `node bundle-loader.cjs BUNDLE ARGS...` starts the daemon. */
const LOADER = path.join(ROOT, 'dist', 'mount', 'bundle-loader.cjs');

/** bin/roamfs.js: `args` are the command line after `roamfs`. */
export function main(args: string[]): void {
  const help = args.some((a) => a === '-h' || a === '--help' || a === '-V' || a === '--version');
  if (args[0] === 'mount' && !help) mount(args.slice(1));
  else run(CLI_BUNDLE, args);
}

/** `roamfs mount ARGS...` without help: foreground in this process, else start the daemon. */
export function mount(args: string[]): void {
  if (args.includes('--foreground')) run(DAEMON_BUNDLE, ['mount', ...args]);
  // Exit as soon as the answer is printed (stdout and stderr writes are synchronous on Linux):
  // Node's orderly teardown would add some 15-40 ms to every login.
  else void startDaemon(args).then((code) => process.exit(code));
}

function run(bundle: string, args: string[]): void {
  try {
    // Required here, not at the top: `roamfs mount` does not need it (nor node:crypto, which it loads).
    (require('./bundle-loader.cjs') as typeof import('./bundle-loader.cjs')).runBundle(bundle, args);
  } catch (err) {
    // A missing bundle is a broken build, said in one line; anything else is the bundle's own bug.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || (err as NodeJS.ErrnoException).path !== bundle) throw err;
    console.error(`roamfs: ${path.relative(ROOT, bundle)} is missing: the build is incomplete (run npm run build, or scripts/setup.sh)`);
    process.exitCode = 70;
  }
}

/**
 * The daemon's answer on the ready pipe, as text (bin/roamfs reads it with the shell):
 * maybe `cache DIR\n` first (where its stderr goes, so that a daemon that died without a word can
 * be pointed at), then `STATUS MESSAGE` up to the end: status 0 and the line to print on stdout,
 * or an exit status and the error for stderr. No status (the daemon died first): `status` null.
 */
export function parseAnswer(text: string): { status: number | null; message: string; cache?: string } {
  let cache: string | undefined;
  const m = /^cache ([^\n]*)\n/.exec(text);
  if (m) {
    cache = m[1];
    text = text.slice(m[0].length);
  }
  const a = /^(\d+) ([^]*)$/.exec(text);
  return { status: a ? Number(a[1]) : null, message: a ? a[2]! : '', ...(cache !== undefined ? { cache } : {}) };
}

/** Start a detached daemon for `roamfs mount ARGS...`, wait for its answer, print it; the exit status. */
async function startDaemon(args: string[]): Promise<number> {
  const env: NodeJS.ProcessEnv = { ...process.env, ROAMFS_READY_FD: '3' };
  // The daemon makes no TLS connections; loading a CA bundle costs every Node.js start ~40 ms.
  delete env.NODE_EXTRA_CA_CERTS;
  // stderr: /dev/null until the daemon knows its cache directory, then CACHE/daemon.stderr.
  const child = spawn(process.execPath, [LOADER, DAEMON_BUNDLE, 'mount', ...args], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'pipe'],
    env,
  });
  const text = await new Promise<string>((resolve) => {
    let buf = '';
    const pipe = child.stdio[3] as NodeJS.ReadableStream;
    pipe.setEncoding('utf8');
    pipe.on('data', (d: string) => (buf += d));
    pipe.on('end', () => resolve(buf));
  });
  child.unref();
  const a = parseAnswer(text);
  if (a.status === 0) console.log(a.message);
  else if (a.status !== null) console.error(`roamfs: ${a.message}`);
  else console.error(`roamfs: the daemon exited before the mount was ready${a.cache ? ` (see ${path.join(a.cache, 'daemon.stderr')})` : ''}`);
  return a.status ?? 1;
}
