/**
 * The roamfs daemon process: `node dist/mount/daemon-main.js --user U --repo R --cache C
 * ... MOUNTPOINT`. Started (detached) by `roamfs mount`; its command line names the user and
 * the mountpoint so `ps` shows which daemon serves which home. When ROAMFS_READY_FD is set,
 * one JSON line on that fd says `{"ready":true}` or `{"error":"...","code":"..."}`.
 */
import { closeSync, writeSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { RoamfsError } from '../src/core/errors.js';
import { startDaemon, type DaemonArgs } from './daemon.js';

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

const num = (s: string | undefined) => (s === undefined ? undefined : Number(s));
const interval = v['snapshot-interval-ms'];
const prefetchDelay = v['prefetch-delay-ms'];
const args: DaemonArgs = {
  repo: v.repo!,
  user: v.user!,
  mountpoint: positionals[0]!,
  cache: v.cache!,
  uid: Number(v.uid),
  gid: Number(v.gid),
  logToStderr: v.stderr ?? false,
  debug: v.debug ?? false,
  profile: {
    ...(interval === undefined ? {} : { snapshotIntervalMs: interval === 'off' ? null : Number(interval) }),
    commit: {
      idleMs: num(v['idle-ms']) ?? 10_000,
      maxLagMs: num(v['max-lag-ms']) ?? 300_000,
      retryBaseMs: 1_000,
      retryMaxMs: 60_000,
    },
    ...(v['flush-timeout-ms'] ? { flushTimeoutMs: Number(v['flush-timeout-ms']) } : {}),
    ...(prefetchDelay === undefined ? {} : { prefetchDelayMs: prefetchDelay === 'off' ? null : Number(prefetchDelay) }),
  },
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
