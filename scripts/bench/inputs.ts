/**
 * Inputs cached under .bench/ across runs: generated profiles (keyed by seed/size/files), the
 * 10,000-file git repository that workloads clone, and random files for the write tests. Each is
 * built in a temporary directory and published by rename plus a marker, so an interrupted build
 * is never mistaken for a complete one.
 */
import * as path from 'node:path';
import { access, mkdir, rename, rm, writeFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { app, log, sh, timed } from './core.js';

async function exists(p: string): Promise<boolean> {
  try {
    await access(p);
    return true;
  } catch {
    return false;
  }
}

async function cached(final: string, build: (tmp: string) => Promise<void>): Promise<string> {
  const marker = `${final}.complete`;
  if ((await exists(marker)) && (await exists(final))) return final;
  const tmp = `${final}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await rm(final, { recursive: true, force: true });
  await mkdir(path.dirname(final), { recursive: true });
  await build(tmp);
  await rename(tmp, final);
  await writeFile(marker, new Date().toISOString() + '\n');
  return final;
}

/** A generated profile (scripts/gen-profile.ts), cached in .bench/profiles/s<seed>-<size>-<files>. */
export function ensureProfile(benchDir: string, seed: number, sizeArg: string, files: number): Promise<string> {
  const final = path.join(benchDir, 'profiles', `s${seed}-${sizeArg}-${files}`);
  return cached(final, async (tmp) => {
    log(`generating profile seed ${seed}, ${sizeArg}, ${files} files (cached in ${final})`);
    const [s] = await timed(() => sh(process.execPath, [path.join(app.distScripts, 'gen-profile.js'), tmp, '--seed', String(seed), '--size', sizeArg, '--files', String(files), '-q'], { env: { ...process.env, UV_THREADPOOL_SIZE: '8' } }));
    log(`  generated in ${s.toFixed(1)} s`);
  });
}

/** Deterministic text of `n` bytes for file i. */
function text(i: number, n: number): Buffer {
  const out = Buffer.alloc(n);
  let h = createHash('sha256').update(`file ${i}`).digest();
  let o = 0;
  const alphabet = 'abcdefghijklmnopqrstuvwxyz     \n{}();=+-_0123456789';
  while (o < n) {
    for (let k = 0; k < h.length && o < n; k++) out[o++] = alphabet.charCodeAt(h[k]! % alphabet.length);
    h = createHash('sha256').update(h).digest();
  }
  return out;
}

/** A git repository with `files` source-like files (one pack), cloned by the git workload. */
export function ensureGitSource(benchDir: string, files: number): Promise<string> {
  const final = path.join(benchDir, `git-src-${files}`);
  return cached(final, async (tmp) => {
    log(`generating a ${files}-file git repository (cached in ${final})`);
    for (let i = 0; i < files; i++) {
      const d = path.join(tmp, `mod${String(i % 20).padStart(2, '0')}`, `sub${String(Math.floor(i / 20) % 10)}`);
      if (i < 200) await mkdir(d, { recursive: true });
      await writeFile(path.join(d, `file${String(i).padStart(5, '0')}.c`), text(i, 200 + ((i * 7919) % 6000)));
    }
    const env = { ...process.env, GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_AUTHOR_NAME: 'bench', GIT_AUTHOR_EMAIL: 'b@example.org', GIT_COMMITTER_NAME: 'bench', GIT_COMMITTER_EMAIL: 'b@example.org', GIT_AUTHOR_DATE: '@1700000000 +0000', GIT_COMMITTER_DATE: '@1700000000 +0000' };
    // gc.auto=0: no background `gc --auto` after the commit (it would race the explicit gc).
    const g = (...a: string[]) => sh('git', ['-c', 'gc.auto=0', '-c', 'maintenance.auto=false', ...a], { env });
    await g('init', '-q', '-b', 'main', tmp);
    await g('-C', tmp, 'add', '-A');
    await g('-C', tmp, 'commit', '-q', '-m', 'bench tree');
    await g('-C', tmp, 'gc', '-q', '--prune=now');
  });
}

/** A file of `bytes` random bytes (incompressible, no duplicate chunks). */
export async function ensureRandomFile(benchDir: string, bytes: number): Promise<string> {
  const final = path.join(benchDir, `random-${bytes}.bin`);
  const ok = await stat(final).then((s) => s.size === bytes, () => false);
  if (ok) return final;
  await sh('sh', ['-c', `head -c ${bytes} /dev/urandom > "$1.tmp" && mv "$1.tmp" "$1"`, 'sh', final]);
  return final;
}
