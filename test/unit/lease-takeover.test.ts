/**
 * Leases (src/repository/lease.ts), the hard parts, on a MemoryBackend with manual clocks:
 * expiry and takeover of a holder that stopped renewing, two contenders racing for one
 * generation (exactly one wins), fencing (the old holder learns it lost), corrupt documents and
 * documents "from the future", clocks minutes apart, an unreachable repository, the same-host
 * shortcut, and the transient read failures a shared file system shows during a replace.
 */
import test from 'ava';
import { setImmediate as tick } from 'node:timers/promises';
import { RoamfsError } from '../../src/core/errors.js';
import { ManualClock, type Clock } from '../../src/core/clock.js';
import type { Backend } from '../../src/repository/backend.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { Lease, beatName, claimName, decodeLeaseDoc, encodeLeaseDoc, isLeaseError, type LeaseDoc, type LeaseError, type LeaseOptions } from '../../src/repository/lease.js';

const TTL = 30_000;

async function settle(): Promise<void> {
  for (let i = 0; i < 30; i++) await tick();
}

/** Advance the shared clock in steps until every promise settles. */
async function drive<T extends unknown[]>(clock: ManualClock, ps: { [K in keyof T]: Promise<T[K]> }, stepMs = 250, maxMs = 20 * 60_000): Promise<{ [K in keyof T]: PromiseSettledResult<T[K]> }> {
  let done = false;
  const all = Promise.allSettled(ps);
  void all.then(() => (done = true));
  for (let t = 0; t <= maxMs; t += stepMs) {
    await settle();
    if (done) return all as never;
    clock.advance(stepMs);
  }
  throw new Error(`did not settle within ${maxMs} ms of clock time`);
}

/** Another host's clock: the same time base, shifted by offsetMs (clock skew between hosts). */
function skewed(base: ManualClock, offsetMs: number): Clock {
  return { now: () => base.now() + offsetMs, setTimer: (ms, fn) => base.setTimer(ms, fn), sleep: (ms) => base.sleep(ms) };
}

function opts(backend: Backend, clock: Clock, host: string, extra: Partial<LeaseOptions> & { waitMs?: number } = {}): LeaseOptions {
  const { waitMs, ...rest } = extra;
  return {
    backend,
    clock,
    user: 'alice',
    host,
    pid: 4000 + host.charCodeAt(host.length - 1),
    session: `s-${host}`,
    config: { ttlMs: TTL, policy: 'exclusive', ...(waitMs === undefined ? {} : { waitMs }) },
    ...rest,
  };
}

function docOf(backend: MemoryBackend, name: string): LeaseDoc {
  const d = decodeLeaseDoc(backend.state.get(`alice/${name}`)!);
  if (typeof d === 'string') throw new Error(d);
  return d;
}

test('expiry: a holder that stopped renewing is taken over after the ttl (as watched by the contender), not before', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  await Lease.acquire(opts(backend, clock, 'desk-a')); // never started: it crashed right after acquiring
  const t0 = clock.now();
  const [b] = await drive<[Lease]>(clock, [Lease.acquire(opts(backend, clock, 'desk-b', { waitMs: 120_000 }))]);
  t.is(b.status, 'fulfilled');
  const lease = (b as PromiseFulfilledResult<Lease>).value;
  t.is(lease.generation, 2);
  const waited = clock.now() - t0;
  t.true(waited >= TTL, `waited ${waited} ms >= ttl`);
  t.true(waited <= TTL + 2 * 3_000 + 1_000, `and not much longer (${waited} ms)`);
  t.like(docOf(backend, claimName(2)), { host: 'desk-b', generation: 2 });
});

test('a contender that arrives late still waits a full ttl of its own watching (no clock comparison with the holder)', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  await Lease.acquire(opts(backend, clock, 'desk-a'));
  clock.advance(10 * 60_000); // the holder has been dead for ten minutes before b looks
  const t0 = clock.now();
  const [b] = await drive<[Lease]>(clock, [Lease.acquire(opts(backend, clock, 'desk-b', { waitMs: 120_000 }))]);
  t.is(b.status, 'fulfilled');
  t.true(clock.now() - t0 >= TTL);
});

