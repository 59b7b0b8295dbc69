/**
 * gc (docs/repository-format.md, "Maintenance"): unreachable objects older than the grace period
 * go, live and young ones stay; and the concurrency guarantee against writers that reuse or
 * reference objects while gc runs. Every test runs on MemoryBackend and on a real PosixBackend.
 */
import test, { type ExecutionContext } from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { isRoamfsError } from '../../src/core/errors.js';
import { sha256, type ObjectId } from '../../src/core/hash.js';
import type { Backend } from '../../src/repository/backend.js';
import { fsck } from '../../src/repository/fsck.js';
import { gc } from '../../src/repository/gc.js';
import { TYPE_CHUNK, type TreeEntry } from '../../src/repository/objects.js';
import { Repository } from '../../src/repository/repository.js';
import { exportTree } from '../../src/transfer/export.js';
import { KITS, intercept, type KitFactory } from '../helpers/repo-backends.js';
import { META, commitOnTop, type DirSpec } from '../helpers/repo-build.js';
import { randomBuffer } from '../helpers/repo-data.js';
import { tempDir } from '../helpers/repo-fs.js';

const HOUR = 3_600_000;
const GRACE = HOUR;

async function allObjects(b: Backend): Promise<Set<ObjectId>> {
  const s = new Set<ObjectId>();
  for await (const o of b.listObjects()) s.add(o.id);
  return s;
}

/** Export the head of `user` and check every file's content against `spec`. */
async function exportMatches(t: ExecutionContext, repo: Repository, user: string, spec: DirSpec): Promise<void> {
  const head = await repo.requireHead(user);
  const commit = await repo.getCommit(head.commit);
  const dir = path.join(await tempDir(t, 'roamfs-gc-export'), 'out');
  await exportTree(repo, commit.root, dir, { preserveOwner: false });
  async function check(d: string, s: DirSpec): Promise<void> {
    t.deepEqual((await fsp.readdir(d)).sort(), Object.keys(s).sort(), `entries of ${d}`);
    for (const [name, v] of Object.entries(s)) {
      if (typeof v === 'string' || Buffer.isBuffer(v)) t.deepEqual(await fsp.readFile(path.join(d, name)), Buffer.from(v), name);
      else await check(path.join(d, name), v);
    }
  }
  await check(dir, spec);
}

async function assertClean(t: ExecutionContext, repo: Repository): Promise<void> {
  const r = await fsck(repo);
  t.deepEqual(r.damage, [], 'fsck is clean');
}

/**
 * A repository where some objects became unreachable (alice's first commit was pruned) and
 * everything is older than the grace period, plus one young unreachable object.
 */
async function scenario(t: ExecutionContext, makeKit: KitFactory) {
  const kit = await makeKit(t);
  const repo = await Repository.init(kit.backend);
  const shared = randomBuffer('shared', 300_000); // several chunks, also in bob's profile
  const gone = randomBuffer('gone', 400_000); // only in alice's first commit
  const v1: DirSpec = { shared, gone, d: { note: 'first version' } };
  const v2: DirSpec = { shared, d: { note: 'second version' }, fresh: 'new in v2' };
  const bobSpec: DirSpec = { copy: shared, own: 'bob' };
  const a1 = await commitOnTop(repo, 'alice', v1);
  const a2 = await commitOnTop(repo, 'alice', v2);
  const b1 = await commitOnTop(repo, 'bob', bobSpec);
  await kit.backend.deleteRef('alice', a1.ref.seq); // prune
  const live = new Set([...a2.built.objects, ...b1.built.objects]);
  const unreachable = new Set([...a1.built.objects].filter((id) => !live.has(id)));
  t.true(unreachable.has(a1.built.commit) && unreachable.has(a1.built.tree));
  t.true(unreachable.size >= 4, 'commit, root tree, subtree, chunks of "gone"');
  const old = (await kit.backend.storageNow()) - 2 * HOUR;
  for (const id of await allObjects(kit.backend)) await kit.setObjectMtime(id, old);
  const young = (await repo.putChunk(randomBuffer('young', 1000))).id;
  return { kit, repo, a1, a2, b1, v1, v2, bobSpec, live, unreachable, young, gone };
}

