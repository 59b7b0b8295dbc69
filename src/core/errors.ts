/**
 * Operating errors carry a stable string `code`, an optional operator `hint` and a `cause`.
 * Programmer errors are plain `assert` failures and are allowed to crash.
 *
 * The CLI prints `roamfs: <message>` (one line) for a RoamfsError and exits non-zero;
 * the FUSE adapter maps codes to errno in one place (mount/fuse/errno.ts).
 */
export type ErrorCode =
  | 'NO_REPOSITORY' // the repository path does not exist
  | 'NOT_A_REPOSITORY' // the path exists but holds no roamfs repository
  | 'REPOSITORY_VERSION' // a repository format we do not understand
  | 'NOT_EMPTY' // init refused: a non-empty directory that is not a repository
  | 'MISSING_OBJECT' // a referenced object is absent
  | 'CORRUPT_OBJECT' // an object whose bytes do not hash to its name, or that does not decode
  | 'HEAD_CONFLICT' // compare-and-swap of a user's head lost against a newer head
  | 'INVALID_NAME' // a user or entry name that is empty, too long, has '/', NUL, or is '.'/'..'
  | 'UNKNOWN_USER' // no profile for that user
  | 'UNKNOWN_COMMIT' // no commit with that id (prefix) for that user
  | 'NO_SPACE' // ENOSPC / EDQUOT while writing
  | 'QUOTA_EXCEEDED' // a write would grow a profile beyond its hard quota (EDQUOT)
  | 'NOT_FOUND' // a local path that does not exist
  | 'INVALID_ARGUMENT' // a bad option or argument
  | 'UNSUPPORTED' // a file type or feature outside the format (sockets, devices, non-UTF-8 names)
  | 'CORRUPT_LOG' // the local change log cannot be read
  | 'REPOSITORY_UNAVAILABLE' // the repository cannot be reached right now (retryable)
  | 'LEASE_HELD' // another desktop holds the profile (exclusive sessions); retry after it logs out
  | 'LEASE_LOST' // this session's exclusive lease was taken over by another desktop
  | 'IO'; // any other I/O failure, with its cause

export class RoamfsError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, opts: { cause?: unknown; hint?: string } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'RoamfsError';
    this.code = code;
    this.hint = opts.hint;
  }
}

export function isRoamfsError(err: unknown, code?: ErrorCode): err is RoamfsError {
  return err instanceof RoamfsError && (code === undefined || err.code === code);
}

/** The errno code of a Node system error (`ENOENT`, ...), or undefined. */
export function errnoCode(err: unknown): string | undefined {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return undefined;
}

/**
 * Wrap a Node I/O error into a RoamfsError: ENOSPC/EDQUOT become NO_SPACE, others IO.
 * `what` names the operation and path for the one-line message.
 */
export function ioError(what: string, err: unknown): RoamfsError {
  if (err instanceof RoamfsError) return err;
  const code = errnoCode(err);
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new RoamfsError('NO_SPACE', `${what}: no space left on device`, { cause: err });
  }
  const msg = err instanceof Error ? err.message : String(err);
  return new RoamfsError('IO', `${what}: ${msg}`, { cause: err });
}
