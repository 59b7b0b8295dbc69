/**
 * Repository + Backend conformance: one suite, written once, run against MemoryBackend and
 * PosixBackend (docs/repository-format.md: objects, refs and the compare-and-swap of the head,
 * name validation on write and on read).
 */
import test, { type ExecutionContext } from 'ava';
import { setImmediate as tick } from 'node:timers/promises';
import { RoamfsError, isRoamfsError } from '../../src/core/errors.js';
import { sha256 } from '../../src/core/hash.js';
import { userNameProblem } from '../../src/core/names.js';
import type { Backend } from '../../src/repository/backend.js';
import { fsck } from '../../src/repository/fsck.js';
import { gc } from '../../src/repository/gc.js';
import { TYPE_CHUNK, TYPE_COMMIT, TYPE_TREE, encodeRef, packState, type Ref, type TreeEntry } from '../../src/repository/objects.js';
import { choosePrune } from '../../src/repository/prune.js';
import { Repository } from '../../src/repository/repository.js';
import { KITS, intercept, type BackendKit, type KitFactory } from '../helpers/repo-backends.js';
import { META, buildCommit, commitOnTop } from '../helpers/repo-build.js';
import { Rng, randomBuffer } from '../helpers/repo-data.js';

async function rejects(t: ExecutionContext, p: Promise<unknown>, code: string, mention?: string): Promise<RoamfsError> {
  const err = await t.throwsAsync(p);
  t.true(err instanceof RoamfsError, `expected a RoamfsError, got ${String(err)}`);
  t.is((err as RoamfsError).code, code as RoamfsError['code'], String(err?.message));
  if (mention !== undefined) t.true(err!.message.includes(mention), `"${err!.message}" should mention ${mention}`);
  return err as RoamfsError;
}

/** Store raw stored-bytes (type byte + payload) under their correct hash, bypassing encoders. */
async function putRaw(b: Backend, bytes: Buffer): Promise<string> {
  const id = sha256(bytes);
  await b.putObject(id, bytes);
  return id;
}

const fileEntry = (name: string): Record<string, unknown> => ({ n: name, t: 'f', m: 0o644, u: 0, g: 0, mt: [1, 2], s: 0, c: [] });
const treeBytes = (entries: unknown[]) => Buffer.concat([Buffer.of(TYPE_TREE), packState({ v: 1, e: entries })]);

const BAD_NAMES: Array<[string, string]> = [
  ['..', 'dot-dot'],
  ['.', 'dot'],
  ['a/b', 'slash'],
  ['/', 'lone slash'],
  ['a\0b', 'NUL'],
  ['', 'empty'],
  ['x'.repeat(256), '256 ASCII bytes'],
  ['é'.repeat(128), '256 UTF-8 bytes in 128 characters'],
];
/** A JS string that is not valid Unicode: refused on encode (msgpack could not even carry it). */
const BAD_ON_ENCODE_ONLY: Array<[string, string]> = [['\ud800', 'lone surrogate']];

