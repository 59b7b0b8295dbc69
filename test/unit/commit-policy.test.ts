import test from 'ava';
import { ManualClock } from '../../src/core/clock.js';
import { DEFAULT_COMMIT_POLICY as cfg, decideCommit, lagSlack, retryDelay } from '../../src/commit/policy.js';

const base = { consecutiveFailures: 0, lastFailureMs: null };

test('nothing pending: no commit and no wake-up', (t) => {
  const d = decideCommit(cfg, { ...base, now: 1000, lastActivityMs: 0, oldestPendingMs: null });
  t.deepEqual(d, { commitNow: false, wakeAt: null, reason: 'nothing-pending' });
});

test('busy desktop waits for idle, then commits when idle time has passed', (t) => {
  const clock = new ManualClock(0);
  let activity = 0;
  const state = () => ({ ...base, now: clock.now(), lastActivityMs: activity, oldestPendingMs: 0 });
  // Activity every 5 s keeps it busy; the wake-up is at last activity + idle.
  for (let i = 0; i < 3; i++) {
    clock.advance(5_000);
    activity = clock.now();
    const d = decideCommit(cfg, state());
    t.false(d.commitNow);
    t.is(d.reason, 'busy');
    t.is(d.wakeAt, activity + cfg.idleMs);
  }
  clock.advance(cfg.idleMs - 1);
  t.false(decideCommit(cfg, state()).commitNow);
  clock.advance(1);
  t.like(decideCommit(cfg, state()), { commitNow: true, reason: 'idle' });
});

test('a never-idle desktop is committed before the oldest snapshot reaches max-lag', (t) => {
  const clock = new ManualClock(0);
  const oldest = 0;
  let committedAt: number | null = null;
  while (clock.now() <= cfg.maxLagMs) {
    const d = decideCommit(cfg, { ...base, now: clock.now(), lastActivityMs: clock.now(), oldestPendingMs: oldest });
    if (d.commitNow) {
      committedAt = clock.now();
      t.is(d.reason, 'max-lag');
      break;
    }
    clock.advance(1_000);
  }
  t.not(committedAt, null);
  t.true(committedAt! < oldest + cfg.maxLagMs);
  t.true(committedAt! >= oldest + cfg.maxLagMs - lagSlack(cfg));
});

test('failures back off exponentially up to a cap, and idle does not override backoff', (t) => {
  t.is(retryDelay(cfg, 1), 1_000);
  t.is(retryDelay(cfg, 2), 2_000);
  t.is(retryDelay(cfg, 4), 8_000);
  t.is(retryDelay(cfg, 30), cfg.retryMaxMs);
  const s = { now: 10_500, lastActivityMs: 0, oldestPendingMs: 0, consecutiveFailures: 2, lastFailureMs: 9_000 };
  t.like(decideCommit(cfg, s), { commitNow: false, reason: 'backoff', wakeAt: 11_000 });
  t.like(decideCommit(cfg, { ...s, now: 11_000 }), { commitNow: true, reason: 'idle' });
});
