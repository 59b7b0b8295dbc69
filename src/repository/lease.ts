/**
 * Session leases on a user's profile: who has it mounted, and (policy 'exclusive') that only
 * one read-write session works on it at a time. The format and the reasoning behind it are in
 * docs/shared-storage.md ("Leases"), with the GlusterFS measurements that shaped it.
 *
 * Everything lives in per-user state documents (users/<user>/state/), each written once under
 * a fresh name (create + link, never replaced in place: on GlusterFS a client may read a
 * replaced file's old content for seconds, while new names show in a directory listing at
 * once):
 *
 * - `lease.<G>` (G: 12 digits): the claim of exclusive-lease generation G, created with an
 *   exclusive create (link(2), as refs): two contenders can never both create G. The highest
 *   G is the current lease; G is the fencing token. A claim with `released: true` retires a
 *   generation (see tryRegister).
 * - `lease.<G>.<B>` (B: 12 digits): heartbeat B of generation G. The holder creates B+1, then
 *   deletes B.
 * - `lease.<G>.released`: the holder let go.
 * - `session.<S>.<B>`: session S (read-only, or read-write under policy 'concurrent') at
 *   heartbeat B, created anew at every heartbeat (B+1, then B deleted), all removed at release.
 *   `roamfs status` lists the other desktops from them.
 *
 * Expiry never compares two hosts' clocks. A contender watches the directory listing: a
 * generation (or session) whose newest heartbeat name has not changed for `window` ms of the
 * contender's own clock is expired (window = the holder's ttl clamped to [own ttl, 2 × own
 * ttl]: a holder that has not changed for twice our timeout is expired whatever it claims,
 * including a corrupt claim or one whose expiresAt lies far in the future). The times inside
 * documents (the holder's clock) are informative only. One shortcut: a holder on the same host
 * and boot (same boot id) whose process is gone is dead at once.
 *
 * The holder trusts its lease until `start of its last successful renewal + ttl - margin` on
 * its own clock: a contender's watch of that heartbeat started after the heartbeat existed,
 * so it cannot take over before. After that the holder does not renew the old generation but
 * takes a new one with an exclusive create, which fails if a contender got there first.
 * Correctness needs the clocks' rates (not offsets) to agree, and the heartbeat interval plus
 * the storage's listing delay to stay well below the ttl; no flock, no synchronized clocks, no
 * storage clock.
 *
 * Leases decide who works on a profile, not the safety of the repository: the head's
 * compare-and-swap and the merge keep concurrent commits safe with or without them.
 */
import { randomBytes } from 'node:crypto';
import { RoamfsError, errnoCode, isRoamfsError } from '../core/errors.js';
import type { Clock, Timer } from '../core/clock.js';
import { errorFields, nullLogger, type Logger } from '../core/log.js';
import { assertUserName } from '../core/names.js';
import type { Backend } from './backend.js';

export type LeasePolicy = 'concurrent' | 'exclusive';
/** 'ro' sessions never need (or block) the exclusive lease. */
export type SessionMode = 'rw' | 'ro';

const pad = (n: number) => String(n).padStart(12, '0');
const SESSION_ID_RE = /^[a-z0-9][a-z0-9_-]{0,63}$/;
const CLAIM_RE = /^lease\.(\d{12})$/;
const BEAT_RE = /^lease\.(\d{12})\.(\d{12})$/;
const RELEASED_RE = /^lease\.(\d{12})\.released$/;
const SESSION_RE = /^session\.([a-z0-9][a-z0-9_-]{0,63})\.(\d{12})$/;
/** Larger documents are corrupt (a lease document is ~350 bytes). */
const MAX_DOC_BYTES = 64 * 1024;

export const claimName = (generation: number) => `lease.${pad(generation)}`;
export const beatName = (generation: number, beat: number) => `lease.${pad(generation)}.${pad(beat)}`;
export const releasedName = (generation: number) => `lease.${pad(generation)}.released`;
export function sessionDocName(session: string, beat: number): string {
  if (!SESSION_ID_RE.test(session)) throw new Error(`bad session id ${session}`);
  return `session.${session}.${pad(beat)}`;
}

/**
 * A claim, heartbeat or session document (JSON). Times are the writer's clock, ms since the
 * epoch: informative only.
 */
export interface LeaseDoc {
  v: 1;
  kind: 'lease' | 'session';
  user: string;
  host: string;
  pid: number;
  session: string;
  /** /proc/sys/kernel/random/boot_id of the writer, for the same-host shortcut; null if unknown. */
  bootId: string | null;
  mode: SessionMode;
  policy: LeasePolicy;
  /** The generation (lease documents), null for session documents. */
  generation: number | null;
  beat: number;
  acquiredAt: number;
  renewedAt: number;
  expiresAt: number;
  /** The writer's lease duration: it renews well within it. */
  ttlMs: number;
  /** Claims only: true retires the generation (nobody holds it). */
  released: boolean;
}

