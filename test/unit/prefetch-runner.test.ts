import test, { type ExecutionContext } from 'ava';
import { constants as C } from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { memoryLogger } from '../../src/core/log.js';
import { OverlayVfs } from '../../src/vfs/overlay-vfs.js';
import { Prefetcher, type PrefetchStepResult } from '../../src/prefetch/prefetcher.js';
import { FILES, NONEMPTY as ALL_NONEMPTY, committedProfile, pump } from '../helpers/prefetch-fixture.js';

const DELAY = 30_000;

async function setup(t: ExecutionContext, opts: { workingSet?: string[] } = {}) {
  const clock = new ManualClock();
  const { backend, repo, entries, filesRead: readSince, chunkReads: chunkReadsSince } = await committedProfile(clock);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-prefetch-'));
  const vfs = await OverlayVfs.open({ remote: repo, user: 'alice', cacheDir: dir, clock, uid: 1000, gid: 1000 });
  const mountReads = backend.reads.length;
  const activity = { last: clock.now() - 10_000, active: 0 };
  const log = memoryLogger();
  const pf = new Prefetcher({
    overlay: vfs.overlay,
    loader: vfs.loader,
    clock,
    log,
    activity: { lastActivityMs: () => activity.last, activeOps: () => activity.active },
    workingSet: async () => opts.workingSet ?? [],
    delayMs: DELAY,
  });
  t.teardown(async () => {
    backend.releaseAll(); // before stop(), which waits for the reads in flight
    await pf.stop();
    await vfs.close();
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const filesRead = () => readSince(mountReads);
  const chunkReads = () => chunkReadsSince(mountReads);
  const cached = async (p: string) => {
    for (const ch of entries.get(p)!.chunks) if (!(await vfs.loader.cache.has(ch.id, ch.size))) return false;
    return true;
  };
  return { clock, backend, repo, vfs, pf, activity, log, entries, filesRead, chunkReads, cached, mountReads };
}

async function runToEnd(pf: Prefetcher, max = 1000): Promise<PrefetchStepResult[]> {
  const out: PrefetchStepResult[] = [];
  for (let i = 0; i < max; i++) {
    const r = await pf.prefetchStep();
    out.push(r);
    if (r.state === 'done' || r.state === 'stopped') return out;
    if (r.state !== 'worked') throw new Error(`unexpected step result ${JSON.stringify(r)}`);
  }
  throw new Error('prefetch did not finish');
}


test('order: working set first (its order), then small and config files, then the rest, smallest first', async (t) => {
  const f = await setup(t, { workingSet: ['Music/song.mp3', 'no/such/file', 'Documents/report.pdf'] });
  f.clock.advance(DELAY);
  await runToEnd(f.pf);
  t.deepEqual(f.filesRead(), [
    'Music/song.mp3',
    'Documents/report.pdf',
    '.config/app/settings.ini',
    '.bashrc',
    'Documents/notes.txt',
    '.config/app/big.db',
    '.cache/thumb.bin',
    'Documents/movie.mkv',
  ]);
  // Each chunk was fetched exactly once.
  t.is(f.chunkReads(), [...f.entries.values()].reduce((s, e) => s + e.chunks.length, 0));
  const total = ALL_NONEMPTY.reduce((s, p) => s + FILES[p]!, 0);
  t.deepEqual(f.pf.progress(), { phase: 'done', filesDone: ALL_NONEMPTY.length, filesTotal: ALL_NONEMPTY.length, bytesDone: total, bytesTotal: total });
});

test('nothing is fetched at mount or before the delay; a file never opened is fetched only by the prefetch', async (t) => {
  const f = await setup(t);
  t.false(await f.cached('Documents/movie.mkv'));
  f.clock.advance(DELAY - 1);
  t.deepEqual(await f.pf.prefetchStep(), { state: 'waiting', delayMs: 1 });
  t.is(f.chunkReads(), 0);
  t.is(f.pf.progress().phase, 'waiting');
  f.clock.advance(1);
  await runToEnd(f.pf);
  for (const p of ALL_NONEMPTY) t.true(await f.cached(p), p);
  // Reading it now costs no remote read.
  const before = f.backend.reads.length;
  const fh = await f.vfs.open('/Documents/movie.mkv', C.O_RDONLY);
  const buf = Buffer.alloc(FILES['Documents/movie.mkv']!);
  t.is(await f.vfs.read(fh, buf, buf.length, 0), buf.length);
  await f.vfs.release(fh);
  t.is(f.backend.reads.length, before);
});

test('pauses while the file system is busy: recent activity or an operation in flight', async (t) => {
  const f = await setup(t);
  f.clock.advance(DELAY);
  f.activity.last = f.clock.now() - 50;
  t.deepEqual(await f.pf.prefetchStep(), { state: 'paused', delayMs: 100 });
  f.activity.last = f.clock.now() - 10_000;
  f.activity.active = 1; // a long read started long ago and is still running
  t.like(await f.pf.prefetchStep(), { state: 'paused' });
  t.is(f.chunkReads(), 0);
  f.activity.active = 0;
  t.deepEqual(await f.pf.prefetchStep(), { state: 'worked' });
  // Activity in the middle of the prefetch pauses it again; nothing new is fetched meanwhile.
  for (let i = 0; i < 12; i++) await f.pf.prefetchStep();
  const reads = f.chunkReads();
  t.true(reads > 0);
  f.activity.last = f.clock.now();
  for (let i = 0; i < 5; i++) t.like(await f.pf.prefetchStep(), { state: 'paused' });
  t.is(f.chunkReads(), reads);
  f.clock.advance(150);
  await runToEnd(f.pf);
  for (const p of ALL_NONEMPTY) t.true(await f.cached(p), p);
});

test('stop: nothing more is fetched, and stop waits for the fetch in flight', async (t) => {
  const f = await setup(t);
  f.clock.advance(DELAY);
  for (let i = 0; i < 12; i++) await f.pf.prefetchStep();
  const reads = f.chunkReads();
  t.true(reads > 0);
  const release = f.backend.hold();
  const inflight = f.pf.prefetchStep();
  await new Promise((r) => setTimeout(r, 20));
  let stopped = false;
  const stopping = f.pf.stop().then(() => (stopped = true));
  await new Promise((r) => setTimeout(r, 20));
  t.false(stopped, 'stop waits for the unit in flight');
  release();
  await stopping;
  await inflight;
  t.deepEqual(await f.pf.prefetchStep(), { state: 'stopped' });
  t.is(f.pf.progress().phase, 'stopped');
  t.true(f.chunkReads() <= reads + 1);
  t.false(await f.cached('Documents/movie.mkv'));
});

test('skips files rewritten or deleted in this session, and works through the overlay (not the OS path)', async (t) => {
  const f = await setup(t, { workingSet: ['Music/song.mp3', 'Documents/movie.mkv'] });
  // Rewrite movie.mkv from scratch (no copy-up: O_TRUNC), delete song.mp3, rename the Documents dir.
  const fh = await f.vfs.open('/Documents/movie.mkv', C.O_WRONLY | C.O_TRUNC);
  await f.vfs.write(fh, Buffer.from('new'), 3, 0);
  await f.vfs.release(fh);
  await f.vfs.unlink('/Music/song.mp3');
  await f.vfs.rename('/Documents', '/Docs');
  t.is(f.chunkReads(), 0);
  f.clock.advance(DELAY);
  await runToEnd(f.pf);
  const read = f.filesRead();
  t.false(read.includes('Documents/movie.mkv'));
  t.false(read.includes('Music/song.mp3'));
  // The renamed directory's files are still fetched (found by walking the overlay).
  t.true(read.includes('Documents/report.pdf'));
  t.true(read.includes('Documents/notes.txt'));
  t.deepEqual(read.slice(0, 2), ['.config/app/settings.ini', '.bashrc'], 'nothing of the stale working set was fetched first');
});

test('the loop: at most two fetches in flight, scheduled only with the injected clock', async (t) => {
  const f = await setup(t);
  f.pf.start();
  f.clock.advance(DELAY - 1);
  await new Promise((r) => setTimeout(r, 20));
  t.is(f.backend.reads.length, f.mountReads, 'nothing before the delay');
  f.clock.advance(1);
  t.true(await pump(f.clock, () => f.pf.progress().phase === 'small'));
  // Hold the chunk reads at the backend: the loop keeps exactly two waiting there.
  const release = f.backend.hold();
  f.backend.maxPending = f.backend.pending;
  t.true(await pump(f.clock, () => f.backend.pending >= 2));
  await pump(f.clock, () => false, 50);
  t.is(f.backend.pending, 2, 'two fetches wait at the gate, no third');
  t.is(f.pf.unitsInFlight, 2);
  release();
  t.true(await pump(f.clock, () => f.pf.progress().phase === 'done'));
  await pump(f.clock, () => f.clock.pending() === 0, 1000, 200);
  t.true(f.backend.maxPending <= 2);
  for (const p of ALL_NONEMPTY) t.true(await f.cached(p), p);
  t.is(f.clock.pending(), 0, 'the loop ended');
});
