/**
 * Run the real CLI (`node bin/roamfs.js ...`) as a child process, the way an operator does.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
/** dist/test/helpers -> <root>/bin/roamfs.js */
export const BIN = path.resolve(here, '../../../bin/roamfs.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run `roamfs ...args`; never throws for a non-zero exit. */
export function roamfs(...args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [BIN, ...args], { maxBuffer: 64 * 1024 * 1024, env: cliEnv() }, (err, stdout, stderr) => {
      if (err && typeof (err as { code?: unknown }).code !== 'number') return reject(err);
      resolve({ code: err ? ((err as { code: number }).code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** Start `roamfs ...args` without waiting (for kill tests); `exited` resolves with code/signal. */
export function spawnRoamfs(...args: string[]): {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
} {
  const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: cliEnv() });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
  return { child, exited };
}

function cliEnv(): NodeJS.ProcessEnv {
  // No colour, no TTY progress bars; keep the thread pool the launcher would pick.
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', FORCE_COLOR: '0' };
  delete env.NODE_OPTIONS;
  return env;
}

/** Non-empty lines of a stream. */
export function lines(s: string): string[] {
  return s.split('\n').filter((l) => l.length > 0);
}

/** Succeeds or throws with the command's output, for setup steps. */
export async function roamfsOk(...args: string[]): Promise<CliResult> {
  const r = await roamfs(...args);
  if (r.code !== 0) throw new Error(`roamfs ${args.join(' ')} exited ${r.code}: ${r.stderr}${r.stdout}`);
  return r;
}

/** The head commit id (full) of a user via `log --json`, or null when the user has no profile. */
export async function headOf(repo: string, user: string): Promise<string | null> {
  const r = await roamfs('log', repo, user, '--json', '-n', '1');
  if (r.code !== 0) {
    if (/no profile for user/.test(r.stderr)) return null;
    throw new Error(`roamfs log failed: ${r.stderr}`);
  }
  const first = lines(r.stdout)[0];
  return first ? (JSON.parse(first) as { id: string }).id : null;
}

/** All commits of a user, newest first, from `log --json`. */
export async function logOf(repo: string, user: string): Promise<Array<{ seq: number; id: string; message: string; bytes: number; files: number }>> {
  const r = await roamfsOk('log', repo, user, '--json');
  return lines(r.stdout).map((l) => JSON.parse(l));
}