export interface LeaseConfig {
  policy: LeasePolicy;
  /** Lease duration: a session whose heartbeats stop for this long (as watched) is expired. */
  ttlMs: number;
  /** Renewal interval (default ttl/3). */
  heartbeatMs: number;
  /**
   * How long acquire waits for another holder to release or expire before failing (default
   * 1.5 × ttl: enough to take over from a crashed holder).
   */
  waitMs: number;
  /** How often a waiting acquire looks again (default ttl/10, at least 100 ms). */
  pollMs: number;
  /** The holder stops trusting its lease this long before ttl runs out (default ttl/10). */
  marginMs: number;
}

export function leaseConfig(c: Partial<LeaseConfig> = {}): LeaseConfig {
  const ttlMs = c.ttlMs ?? 30_000;
  if (!(ttlMs >= 10)) throw new RoamfsError('INVALID_ARGUMENT', `lease ttl must be at least 10 ms, got ${ttlMs}`);
  const cfg: LeaseConfig = {
    policy: c.policy ?? 'concurrent',
    ttlMs,
    heartbeatMs: c.heartbeatMs ?? Math.floor(ttlMs / 3),
    waitMs: c.waitMs ?? Math.floor(ttlMs * 1.5),
    pollMs: c.pollMs ?? Math.max(100, Math.floor(ttlMs / 10)),
    marginMs: c.marginMs ?? Math.floor(ttlMs / 10),
  };
  if (cfg.heartbeatMs <= 0 || cfg.heartbeatMs + cfg.marginMs >= ttlMs) {
    throw new RoamfsError('INVALID_ARGUMENT', `lease heartbeat ${cfg.heartbeatMs} ms (+ margin ${cfg.marginMs} ms) must be shorter than the ttl ${ttlMs} ms`);
  }
  return cfg;
}

export interface LeaseOptions {
  backend: Backend;
  user: string;
  host: string;
  pid: number;
  /** Random id of this session ([a-z0-9][a-z0-9_-]{0,63}); names its session documents. */
  session: string;
  /** Durations are measured with it: pass a clock that does not jump (monotonicClock). */
  clock: Clock;
  mode?: SessionMode;
  config?: Partial<LeaseConfig>;
  /** This machine's boot id; with isProcessAlive, lets a same-host dead holder be taken over at once. */
  bootId?: string | null;
  isProcessAlive?: (pid: number) => boolean;
  log?: Logger;
  /** Called once when the lease is lost (see renewOnce and assertHeld). */
  onLost?: (e: LeaseError) => void;
}

/** Who holds (or blocks) a profile, as a message names it. */
export interface Holder {
  host: string;
  pid: number;
  session: string;
  mode: SessionMode;
  policy: LeasePolicy;
  generation: number | null;
  /** Its document (claim or latest session document), null when unreadable or corrupt. */
  doc: LeaseDoc | null;
  /** Its state document's name (lease.000000000007, session.abcd.000000000003). */
  name: string;
  /** Its newest heartbeat (0: none yet). */
  beat: number;
  /** How long this process has watched it without a new heartbeat (own clock). */
  unchangedMs: number;
  /** Why it looks wrong (corrupt, ttl out of range, expiresAt far ahead); undefined when fine. */
  suspicious?: string;
}

/**
 * reason 'held': another session holds the profile; `holders` names them (code LEASE_HELD).
 * reason 'lost': this session's exclusive lease was taken over or released (code LEASE_LOST).
 */
export class LeaseError extends RoamfsError {
  constructor(
    readonly reason: 'held' | 'lost',
    message: string,
    readonly holders: Holder[] = [],
    opts: { cause?: unknown; hint?: string } = {},
  ) {
    super(reason === 'held' ? 'LEASE_HELD' : 'LEASE_LOST', message, opts);
    this.name = 'LeaseError';
  }
}

export function isLeaseError(err: unknown, reason?: 'held' | 'lost'): err is LeaseError {
  return err instanceof LeaseError && (reason === undefined || err.reason === reason);
}

/** A clock whose now() never jumps (monotonic, anchored at the wall clock when the process started). */
export const monotonicClock: Clock = {
  now: () => performance.timeOrigin + performance.now(),
  setTimer(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  },
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};

// ---- documents ------------------------------------------------------------------------------

export function encodeLeaseDoc(d: LeaseDoc): Buffer {
  return Buffer.from(JSON.stringify(d) + '\n');
}

