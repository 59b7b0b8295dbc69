/**
 * Synchronous or thread-pool I/O on local files (upper files, the local object cache).
 *
 * Every asynchronous fs call of the daemon is a round trip through the libuv thread pool. On
 * the 2-vCPU machines of docs/benchmarks.md that costs 40-100 µs, more than the work itself
 * (a 4 KiB pwrite into the page cache takes 4-50 µs): the woken pool thread mostly runs instead
 * of the event loop, not beside it. Writes, reads and truncates of upper files, and writes into
 * the local object cache (local, nearly always in the page cache) therefore run synchronously
 * on the event loop. A disk that stalls must not freeze every other operation of the mount,
 * though: each synchronous call is timed, and after one that took longer than `slowMs` the
 * thread pool is used for the next `backoffMs`.
 */
export class IoMode {
  private asyncUntil = -Infinity;

  constructor(
    private readonly o: {
      /** Synchronous I/O at all (false: always the thread pool). */
      sync: boolean;
      slowMs: number;
      backoffMs: number;
      /** A monotonic ms clock (measures durations only). */
      now: () => number;
    },
  ) {}

  /** Whether the next call may be synchronous. */
  get sync(): boolean {
    return this.o.sync && (this.asyncUntil === -Infinity || this.o.now() >= this.asyncUntil);
  }

  /** Run one synchronous fs call, timed (see the class comment). */
  time<T>(fn: () => T): T {
    const t0 = this.o.now();
    try {
      return fn();
    } finally {
      const t1 = this.o.now();
      if (t1 - t0 > this.o.slowMs) this.asyncUntil = t1 + this.o.backoffMs;
    }
  }
}

/** A synchronous call slower than this sends the next ones to the thread pool... */
export const SLOW_SYNC_MS = 2;
/** ...for this long. */
export const SLOW_BACKOFF_MS = 1000;

/** An IoMode with the daemon's defaults (monotonic clock). */
export function defaultIoMode(sync = true): IoMode {
  return new IoMode({ sync, slowMs: SLOW_SYNC_MS, backoffMs: SLOW_BACKOFF_MS, now: () => performance.now() });
}

/** Always synchronous, however long a call takes: for a command line tool, which has no event loop to keep free. */
export function blockingIoMode(): IoMode {
  return new IoMode({ sync: true, slowMs: Infinity, backoffMs: 0, now: () => performance.now() });
}
