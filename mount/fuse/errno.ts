/**
 * The one place where errors become errno values for the kernel.
 *
 * - FsError (the Vfs contract) carries a POSIX errno name: answered as that errno, not logged.
 * - RoamfsError (operating errors from the repository layer) maps by code; the ones that end
 *   up as EIO are logged because they mean something is wrong below the Vfs.
 * - Anything else escaping a Vfs method is a bug: EIO, logged with its stack.
 */
import { constants } from 'node:os';

import { FsError } from '../../src/vfs/types.js';
import type { Errno } from '../../src/vfs/types.js';
import { RoamfsError } from '../../src/core/errors.js';
import type { ErrorCode } from '../../src/core/errors.js';

const ERRNO = constants.errno as Readonly<Record<string, number>>;

/** The positive errno number for an errno name (ENOENT → 2), or undefined if unknown here. */
export function errnoNumber(name: string): number | undefined {
  const n = ERRNO[name];
  return typeof n === 'number' ? n : undefined;
}

const EIO = errnoNumber('EIO')!;

/** Negative errno for an errno name, as FUSE answers it (ENOENT → -2); unknown names → -EIO. */
export function negErrno(name: Errno | string): number {
  return -(errnoNumber(name) ?? EIO);
}

/**
 * RoamfsError codes that are not EIO. Every other code (MISSING_OBJECT, CORRUPT_OBJECT,
 * HEAD_CONFLICT, REPOSITORY_UNAVAILABLE, IO, ... and codes added later) answers EIO and is
 * logged.
 */
const ROAMFS_CODE_ERRNO: Partial<Record<ErrorCode, Errno>> = {
  NOT_EMPTY: 'ENOTEMPTY',
  INVALID_NAME: 'EINVAL',
  INVALID_ARGUMENT: 'EINVAL',
  UNKNOWN_USER: 'ENOENT',
  UNKNOWN_COMMIT: 'ENOENT',
  NOT_FOUND: 'ENOENT',
  NO_SPACE: 'ENOSPC',
  QUOTA_EXCEEDED: 'EDQUOT',
  UNSUPPORTED: 'ENOTSUP',
};

export interface MappedError {
  /** Negative errno to answer the kernel with. */
  errno: number;
  /** Its name (ENOENT, EIO, ...). */
  name: string;
  /** True when the error is unexpected and should be logged. */
  log: boolean;
}

/** Map any thrown value to the errno the kernel gets, and whether it deserves a log line. */
export function mapError(err: unknown): MappedError {
  if (err instanceof FsError) {
    const n = errnoNumber(err.errno);
    if (n !== undefined) return { errno: -n, name: err.errno, log: err.errno === 'EIO' };
    return { errno: -EIO, name: 'EIO', log: true };
  }
  if (err instanceof RoamfsError) {
    const name = ROAMFS_CODE_ERRNO[err.code] ?? 'EIO';
    return { errno: negErrno(name), name, log: name === 'EIO' };
  }
  return { errno: -EIO, name: 'EIO', log: true };
}

/** Shorthand: the negative errno for a thrown value. */
export function toErrno(err: unknown): number {
  return mapError(err).errno;
}