/** Parse and validate a document; a string says why it is corrupt. */
export function decodeLeaseDoc(raw: Uint8Array): LeaseDoc | string {
  if (raw.length > MAX_DOC_BYTES) return `${raw.length} bytes, larger than ${MAX_DOC_BYTES}`;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(Buffer.from(raw).toString('utf8')) as Record<string, unknown>;
  } catch (err) {
    return `not JSON (${(err as Error).message})`;
  }
  if (!o || typeof o !== 'object' || Array.isArray(o)) return 'not a JSON object';
  if (o.v !== 1) return `unknown version ${JSON.stringify(o.v)}`;
  const str = (k: string) => typeof o[k] === 'string' && (o[k] as string).length > 0 && (o[k] as string).length <= 256;
  const num = (k: string) => typeof o[k] === 'number' && Number.isFinite(o[k]);
  for (const k of ['user', 'host', 'session']) if (!str(k)) return `bad ${k}`;
  for (const k of ['pid', 'beat', 'acquiredAt', 'renewedAt', 'expiresAt', 'ttlMs']) if (!num(k)) return `bad ${k}`;
  if (o.kind !== 'lease' && o.kind !== 'session') return 'bad kind';
  if (o.mode !== 'rw' && o.mode !== 'ro') return 'bad mode';
  if (o.policy !== 'concurrent' && o.policy !== 'exclusive') return 'bad policy';
  if (!(o.bootId === null || str('bootId'))) return 'bad bootId';
  if (!(o.generation === null || (Number.isSafeInteger(o.generation) && (o.generation as number) > 0))) return 'bad generation';
  if (typeof o.released !== 'boolean') return 'bad released';
  if ((o.ttlMs as number) <= 0) return 'bad ttlMs';
  return o as unknown as LeaseDoc;
}

/** One directory listing of a user's state, parsed. */
interface Listing {
  /** Our clock when the listing started and when it returned. */
  start: number;
  done: number;
  names: Set<string>;
  /** Claimed generations, ascending. */
  claims: number[];
  /** Newest heartbeat per generation, and every heartbeat name. */
  beats: Map<number, number>;
  beatNames: Map<number, string[]>;
  released: Set<number>;
  /** Newest document per session id, and every name per session id. */
  sessions: Map<string, number>;
  sessionNames: Map<string, string[]>;
}

function parseListing(names: string[], start: number, done: number): Listing {
  const l: Listing = { start, done, names: new Set(names), claims: [], beats: new Map(), beatNames: new Map(), released: new Set(), sessions: new Map(), sessionNames: new Map() };
  for (const n of names) {
    let m: RegExpExecArray | null;
    if ((m = CLAIM_RE.exec(n))) l.claims.push(Number(m[1]));
    else if ((m = BEAT_RE.exec(n))) {
      const g = Number(m[1]);
      l.beats.set(g, Math.max(l.beats.get(g) ?? 0, Number(m[2])));
      l.beatNames.set(g, [...(l.beatNames.get(g) ?? []), n]);
    } else if ((m = RELEASED_RE.exec(n))) l.released.add(Number(m[1]));
    else if ((m = SESSION_RE.exec(n))) {
      const s = m[1]!;
      l.sessions.set(s, Math.max(l.sessions.get(s) ?? 0, Number(m[2])));
      l.sessionNames.set(s, [...(l.sessionNames.get(s) ?? []), n]);
    }
  }
  l.claims.sort((a, b) => a - b);
  return l;
}

function describeHolder(h: Holder): string {
  if (!h.doc) return `an unreadable lease document (${h.name}: ${h.suspicious ?? 'corrupt'})`;
  const what = h.generation !== null ? `exclusive lease generation ${h.generation}` : `${h.mode === 'ro' ? 'read-only' : 'read-write'} session`;
  const seen = h.unchangedMs > 0 ? `, no heartbeat for ${Math.round(h.unchangedMs / 1000)} s as seen from here` : '';
  return `host ${h.host} (pid ${h.pid}, session ${h.session}, ${what}${seen}${h.suspicious ? `; suspicious: ${h.suspicious}` : ''})`;
}

type Verdict = { state: 'free' } | { state: 'expired'; holder: Holder; why: string } | { state: 'live'; holder: Holder };

/**
 * Watches heartbeats: when a holder's newest heartbeat changes, its clock starts again. A new
 * heartbeat is stamped when the listing that showed it returned (it existed by then); the
 * unchanged time runs up to when the latest listing started (nothing newer existed then... or
 * the listing would have shown it).
 */
class Watcher {
  private readonly seen = new Map<string, { beat: number; since: number }>();

  unchanged(key: string, beat: number, l: Listing): number {
    const s = this.seen.get(key);
    if (!s || s.beat !== beat) {
      this.seen.set(key, { beat, since: l.done });
      return 0;
    }
    return Math.max(0, l.start - s.since);
  }

  forgetExcept(keys: Set<string>): void {
    for (const k of [...this.seen.keys()]) if (!keys.has(k)) this.seen.delete(k);
  }
}

// ---- the lease -----------------------------------------------------------------------------

export type LeaseState = 'held' | 'lost' | 'released';

export interface LeaseStatus {
  user: string;
  policy: LeasePolicy;
  mode: SessionMode;
  state: LeaseState;
  /** Fencing token (exclusive), null otherwise. */
  generation: number | null;
  beat: number;
  acquiredAt: number;
  /** Start of the last successful renewal (own clock). */
  renewedAt: number;
  /** Until when this session trusts its lease (own clock). */
  validUntil: number;
  /** Renewals that failed in a row (repository unreachable). */
  failures: number;
  /** The other sessions seen at the last heartbeat. */
  others: Holder[];
  lostReason: string | null;
}

