import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
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

/** What an operator can do about a damaged change log (shown after the error). */
export function corruptLogHint(dir: string): string {
  return (
    `its unshipped snapshots cannot be recovered automatically. To mount from the last commit in the repository instead, ` +
    `move it aside (mv ${dir} ${dir}.damaged) and mount again; changes made after that commit are then lost`
  );
}

/**
 * What LevelDB's own recovery dropped while opening `dir`: it skips damaged records of its log
 * file (checksum mismatch, bad record) and only says so in its info log, DIR/LOG. A truncated
 * log file is not reported at all (it looks like a crash before the write).
 */
export async function recoveryWarnings(dir: string): Promise<string[]> {
  const text = await fsp.readFile(path.join(dir, 'LOG'), 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => /dropping \d+ bytes|Corruption|missing files/i.test(l))
    .map((l) => l.replace(/^\S+ \S+ /, '').trim());
}

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
    throw new RoamfsError('CORRUPT_LOG', `change log ${dir} cannot be opened: ${msg}`, { cause: err, hint: corruptLogHint(dir) });
  }
  let v: Uint8Array | undefined;
  try {
    v = await db.get('meta!schema');
    if (v === undefined) await db.put('meta!schema', Buffer.from(String(SCHEMA_VERSION)));
  } catch (err) {
    await db.close().catch(() => {});
    const cause = (err as { cause?: unknown }).cause ?? err;
    const msg = cause instanceof Error ? cause.message : String(cause);
    throw new RoamfsError('CORRUPT_LOG', `change log ${dir} is damaged or unreadable: ${msg}`, { cause: err, hint: corruptLogHint(dir) });
  }
  if (v !== undefined && Buffer.from(v).toString() !== String(SCHEMA_VERSION)) {
    await db.close();
    throw new RoamfsError('CORRUPT_LOG', `change log ${dir} has schema ${Buffer.from(v).toString()}, expected ${SCHEMA_VERSION}`);
  }
  return db;
}
