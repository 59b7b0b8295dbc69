import test, { type ExecutionContext } from 'ava';
import { constants as C } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { memoryLogger } from '../../src/core/log.js';
import { packState } from '../../src/repository/objects.js';
import { DEFAULT_PROFILE_CONFIG, Profile, type ProfileConfig } from '../../src/profile.js';
import { decodeWorkingSet } from '../../src/prefetch/working-set.js';
import type { BackgroundLoading } from '../../src/prefetch/background.js';
import { FILES, NONEMPTY, committedProfile, pump } from '../helpers/prefetch-fixture.js';

const MIN = 60_000;

async function world(t: ExecutionContext) {
  const clock = new ManualClock();
  const repo = await committedProfile(clock);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-prefetch-profile-'));
  const open: Profile[] = [];
  let n = 0;
  t.teardown(async () => {
    for (const p of open) await p.close().catch(() => {});
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const lines = memoryLogger();
  /** A new session on a new desktop (its own cache). */
  const session = async (config: Partial<ProfileConfig> = {}) => {
    const p = await Profile.open({
      remote: repo.repo,
      user: 'alice',
      cacheDir: path.join(dir, `cache${++n}`),
      clock,
      log: lines,
      host: `desk${n}`,
      session: `s${n}`,
      uid: 1000,
      gid: 1000,
      config: { snapshotIntervalMs: null, ...config },
    });
    open.push(p);
    return { p, reads: repo.backend.reads.length };
  };
  const doc = async () => {
    const raw = await repo.backend.readState('alice', 'workingset');
    return raw ? decodeWorkingSet(raw).entries : null;
  };
  const cached = async (p: Profile, file: string) => {
    for (const ch of repo.entries.get(file)!.chunks) if (!(await p.vfs.loader.cache.has(ch.id, ch.size))) return false;
    return true;
  };
  return { clock, ...repo, session, doc, cached, lines };
}

async function readFile(p: Profile, file: string): Promise<void> {
  const fh = await p.vfs.open(`/${file}`, C.O_RDONLY);
  await p.vfs.read(fh, Buffer.alloc(16), 16, 0);
  await p.vfs.release(fh);
}

async function writeFile(p: Profile, file: string, data: string): Promise<void> {
  const fh = await p.vfs.create(`/${file}`, 0o644, C.O_WRONLY | C.O_CREAT | C.O_TRUNC);
  await p.vfs.write(fh, Buffer.from(data), data.length, 0);
  await p.vfs.release(fh);
}

test('default: nothing is fetched for 30 s, then the whole profile in the background; status shows the progress', async (t) => {
  t.is(DEFAULT_PROFILE_CONFIG.prefetchDelayMs, 30_000);
  const w = await world(t);
  const { p, reads } = await w.session({ prefetchDelayMs: DEFAULT_PROFILE_CONFIG.prefetchDelayMs });
  t.like(p.status().prefetch, { phase: 'waiting', filesDone: 0 });
  await pump(w.clock, () => false, 299, 100); // 29.9 s
  t.is(w.chunkReads(reads), 0, 'nothing fetched before the delay');
  t.false(await w.cached(p, 'Documents/movie.mkv'), 'never opened, not fetched at mount');
  t.true(await pump(w.clock, () => p.status().prefetch.phase === 'done'));
  const total = NONEMPTY.reduce((s, f) => s + FILES[f]!, 0);
  t.deepEqual(p.status().prefetch, { phase: 'done', filesDone: NONEMPTY.length, filesTotal: NONEMPTY.length, bytesDone: total, bytesTotal: total });
  for (const f of NONEMPTY) t.true(await w.cached(p, f), f);
  t.is(w.chunkReads(reads), [...w.entries.values()].reduce((s, e) => s + e.chunks.length, 0));
});

test('prefetch off: nothing but what is read is ever fetched', async (t) => {
  const w = await world(t);
  const { p, reads } = await w.session({ prefetchDelayMs: null });
  await readFile(p, 'Documents/notes.txt');
  await pump(w.clock, () => false, 600, 1000); // ten minutes
  t.deepEqual(w.filesRead(reads), ['Documents/notes.txt']);
  t.is(p.status().prefetch.phase, 'off');
});

test('foreground activity pauses the prefetch; an operation in flight too', async (t) => {
  const w = await world(t);
  const { p, reads } = await w.session({ prefetchDelayMs: 1000 });
  t.true(await pump(w.clock, () => w.chunkReads(reads) > 0));
  p.noteActivity('start'); // a long operation begins (the FUSE adapter reports both ends)
  // What was already in flight settles (reaching into the profile: the count is not public).
  const prefetcher = (p as unknown as { background: BackgroundLoading }).background.prefetcher!;
  t.true(await pump(w.clock, () => prefetcher.unitsInFlight === 0));
  const paused = w.chunkReads(reads);
  await pump(w.clock, () => false, 300, 10); // 3 s of clock with the operation still running
  t.is(w.chunkReads(reads), paused);
  p.noteActivity('end');
  p.noteActivity(); // a burst of short operations keeps it paused
  await pump(w.clock, () => false, 10, 10);
  t.is(w.chunkReads(reads), paused);
  t.true(await pump(w.clock, () => p.status().prefetch.phase === 'done'));
  for (const f of NONEMPTY) t.true(await w.cached(p, f), f);
});

test('close stops the prefetch', async (t) => {
  const w = await world(t);
  const { p, reads } = await w.session({ prefetchDelayMs: 1000 });
  t.true(await pump(w.clock, () => w.chunkReads(reads) > 0));
  await p.close();
  const after = w.backend.reads.length;
  t.is(p.status().prefetch.phase, 'stopped');
  await pump(w.clock, () => false, 300, 100);
  t.is(w.backend.reads.length, after);
  t.true(p.status().prefetch.filesDone < NONEMPTY.length);
});

test('logout stops the prefetch as soon as the final flush starts (no competition with the upload)', async (t) => {
  const w = await world(t);
  const { p, reads } = await w.session({ prefetchDelayMs: 1000 });
  t.true(await pump(w.clock, () => w.chunkReads(reads) > 0));
  t.true((await p.flush()).ok);
  const after = w.backend.reads.length;
  t.is(p.status().prefetch.phase, 'stopped');
  t.is(p.state, 'mounted');
  await pump(w.clock, () => false, 300, 100);
  t.is(w.backend.reads.length, after);
});

test('working set: recorded during the window only, saved when it ends, merged and decayed across sessions, fetched first', async (t) => {
  const w = await world(t);
  // Session 1: opens during the window; a lock file that is gone again; one open after the window.
  const s1 = await w.session({ prefetchDelayMs: null });
  const start = w.clock.now();
  w.clock.advance(1000);
  await readFile(s1.p, 'Documents/movie.mkv');
  await readFile(s1.p, 'Music/song.mp3');
  await readFile(s1.p, 'Documents/movie.mkv');
  await writeFile(s1.p, 'new.txt', 'new');
  await writeFile(s1.p, 'app.lock', 'pid');
  await s1.p.vfs.unlink('/app.lock');
  t.is(await w.doc(), null, 'nothing is written during the window');
  // The window ends 5 minutes after mount; the save follows.
  t.true(await pump(w.clock, () => w.backend.state.has('alice/workingset'), 20_000, 1000));
  t.true(w.clock.now() - start >= 5 * MIN);
  t.deepEqual(await w.doc(), [
    { path: 'Documents/movie.mkv', score: 1 },
    { path: 'Music/song.mp3', score: 1 },
    { path: 'new.txt', score: 1 },
  ]);
  await readFile(s1.p, 'Documents/report.pdf'); // after the window: not recorded
  t.true((await s1.p.close()).ok);
  t.deepEqual((await w.doc())!.map((e) => e.path), ['Documents/movie.mkv', 'Music/song.mp3', 'new.txt']);

  // Session 2, shorter than the window: saved at logout, merged with decay.
  const s2 = await w.session({ prefetchDelayMs: null });
  await readFile(s2.p, 'Documents/report.pdf');
  await readFile(s2.p, 'Music/song.mp3');
  w.clock.advance(MIN);
  await s2.p.close();
  t.deepEqual(await w.doc(), [
    { path: 'Music/song.mp3', score: 1.5 },
    { path: 'Documents/report.pdf', score: 1 },
    { path: 'Documents/movie.mkv', score: 0.5 },
    { path: 'new.txt', score: 0.5 },
  ]);

  // Session 3 prefetches the working set before anything else (without it these big files
  // would come last, after every small and configuration file).
  const s3 = await w.session({ prefetchDelayMs: 1000 });
  t.true(await pump(w.clock, () => s3.p.status().prefetch.phase === 'done'));
  const order = w.filesRead(s3.reads);
  const ws = ['Music/song.mp3', 'Documents/report.pdf', 'Documents/movie.mkv'];
  // Every chunk of the working set was read before the first chunk of any other file. (The
  // exact order is the runner test's: with two fetches in flight, neighbours may interleave.)
  const lastWs = Math.max(...ws.map((f) => order.lastIndexOf(f)));
  const others = order.filter((f) => !ws.includes(f));
  t.true(lastWs < order.indexOf(others[0]!), `fetch order ${order.join(', ')}`);
  t.deepEqual([...new Set(others)].sort(), ['.bashrc', '.cache/thumb.bin', '.config/app/big.db', '.config/app/settings.ini', 'Documents/notes.txt']);
  const before = await w.backend.readState('alice', 'workingset');
  await s3.p.close();
  t.deepEqual(await w.backend.readState('alice', 'workingset'), before, 'a session that opened nothing does not rewrite it');
});

test('a corrupt working-set document is ignored with a log line, and replaced at the next update', async (t) => {
  const w = await world(t);
  await w.backend.writeState('alice', 'workingset', packState({ v: 1, e: [['Music/song.mp3', 9], ['../../../etc/shadow', 9]] }));
  const { p, reads } = await w.session({ prefetchDelayMs: 1000 });
  await readFile(p, '.bashrc');
  t.true(await pump(w.clock, () => p.status().prefetch.phase === 'done'));
  t.true(w.lines.lines.some((l) => l.level === 'warn' && /working set document is corrupt/.test(l.msg ?? '')));
  // Nothing of it was trusted: song.mp3 came in its normal place (phase c, after the small and
  // configuration files), not first.
  const order = w.filesRead(reads);
  t.is(order[0], '.bashrc', 'the foreground read');
  t.true(order.indexOf('Music/song.mp3') >= 4, `fetch order ${order.join(', ')}`);
  for (const f of NONEMPTY) t.true(await w.cached(p, f), f);
  await p.close();
  t.deepEqual(await w.doc(), [{ path: '.bashrc', score: 1 }]);
});
