/**
 * Tables (markdown) from the raw numbers: medians over rounds, and ratios = median of the
 * per-round ratios to the reference measured in the same round.
 */
import { fmtBytes, median, table } from '../lib/bench-util.js';
import type { Config, Recorder } from './core.js';
import { LOGIN_SYSTEMS } from './login.js';
import { STORM_SYSTEMS } from './storm.js';
import { WORKLOADS, WORKLOAD_SYSTEMS } from './workloads.js';
import { LOGOUT_VARIANTS, variantLabel } from './logout.js';
import { bytesNote } from './systems.js';
import type { Ctx } from './context.js';

export function fmtS(s: number | null): string {
  if (s === null || !Number.isFinite(s)) return '-';
  if (s >= 100) return `${s.toFixed(0)} s`;
  if (s >= 10) return `${s.toFixed(1)} s`;
  if (s >= 1) return `${s.toFixed(2)} s`;
  return `${(s * 1000).toFixed(s >= 0.1 ? 0 : 1)} ms`;
}
const fmtX = (r: number | null) => (r === null ? '' : r >= 100 ? ` (${r.toFixed(0)}x)` : r >= 10 ? ` (${r.toFixed(1)}x)` : ` (${r.toFixed(2)}x)`);

function cell(rec: Recorder, section: string, metric: string, sys: string, ref: string | null): string {
  const m = rec.med(section, metric, sys);
  if (m === null) return rec.get(section, metric, sys).length ? 'error' : '-';
  const r = ref && sys !== ref ? rec.ratio(section, metric, sys, ref) : null;
  return `${fmtS(m)}${fmtX(r)}`;
}

function bytesCell(rec: Recorder, section: string, metric: string, sys: string): string {
  const m = rec.med(section, metric, sys);
  return m === null ? '-' : fmtBytes(m);
}

export function loginTable(rec: Recorder): string {
  const rows = [['system', 'mount/copy returned', 'login: + ls -la', 'read 20 startup files', 'login + startup', 'repo bytes read', 'bytes measured as', 'disk read (all processes)']];
  for (const s of LOGIN_SYSTEMS) {
    if (!rec.data.login?.['login s']?.[s]) continue;
    rows.push([s, cell(rec, 'login', 'mount s', s, null), cell(rec, 'login', 'login s', s, 'native'), cell(rec, 'login', 'startup files s', s, 'native'), cell(rec, 'login', 'login+startup s', s, 'native'), bytesCell(rec, 'login', 'repo bytes', s), bytesNote(s), bytesCell(rec, 'login', 'disk read bytes', s)]);
  }
  return table(rows);
}

export function stormTable(rec: Recorder, cfg: Config): string {
  const rows = [['system', `all ${cfg.storm.users} homes usable`, 'p50 user', 'p95 user', 'repo bytes read (all users)']];
  for (const s of STORM_SYSTEMS) {
    if (!rec.data.storm?.['all usable s']?.[s]) continue;
    rows.push([s, cell(rec, 'storm', 'all usable s', s, 'native'), cell(rec, 'storm', 'p50 user s', s, 'native'), cell(rec, 'storm', 'p95 user s', s, 'native'), bytesCell(rec, 'storm', 'repo bytes', s)]);
  }
  return table(rows);
}

export function workloadTable(ctx: Ctx, section: string, systems: string[], workloads = WORKLOADS): string {
  const { rec } = ctx;
  const present = systems.filter((s) => workloads.some((w) => rec.data[section]?.[w.id]?.[s]));
  const rows = [['workload', ...present]];
  for (const w of workloads) {
    if (!rec.data[section]?.[w.id]) continue;
    rows.push([w.label(ctx), ...present.map((s) => cell(rec, section, w.id, s, 'native'))]);
    if (w.id === 'sqlite') rows.push(['  = sqlite tx/s', ...present.map((s) => {
      const m = rec.med(section, w.id, s);
      return m ? (ctx.cfg.sqliteTx / m).toFixed(0) : '-';
    })]);
  }
  return table(rows);
}

interface OpsItem {
  round: number;
  system: string;
  workload: string;
  seconds: number;
  ops: Record<string, { count: number; totalMs: number; meanUs: number }>;
}