test('two contenders race for a dead holder\'s lease: exactly one wins, the other is refused naming the winner (50 seeded rounds)', async (t) => {
  for (let round = 0; round < 50; round++) {
    const clock = new ManualClock();
    const mem = new MemoryBackend(clock);
    await Lease.acquire(opts(mem, clock, 'desk-a'));
    // Both contenders' createState calls meet at a barrier, then run in a round-dependent order.
    let arrived = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const racing = (who: number): Backend =>
      new Proxy(mem, {
        get(target, prop) {
          if (prop === 'createState') {
            return async (user: string, name: string, data: Uint8Array) => {
              if (++arrived === 2) release();
              await gate;
              for (let i = 0; i < ((round + who) % 3); i++) await tick();
              return target.createState(user, name, data);
            };
          }
          const v = Reflect.get(target, prop) as unknown;
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
    const acquire = (who: number, host: string) =>
      Lease.acquire(opts(racing(who), clock, host, { waitMs: 100_000 })).then((l) => {
        l.start(); // the winner keeps its lease alive, so the loser must give up
        return l;
      });
    const [x, y] = await drive<[Lease, Lease]>(clock, [acquire(0, 'desk-b'), acquire(1, 'desk-c')]);
    const won = [x, y].filter((r) => r.status === 'fulfilled') as Array<PromiseFulfilledResult<Lease>>;
    const lost = [x, y].filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    t.is(won.length, 1, `round ${round}: exactly one winner`);
    t.is(lost.length, 1);
    const winner = won[0]!.value;
    t.is(winner.generation, 2);
    t.true(isLeaseError(lost[0]!.reason, 'held'));
    const winnerHost = docOf(mem, claimName(2)).host;
    t.regex((lost[0]!.reason as Error).message, new RegExp(`host ${winnerHost}`));
    t.deepEqual((await mem.listState('alice')).filter((n) => /^lease\.\d{12}$/.test(n)), [claimName(1), claimName(2)], 'no third generation');
    await winner.release();
  }
});

test('fencing: after a takeover the old holder\'s assertHeld() and heartbeat fail with "lost", onLost is called once', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const lostCalls: LeaseError[] = [];
  const a = await Lease.acquire(opts(backend, clock, 'desk-a', { onLost: (e) => lostCalls.push(e) }));
  // desk-a is paused (suspended VM): no heartbeats; b takes over.
  const [b] = await drive<[Lease]>(clock, [Lease.acquire(opts(backend, clock, 'desk-b', { waitMs: 120_000 }))]);
  t.is(b.status, 'fulfilled');
  t.false(a.heldLocally(), 'a no longer trusts its lease: more than ttl - margin passed since its last renewal');
  const err = await t.throwsAsync(a.assertHeld());
  t.true(isLeaseError(err, 'lost'));
  t.regex(err!.message, /generation 1\) was taken over by host desk-b \(pid \d+, session s-desk-b, exclusive lease generation 2\)/);
  t.is((err as RoamfsError).code, 'LEASE_LOST');
  await t.throwsAsync(a.renewOnce(), { message: /taken over/ });
  t.is(lostCalls.length, 1);
  t.is(a.status().state, 'lost');
  // The old holder's release does not touch the new holder's generation.
  await a.release();
  t.false(docOf(backend, claimName(2)).released);
});

test('fencing while the holder still trusts its lease: a higher generation (a forced takeover) is noticed at the next heartbeat', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const lost: string[] = [];
  const a = await Lease.acquire(opts(backend, clock, 'desk-a', { onLost: (e) => lost.push(e.message) }));
  a.start();
  // An operator (or a buggy peer) creates generation 2 by hand.
  const forced: LeaseDoc = { ...docOf(backend, claimName(1)), host: 'admin', session: 'forced', generation: 2, beat: 0 };
  t.true(await backend.createState('alice', claimName(2), encodeLeaseDoc(forced)));
  clock.advance(10_000);
  await settle();
  t.is(a.status().state, 'lost');
  t.is(lost.length, 1);
  t.regex(lost[0]!, /host admin/);
  clock.advance(60_000);
  await settle();
  t.is(lost.length, 1, 'no more heartbeats after the loss');
});

test('a holder that could not renew for longer than its ttl, but was not taken over, re-takes the lease with a new generation', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const a = await Lease.acquire(opts(backend, clock, 'desk-a'));
  clock.advance(45_000); // e.g. suspended
  t.false(a.heldLocally());
  await a.renewOnce();
  t.is(a.generation, 2, 'new fencing token');
  t.true(a.heldLocally());
  t.like(docOf(backend, claimName(2)), { host: 'desk-a', generation: 2 });
  await a.assertHeld();
});

