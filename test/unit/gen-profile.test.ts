import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  countTree,
  generateProfile,
  parseCount,
  parseSize,
  startupFiles,
  type GenerateResult,
} from '../../scripts/gen-profile.js';

const MiB = 1024 * 1024;
const SIZE = 20 * MiB;
const FILES = 2000;

interface Entry {
  type: 'file' | 'dir' | 'symlink';
  mode: number;
  mtimeNs: bigint;
  size?: number;
  sha?: string;
  target?: string;
}

const tmpRoots: string[] = [];
let dirA = '';
let dirB = '';
let resA: GenerateResult;
let resB: GenerateResult;

function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'roamfs-gen-profile-'));
  tmpRoots.push(d);
  return d;
}

const isSqlite = (full: string): boolean => {
  const fd = fs.openSync(full, 'r');
  try {
    const b = Buffer.alloc(16);
    fs.readSync(fd, b, 0, 16, 0);
    return b.toString('latin1') === 'SQLite format 3\0';
  } finally {
    fs.closeSync(fd);
  }
};

/** Everything except the .git internals; sqlite DBs are compared without their bytes. */
function manifest(root: string): Map<string, Entry> {
  const out = new Map<string, Entry>();
  const walk = (rel: string) => {
    const names = fs.readdirSync(path.join(root, rel)).sort();
    for (const name of names) {
      const r = rel ? `${rel}/${name}` : name;
      if (r === 'src/project/.git') continue;
      const full = path.join(root, r);
      const st = fs.lstatSync(full, { bigint: true });
      const e: Entry = { type: 'file', mode: Number(st.mode & 0o7777n), mtimeNs: st.mtimeNs };
      if (st.isDirectory()) {
        e.type = 'dir';
        out.set(r, e);
        walk(r);
        continue;
      }
      if (st.isSymbolicLink()) {
        e.type = 'symlink';
        e.target = fs.readlinkSync(full);
      } else {
        e.size = Number(st.size);
        if (!isSqlite(full)) e.sha = createHash('sha256').update(fs.readFileSync(full)).digest('hex');
      }
      out.set(r, e);
    }
  };
  walk('');
  return out;
}

test.before(async () => {
  dirA = path.join(tmp(), 'home');
  dirB = path.join(tmp(), 'home');
  [resA, resB] = await Promise.all([
    generateProfile(dirA, { seed: 1, sizeBytes: SIZE, files: FILES }),
    generateProfile(dirB, { seed: 1, sizeBytes: SIZE, files: FILES }),
  ]);
});

test.after.always(() => {
  for (const d of tmpRoots) fs.rmSync(d, { recursive: true, force: true });
});

test('same seed gives an identical tree (except .git internals and sqlite bytes)', (t) => {
  const a = manifest(dirA);
  const b = manifest(dirB);
  t.true(a.size > FILES / 2);
  t.deepEqual([...a.keys()], [...b.keys()]);
  let diffs = 0;
  for (const [k, ea] of a) {
    const eb = b.get(k)!;
    if (JSON.stringify(ea, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) !== JSON.stringify(eb, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))) {
      if (diffs++ < 5) t.log('differs:', k, ea, eb);
    }
  }
  t.is(diffs, 0);
  t.deepEqual(resA, resB);
});

test('file count and total size are close to the request', (t) => {
  t.deepEqual(countTree(dirA), resA);
  t.true(Math.abs(resA.files - FILES) / FILES < 0.05, `files=${resA.files}`);
  t.true(Math.abs(resA.bytes - SIZE) / SIZE < 0.05, `bytes=${resA.bytes}`);
  t.true(resA.dirs > 50);
  t.true(resA.symlinks >= 5);
});

test('contains symlinks, empty dirs, unicode names and mixed modes', (t) => {
  const m = manifest(dirA);
  const links = [...m].filter(([, e]) => e.type === 'symlink');
  t.true(links.length >= 5);
  t.is(fs.readlinkSync(path.join(dirA, 'Desktop/project')), '../src/project');
  t.true(fs.statSync(path.join(dirA, 'Desktop/project')).isDirectory());
  t.true(fs.statSync(path.join(dirA, '.vimrc')).isFile());
  // dangling symlink (Firefox lock) is part of a realistic profile
  t.true(links.some(([p]) => p.endsWith('/lock')));

  t.deepEqual(fs.readdirSync(path.join(dirA, 'Public')), []);
  t.deepEqual(fs.readdirSync(path.join(dirA, 'Templates')), []);

  t.true(m.has('Documents/Résumé.txt'));
  t.true(m.has('Documents/日本語メモ.md'));
  t.true([...m.keys()].some((p) => /\p{Extended_Pictographic}/u.test(p)));

  t.is(m.get('.ssh')!.mode, 0o700);
  t.is(m.get('.ssh/id_ed25519')!.mode, 0o600);
  t.is(m.get('.ssh/id_ed25519.pub')!.mode, 0o644);
  t.is(m.get('bin/backup.sh')!.mode, 0o755);
  t.is(m.get('.bashrc')!.mode, 0o644);
  t.true(fs.readFileSync(path.join(dirA, '.bashrc'), 'utf8').includes('HISTCONTROL'));
});

