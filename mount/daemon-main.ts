/**
 * The roamfs daemon process. Two ways to start it:
 *
 * - `roamfs mount ARGS...` (the login path, mount/launch.cts): `node dist/mount/bundle-loader.cjs
 *   dist/bundle/daemon-main.js mount ARGS...`, detached, with the CLI's own arguments, so its
 *   command line names the user and the mountpoint (`ps`). It parses them with the CLI's
 *   definition of `mount` (mount/commands/mount.ts), loads the configuration (mount/config.ts:
 *   file, environment, flags) and reports a usage or configuration error exactly as the CLI
 *   would: the one line and the exit status, through the ready pipe. With `--foreground` the
 *   same code runs inside the CLI process, logging to stderr (systemd).
 * - directly with resolved values (tests): `node dist/mount/daemon-main.js --user U --repo R
 *   --cache C --uid N --gid N [--snapshot-interval-ms N|off ...] MOUNTPOINT`; the schema's
 *   defaults apply apart from the timing flags.
 *
 * When ROAMFS_READY_FD is set, the answer goes to that fd (mount/launch.cts, `parseAnswer`, has
 * the format): maybe a `cache DIR` line, then the exit status and the one line for the launcher to
 * print, `0 alice's profile is mounted at ...` or `1 user "bob" not found ...`; then it is closed.
 * Plain text, so that bin/roamfs (a POSIX shell script: one Node start-up per login, not two) can
 * read it.
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { RoamfsError, ioError } from '../src/core/errors.js';
import { startDaemon, type DaemonArgs } from './daemon.js';
import { defaultConfig, logLevelOf, profileConfigOf, type Config } from './config.js';
import { createProgram, errorReport } from './program.js';
import { defineMountCommand, planMount, type MountPlan } from './commands/mount.js';

const readyFd = process.env.ROAMFS_READY_FD ? Number(process.env.ROAMFS_READY_FD) : null;
delete process.env.ROAMFS_READY_FD;

/** Text to the launcher, written synchronously (a process that exits right after loses async writes). */
function say(text: string): void {
  if (readyFd === null) return;
  try {
    writeSync(readyFd, text);
  } catch {
    // the launcher is gone (EPIPE): nobody to tell
  }
}

/** The final answer, `STATUS MESSAGE`; the fd is closed afterwards so the launcher sees end-of-file. */
function tell(exit: number, message: string): void {
  if (readyFd === null) return;
  say(`${exit} ${message}`);
  try {
    closeSync(readyFd);
  } catch {
    // already closed
  }
}

/** The answer for a start that failed: the error's one line (anything unexpected also in full to stderr). */
function tellFailure(err: Error): void {
  tell(1, err.message);
  if (!(err instanceof RoamfsError)) console.error(err);
}

function daemonArgs(c: Config, a: Pick<DaemonArgs, 'repo' | 'user' | 'mountpoint' | 'cache' | 'uid' | 'gid' | 'logToStderr'>): DaemonArgs {
  return { ...a, debug: c.debug, logLevel: logLevelOf(c), profile: profileConfigOf(c), metrics: { port: c.metricsPort, address: c.metricsAddress } };
}

/** The code cache of the bundle this process runs from (mount/bundle-loader.cts), if any. */
function saveCodeCache(): void {
  const save = (globalThis as Record<symbol, unknown>)[Symbol.for('roamfs.saveCodeCache')];
  if (typeof save === 'function') setImmediate(save as () => void);
}

/**
 * Send this process's stderr (fd 2, /dev/null until now) to CACHE/daemon.stderr, appending:
 * close fd 2 and open the file, which takes the lowest free fd. Nothing else runs meanwhile
 * (no I/O is in flight at this point, and the call is synchronous), so no other open can take it.
 */
function stderrTo(cache: string): void {
  const file = path.join(cache, 'daemon.stderr');
  try {
    mkdirSync(cache, { recursive: true, mode: 0o700 });
    closeSync(openSync(file, 'a', 0o600)); // fails here, with fd 2 untouched, if it cannot work
  } catch (err) {
    throw ioError(`cache directory ${cache}`, err);
  }
  closeSync(2);
  let fd = -1;
  try {
    fd = openSync(file, 'a', 0o600);
  } finally {
    // Never leave fd 2 free: the next file opened (the lock, an object) would get it, and
    // everything written to "stderr" would land there.
    if (fd !== 2) openSync('/dev/null', 'w');
  }
  if (fd !== 2) throw new Error(`stderr: ${file} opened as fd ${fd}, not 2`);
}

