/**
 * The one configuration schema of roamfs: every setting with its name (units last), default,
 * unit, help text, command-line flag and environment variable. Parsing happens here, at the
 * edge; the core (src/) gets plain typed values (ProfileConfig).
 *
 * Sources, later ones win per key (a list given later replaces the earlier list):
 *   1. the defaults below;
 *   2. the configuration file, JSON: /etc/roamfs/roamfs.json, or the file named by
 *      ROAMFS_CONFIG (which must then exist; /dev/null or an empty file: no settings). Keys are
 *      the names below; an unknown key or a value of the wrong type is an error naming the key.
 *      ROAMFS_CONFIG may also name the OS integration's KEY=VALUE file (roamfs.env, which the
 *      scripts in mount/os/ find through the same variable): its ROAMFS_* lines are read with
 *      the environment's names (see parseEnvFile);
 *   3. the environment: ROAMFS_<FLAG NAME>, e.g. ROAMFS_SNAPSHOT_INTERVAL=30s (the same names
 *      the OS integration uses in /etc/roamfs/roamfs.env). Other ROAMFS_* variables are not
 *      settings of this schema and are ignored; an empty value counts as unset;
 *   4. command-line flags (`roamfs mount --snapshot-interval 30s`) and arguments (REPO).
 *
 * Values: durations are milliseconds in the file ("...Ms" keys) or strings with a unit
 * anywhere ("500ms", "30s", "5m", "1h"; "off" or null where a feature can be switched off);
 * sizes are bytes or strings with a unit ("512MiB", "2GiB", "10GB"); booleans are true/false
 * or yes/no/on/off/1/0; lists are JSON arrays in the file, one item per line (or a JSON array)
 * in the environment, and repeated flags on the command line.
 */
import * as fsp from 'node:fs/promises';
import * as path from 'node:path';
import * as z from 'zod';
import { RoamfsError, errnoCode } from '../src/core/errors.js';
import { DEFAULT_EXCLUDES, checkPattern, effectiveExcludes } from '../src/core/exclusions.js';
import { formatDuration, parseDuration, parseSize } from '../src/core/units.js';
import { DEFAULT_COMMIT_POLICY } from '../src/commit/policy.js';
import { DEFAULT_PROFILE_CONFIG, type ProfileConfig } from '../src/profile.js';
import { formatBytes } from './progress.js';

export const DEFAULT_CONFIG_FILE = '/etc/roamfs/roamfs.json';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const SESSION_POLICIES = ['concurrent', 'exclusive'] as const;
export type SessionPolicy = (typeof SESSION_POLICIES)[number];

// ---- value types: each accepts the file's JSON value and the strings of env and flags ----------

