/**
 * Test helper process: mount a PassthroughVfs with mountFuse and serve it until told to stop.
 * The FUSE tests run it as a child so that the test process can use the mountpoint freely
 * (a process must never block on a mount it serves itself).
 *
 *   node dist/test/helpers/child-mount.js --mnt DIR --backing DIR
 *     [--slow-prefix P --slow-ms N]   delay ops on names starting with P by N ms
 *     [--op-timeout-ms N]             fuse-native per-op timeout (default: none)
 *     [--no-big-writes]               mount without big_writes / max_write
 *     [--hard-remove true]            mount with hard_remove
 *     [--opt OPTION]...               extra -o options
 *
 * Protocol: prints "ready" once mounted. Reads commands on stdin, one per line:
 *   stats    → prints "stats <json>" (PassthroughStats + op counters + mount options)
 *   invalidate PATH → FuseMount.invalidate(PATH), prints "invalidated PATH [error ...]"
 *   unmount  → unmounts, prints "unmounted", exits 0
 * SIGTERM / SIGINT / stdin EOF (parent gone) → unmount and exit.
 */
import { createInterface } from 'node:readline';

import { mountFuse, OpCounters } from '../../mount/fuse/mount.js';
import type { FuseMount, MountOptions } from '../../mount/fuse/mount.js';
import { PassthroughVfs } from './passthrough-vfs.js';

/** Flags without a value (besides --no-*). */
const BOOLEAN_FLAGS = new Set(['hard-remove', 'user-xattrs-only']);

function parseArgs(argv: string[]): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    const flag = key.startsWith('no-') || BOOLEAN_FLAGS.has(key);
    const value = flag ? 'true' : argv[++i];
    if (value === undefined) throw new Error(`missing value for ${a}`);
    out.set(key, [...(out.get(key) ?? []), value]);
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const one = (k: string) => args.get(k)?.at(-1);
  const mnt = one('mnt');
  const backing = one('backing');
  if (!mnt || !backing) throw new Error('--mnt and --backing are required');

  const slowMs = Number(one('slow-ms') ?? 0);
  const slowPrefix = one('slow-prefix');
  const vfs = new PassthroughVfs(backing, slowPrefix ? { slowPrefix, slowMs } : {});
  const counters = new OpCounters();
  const options: MountOptions = {
    counters,
    bigWrites: !args.has('no-big-writes'),
    hardRemove: args.has('hard-remove'),
    userXattrsOnly: args.has('user-xattrs-only'),
    opTimeoutMs: Number(one('op-timeout-ms') ?? 0),
    extraOptions: args.get('opt') ?? [],
    log: (line, err) => process.stderr.write(`child-mount: ${line} ${err instanceof Error ? err.stack : ''}\n`),
  };

  const mount: FuseMount = await mountFuse(mnt, vfs, options);
  let stopping: Promise<void> | undefined;
  const stop = (code: number) => {
    stopping ??= mount
      .unmount()
      .catch((err: unknown) => process.stderr.write(`child-mount: unmount failed: ${String(err)}\n`))
      .then(() => {
        process.stdout.write('unmounted\n');
        process.exit(code);
      });
    return stopping;
  };
  process.on('SIGTERM', () => void stop(0));
  process.on('SIGINT', () => void stop(0));

  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    const cmd = line.trim();
    if (cmd === 'stats') {
      const json = JSON.stringify({
        ...vfs.stats,
        counters: counters.snapshot(),
        maxInFlightOps: counters.maxInFlight,
        options: mount.options,
      });
      process.stdout.write(`stats ${json}\n`);
    } else if (cmd.startsWith('invalidate ')) {
      const p = cmd.slice('invalidate '.length);
      mount.invalidate(p).then(
        () => process.stdout.write(`invalidated ${p}\n`),
        (err: unknown) => process.stdout.write(`invalidated ${p} error ${String(err)}\n`),
      );
    } else if (cmd === 'unmount') {
      void stop(0);
    } else if (cmd !== '') {
      process.stderr.write(`child-mount: unknown command ${cmd}\n`);
    }
  });
  rl.on('close', () => void stop(0));
  process.stdout.write('ready\n');
}

main().catch((err: unknown) => {
  process.stderr.write(`child-mount: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
