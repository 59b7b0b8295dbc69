/**
 * Repository throughput: `roamfs import` and `roamfs export` of a generated profile, each as a
 * ratio to `cp -a` of the same tree measured in the same round (issue 2's targets: import <= 3x,
 * export <= 2x). Rounds rotate the order of the systems; the page cache is dropped before each
 * measurement when possible. Usage:
 *   node dist/scripts/bench-repo.js [--size 2GiB] [--files 50000] [--rounds 3] [--dir .bench/repo]
 */
import { parseArgs } from 'node:util';
import * as path from 'node:path';
import { mkdir, rm, writeFile, access } from 'node:fs/promises';
import { dropCaches, median, rotate, run, table, timed } from './lib/bench-util.js';

const { values: o } = parseArgs({
  options: {
    size: { type: 'string', default: '2GiB' },
    files: { type: 'string', default: '50000' },
    rounds: { type: 'string', default: '3' },
    dir: { type: 'string', default: '.bench/repo' },
  },
});
const root = path.resolve(o.dir!);
const src = path.join(root, `profile-${o.size}-${o.files}`);
const cli = path.resolve('bin/roamfs.js');
const rounds = Number(o.rounds);

await mkdir(root, { recursive: true });
try {
  await access(path.join(src, '.profile-complete'));
} catch {
  await rm(src, { recursive: true, force: true });
  console.error(`generating ${o.size} / ${o.files} files in ${src}`);
  await run('node', ['dist/scripts/gen-profile.js', src, '--seed', '7', '--size', o.size!, '--files', o.files!]);
  await writeFile(path.join(src, '.profile-complete'), '');
}

type System = 'cp -a (import)' | 'roamfs import' | 'cp -a (export)' | 'roamfs export';
const raw: Record<System, number[]> = { 'cp -a (import)': [], 'roamfs import': [], 'cp -a (export)': [], 'roamfs export': [] };
let cold = true;
for (let r = 0; r < rounds; r++) {
  const work = path.join(root, 'work');
  await rm(work, { recursive: true, force: true });
  await mkdir(work, { recursive: true });
  const repo = path.join(work, 'repo');
  await run('node', [cli, 'init', repo]);
  // Import side: copy the profile into the "repository disk" vs import it.
  for (const s of rotate(['cp -a (import)', 'roamfs import'] as const, r)) {
    cold = (await dropCaches()) && cold;
    raw[s].push(
      await timed(() => (s === 'roamfs import' ? run('node', [cli, 'import', repo, 'bench', src]) : run('cp', ['-a', src, path.join(work, 'copy')]))),
    );
  }
  // Export side: copy the copy back out vs export the profile.
  for (const s of rotate(['cp -a (export)', 'roamfs export'] as const, r)) {
    cold = (await dropCaches()) && cold;
    raw[s].push(
      await timed(() =>
        s === 'roamfs export' ? run('node', [cli, 'export', repo, 'bench', path.join(work, 'out')]) : run('cp', ['-a', path.join(work, 'copy'), path.join(work, 'copy-back')]),
      ),
    );
  }
  console.error(`round ${r + 1}/${rounds}: ${Object.entries(raw).map(([k, v]) => `${k} ${v.at(-1)!.toFixed(1)}s`).join(', ')}`);
}
const ratio = (a: System, b: System) => median(raw[a].map((x, i) => x / raw[b][i]!));
const rows = [
  ['measure', 'median s', 'ratio to cp -a (median of per-round ratios)'],
  ['cp -a (import side)', median(raw['cp -a (import)']).toFixed(2), '1.00'],
  ['roamfs import', median(raw['roamfs import']).toFixed(2), ratio('roamfs import', 'cp -a (import)').toFixed(2)],
  ['cp -a (export side)', median(raw['cp -a (export)']).toFixed(2), '1.00'],
  ['roamfs export', median(raw['roamfs export']).toFixed(2), ratio('roamfs export', 'cp -a (export)').toFixed(2)],
];
console.log(`profile ${o.size} / ${o.files} files, ${rounds} rounds, page cache ${cold ? 'dropped before each run' : 'NOT dropped (no permission)'}`);
console.log(table(rows));
await writeFile(path.join(root, 'results.json'), JSON.stringify({ date: new Date().toISOString(), size: o.size, files: o.files, raw }, null, 2));
await rm(path.join(root, 'work'), { recursive: true, force: true });