test('repository unreachable for the holder (partition): the contender takes over; the holder learns it lost when it reconnects', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  let down = false;
  const flaky = new Proxy(backend, {
    get(target, prop) {
      const v = Reflect.get(target, prop) as unknown;
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        if (down) return Promise.reject(new RoamfsError('IO', 'read users/alice/state: Transport endpoint is not connected'));
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  const lost: string[] = [];
  const a = await Lease.acquire(opts(flaky, clock, 'desk-a', { onLost: (e) => lost.push(e.message) }));
  a.start();
  clock.advance(10_000);
  await settle();
  t.true((await backend.listState('alice')).includes(beatName(1, 1)));
  down = true;
  const [b] = await drive<[Lease]>(clock, [Lease.acquire(opts(backend, clock, 'desk-b', { waitMs: 120_000 }))]);
  t.is(b.status, 'fulfilled');
  t.is((b as PromiseFulfilledResult<Lease>).value.generation, 2);
  t.true(a.status().failures > 0);
  t.false(a.heldLocally(), 'a stopped trusting its lease before b took over');
  t.is(a.status().state, 'held', 'a cannot know yet');
  down = false;
  clock.advance(10_000);
  await settle();
  t.is(a.status().state, 'lost');
  t.is(lost.length, 1);
  t.is(docOf(backend, claimName(2)).host, 'desk-b', 'a did not touch the new generation');
});

test('the holder stops trusting its lease before any contender can take over (margin), whatever the timing of the contender\'s first look', async (t) => {
  for (const firstLookAfter of [0, 1, 5_000, 9_999, 10_000, 29_999]) {
    const clock = new ManualClock();
    const backend = new MemoryBackend(clock);
    const a = await Lease.acquire(opts(backend, clock, 'desk-a'));
    const lastRenewal = clock.now();
    clock.advance(firstLookAfter);
    let tookOverAt = 0;
    const [b] = await drive<[Lease]>(clock, [Lease.acquire(opts(backend, clock, 'desk-b', { waitMs: 200_000 })).then((l) => ((tookOverAt = clock.now()), l))], 50);
    t.is(b.status, 'fulfilled');
    t.true(a.status().validUntil < tookOverAt, `look after ${firstLookAfter}: a trusted until +${a.status().validUntil - lastRenewal}, b took over at +${tookOverAt - lastRenewal}`);
  }
});

test('clock skew of minutes between hosts changes nothing: no early takeover of a live holder, no extra wait for a dead one', async (t) => {
  for (const skewMs of [-15 * 60_000, -90_000, 0, 90_000, 15 * 60_000]) {
    const base = new ManualClock();
    const backend = new MemoryBackend(base);
    const a = await Lease.acquire(opts(backend, skewed(base, 0), 'desk-a'));
    a.start();
    // Live holder: b (clock off by skewMs) waits 2 minutes and is refused.
    const [b1] = await drive<[Lease]>(base, [Lease.acquire(opts(backend, skewed(base, skewMs), 'desk-b', { waitMs: 120_000 }))]);
    t.is(b1.status, 'rejected', `skew ${skewMs}: a live holder is never taken over`);
    t.regex(String((b1 as PromiseRejectedResult).reason), /desk-a/);
    // Dead holder: a stops (crash); b takes over after one ttl of its own watching.
    await a.release().catch(() => {});
    const a2 = await Lease.acquire(opts(backend, skewed(base, 0), 'desk-a2'));
    const t0 = base.now();
    const [b2] = await drive<[Lease]>(base, [Lease.acquire(opts(backend, skewed(base, skewMs), 'desk-b', { waitMs: 120_000 }))]);
    t.is(b2.status, 'fulfilled', `skew ${skewMs}: a dead holder is taken over`);
    const waited = base.now() - t0;
    t.true(waited >= TTL && waited <= TTL + 7_000, `skew ${skewMs}: waited ${waited} ms`);
    t.is(a2.generation, 2);
    t.is((b2 as PromiseFulfilledResult<Lease>).value.generation, 3);
  }
});

test('a document "from the future" (expiresAt a year ahead, ttl of a year) is expired after 2 × our ttl unchanged, with a suspicious note', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const year = 365 * 86_400_000;
  const future: LeaseDoc = {
    v: 1, kind: 'lease', user: 'alice', host: 'desk-future', pid: 7, session: 'f', bootId: null, mode: 'rw', policy: 'exclusive',
    generation: 1, beat: 0, acquiredAt: clock.now() + year, renewedAt: clock.now() + year, expiresAt: clock.now() + 2 * year, ttlMs: year, released: false,
  };
  await backend.createState('alice', claimName(1), encodeLeaseDoc(future));
  // Within 2 × ttl: refused, and the message says what is odd about it.
  const [early] = await drive<[Lease]>(clock, [Lease.acquire(opts(backend, clock, 'desk-b', { waitMs: 50_000 }))]);
  t.is(early.status, 'rejected');
  t.regex(String((early as PromiseRejectedResult).reason), /host desk-future .*suspicious: ttl/);
  // It keeps not changing: taken over once watched unchanged for 2 × ttl.
  const [later] = await drive<[Lease]>(clock, [Lease.acquire(opts(backend, clock, 'desk-b', { waitMs: 70_000 }))]);
  t.is(later.status, 'fulfilled');
  t.is((later as PromiseFulfilledResult<Lease>).value.generation, 2);
});

test('a corrupt lease document blocks like a live unknown holder, is named in the error, and is expired after 2 × ttl unchanged', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  await backend.createState('alice', claimName(4), Buffer.from('{"v":1,"host":'));
  const t0 = clock.now();
  const [r1] = await drive<[Lease]>(clock, [Lease.acquire(opts(backend, clock, 'desk-b', { waitMs: 40_000 }))]);
  t.is(r1.status, 'rejected');
  t.regex(String((r1 as PromiseRejectedResult).reason), /unreadable lease document \(lease\.000000000004: corrupt: not JSON/);
  // A new attempt watches afresh: it needs 2 × ttl of its own.
  const [r2] = await drive<[Lease]>(clock, [Lease.acquire(opts(backend, clock, 'desk-b', { waitMs: 70_000 }))]);
  t.is(r2.status, 'fulfilled');
  t.is((r2 as PromiseFulfilledResult<Lease>).value.generation, 5);
  t.true(clock.now() - t0 >= 40_000 + 2 * TTL);
});

test('same host, same boot, holder process gone: taken over at once (a restarted daemon on the same desktop)', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const common = { bootId: 'boot-1', host: 'desk-a' };
  await Lease.acquire({ ...opts(backend, clock, 'desk-a', common), pid: 111, session: 'old' });
  const alive = new Set([222]);
  const b = await Lease.acquire({ ...opts(backend, clock, 'desk-a', { ...common, waitMs: 0, isProcessAlive: (p) => alive.has(p) }), pid: 222, session: 'new' });
  t.is(b.generation, 2);
  // Another boot id (the machine rebooted, or another machine with the same name): no shortcut.
  const c = Lease.acquire({ ...opts(backend, clock, 'desk-a', { bootId: 'boot-2', waitMs: 0, isProcessAlive: () => false }), pid: 333, session: 'other' });
  await t.throwsAsync(c, { message: /in use on host desk-a \(pid 222/ });
});

test('a claim that reads as ESTALE or as absent while listed is neither free nor a change: the live holder keeps it', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const a = await Lease.acquire(opts(backend, clock, 'desk-a'));
  a.start();
  let hiccups = 0;
  const glitchy = new Proxy(backend, {
    get(target, prop) {
      const v = Reflect.get(target, prop) as unknown;
      if (prop === 'readState') {
        return async (user: string, name: string) => {
          // The first reads fail: ESTALE, then "absent" (what a shared file system can show).
          hiccups++;
          if (hiccups === 1) throw new RoamfsError('IO', `read state ${user}/${name}: Unknown system error -116`);
          if (hiccups <= 6) return null;
          return target.readState(user, name);
        };
      }
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const [b] = await drive<[Lease]>(clock, [Lease.acquire(opts(glitchy, clock, 'desk-b', { waitMs: 60_000 }))]);
  t.is(b.status, 'rejected', 'the live holder is still seen as live: a glitch is neither "free" nor a change');
  t.regex(String((b as PromiseRejectedResult).reason), /desk-a/);
  t.true(hiccups > 6);
});

test('a listed claim that cannot be read at all blocks like a corrupt one (2 x ttl), never counts as free', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  await Lease.acquire(opts(backend, clock, 'desk-a'));
  const blind = new Proxy(backend, {
    get(target, prop) {
      if (prop === 'readState') return async () => null;
      const v = Reflect.get(target, prop) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const [early] = await drive<[Lease]>(clock, [Lease.acquire(opts(blind, clock, 'desk-b', { waitMs: 50_000 }))]);
  t.is(early.status, 'rejected');
  t.regex(String((early as PromiseRejectedResult).reason), /unreadable lease document \(lease\.000000000001: vanished\)/);
  const [later] = await drive<[Lease]>(clock, [Lease.acquire(opts(blind, clock, 'desk-b', { waitMs: 70_000 }))]);
  t.is(later.status, 'fulfilled');
});
