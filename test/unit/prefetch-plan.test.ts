import test from 'ava';
import { ManualClock } from '../../src/core/clock.js';
import { memoryLogger } from '../../src/core/log.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { packState } from '../../src/repository/objects.js';
import { classify, isConfigPath, planPrefetch } from '../../src/prefetch/plan.js';
import {
  WORKING_SET_MAX_PATHS, WorkingSetRecorder, decodeWorkingSet, encodeWorkingSet, loadWorkingSet, mergeWorkingSet, workingSetPathProblem,
} from '../../src/prefetch/working-set.js';

const KiB = 1024;

// ---- planner ----------------------------------------------------------------------------

test('config paths: top-level dotfiles and files below the configuration directories only', (t) => {
  for (const p of ['.bashrc', '.profile', '.config/app/x.ini', '.local/share/app/db', '.mozilla/firefox/p/places.sqlite', '.ssh/id_ed25519', '.local/state/wp']) {
    t.true(isConfigPath(p), p);
  }
  for (const p of ['Documents/.hidden', '.cache/thumbs/x.png', '.local/share/Trash/files/big.iso', '.local/bin/tool', 'notes.txt', '.configuration/x', 'Documents/.config/x']) {
    t.false(isConfigPath(p), p);
  }
  t.is(classify('Documents/a.txt', 64 * KiB), 'small');
  t.is(classify('Documents/a.bin', 64 * KiB + 1), 'rest');
  t.is(classify('.config/huge.db', 50 * 1024 * KiB), 'small');
  t.is(classify('.cache/huge.db', 50 * 1024 * KiB), 'rest');
  t.is(classify('.vimrc', 10 * 1024 * KiB), 'small');
});

test('plan: working set first in its own order, then small and config files, then the rest, each smallest first', (t) => {
  const files = [
    { path: 'Videos/movie.mkv', size: 900 * KiB },
    { path: 'Documents/report.pdf', size: 150 * KiB },
    { path: '.config/app/big.db', size: 300 * KiB },
    { path: 'Documents/notes.txt', size: 1 * KiB },
    { path: '.bashrc', size: 200 },
    { path: '.cache/thumb.bin', size: 200 * KiB },
    { path: 'Music/song.mp3', size: 500 * KiB },
    { path: '.config/app/settings.ini', size: 100 },
    { path: 'Documents/notes.txt', size: 1 * KiB }, // listed twice: planned once
  ];
  const plan = planPrefetch(['Music/song.mp3', 'gone/file', 'Documents/report.pdf'], files);
  t.deepEqual(
    plan.map((p) => `${p.phase} ${p.file.path}`),
    [
      'workingset Music/song.mp3',
      'workingset Documents/report.pdf',
      'small .config/app/settings.ini',
      'small .bashrc',
      'small Documents/notes.txt',
      'small .config/app/big.db',
      'rest .cache/thumb.bin',
      'rest Videos/movie.mkv',
    ],
  );
  // Extra fields ride along untouched.
  const withNode = planPrefetch([], [{ path: 'a', size: 1, tag: 42 }]);
  t.is(withNode[0]!.file.tag, 42);
});

// ---- working-set document --------------------------------------------------------------

test('merge: scores decay by half per session; the latest session ranks first; forgotten after seven idle sessions', (t) => {
  let ws = mergeWorkingSet([], ['a', 'b']);
  t.deepEqual(ws, [{ path: 'a', score: 1 }, { path: 'b', score: 1 }]);
  ws = mergeWorkingSet(ws, ['c', 'b']);
  t.deepEqual(ws, [{ path: 'b', score: 1.5 }, { path: 'c', score: 1 }, { path: 'a', score: 0.5 }]);
  ws = mergeWorkingSet(ws, ['d']);
  // d (only in the latest session) outranks b, used twice but not in the latest session.
  t.deepEqual(ws.map((e) => e.path), ['d', 'b', 'c', 'a']);
  t.deepEqual(ws.map((e) => e.score), [1, 0.75, 0.5, 0.25]);
  for (let i = 0; i < 4; i++) ws = mergeWorkingSet(ws, ['d']);
  t.deepEqual(ws.map((e) => e.path), ['d', 'b', 'c', 'a']); // a = 1/64 after six sessions without it
  ws = mergeWorkingSet(ws, ['d']);
  t.deepEqual(ws.map((e) => e.path), ['d', 'b', 'c'], 'a fell below 1/64');
});

