import { Level } from 'level';
import { RoamfsError, errnoCode } from '../core/errors.js';

/**
 * The local durable state of one mounted profile: a LevelDB database in the cache directory.
 * Keys are strings, values raw bytes (msgpack, encoded by the owner of each key range).
 *
 * Key layout (schema 1):
 *   meta!<name>                      small documents: schema, user, repository id, shipped position
 *   snap!<seq:16 digits>             a durable snapshot's header (written last in its batch)
 *   chg!<seq:16>!<index:8>           the snapshot's ordered changes
 */
export const SCHEMA_VERSION = 1;
export type Db = Level<string, Uint8Array>;

export async function openDb(dir: string): Promise<Db> {
  const db: Db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view', createIfMissing: true });
  try {
    await db.open();
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause ?? err;
    const msg = cause instanceof Error ? cause.message : String(cause);
    if (errnoCode(cause) === 'ENOSPC' || /No space left/i.test(msg)) {
      throw new RoamfsError('NO_SPACE', `change log ${dir}: no space left on device`, { cause: err });
    }
    if (/lock/i.test(msg)) {
      throw new RoamfsError('IO', `change log ${dir} is in use by another roamfs process`, { cause: err });
    }
    throw new RoamfsError('CORRUPT_LOG', `change log ${dir} cannot be opened: ${msg}`, {
      cause: err,
      hint: 'its unshipped snapshots cannot be recovered automatically; move it aside to mount from the repository',
    });
  }
  const v = await db.get('meta!schema');
  if (v === undefined) await db.put('meta!schema', Buffer.from(String(SCHEMA_VERSION)));
  else if (Buffer.from(v).toString() !== String(SCHEMA_VERSION)) {
    await db.close();
    throw new RoamfsError('CORRUPT_LOG', `change log ${dir} has schema ${Buffer.from(v).toString()}, expected ${SCHEMA_VERSION}`);
  }
  return db;
}
