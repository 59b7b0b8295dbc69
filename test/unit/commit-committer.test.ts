import test from 'ava';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { ManualClock } from '../../src/core/clock.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { Repository } from '../../src/repository/repository.js';
import type { FileEntry, RootRef } from '../../src/repository/objects.js';
import { applyChanges, type Change } from '../../src/repository/edit.js';
import { walkTree } from '../../src/repository/walk.js';
import { openDb } from '../../src/store/db.js';
import { ChangeLog } from '../../src/changelog/changelog.js';
import { commitOnce, type CommitterDeps } from '../../src/commit/committer.js';

const attrs = { mode: 0o755, uid: 1000, gid: 1000, mtimeNs: 1_700_000_000_000_000_001n };

async function file(r: Repository, name: string, content: string): Promise<FileEntry> {
  const data = Buffer.from(content);
  return { name, type: 'file', mode: 0o644, uid: 1000, gid: 1000, mtimeNs: 7n, size: data.length, chunks: [{ id: (await r.putChunk(data)).id, size: data.length }] };
}
async function contents(r: Repository, root: RootRef) {
  const out: Record<string, string> = {};
  for await (const { path: p, entry } of walkTree(r, root.tree)) {
    if (entry.type === 'file') out[p] = (await Promise.all(entry.chunks.map((c) => r.getChunk(c.id)))).map(String).join('');
  }
  return out;
}

async function setup(t: import('ava').ExecutionContext) {
  const clock = new ManualClock();
  const remote = await Repository.init(new MemoryBackend(clock));
  const local = await Repository.init(new MemoryBackend(clock));
  // The user's profile: one file.
  const base: RootRef = { tree: await remote.putTree([await file(remote, 'old.txt', 'old')]), ...attrs };
  const baseCommit = await remote.putCommit({ parents: [], root: base, time: 1, host: 'h', session: 's', message: 'import', stats: { files: 1, bytes: 3 } });
  await remote.moveHead('alice', null, baseCommit, { time: 1, host: 'h', session: 's' });
  const dir = await mkdtemp(path.join(tmpdir(), 'roamfs-commit-'));
  const db = await openDb(dir);
  t.teardown(async () => {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  });
  const log = new ChangeLog(db);
  const deps: CommitterDeps = { local, remote, log, user: 'alice', logId: 'log1', host: 'desk1', session: 'sess1', clock };
  // A snapshot made locally: the local store holds its new objects and the full root.
  async function snapshot(seq: number, changes: Change[], prevRoot: RootRef) {
    // The local store has the base tree too (it was loaded at mount).
    await local.putTree(await remote.getTree(base.tree));
    const root = await applyChanges(local, prevRoot, changes, () => attrs);
    await log.append({ seq, time: clock.now(), base: baseCommit, root, prev: prevRoot, changes });
    return root;
  }
  return { clock, remote, local, log, deps, base, baseCommit, snapshot };
}

test('commitOnce ships pending snapshots as one commit on top of the head and trims the log', async (t) => {
  const { remote, local, log, deps, base, snapshot } = await setup(t);
  t.is(await commitOnce(deps), null);
  const r1 = await snapshot(1, [{ op: 'put', path: 'a.txt', entry: await file(local, 'a.txt', 'one') }], base);
  await snapshot(2, [{ op: 'put', path: 'b/c.txt', entry: await file(local, 'c.txt', 'two') }, { op: 'delete', path: 'old.txt' }], r1);
  const res = await commitOnce(deps);
  t.truthy(res);
  t.is(res!.seq, 2);
  const head = await remote.requireHead('alice');
  t.is(head.commit, res!.commit);
  const c = await remote.getCommit(head.commit);
  t.deepEqual(c.origin, { log: 'log1', snapshot: 2 });
  t.deepEqual(await contents(remote, c.root), { 'a.txt': 'one', 'b/c.txt': 'two' });
  t.deepEqual(await log.pending(), []);
  t.deepEqual(await log.shipped(), { seq: 2, commit: res!.commit });
  t.is(await commitOnce(deps), null);
});

test('a crash after the head moved but before the log was marked is repaired without a second commit', async (t) => {
  const { remote, local, log, deps, base, snapshot } = await setup(t);
  await snapshot(1, [{ op: 'put', path: 'a.txt', entry: await file(local, 'a.txt', 'one') }], base);
  const real = log.markShipped.bind(log);
  log.markShipped = async () => {
    throw new Error('crash: process died before marking');
  };
  await t.throwsAsync(() => commitOnce(deps), { message: /crash/ });
  log.markShipped = real;
  const refsBefore = (await remote.refs('alice')).length;
  const res = await commitOnce(deps);
  t.true(res!.replayed);
  t.is((await remote.refs('alice')).length, refsBefore, 'no duplicate commit');
  t.deepEqual(await log.pending(), []);
});

test('when another desktop moved the head, changes to different paths merge onto it', async (t) => {
  const { remote, local, deps, base, baseCommit, snapshot } = await setup(t);
  await snapshot(1, [{ op: 'put', path: 'mine.txt', entry: await file(local, 'mine.txt', 'M') }], base);
  // The other desktop commits theirs.txt first.
  const theirs = await applyChanges(remote, base, [{ op: 'put', path: 'theirs.txt', entry: await file(remote, 'theirs.txt', 'T') }], () => attrs);
  const tc = await remote.putCommit({ parents: [baseCommit], root: theirs, time: 2, host: 'desk2', session: 'x', message: 'theirs', stats: { files: 1, bytes: 1 } });
  await remote.moveHead('alice', await remote.requireHead('alice'), tc, { time: 2, host: 'desk2', session: 'x' });
  const res = await commitOnce(deps);
  const c = await remote.getCommit(res!.commit);
  t.deepEqual(c.parents, [tc]);
  t.deepEqual(await contents(remote, c.root), { 'old.txt': 'old', 'mine.txt': 'M', 'theirs.txt': 'T' });
});

test('repository unreachable: commitOnce fails, nothing is trimmed, a later attempt ships it', async (t) => {
  const { remote, local, log, deps, base, snapshot } = await setup(t);
  await snapshot(1, [{ op: 'put', path: 'a.txt', entry: await file(local, 'a.txt', 'one') }], base);
  const backend = remote.backend as MemoryBackend;
  const realPut = backend.putObject.bind(backend);
  backend.putObject = async () => {
    throw Object.assign(new Error('EIO: repository gone'), { code: 'EIO' });
  };
  await t.throwsAsync(() => commitOnce(deps));
  t.is((await log.pending()).length, 1);
  backend.putObject = realPut;
  t.truthy(await commitOnce(deps));
  t.is((await log.pending()).length, 0);
});
