import { RoamfsError } from './errors.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/**
 * Parse a duration like "500ms", "30s", "5m", "1h" (a bare number is seconds) into ms.
 * With allowOff, "off"/"0" return null (the feature is disabled).
 */
export function parseDuration(s: string, what = 'duration', allowOff = false): number | null {
  const v = s.trim().toLowerCase();
  if (allowOff && (v === 'off' || v === 'never' || v === 'false')) return null;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/.exec(v);
  if (!m) throw new RoamfsError('INVALID_ARGUMENT', `${what}: not a duration: ${JSON.stringify(s)} (use e.g. 500ms, 30s, 5m${allowOff ? ', off' : ''})`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 's']!);
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1e6, mib: 1024 ** 2, g: 1024 ** 3, gb: 1e9, gib: 1024 ** 3, t: 1024 ** 4, tb: 1e12, tib: 1024 ** 4 };

/** Parse a size like "200MiB", "2G", "1.5GB", "4096" into bytes. */
export function parseSize(s: string, what = 'size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(s.trim());
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new RoamfsError('INVALID_ARGUMENT', `${what}: not a size: ${JSON.stringify(s)} (use e.g. 512MiB, 2GiB)`);
  return Math.round(Number(m[1]) * unit);
}

export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 120_000) return `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)}s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)}m`;
  return `${(ms / 3_600_000).toFixed(1)}h`;
}
