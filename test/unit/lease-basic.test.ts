/**
 * Leases (src/repository/lease.ts), the basics, on a MemoryBackend with a ManualClock: the
 * documents, acquire/renew/release, the 'concurrent' policy (every session registers; status
 * lists the others; dead ones are swept), the 'exclusive' policy without contention, read-only
 * sessions, inspection.
 */
import test from 'ava';
import { setImmediate as tick } from 'node:timers/promises';
import { ManualClock } from '../../src/core/clock.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import {
  Lease, LeaseError, beatName, claimName, decodeLeaseDoc, encodeLeaseDoc, inspectLeases, isLeaseError, leaseConfig, releasedName, sessionDocName,
  type LeaseDoc, type LeaseOptions,
} from '../../src/repository/lease.js';

const TTL = 30_000;

async function settle(): Promise<void> {
  for (let i = 0; i < 30; i++) await tick();
}

/** Let clock time pass in 1 s steps, letting every heartbeat finish (and re-arm) before the next. */
async function run(clock: ManualClock, ms: number): Promise<void> {
  for (let done = 0; done < ms; done += 1_000) {
    clock.advance(Math.min(1_000, ms - done));
    await settle();
  }
}

/** Advance the clock in steps until p settles (the lease code sleeps on the injected clock). */
async function drive<T>(clock: ManualClock, p: Promise<T>, stepMs = 250, maxMs = 10 * 60_000): Promise<T> {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  for (let t = 0; t <= maxMs; t += stepMs) {
    await settle();
    if (done) return p;
    clock.advance(stepMs);
  }
  throw new Error(`did not settle within ${maxMs} ms of clock time`);
}

function opts(backend: MemoryBackend, clock: ManualClock, host: string, extra: Partial<LeaseOptions> = {}): LeaseOptions {
  return { backend, clock, user: 'alice', host, pid: 1000 + host.length, session: `s-${host}`, config: { ttlMs: TTL }, ...extra };
}

function docOf(backend: MemoryBackend, name: string): LeaseDoc {
  const raw = backend.state.get(`alice/${name}`);
  if (!raw) throw new Error(`no ${name}`);
  const d = decodeLeaseDoc(raw);
  if (typeof d === 'string') throw new Error(d);
  return d;
}

test('config: defaults derive from the ttl; a heartbeat that does not fit in the ttl is refused', (t) => {
  t.deepEqual(leaseConfig({ ttlMs: 30_000 }), { policy: 'concurrent', ttlMs: 30_000, heartbeatMs: 10_000, waitMs: 45_000, pollMs: 3_000, marginMs: 3_000 });
  t.throws(() => leaseConfig({ ttlMs: 30_000, heartbeatMs: 29_000 }), { message: /heartbeat/ });
  t.throws(() => leaseConfig({ ttlMs: 0 }), { message: /ttl/ });
});

test('documents: encode/decode round trip; malformed documents are corrupt with a reason', (t) => {
  const d: LeaseDoc = {
    v: 1, kind: 'lease', user: 'alice', host: 'desk-a', pid: 42, session: 'abc', bootId: null, mode: 'rw', policy: 'exclusive',
    generation: 3, beat: 7, acquiredAt: 1, renewedAt: 2, expiresAt: 3, ttlMs: TTL, released: false,
  };
  t.deepEqual(decodeLeaseDoc(encodeLeaseDoc(d)), d);
  const bad: Array<[string, unknown]> = [
    ['not json', '{"v":1'],
    ['array', '[]'],
    ['version', JSON.stringify({ ...d, v: 2 })],
    ['host', JSON.stringify({ ...d, host: '' })],
    ['pid', JSON.stringify({ ...d, pid: 'x' })],
    ['generation', JSON.stringify({ ...d, generation: -1 })],
    ['mode', JSON.stringify({ ...d, mode: 'rx' })],
    ['ttl', JSON.stringify({ ...d, ttlMs: 0 })],
    ['released', JSON.stringify({ ...d, released: 'no' })],
  ];
  for (const [what, text] of bad) t.is(typeof decodeLeaseDoc(Buffer.from(text as string)), 'string', what);
  t.regex(decodeLeaseDoc(Buffer.alloc(70_000, 32)) as string, /larger/);
});

