export type Release = () => void;

interface Waiter {
  exclusive: boolean;
  grant: () => void;
}

/**
 * The per-file content gate: writes hold it shared (many pwrites may be in flight at once),
 * truncate / copy-up / a snapshot's freeze hold it exclusively. Strictly FIFO, and a request
 * is queued synchronously when it is made: once the snapshotter has called acquireExclusive()
 * in its synchronous freeze section, every write that arrives later waits behind it, and the
 * freeze is granted as soon as the writes already in flight (`inflight`) have finished.
 */
export class Gate {
  private shared = 0;
  private exclusive = false;
  private readonly queue: Waiter[] = [];

  /** Writes in flight right now (holders of the shared side). */
  get inflight(): number {
    return this.shared;
  }

  /** True when nobody holds or waits for the gate. */
  get idle(): boolean {
    return this.shared === 0 && !this.exclusive && this.queue.length === 0;
  }

  acquireShared(): Promise<Release> {
    return this.acquire(false);
  }

  acquireExclusive(): Promise<Release> {
    return this.acquire(true);
  }

  async withShared<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquireShared();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  async withExclusive<T>(fn: () => Promise<T>): Promise<T> {
    const release = await this.acquireExclusive();
    try {
      return await fn();
    } finally {
      release();
    }
  }

  private acquire(exclusive: boolean): Promise<Release> {
    return new Promise<Release>((resolve) => {
      this.queue.push({ exclusive, grant: () => resolve(this.releaser(exclusive)) });
      this.pump();
    });
  }

  private releaser(exclusive: boolean): Release {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (exclusive) this.exclusive = false;
      else this.shared--;
      this.pump();
    };
  }

  private pump(): void {
    while (this.queue.length > 0 && !this.exclusive) {
      const next = this.queue[0]!;
      if (next.exclusive && this.shared > 0) return;
      this.queue.shift();
      if (next.exclusive) this.exclusive = true;
      else this.shared++;
      next.grant();
    }
  }
}
