/**
 * CLI end to end: cross-user deduplication and content-defined deltas, measured on the
 * repository's objects/ directory (`du -sb`).
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { logOf, roamfsOk } from '../helpers/repo-cli.js';
import { byteStream, overwriteRange, randomBuffer, writeRandomFile } from '../helpers/repo-data.js';
import { duBytes, execFileP, tempDir } from '../helpers/repo-fs.js';

const KiB = 1024;
const MiB = 1024 * KiB;

async function sha(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const b of createReadStream(file, { highWaterMark: 8 * MiB })) h.update(b as Buffer);
  return h.digest('hex');
}

test.serial('dedup: the same ~100 MiB tree imported for a second user grows objects/ by < 5 MiB', async (t) => {
  const work = await tempDir(t, 'roamfs-dedup');
  const src = path.join(work, 'src');
  const repo = path.join(work, 'repo');
  await fsp.mkdir(src);
  let total = 0;
  await writeRandomFile(path.join(src, 'video.bin'), 40 * MiB, 'video');
  total += 40 * MiB;
  for (let i = 0; i < 10; i++) {
    await writeRandomFile(path.join(src, `archive-${i}.bin`), 4 * MiB, `archive-${i}`);
    total += 4 * MiB;
  }
  for (let d = 0; d < 10; d++) {
    await fsp.mkdir(path.join(src, 'cache', `d${d}`), { recursive: true });
    for (let i = 0; i < 10; i++) {
      const size = 150 * KiB + ((d * 10 + i) * 997) % (100 * KiB);
      await fsp.writeFile(path.join(src, 'cache', `d${d}`, `f${i}`), randomBuffer(`cache-${d}-${i}`, size));
      total += size;
    }
  }
  for (let i = 0; i < 300; i++) {
    const size = 100 + ((i * 7919) % (10 * KiB));
    await fsp.writeFile(path.join(src, `small-${i}.txt`), randomBuffer(`small-${i}`, size));
    total += size;
  }
  t.true(total > 95 * MiB && total < 110 * MiB, `tree is ${total} bytes`);

  await roamfsOk('init', repo);
  const objects = path.join(repo, 'objects');
  const empty = await duBytes(objects);
  await roamfsOk('import', repo, 'alice', src);
  const one = await duBytes(objects);
  t.true(one - empty >= total, `first import stored ${one - empty} bytes for ${total} bytes of files`);

  // Bob's copy lives elsewhere (other paths, other mtimes): only content counts.
  const copy = path.join(work, 'bob-home');
  await execFileP('cp', ['-r', src, copy]);
  await roamfsOk('import', repo, 'bob', copy);
  const two = await duBytes(objects);
  t.true(two - one < 5 * MiB, `second user's import grew objects/ by ${two - one} bytes`);
  const [bob] = await logOf(repo, 'bob');
  t.true(bob!.bytes < 5 * MiB, `bob's commit added ${bob!.bytes} bytes`);
});

test.serial('delta: 1 MiB changed (or 1000 bytes inserted) in the middle of a 256 MiB file stores < 3 MiB', async (t) => {
  const work = await tempDir(t, 'roamfs-delta');
  const src = path.join(work, 'src');
  const repo = path.join(work, 'repo');
  const file = path.join(src, 'disk.img');
  await fsp.mkdir(src);
  await writeRandomFile(file, 256 * MiB, 'disk');
  await roamfsOk('init', repo);
  const objects = path.join(repo, 'objects');
  await roamfsOk('import', repo, 'alice', src);
  const base = await duBytes(objects);
  t.true(base >= 256 * MiB);

  // 1. Overwrite 1 MiB in place, in the middle (not aligned to anything).
  await overwriteRange(file, 128 * MiB + 777, MiB, 'patch');
  await roamfsOk('import', repo, 'alice', src);
  const afterPatch = await duBytes(objects);
  t.true(afterPatch - base < 3 * MiB, `1 MiB change stored ${afterPatch - base} new bytes`);
  t.true(afterPatch - base >= MiB, 'the change itself is stored');
  const [patched] = await logOf(repo, 'alice');
  t.true(patched!.bytes >= MiB && patched!.bytes < 3 * MiB, `commit says ${patched!.bytes} new bytes`);
  t.is(patched!.files, 1, 'one file changed');

  // 2. Insert 1000 bytes in the middle: everything after shifts; content-defined chunking resyncs.
  const shifted = path.join(work, 'shifted.img');
  {
    const at = 100 * MiB + 4321;
    const h = await fsp.open(shifted, 'w');
    const r = await fsp.open(file, 'r');
    const buf = Buffer.alloc(8 * MiB);
    let pos = 0;
    let outPos = 0;
    for (;;) {
      const want = pos < at ? Math.min(buf.length, at - pos) : buf.length;
      const { bytesRead } = await r.read(buf, 0, want, pos);
      if (bytesRead === 0) break;
      await h.write(buf, 0, bytesRead, outPos);
      pos += bytesRead;
      outPos += bytesRead;
      if (pos === at) {
        const ins = byteStream('insert')(1000);
        await h.write(ins, 0, ins.length, outPos);
        outPos += ins.length;
      }
    }
    await r.close();
    await h.close();
  }
  await fsp.rename(shifted, file);
  await roamfsOk('import', repo, 'alice', src);
  const afterInsert = await duBytes(objects);
  t.true(afterInsert - afterPatch < 3 * MiB, `1000-byte insertion stored ${afterInsert - afterPatch} new bytes`);

  // And the latest commit still exports the exact bytes.
  const out = path.join(work, 'out');
  await roamfsOk('export', repo, 'alice', out);
  t.is(await sha(path.join(out, 'disk.img')), await sha(file));
});