function suite(kindName: string, makeKit: KitFactory) {
  const title = (s: string) => `[${kindName}] ${s}`;
  async function setup(t: ExecutionContext): Promise<{ kit: BackendKit; repo: Repository }> {
    const kit = await makeKit(t);
    const repo = await Repository.init(kit.backend);
    return { kit, repo };
  }

  test(title('init: a second init is refused, open reads the config back'), async (t) => {
    const { kit, repo } = await setup(t);
    await rejects(t, Repository.init(kit.other()), 'NOT_EMPTY');
    const again = await Repository.open(kit.other());
    t.deepEqual(again.config, repo.config);
    t.is(again.config.format, 'roamfs-repository');
    t.is(again.config.version, 1);
    t.deepEqual(again.config.chunker, { algorithm: 'fastcdc', minSize: 65536, avgSize: 262144, maxSize: 1048576 });
  });

  test(title('objects: id = SHA-256(type byte + payload), get returns the payload, types never collide'), async (t) => {
    const { kit, repo } = await setup(t);
    const payload = randomBuffer('obj', 5000);
    const chunk = await repo.putChunk(payload);
    t.is(chunk.id, sha256(Buffer.of(TYPE_CHUNK), payload));
    t.true(chunk.written);
    t.deepEqual(await kit.backend.getObject(chunk.id), Buffer.concat([Buffer.of(TYPE_CHUNK), payload]));
    t.deepEqual(await repo.getChunk(chunk.id, payload.length), payload);

    const b = await buildCommit(repo, { f: payload, d: { g: 'hello' } });
    const tree = await repo.getTree(b.tree);
    t.deepEqual(tree.map((e) => [e.name, e.type]), [['d', 'dir'], ['f', 'file']]);
    const f = tree[1] as Extract<TreeEntry, { type: 'file' }>;
    t.deepEqual(f.chunks, [{ id: chunk.id, size: payload.length }]);
    const commit = await repo.getCommit(b.commit);
    t.is(commit.root.tree, b.tree);
    t.is((await kit.backend.getObject(b.tree))[0], TYPE_TREE);
    t.is((await kit.backend.getObject(b.commit))[0], TYPE_COMMIT);

    // The same bytes as a different type are a different object.
    const raw = await kit.backend.getObject(b.tree);
    const asChunk = await repo.putChunk(raw.subarray(1));
    t.not(asChunk.id, b.tree);
    t.deepEqual(await repo.getChunk(asChunk.id), raw.subarray(1));
  });

  test(title('objects: a flipped byte anywhere is CORRUPT_OBJECT naming the id (chunk, tree, commit)'), async (t) => {
    const { kit, repo } = await setup(t);
    const b = await buildCommit(repo, { f: randomBuffer('flip', 3000), d: { g: 'x' } });
    const chunkId = [...b.chunks][0]!;
    const rng = new Rng(7);
    const cases: Array<[string, string, () => Promise<unknown>]> = [
      ['chunk', chunkId, () => repo.getChunk(chunkId)],
      ['tree', b.tree, () => repo.getTree(b.tree)],
      ['commit', b.commit, () => repo.getCommit(b.commit)],
    ];
    for (const [what, id, read] of cases) {
      const good = await kit.backend.getObject(id);
      await t.notThrowsAsync(read(), `${what} reads before damage`);
      for (const pos of [0, good.length - 1, rng.int(1, good.length - 1)]) {
        const bad = Buffer.from(good);
        bad[pos] ^= 1 << rng.int(0, 8);
        await kit.overwriteObject(id, bad);
        await rejects(t, read(), 'CORRUPT_OBJECT', id);
      }
      // Truncated.
      await kit.overwriteObject(id, good.subarray(0, good.length >> 1));
      await rejects(t, read(), 'CORRUPT_OBJECT', id);
      await kit.overwriteObject(id, Buffer.alloc(0));
      await rejects(t, read(), 'CORRUPT_OBJECT', id);
      await kit.overwriteObject(id, good);
      await t.notThrowsAsync(read(), `${what} reads after repair`);
    }
  });

  test(title('objects: an absent object is MISSING_OBJECT naming the id'), async (t) => {
    const { kit, repo } = await setup(t);
    const ghost = sha256(Buffer.from('never stored'));
    await rejects(t, repo.getChunk(ghost), 'MISSING_OBJECT', ghost);
    await rejects(t, repo.getTree(ghost), 'MISSING_OBJECT', ghost);
    await rejects(t, repo.getCommit(ghost), 'MISSING_OBJECT', ghost);
    t.is(await kit.backend.statObject(ghost), null);
    const { id } = await repo.putChunk(Buffer.from('soon gone'));
    await kit.backend.deleteObject(id);
    await rejects(t, repo.getChunk(id), 'MISSING_OBJECT', id);
    await t.notThrowsAsync(kit.backend.deleteObject(id), 'deleting an absent object is not an error');
  });

  test(title('objects: the type byte is checked: a tree is not a chunk, an unknown type is nothing'), async (t) => {
    const { kit, repo } = await setup(t);
    const treeId = await putRaw(kit.backend, treeBytes([fileEntry('ok')]));
    t.is((await repo.getTree(treeId)).length, 1);
    await rejects(t, repo.getChunk(treeId), 'CORRUPT_OBJECT', treeId);
    await rejects(t, repo.getCommit(treeId), 'CORRUPT_OBJECT', treeId);

    const chunkId = await putRaw(kit.backend, Buffer.concat([Buffer.of(TYPE_CHUNK), packState({ v: 1, e: [] })]));
    t.is((await repo.getChunk(chunkId)).length > 0, true);
    await rejects(t, repo.getTree(chunkId), 'CORRUPT_OBJECT', chunkId);

    const weird = await putRaw(kit.backend, Buffer.concat([Buffer.of(0x7f), packState({ v: 1, e: [] })]));
    await rejects(t, repo.getChunk(weird), 'CORRUPT_OBJECT', weird);
    await rejects(t, repo.getTree(weird), 'CORRUPT_OBJECT', weird);
    await rejects(t, repo.getCommit(weird), 'CORRUPT_OBJECT', weird);
    // A chunk shorter or longer than its tree says.
    const { id } = await repo.putChunk(Buffer.from('12345'));
    await rejects(t, repo.getChunk(id, 6), 'CORRUPT_OBJECT', id);
  });

  test(title('putObject is idempotent: never rewrites, touches the mtime, and rewrites after a gc removed it'), async (t) => {
    const { kit } = await setup(t);
    const b = kit.backend;
    const data = Buffer.concat([Buffer.of(TYPE_CHUNK), randomBuffer('idem', 1000)]);
    const id = sha256(data);
    t.true(await b.putObject(id, data));
    const old = Date.now() - 3 * 3_600_000;
    await kit.setObjectMtime(id, old);
    t.true((await b.statObject(id))!.mtimeMs < old + 1000);
    const before = await b.storageNow();
    t.false(await b.putObject(id, data), 'second put reports "already there"');
    const st = (await b.statObject(id))!;
    t.true(st.mtimeMs >= before - 2000, `touched: mtime ${st.mtimeMs} should be about now (${before})`);
    t.is(st.size, data.length);
    // Written once, never modified: a put with other bytes under that id changes nothing.
    t.false(await b.putObject(id, Buffer.alloc(data.length)));
    t.deepEqual(await b.getObject(id), data);
    const listed = [];
    for await (const o of b.listObjects()) listed.push(o.id);
    t.deepEqual(listed, [id]);

    // Through a fresh Repository on another handle (another process): touch, not write.
    await kit.setObjectMtime(id, old);
    const repo2 = await Repository.open(kit.other());
    const r = await repo2.putChunk(data.subarray(1));
    t.deepEqual(r, { id, written: false });
    t.true((await b.statObject(id))!.mtimeMs >= before - 2000);
    t.is(repo2.stats.objectsWritten, 0);

    // Removed behind our back (gc): the next put stores it again.
    await b.deleteObject(id);
    t.true(await b.putObject(id, data));
    t.deepEqual(await b.getObject(id), data);
  });

  test(title('touchObject refreshes an existing object\'s mtime without its bytes; false when absent'), async (t) => {
    const { kit } = await setup(t);
    const b = kit.backend;
    const data = Buffer.concat([Buffer.of(TYPE_CHUNK), randomBuffer('touch', 100)]);
    const id = sha256(data);
    t.false(await b.touchObject(id), 'absent');
    t.is(await b.statObject(id), null, 'a touch never creates');
    t.true(await b.putObject(id, data));
    const old = Date.now() - 3 * 3_600_000;
    await kit.setObjectMtime(id, old);
    const before = await b.storageNow();
    t.true(await b.touchObject(id));
    t.true((await b.statObject(id))!.mtimeMs >= before - 2000);
    t.deepEqual(await b.getObject(id), data, 'content unchanged');
    // Through a Repository on another handle: touched once, then remembered.
    await kit.setObjectMtime(id, old);
    const repo2 = await Repository.open(kit.other());
    t.true(await repo2.touchObject(id));
    t.true((await b.statObject(id))!.mtimeMs >= before - 2000);
    await b.deleteObject(id);
    t.false(await (await Repository.open(kit.other())).touchObject(id), 'gone: a fresh process sees it absent');
  });

  test(title('trash/restore/emptyTrash: the quarantine gc relies on'), async (t) => {
    const { kit, repo } = await setup(t);
    const b = kit.backend;
    const x = await repo.putChunk(Buffer.from('x'));
    const y = await repo.putChunk(Buffer.from('y'));
    const seen = await b.trashObject(x.id, 'batch1');
    t.is(seen?.id, x.id);
    t.is(seen?.size, 2);
    t.is(await b.statObject(x.id), null);
    await rejects(t, repo.getChunk(x.id), 'MISSING_OBJECT');
    t.is(await b.trashObject(x.id, 'batch1'), null, 'trashing an absent object says so');
    await b.restoreObject(x.id, 'batch1');
    t.deepEqual(await repo.getChunk(x.id), Buffer.from('x'));
    await b.restoreObject(x.id, 'batch1'); // idempotent
    await b.trashObject(y.id, 'batch1');
    await b.emptyTrash('batch1');
    await b.restoreObject(y.id, 'batch1');
    t.is(await b.statObject(y.id), null, 'emptied trash is gone for good');
    t.deepEqual(await kit.leftovers(), []);
  });

  test(title('refs: the first commit of a user, the head, the refs newest first'), async (t) => {
    const { kit, repo } = await setup(t);
    t.is(await repo.head('alice'), null);
    t.deepEqual(await repo.users(), []);
    await rejects(t, repo.requireHead('alice'), 'UNKNOWN_USER', 'alice');
    const a = await commitOnTop(repo, 'alice', { f: '1' });
    t.is(a.ref.seq, 1);
    t.is(a.ref.prev, null);
    const b = await commitOnTop(repo, 'alice', { f: '2' });
    t.is(b.ref.seq, 2);
    t.is(b.ref.prev, a.built.commit);
    const head = await repo.head('alice');
    t.deepEqual(head, b.ref);
    t.deepEqual((await repo.refs('alice')).map((r) => r.seq), [2, 1]);
    t.deepEqual(await kit.backend.listRefs('alice'), [1, 2]);
    t.deepEqual(await repo.users(), ['alice']);
    t.is(await repo.resolveCommit('alice', a.built.commit.slice(0, 10)), a.built.commit);
    const unknown = ['0000', 'ffff', 'abcd'].find((p) => !a.built.commit.startsWith(p) && !b.built.commit.startsWith(p))!;
    await rejects(t, repo.resolveCommit('alice', unknown), 'UNKNOWN_COMMIT', unknown);
  });

  test(title('refs CAS: writers racing from the same expected head: exactly one wins, the others get HEAD_CONFLICT'), async (t) => {
    const { kit, repo } = await setup(t);
    const writers = [repo, ...(await Promise.all([1, 2, 3].map(() => Repository.open(kit.other()))))];
    let expected: Ref | null = null; // the very first commit of a user races too
    for (let round = 0; round < 12; round++) {
      const n = round % 2 === 0 ? 2 : writers.length;
      const commits = await Promise.all(writers.slice(0, n).map((w, i) => buildCommit(w, { f: `round ${round} writer ${i}` }, { parents: expected ? [expected.commit] : [] })));
      const results = await Promise.allSettled(writers.slice(0, n).map((w, i) => w.moveHead('alice', expected, commits[i]!.commit, META)));
      const won = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : []));
      t.is(won.length, 1, `round ${round}: exactly one winner`);
      for (const r of results) {
        if (r.status === 'rejected') t.true(isRoamfsError(r.reason, 'HEAD_CONFLICT'), String(r.reason));
      }
      const head = (await repo.head('alice'))!;
      t.is(head.seq, (expected?.seq ?? 0) + 1);
      t.is(head.commit, commits[won[0]!]!.commit, 'the head is the winner');
      t.is(head.prev, expected?.commit ?? null);
      expected = head;
    }
    t.deepEqual(await kit.backend.listRefs('alice'), Array.from({ length: 12 }, (_, i) => i + 1));
  });

  test(title('refs CAS: a stale writer (refs N+1.. created and pruned meanwhile) gets HEAD_CONFLICT and leaves no ref'), async (t) => {
    const { kit, repo } = await setup(t);
    const first = await commitOnTop(repo, 'alice', { f: 'base' });
    const stale = await Repository.open(kit.other());
    const held = (await stale.head('alice'))!; // writer reads head N = 1 and goes quiet
    t.is(held.seq, 1);
    for (let i = 2; i <= 4; i++) await commitOnTop(repo, 'alice', { f: `v${i}` });
    // prune forgets everything but the head: refs 1..3 are gone, so seq 2 is free again
    const d = choosePrune(await repo.refs('alice'), { last: 1 });
    t.deepEqual(d.keep.map((r) => r.seq), [4]);
    for (const r of d.forget) await kit.backend.deleteRef('alice', r.seq);
    t.deepEqual(await kit.backend.listRefs('alice'), [4]);
    const headBefore = (await repo.head('alice'))!;

    const mine = await buildCommit(stale, { f: 'stale writer' }, { parents: [first.built.commit] });
    await rejects(t, stale.moveHead('alice', held, mine.commit, META), 'HEAD_CONFLICT');
    t.deepEqual(await kit.backend.listRefs('alice'), [4], 'the stale ref was removed again');
    t.deepEqual(await repo.head('alice'), headBefore, 'the head did not move (backward or anywhere)');

    // Re-reading the head and building on it works.
    const fresh = (await stale.head('alice'))!;
    const ok = await stale.moveHead('alice', fresh, mine.commit, META);
    t.is(ok.seq, 5);
    t.is(ok.prev, headBefore.commit);
  });

  test(title('refs CAS: someone building on our new ref before our stale check is not a conflict'), async (t) => {
    const { kit, repo } = await setup(t);
    await commitOnTop(repo, 'alice', { f: 'base' });
    const other = await Repository.open(kit.other());
    const mine = await buildCommit(repo, { f: 'mine' });
    let injected = false;
    const hooked = intercept(kit.backend, {
      async createRef(orig, user, seq, data) {
        await orig(user, seq, data);
        if (!injected) {
          injected = true; // another desktop reads our ref as head and commits on top of it
          await commitOnTop(other, 'alice', { f: 'on top of mine' });
        }
      },
    });
    const repoH = await Repository.open(hooked);
    const head = (await repoH.head('alice'))!;
    const ref = await repoH.moveHead('alice', head, mine.commit, META);
    t.true(injected);
    t.is(ref.seq, 2);
    t.deepEqual(await kit.backend.listRefs('alice'), [1, 2, 3]);
    t.is((await repo.head('alice'))!.prev, mine.commit);
  });

  test(title('refs CAS under churn: the head never moves backward and successful commits form one chain'), async (t) => {
    const { kit, repo } = await setup(t);
    const rng = new Rng(kindName === 'memory' ? 11 : 12);
    await commitOnTop(repo, 'u', { f: 'genesis' });
    const successes: Ref[] = [(await repo.head('u'))!];
    let running = true;
    const pause = async () => {
      for (let i = rng.int(0, 6); i > 0; i--) await tick();
    };
    const writer = async (w: number) => {
      const r = await Repository.open(kit.other());
      for (let i = 0; i < 14; i++) {
        const head = (await r.head('u'))!;
        if (rng.next() < 0.3) for (let k = 0; k < 20; k++) await tick(); // go stale for a while
        await pause();
        const b = await buildCommit(r, { f: `w${w} i${i}` }, { parents: [head.commit] });
        await pause();
        try {
          successes.push(await r.moveHead('u', head, b.commit, META));
        } catch (err) {
          if (!isRoamfsError(err, 'HEAD_CONFLICT')) throw err;
        }
      }
    };
    const pruner = async () => {
      const r = await Repository.open(kit.other());
      while (running) {
        const d = choosePrune(await r.refs('u'), { last: rng.int(1, 3) });
        for (const f of d.forget) await r.backend.deleteRef('u', f.seq);
        await pause();
      }
    };
    const observed: number[] = [];
    const observer = async () => {
      const r = await Repository.open(kit.other());
      while (running) {
        observed.push((await r.head('u'))!.seq);
        await pause();
      }
    };
    const bg = [pruner(), observer()];
    await Promise.all([0, 1, 2, 3].map(writer));
    running = false;
    await Promise.all(bg);
    observed.push((await repo.head('u'))!.seq);

    for (let i = 1; i < observed.length; i++) t.true(observed[i]! >= observed[i - 1]!, `head went from ${observed[i - 1]} back to ${observed[i]}`);
    successes.sort((a, b) => a.seq - b.seq);
    t.true(successes.length > 5, 'some writers succeeded');
    for (let i = 1; i < successes.length; i++) {
      t.is(successes[i]!.seq, successes[i - 1]!.seq + 1, 'one success per seq, no gaps');
      t.is(successes[i]!.prev, successes[i - 1]!.commit, `ref ${successes[i]!.seq} builds on the previous success`);
    }
    t.is((await repo.head('u'))!.commit, successes[successes.length - 1]!.commit);
  });

  test(title('tree names: invalid names are rejected on encode'), async (t) => {
    const { kit, repo } = await setup(t);
    for (const [name, why] of [...BAD_NAMES, ...BAD_ON_ENCODE_ONLY]) {
      const e: TreeEntry = { name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 0, chunks: [] };
      const err = await rejects(t, repo.putTree([e]), 'INVALID_NAME');
      t.truthy(err, why);
    }
    const objects = [];
    for await (const o of kit.backend.listObjects()) objects.push(o);
    t.deepEqual(objects, [], 'nothing was stored');
    // The limits themselves are fine.
    const ok255 = 'y'.repeat(255);
    const ok255u = 'é'.repeat(127) + 'z'; // 255 bytes
    const id = await repo.putTree(
      [ok255, ok255u, '...', '.hidden', 'with space', '🎉', 'e\u0301', '\u00e9'].map((name) => ({ name, type: 'file' as const, mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 0, chunks: [] })),
    );
    t.is((await repo.getTree(id)).length, 8);
  });

  test(title('tree names: a hand-crafted malicious tree with a correct hash is rejected on decode'), async (t) => {
    const { kit, repo } = await setup(t);
    const control = await putRaw(kit.backend, treeBytes([fileEntry('fine')]));
    t.deepEqual((await repo.getTree(control)).map((e) => e.name), ['fine'], 'the crafting itself is sound');
    for (const [name, why] of BAD_NAMES) {
      const id = await putRaw(kit.backend, treeBytes([fileEntry(name)]));
      const err = await rejects(t, repo.getTree(id), 'CORRUPT_OBJECT', id);
      t.truthy(err, why);
    }
    // A directory entry named '..' pointing at a real subtree: the classic escape.
    const sub = await putRaw(kit.backend, treeBytes([fileEntry('passwd')]));
    const escape = await putRaw(kit.backend, treeBytes([{ ...fileEntry('..'), t: 'd', d: Buffer.from(sub, 'hex') }]));
    await rejects(t, repo.getTree(escape), 'CORRUPT_OBJECT', escape);
    // Names that hide as non-strings.
    for (const n of [42, null, Buffer.from('ab'), ['a']]) {
      const id = await putRaw(kit.backend, treeBytes([{ ...fileEntry('x'), n }]));
      await rejects(t, repo.getTree(id), 'CORRUPT_OBJECT', id);
    }
  });

  test(title('tree decode: duplicates, order, types, missing fields and chunk sums are validated'), async (t) => {
    const { kit, repo } = await setup(t);
    const cid = Buffer.from(sha256(Buffer.from('c')), 'hex');
    const bad: Array<[string, unknown]> = [
      ['duplicate names', { v: 1, e: [fileEntry('a'), fileEntry('a')] }],
      ['unsorted', { v: 1, e: [fileEntry('b'), fileEntry('a')] }],
      ['unknown type', { v: 1, e: [{ ...fileEntry('a'), t: 'p' }] }],
      ['missing mode', { v: 1, e: [{ ...fileEntry('a'), m: undefined }] }],
      ['missing mtime', { v: 1, e: [{ ...fileEntry('a'), mt: undefined }] }],
      ['bad nanoseconds', { v: 1, e: [{ ...fileEntry('a'), mt: [1, 1e9] }] }],
      ['string uid', { v: 1, e: [{ ...fileEntry('a'), u: '0' }] }],
      ['chunk sizes do not sum to s', { v: 1, e: [{ ...fileEntry('a'), s: 10, c: [[cid, 9]] }] }],
      ['short chunk id', { v: 1, e: [{ ...fileEntry('a'), s: 1, c: [[cid.subarray(0, 31), 1]] }] }],
      ['dir without subtree', { v: 1, e: [{ ...fileEntry('a'), t: 'd' }] }],
      ['symlink without target', { v: 1, e: [{ ...fileEntry('a'), t: 'l' }] }],
      ['wrong version', { v: 2, e: [] }],
      ['entries not a list', { v: 1, e: 'a' }],
      ['not msgpack map', [1, 2, 3]],
    ];
    for (const [why, doc] of bad) {
      const id = await putRaw(kit.backend, Buffer.concat([Buffer.of(TYPE_TREE), packState(doc)]));
      const err = await rejects(t, repo.getTree(id), 'CORRUPT_OBJECT', id);
      t.truthy(err, why);
    }
    const good = await putRaw(kit.backend, treeBytes([{ ...fileEntry('a'), s: 10, c: [[cid, 4], [cid, 6]] }, fileEntry('b')]));
    t.is((await repo.getTree(good)).length, 2);
  });

  test(title('user names are validated on every call and on read'), async (t) => {
    const { kit, repo } = await setup(t);
    const b = await buildCommit(repo, { f: 'x' });
    for (const u of ['../x', 'a/b', '', '.', '..', '.hidden', '-x', '1abc', 'a b', 'a\0b', 'x'.repeat(33), 'é']) {
      await rejects(t, repo.head(u), 'INVALID_NAME');
      await rejects(t, repo.refs(u), 'INVALID_NAME');
      await rejects(t, repo.moveHead(u, null, b.commit, META), 'INVALID_NAME');
      t.truthy(userNameProblem(u), `${JSON.stringify(u)} is invalid`);
    }
    for (const u of ['alice', 'Bob', '_svc', 'a.b-c_d', 'x'.repeat(32), 'user1']) t.is(userNameProblem(u), undefined, u);
    t.deepEqual(await kit.backend.listUsers(), [], 'nothing was created');

    // A user entry with an invalid name found in storage is refused on read, not used as a path.
    await commitOnTop(repo, 'alice', { f: 'x' });
    await kit.backend.createRef('bad name', 1, encodeRef({ seq: 1, commit: b.commit, prev: null, ...META }));
    await t.throwsAsync(gc(repo, { graceMs: 0 }), { code: 'INVALID_NAME' }, 'gc refuses to work on incomplete knowledge');
    t.not(await kit.backend.statObject(b.commit), null);
    const report = await fsck(repo);
    t.true(report.damage.some((d) => d.problem.includes('invalid user name')), JSON.stringify(report.damage));
  });
}

for (const [name, kit] of KITS) suite(name, kit);
