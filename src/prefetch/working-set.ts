import type { Clock } from '../core/clock.js';
import { entryNameProblem } from '../core/names.js';
import { errorFields, type Logger } from '../core/log.js';
import type { Backend } from '../repository/backend.js';
import { packState, unpackState } from '../repository/objects.js';

/**
 * The learned working set of a profile: which files the user opens during the first minutes of
 * a session, ranked so that files used in recent sessions come first. It is a *hint* that
 * orders the background prefetch (plan.ts); it is never trusted as a path on the local file
 * system: paths are looked up through the overlay, component by component, and validated when
 * the document is read (docs/repository-format.md, "Per-user state: workingset").
 *
 * Ranking: every session multiplies the previous scores by DECAY (0.5) and adds 1 to each path
 * it opened. With a decay of 1/2 a path opened in the latest session (score >= 1) always ranks
 * above every path it did not open (score < 1/2 + 1/4 + ... < 1), and among those, ones opened
 * more recently rank higher; paths used every session converge to 2. Ties keep the latest
 * session's order of first open, then the previous document's order. Paths whose score falls
 * below MIN_SCORE are forgotten (a path opened once, after seven sessions without it), and at
 * most MAX_PATHS are kept.
 */

/** Name of the state document: users/<user>/state/workingset. */
export const WORKING_SET_STATE = 'workingset';
export const WORKING_SET_VERSION = 1;
export const WORKING_SET_MAX_PATHS = 2000;
export const WORKING_SET_DECAY = 0.5;
export const WORKING_SET_MIN_SCORE = 1 / 64;
/** The recording window: files first opened this long after mount are recorded. */
export const WORKING_SET_WINDOW_MS = 5 * 60_000;
/** A document larger than this is not read (a corrupt or hostile one). */
export const WORKING_SET_MAX_DOC_BYTES = 8 * 1024 * 1024;
/** Linux PATH_MAX: no valid profile-relative path is longer. */
const MAX_PATH_BYTES = 4096;

export interface WorkingSetEntry {
  /** Profile-relative path ("a/b", no leading slash), components valid entry names. */
  path: string;
  score: number;
}

export interface WorkingSetDoc {
  /** When it was written (ms, the writer's clock); informative. */
  time: number;
  /** Which desktop and session wrote it; informative. */
  host: string;
  session: string;
  /** Number of sessions merged into it so far; informative. */
  sessions: number;
  /** Best ranked first. */
  entries: WorkingSetEntry[];
}

/** Why `p` is not an acceptable working-set path, or undefined when it is. */
export function workingSetPathProblem(p: unknown): string | undefined {
  if (typeof p !== 'string') return 'not a string';
  if (p.length === 0) return 'empty';
  if (Buffer.byteLength(p, 'utf8') > MAX_PATH_BYTES) return `longer than ${MAX_PATH_BYTES} bytes`;
  for (const part of p.split('/')) {
    const why = entryNameProblem(part);
    if (why) return `component ${JSON.stringify(part)}: ${why}`;
  }
  return undefined;
}

export function encodeWorkingSet(doc: WorkingSetDoc): Buffer {
  return packState({
    v: WORKING_SET_VERSION,
    time: doc.time,
    host: doc.host,
    session: doc.session,
    n: doc.sessions,
    e: doc.entries.map((e) => [e.path, e.score]),
  });
}

/**
 * Decode and validate a working-set document. Throws (a plain Error with the reason) on
 * anything unexpected: not msgpack, another version, a missing field, an invalid path (empty
 * component, '.', '..', NUL, leading '/', over-long), a score that is not a finite number >= 0.
 * One bad entry condemns the whole document: our writer never produces one, so it means
 * damage or tampering. Entries beyond `maxPaths` are ignored; duplicates keep the first.
 */
