/**
 * The configuration schema (mount/config.ts): defaults, file < environment < flags, sources,
 * and one-line errors naming the key for typos and wrong types.
 */
import test from 'ava';
import * as fsp from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { SCHEMA, defaultConfig, excludesOf, flagOptions, givenFlags, loadConfig, printConfig, profileConfigOf, type ConfigKey } from '../../mount/config.js';
import { DEFAULT_EXCLUDES } from '../../src/core/exclusions.js';
import { RoamfsError } from '../../src/core/errors.js';

async function withFile(t: import('ava').ExecutionContext, content: string, name = 'roamfs.json'): Promise<string> {
  const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'roamfs-config-'));
  t.teardown(() => fsp.rm(dir, { recursive: true, force: true }));
  const f = path.join(dir, name);
  await fsp.writeFile(f, content);
  return f;
}

async function oneLineError(t: import('ava').ExecutionContext, p: Promise<unknown>): Promise<string> {
  const err = await t.throwsAsync(p);
  t.true(err instanceof RoamfsError, String(err));
  t.false(err!.message.includes('\n'), `one line: ${err!.message}`);
  return err!.message;
}

test('every setting has a key with its unit last, a default, help, a flag or env name, and the defaults load without a file', async (t) => {
  for (const s of SCHEMA) {
    t.regex(s.key, /^[a-z][a-zA-Z]*$/);
    if (s.unit === 'ms') t.regex(s.key, /Ms$/);
    if (s.unit === 'bytes') t.regex(s.key, /Bytes$/);
    t.true(s.help.length > 10, s.key);
  }
  const l = await loadConfig({ env: { ROAMFS_CONFIG: '/dev/null' } });
  t.deepEqual(l.config, defaultConfig());
  t.true(Object.values(l.sources).every((s) => s.source === 'default'));
  t.is(l.config.snapshotIntervalMs, 60_000);
  t.is(l.config.idleMs, 10_000);
  t.is(l.config.maxLagMs, 300_000);
  t.is(l.config.prefetchDelayMs, 30_000);
  t.is(l.config.metricsPort, null);
  t.is(l.config.metricsAddress, '127.0.0.1');
  t.deepEqual(excludesOf(l.config), [...DEFAULT_EXCLUDES]);
});

test('the existing mount flags keep their names', (t) => {
  const flags = flagOptions(['cacheDir', 'uid', 'gid', 'snapshotIntervalMs', 'idleMs', 'maxLagMs', 'prefetchDelayMs', 'debug']).map((f) => f.syntax);
  t.deepEqual(flags, ['--cache <dir>', '--uid <n>', '--gid <n>', '--snapshot-interval <duration>', '--idle <duration>', '--max-lag <duration>', '--prefetch-delay <duration>', '--debug']);
});

