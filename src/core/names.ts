import { RoamfsError } from './errors.js';

/** Linux NAME_MAX, in bytes of the UTF-8 encoding. */
export const NAME_MAX_BYTES = 255;
/** User names follow the portable POSIX login name rules (and Debian's adduser default). */
const USER_RE = /^[a-z_][a-z0-9_.-]{0,31}$/i;

/**
 * A directory entry name as stored in a tree: non-empty, at most 255 UTF-8 bytes,
 * no '/', no NUL, not '.' or '..', and valid Unicode (no lone surrogates).
 * Returns a reason when invalid, undefined when valid.
 */
export function entryNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return 'not a string';
  if (name.length === 0) return 'empty';
  if (name === '.' || name === '..') return `'${name}' is reserved`;
  if (name.includes('/')) return "contains '/'";
  if (name.includes('\0')) return 'contains NUL';
  if (!name.isWellFormed()) return 'not valid UTF-8';
  if (Buffer.byteLength(name, 'utf8') > NAME_MAX_BYTES) return `longer than ${NAME_MAX_BYTES} bytes`;
  return undefined;
}

export function assertEntryName(name: unknown, where = 'entry name'): asserts name is string {
  const why = entryNameProblem(name);
  if (why) throw new RoamfsError('INVALID_NAME', `invalid ${where} ${JSON.stringify(name)}: ${why}`);
}

export function userNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'empty';
  if (!USER_RE.test(name)) return 'must be 1-32 characters of letters, digits, _ . - and not start with a digit, . or -';
  return undefined;
}

export function assertUserName(name: unknown): asserts name is string {
  const why = userNameProblem(name);
  if (why) throw new RoamfsError('INVALID_NAME', `invalid user name ${JSON.stringify(name)}: ${why}`);
}

/**
 * Split a profile-relative path ("a/b/c", no leading slash, or "" for the root) into
 * validated components. A component of '..' or '.' is rejected: paths never escape.
 */
export function splitPath(path: string): string[] {
  if (path === '' || path === '/' || path === '.') return [];
  const parts = path.replace(/^\/+/, '').replace(/\/+$/, '').split(/\/+/);
  for (const p of parts) assertEntryName(p, 'path component');
  return parts;
}
