/**
 * One user on two desktops, seeded random runs against a model of lost updates (no FUSE; one
 * in-memory repository; each desktop its own cache directory, change log and lease clock).
 *
 * Every write puts a unique token in a file. A token may disappear from the profile only if a
 * desktop that *showed* it overwrote, deleted or renamed over it (it knowingly replaced it), or
 * if it was written after its desktop's last durable snapshot and that desktop was killed
 * (the stated bound). Everything else must be in the repository at the end: at its path or in
 * a conflict copy. Between the steps, desktops snapshot, commit, pick up each other's commits,
 * are killed and recovered, lose the repository for a while, and (exclusive policy) are
 * suspended until their lease expires and another desktop takes the profile over.
 *
 * ROAMFS_MODEL_SEEDS=N runs N seeds per policy instead of the default.
 */
import { Rng } from '../../scripts/lib/rng.js';
import test, { type ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { RoamfsError } from '../../src/core/errors.js';
import { nullLogger } from '../../src/core/log.js';
import type { Backend } from '../../src/repository/backend.js';
import { Repository } from '../../src/repository/repository.js';
import { Profile } from '../../src/profile.js';
import { DEFAULT_COMMIT_POLICY } from '../../src/commit/policy.js';
import type { LeasePolicy } from '../../src/repository/lease.js';
import { contentsOf, headModel, readText, smallProfileRepo, writeText } from '../helpers/small-profile.js';

const SEEDS = Number(process.env.ROAMFS_MODEL_SEEDS ?? 4);
const STEPS = 260;
const TTL = 3_000;
const FILES = ['/notes.txt', '/todo.txt', '/docs/a.txt', '/docs/b.txt', '/docs/deep/x', '/lazy/one', '/new1', '/docs/new2'];

/** r.int(n): 0 <= x < n (scripts/lib/rng.ts, the harnesses' seeded generator). */
function rng(seed: number) {
  const r = new Rng(seed);
  return { int: (n: number) => r.int(0, n - 1), pick: <T,>(xs: readonly T[]) => r.pick(xs) };
}

/** A backend that can be cut off (one desktop losing the repository). */
function cuttable(b: Backend): { backend: Backend; down: boolean } {
  const ctl = { down: false, backend: b };
  ctl.backend = new Proxy(b, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => (ctl.down ? Promise.reject(new RoamfsError('REPOSITORY_UNAVAILABLE', `repository unreachable (test)`)) : (v as (...a: unknown[]) => unknown).apply(target, args));
    },
  });
  return ctl;
}

interface Desk {
  name: string;
  cache: string;
  leaseClock: ManualClock;
  net: { backend: Backend; down: boolean };
  remote: Repository;
  profile: Profile | null;
  opening: Promise<Profile | null> | null;
  suspended: boolean;
  /** Step at which a cut-off repository comes back. */
  upAt: number;
  sessions: number;
  /** Since the last durable snapshot: tokens written, and tokens this desktop knowingly replaced. */
  unsnapWritten: Set<string>;
  unsnapReplaced: Set<string>;
}

