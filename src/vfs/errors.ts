import { errnoCode, isRoamfsError } from '../core/errors.js';
import { FsError, type Errno } from './types.js';

export type LogFn = (line: string) => void;

/**
 * Turn anything thrown below the Vfs into an FsError. Storage trouble (a missing or corrupt
 * object, an I/O error) is EIO for this one operation, with one log line naming the operation,
 * the path and the underlying message (which names the object id); ENOSPC/EDQUOT pass through.
 */
export function toFsError(err: unknown, op: string, path: string, log: LogFn): FsError {
  if (err instanceof FsError) return err;
  if (isRoamfsError(err, 'QUOTA_EXCEEDED')) return new FsError('EDQUOT', `${op} ${path}: ${err.message}`, { cause: err });
  if (isRoamfsError(err, 'NO_SPACE')) return new FsError('ENOSPC', `${op} ${path}: no space`, { cause: err });
  const code = errnoCode(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') return new FsError(code as Errno, `${op} ${path}: ${code}`, { cause: err });
  const msg = err instanceof Error ? err.message : String(err);
  log(`vfs: ${op} ${path}: EIO: ${msg}`);
  return new FsError('EIO', `${op} ${path}: ${msg}`, { cause: err });
}