/**
 * One session's lease on one profile. acquire() registers the session (and, policy 'exclusive'
 * and mode 'rw', takes the exclusive lease, waiting up to config.waitMs); start() renews it
 * every heartbeat; release() lets go. renewOnce() is the heartbeat's public single step.
 */
export class Lease {
  private state: LeaseState = 'held';
  private generationNo: number | null = null;
  private beat = 0;
  private acquiredAt = 0;
  private renewedAt = 0;
  private validUntil = 0;
  private failures = 0;
  private timer: Timer | null = null;
  private renewing: Promise<void> | null = null;
  private others: Holder[] = [];
  private lostError: LeaseError | null = null;
  private readonly watcher = new Watcher();
  /** Documents are written once per name: parsed documents by name (corrupt ones as a reason). */
  private readonly docs = new Map<string, LeaseDoc | string>();
  private readonly log: Logger;
  readonly config: LeaseConfig;
  readonly mode: SessionMode;

  private constructor(private readonly o: LeaseOptions) {
    assertUserName(o.user);
    if (!SESSION_ID_RE.test(o.session)) throw new RoamfsError('INVALID_ARGUMENT', `bad session id ${JSON.stringify(o.session)}`);
    this.config = leaseConfig(o.config);
    this.mode = o.mode ?? 'rw';
    this.log = (o.log ?? nullLogger).child({ component: 'lease' });
  }

  /**
   * Take the lease. Exclusive read-write: waits up to config.waitMs for the current holder (and
   * any read-write session of the 'concurrent' policy) to release or expire, then fails with
   * LeaseError 'held' naming the host(s). Concurrent read-write: registers, but fails the same
   * way while a live exclusive lease is held by someone else. Read-only: registers, never waits.
   */
  static async acquire(o: LeaseOptions): Promise<Lease> {
    const l = new Lease(o);
    await l.take();
    return l;
  }

  /** Exclusive read-write sessions hold a generation; everyone else only registers. */
  private get exclusive(): boolean {
    return this.config.policy === 'exclusive' && this.mode === 'rw';
  }

  /** Fencing token: the generation of the exclusive lease held (null for other sessions). */
  get generation(): number | null {
    return this.generationNo;
  }

  private get b(): Backend {
    return this.o.backend;
  }
  private now(): number {
    return this.o.clock.now();
  }

  private doc(overrides: Partial<LeaseDoc> = {}): LeaseDoc {
    const now = this.now();
    return {
      v: 1,
      kind: this.exclusive ? 'lease' : 'session',
      user: this.o.user,
      host: this.o.host,
      pid: this.o.pid,
      session: this.o.session,
      bootId: this.o.bootId ?? null,
      mode: this.mode,
      policy: this.config.policy,
      generation: this.generationNo,
      beat: this.beat,
      acquiredAt: this.acquiredAt || now,
      renewedAt: now,
      expiresAt: now + this.config.ttlMs,
      ttlMs: this.config.ttlMs,
      released: false,
      ...overrides,
    };
  }

  private async list(): Promise<Listing> {
    const start = this.now();
    const names = await this.b.listState(this.o.user);
    return parseListing(names, start, this.now());
  }

  /**
   * A document, parsed (cached: each name is written once). null when it is gone (deleted since
   * the listing). Transient read errors (GlusterFS: ESTALE) are retried a few times.
   */
  private async readDoc(name: string): Promise<LeaseDoc | string | null> {
    const cached = this.docs.get(name);
    if (cached !== undefined) return cached;
    let lastErr: unknown;
    for (let attempt = 0; attempt < 4; attempt++) {
      try {
        const raw = await this.b.readState(this.o.user, name);
        if (!raw) return null;
        const d = decodeLeaseDoc(raw);
        this.docs.set(name, d);
        return d;
      } catch (err) {
        lastErr = err;
      }
      await this.o.clock.sleep(20 * 2 ** attempt);
    }
    throw lastErr;
  }

  private holderOf(name: string, d: LeaseDoc | string | null, beat: number, unchangedMs: number): Holder {
    if (typeof d !== 'object' || d === null) {
      return { host: '?', pid: 0, session: '?', mode: 'rw', policy: 'exclusive', generation: null, doc: null, name, beat, unchangedMs, suspicious: d === null ? 'vanished' : `corrupt: ${d}` };
    }
    const ttl = this.config.ttlMs;
    let suspicious: string | undefined;
    if (d.ttlMs > 2 * ttl || d.ttlMs < ttl / 10) suspicious = `ttl ${d.ttlMs} ms (ours ${ttl} ms)`;
    else if (d.expiresAt - d.renewedAt > 2 * ttl) suspicious = `expiresAt ${d.expiresAt - d.renewedAt} ms after its renewal`;
    return { host: d.host, pid: d.pid, session: d.session, mode: d.mode, policy: d.policy, generation: d.generation, doc: d, name, beat, unchangedMs, ...(suspicious ? { suspicious } : {}) };
  }