test('merge: ties keep the session order of first open, then the previous order; capped', (t) => {
  const ws = mergeWorkingSet([{ path: 'x', score: 2 }, { path: 'y', score: 2 }], ['q', 'p'], { maxPaths: 3 });
  t.deepEqual(ws, [{ path: 'q', score: 1 }, { path: 'p', score: 1 }, { path: 'x', score: 1 }]);
  const many = Array.from({ length: WORKING_SET_MAX_PATHS + 50 }, (_, i) => `f${i}`);
  t.is(mergeWorkingSet([], many).length, WORKING_SET_MAX_PATHS);
});

test('document: round trip, and a path that could escape or is malformed condemns the whole document', (t) => {
  const doc = { time: 5, host: 'h', session: 's', sessions: 3, entries: [{ path: '.config/a b/ü.ini', score: 1.5 }, { path: 'x', score: 0.5 }] };
  t.deepEqual(decodeWorkingSet(encodeWorkingSet(doc)), doc);
  for (const bad of ['../etc/passwd', '/etc/passwd', 'a/../../b', 'a//b', 'a/', './a', 'a/\0b', '', 'x'.repeat(256), `${'a/'.repeat(2100)}a`, 7, null]) {
    t.truthy(workingSetPathProblem(bad), String(bad));
    const raw = packState({ v: 1, time: 1, host: 'h', session: 's', n: 1, e: [['fine', 1], [bad, 1]] });
    t.throws(() => decodeWorkingSet(raw), { message: /invalid path/ }, String(bad));
  }
  t.throws(() => decodeWorkingSet(Buffer.from('not msgpack at all \xc1')));
  t.throws(() => decodeWorkingSet(packState({ v: 2, e: [] })), { message: /version/ });
  t.throws(() => decodeWorkingSet(packState({ v: 1, e: 'nope' })), { message: /entry list/ });
  t.throws(() => decodeWorkingSet(packState({ v: 1, e: [['a', -1]] })), { message: /score/ });
  t.throws(() => decodeWorkingSet(packState({ v: 1, e: [['a', Infinity]] })), { message: /score/ });
  t.throws(() => decodeWorkingSet(packState([1, 2])), { message: /map/ });
});

test('loadWorkingSet: absent is null; corrupt is null with a warning; a good one decodes', async (t) => {
  const backend = new MemoryBackend(new ManualClock());
  const log = memoryLogger();
  t.is(await loadWorkingSet(backend, 'alice', log), null);
  await backend.writeState('alice', 'workingset', packState({ v: 1, e: [['../../root/.ssh/id_rsa', 1]] }));
  t.is(await loadWorkingSet(backend, 'alice', log), null);
  t.true(log.lines.some((l) => l.level === 'warn' && /corrupt/.test(l.msg ?? '')));
  await backend.writeState('alice', 'workingset', encodeWorkingSet({ time: 1, host: 'h', session: 's', sessions: 1, entries: [{ path: 'a', score: 1 }] }));
  t.deepEqual((await loadWorkingSet(backend, 'alice', log))?.entries, [{ path: 'a', score: 1 }]);
});

test('recorder: first-open order, only inside the window, capped', (t) => {
  const clock = new ManualClock();
  const r = new WorkingSetRecorder(clock, 5 * 60_000, 3);
  r.note('b');
  clock.advance(1000);
  r.note('a');
  r.note('b');
  r.note('');
  t.true(r.recording);
  clock.advance(5 * 60_000 - 1001);
  r.note('c'); // last millisecond of the window
  r.note('d'); // over the cap
  t.deepEqual(r.recorded(), ['b', 'a', 'c']);
  const r2 = new WorkingSetRecorder(clock, 1000);
  clock.advance(1000);
  r2.note('late');
  t.false(r2.recording);
  t.deepEqual(r2.recorded(), []);
  const r3 = new WorkingSetRecorder(clock, 1000);
  r3.close();
  r3.note('after close');
  t.deepEqual(r3.recorded(), []);
});
