import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { writeFile } from 'node:fs/promises';

export const exec = promisify(execFile);

/** Run a command, inheriting nothing; reject with its stderr on failure. */
export async function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} ${args.join(' ')} exited ${code}: ${err.trim()}`))));
  });
}

/** Seconds taken by fn. */
export async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/** Flush dirty data and drop the page cache so each measurement starts cold (best effort). */
export async function dropCaches(): Promise<boolean> {
  await run('sync', []);
  try {
    await writeFile('/proc/sys/vm/drop_caches', '3\n');
    return true;
  } catch {
    return false;
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Rotate the order of systems for round r, so no system always runs first. */
export function rotate<T>(xs: readonly T[], r: number): T[] {
  const k = r % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}

export function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  return [line(rows[0]!), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

// ---------------------------------------------------------------------------
// Additions for scripts/bench.ts (the side-by-side benchmark)
// ---------------------------------------------------------------------------

/** The counters of /proc/<pid>/io (bytes). */
export interface ProcIo {
  rchar: number;
  wchar: number;
  syscr: number;
  syscw: number;
  read_bytes: number;
  write_bytes: number;
}

export function parseProcIo(text: string): ProcIo {
  const o: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+):\s*(\d+)/.exec(line);
    if (m) o[m[1]!] = Number(m[2]);
  }
  return { rchar: o.rchar ?? 0, wchar: o.wchar ?? 0, syscr: o.syscr ?? 0, syscw: o.syscw ?? 0, read_bytes: o.read_bytes ?? 0, write_bytes: o.write_bytes ?? 0 };
}

/** /proc/<pid>/io of a live process (null when it is gone). */
export async function procIo(pid: number): Promise<ProcIo | null> {
  const { readFile } = await import('node:fs/promises');
  try {
    return parseProcIo(await readFile(`/proc/${pid}/io`, 'utf8'));
  } catch {
    return null;
  }
}

/** VmHWM / VmRSS of a live process in bytes (null when it is gone). */
export async function procMem(pid: number): Promise<{ hwm: number; rss: number } | null> {
  const { readFile } = await import('node:fs/promises');
  try {
    const s = await readFile(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s*(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
    return { hwm: kb('VmHWM'), rss: kb('VmRSS') };
  } catch {
    return null;
  }
}

/** Mount points (absolute paths) at or below dir, deepest first, from /proc/self/mountinfo. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const dec = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 5) continue;
    const mp = dec(f[4]!);
    if (mp === dir || mp.startsWith(dir.endsWith('/') ? dir : dir + '/')) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

export async function isMountPoint(p: string): Promise<boolean> {
  return (await mountsUnder(p)).includes(p);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Poll cond every `everyMs` until it is truthy; throw after timeoutMs. */
export async function waitFor<T>(what: string, cond: () => Promise<T | null | undefined | false>, timeoutMs: number, everyMs = 10): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await cond();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** Nearest-rank percentile (p in 0..100). */
export function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

export function fmtBytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  const a = Math.abs(n);
  if (a >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(2)} GiB`;
  if (a >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)} MiB`;
  if (a >= 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${n} B`;
}