/** A throwing parser inside a zod transform: its message becomes the issue's message. */
function via<T>(parse: (s: string) => T) {
  return z.string().transform((s, ctx): T => {
    try {
      return parse(s);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });
}

const nonNegInt = z.number().int().nonnegative();
const duration = z.union([nonNegInt, via((s) => parseDuration(s, 'duration')!)]);
const durationOrOff = z.union([nonNegInt, z.null(), via((s) => parseDuration(s, 'duration', true))]);
const sizeOrNone = z.union([nonNegInt, z.null(), via((s) => (/^(none|off)$/i.test(s.trim()) ? null : parseSize(s, 'size')))]);
const intString = (min: number, max: number) =>
  via((s) => {
    if (!/^\d+$/.test(s.trim())) throw new Error(`not a whole number: ${JSON.stringify(s)}`);
    return Number(s.trim());
  }).pipe(z.number().int().min(min).max(max));
const idOrOwner = z.union([z.number().int().min(0).max(0xfffffffe), z.null(), intString(0, 0xfffffffe)]);
const boolish = z.union([
  z.boolean(),
  via((s) => {
    const v = s.trim().toLowerCase();
    if (['yes', 'true', 'on', '1'].includes(v)) return true;
    if (['no', 'false', 'off', '0'].includes(v)) return false;
    throw new Error(`not yes/no: ${JSON.stringify(s)}`);
  }),
]);
const pathString = z.string().min(1);
const absPath = z.string().refine((s) => path.isAbsolute(s), 'must be an absolute path');
const patterns = z.union([
  z.array(z.string()),
  via((s) => {
    const t = s.trim();
    if (t.startsWith('[')) {
      const v: unknown = JSON.parse(t);
      if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new Error('not a JSON array of strings');
      return v as string[];
    }
    return t.split('\n').map((x) => x.trim()).filter((x) => x !== '');
  }),
]).transform((list, ctx) => {
  try {
    return list.map(checkPattern);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});
const port = z.union([z.number().int().min(1).max(65535), z.null(), via((s) => (/^(off|none)$/i.test(s.trim()) ? null : Number(s))).pipe(z.number().int().min(1).max(65535).nullable())]);
const logLevel = z.union([z.enum(LOG_LEVELS), via((s) => s.trim().toLowerCase()).pipe(z.enum(LOG_LEVELS))]);

// ---- the schema ---------------------------------------------------------------------------------

type Unit = 'ms' | 'bytes' | null;

interface Spec<T, K extends string = string> {
  /** Name in the file and in `roamfs config --print`; camelCase, unit last. */
  key: K;
  type: z.ZodType<T>;
  default: T;
  unit: Unit;
  help: string;
  /** What a value looks like, for error messages and flag syntax. */
  expect: string;
  /** Flag name without "--" (default: the key in kebab-case without its unit); null: no flag. */
  flag?: string | null;
  /** Flag value placeholder ("duration"); omitted for boolean flags. */
  arg?: string;
  /** Environment variable (default: ROAMFS_ + the flag name in SCREAMING_SNAKE_CASE). */
  env?: string;
  /** A list: the flag may be given more than once. */
  list?: boolean;
  /** What null means, for `config --print` and help (default "none", "off" for durations). */
  nullText?: string;
}

function spec<T, K extends string>(s: Spec<T, K>): Spec<T, K> {
  return s;
}

/** Every setting. The order is the order of `roamfs config --print`. */
export const SCHEMA = [
  spec({ key: 'repository', type: z.union([z.null(), pathString]), default: null as string | null, unit: null, expect: 'a directory path', flag: null, env: 'ROAMFS_REPO', help: 'the repository (a directory made with `roamfs init`); `roamfs mount REPO USER MOUNTPOINT` overrides it' }),
  spec({ key: 'cacheRoot', type: absPath, default: '/var/cache/roamfs', unit: null, expect: 'an absolute directory path', arg: 'dir', help: "each user's local cache, change log and written files live in CACHE_ROOT/USER" }),
  spec({ key: 'cacheDir', type: z.union([z.null(), pathString]), default: null as string | null, unit: null, expect: 'a directory path', flag: 'cache', arg: 'dir', env: 'ROAMFS_CACHE', nullText: 'CACHE_ROOT/USER', help: 'local cache, change log and written files of this mount' }),
  spec({ key: 'uid', type: idOrOwner, default: null as number | null, unit: null, expect: 'a numeric uid', arg: 'n', nullText: 'owner of MOUNTPOINT', help: "owner shown for the profile owner's files" }),
  spec({ key: 'gid', type: idOrOwner, default: null as number | null, unit: null, expect: 'a numeric gid', arg: 'n', nullText: 'group of MOUNTPOINT', help: "group shown for the profile owner's files" }),
  spec({ key: 'snapshotIntervalMs', type: durationOrOff, default: DEFAULT_PROFILE_CONFIG.snapshotIntervalMs as number | null, unit: 'ms', expect: 'a duration (500ms, 30s, 5m) or off', arg: 'duration', help: 'snapshot this often when something changed (off: only on demand and at logout)' }),
  spec({ key: 'fsyncSnapshotDelayMs', type: durationOrOff, default: DEFAULT_PROFILE_CONFIG.fsyncSnapshotDelayMs as number | null, unit: 'ms', expect: 'a duration (500ms, 30s, 5m) or off', arg: 'duration', help: 'an fsync makes what was written durable this soon, by a snapshot (at most one per this interval; off: fsync waits for the snapshot interval)' }),
  spec({ key: 'idleMs', type: duration, default: DEFAULT_COMMIT_POLICY.idleMs, unit: 'ms', expect: 'a duration (500ms, 30s, 5m)', arg: 'duration', help: 'commit after this long without file system activity' }),
  spec({ key: 'maxLagMs', type: duration, default: DEFAULT_COMMIT_POLICY.maxLagMs, unit: 'ms', expect: 'a duration (500ms, 30s, 5m)', arg: 'duration', help: 'commit before the oldest unshipped snapshot is this old, busy or not' }),
  spec({ key: 'prefetchDelayMs', type: durationOrOff, default: DEFAULT_PROFILE_CONFIG.prefetchDelayMs as number | null, unit: 'ms', expect: 'a duration (500ms, 30s, 5m) or off', arg: 'duration', help: 'after this long, fetch the rest of the profile in the background (off: only on demand)' }),
  spec({ key: 'flushTimeoutMs', type: duration, default: DEFAULT_PROFILE_CONFIG.flushTimeoutMs, unit: 'ms', expect: 'a duration (500ms, 30s, 5m)', arg: 'duration', help: 'how long a logout keeps retrying an unreachable repository (what is left stays in the local log)' }),
  spec({ key: 'excludeDefaults', type: boolish, default: true, unit: null, expect: 'yes or no', arg: 'yes|no', help: 'exclude the built-in cache patterns (browser and app caches, .cache, thumbnails, trash, ...; see `roamfs config --print`)' }),
  spec({ key: 'excludeAdd', type: patterns, default: [] as string[], unit: null, expect: 'a list of glob patterns', arg: 'glob', list: true, help: 'more local-only paths (globs relative to the home; DIR/** keeps DIR, empties it at each login)' }),
  spec({ key: 'excludeRemove', type: patterns, default: [] as string[], unit: null, expect: 'a list of glob patterns', arg: 'glob', list: true, help: 'built-in patterns to drop (exactly as listed by `roamfs config --print`)' }),
  spec({ key: 'sessions', type: z.union([z.enum(SESSION_POLICIES), via((s) => s.trim().toLowerCase()).pipe(z.enum(SESSION_POLICIES))]), default: DEFAULT_PROFILE_CONFIG.sessions.policy as SessionPolicy, unit: null, expect: SESSION_POLICIES.join(' or '), arg: 'policy', help: 'the same user on several desktops: concurrent (all work, commits merge, conflict copies where both edited) or exclusive (a second read-write login waits for the first, then fails naming its host)' }),
  spec({ key: 'readOnly', type: boolish, default: false, unit: null, expect: 'yes or no', help: 'mount read-only: the head and what other desktops commit, no snapshots or commits; always allowed, never blocks an exclusive login (its cache defaults to CACHE_ROOT/USER.ro)' }),
  spec({ key: 'leaseTtlMs', type: duration.pipe(z.number().int().min(1000)), default: DEFAULT_PROFILE_CONFIG.sessions.ttlMs, unit: 'ms', expect: 'a duration of at least 1s', arg: 'duration', help: 'a desktop whose lease heartbeats (every third of this) stop for this long is taken to be gone' }),
  spec({ key: 'leaseWaitMs', type: durationOrOff, default: DEFAULT_PROFILE_CONFIG.sessions.waitMs as number | null, unit: 'ms', expect: 'a duration (500ms, 30s, 5m)', arg: 'duration', nullText: '1.5 x lease-ttl', help: 'exclusive: how long a second login waits for the first to log out or expire before it fails' }),
  spec({ key: 'quotaSoftBytes', type: sizeOrNone, default: null as number | null, unit: 'bytes', expect: 'a size (512MiB, 2GiB) or none', arg: 'size', help: 'above this size the profile is reported over quota (log and status)' }),
  spec({ key: 'quotaHardBytes', type: sizeOrNone, default: null as number | null, unit: 'bytes', expect: 'a size (512MiB, 2GiB) or none', arg: 'size', help: 'writes that would grow the profile beyond this fail with EDQUOT (reading, deleting, truncating still work)' }),
  spec({ key: 'metricsPort', type: port, default: null as number | null, unit: null, expect: 'a TCP port (1-65535) or off', arg: 'port', nullText: 'off', help: 'serve Prometheus metrics over HTTP on this port (off: only through `roamfs metrics`)' }),
  spec({ key: 'metricsAddress', type: z.string().min(1), default: '127.0.0.1', unit: null, expect: 'an IP address', arg: 'address', help: 'address the metrics port listens on' }),
  spec({ key: 'logLevel', type: logLevel, default: 'info' as LogLevel, unit: null, expect: LOG_LEVELS.join(', '), arg: 'level', help: "the daemon's log level (CACHE/roamfs.log)" }),
  spec({ key: 'debug', type: boolish, default: false, unit: null, expect: 'yes or no', help: 'log level trace: one line per file system operation (op, path, duration, result)' }),
] as const;

type SchemaSpecs = (typeof SCHEMA)[number];
export type ConfigKey = SchemaSpecs['key'];
/** The effective configuration: one typed value per key. */
export type Config = { [S in SchemaSpecs as S['key']]: S['default'] };

export type Source = 'default' | 'file' | 'env' | 'flag' | 'argument';
export interface Sourced {
  source: Source;
  /** The file path, the variable, or the flag the value came from. */
  from?: string;
}

export interface LoadedConfig {
  config: Config;
  sources: Record<ConfigKey, Sourced>;
  /** The file that was read, or null (none present). */
  file: string | null;
}

function kebab(key: string): string {
  return key.replace(/(Ms|Bytes)$/, '').replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function flagName(s: Spec<unknown>): string | null {
  return s.flag === null ? null : (s.flag ?? kebab(s.key));
}

export function envName(s: Spec<unknown>): string {
  return s.env ?? `ROAMFS_${(flagName(s) ?? kebab(s.key)).replace(/-/g, '_').toUpperCase()}`;
}

const specs = SCHEMA as readonly Spec<unknown>[];
const byKey = new Map(specs.map((s) => [s.key, s]));

/** Human form of a value (`config --print`, help defaults). */
export function formatValue(s: Spec<unknown>, v: unknown): string {
  if (v === null) return s.nullText ?? (s.unit === 'ms' ? 'off' : 'none');
  if (Array.isArray(v)) return v.length === 0 ? '[]' : v.map((x) => JSON.stringify(x)).join(', ');
  if (s.unit === 'ms' && typeof v === 'number') return formatDuration(v);
  if (s.unit === 'bytes' && typeof v === 'number') return `${formatBytes(v)} (${v})`;
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  return String(v);
}

function describe(v: unknown): string {
  const s = JSON.stringify(v);
  return s === undefined ? String(v) : s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/** The closest known key (typos): Levenshtein distance <= 3. */
function suggest(key: string): string | undefined {
  const dist = (a: string, b: string): number => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0]![j] = j;
    for (let i = 1; i <= a.length; i++)
      for (let j = 1; j <= b.length; j++)
        d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
    return d[a.length]![b.length]!;
  };
  let best: { k: string; d: number } | undefined;
  for (const s of specs) {
    const d = dist(key, s.key);
    if (!best || d < best.d) best = { k: s.key, d };
  }
  return best && best.d <= 3 ? best.k : undefined;
}

function configError(where: string, message: string): RoamfsError {
  return new RoamfsError('INVALID_ARGUMENT', `config ${where}: ${message}`);
}

/** Messages of custom issues inside a (union) issue. */
function issueMessages(issue: z.core.$ZodIssue): string[] {
  if (issue.code === 'custom') return [issue.message];
  if (issue.code === 'invalid_union') return issue.errors.flat().flatMap((i) => issueMessages(i));
  return [];
}

/** In the file a list must be a JSON array (a string is the environment's form). */
function fileType(s: Spec<unknown>): z.ZodType {
  return s.list ? z.array(z.string()).pipe(s.type as z.ZodType<unknown, string[]>) : s.type;
}

/** One key's value from a source; a bad value is one line naming the key and the source. */
function parseValueSync(s: Spec<unknown>, raw: unknown, where: string, type: z.ZodType = s.type): unknown {
  const r = type.safeParse(raw);
  if (r.success) return r.data;
  const issue = r.error.issues[0]!;
  const msgs = issueMessages(issue);
  // A unit parser's message names the value already; otherwise say what was expected.
  const detail = msgs.length > 0 ? msgs[0]!.replace(/^(duration|size): /, '') : `expected ${s.expect} (got ${describe(raw)})`;
  // A flag names itself (like every other usage error); a file or variable also names the key.
  if (where.startsWith('--')) throw new RoamfsError('INVALID_ARGUMENT', `${where}: ${detail}`);
  throw configError(where, `${s.key}: ${detail}`);
}

/**
 * The OS integration's KEY=VALUE file (/etc/roamfs/roamfs.env, read by mount/os/roamfs-lib.sh,
 * which also uses ROAMFS_CONFIG to name it): its ROAMFS_* lines use the environment's names and
 * are read like the environment. The file is shared with the OS scripts, so keys that are not
 * settings of this schema (ROAMFS_MIN_UID, ...) are theirs and ignored here; a bad value of a
 * setting is an error naming the file, the line and the key.
 */
const ENV_LINE = /^\s*([A-Z0-9_]+)\s*=(.*)$/;

function looksLikeEnvFile(file: string, text: string): boolean {
  if (file.endsWith('.json') || /^\s*[[{]/.test(text)) return false;
  return text.split('\n').every((l) => l.trim() === '' || /^\s*[#;]/.test(l) || ENV_LINE.test(l));
}

function parseEnvFile(file: string, text: string): Record<string, unknown> {
  const byEnv = new Map(specs.map((s) => [envName(s), s]));
  const out: Record<string, unknown> = {};
  text.split('\n').forEach((line, i) => {
    const m = ENV_LINE.exec(line);
    if (!m || /^\s*[#;]/.test(line)) return;
    const s = byEnv.get(m[1]!);
    let v = m[2]!.trim();
    if (/^".*"$|^'.*'$/.test(v)) v = v.slice(1, -1);
    if (!s || v === '') return;
    out[s.key] = parseValueSync(s, v, `${file}:${i + 1} ${m[1]}`);
  });
  return out;
}

/** The file's settings, validated as a whole (strict: unknown keys are errors). */
function parseFile(file: string, text: string): Record<string, unknown> {
  if (text.trim() === '') return {};
  if (looksLikeEnvFile(file, text)) return parseEnvFile(file, text);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw configError(file, `not valid JSON: ${(err as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw configError(file, 'must be a JSON object of settings ({"key": value, ...})');
  const shape: Record<string, z.ZodType> = {};
  for (const s of specs) shape[s.key] = fileType(s).optional();
  const r = z.strictObject(shape).safeParse(json);
  if (!r.success) {
    // One line, about the first problem; unknown keys first (typos are the common case).
    const issues = r.error.issues;
    const unknown = issues.find((i) => i.code === 'unrecognized_keys');
    if (unknown && unknown.code === 'unrecognized_keys') {
      const k = unknown.keys[0]!;
      const hint = suggest(k);
      throw configError(file, `unknown key ${JSON.stringify(k)}${hint ? ` (did you mean ${hint}?)` : ''}; see roamfs config --print for the keys`);
    }
    const first = issues[0]!;
    const key = String(first.path[0] ?? '');
    const s = byKey.get(key);
    if (!s) throw configError(file, first.message);
    parseValueSync(s, (json as Record<string, unknown>)[key], file, fileType(s)); // throws the one-line message
    throw configError(file, `${key}: ${first.message}`);
  }
  return Object.fromEntries(Object.entries(r.data).filter(([, v]) => v !== undefined));
}

/** Where the configuration file is, and whether it must exist. */
export function configFilePath(env: NodeJS.ProcessEnv = process.env): { file: string; explicit: boolean } {
  const v = env.ROAMFS_CONFIG;
  return v ? { file: path.resolve(v), explicit: true } : { file: DEFAULT_CONFIG_FILE, explicit: false };
}

export interface LoadOptions {
  env?: NodeJS.ProcessEnv;
  /** Flag values as commander gives them (strings, string[] for lists, true for booleans), by key. */
  flags?: Partial<Record<ConfigKey, unknown>>;
  /** Positional arguments, by key (REPO). */
  args?: Partial<Record<ConfigKey, unknown>>;
}

/** Defaults < file < environment < flags / arguments; validated; one-line errors. */
export async function loadConfig(o: LoadOptions = {}): Promise<LoadedConfig> {
  const env = o.env ?? process.env;
  const values: Record<string, unknown> = {};
  const sources: Record<string, Sourced> = {};
  for (const s of specs) {
    values[s.key] = s.default;
    sources[s.key] = { source: 'default' };
  }
  const { file, explicit } = configFilePath(env);
  let text: string | null = null;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (err) {
    const code = errnoCode(err);
    if (code !== 'ENOENT' || explicit) {
      throw configError(file, code === 'ENOENT' ? 'does not exist (named by ROAMFS_CONFIG)' : `cannot read it: ${(err as Error).message}`);
    }
  }
  if (text !== null) {
    for (const [k, v] of Object.entries(parseFile(file, text))) {
      values[k] = v;
      sources[k] = { source: 'file', from: file };
    }
  }
  for (const s of specs) {
    const name = envName(s);
    const raw = env[name];
    if (raw === undefined || raw.trim() === '') continue;
    values[s.key] = parseValueSync(s, raw, `environment ${name}`);
    sources[s.key] = { source: 'env', from: name };
  }
  for (const [kind, given] of [['flag', o.flags], ['argument', o.args]] as const) {
    for (const [k, raw] of Object.entries(given ?? {})) {
      if (raw === undefined) continue;
      const s = byKey.get(k)!;
      const where = kind === 'flag' ? `--${flagName(s)}` : 'argument';
      // commander gives `true` for a boolean flag; values are strings or lists of strings.
      values[k] = parseValueSync(s, raw === true ? 'yes' : raw, where);
      sources[k] = { source: kind, from: where };
    }
  }
  const config = values as Config;
  // Rules across keys.
  if (config.quotaSoftBytes !== null && config.quotaHardBytes !== null && config.quotaSoftBytes > config.quotaHardBytes) {
    throw configError(where(sources.quotaSoftBytes!), `quotaSoftBytes (${config.quotaSoftBytes}) is above quotaHardBytes (${config.quotaHardBytes})`);
  }
  try {
    effectiveExcludes({ defaults: config.excludeDefaults, add: config.excludeAdd, remove: config.excludeRemove });
  } catch (err) {
    throw configError(where(sources.excludeRemove!), (err as Error).message);
  }
  return { config, sources: sources as Record<ConfigKey, Sourced>, file: text === null ? null : file };
}

function where(s: Sourced): string {
  return s.from ?? s.source;
}

/** The configuration of the defaults alone (the daemon started directly, tests). */
export function defaultConfig(): Config {
  return Object.fromEntries(specs.map((s) => [s.key, s.default])) as Config;
}

/** The exclusion patterns in effect. */
export function excludesOf(c: Config): string[] {
  return effectiveExcludes({ defaults: c.excludeDefaults, add: c.excludeAdd, remove: c.excludeRemove });
}

/** What the core gets. */
export function profileConfigOf(c: Config): Partial<ProfileConfig> {
  return {
    snapshotIntervalMs: c.snapshotIntervalMs,
    fsyncSnapshotDelayMs: c.fsyncSnapshotDelayMs,
    prefetchDelayMs: c.prefetchDelayMs,
    flushTimeoutMs: c.flushTimeoutMs,
    commit: { ...DEFAULT_COMMIT_POLICY, idleMs: c.idleMs, maxLagMs: c.maxLagMs },
    exclude: excludesOf(c),
    quota: { softBytes: c.quotaSoftBytes, hardBytes: c.quotaHardBytes },
    sessions: { policy: c.sessions, ttlMs: c.leaseTtlMs, waitMs: c.leaseWaitMs },
    readOnly: c.readOnly,
  };
}

/** The effective log level: --debug means trace. */
export function logLevelOf(c: Config): LogLevel {
  return c.debug ? 'trace' : c.logLevel;
}

// ---- commander wiring -----------------------------------------------------------------------------

export interface FlagOption {
  key: ConfigKey;
  /** "--snapshot-interval <duration>" */
  syntax: string;
  /** Help with the default. */
  help: string;
  /** Commander attribute name of the option. */
  attr: string;
  list: boolean;
}

/** The flags of the given keys, for commander (no commander defaults: "given" must be visible). */
export function flagOptions(keys: readonly ConfigKey[]): FlagOption[] {
  return keys.map((k) => {
    const s = byKey.get(k)!;
    const name = flagName(s)!;
    const syntax = s.arg ? `--${name} <${s.arg}>` : `--${name}`;
    const dflt = ` (default ${formatValue(s, s.default)})`;
    const env = ` [env ${envName(s)}]`;
    const attr = name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
    return { key: k, syntax, help: `${s.help}${s.list ? '; repeatable' : ''}${dflt}${env}`, attr, list: s.list ?? false };
  });
}

/** The flags commander parsed, by key (only the ones given). */
export function givenFlags(opts: Record<string, unknown>, flags: readonly FlagOption[]): Partial<Record<ConfigKey, unknown>> {
  const out: Partial<Record<ConfigKey, unknown>> = {};
  for (const f of flags) if (opts[f.attr] !== undefined) out[f.key] = opts[f.attr];
  return out;
}

/** Lines of `roamfs config --print`. */
export function printConfig(l: LoadedConfig, { json }: { json: boolean }): string {
  const excludes = excludesOf(l.config);
  if (json) {
    const settings: Record<string, unknown> = {};
    for (const s of specs) {
      const src = l.sources[s.key as ConfigKey];
      settings[s.key] = { value: l.config[s.key as ConfigKey], source: src.source, ...(src.from ? { from: src.from } : {}), default: s.default, unit: s.unit, flag: flagName(s) ? `--${flagName(s)}` : null, env: envName(s), help: s.help };
    }
    return JSON.stringify({ file: l.file ?? configFilePath().file, fileRead: l.file !== null, settings, exclude: excludes, defaultExcludes: DEFAULT_EXCLUDES }, null, 2);
  }
  const rows = specs.map((s) => {
    const src = l.sources[s.key as ConfigKey];
    return [s.key, formatValue(s, l.config[s.key as ConfigKey]), src.from ? `${src.source} (${src.from})` : src.source, s.help];
  });
  const w = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i]!.length), 6));
  const line = (r: string[]) => `${r[0]!.padEnd(w[0]!)}  ${r[1]!.padEnd(w[1]!)}  ${r[2]!.padEnd(w[2]!)}  ${r[3]}`.trimEnd();
  const head = l.file ? `configuration file: ${l.file}` : `configuration file: ${configFilePath().file} (not present: defaults)`;
  return [head, '', line(['KEY', 'VALUE', 'SOURCE', 'HELP']), ...rows.map(line), '', `exclusions in effect (${excludes.length}):`, ...excludes.map((p) => `  ${p}`)].join('\n');
}
