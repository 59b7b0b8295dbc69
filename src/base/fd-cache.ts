import * as fsp from 'node:fs/promises';

interface Slot {
  open: Promise<fsp.FileHandle>;
  /** Readers currently using the handle; it is closed only when this drops to 0 after eviction. */
  users: number;
  evicted: boolean;
}

/**
 * A small LRU of read-only file handles on immutable files (cached chunks) and append-only
 * ones (packs), so that a stream of small reads from one big file does not open and close a
 * chunk file per read. Neither changes a byte once written, so a cached handle can never read
 * stale data.
 */
export class FdCache {
  /** Map iteration order is the LRU order: the first key is the least recently used. */
  private readonly slots = new Map<string, Slot>();

  constructor(private readonly capacity = 64) {}

  async use<T>(file: string, fn: (h: fsp.FileHandle) => Promise<T>): Promise<T> {
    let slot = this.slots.get(file);
    if (slot) {
      this.slots.delete(file); // re-insert as most recently used
      this.slots.set(file, slot);
    } else {
      slot = { open: fsp.open(file, 'r'), users: 0, evicted: false };
      this.slots.set(file, slot);
      this.evict();
    }
    slot.users++;
    try {
      return await fn(await slot.open);
    } catch (err) {
      // A failed open must not stay cached.
      if (this.slots.get(file) === slot) {
        slot.open.catch(() => this.drop(file, slot!));
      }
      throw err;
    } finally {
      slot.users--;
      if (slot.evicted && slot.users === 0) this.close(slot);
    }
  }

  /** Close every idle handle (at unmount). */
  async closeAll(): Promise<void> {
    const all = [...this.slots.values()];
    this.slots.clear();
    for (const s of all) {
      s.evicted = true;
      if (s.users === 0) this.close(s);
    }
  }

  get size(): number {
    return this.slots.size;
  }

  private drop(file: string, slot: Slot): void {
    if (this.slots.get(file) === slot) this.slots.delete(file);
  }

  private evict(): void {
    for (const [file, slot] of this.slots) {
      if (this.slots.size <= this.capacity) break;
      this.slots.delete(file);
      slot.evicted = true;
      if (slot.users === 0) this.close(slot);
    }
  }

  private close(slot: Slot): void {
    slot.open.then((h) => h.close()).catch(() => {});
  }
}
