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
import { commitOnce } from '../../src/commit/committer.js';
import { collapseChanges, conflictName } from '../../src/commit/merge.js';

const attrs = { mode: 0o755, uid: 1000, gid: 1000, mtimeNs: 1n };

test('conflict copy names keep the extension and stay within NAME_MAX', (t) => {
  const ms = new Date(2026, 10, 25, 14, 30, 5).getTime();
  t.is(conflictName('report.odt', 'desk2', ms), 'report (conflict desk2 2026-11-25 143005).odt');
  t.is(conflictName('.bashrc', 'desk2', ms), '.bashrc (conflict desk2 2026-11-25 143005)');
  t.is(conflictName('Makefile', 'h', ms), 'Makefile (conflict h 2026-11-25 143005)');
  const long = conflictName('x'.repeat(250) + '.txt', 'desk2', ms);
  t.true(Buffer.byteLength(long) <= 255);
  t.true(long.endsWith(').txt'));
});

test('collapseChanges keeps the net effect in applicable order', (t) => {
  const f = (name: string): FileEntry => ({ name, type: 'file', mode: 0o644, uid: 0, gid: 0, mtimeNs: 0n, size: 0, chunks: [] });
  const changes: Change[] = [
    { op: 'put', path: 'a/x', entry: f('x') },
    { op: 'put', path: 'b', entry: f('b') },
    { op: 'delete', path: 'a' },
    { op: 'put', path: 'b', entry: f('b2') },
  ];
  t.deepEqual(collapseChanges(changes).map((c) => `${c.op} ${c.path}`), ['delete a', 'put b']);
});

/** Two desktops of one user, each with its own local store and change log, sharing a repository. */
async function world(t: import('ava').ExecutionContext) {
  const clock = new ManualClock(Date.UTC(2026, 10, 25, 12));
  const remote = await Repository.init(new MemoryBackend(clock));
  const file = async (r: Repository, name: string, content: string): Promise<FileEntry> => {
    const data = Buffer.from(content);
    return { name, type: 'file', mode: 0o644, uid: 1000, gid: 1000, mtimeNs: BigInt(clock.now()) * 1000000n, size: data.length, chunks: [{ id: (await r.putChunk(data)).id, size: data.length }] };
  };
  const base: RootRef = {
    tree: await remote.putTree([await file(remote, 'shared.txt', 'base'), await file(remote, 'doomed.txt', 'base'), await file(remote, 'other.txt', 'base')]),
    ...attrs,
  };
  const c0 = await remote.putCommit({ parents: [], root: base, time: clock.now(), host: 'h0', session: 's0', message: 'import', stats: { files: 3, bytes: 0 } });
  await remote.moveHead('alice', null, c0, { time: clock.now(), host: 'h0', session: 's0' });
  async function desktop(host: string) {
    const local = await Repository.init(new MemoryBackend(clock));
    for await (const { entry } of walkTree(remote, base.tree)) if (entry.type === 'file') for (const c of entry.chunks) await local.putChunk(await remote.getChunk(c.id));
    await local.putTree(await remote.getTree(base.tree));
    const dir = await mkdtemp(path.join(tmpdir(), `roamfs-merge-${host}-`));
    const db = await openDb(dir);
    t.teardown(async () => {
      await db.close();
      await rm(dir, { recursive: true, force: true });
    });
    const log = new ChangeLog(db);
    let view = base;
    let seq = 1;
    return {
      file: (name: string, content: string) => file(local, name, content),
      async snapshot(changes: Change[]) {
        const root = await applyChanges(local, view, changes, () => attrs);
        await log.append({ seq: seq++, time: clock.now(), base: c0, root, prev: view, changes });
        view = root;
      },
      commit: () => commitOnce({ local, remote, log, user: 'alice', logId: host, host, session: host, clock }),
    };
  }
  const content = async () => {
    const head = await remote.getCommit((await remote.requireHead('alice')).commit);
    const out: Record<string, string> = {};
    for await (const { path: p, entry } of walkTree(remote, head.root.tree)) {
      if (entry.type === 'file') out[p] = (await Promise.all(entry.chunks.map((c) => remote.getChunk(c.id)))).map(String).join('');
    }
    return out;
  };
  return { clock, desktop, content };
}

test('two desktops: different files merge, same file keeps both, edit beats delete', async (t) => {
  const { clock, desktop, content } = await world(t);
  const a = await desktop('deskA');
  const b = await desktop('deskB');
  await a.snapshot([
    { op: 'put', path: 'shared.txt', entry: await a.file('shared.txt', 'from A') },
    { op: 'put', path: 'a-only.txt', entry: await a.file('a-only.txt', 'A') },
    { op: 'put', path: 'doomed.txt', entry: await a.file('doomed.txt', 'edited by A') },
  ]);
  await a.commit();
  clock.advance(60_000);
  await b.snapshot([
    { op: 'put', path: 'shared.txt', entry: await b.file('shared.txt', 'from B') },
    { op: 'put', path: 'b-only.txt', entry: await b.file('b-only.txt', 'B') },
    { op: 'delete', path: 'doomed.txt' },
  ]);
  const r = await b.commit();
  const stamp = conflictName('shared.txt', 'deskA', Date.UTC(2026, 10, 25, 12));
  t.deepEqual(await content(), {
    'shared.txt': 'from B', // the later commit takes the path
    [stamp]: 'from A', // the other version beside it
    'a-only.txt': 'A',
    'b-only.txt': 'B',
    'doomed.txt': 'edited by A', // delete vs edit: the edit survives
    'other.txt': 'base',
  });
  t.deepEqual(r!.conflicts, [{ path: 'shared.txt', copy: stamp }]);
  t.deepEqual(r!.keptEdits, ['doomed.txt']);
});

test('after a merge, a later edit of a path only the other desktop changed is still a conflict, not an overwrite', async (t) => {
  const { clock, desktop, content } = await world(t);
  const a = await desktop('deskA');
  const b = await desktop('deskB');
  await a.snapshot([{ op: 'put', path: 'other.txt', entry: await a.file('other.txt', 'A edit') }]);
  await a.commit();
  clock.advance(1000);
  await b.snapshot([{ op: 'put', path: 'b-only.txt', entry: await b.file('b-only.txt', 'B') }]);
  await b.commit(); // merges: head now has A's other.txt, B's view does not
  clock.advance(1000);
  await b.snapshot([{ op: 'put', path: 'other.txt', entry: await b.file('other.txt', 'B edit (never saw A)') }]);
  await b.commit();
  const c = await content();
  t.is(c['other.txt'], 'B edit (never saw A)');
  t.true(Object.entries(c).some(([k, v]) => k.startsWith('other (conflict deskA') && v === 'A edit'), JSON.stringify(c));
});

test('one desktop alone never produces conflict copies', async (t) => {
  const { desktop, content, clock } = await world(t);
  const a = await desktop('deskA');
  for (let i = 0; i < 5; i++) {
    clock.advance(1000);
    await a.snapshot([{ op: 'put', path: 'shared.txt', entry: await a.file('shared.txt', `v${i}`) }]);
    const r = await a.commit();
    t.deepEqual(r!.conflicts, []);
  }
  t.deepEqual(Object.keys(await content()).sort(), ['doomed.txt', 'other.txt', 'shared.txt']);
});