export function decodeWorkingSet(b: Uint8Array, maxPaths = WORKING_SET_MAX_PATHS): WorkingSetDoc {
  if (b.length > WORKING_SET_MAX_DOC_BYTES) throw new Error(`document is ${b.length} bytes (limit ${WORKING_SET_MAX_DOC_BYTES})`);
  let o: unknown;
  try {
    o = unpackState(b);
  } catch (err) {
    throw new Error(`not msgpack: ${(err as Error).message}`);
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) throw new Error('not a map');
  const d = o as Record<string, unknown>;
  if (d.v !== WORKING_SET_VERSION) throw new Error(`unknown version ${JSON.stringify(d.v)}`);
  if (!Array.isArray(d.e)) throw new Error('no entry list');
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : 0);
  const entries: WorkingSetEntry[] = [];
  const seen = new Set<string>();
  for (const raw of d.e.slice(0, maxPaths)) {
    if (!Array.isArray(raw) || raw.length < 2) throw new Error('entry is not [path, score]');
    const [path, score] = raw as [unknown, unknown];
    const why = workingSetPathProblem(path);
    if (why) throw new Error(`invalid path ${JSON.stringify(path)}: ${why}`);
    if (typeof score !== 'number' || !Number.isFinite(score) || score < 0) throw new Error(`invalid score for ${JSON.stringify(path)}`);
    if (seen.has(path as string)) continue;
    seen.add(path as string);
    entries.push({ path: path as string, score });
  }
  // Our writer stores them ranked; a stable sort makes a hand-edited document harmless too.
  entries.sort((a, b) => b.score - a.score);
  return {
    time: num(d.time),
    host: typeof d.host === 'string' ? d.host : '',
    session: typeof d.session === 'string' ? d.session : '',
    sessions: Math.floor(num(d.n)),
    entries,
  };
}

/**
 * The new ranking after a session that first opened `session` (in that order), given the
 * previous ranking `prev` (best first). See the module comment. Pure.
 */
export function mergeWorkingSet(
  prev: readonly WorkingSetEntry[],
  session: readonly string[],
  opts: { decay?: number; minScore?: number; maxPaths?: number } = {},
): WorkingSetEntry[] {
  const decay = opts.decay ?? WORKING_SET_DECAY;
  const minScore = opts.minScore ?? WORKING_SET_MIN_SCORE;
  const maxPaths = opts.maxPaths ?? WORKING_SET_MAX_PATHS;
  const acc = new Map<string, { score: number; order: number }>();
  session.forEach((p, i) => {
    if (!acc.has(p)) acc.set(p, { score: 1, order: i });
  });
  prev.forEach((e, i) => {
    const cur = acc.get(e.path);
    if (cur) cur.score += e.score * decay;
    else acc.set(e.path, { score: e.score * decay, order: session.length + i });
  });
  return [...acc]
    .filter(([, v]) => v.score >= minScore)
    .sort((a, b) => b[1].score - a[1].score || a[1].order - b[1].order)
    .slice(0, maxPaths)
    .map(([path, v]) => ({ path, score: v.score }));
}

/**
 * Read the user's working set. Null when there is none, or when the document is corrupt: that
 * is logged (warn) and the document is ignored (the next save replaces it). Throws only when
 * the repository cannot be read (the caller decides: prefetch without it, or do not save).
 */
export async function loadWorkingSet(backend: Backend, user: string, log: Logger): Promise<WorkingSetDoc | null> {
  const raw = await backend.readState(user, WORKING_SET_STATE);
  if (!raw) return null;
  try {
    return decodeWorkingSet(raw);
  } catch (err) {
    log.warn({ ...errorFields(err), user, bytes: raw.length }, 'working set document is corrupt; ignoring it (it is replaced at the next update)');
    return null;
  }
}

/**
 * Records the files opened (for reading or writing) during the first `windowMs` of a session,
 * in order of first open, at most `maxPaths`. note() is called on every open: one clock read
 * and one Set lookup.
 */
export class WorkingSetRecorder {
  readonly endsAtMs: number;
  private readonly paths = new Set<string>();
  private closed = false;

  constructor(
    private readonly clock: Clock,
    windowMs: number,
    private readonly maxPaths = WORKING_SET_MAX_PATHS,
  ) {
    this.endsAtMs = clock.now() + windowMs;
  }

  /** A file at profile-relative `path` was opened now. Ignored outside the window. */
  note(path: string): void {
    if (this.closed || path === '' || this.paths.size >= this.maxPaths || this.clock.now() >= this.endsAtMs) return;
    this.paths.add(path);
  }

  /** True while opens are still recorded. */
  get recording(): boolean {
    return !this.closed && this.clock.now() < this.endsAtMs;
  }

  /** Stop recording (the window is over, or the session ends early). */
  close(): void {
    this.closed = true;
  }

  /** The recorded paths in order of first open. */
  recorded(): string[] {
    return [...this.paths];
  }
}
