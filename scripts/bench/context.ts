import * as path from 'node:path';
import { dropCaches } from '../lib/bench-util.js';
import { type Config, type Recorder, log, roamfs } from './core.js';

/** What every section gets: the configuration, the recorder and the shared inputs. */
export interface Ctx {
  cfg: Config;
  rec: Recorder;
  /** The main generated profile (plain directory, never written). */
  profile: string;
  /** The roamfs repository of this run (on local disk) and the user holding `profile`. */
  repo: string;
  user: string;
  /** The commit `import` made: every session that writes is rolled back to it. */
  c0: string;
  /** startupFiles(profile): the 20 files a desktop session reads first. */
  startup: string[];
  /** `--prefetch-delay off` when the CLI has it (sections that must not prefetch). */
  noPrefetch: string[];
  canDropCaches: boolean;
}

export function scratchDir(ctx: Ctx, ...parts: string[]): string {
  return path.join(ctx.cfg.runDir, ...parts.map((p) => p.replace(/[^A-Za-z0-9._-]+/g, '_')));
}

/** sync + drop the page cache, dentries and inodes (no-op when not permitted). */
export async function cold(ctx: Ctx): Promise<void> {
  if (ctx.canDropCaches) await dropCaches();
}

async function headId(cfg: Config, repo: string, user: string): Promise<string> {
  return (JSON.parse((await roamfs(cfg, ['log', repo, user, '-n', '1', '--json'])).trim().split('\n')[0]!) as { id: string }).id;
}

/** Heads known to hold exactly the tree of c0 (c0 itself and our rollback commits). */
const clean = new Set<string>();

/**
 * Put the profile back to the imported commit after a session that may have written to it
 * (`home.committed === false`: the session made no commit, nothing to do).
 */
export async function rollback(ctx: Ctx, home?: { committed?: boolean }): Promise<void> {
  if (home && home.committed === false) return;
  clean.add(ctx.c0);
  if (clean.has(await headId(ctx.cfg, ctx.repo, ctx.user))) return;
  await roamfs(ctx.cfg, ['rollback', ctx.repo, ctx.user, ctx.c0]);
  clean.add(await headId(ctx.cfg, ctx.repo, ctx.user));
}

export async function importProfile(cfg: Config, repo: string, user: string, dir: string): Promise<string> {
  await roamfs(cfg, ['import', repo, user, dir, '-m', 'bench import']);
  const id = await headId(cfg, repo, user);
  log(`imported ${dir} as ${user} (commit ${id.slice(0, 12)})`);
  return id;
}
