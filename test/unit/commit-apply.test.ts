import test from 'ava';
import { ManualClock } from '../../src/core/clock.js';
import { MemoryBackend } from '../../src/repository/memory.js';
import { Repository } from '../../src/repository/repository.js';
import { applyChanges, type Change } from '../../src/repository/edit.js';
import type { FileEntry, RootRef, TreeEntry } from '../../src/repository/objects.js';
import { walkTree } from '../../src/repository/walk.js';

const attrs = { mode: 0o755, uid: 1000, gid: 1000, mtimeNs: 1_700_000_000_123_456_789n };

async function repo() {
  return Repository.init(new MemoryBackend(new ManualClock()));
}
async function file(r: Repository, name: string, content: string): Promise<FileEntry> {
  const data = Buffer.from(content);
  const chunks = data.length ? [{ id: (await r.putChunk(data)).id, size: data.length }] : [];
  return { name, type: 'file', mode: 0o644, uid: 1000, gid: 1000, mtimeNs: 5n, size: data.length, chunks };
}
async function listing(r: Repository, root: RootRef) {
  const out: Record<string, string> = {};
  for await (const { path, entry } of walkTree(r, root.tree)) {
    out[path] = entry.type === 'file' ? (await Promise.all(entry.chunks.map((c) => r.getChunk(c.id)))).map(String).join('') : entry.type;
  }
  return out;
}

test('applyChanges: put, nested put into new dirs, delete, attrs, and a 2,000-change batch', async (t) => {
  const r = await repo();
  const empty: RootRef = { tree: await r.putTree([]), ...attrs };
  const changes: Change[] = [
    { op: 'put', path: 'a.txt', entry: await file(r, 'a.txt', 'A') },
    { op: 'put', path: 'd/e/f.txt', entry: await file(r, 'f.txt', 'F') },
    { op: 'put', path: 'gone.txt', entry: await file(r, 'gone.txt', 'G') },
    { op: 'delete', path: 'gone.txt' },
    { op: 'attrs', path: 'd', attrs: { ...attrs, mode: 0o700 } },
  ];
  for (let i = 0; i < 2000; i++) changes.push({ op: 'put', path: `many/f${i}`, entry: await file(r, `f${i}`, String(i)) });
  const root = await applyChanges(r, empty, changes, () => attrs);
  const l = await listing(r, root);
  t.is(l['a.txt'], 'A');
  t.is(l['d/e/f.txt'], 'F');
  t.false('gone.txt' in l);
  t.is(l['many/f1999'], '1999');
  t.is(Object.keys(l).filter((k) => k.startsWith('many/')).length, 2000);
  const d = (await r.getTree(root.tree)).find((e) => e.name === 'd') as TreeEntry;
  t.is(d.mode, 0o700);
  // Replacing a directory with a file and then writing below it recreates the directory.
  const again = await applyChanges(r, root, [{ op: 'put', path: 'd', entry: await file(r, 'd', 'now a file') }], () => attrs);
  t.is((await listing(r, again))['d'], 'now a file');
  const back = await applyChanges(r, again, [{ op: 'put', path: 'd/x', entry: await file(r, 'x', 'X') }], () => ({ ...attrs, mode: 0o711 }));
  const l2 = await listing(r, back);
  t.is(l2['d'], 'dir');
  t.is(l2['d/x'], 'X');
});

test('applyChanges: a put directory carries its subtree, and later changes below it apply inside', async (t) => {
  const r = await repo();
  const sub = await r.putTree([await file(r, 'inner.txt', 'I')]);
  const empty: RootRef = { tree: await r.putTree([]), ...attrs };
  const root = await applyChanges(r, empty, [
    { op: 'put', path: 'moved', entry: { name: 'moved', type: 'dir', tree: sub, ...attrs } },
    { op: 'put', path: 'moved/new.txt', entry: await file(r, 'new.txt', 'N') },
  ], () => attrs);
  t.deepEqual(await listing(r, root), { moved: 'dir', 'moved/inner.txt': 'I', 'moved/new.txt': 'N' });
});

test('applyChanges with no changes keeps the root tree id', async (t) => {
  const r = await repo();
  const root: RootRef = { tree: await r.putTree([await file(r, 'x', '1')]), ...attrs };
  t.is((await applyChanges(r, root, [], () => attrs)).tree, root.tree);
});
