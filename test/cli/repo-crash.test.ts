/**
 * CLI end to end, crash safety: `kill -9` an import at random points, many times, alternating
 * between a new user and a new commit on top of an existing one. After every kill: fsck is
 * clean, and the head is either the previous commit or a complete new one (its export equals
 * the source directory).
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PosixBackend } from '../../src/repository/posix.js';
import { Repository } from '../../src/repository/repository.js';
import { lines, roamfs, roamfsOk, spawnRoamfs } from '../helpers/repo-cli.js';
import { Rng, randomBuffer, writeRandomFile } from '../helpers/repo-data.js';
import { asObject, snapshotTree, tempDir, tmpfs } from '../helpers/repo-fs.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const ITERATIONS = Number(process.env.ROAMFS_CRASH_ITERATIONS ?? 30);

/** A profile of ~20 MiB in ~245 files; `round` changes one big file and a few small ones. */
async function writeProfile(src: string, round: number): Promise<void> {
  if (round === 0) {
    for (let i = 0; i < 4; i++) await writeRandomFile(path.join(src, `media-${i}.bin`), 4 * MiB, `media-${i}`);
    for (let d = 0; d < 8; d++) {
      await fsp.mkdir(path.join(src, 'cache', `d${d}`), { recursive: true });
      for (let i = 0; i < 30; i++) await fsp.writeFile(path.join(src, 'cache', `d${d}`, `f${i}`), randomBuffer(`c${d}-${i}`, 1 + ((d * 31 + i) * 3571) % (40 * KiB)));
    }
    return;
  }
  await writeRandomFile(path.join(src, `media-${round % 4}.bin`), 4 * MiB, `media-${round % 4}-round-${round}`);
  for (let i = 0; i < 5; i++) await fsp.writeFile(path.join(src, 'cache', `d${(round + i) % 8}`, `f${i}`), `round ${round} file ${i}\n`);
  await fsp.writeFile(path.join(src, 'round'), `${round}\n`);
}

test('kill -9 during import, many times: fsck clean, head is the old commit or a complete new one', async (t) => {
  t.timeout(5 * 60_000);
  const seed = Number(process.env.ROAMFS_CRASH_SEED ?? Date.now() % 1_000_000);
  t.log(`seed ${seed} (ROAMFS_CRASH_SEED to replay)`);
  const rng = new Rng(seed);
  // On a private tmpfs when we can: the commit barrier (syncfs) then does not wait for whatever
  // else the machine is writing, so import durations stay stable. kill -9 semantics are the same.
  const work = process.getuid?.() === 0 ? await tmpfs(t, '1g') : await tempDir(t, 'roamfs-crash');
  const repo = path.join(work, 'repo');
  const src = path.join(work, 'src');
  await fsp.mkdir(src);
  await writeProfile(src, 0);
  await roamfsOk('init', repo);

  // How long an import takes here (first import: every object is new, the slowest case).
  const t0 = performance.now();
  await roamfsOk('import', repo, 'main', src);
  const duration = performance.now() - t0;
  const lib = await Repository.open(new PosixBackend(repo)); // reads heads without a process per look
  t.log(`a full import takes ${duration.toFixed(0)} ms`);

  const outcome = { killed: 0, finished: 0, moved: 0, stayed: 0 };
  let estimate = duration; // kill delays are uniform in [0, 1.3 × estimate]: all phases, including the end
  let lastMoved = true;
  let expected = asObject(await snapshotTree(src));
  const phase = { fsck: 0, export: 0, total: performance.now() };
  for (let i = 1; i <= ITERATIONS; i++) {
    // After a kill, import the same content again (for the other user): objects the killed
    // import left behind are then reused, so a partial object under its final name would show.
    if (lastMoved) {
      await writeProfile(src, i);
      expected = asObject(await snapshotTree(src));
    }
    const user = i % 2 === 0 ? `new${i}` : 'main';
    const previous = (await lib.head(user))?.commit ?? null;
    const delay = rng.next() * estimate * 1.3;
    const started = performance.now();
    const { child, exited } = spawnRoamfs('import', repo, user, src);
    await Promise.race([sleep(delay), exited]);
    const sent = child.kill('SIGKILL');
    const { code, signal, stderr } = await exited;
    if (signal === 'SIGKILL') {
      outcome.killed++;
      // It ran longer than we thought (a loaded machine): widen the window.
      if (delay > estimate * 0.8) estimate = delay * 1.25;
    } else {
      outcome.finished++;
      t.is(code, 0, `iteration ${i}: an import that was not killed succeeded (sent=${sent}): ${stderr}`);
      estimate = (estimate + (performance.now() - started)) / 2;
    }

    const tf = performance.now();
    const fsck = await roamfs('fsck', repo);
    phase.fsck += performance.now() - tf;
    t.is(fsck.code, 0, `iteration ${i} (${user}, killed after ${delay.toFixed(0)} ms): fsck\n${fsck.stderr}`);
    t.is(lines(fsck.stdout).length, 1);

    const head = (await lib.head(user))?.commit ?? null;
    lastMoved = head !== previous;
    if (head === previous) {
      outcome.stayed++;
      t.not(signal, null, `iteration ${i}: a finished import must move the head`);
      continue;
    }
    outcome.moved++;
    t.truthy(head, `iteration ${i}: the user exists only with a complete commit`);
    // A complete new commit on top of the previous one, with exactly the source's content.
    const refs = await lib.refs(user);
    t.is(refs[0]!.prev, previous, `iteration ${i}: the new ref builds on the previous head`);
    t.deepEqual((await lib.getCommit(head!)).parents, previous ? [previous] : []);
    const out = path.join(work, `out-${i}`);
    const te = performance.now();
    await roamfsOk('export', repo, user, out);
    phase.export += performance.now() - te;
    t.deepEqual(asObject(await snapshotTree(out)), expected, `iteration ${i}: export equals the source`);
    await fsp.rm(out, { recursive: true, force: true });
  }
  t.log(JSON.stringify(outcome), `final estimate ${estimate.toFixed(0)} ms`, JSON.stringify({ ...phase, total: performance.now() - phase.total }));
  t.is(outcome.moved + outcome.stayed, ITERATIONS);
  // After all that, the repository is still fully usable: one more import and a gc.
  await roamfsOk('import', repo, 'main', src);
  await roamfsOk('gc', repo, '--grace', '0');
  const final = await roamfs('fsck', repo);
  t.is(final.code, 0, final.stderr);
});