  /** The common expiry rule, once the holder's document and unchanged time are known. */
  private verdict(holder: Holder, unchangedMs: number): Verdict {
    const ttl = this.config.ttlMs;
    const d = holder.doc;
    if (!d) return unchangedMs >= 2 * ttl ? { state: 'expired', holder, why: `unreadable and without heartbeat for ${unchangedMs} ms` } : { state: 'live', holder };
    if (this.o.bootId && d.bootId === this.o.bootId && d.host === this.o.host && this.o.isProcessAlive && d.pid !== this.o.pid && !this.o.isProcessAlive(d.pid)) {
      return { state: 'expired', holder, why: `its process ${d.pid} on this machine is gone` };
    }
    const windowMs = Math.min(Math.max(d.ttlMs, ttl), 2 * ttl);
    if (unchangedMs >= windowMs) return { state: 'expired', holder, why: `no heartbeat for ${unchangedMs} ms (window ${windowMs} ms)` };
    return { state: 'live', holder };
  }

  /** Judge generation g of the exclusive lease from a listing. */
  private async judgeGeneration(g: number, l: Listing): Promise<Verdict> {
    if (l.released.has(g)) return { state: 'free' };
    const name = claimName(g);
    // A claim is never replaced, and the newest is never deleted: one that cannot be read is
    // treated like a corrupt one (live until unchanged for 2 x ttl), never as free.
    const d = await this.readDoc(name);
    if (typeof d === 'object' && d?.released) return { state: 'free' };
    const beat = l.beats.get(g) ?? 0;
    const unchangedMs = this.watcher.unchanged(name, beat, l);
    return this.verdict(this.holderOf(name, d, beat, unchangedMs), unchangedMs);
  }

  /** Judge another session from a listing. */
  private async judgeSession(s: string, l: Listing): Promise<Verdict> {
    const beat = l.sessions.get(s)!;
    const key = `session.${s}`;
    const unchangedMs = this.watcher.unchanged(key, beat, l);
    // Any of its documents names it; the newest may be gone already (renewed since).
    let d: LeaseDoc | string | null = null;
    let name = sessionDocName(s, beat);
    for (const n of [...(l.sessionNames.get(s) ?? [])].reverse()) {
      d = await this.readDoc(n);
      if (d !== null) {
        name = n;
        break;
      }
    }
    if (d === null) return { state: 'free' }; // released since the listing
    return this.verdict(this.holderOf(name, d, beat, unchangedMs), unchangedMs);
  }

  /** Other live read-write sessions (policy 'concurrent'). */
  private async liveWriters(l: Listing): Promise<Holder[]> {
    const out: Holder[] = [];
    for (const s of l.sessions.keys()) {
      if (s === this.o.session) continue;
      const v = await this.judgeSession(s, l);
      if (v.state === 'live' && v.holder.mode === 'rw') out.push(v.holder);
    }
    return out;
  }

  private async take(): Promise<void> {
    const deadline = this.now() + this.config.waitMs;
    let blockers: Holder[] = [];
    for (let round = 0; ; round++) {
      if (round > 0) {
        if (this.now() >= deadline) break;
        // Jitter, so that two sessions backing off from each other do not stay in step.
        const jitter = Math.floor(this.config.pollMs * 0.25 * Math.random());
        await this.o.clock.sleep(Math.min(this.config.pollMs + jitter, Math.max(1, deadline - this.now())));
      }
      blockers = this.exclusive ? await this.tryExclusive() : await this.tryRegister();
      if (blockers.length === 0) {
        this.log.info({ generation: this.generationNo, policy: this.config.policy, mode: this.mode }, 'lease acquired');
        // The other desktops, for status right away (the heartbeats refresh it).
        await this.list()
          .then((l) => this.sweep(l))
          .catch((err) => this.log.warn(errorFields(err), 'could not look at the other sessions'));
        return;
      }
    }
    throw new LeaseError('held', `the profile of ${this.o.user} is in use on ${blockers.map(describeHolder).join('; ')}`, blockers, {
      hint: `log out there first, or wait until its lease expires (${Math.round(this.config.ttlMs / 1000)} s after its last heartbeat)`,
    });
  }

