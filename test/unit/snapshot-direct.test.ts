/**
 * The logout snapshot writes its new data once, straight into the repository (SnapshotTarget
 * direct): nothing of it goes through the local store, the commit after it uploads no chunk
 * again, a crash between the two is recovered from the repository, and an unreachable
 * repository falls back to the local log.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ManualClock } from '../../src/core/clock.js';
import { RoamfsError } from '../../src/core/errors.js';
import { nullLogger } from '../../src/core/log.js';
import { Profile, type ProfileConfig } from '../../src/profile.js';
import { Repository } from '../../src/repository/repository.js';
import type { Backend } from '../../src/repository/backend.js';
import type { MemoryBackend } from '../../src/repository/memory.js';
import { TYPE_CHUNK } from '../../src/repository/objects.js';
import { gc } from '../../src/repository/gc.js';
import { LocalCache } from '../../src/base/local-cache.js';
import { contentsOf, headModel, readText, smallProfileRepo, writeText } from '../helpers/small-profile.js';

async function world(t: import('ava').ExecutionContext) {
  const clock = new ManualClock();
  const remote = await smallProfileRepo(clock);
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-direct-'));
  /** down: every call fails; refsDown: only creating a ref fails (the commit cannot land). */
  const net = { down: false, refsDown: false };
  /** putObject calls per object id (a chunk sent twice would show here). */
  const puts = new Map<string, number>();
  const backend = new Proxy(remote.backend, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function') return v;
      return (...args: unknown[]) => {
        if (net.down || (net.refsDown && prop === 'createRef')) return Promise.reject(new RoamfsError('REPOSITORY_UNAVAILABLE', 'unreachable (test)'));
        if (prop === 'putObject') puts.set(args[0] as string, (puts.get(args[0] as string) ?? 0) + 1);
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as Backend;
  let n = 0;
  const open = async (config: Partial<ProfileConfig> = {}) =>
    Profile.open({
      remote: await Repository.open(backend, { clock }), user: 'alice', cacheDir: path.join(dir, 'cache'), clock, log: nullLogger,
      host: 'desk', session: `desk${++n}`, pid: 1, uid: 1000, gid: 1000, config: { snapshotIntervalMs: null, prefetchDelayMs: null, flushTimeoutMs: 0, ...config },
    });
  const profiles: Profile[] = [];
  t.teardown(async () => {
    for (const p of profiles) await p.halt().catch(() => {});
    await fsp.rm(dir, { recursive: true, force: true });
  });
  const session = async (config: Partial<ProfileConfig> = {}) => {
    const p = await open(config);
    profiles.push(p);
    return p;
  };
  const mem = remote.backend as MemoryBackend;
  /** Chunk objects in the local store, packed or in files (their first byte is the chunk type). */
  const localChunks = async () => {
    const cache = await LocalCache.open(path.join(dir, 'cache'));
    let n = 0;
    try {
      for await (const o of cache.repo.backend.listObjects()) if ((await cache.repo.backend.getObject(o.id))[0] === TYPE_CHUNK) n++;
    } finally {
      cache.close();
    }
    return n;
  };
  return { clock, remote, mem, net, puts, session, localChunks };
}

test('logout: the final snapshot stores its chunks in the repository once, the commit uploads none again', async (t) => {
  const { mem, session, remote, localChunks, puts } = await world(t);
  const p = await session();
  const big = randomBytes(3 << 20).toString('base64'); // ~4 MiB of text: several chunks
  await writeText(p.vfs, '/big.txt', big);
  const localBefore = await localChunks();
  const writesBefore = mem.stats.objectWrites;
  const r = await p.close();
  t.deepEqual(r, { ok: true, pending: 0 });
  t.is(await localChunks(), localBefore, 'no chunk went through the local store');
  t.true(mem.stats.objectWrites - writesBefore > 4, 'chunks, trees and a commit were written');
  t.deepEqual([...puts.values()].filter((n) => n > 1), [], 'every object was sent to the repository once');
  t.is(contentsOf(await headModel(remote))['big.txt'], big);
});

test('a crash after the direct snapshot, before its commit: the next login mounts it (chunks from the repository) and commits it', async (t) => {
  const { session, remote } = await world(t);
  const p = await session();
  await writeText(p.vfs, '/notes.txt', 'saved just before the crash');
  await p.snapshotNow({ direct: true });
  await p.halt();
  const again = await session();
  t.is(again.recoveredSnapshots, 1);
  t.is(await readText(again.vfs, '/notes.txt'), 'saved just before the crash');
  await again.commitNow();
  t.is(contentsOf(await headModel(remote))['notes.txt'], 'saved just before the crash');
});

test('repository unreachable at logout: the final snapshot goes to the local log, and is committed at the next login', async (t) => {
  const { session, remote, net, localChunks } = await world(t);
  const p = await session();
  const text = randomBytes(600_000).toString('hex');
  await writeText(p.vfs, '/offline.txt', text);
  net.down = true;
  const r = await p.close();
  t.false(r.ok);
  t.is(r.pending, 1);
  t.true((await localChunks()) > 0, 'the data is in the local store');
  net.down = false;
  const again = await session();
  t.is(await readText(again.vfs, '/offline.txt'), text);
  t.deepEqual(await again.close(), { ok: true, pending: 0 });
  t.is(contentsOf(await headModel(remote))['offline.txt'], text);
});

test('the commit after a direct logout snapshot fails: its data is copied into the local store, so a gc before the next login loses nothing', async (t) => {
  const { session, remote, net, localChunks, clock } = await world(t);
  const p = await session();
  const text = randomBytes(600_000).toString('hex');
  await writeText(p.vfs, '/late.txt', text);
  const before = await localChunks();
  net.refsDown = true;
  const r = await p.close();
  t.false(r.ok);
  t.is(r.pending, 1);
  t.true((await localChunks()) > before, 'the snapshot\'s chunks are in the local store too');
  net.refsDown = false;
  // Days later, before this machine's next login: gc deletes what no commit references.
  clock.advance(48 * 3600_000);
  const g = await gc(remote, { graceMs: 3600_000 });
  t.true(g.deleted > 0, 'the repository copy of the snapshot\'s data is gone');
  const again = await session();
  t.is(await readText(again.vfs, '/late.txt'), text);
  t.deepEqual(await again.close(), { ok: true, pending: 0 });
  t.is(contentsOf(await headModel(remote))['late.txt'], text);
});

test('no local snapshot and no repository: the login fails with the repository error', async (t) => {
  const { session, net } = await world(t);
  net.down = true;
  const err = await t.throwsAsync(session());
  t.regex(err!.message, /unreachable/);
});

test('the commit of a direct snapshot counts the bytes the snapshot wrote (roamfs log, status)', async (t) => {
  const { session, remote } = await world(t);
  const p = await session();
  const text = randomBytes(300_000).toString('hex');
  await writeText(p.vfs, '/counted.txt', text);
  await p.snapshotNow({ direct: true });
  t.true(p.status().bytesUploaded >= text.length, `status: ${p.status().bytesUploaded} bytes up`);
  await p.commitNow();
  const head = await remote.getCommit((await remote.requireHead('alice')).commit);
  t.true(head.stats.bytes >= text.length, `the commit says ${head.stats.bytes} bytes added`);
});