test('exclusive: acquire claims generation 1, each heartbeat is a new name (the previous one deleted), release adds a released marker', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const a = await Lease.acquire(opts(backend, clock, 'desk-a', { config: { ttlMs: TTL, policy: 'exclusive' } }));
  t.is(a.generation, 1);
  t.deepEqual(await backend.listState('alice'), [claimName(1)]);
  t.like(docOf(backend, claimName(1)), { host: 'desk-a', session: 's-desk-a', generation: 1, beat: 0, released: false, policy: 'exclusive', mode: 'rw' });
  a.start();
  await run(clock, 10_000);
  t.deepEqual(await backend.listState('alice'), [claimName(1), beatName(1, 1)]);
  await run(clock, 10_000);
  t.deepEqual(await backend.listState('alice'), [claimName(1), beatName(1, 2)], 'two heartbeats in 20 s with a 10 s interval');
  t.like(docOf(backend, beatName(1, 2)), { beat: 2, generation: 1 });
  t.true(a.heldLocally());
  await a.assertHeld();
  t.like(a.status(), { state: 'held', generation: 1, beat: 2, failures: 0 });
  await a.release();
  t.deepEqual(await backend.listState('alice'), [claimName(1), releasedName(1)]);
  t.is(a.status().state, 'released');
  await t.throwsAsync(a.assertHeld(), { instanceOf: LeaseError });
  await run(clock, 60_000);
  t.deepEqual(await backend.listState('alice'), [claimName(1), releasedName(1)], 'no heartbeat after release');
  await a.release(); // idempotent
});

test('exclusive: after a release the next session takes over at once with the next generation; old generations are pruned', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const cfg = { ttlMs: TTL, policy: 'exclusive' as const, waitMs: 0 };
  for (let i = 1; i <= 5; i++) {
    const l = await Lease.acquire(opts(backend, clock, `desk-${i}`, { config: cfg }));
    t.is(l.generation, i);
    await l.release();
  }
  t.deepEqual(await backend.listState('alice'), [claimName(4), releasedName(4), claimName(5), releasedName(5)], 'the current generation and the one before it are kept');
});

test('exclusive: a second session fails after waitMs with a message naming the host that holds the profile', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const a = await Lease.acquire(opts(backend, clock, 'desk-a', { config: { ttlMs: TTL, policy: 'exclusive' } }));
  a.start();
  const t0 = clock.now();
  const err = await t.throwsAsync(drive(clock, Lease.acquire(opts(backend, clock, 'desk-b', { config: { ttlMs: TTL, policy: 'exclusive', waitMs: 90_000 } }))));
  t.true(isLeaseError(err, 'held'));
  t.regex(err!.message, /in use on host desk-a \(pid \d+, session s-desk-a, exclusive lease generation 1/);
  t.is((err as LeaseError).holders[0]!.host, 'desk-a');
  t.is((err as LeaseError).code, 'LEASE_HELD');
  t.truthy((err as LeaseError).hint);
  t.true(clock.now() - t0 >= 90_000, 'it waited the whole waitMs (the holder kept renewing)');
  t.is(a.generation, 1);
  await a.assertHeld();
});

test('exclusive with waitMs 0 fails at once', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  await Lease.acquire(opts(backend, clock, 'desk-a', { config: { ttlMs: TTL, policy: 'exclusive' } }));
  const t0 = clock.now();
  await t.throwsAsync(Lease.acquire(opts(backend, clock, 'desk-b', { config: { ttlMs: TTL, policy: 'exclusive', waitMs: 0 } })), { message: /desk-a/ });
  t.is(clock.now(), t0);
});

test('concurrent: every session registers; a heartbeat lists the other desktops; release removes the registration', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const a = await Lease.acquire(opts(backend, clock, 'desk-a'));
  const b = await Lease.acquire(opts(backend, clock, 'desk-b'));
  const r = await Lease.acquire(opts(backend, clock, 'desk-r', { mode: 'ro' }));
  t.is(a.generation, null);
  t.deepEqual(await backend.listState('alice'), [sessionDocName('s-desk-a', 1), sessionDocName('s-desk-b', 1), sessionDocName('s-desk-r', 1)]);
  for (const l of [a, b, r]) l.start();
  await run(clock, 10_000);
  t.deepEqual(a.status().others.map((h) => h.host).sort(), ['desk-b', 'desk-r']);
  t.deepEqual(b.status().others.map((h) => `${h.host}:${h.mode}`).sort(), ['desk-a:rw', 'desk-r:ro']);
  t.deepEqual(await backend.listState('alice'), [sessionDocName('s-desk-a', 2), sessionDocName('s-desk-b', 2), sessionDocName('s-desk-r', 2)], 'one heartbeat each');
  await b.release();
  t.deepEqual(await backend.listState('alice'), [sessionDocName('s-desk-a', 2), sessionDocName('s-desk-r', 2)]);
  await run(clock, 10_000);
  t.deepEqual(a.status().others.map((h) => h.host), ['desk-r']);
  await a.assertHeld(); // concurrent sessions have nothing to fence
  for (const l of [a, r]) await l.release();
  t.deepEqual(await backend.listState('alice'), []);
});

