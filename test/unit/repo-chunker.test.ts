/**
 * FastCDC chunker (docs/repository-format.md, "Chunking"): deterministic boundaries that are
 * part of the format, min/max sizes, and content-defined resynchronisation after an edit.
 */
import test from 'ava';
import { createHash } from 'node:crypto';
import { Chunker, DEFAULT_CHUNKER, validateChunkerParams, type ChunkerParams } from '../../src/repository/chunker.js';
import { Rng, randomBuffer } from '../helpers/repo-data.js';
import { gearCut } from '../../src/core/native.js';

const MiB = 1024 * 1024;
const { minSize, avgSize, maxSize } = DEFAULT_CHUNKER;

function pieces(buf: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  for (const len of cuts) {
    out.push(buf.subarray(off, off + len));
    off += len;
  }
  return out;
}
const ids = (buf: Buffer, cuts: number[]) => pieces(buf, cuts).map((p) => createHash('sha256').update(p).digest('hex'));

function checkBounds(t: import('ava').ExecutionContext, cuts: number[], total: number, p: ChunkerParams) {
  t.is(
    cuts.reduce((a, b) => a + b, 0),
    total,
    'chunks cover the input exactly',
  );
  cuts.forEach((len, i) => {
    t.true(len <= p.maxSize, `chunk ${i} is ${len} > maxSize`);
    if (i < cuts.length - 1) t.true(len >= p.minSize, `chunk ${i} is ${len} < minSize`);
    else t.true(len >= 1);
  });
}

test('the format: default parameters and pinned boundaries of a known input (gear table, masks)', (t) => {
  t.deepEqual(DEFAULT_CHUNKER, { minSize: 64 * 1024, avgSize: 256 * 1024, maxSize: 1024 * 1024 });
  const cuts = new Chunker().cutAll(randomBuffer('chunker-pin', 8 * MiB));
  // Any change here breaks deduplication against every existing repository.
  t.is(cuts.length, 26);
  t.deepEqual(cuts.slice(0, 8), [271666, 269562, 446486, 369966, 262348, 296561, 410425, 296278]);
  t.is(createHash('sha256').update(JSON.stringify(cuts)).digest('hex'), 'ec04812365f6aec8cd028f0509b0e5465420b2d8bb40cbed13723a20cfa41946');
});

test('the native cut (addon gearCut) and the JavaScript one cut at the same places, for several parameter sets', (t) => {
  t.truthy(gearCut, 'the native addon has gearCut (npm ci builds it)');
  const sets: ChunkerParams[] = [DEFAULT_CHUNKER, { minSize: 64, avgSize: 256, maxSize: 1024 }, { minSize: 2048, avgSize: 8192, maxSize: 65536 }, { minSize: 512 * 1024, avgSize: 1024 * 1024, maxSize: 8 * 1024 * 1024 }];
  const inputs = [randomBuffer('native-1', 9 * MiB + 17), Buffer.alloc(3 * MiB), Buffer.concat([randomBuffer('native-2', MiB), Buffer.alloc(2 * MiB, 7), randomBuffer('native-3', 3 * MiB)])];
  for (const p of sets) {
    const c = new Chunker(p);
    for (const buf of inputs) {
      const native: number[] = [];
      const js: number[] = [];
      for (let off = 0; off < buf.length; ) off += native[native.push(c.cut(buf, off, buf.length)) - 1]!;
      for (let off = 0; off < buf.length; ) off += js[js.push(c.cutJs(buf, off, buf.length)) - 1]!;
      t.deepEqual(native, js, `params ${JSON.stringify(p)}, ${buf.length} bytes`);
      // ...also on a window that does not start at 0 and ends before the buffer does.
      t.is(c.cut(buf, 12345, buf.length - 999), c.cutJs(buf, 12345, buf.length - 999));
    }
  }
});

test('deterministic: same input, same boundaries, for any instance and any way of feeding it', (t) => {
  const buf = randomBuffer('det', 12 * MiB + 4321);
  const a = new Chunker().cutAll(buf);
  t.deepEqual(new Chunker(DEFAULT_CHUNKER).cutAll(buf), a);
  t.deepEqual(new Chunker().cutAll(Buffer.from(buf)), a);
  // As the importer feeds it: a window that always holds >= maxSize bytes (or the rest).
  const rng = new Rng(3);
  const streamed: number[] = [];
  let off = 0;
  let end = 0;
  while (off < buf.length) {
    end = Math.min(buf.length, Math.max(end, off + maxSize + rng.int(0, 3 * MiB)));
    const len = new Chunker().cut(buf, off, end);
    streamed.push(len);
    off += len;
  }
  t.deepEqual(streamed, a);
  // Boundaries depend on content only: a shifted copy cuts at the same content positions.
  const prefix = randomBuffer('det-prefix', 3 * MiB);
  const shifted = new Chunker().cutAll(Buffer.concat([prefix, buf]));
  const tail = ids(Buffer.concat([prefix, buf]), shifted).slice(-10);
  t.deepEqual(tail, ids(buf, a).slice(-10));
});

