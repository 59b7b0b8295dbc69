/**
 * The roamfs daemon process: `node dist/mount/daemon-main.js --user U --repo R --cache C
 * ... MOUNTPOINT`. Started (detached) by `roamfs mount`; its command line names the user and
 * the mountpoint so `ps` shows which daemon serves which home. When ROAMFS_READY_FD is set,
 * one JSON line on that fd says `{"ready":true}` or `{"error":"...","code":"..."}`.
 *
 * Settings: `roamfs mount` resolves the configuration (mount/config.ts: file, environment,
 * flags) and hands the effective values over in ROAMFS_DAEMON_SETTINGS (JSON of the schema's
 * keys). Without it (the daemon started directly, as tests do) the schema's defaults apply.
 * The timing flags below (milliseconds, "off") override either.
 */
import { closeSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { RoamfsError } from '../src/core/errors.js';
import { startDaemon, type DaemonArgs } from './daemon.js';
import { defaultConfig, logLevelOf, profileConfigOf, type Config } from './config.js';

const { values: v, positionals } = parseArgs({
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

const config: Config = { ...defaultConfig(), ...(process.env.ROAMFS_DAEMON_SETTINGS ? (JSON.parse(process.env.ROAMFS_DAEMON_SETTINGS) as Partial<Config>) : {}) };
delete process.env.ROAMFS_DAEMON_SETTINGS;
const ms = (s: string | undefined, off: boolean): number | null | undefined => (s === undefined ? undefined : off && s === 'off' ? null : Number(s));
const overrides: Partial<Config> = {};
const snap = ms(v['snapshot-interval-ms'], true);
if (snap !== undefined) overrides.snapshotIntervalMs = snap;
const idle = ms(v['idle-ms'], false);
if (typeof idle === 'number') overrides.idleMs = idle;
const maxLag = ms(v['max-lag-ms'], false);
if (typeof maxLag === 'number') overrides.maxLagMs = maxLag;
const flush = ms(v['flush-timeout-ms'], false);
if (typeof flush === 'number') overrides.flushTimeoutMs = flush;
const prefetch = ms(v['prefetch-delay-ms'], true);
if (prefetch !== undefined) overrides.prefetchDelayMs = prefetch;
if (v.debug) overrides.debug = true;
const c: Config = { ...config, ...overrides };

const args: DaemonArgs = {
  repo: v.repo!,
  user: v.user!,
  mountpoint: positionals[0]!,
  cache: v.cache!,
  uid: Number(v.uid),
  gid: Number(v.gid),
  logToStderr: v.stderr ?? false,
  debug: c.debug,
  logLevel: logLevelOf(c),
  profile: profileConfigOf(c),
  metrics: { port: c.metricsPort, address: c.metricsAddress },
};

const readyFd = process.env.ROAMFS_READY_FD ? Number(process.env.ROAMFS_READY_FD) : null;
/**
 * One line to `roamfs mount`, written synchronously: on a failed start the process exits right
 * after this, and an asynchronous stream write would be lost (the CLI then only knows that the
 * daemon exited, not why). The fd is closed afterwards so the CLI sees end-of-file.
 */
function tell(msg: object): void {
  if (readyFd === null) return;
  try {
    writeSync(readyFd, JSON.stringify(msg) + '\n');
  } catch {
    // the CLI is gone (EPIPE): nobody to tell
  }
  try {
    closeSync(readyFd);
  } catch {
    // already closed
  }
}

const daemon = await startDaemon(args, (err) => {
  if (!err) tell({ ready: true, pid: process.pid });
  else {
    tell({ error: err.message, code: err instanceof RoamfsError ? err.code : 'IO' });
    if (!(err instanceof RoamfsError)) console.error(err);
  }
});
process.exit(await daemon.done);
