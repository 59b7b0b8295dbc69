/**
 * mount/bundle-loader.cts: a bundle runs as the main program with its arguments, and its V8
 * code cache (BUNDLE.v8cache) is made once, kept while it matches, and never runs stale code:
 * V8 checks only the source's length, so a changed bundle of the same length must be caught by
 * the cache's own hash. A damaged cache, or none at all, only costs time.
 */
import test from 'ava';
import type { ExecutionContext } from 'ava';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../helpers/repo-fs.js';

const LOADER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../mount/bundle-loader.cjs');
const MAGIC = Buffer.from('roamfs-v8-code-cache-1\n');

/** A CommonJS "bundle" printing its arguments, a version letter and where it runs from. */
function bundleText(version: string): string {
  return `'use strict';
function answer() { return { argv: process.argv.slice(2), v: ${JSON.stringify(version)}, file: __filename, main: process.argv[1] }; }
console.log(JSON.stringify(answer()));
`;
}

async function runIt(file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Record<string, unknown>> {
  const { stdout } = await promisify(execFile)(process.execPath, [LOADER, file, ...args], { env: { ...process.env, ...env } });
  return JSON.parse(stdout) as Record<string, unknown>;
}

async function setup(t: ExecutionContext): Promise<{ file: string; cache: string }> {
  const dir = await tempDir(t, 'roamfs-bundle-loader');
  const file = path.join(dir, 'b.js');
  await fsp.writeFile(file, bundleText('A'));
  return { file, cache: `${file}.v8cache` };
}

const sha1 = (b: Buffer) => createHash('sha1').update(b).digest();

test('runs the bundle as the program, with its arguments; the first run makes the cache for exactly this bundle', async (t) => {
  const { file, cache } = await setup(t);
  t.deepEqual(await runIt(file, ['x', '--y']), { argv: ['x', '--y'], v: 'A', file, main: file });
  const c = await fsp.readFile(cache);
  t.deepEqual(c.subarray(0, MAGIC.length), MAGIC);
  t.deepEqual(c.subarray(MAGIC.length, MAGIC.length + 20), sha1(await fsp.readFile(file)));
  t.true(c.length > MAGIC.length + 20, 'V8 data follows');
});

test('a cache V8 accepts is kept as it is', async (t) => {
  const { file, cache } = await setup(t);
  await runIt(file, []);
  const before = await fsp.readFile(cache);
  const st = await fsp.stat(cache);
  t.deepEqual(await runIt(file, ['again']), { argv: ['again'], v: 'A', file, main: file });
  t.deepEqual(await fsp.readFile(cache), before);
  t.is((await fsp.stat(cache)).ino, st.ino, 'not rewritten');
});

test('a rebuilt bundle of the same length runs its new code and gets a new cache', async (t) => {
  const { file, cache } = await setup(t);
  await runIt(file, []);
  const b = bundleText('B');
  t.is(b.length, bundleText('A').length);
  await fsp.writeFile(file, b);
  t.deepEqual(await runIt(file, []), { argv: [], v: 'B', file, main: file });
  t.deepEqual((await fsp.readFile(cache)).subarray(MAGIC.length, MAGIC.length + 20), sha1(Buffer.from(b)));
  t.deepEqual(await runIt(file, []), { argv: [], v: 'B', file, main: file });
});

test('a damaged cache is ignored and made anew; ROAMFS_CODE_CACHE=off neither reads nor writes one', async (t) => {
  const { file, cache } = await setup(t);
  await fsp.writeFile(cache, Buffer.concat([MAGIC, sha1(await fsp.readFile(file)), Buffer.from('not V8 data at all')]));
  t.deepEqual(await runIt(file, ['1']), { argv: ['1'], v: 'A', file, main: file });
  t.true((await fsp.readFile(cache)).length > MAGIC.length + 20 + 'not V8 data at all'.length, 'rewritten by V8');
  await fsp.writeFile(cache, 'garbage');
  t.deepEqual(await runIt(file, ['2'], { ROAMFS_CODE_CACHE: 'off' }), { argv: ['2'], v: 'A', file, main: file });
  t.is(await fsp.readFile(cache, 'utf8'), 'garbage', 'untouched');
  await fsp.rm(cache);
  await runIt(file, [], { ROAMFS_CODE_CACHE: 'off' });
  await t.throwsAsync(fsp.stat(cache), { code: 'ENOENT' });
});

test('a cache that cannot be written (its name is a directory) costs nothing but the cache', async (t) => {
  const { file, cache } = await setup(t);
  await fsp.mkdir(cache);
  t.deepEqual(await runIt(file, ['ok']), { argv: ['ok'], v: 'A', file, main: file });
  t.true((await fsp.stat(cache)).isDirectory());
  t.deepEqual((await fsp.readdir(path.dirname(file))).sort(), ['b.js', 'b.js.v8cache'], 'no temporary file left');
});
