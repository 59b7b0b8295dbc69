/**
 * prune policy (src/repository/prune.ts): pure selection of the refs to keep, restic `forget`
 * style, with the head always kept. Times are built in local time, as the buckets are.
 */
import test from 'ava';
import { sha256 } from '../../src/core/hash.js';
import type { Ref } from '../../src/repository/objects.js';
import { choosePrune, type KeepPolicy } from '../../src/repository/prune.js';

/** Refs with seq 1..n in the order of `times` (local y, m (1-12), d, h, min). */
function refs(times: Array<[number, number, number, number, number]>): Ref[] {
  return times.map(([y, mo, d, h, mi], i) => ({
    seq: i + 1,
    commit: sha256(Buffer.from(`commit ${i + 1}`)),
    prev: i === 0 ? null : sha256(Buffer.from(`commit ${i}`)),
    time: new Date(y, mo - 1, d, h, mi).getTime(),
    host: 'h',
    session: 's',
  }));
}

const kept = (rs: Ref[], p: KeepPolicy) => choosePrune(rs, p).keep.map((r) => r.seq).sort((a, b) => a - b);

const DAY: Array<[number, number, number, number, number]> = [
  [2024, 1, 15, 9, 5], // 1
  [2024, 1, 15, 10, 5], // 2
  [2024, 1, 15, 10, 40], // 3
  [2024, 1, 15, 11, 10], // 4
  [2024, 1, 15, 11, 50], // 5
  [2024, 1, 15, 13, 0], // 6 (head)
];

test('empty policy: only the head is kept', (t) => {
  const rs = refs(DAY);
  const d = choosePrune(rs, {});
  t.deepEqual(d.keep.map((r) => r.seq), [6]);
  t.deepEqual(d.forget.map((r) => r.seq).sort(), [1, 2, 3, 4, 5]);
  t.deepEqual(d.reasons.get(6), ['head']);
  t.deepEqual(kept(rs, { last: 0, hourly: 0, daily: 0, weekly: 0 }), [6]);
});

test('no refs, one ref', (t) => {
  t.deepEqual(choosePrune([], { last: 3 }), { keep: [], forget: [], reasons: new Map() });
  const one = refs([[2024, 1, 1, 0, 0]]);
  t.deepEqual(kept(one, {}), [1]);
  t.deepEqual(choosePrune(one, { daily: 5 }).forget, []);
});

test('the head is always kept, whatever its time and the policy', (t) => {
  // The head's commit time is older than everything else (a desktop with a wrong clock).
  const rs = refs([
    [2024, 3, 1, 12, 0],
    [2024, 3, 2, 12, 0],
    [2024, 3, 3, 12, 0],
    [2023, 1, 1, 12, 0],
  ]);
  for (const p of [{}, { last: 1 }, { daily: 1 }, { weekly: 1 }, { hourly: 1 }] as KeepPolicy[]) {
    t.true(kept(rs, p).includes(4), JSON.stringify(p));
  }
  // Buckets are visited in seq order (the true order of the history), newest first: the
  // head's day counts as the first bucket.
  t.deepEqual(kept(rs, { daily: 2 }), [3, 4]);
  // Input order does not matter: the head is the highest seq, not the first element.
  t.deepEqual(kept([...rs].reverse(), {}), [4]);
});

test('keep-last: the n newest by seq', (t) => {
  const rs = refs(DAY);
  t.deepEqual(kept(rs, { last: 1 }), [6]);
  t.deepEqual(kept(rs, { last: 3 }), [4, 5, 6]);
  t.deepEqual(kept(rs, { last: 100 }), [1, 2, 3, 4, 5, 6]);
  t.deepEqual(choosePrune(rs, { last: 2 }).reasons.get(5), ['last']);
  t.deepEqual(choosePrune(rs, { last: 2 }).reasons.get(6), ['head', 'last']);
});