test('concurrent: the registration of a session that stopped renewing is swept by the others after its window, not before', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const a = await Lease.acquire(opts(backend, clock, 'desk-a'));
  await Lease.acquire(opts(backend, clock, 'desk-dead')); // never renews: crashed
  a.start();
  await run(clock, 25_000);
  t.true((await backend.listState('alice')).includes(sessionDocName('s-desk-dead', 1)), 'still there before the window has passed');
  t.deepEqual(a.status().others.map((h) => h.host), ['desk-dead']);
  await run(clock, 20_000); // a has now watched it unchanged for >= 30 s
  t.false((await backend.listState('alice')).includes(sessionDocName('s-desk-dead', 1)));
  t.deepEqual(a.status().others, []);
});

test('read-only sessions register under the exclusive policy, never wait, and never block the exclusive lease', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const cfg = { ttlMs: TTL, policy: 'exclusive' as const, waitMs: 0 };
  const e = await Lease.acquire(opts(backend, clock, 'desk-e', { config: cfg }));
  const r = await Lease.acquire(opts(backend, clock, 'desk-r', { mode: 'ro', config: cfg }));
  t.is(r.generation, null);
  await e.release();
  const e2 = await Lease.acquire(opts(backend, clock, 'desk-e2', { config: cfg }));
  t.is(e2.generation, 2, 'the read-only session did not block it');
  await r.assertHeld();
});

test('mixed policies: a concurrent read-write session is refused while an exclusive lease is live, and the other way round', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  const e = await Lease.acquire(opts(backend, clock, 'desk-e', { config: { ttlMs: TTL, policy: 'exclusive' } }));
  const err = await t.throwsAsync(Lease.acquire(opts(backend, clock, 'desk-c', { config: { ttlMs: TTL, policy: 'concurrent', waitMs: 0 } })));
  t.regex(err!.message, /desk-e/);
  t.false((await backend.listState('alice')).some((n) => n.startsWith('session.s-desk-c.')), 'the refused session took its registration back');
  await e.release();
  const c = await Lease.acquire(opts(backend, clock, 'desk-c', { config: { ttlMs: TTL, policy: 'concurrent', waitMs: 0 } }));
  const err2 = await t.throwsAsync(Lease.acquire(opts(backend, clock, 'desk-e', { config: { ttlMs: TTL, policy: 'exclusive', waitMs: 0 } })));
  t.regex(err2!.message, /host desk-c .*read-write session/);
  await c.release();
});

test('inspectLeases: the current exclusive document and every session, corrupt ones flagged', async (t) => {
  const clock = new ManualClock();
  const backend = new MemoryBackend(clock);
  t.deepEqual(await inspectLeases(backend, 'alice'), { exclusive: null, sessions: [] });
  await Lease.acquire(opts(backend, clock, 'desk-e', { config: { ttlMs: TTL, policy: 'exclusive' } }));
  await Lease.acquire(opts(backend, clock, 'desk-r', { mode: 'ro' }));
  await backend.writeState('alice', sessionDocName('junk', 3), Buffer.from('garbage'));
  const i = await inspectLeases(backend, 'alice');
  t.like(i.exclusive, { generation: 1, beat: 0, released: false });
  t.is(i.exclusive?.doc?.host, 'desk-e');
  t.deepEqual(i.sessions.map((s) => [s.name, s.doc?.host ?? null, s.problem?.slice(0, 7) ?? null]), [
    ['session.junk.000000000003', null, 'corrupt'],
    ['session.s-desk-r.000000000001', 'desk-r', null],
  ]);
});