  /** One attempt at the exclusive lease: [] when taken, else who blocks it. */
  private async tryExclusive(): Promise<Holder[]> {
    const l = await this.list();
    const top = l.claims.at(-1) ?? 0;
    // Judge everything every round, so that each holder is watched from the first round on.
    const blockers = await this.liveWriters(l);
    if (top > 0) {
      const v = await this.judgeGeneration(top, l);
      if (v.state === 'live') blockers.unshift(v.holder);
      else if (v.state === 'expired' && blockers.length === 0) this.log.warn({ holder: describeHolder(v.holder), why: v.why }, 'taking over an expired lease');
    }
    if (blockers.length > 0) return blockers;
    const gen = top + 1;
    const start = this.now();
    this.generationNo = gen;
    this.beat = 0;
    this.acquiredAt = start;
    if (!(await this.b.createState(this.o.user, claimName(gen), encodeLeaseDoc(this.doc())))) {
      // Another contender created it first; it is live (just created).
      this.generationNo = null;
      const again = await this.list();
      const v = await this.judgeGeneration(gen, again);
      return v.state === 'live' ? [v.holder] : [];
    }
    // Post-checks. A read-write session of the 'concurrent' policy registers before it looks for
    // an exclusive lease, so one that missed our claim is listed now: back off (release ours).
    const after = await this.list();
    const newer = after.claims.at(-1) ?? 0;
    if (newer > gen) {
      this.generationNo = null;
      const v = await this.judgeGeneration(newer, after);
      return v.state === 'live' ? [v.holder] : [];
    }
    const late = await this.liveWriters(after);
    if (late.length > 0) {
      await this.b.createState(this.o.user, releasedName(gen), encodeLeaseDoc(this.doc({ released: true })));
      this.generationNo = null;
      return late;
    }
    this.renewedAt = start;
    this.validUntil = start + this.config.ttlMs - this.config.marginMs;
    await this.prune(gen, after);
    return [];
  }

  /** Register this session; read-write sessions then make sure no exclusive lease is live. */
  private async tryRegister(): Promise<Holder[]> {
    const start = this.now();
    this.acquiredAt ||= start;
    this.beat++;
    await this.b.createState(this.o.user, sessionDocName(this.o.session, this.beat), encodeLeaseDoc(this.doc()));
    if (this.mode === 'rw') {
      const l = await this.list();
      const top = l.claims.at(-1);
      if (top !== undefined) {
        const v = await this.judgeGeneration(top, l);
        if (v.state === 'live') {
          await this.unregister(l);
          return [v.holder];
        }
        if (v.state === 'expired') {
          // Fence the dead holder: a retired generation above its own tells it, should it come
          // back, that it lost the lease. Losing this race is fine (someone else fenced it).
          const retire = { ...this.doc(), kind: 'lease' as const, generation: top + 1, beat: 0, released: true };
          await this.b.createState(this.o.user, claimName(top + 1), encodeLeaseDoc(retire));
          this.log.warn({ holder: describeHolder(v.holder), why: v.why }, 'retired an expired exclusive lease');
        }
      }
    }
    this.renewedAt = start;
    this.validUntil = start + this.config.ttlMs - this.config.marginMs;
    return [];
  }

  /** Remove every document of this session. */
  private async unregister(l?: Listing): Promise<void> {
    const names = (l ?? (await this.list())).sessionNames.get(this.o.session) ?? [];
    for (const n of new Set([...names, sessionDocName(this.o.session, this.beat)])) await this.b.deleteState(this.o.user, n);
  }

  /** Delete generations older than the one before `current` (claims, heartbeats, markers). */
  private async prune(current: number, l: Listing): Promise<void> {
    const old = new Set<number>([...l.claims, ...l.beats.keys(), ...l.released].filter((g) => g < current - 1));
    for (const g of old) {
      for (const n of [...(l.beatNames.get(g) ?? []), releasedName(g), claimName(g)]) {
        await this.b.deleteState(this.o.user, n).catch(() => {});
        this.docs.delete(n);
      }
    }
  }

  /** Schedule renewOnce every heartbeat until release() or loss. */
  start(): void {
    if (this.state !== 'held' || this.timer) return;
    this.schedule(this.config.heartbeatMs);
  }

  private schedule(ms: number): void {
    this.timer = this.o.clock.setTimer(ms, () => {
      this.timer = null;
      if (this.state !== 'held') return;
      void this.renewOnce().then(
        () => this.state === 'held' && this.schedule(this.config.heartbeatMs),
        (err) => {
          if (isLeaseError(err, 'lost')) return; // markLost told onLost
          // Repository unreachable or slow: try again soon; the lease stays ours until validUntil.
          this.log.warn({ ...errorFields(err), failures: this.failures, validForMs: this.validUntil - this.now() }, 'lease renewal failed; will retry');
          if (this.state === 'held') this.schedule(Math.max(1, Math.floor(this.config.heartbeatMs / 2)));
        },
      );
    });
  }

  /**
   * One heartbeat: write this session's next heartbeat. Exclusive: if a higher generation
   * exists the lease is lost (LeaseError 'lost', onLost called); if this session could not
   * renew for longer than it may trust the lease, it takes a new generation (an exclusive create:
   * it fails if a contender took over meanwhile) instead of renewing the old one. Then refreshes
   * the view of the other sessions and removes the documents of dead ones. Repository errors
   * propagate (the lease is kept until validUntil; call again).
   */
  renewOnce(): Promise<void> {
    this.renewing ??= this.renew().finally(() => (this.renewing = null));
    return this.renewing;
  }