/** roamfs's FUSE ops per workload: counts and mean latency averaged over rounds, top ops by total time. */
export function fuseTable(ctx: Ctx, section: string, system = 'roamfs', workloads = WORKLOADS): string {
  const items = (ctx.rec.extra[section] ?? []) as OpsItem[];
  const rows = [['workload', 'wall (median)', 'FUSE time in daemon', 'ops (count x mean latency), by total time']];
  for (const w of workloads) {
    const its = items.filter((i) => i.system === system && i.workload === w.id);
    if (!its.length) continue;
    const agg: Record<string, { count: number; totalMs: number }> = {};
    for (const it of its) for (const [op, v] of Object.entries(it.ops)) {
      const a = (agg[op] ??= { count: 0, totalMs: 0 });
      a.count += v.count;
      a.totalMs += v.totalMs;
    }
    const n = its.length;
    const ops = Object.entries(agg).sort((a, b) => b[1].totalMs - a[1].totalMs);
    const totalMs = ops.reduce((s, [, v]) => s + v.totalMs, 0) / n;
    const desc = ops
      .slice(0, 5)
      .map(([op, v]) => `${op} ${Math.round(v.count / n).toLocaleString('en-US')} x ${(v.totalMs * 1000 / v.count).toFixed(0)} us`)
      .join(', ');
    rows.push([w.label(ctx), fmtS(median(its.map((i) => i.seconds))), fmtS(totalMs / 1000), desc || '-']);
  }
  return table(rows);
}

export function logoutTable(rec: Recorder, cfg: Config): string {
  const rows = [['logout', 'median', 'x cp (same round)', 'x cp + fsync (same round)']];
  for (const v of LOGOUT_VARIANTS) {
    if (!rec.data.logout?.seconds?.[v]) continue;
    const m = rec.med('logout', 'seconds', v);
    const r1 = rec.ratio('logout', 'seconds', v, 'cp N');
    const r2 = rec.ratio('logout', 'seconds', v, 'cp N + fsync');
    rows.push([variantLabel(v, cfg.logoutBytes), m === null ? 'error' : fmtS(m), r1 === null ? '-' : r1.toFixed(2), r2 === null ? '-' : r2.toFixed(2)]);
  }
  return table(rows);
}

export function logoutPhasesTable(rec: Recorder, cfg: Config): string {
  const d = rec.data['logout-phases'] ?? {};
  const variants = LOGOUT_VARIANTS.filter((v) => Object.values(d).some((x) => x[v]));
  const rows = [['phase (daemon log)', ...variants.map((v) => variantLabel(v, cfg.logoutBytes))]];
  for (const metric of Object.keys(d)) rows.push([metric, ...variants.map((v) => fmtS(rec.med('logout-phases', metric, v)))]);
  return table(rows);
}

export function deltaTable(rec: Recorder, cfg: Config): string {
  const d = rec.data.delta ?? {};
  const rows = [['measure (roamfs)', 'median', 'per round']];
  for (const [metric, bySys] of Object.entries(d)) {
    const xs = bySys.roamfs ?? [];
    const isS = metric.endsWith(' s');
    const f = (x: number | null) => (x === null ? 'error' : isS ? fmtS(x) : fmtBytes(x));
    rows.push([metric, f(rec.med('delta', metric, 'roamfs')), xs.map(f).join(', ')]);
  }
  const pre = `change ${fmtBytes(cfg.deltaChangeBytes)} inside a ${fmtBytes(cfg.deltaFileBytes)} file, then the next commit:`;
  return `${pre}\n\n${table(rows)}`;
}

export function memoryTable(rec: Recorder): string {
  const m = rec.data.memory ?? {};
  const variants = [...new Set(Object.values(m).flatMap((x) => Object.keys(x)))];
  const rows = [['daemon', 'VmHWM after mount + ls -la', 'VmHWM after full load', 'full load took', 'repo bytes read (roamfs: remoteBytesRead; peers: daemon rchar)']];
  for (const v of variants) {
    rows.push([
      v,
      fmtBytes(rec.med('memory', 'VmHWM after mount+ls', v)),
      fmtBytes(rec.med('memory', 'VmHWM after full load', v)),
      fmtS(rec.med('memory', 'full load s', v)),
      fmtBytes(rec.med('memory', 'repo bytes read', v)),
    ]);
  }
  return table(rows);
}

export function snapcostTable(ctx: Ctx, workloads: typeof WORKLOADS): string {
  const { rec } = ctx;
  const rows = [['small-file workload', 'roamfs --snapshot-interval off', 'roamfs --snapshot-interval 1s', '1s / off (same round)']];
  for (const w of [...workloads, { id: 'total', label: () => 'total' }]) {
    if (!rec.data.snapcost?.[w.id]) continue;
    const r = rec.ratio('snapcost', w.id, 'roamfs snap 1s', 'roamfs snap off');
    rows.push([w.label(ctx), cell(rec, 'snapcost', w.id, 'roamfs snap off', null), cell(rec, 'snapcost', w.id, 'roamfs snap 1s', null), r === null ? '-' : r.toFixed(2)]);
  }
  return table(rows);
}

export { WORKLOAD_SYSTEMS };