test('file < environment < flags, each value with its source', async (t) => {
  const file = await withFile(t, JSON.stringify({ snapshotIntervalMs: '30s', idleMs: 2000, maxLagMs: '2m', quotaHardBytes: '2GiB', excludeAdd: ['Downloads/**'], repository: '/srv/repo' }));
  const l = await loadConfig({
    env: { ROAMFS_CONFIG: file, ROAMFS_IDLE: '5s', ROAMFS_MAX_LAG: '', ROAMFS_MIN_UID: '1000', ROAMFS_DEBUG: 'no', ROAMFS_QUOTA_SOFT: '1GiB' },
    flags: { snapshotIntervalMs: 'off' },
  });
  t.is(l.file, file);
  t.is(l.config.snapshotIntervalMs, null);
  t.deepEqual(l.sources.snapshotIntervalMs, { source: 'flag', from: '--snapshot-interval' });
  t.is(l.config.idleMs, 5000);
  t.deepEqual(l.sources.idleMs, { source: 'env', from: 'ROAMFS_IDLE' });
  t.is(l.config.maxLagMs, 120_000, 'an empty variable is unset');
  t.deepEqual(l.sources.maxLagMs, { source: 'file', from: file });
  t.is(l.config.quotaHardBytes, 2 * 1024 ** 3);
  t.is(l.config.quotaSoftBytes, 1024 ** 3);
  t.is(l.config.debug, false);
  t.is(l.config.repository, '/srv/repo');
  t.deepEqual(excludesOf(l.config), [...DEFAULT_EXCLUDES, 'Downloads/**']);
  const p = profileConfigOf(l.config);
  t.deepEqual(p.quota, { softBytes: 1024 ** 3, hardBytes: 2 * 1024 ** 3 });
  t.is(p.commit!.idleMs, 5000);
  const text = printConfig(l, { json: false });
  t.regex(text, /snapshotIntervalMs\s+off\s+flag \(--snapshot-interval\)/);
  t.regex(text, /idleMs\s+5\.0s\s+env \(ROAMFS_IDLE\)/);
  t.regex(text, /exclusions in effect \(\d+\):\n {2}\.cache\/\*\*/);
  const json = JSON.parse(printConfig(l, { json: true })) as { settings: Record<string, { value: unknown; source: string }> };
  t.deepEqual(json.settings.idleMs, { ...json.settings.idleMs, value: 5000, source: 'env' });
});

test('lists from the environment: one pattern per line or a JSON array; repeated flags', async (t) => {
  const a = await loadConfig({ env: { ROAMFS_CONFIG: '/dev/null', ROAMFS_EXCLUDE_ADD: 'Downloads/**\n  Videos/tmp  \n' } });
  t.deepEqual(a.config.excludeAdd, ['Downloads/**', 'Videos/tmp']);
  const b = await loadConfig({ env: { ROAMFS_CONFIG: '/dev/null', ROAMFS_EXCLUDE_REMOVE: '["**/__pycache__"]' } });
  t.false(excludesOf(b.config).includes('**/__pycache__'));
  const flags = flagOptions(['excludeAdd']);
  const c = await loadConfig({ env: { ROAMFS_CONFIG: '/dev/null' }, flags: givenFlags({ excludeAdd: ['a/**', 'b'] }, flags) });
  t.deepEqual(c.config.excludeAdd, ['a/**', 'b']);
  const d = await loadConfig({ env: { ROAMFS_CONFIG: '/dev/null', ROAMFS_EXCLUDE_DEFAULTS: 'no' } });
  t.deepEqual(excludesOf(d.config), []);
});

test('a typo in a key of the file: one line naming the key, with a suggestion', async (t) => {
  const file = await withFile(t, '{"snapshotInterval": "30s"}');
  const msg = await oneLineError(t, loadConfig({ env: { ROAMFS_CONFIG: file } }));
  t.is(msg, `config ${file}: unknown key "snapshotInterval" (did you mean snapshotIntervalMs?); see roamfs config --print for the keys`);
});

test('a wrong type in the file: one line naming the key and what it takes', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['{"snapshotIntervalMs": true}', /snapshotIntervalMs: expected a duration .* \(got true\)$/],
    ['{"idleMs": "10 parsecs"}', /idleMs: not a duration: "10 parsecs"/],
    ['{"quotaHardBytes": "lots"}', /quotaHardBytes: not a size: "lots"/],
    ['{"metricsPort": 70000}', /metricsPort: expected a TCP port \(1-65535\) or off \(got 70000\)$/],
    ['{"excludeAdd": ".cache"}', /excludeAdd: expected a list of glob patterns \(got ".cache"\)$/],
    ['{"excludeAdd": ["!keep"]}', /excludeAdd: exclusion pattern "!keep": negation is not supported/],
    ['{"logLevel": "loud"}', /logLevel: expected fatal, error, warn, info, debug, trace \(got "loud"\)$/],
    ['{"uid": -1}', /uid: expected a numeric uid \(got -1\)$/],
    ['{"debug": "perhaps"}', /debug: not yes\/no: "perhaps"/],
    ['[1, 2]', /must be a JSON object of settings/],
    ['{"idleMs": ', /not valid JSON/],
  ];
  for (const [content, re] of cases) {
    const file = await withFile(t, content);
    const msg = await oneLineError(t, loadConfig({ env: { ROAMFS_CONFIG: file } }));
    t.true(msg.startsWith(`config ${file}: `), msg);
    t.regex(msg, re);
  }
});