test('min and max sizes are respected; sizes average around avgSize', (t) => {
  const buf = randomBuffer('bounds', 64 * MiB);
  const cuts = new Chunker().cutAll(buf);
  checkBounds(t, cuts, buf.length, DEFAULT_CHUNKER);
  const mean = buf.length / cuts.length;
  t.true(mean > avgSize / 2 && mean < avgSize * 2, `mean chunk ${mean}`);
  t.true(cuts.some((c) => c < avgSize) && cuts.some((c) => c > avgSize), 'sizes vary with content');

  const small: ChunkerParams = { minSize: 64, avgSize: 256, maxSize: 1024 };
  const sb = randomBuffer('bounds-small', 2 * MiB);
  const sc = new Chunker(small).cutAll(sb);
  checkBounds(t, sc, sb.length, small);
});

test('edge sizes: empty, below/at minSize, and content with no boundary hits maxSize exactly', (t) => {
  const c = new Chunker();
  t.deepEqual(c.cutAll(Buffer.alloc(0)), []);
  t.deepEqual(c.cutAll(randomBuffer('e1', 1)), [1]);
  t.deepEqual(c.cutAll(randomBuffer('e2', minSize - 1)), [minSize - 1]);
  t.deepEqual(c.cutAll(randomBuffer('e3', minSize)), [minSize]);
  // A run of one byte value never matches the masks: every chunk is exactly maxSize.
  for (const v of [0x00, 0xff, 0x41]) {
    t.deepEqual(c.cutAll(Buffer.alloc(3 * maxSize, v)), [maxSize, maxSize, maxSize]);
    t.deepEqual(c.cutAll(Buffer.alloc(maxSize, v)), [maxSize]);
    t.deepEqual(c.cutAll(Buffer.alloc(maxSize + 1, v)), [maxSize, 1]);
  }
});

test('content-defined resync: an insertion in the middle of 32 MiB changes only the chunks around it', (t) => {
  const c = new Chunker();
  const buf = randomBuffer('resync', 32 * MiB);
  const before = ids(buf, c.cutAll(buf));
  t.true(before.length > 64, `${before.length} chunks`);
  const known = new Set(before);
  const mid = 16 * MiB + 12345;
  const edits: Array<[string, Buffer]> = [
    ['insert 1 byte', Buffer.concat([buf.subarray(0, mid), Buffer.of(7), buf.subarray(mid)])],
    ['insert 100 bytes', Buffer.concat([buf.subarray(0, mid), randomBuffer('ins', 100), buf.subarray(mid)])],
    ['insert 1 MiB', Buffer.concat([buf.subarray(0, mid), randomBuffer('ins-big', MiB), buf.subarray(mid)])],
    ['delete 5000 bytes', Buffer.concat([buf.subarray(0, mid), buf.subarray(mid + 5000)])],
    ['overwrite 1 MiB', Buffer.concat([buf.subarray(0, mid), randomBuffer('ow', MiB), buf.subarray(mid + MiB)])],
  ];
  for (const [what, edited] of edits) {
    const after = ids(edited, c.cutAll(edited));
    const fresh = after.filter((id) => !known.has(id));
    const lost = before.filter((id) => !new Set(after).has(id));
    const budget = what.includes('MiB') ? 8 : 3; // a 1 MiB edit spans a few chunks by itself
    t.true(fresh.length >= 1 && fresh.length <= budget, `${what}: ${fresh.length} new chunks of ${after.length}`);
    t.true(lost.length <= budget, `${what}: ${lost.length} old chunks no longer used`);
  }
});

test('parameters are validated', (t) => {
  t.is(validateChunkerParams(DEFAULT_CHUNKER), undefined);
  t.truthy(validateChunkerParams({ minSize: 65536, avgSize: 300000, maxSize: 1048576 }), 'avg not a power of two');
  t.truthy(validateChunkerParams({ minSize: 262144, avgSize: 262144, maxSize: 1048576 }), 'min >= avg');
  t.truthy(validateChunkerParams({ minSize: 65536, avgSize: 262144, maxSize: 262144 }), 'max <= avg');
  t.truthy(validateChunkerParams({ minSize: 32, avgSize: 256, maxSize: 1024 }), 'min < 64');
  t.throws(() => new Chunker({ minSize: 0, avgSize: 0, maxSize: 0 }));
});
