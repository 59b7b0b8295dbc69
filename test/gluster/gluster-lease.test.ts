/**
 * Leases (src/repository/lease.ts) on a real GlusterFS volume, in real time, between worker
 * processes on two FUSE mounts (two desktops): a live holder is never taken over, a crashed
 * one is after about one ttl, a paused one (SIGSTOP: a suspended VM) learns it lost the lease
 * when it wakes, two contenders never both win, concurrent sessions see each other.
 *
 * Short ttl (3 s) so the suite stays quick; the rules scale with the ttl.
 */
import test, { type ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { sharedGluster, startWorker, type Worker } from '../helpers/gluster.js';

const gluster = sharedGluster(test, { mounts: 2 });
const TTL = 3_000;
const POLL = 300;

let seq = 0;
/** A fresh repository directory (only users/U/state is used), as seen from mount A and B. */
async function repoDirs(): Promise<{ a: string; b: string }> {
  const name = `lease-repo-${++seq}`;
  await fsp.mkdir(path.join(gluster().mounts[0]!, name, 'tmp'), { recursive: true });
  return { a: path.join(gluster().mounts[0]!, name), b: path.join(gluster().mounts[1]!, name) };
}

function acquire(w: Worker, repo: string, host: string, o: { policy?: 'exclusive' | 'concurrent'; waitMs?: number; mode?: 'rw' | 'ro' } = {}) {
  return w.call<{ generation: number | null; waitedMs: number }>('leaseAcquire', {
    repo, user: 'alice', host, session: `s-${host}-${seq}`, policy: o.policy ?? 'exclusive', ttlMs: TTL, waitMs: o.waitMs ?? 0, pollMs: POLL, mode: o.mode ?? 'rw',
  });
}

type Status = { status: { state: string; generation: number | null; others: Array<{ host: string }> } | null; lost: string[]; heldLocally: boolean };
const status = (w: Worker) => w.call<Status>('leaseStatus');

async function rejected(p: Promise<unknown>): Promise<{ code?: string; message: string }> {
  try {
    await p;
  } catch (err) {
    return err as { code?: string; message: string };
  }
  throw new Error('expected a rejection');
}

test.serial('a live holder is never taken over: a contender on the other mount waits 4 × ttl and is refused, naming the host', async (t) => {
  const r = await repoDirs();
  const a = startWorker(t);
  const b = startWorker(t);
  t.is((await acquire(a, r.a, 'desk-a')).generation, 1);
  const err = await rejected(acquire(b, r.b, 'desk-b', { waitMs: 4 * TTL }));
  t.is(err.code, 'LEASE_HELD');
  t.regex(err.message, /in use on host desk-a \(pid \d+/);
  const st = await status(a);
  t.like(st.status, { state: 'held', generation: 1 });
  t.deepEqual(st.lost, []);
});

test.serial('a crashed holder (kill -9) is taken over after about one ttl, with the next generation', async (t) => {
  const r = await repoDirs();
  const a = startWorker(t);
  const b = startWorker(t);
  await acquire(a, r.a, 'desk-a');
  await new Promise((res) => setTimeout(res, TTL)); // a few heartbeats
  await a.crash();
  const got = await acquire(b, r.b, 'desk-b', { waitMs: 4 * TTL });
  t.is(got.generation, 2);
  t.log(`takeover after ${got.waitedMs} ms (ttl ${TTL} ms, poll ${POLL} ms)`);
  t.true(got.waitedMs >= TTL - 2 * POLL && got.waitedMs <= TTL + 4 * POLL + 1_000, `waited ${got.waitedMs} ms`);
});

test.serial('a paused holder (SIGSTOP for 3 × ttl) is taken over; when it wakes, its next heartbeat finds it lost, and assertHeld fails', async (t) => {
  const r = await repoDirs();
  const a = startWorker(t);
  const b = startWorker(t);
  await acquire(a, r.a, 'desk-a');
  process.kill(a.pid, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(a.pid, 'SIGCONT');
    } catch {
      /* gone */
    }
  });
  const got = await acquire(b, r.b, 'desk-b', { waitMs: 4 * TTL });
  t.is(got.generation, 2);
  process.kill(a.pid, 'SIGCONT');
  // Whatever a does first after waking (a pending heartbeat, or our assertHeld), it must not
  // believe it still holds the lease.
  const err = await rejected(a.call('leaseAssertHeld'));
  t.is(err.code, 'LEASE_LOST');
  t.regex(err.message, /taken over by host desk-b/);
  await new Promise((res) => setTimeout(res, TTL / 2));
  const st = await status(a);
  t.is(st.status?.state, 'lost');
  t.is(st.lost.length, 1, 'onLost called once');
  t.like((await status(b)).status, { state: 'held', generation: 2 });
});

test.serial('two contenders on two mounts race for a dead holder\'s lease: exactly one wins (5 rounds)', async (t) => {
  for (let round = 0; round < 5; round++) {
    const r = await repoDirs();
    const dead = startWorker(t);
    await acquire(dead, r.a, `desk-dead`);
    await dead.crash();
    const b = startWorker(t);
    const c = startWorker(t);
    const results = await Promise.allSettled([acquire(b, r.a, 'desk-b', { waitMs: 3 * TTL }), acquire(c, r.b, 'desk-c', { waitMs: 3 * TTL })]);
    const won = results.filter((x) => x.status === 'fulfilled');
    const lost = results.filter((x) => x.status === 'rejected') as PromiseRejectedResult[];
    t.is(won.length, 1, `round ${round}: one winner`);
    t.is(lost.length, 1);
    t.is((lost[0]!.reason as { code?: string }).code, 'LEASE_HELD');
    t.is((won[0] as PromiseFulfilledResult<{ generation: number }>).value.generation, 2);
    const claims = (await fsp.readdir(path.join(r.a, 'users', 'alice', 'state'))).filter((n) => /^lease\.\d{12}$/.test(n));
    t.deepEqual(claims, ['lease.000000000001', 'lease.000000000002']);
    await b.close();
    await c.close();
  }
});

test.serial('concurrent policy: sessions on two mounts register and list each other; a crashed one is swept after its window', async (t) => {
  const r = await repoDirs();
  const a = startWorker(t);
  const b = startWorker(t);
  const c = startWorker(t);
  await acquire(a, r.a, 'desk-a', { policy: 'concurrent' });
  await acquire(b, r.b, 'desk-b', { policy: 'concurrent' });
  await acquire(c, r.b, 'desk-c', { policy: 'concurrent', mode: 'ro' });
  await new Promise((res) => setTimeout(res, TTL / 3 + 500));
  const seen = (await status(a)).status!.others.map((h) => h.host).sort();
  t.deepEqual(seen, ['desk-b', 'desk-c']);
  await c.crash();
  await waitFor(t, async () => !(await status(a)).status!.others.some((h) => h.host === 'desk-c'), 3 * TTL);
  const names = await fsp.readdir(path.join(r.a, 'users', 'alice', 'state'));
  t.false(names.some((n) => n.includes('desk-c')), `the crashed session's documents are gone (${names.join(', ')})`);
  await b.call('leaseRelease');
  await waitFor(t, async () => (await status(a)).status!.others.length === 0, 2 * TTL);
});

async function waitFor(t: ExecutionContext, cond: () => Promise<boolean>, ms: number): Promise<void> {
  const until = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > until) return void t.fail(`condition not met within ${ms} ms`);
    await new Promise((res) => setTimeout(res, 100));
  }
  t.pass();
}
