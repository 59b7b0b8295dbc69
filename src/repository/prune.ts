import type { Ref } from './objects.js';

export interface KeepPolicy {
  last?: number;
  hourly?: number;
  daily?: number;
  weekly?: number;
}

export interface PruneDecision {
  keep: Ref[];
  forget: Ref[];
  /** Why each kept ref is kept ("head", "last", "hourly 2026-11-25 14h", ...). */
  reasons: Map<number, string[]>;
}

function pad(n: number) {
  return String(n).padStart(2, '0');
}

/** Bucket keys in local time, like restic's `forget`. */
function bucket(kind: 'hourly' | 'daily' | 'weekly', ms: number): string {
  const d = new Date(ms);
  const day = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (kind === 'hourly') return `${day} ${pad(d.getHours())}h`;
  if (kind === 'daily') return day;
  // ISO week: Thursday of the current week decides the year.
  const t = new Date(Date.UTC(d.getFullYear(), d.getMonth(), d.getDate()));
  const dow = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - dow);
  const y0 = new Date(Date.UTC(t.getUTCFullYear(), 0, 1));
  const week = Math.ceil(((t.getTime() - y0.getTime()) / 86400000 + 1) / 7);
  return `${t.getUTCFullYear()}-W${pad(week)}`;
}

/**
 * Choose which refs to keep. Pure: depends only on the refs and the policy.
 * The head (highest seq) is always kept. Within each bucket the newest ref is kept, for the
 * N most recent buckets that have refs. With an empty policy only the head is kept.
 */
export function choosePrune(refs: readonly Ref[], policy: KeepPolicy): PruneDecision {
  const sorted = [...refs].sort((a, b) => b.seq - a.seq); // newest first
  const reasons = new Map<number, string[]>();
  const mark = (r: Ref, why: string) => {
    const l = reasons.get(r.seq) ?? [];
    l.push(why);
    reasons.set(r.seq, l);
  };
  if (sorted[0]) mark(sorted[0], 'head');
  sorted.slice(0, policy.last ?? 0).forEach((r) => mark(r, 'last'));
  for (const kind of ['hourly', 'daily', 'weekly'] as const) {
    const n = policy[kind] ?? 0;
    const seen = new Set<string>();
    for (const r of sorted) {
      if (seen.size >= n) break;
      const key = bucket(kind, r.time);
      if (seen.has(key)) continue;
      seen.add(key);
      mark(r, `${kind} ${key}`);
    }
  }
  return {
    keep: sorted.filter((r) => reasons.has(r.seq)),
    forget: sorted.filter((r) => !reasons.has(r.seq)),
    reasons,
  };
}
