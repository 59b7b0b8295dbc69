/**
 * When to commit: pure functions of the current time and the session's state, so the idle and
 * max-lag rules are unit-tested with a manual clock.
 */
export interface CommitPolicyConfig {
  /** No FUSE activity for this long = idle: commit now. */
  idleMs: number;
  /** Never let the oldest unshipped snapshot get older than this. */
  maxLagMs: number;
  /** First retry delay after a failure; doubles per consecutive failure. */
  retryBaseMs: number;
  /** Longest retry delay. */
  retryMaxMs: number;
}

export const DEFAULT_COMMIT_POLICY: CommitPolicyConfig = { idleMs: 10_000, maxLagMs: 300_000, retryBaseMs: 1_000, retryMaxMs: 60_000 };

export interface CommitState {
  now: number;
  lastActivityMs: number;
  /** Time of the oldest unshipped snapshot, or null when nothing is pending. */
  oldestPendingMs: number | null;
  consecutiveFailures: number;
  lastFailureMs: number | null;
}

export interface CommitDecision {
  commitNow: boolean;
  /** When to look again (ms since the epoch), or null when nothing is pending. */
  wakeAt: number | null;
  reason: 'nothing-pending' | 'idle' | 'max-lag' | 'busy' | 'backoff';
}

/** Margin before max-lag at which a busy desktop is committed anyway (commits take time). */
export function lagSlack(cfg: CommitPolicyConfig): number {
  return Math.min(30_000, cfg.maxLagMs / 10);
}

export function retryDelay(cfg: CommitPolicyConfig, failures: number): number {
  return failures <= 0 ? 0 : Math.min(cfg.retryMaxMs, cfg.retryBaseMs * 2 ** (failures - 1));
}

export function decideCommit(cfg: CommitPolicyConfig, s: CommitState): CommitDecision {
  if (s.oldestPendingMs === null) return { commitNow: false, wakeAt: null, reason: 'nothing-pending' };
  if (s.lastFailureMs !== null && s.consecutiveFailures > 0) {
    const retryAt = s.lastFailureMs + retryDelay(cfg, s.consecutiveFailures);
    if (s.now < retryAt) return { commitNow: false, wakeAt: retryAt, reason: 'backoff' };
  }
  const idleAt = s.lastActivityMs + cfg.idleMs;
  const deadline = s.oldestPendingMs + cfg.maxLagMs - lagSlack(cfg);
  if (s.now >= idleAt) return { commitNow: true, wakeAt: s.now, reason: 'idle' };
  if (s.now >= deadline) return { commitNow: true, wakeAt: s.now, reason: 'max-lag' };
  return { commitNow: false, wakeAt: Math.min(idleAt, deadline), reason: 'busy' };
}