test('hourly: the newest ref of each of the n most recent hours that have one', (t) => {
  const rs = refs(DAY);
  t.deepEqual(kept(rs, { hourly: 1 }), [6]);
  t.deepEqual(kept(rs, { hourly: 2 }), [5, 6], '13h and 11h (12h has nothing)');
  t.deepEqual(kept(rs, { hourly: 3 }), [3, 5, 6]);
  t.deepEqual(kept(rs, { hourly: 99 }), [1, 3, 5, 6]);
  t.deepEqual(choosePrune(rs, { hourly: 2 }).reasons.get(5), ['hourly 2024-01-15 11h']);
});

test('daily: the newest ref of each of the n most recent days that have one', (t) => {
  const rs = refs([
    [2024, 1, 1, 9, 0], // 1
    [2024, 1, 1, 18, 0], // 2
    [2024, 1, 2, 8, 0], // 3
    [2024, 1, 4, 12, 0], // 4
    [2024, 1, 4, 20, 0], // 5
    [2024, 1, 4, 23, 59], // 6
  ]);
  t.deepEqual(kept(rs, { daily: 1 }), [6]);
  t.deepEqual(kept(rs, { daily: 2 }), [3, 6]);
  t.deepEqual(kept(rs, { daily: 3 }), [2, 3, 6]);
  t.deepEqual(choosePrune(rs, { daily: 3 }).forget.map((r) => r.seq).sort(), [1, 4, 5]);
});

test('weekly: ISO weeks (Monday first; the week of Jan 1 may belong to the previous year)', (t) => {
  const rs = refs([
    [2020, 12, 27, 12, 0], // 1 Sun 2020-W52
    [2020, 12, 28, 12, 0], // 2 Mon 2020-W53
    [2020, 12, 31, 12, 0], // 3 Thu 2020-W53
    [2021, 1, 3, 12, 0], // 4 Sun 2020-W53
    [2021, 1, 4, 12, 0], // 5 Mon 2021-W01
    [2021, 1, 10, 12, 0], // 6 Sun 2021-W01
    [2021, 1, 11, 12, 0], // 7 Mon 2021-W02
  ]);
  t.deepEqual(kept(rs, { weekly: 1 }), [7]);
  t.deepEqual(kept(rs, { weekly: 3 }), [4, 6, 7]);
  t.deepEqual(kept(rs, { weekly: 4 }), [1, 4, 6, 7]);
  const reasons = choosePrune(rs, { weekly: 3 }).reasons;
  t.deepEqual(reasons.get(4), ['weekly 2020-W53']);
  t.deepEqual(reasons.get(6), ['weekly 2021-W01']);
});

test('policies combine as a union; the result is a partition of the input; pure', (t) => {
  const rs = refs([
    [2024, 1, 1, 10, 0], // 1
    [2024, 1, 8, 10, 0], // 2
    [2024, 1, 9, 10, 0], // 3
    [2024, 1, 10, 9, 0], // 4
    [2024, 1, 10, 9, 30], // 5
    [2024, 1, 10, 10, 15], // 6
    [2024, 1, 10, 11, 0], // 7
  ]);
  const snapshot = JSON.stringify(rs);
  const policy = { last: 2, hourly: 2, daily: 3, weekly: 2 };
  const d = choosePrune(rs, policy);
  // last: 7,6; hourly: 7 (11h), 6 (10h); daily: 7, 3, 2; weekly: 7 (W02), 1 (W01)
  t.deepEqual(d.keep.map((r) => r.seq).sort(), [1, 2, 3, 6, 7]);
  t.deepEqual(d.forget.map((r) => r.seq).sort(), [4, 5]);
  t.deepEqual(d.reasons.get(7), ['head', 'last', 'hourly 2024-01-10 11h', 'daily 2024-01-10', 'weekly 2024-W02']);
  t.is(JSON.stringify(rs), snapshot, 'input not modified');
  t.deepEqual(choosePrune(rs, policy), d, 'same input, same decision');
  t.is(d.keep.length + d.forget.length, rs.length);
});