async function run(t: ExecutionContext, seed: number, policy: LeasePolicy) {
  const r = rng(seed);
  const clock = new ManualClock();
  const shared = await smallProfileRepo(clock);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), `roamfs-model-${policy}-${seed}-`));
  const written = new Set<string>(['notes v1', 'todo v1', 'a v1', 'b v1', 'x v1', 'one v1', 'junk v1']);
  const replaced = new Set<string>();
  const crashLost = new Set<string>();
  const counts = { commits: 0, pickups: 0, kept: 0, kills: 0, refusedLogins: 0, takeovers: 0, outages: 0, conflicts: 0 };
  let tok = 0;

  const desks: Desk[] = [];
  for (const name of ['deska', 'deskb']) {
    const net = cuttable(shared.backend);
    desks.push({ name, cache: path.join(dir, name), leaseClock: new ManualClock(clock.now()), net, remote: await Repository.open(net.backend, { clock }), profile: null, opening: null, suspended: false, upAt: 0, sessions: 0, unsnapWritten: new Set(), unsnapReplaced: new Set() });
  }
  t.teardown(async () => {
    for (const d of desks) await d.profile?.halt().catch(() => {});
    await fsp.rm(dir, { recursive: true, force: true });
  });

  /** Time passes for everyone (a suspended desktop's lease clock stands still). */
  const advance = async (ms: number) => {
    for (let done = 0; done < ms; done += 100) {
      clock.advance(100);
      for (const d of desks) if (!d.suspended) d.leaseClock.advance(100);
      await new Promise((res) => setTimeout(res, 0));
    }
  };
  const snapshotted = (d: Desk) => {
    for (const x of d.unsnapReplaced) replaced.add(x);
    d.unsnapWritten.clear();
    d.unsnapReplaced.clear();
  };
  const login = async (d: Desk) => {
    d.sessions++;
    d.opening = Profile.open({
      remote: d.remote, user: 'alice', cacheDir: d.cache, clock, leaseClock: d.leaseClock, log: nullLogger,
      host: d.name, session: `${d.name}-${d.sessions}`, pid: d.sessions, uid: 1000, gid: 1000,
      config: { snapshotIntervalMs: null, prefetchDelayMs: null, commit: { ...DEFAULT_COMMIT_POLICY, idleMs: 1e12, maxLagMs: 1e12 }, sessions: { policy, ttlMs: TTL, waitMs: 2 * TTL } },
    }).then(
      (p) => p,
      (err: Error) => {
        if (!/in use on/.test(err.message) && !/unreachable/.test(err.message)) throw err;
        counts.refusedLogins++;
        return null;
      },
    );
    // An exclusive login may wait for the other desktop's lease to expire: let time pass.
    let settled = false;
    void d.opening.then(() => (settled = true), () => (settled = true));
    for (let i = 0; i < 20_000 && !settled; i++) await advance(100);
    if (!settled) throw new Error(`${d.name}: the login did not finish`);
    d.profile = await d.opening;
    d.opening = null;
    if (d.profile && d.profile.status().lease!.generation !== null && d.profile.status().lease!.generation! > 1) counts.takeovers++;
  };
  /** What the desktop shows at `file` (a token), null when nothing is there; undefined when it cannot tell (EIO: offline and not cached). */
  const shown = async (p: Profile, file: string): Promise<string | null | undefined> =>
    readText(p.vfs, file).catch((err: { errno?: string }) => (err.errno === 'ENOENT' || err.errno === 'ENOTDIR' ? null : undefined));
  /** An operation refused by the file system (offline and not cached, a directory gone): nothing changed. */
  const refused = (err: unknown) => ['ENOENT', 'ENOTDIR', 'EIO', 'EISDIR', 'ENOTEMPTY'].includes((err as { errno?: string }).errno ?? '');

  for (const d of desks) await login(d);
  t.truthy(desks[0]!.profile, 'the first desktop logs in');

  for (let step = 0; step < STEPS; step++) {
    for (const x of desks) if (x.net.down && step >= x.upAt) x.net.down = false;
    const d = r.pick(desks);
    const p = d.profile;
    const op = r.int(100);
    if (!p) {
      // A desktop that is logged out (or was killed) comes back: recovery of its log first.
      if (op < 30 && !d.net.down) await login(d);
      continue;
    }
    if (op < 28) {
      const file = r.pick(FILES);
      const before = await shown(p, file);
      if (before === undefined) continue;
      const token = `${d.name} token ${++tok}`;
      try {
        await writeText(p.vfs, file, token);
      } catch (err) {
        if (refused(err)) continue;
        throw err;
      }
      if (before) d.unsnapReplaced.add(before);
      d.unsnapWritten.add(token);
      written.add(token);
    } else if (op < 33) {
      const file = r.pick(FILES);
      const before = await shown(p, file);
      if (!before) continue;
      try {
        await p.vfs.unlink(file);
      } catch (err) {
        if (refused(err)) continue;
        throw err;
      }
      d.unsnapReplaced.add(before);
    } else if (op < 38) {
      const from = r.pick(FILES);
      const to = r.pick(FILES);
      const moving = await shown(p, from);
      if (from === to || !moving) continue;
      const over = await shown(p, to);
      if (over === undefined) continue;
      try {
        await p.vfs.rename(from, to);
      } catch (err) {
        if (refused(err)) continue;
        throw err;
      }
      if (over) d.unsnapReplaced.add(over);
    } else if (op < 50) {
      await p.snapshotNow().then(() => snapshotted(d), () => {});
    } else if (op < 64) {
      const c = await p.commitNow().catch(() => null);
      if (c) {
        counts.commits++;
        counts.conflicts += c.conflicts?.length ?? 0;
      }
    } else if (op < 82) {
      // The snapshot tick: snapshot, then pick up the other desktop's commits. Sometimes the
      // pick-up alone: writes that landed after the tick's snapshot (while it committed).
      if (r.int(3) > 0) await p.snapshotNow().then(() => snapshotted(d), () => {});
      const got = await p.followHead().catch(() => null);
      if (got && got.adopted.length > 0) counts.pickups++;
      if (got && got.kept.length > 0) counts.kept++;
    } else if (op < 84) {
      // Killed: whatever was written since the last durable snapshot is gone (the bound).
      await p.halt();
      for (const x of d.unsnapWritten) crashLost.add(x);
      d.unsnapWritten.clear();
      d.unsnapReplaced.clear();
      d.profile = null;
      d.suspended = false;
      counts.kills++;
    } else if (op < 87) {
      // Logout: final snapshot and flush (what cannot be committed stays in the local log).
      await p.close(undefined, 0);
      snapshotted(d);
      d.profile = null;
      d.suspended = false;
    } else if (op < 89) {
      if (!d.net.down) counts.outages++;
      d.net.down = true;
      d.upAt = step + 5 + r.int(20);
    } else if (op < 93 && policy === 'exclusive') {
      // Suspend / resume: a suspended desktop stops renewing its lease; the other one may take over.
      d.suspended = !d.suspended;
      if (!d.suspended) d.leaseClock.advance(Math.max(0, clock.now() - d.leaseClock.now()));
    } else {
      await advance(r.pick([200, 1_000, 2 * TTL]));
    }
  }

  // Everyone comes back online and logs out; desktops that are out log in once more so that
  // what their logs still hold is committed (merged).
  for (const d of desks) {
    d.net.down = false;
    d.suspended = false;
    d.leaseClock.advance(Math.max(0, clock.now() - d.leaseClock.now()));
  }
  for (const d of desks) {
    if (d.profile) {
      const res = await d.profile.close();
      t.true(res.ok, `${d.name} logs out with everything committed (${res.error ?? ''})`);
      snapshotted(d);
      d.profile = null;
    }
  }
  await advance(3 * TTL); // leases of killed desktops expire
  for (const d of desks) {
    await login(d);
    t.truthy(d.profile, `${d.name} can log in at the end`);
    t.deepEqual(await d.profile!.close(), { ok: true, pending: 0 });
    d.profile = null;
  }

  const final = contentsOf(await headModel(shared));
  const present = new Set(Object.values(final).filter((v) => v !== 'd'));
  for (const v of present) t.true(written.has(v), `only written tokens appear (${v})`);
  const lost = [...written].filter((x) => !replaced.has(x) && !crashLost.has(x) && !present.has(x));
  t.deepEqual(lost, [], `seed ${seed} (${policy}): no update lost; ${JSON.stringify(counts)}`);
  return counts;
}

for (const policy of ['concurrent', 'exclusive'] as const) {
  test(`${policy}: ${SEEDS} seeded runs of two desktops with commits, pick-ups, kills, outages${policy === 'exclusive' ? ', suspensions and takeovers' : ''}: no update lost`, async (t) => {
    const total: Record<string, number> = {};
    for (let seed = 1; seed <= SEEDS; seed++) {
      const c = await run(t, seed * 7919 + (policy === 'exclusive' ? 1 : 0), policy);
      for (const [k, v] of Object.entries(c)) total[k] = (total[k] ?? 0) + v;
    }
    t.log(JSON.stringify(total));
    t.true(total.commits! > 0 && total.pickups! > 0 && total.kept! > 0 && total.kills! > 0 && total.outages! > 0);
    if (policy === 'exclusive') t.true(total.refusedLogins! > 0 && total.takeovers! > 0, 'exclusive logins were refused and leases taken over');
    else t.true(total.conflicts! > 0, 'the runs produced conflicts to merge');
  });
}