  private async renew(): Promise<void> {
    if (this.state === 'lost') throw this.lostError!;
    if (this.state !== 'held') return;
    const start = this.now();
    let l: Listing;
    try {
      l = this.exclusive ? await this.renewExclusive(start) : await this.renewSession(start);
      this.failures = 0;
      this.renewedAt = start;
      this.validUntil = start + this.config.ttlMs - this.config.marginMs;
    } catch (err) {
      if (!isLeaseError(err)) this.failures++;
      throw err;
    }
    await this.sweep(l).catch((err) => this.log.warn(errorFields(err), 'could not refresh the other sessions'));
  }

  private async renewSession(start: number): Promise<Listing> {
    const prev = this.beat;
    this.beat++;
    await this.b.createState(this.o.user, sessionDocName(this.o.session, this.beat), encodeLeaseDoc(this.doc()));
    await this.b.deleteState(this.o.user, sessionDocName(this.o.session, prev)).catch(() => {});
    if (start > this.validUntil) this.log.warn({ lapsedMs: start - this.validUntil }, 'session registration had lapsed; renewed');
    return this.list();
  }

  private async renewExclusive(start: number): Promise<Listing> {
    const gen = this.generationNo!;
    const l = await this.list();
    const top = l.claims.at(-1) ?? 0;
    if (top > gen) return this.lost(top, l);
    if (l.released.has(gen)) return this.lost(gen, l);
    if (start > this.validUntil) {
      // We may have been judged expired meanwhile: take a new generation, exclusively.
      const next = gen + 1;
      const prevBeat = this.beat;
      this.beat = 0;
      this.generationNo = next;
      if (!(await this.b.createState(this.o.user, claimName(next), encodeLeaseDoc(this.doc())))) {
        this.generationNo = gen;
        this.beat = prevBeat;
        return this.lost(next, await this.list());
      }
      this.log.warn({ generation: next, lapsedMs: start - this.validUntil }, 'lease had lapsed; took a new generation');
      const after = await this.list();
      await this.prune(next, after);
      return after;
    }
    const prev = this.beat;
    this.beat++;
    // createState is exclusive; false means a previous, ambiguous attempt made this name: fine.
    await this.b.createState(this.o.user, beatName(gen, this.beat), encodeLeaseDoc(this.doc()));
    if (prev > 0) await this.b.deleteState(this.o.user, beatName(gen, prev)).catch(() => {});
    // A contender that claimed a higher generation meanwhile wins; our heartbeat was harmless.
    const after = await this.list();
    const newer = after.claims.at(-1) ?? 0;
    if (newer > gen) return this.lost(newer, after);
    return after;
  }

  private async lost(by: number, l: Listing): Promise<never> {
    let holders: Holder[] = [];
    if (by !== this.generationNo) {
      try {
        const d = await this.readDoc(claimName(by));
        holders = [this.holderOf(claimName(by), d, l.beats.get(by) ?? 0, 0)];
      } catch {
        /* name what we can */
      }
    }
    const who = holders.length ? ` by ${describeHolder(holders[0]!)}` : by === this.generationNo ? ' (marked released by someone else)' : ` (generation ${by})`;
    const err = new LeaseError('lost', `the exclusive lease on the profile of ${this.o.user} (generation ${this.generationNo}) was taken over${who}`, holders);
    this.markLost(err);
    throw err;
  }

  private markLost(err: LeaseError): void {
    if (this.state === 'lost') return;
    this.state = 'lost';
    this.lostError = err;
    this.timer?.cancel();
    this.timer = null;
    this.log.error({ err: { message: err.message } }, 'lease lost');
    try {
      this.o.onLost?.(err);
    } catch (e) {
      this.log.error(errorFields(e), 'onLost handler failed');
    }
  }

  /**
   * Fencing check, for right before an action that must only happen under the lease (the
   * daemon: before moving the head). Exclusive: throws LeaseError 'lost' when a higher
   * generation exists or the lease cannot be kept (renews first when it has lapsed locally).
   * Other sessions: throws only after release() or loss.
   */
  async assertHeld(): Promise<void> {
    if (this.state === 'lost') throw this.lostError!;
    if (this.state === 'released') throw new LeaseError('lost', `the lease on the profile of ${this.o.user} was released`);
    if (!this.exclusive) return;
    if (this.now() > this.validUntil) {
      await this.renewOnce();
      return;
    }
    const l = await this.list();
    const top = l.claims.at(-1) ?? 0;
    if (top > this.generationNo!) await this.lost(top, l);
  }

  /**
   * Stop renewing without letting go, as a crash does: the documents stay and expire after the
   * ttl (a restart on this machine takes over at once, see the same-host shortcut).
   */
  stop(): void {
    this.timer?.cancel();
    this.timer = null;
    if (this.state === 'held') this.state = 'released';
  }

  /** True while this session may trust its lease without asking the repository. */
  heldLocally(): boolean {
    return this.state === 'held' && this.now() <= this.validUntil;
  }