test('mtimes are spread over ~2 years, have sub-second parts, and dirs are set after their children', (t) => {
  const m = manifest(dirA);
  const times = [...m.values()].map((e) => e.mtimeNs);
  const min = times.reduce((a, b) => (b < a ? b : a));
  const max = times.reduce((a, b) => (b > a ? b : a));
  const day = 86_400n * 1_000_000_000n;
  t.true(max - min > 365n * day, 'spread over more than a year');
  t.true(max - min < 800n * day, 'within ~2 years');
  t.true(times.filter((x) => x % 1_000_000_000n !== 0n).length > times.length * 0.9, 'sub-second parts');
  // A directory's mtime is its newest entry's (so it was set after the children were written).
  const docs = m.get('Documents')!.mtimeNs;
  for (const name of fs.readdirSync(path.join(dirA, 'Documents'))) {
    t.true(m.get(`Documents/${name}`)!.mtimeNs <= docs);
  }
});

test('sqlite databases are real and pass integrity_check', (t) => {
  const m = manifest(dirA);
  const dbs = [...m.keys()].filter((p) => p.endsWith('.sqlite') || p.endsWith('/Default/History'));
  t.true(dbs.length >= 4, dbs.join(','));
  for (const db of dbs) {
    const out = execFileSync('sqlite3', [path.join(dirA, db), 'PRAGMA integrity_check'], { encoding: 'utf8' }).trim();
    t.is(out, 'ok', db);
  }
  const places = dbs.find((p) => p.endsWith('places.sqlite'))!;
  const rows = Number(execFileSync('sqlite3', [path.join(dirA, places), 'SELECT count(*) FROM moz_places'], { encoding: 'utf8' }).trim());
  t.true(rows >= 100, `rows=${rows}`);
});

test('git checkout is clean and has history', (t) => {
  const proj = path.join(dirA, 'src/project');
  t.is(execFileSync('git', ['-C', proj, 'status', '--porcelain'], { encoding: 'utf8' }), '');
  const log = execFileSync('git', ['-C', proj, 'log', '--format=%H %s'], { encoding: 'utf8' }).trim().split('\n');
  t.is(log.length, 2);
  // Commit hashes are deterministic too (fixed author/committer/dates).
  const logB = execFileSync('git', ['-C', path.join(dirB, 'src/project'), 'log', '--format=%H %s'], { encoding: 'utf8' }).trim().split('\n');
  t.deepEqual(log, logB);
  // node_modules exists but is ignored
  t.true(fs.existsSync(path.join(proj, 'node_modules')));
});

test('startupFiles lists 20 existing files', async (t) => {
  const files = await startupFiles(dirA);
  t.is(files.length, 20);
  t.is(files[0], '.profile');
  for (const f of files) t.true(fs.statSync(path.join(dirA, f)).isFile(), f);
  t.true(files.some((f) => f.endsWith('/prefs.js')));
});

test('large files do not repeat blocks', (t) => {
  const m = manifest(dirA);
  const big = [...m].filter(([, e]) => e.type === 'file' && (e.size ?? 0) >= MiB).map(([p]) => p);
  t.true(big.length >= 1);
  const seen = new Set<string>();
  let blocks = 0;
  for (const p of big) {
    const data = fs.readFileSync(path.join(dirA, p));
    for (let off = 0; off + 4096 <= data.length; off += 4096) {
      seen.add(createHash('sha1').update(data.subarray(off, off + 4096)).digest('hex'));
      blocks++;
    }
  }
  t.is(seen.size, blocks);
});

test('another seed differs; --big-files off has no large files; refuses a non-empty dir', async (t) => {
  const c = path.join(tmp(), 'c');
  const res = await generateProfile(c, { seed: 2, sizeBytes: 40 * MiB, files: 400, bigFiles: false });
  t.true(Math.abs(res.bytes - 40 * MiB) / (40 * MiB) < 0.05, `bytes=${res.bytes}`);
  t.true(Math.abs(res.files - 400) / 400 < 0.05, `files=${res.files}`);
  const m = manifest(c);
  t.false([...m.values()].some((e) => (e.size ?? 0) > 16 * MiB));
  t.not(fs.readFileSync(path.join(c, '.bash_history'), 'utf8'), fs.readFileSync(path.join(dirA, '.bash_history'), 'utf8'));
  await t.throwsAsync(generateProfile(c, { sizeBytes: MiB, files: 10 }), { message: /not empty/ });
});

test('size and count parsing', (t) => {
  t.is(parseSize('2GiB'), 2 * 1024 * MiB);
  t.is(parseSize('20MiB'), 20 * MiB);
  t.is(parseSize('500M'), 500 * MiB);
  t.is(parseSize('1.5G'), 1.5 * 1024 * MiB);
  t.is(parseSize('20MB'), 20_000_000);
  t.is(parseSize('4096'), 4096);
  t.throws(() => parseSize('lots'));
  t.is(parseCount('50000'), 50000);
  t.is(parseCount('50k'), 50000);
});
