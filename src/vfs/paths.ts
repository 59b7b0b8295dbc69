import { NAME_MAX_BYTES, entryNameProblem } from '../core/names.js';
import { FsError } from './types.js';

/**
 * Split a Vfs path ("/a/b", "/" for the root) into components. Too-long components are
 * ENAMETOOLONG as in Linux path lookup; "." / ".." never reach a Vfs (the kernel resolves them).
 */
export function splitVfsPath(p: string): string[] {
  if (typeof p !== 'string' || !p.startsWith('/')) throw new FsError('EINVAL', `not an absolute path: ${p}`);
  const parts = p.split('/').filter((s) => s !== '');
  for (const name of parts) {
    if (name === '.' || name === '..') throw new FsError('EINVAL', `unexpected ${name} in ${p}`);
    if (Buffer.byteLength(name, 'utf8') > NAME_MAX_BYTES) throw new FsError('ENAMETOOLONG', `name too long in ${p}`);
  }
  return parts;
}

/** A name a new entry may get: anything the repository format can store. */
export function assertNewName(name: string): void {
  if (Buffer.byteLength(name, 'utf8') > NAME_MAX_BYTES) throw new FsError('ENAMETOOLONG', `name too long: ${name}`);
  const why = entryNameProblem(name);
  if (why) throw new FsError('EINVAL', `invalid name ${JSON.stringify(name)}: ${why}`);
}

/** True when `inner` is strictly below `outer` (component-wise). */
export function isBelow(outer: readonly string[], inner: readonly string[]): boolean {
  return inner.length > outer.length && outer.every((p, i) => inner[i] === p);
}