  /**
   * Let go: exclusive marks its generation released (if still the current one); other sessions
   * delete their documents. Idempotent. On a repository error the lease simply expires later.
   */
  async release(): Promise<void> {
    this.timer?.cancel();
    this.timer = null;
    await this.renewing?.catch(() => {});
    if (this.state !== 'held') {
      if (this.state !== 'lost') this.state = 'released';
      return;
    }
    this.state = 'released';
    if (this.exclusive) {
      const l = await this.list();
      const gen = this.generationNo!;
      if ((l.claims.at(-1) ?? 0) === gen) {
        await this.b.createState(this.o.user, releasedName(gen), encodeLeaseDoc(this.doc({ released: true })));
        for (const n of l.beatNames.get(gen) ?? []) await this.b.deleteState(this.o.user, n).catch(() => {});
      }
    } else {
      await this.unregister();
    }
    this.log.info({ generation: this.generationNo }, 'lease released');
  }

  /** Look at every other session; delete the documents of dead sessions. */
  private async sweep(l: Listing): Promise<void> {
    const others: Holder[] = [];
    const keys = new Set<string>();
    const top = l.claims.at(-1);
    if (top !== undefined && top !== this.generationNo) {
      keys.add(claimName(top));
      const v = await this.judgeGeneration(top, l);
      if (v.state === 'live') others.push(v.holder);
    }
    for (const s of l.sessions.keys()) {
      if (s === this.o.session) continue;
      keys.add(`session.${s}`);
      const v = await this.judgeSession(s, l);
      if (v.state === 'live') others.push(v.holder);
      else if (v.state === 'expired') {
        for (const n of l.sessionNames.get(s) ?? []) {
          await this.b.deleteState(this.o.user, n);
          this.docs.delete(n);
        }
        this.log.info({ holder: describeHolder(v.holder), why: v.why }, 'removed the registration of a dead session');
      }
    }
    this.watcher.forgetExcept(keys);
    // Session documents of ours that an interrupted renewal left behind.
    for (const n of l.sessionNames.get(this.o.session) ?? []) {
      if (n !== sessionDocName(this.o.session, this.beat)) await this.b.deleteState(this.o.user, n).catch(() => {});
    }
    for (const n of [...this.docs.keys()]) if (!l.names.has(n)) this.docs.delete(n);
    this.others = others;
  }

  status(): LeaseStatus {
    return {
      user: this.o.user,
      policy: this.config.policy,
      mode: this.mode,
      state: this.state,
      generation: this.generationNo,
      beat: this.beat,
      acquiredAt: this.acquiredAt,
      renewedAt: this.renewedAt,
      validUntil: this.validUntil,
      failures: this.failures,
      others: this.others,
      lostReason: this.lostError?.message ?? null,
    };
  }
}

// ---- inspection (no lease needed) ---------------------------------------------------------

export interface LeaseInspection {
  /** The current exclusive-lease generation, or null when there never was one. */
  exclusive: { generation: number; doc: LeaseDoc | null; beat: number; released: boolean; problem?: string } | null;
  /** Every registered session (its newest document). */
  sessions: Array<{ session: string; name: string; beat: number; doc: LeaseDoc | null; problem?: string }>;
}

/**
 * What the repository says about a user's sessions, read once (for `roamfs status`, admins).
 * A single look cannot tell live from dead (that takes watching for a ttl); the documents' own
 * times are the writers' clocks.
 */
export async function inspectLeases(backend: Backend, user: string): Promise<LeaseInspection> {
  assertUserName(user);
  const l = parseListing(await backend.listState(user), 0, 0);
  const read = async (name: string): Promise<{ doc: LeaseDoc | null; problem?: string }> => {
    let raw: Buffer | null;
    try {
      raw = await backend.readState(user, name);
    } catch (err) {
      if (!(isRoamfsError(err) || errnoCode(err))) throw err;
      return { doc: null, problem: `unreadable: ${(err as Error).message}` };
    }
    if (!raw) return { doc: null, problem: 'vanished while listed' };
    const d = decodeLeaseDoc(raw);
    return typeof d === 'string' ? { doc: null, problem: `corrupt: ${d}` } : { doc: d };
  };
  const top = l.claims.at(-1);
  let exclusive: LeaseInspection['exclusive'] = null;
  if (top !== undefined) {
    const r = await read(claimName(top));
    exclusive = { generation: top, beat: l.beats.get(top) ?? 0, released: l.released.has(top) || !!r.doc?.released, ...r };
  }
  const sessions: LeaseInspection['sessions'] = [];
  for (const [s, beat] of [...l.sessions].sort()) sessions.push({ session: s, name: sessionDocName(s, beat), beat, ...(await read(sessionDocName(s, beat))) });
  return { exclusive, sessions };
}

/** A random session id (16 hex digits). */
export function newSessionId(): string {
  return randomBytes(8).toString('hex');
}