function suite(kind: string, makeKit: KitFactory) {
  const title = (s: string) => `[${kind}] ${s}`;

  test(title('gc deletes unreachable objects older than the grace period, keeps live and young ones'), async (t) => {
    const s = await scenario(t, makeKit);
    const before = await allObjects(s.kit.backend);

    const dry = await gc(s.repo, { graceMs: GRACE, dryRun: true });
    t.is(dry.deleted, s.unreachable.size);
    t.deepEqual(await allObjects(s.kit.backend), before, 'a dry run deletes nothing');

    const r = await gc(s.repo, { graceMs: GRACE });
    t.is(r.deleted, s.unreachable.size);
    t.is(r.live, s.live.size);
    t.is(r.scanned, before.size);
    t.true(r.deletedBytes >= s.gone.length);
    const after = await allObjects(s.kit.backend);
    t.deepEqual([...after].sort(), [...before].filter((id) => !s.unreachable.has(id)).sort());
    for (const id of s.live) t.true(after.has(id), `live ${id} kept`);
    t.true(after.has(s.young), 'young unreachable object kept');
    t.deepEqual(await s.kit.leftovers(), [], 'the quarantine is emptied');
    await assertClean(t, s.repo);
    await exportMatches(t, s.repo, 'alice', s.v2);
    await exportMatches(t, s.repo, 'bob', s.bobSpec);

    // Once the young one is old too, it goes; a second gc finds nothing else.
    await s.kit.setObjectMtime(s.young, (await s.kit.backend.storageNow()) - 2 * HOUR);
    const r2 = await gc(s.repo, { graceMs: GRACE });
    t.is(r2.deleted, 1);
    t.false((await allObjects(s.kit.backend)).has(s.young));
  });

  test(title('gc with grace 0 still never deletes what a ref reaches; a damaged tree aborts gc'), async (t) => {
    const s = await scenario(t, makeKit);
    await s.kit.setObjectMtime(s.young, (await s.kit.backend.storageNow()) - 10_000);
    await gc(s.repo, { graceMs: 0 });
    t.false((await allObjects(s.kit.backend)).has(s.young));
    await assertClean(t, s.repo);
    const before = await allObjects(s.kit.backend);
    await s.kit.backend.deleteObject(s.a2.built.tree);
    const err = await t.throwsAsync(gc(s.repo, { graceMs: 0 }));
    t.true(isRoamfsError(err, 'MISSING_OBJECT'), String(err));
    before.delete(s.a2.built.tree);
    t.deepEqual(await allObjects(s.kit.backend), before, 'nothing deleted on incomplete knowledge');
  });

  test(title('concurrency: a writer touching an old unreachable object just before gc moves it keeps it'), async (t) => {
    const s = await scenario(t, makeKit);
    const writer = await Repository.open(s.kit.other());
    const reused = s.gone;
    const goneChunks = [...s.a1.built.chunks].filter((id) => s.unreachable.has(id));
    let touched = 0;
    const hooked = intercept(s.kit.backend, {
      async trashObject(orig, id, batch) {
        if (goneChunks.includes(id)) {
          // Between gc's listing and its rename: the writer finds the object and touches it.
          const r = await writer.putObject(TYPE_CHUNK, (await s.kit.backend.getObject(id)).subarray(1));
          t.false(r.written, 'found and touched, not rewritten');
          touched++;
        }
        return orig(id, batch);
      },
    });
    const report = await gc(await Repository.open(hooked), { graceMs: GRACE });
    t.is(touched, goneChunks.length);
    t.true(report.restored >= goneChunks.length, 'gc saw the fresh mtime and moved them back');
    const after = await allObjects(s.kit.backend);
    for (const id of goneChunks) t.true(after.has(id), `touched chunk ${id} survived`);
    t.false(after.has(s.a1.built.commit), 'the untouched unreachable commit went');
    // The writer now commits a profile that uses the reused content.
    const spec: DirSpec = { back: reused };
    await commitOnTop(writer, 'alice', spec);
    await assertClean(t, s.repo);
    await exportMatches(t, s.repo, 'alice', spec);
  });

  test(title('concurrency: a writer reusing an object right after gc moved it rewrites it (ENOENT on touch)'), async (t) => {
    const s = await scenario(t, makeKit);
    const writer = await Repository.open(s.kit.other());
    // The content of each chunk of "gone", by id.
    const pieces = new Map<ObjectId, Buffer>();
    let off = 0;
    for (const len of s.repo.chunker.cutAll(s.gone)) {
      const piece = s.gone.subarray(off, off + len);
      off += len;
      pieces.set(sha256(Buffer.of(TYPE_CHUNK), piece), piece);
    }
    const goneChunks = new Set([...pieces.keys()].filter((id) => s.unreachable.has(id)));
    t.true(goneChunks.size >= 1);
    let rewritten = 0;
    const hooked = intercept(s.kit.backend, {
      async trashObject(orig, id, batch) {
        const seen = await orig(id, batch);
        if (goneChunks.has(id)) {
          // Right after gc's rename: the writer's touch finds nothing, so it stores the object again.
          const r = await writer.putChunk(pieces.get(id)!);
          if (r.written) rewritten++;
        }
        return seen;
      },
    });
    await gc(await Repository.open(hooked), { graceMs: GRACE });
    t.is(rewritten, goneChunks.size, 'every touch after the rename found nothing and wrote the object again');
    const after = await allObjects(s.kit.backend);
    for (const id of goneChunks) t.true(after.has(id), `rewritten chunk ${id} present`);
    const spec: DirSpec = { back: s.gone, more: 'x' };
    await commitOnTop(writer, 'alice', spec);
    await assertClean(t, s.repo);
    await exportMatches(t, s.repo, 'alice', spec);
  });

  test(title('concurrency: beforeRecheck — a writer reuses a trashed object and commits during gc'), async (t) => {
    const s = await scenario(t, makeKit);
    const writer = await Repository.open(s.kit.other());
    const spec: DirSpec = { gone: s.gone, d: { note: 'first version' }, extra: 'during gc' };
    let committed = false;
    const report = await gc(s.repo, {
      graceMs: GRACE,
      beforeRecheck: async () => {
        t.is(await s.kit.backend.statObject(s.a1.built.tree), null, 'the old objects are in quarantine now');
        await commitOnTop(writer, 'alice', spec);
        committed = true;
      },
    });
    t.true(committed);
    t.true(report.deleted < s.unreachable.size);
    await assertClean(t, s.repo);
    await exportMatches(t, s.repo, 'alice', spec);
    await exportMatches(t, s.repo, 'bob', s.bobSpec);
    t.deepEqual(await s.kit.leftovers(), []);
  });

  test(title('concurrency: a new ref referencing trashed objects without rewriting them, during gc'), async (t) => {
    const s = await scenario(t, makeKit);
    const writer = await Repository.open(s.kit.other());
    // The writer built a tree long ago from chunks it believed present: it references the
    // now-trashed chunks of "gone" by id only, and commits while gc is between sweep and re-check.
    const oldTree = await s.repo.getTree(s.a1.built.tree);
    const goneEntry = oldTree.find((e) => e.name === 'gone') as Extract<TreeEntry, { type: 'file' }>;
    const report = await gc(s.repo, {
      graceMs: GRACE,
      beforeRecheck: async () => {
        for (const c of goneEntry.chunks) t.is(await s.kit.backend.statObject(c.id), null, 'chunk is in quarantine');
        const tree = await writer.putTree([{ ...goneEntry, name: 'gone-again' }]);
        const head = await writer.requireHead('alice');
        const commit = await writer.putCommit({
          parents: [head.commit],
          root: { tree, mode: 0o700, uid: 1, gid: 1, mtimeNs: 0n },
          ...META,
          message: 'during gc',
          stats: { files: 1, bytes: 0 },
        });
        await writer.moveHead('alice', head, commit, META);
      },
    });
    t.true(report.restored >= goneEntry.chunks.length);
    await assertClean(t, s.repo);
    await exportMatches(t, s.repo, 'alice', { 'gone-again': s.gone });
  });

  test(title('concurrency: a new ref to a quarantined commit (its trees are gone too) restores the batch'), async (t) => {
    const s = await scenario(t, makeKit);
    const writer = await Repository.open(s.kit.other());
    const report = await gc(s.repo, {
      graceMs: GRACE,
      beforeRecheck: async () => {
        // e.g. a rollback that had read the old commit before prune and gc: it names it again.
        const head = await writer.requireHead('alice');
        await writer.moveHead('alice', head, s.a1.built.commit, META);
      },
    });
    t.is(report.deleted, 0, 'the re-check could not walk the new ref, so nothing was deleted');
    for (const id of s.unreachable) t.not(await s.kit.backend.statObject(id), null);
    await assertClean(t, s.repo);
    await exportMatches(t, s.repo, 'alice', s.v1);
  });

  test(title('a long-lived writer does not trust its memory of an object past the TTL (gc may have removed it)'), async (t) => {
    const kit = await makeKit(t);
    const clock = new ManualClock(Date.now());
    const writer = await Repository.init(kit.backend, undefined, { clock });
    const content = randomBuffer('long-lived', 200_000);
    await commitOnTop(writer, 'carol', { f: content });
    await commitOnTop(writer, 'carol', { other: 'the file was deleted' });
    await kit.backend.deleteRef('carol', 1); // prune
    // Hours pass: the objects age, gc removes the unreachable ones.
    clock.advance(3 * HOUR);
    const old = (await kit.backend.storageNow()) - 3 * HOUR;
    for (const id of await allObjects(kit.backend)) await kit.setObjectMtime(id, old);
    const r = await gc(await Repository.open(kit.other()), { graceMs: GRACE });
    t.true(r.deleted > 0);
    // The same process stores the same content again: it must write it, not assume it is there.
    const spec: DirSpec = { f: content };
    await commitOnTop(writer, 'carol', spec);
    await assertClean(t, await Repository.open(kit.other()));
    await exportMatches(t, writer, 'carol', spec);
  });
}

for (const [name, kit] of KITS) suite(name, kit);

test('[memory] gc reads the storage clock, not its own', async (t) => {
  // Storage time far from the process clock: objects "older than grace" are judged by storage time.
  const clock = new ManualClock(5_000_000_000_000);
  const { MemoryBackend } = await import('../../src/repository/memory.js');
  const b = new MemoryBackend(clock);
  const repo = await Repository.init(b);
  await repo.putChunk(Buffer.from('orphan'));
  clock.advance(30 * 60_000);
  t.is((await gc(repo, { graceMs: GRACE })).deleted, 0, '30 min old: kept');
  clock.advance(31 * 60_000);
  t.is((await gc(repo, { graceMs: GRACE })).deleted, 1, '61 min old: deleted');
});

