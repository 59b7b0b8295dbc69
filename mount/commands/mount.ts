/**
 * `roamfs mount`: its arguments and flags, and their resolution into what one daemon serves.
 * Parsed in the daemon process (mount/daemon-main.ts: the CLI only starts it, see
 * mount/launch.cts), and by the CLI for `roamfs mount --help`. Light on purpose: commander, the
 * config schema and node built-ins, nothing of the daemon itself.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import type { Command } from 'commander';
import { RoamfsError } from '../../src/core/errors.js';
import { assertUserName } from '../../src/core/names.js';
import { DEFAULT_CONFIG_FILE, flagOptions, givenFlags, loadConfig, type Config } from '../config.js';

/** The settings `roamfs mount` takes as flags (names, help and defaults from the schema). */
const MOUNT_FLAGS = flagOptions([
  'cacheDir', 'uid', 'gid', 'snapshotIntervalMs', 'idleMs', 'maxLagMs', 'prefetchDelayMs', 'flushTimeoutMs', 'fsyncSnapshotDelayMs',
  'excludeAdd', 'excludeRemove', 'excludeDefaults', 'quotaSoftBytes', 'quotaHardBytes',
  'sessions', 'readOnly', 'leaseTtlMs', 'leaseWaitMs',
  'metricsPort', 'metricsAddress', 'logLevel', 'debug',
]);

/** Everything a daemon needs to serve one home; paths absolute. */
export interface MountPlan {
  user: string;
  repo: string;
  mountpoint: string;
  cache: string;
  uid: number;
  gid: number;
  /** Stay attached and log to stderr (systemd). */
  foreground: boolean;
  /** The effective configuration (file, environment, flags). */
  config: Config;
}

/** The `mount` command with its arguments, flags and help; the caller adds the action. */
export function defineMountCommand(program: Command): Command {
  const mount = program
    .command('mount')
    .description("mount USER's profile from REPO (default: the configured repository) at MOUNTPOINT; returns when the home is ready, leaving the daemon running")
    .usage('[options] [REPO] USER MOUNTPOINT')
    .argument('<args...>', 'REPO (a repository directory; optional when configured), USER, MOUNTPOINT (an empty directory, e.g. /home/USER)')
    .option('--foreground', 'stay attached and log to stderr (for systemd)');
  for (const f of MOUNT_FLAGS) {
    if (f.list) mount.option(f.syntax, f.help, (v: string, prev: string[] | undefined) => [...(prev ?? []), v]);
    else mount.option(f.syntax, f.help);
  }
  mount.addHelpText('after', `\nSettings come from ${DEFAULT_CONFIG_FILE} (or ROAMFS_CONFIG), then ROAMFS_* variables, then these flags: roamfs config --print shows them.`);
  return mount;
}

/**
 * The action's half: check the arguments, load the configuration (file, environment, flags)
 * and resolve paths and owner. Every failure is a one-line RoamfsError.
 */
export async function planMount(positional: string[], o: Record<string, unknown>): Promise<MountPlan> {
  if (positional.length < 2 || positional.length > 3) {
    throw new RoamfsError('INVALID_ARGUMENT', `mount takes [REPO] USER MOUNTPOINT (got ${positional.length} argument${positional.length === 1 ? '' : 's'})`);
  }
  const [repoArg, user, mountpoint] = positional.length === 3 ? positional : [undefined, ...positional];
  assertUserName(user!);
  const { config: c } = await loadConfig({ flags: givenFlags(o, MOUNT_FLAGS), args: repoArg === undefined ? {} : { repository: repoArg } });
  if (!c.repository) throw new RoamfsError('INVALID_ARGUMENT', `no repository: give REPO, or set "repository" in ${DEFAULT_CONFIG_FILE} or ROAMFS_REPO`);
  const mp = path.resolve(mountpoint!);
  let uid = c.uid ?? undefined;
  let gid = c.gid ?? undefined;
  if (uid === undefined || gid === undefined) {
    const st = await fsp.stat(mp).catch(() => null);
    uid ??= st?.uid ?? 0;
    gid ??= st?.gid ?? 0;
  }
  return {
    user: user!,
    repo: path.resolve(c.repository),
    mountpoint: mp,
    // A read-only session has its own cache by default, so that it can run beside a read-write one.
    cache: path.resolve(c.cacheDir ?? path.join(c.cacheRoot, c.readOnly ? `${user!}.ro` : user!)),
    uid,
    gid,
    foreground: o.foreground === true,
    config: c,
  };
}