test('bad values from the environment and flags name where they came from', async (t) => {
  t.regex(await oneLineError(t, loadConfig({ env: { ROAMFS_CONFIG: '/dev/null', ROAMFS_SNAPSHOT_INTERVAL: 'soon' } })), /^config environment ROAMFS_SNAPSHOT_INTERVAL: snapshotIntervalMs: not a duration: "soon"/);
  t.regex(await oneLineError(t, loadConfig({ env: { ROAMFS_CONFIG: '/dev/null' }, flags: { uid: 'root' } })), /^--uid: not a whole number: "root"$/);
});

test('rules across keys: soft above hard, removing a pattern that is not excluded', async (t) => {
  t.regex(await oneLineError(t, loadConfig({ env: { ROAMFS_CONFIG: '/dev/null', ROAMFS_QUOTA_SOFT: '2GiB', ROAMFS_QUOTA_HARD: '1GiB' } })), /quotaSoftBytes \(2147483648\) is above quotaHardBytes \(1073741824\)/);
  t.regex(await oneLineError(t, loadConfig({ env: { ROAMFS_CONFIG: '/dev/null', ROAMFS_EXCLUDE_REMOVE: '.cache' } })), /excludeRemove: ".cache" is not an exclusion pattern/);
});

test('ROAMFS_CONFIG naming a missing file is an error; the default path may be absent; an empty file is no settings', async (t) => {
  t.regex(await oneLineError(t, loadConfig({ env: { ROAMFS_CONFIG: '/nonexistent/roamfs.json' } })), /does not exist \(named by ROAMFS_CONFIG\)/);
  const empty = await withFile(t, '  \n');
  const l = await loadConfig({ env: { ROAMFS_CONFIG: empty } });
  t.deepEqual(l.config, defaultConfig());
});

test('every key is accepted in the file', async (t) => {
  const all: Record<string, unknown> = {};
  for (const s of SCHEMA) all[s.key] = s.default;
  const file = await withFile(t, JSON.stringify(all));
  const l = await loadConfig({ env: { ROAMFS_CONFIG: file } });
  t.deepEqual(l.config, defaultConfig());
  t.true((Object.keys(all) as ConfigKey[]).every((k) => l.sources[k].source === 'file'));
});

test("ROAMFS_CONFIG may name the OS integration's KEY=VALUE file: its settings are read, the scripts' own keys ignored", async (t) => {
  const file = await withFile(t, '# roamfs.env\nROAMFS_REPO=/srv/roamfs/repo\nROAMFS_SNAPSHOT_INTERVAL="30s"\n;ROAMFS_IDLE=1s\nROAMFS_MIN_UID=1000\nROAMFS_DEBUG=yes\nROAMFS_MAX_LAG=\n', 'roamfs.env');
  const l = await loadConfig({ env: { ROAMFS_CONFIG: file, ROAMFS_IDLE: '2s' } });
  t.is(l.config.repository, '/srv/roamfs/repo');
  t.is(l.config.snapshotIntervalMs, 30_000);
  t.is(l.config.idleMs, 2000);
  t.is(l.config.maxLagMs, 300_000);
  t.true(l.config.debug);
  t.deepEqual(l.sources.snapshotIntervalMs, { source: 'file', from: file });
  const bad = await withFile(t, 'ROAMFS_REPO=/r\nROAMFS_QUOTA_HARD=lots\n', 'roamfs.env');
  t.regex(await oneLineError(t, loadConfig({ env: { ROAMFS_CONFIG: bad } })), /:2 ROAMFS_QUOTA_HARD: quotaHardBytes: not a size: "lots"/);
});