/** The login path: `mount ARGS...` as the CLI got them. */
async function mountMain(args: string[]): Promise<number> {
  const detached = readyFd !== null;
  let usage = '';
  // Detached, commander's usage errors go to the CLI instead of stderr.
  const program = createProgram(detached ? (line) => (usage += line) : undefined);
  let plan: MountPlan | undefined;
  defineMountCommand(program).action(async (positional: string[], o: Record<string, unknown>) => {
    plan = await planMount(positional, o);
  });
  const fail = (err: unknown): number => {
    const r = errorReport(err);
    const message = r.message ?? usage.trim().replace(/^roamfs: /, '');
    if (detached) tell(r.exit, message);
    else if (r.message !== null) console.error(`roamfs: ${r.message}`);
    return r.exit;
  };
  try {
    await program.parseAsync(['mount', ...args], { from: 'user' });
    if (detached) {
      stderrTo(plan!.cache);
      say(`cache ${plan!.cache.replaceAll('\n', '?')}\n`);
    }
  } catch (err) {
    return fail(err);
  }
  const p = plan!;
  const a = daemonArgs(p.config, { repo: p.repo, user: p.user, mountpoint: p.mountpoint, cache: p.cache, uid: p.uid, gid: p.gid, logToStderr: !detached });
  if (!detached) {
    try {
      const d = await startDaemon(a, (err) => {
        if (err) throw err;
        console.error(`roamfs: ${p.user}'s profile is mounted at ${p.mountpoint} (stop with: roamfs logout ${p.mountpoint})`);
      });
      return await d.done;
    } catch (err) {
      return fail(err);
    }
  }
  const d = await startDaemon(a, (err) => {
    if (err) return tellFailure(err);
    const log = path.join(p.cache, 'roamfs.log');
    tell(0, `${p.user}'s profile is mounted at ${p.mountpoint} (daemon pid ${process.pid}; log ${log}; log out with: roamfs logout ${p.mountpoint})`);
    saveCodeCache();
  });
  return d.done;
}

/** Started directly with resolved values (tests). */
async function directMain(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      repo: { type: 'string' },
      user: { type: 'string' },
      cache: { type: 'string' },
      uid: { type: 'string' },
      gid: { type: 'string' },
      'snapshot-interval-ms': { type: 'string' },
      'idle-ms': { type: 'string' },
      'max-lag-ms': { type: 'string' },
      'flush-timeout-ms': { type: 'string' },
      'prefetch-delay-ms': { type: 'string' },
      stderr: { type: 'boolean', default: false },
      debug: { type: 'boolean', default: false },
    },
  });
  const ms = (s: string | undefined, off: boolean): number | null | undefined => (s === undefined ? undefined : off && s === 'off' ? null : Number(s));
  const c: Config = defaultConfig();
  const snap = ms(v['snapshot-interval-ms'], true);
  if (snap !== undefined) c.snapshotIntervalMs = snap;
  const idle = ms(v['idle-ms'], false);
  if (typeof idle === 'number') c.idleMs = idle;
  const maxLag = ms(v['max-lag-ms'], false);
  if (typeof maxLag === 'number') c.maxLagMs = maxLag;
  const flush = ms(v['flush-timeout-ms'], false);
  if (typeof flush === 'number') c.flushTimeoutMs = flush;
  const prefetch = ms(v['prefetch-delay-ms'], true);
  if (prefetch !== undefined) c.prefetchDelayMs = prefetch;
  if (v.debug) c.debug = true;
  const a = daemonArgs(c, { repo: v.repo!, user: v.user!, mountpoint: positionals[0]!, cache: v.cache!, uid: Number(v.uid), gid: Number(v.gid), logToStderr: v.stderr ?? false });
  const d = await startDaemon(a, (err) => (err ? tellFailure(err) : tell(0, `daemon pid ${process.pid} serves ${a.mountpoint}`)));
  return d.done;
}

// A promise chain, not a top-level await: the bundle (dist/bundle, CommonJS) cannot have one.
const argv = process.argv.slice(2);
if (argv[0] === 'mount') {
  void mountMain(argv.slice(1)).then((code) => {
    // Detached: exit now (timers of a closed profile must not keep it alive). In the foreground
    // let stdout and stderr drain (they may be pipes to systemd).
    if (readyFd !== null) process.exit(code);
    process.exitCode = code;
  });
} else {
  void directMain(argv).then((code) => process.exit(code));
}
