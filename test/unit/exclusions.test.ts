/** Exclusion patterns (src/core/exclusions.ts): the defaults, DIR/** semantics, add/remove. */
import test from 'ava';
import { DEFAULT_EXCLUDES, Exclusions, effectiveExcludes } from '../../src/core/exclusions.js';

const defaults = new Exclusions(DEFAULT_EXCLUDES);

test('the defaults exclude regenerable caches and the trash', (t) => {
  for (const p of [
    '.cache/x',
    '.cache/thumbnails/large/abc.png',
    '.cache/mozilla/firefox/abc.default/cache2/entries/0A',
    '.thumbnails/normal/x.png',
    '.local/share/Trash/files/old.txt',
    '.local/share/Trash/info',
    '.config/chromium/Default/Cache',
    '.config/chromium/Default/Cache/Cache_Data/f_000001',
    '.config/chromium/Profile 1/Code Cache/js/index',
    '.config/chromium/Default/GPUCache/data_0',
    '.config/chromium/Default/Service Worker/CacheStorage/abc',
    '.config/google-chrome/Default/Cache/y',
    '.config/chromium/ShaderCache/GPUCache',
    '.config/Code/Cache/x',
    '.config/Code/CachedData/1.2/x',
    '.config/Code/Code Cache/wasm',
    '.mozilla/firefox/abc.default-release/cache2/entries/0B',
    '.mozilla/firefox/abc.default-release/startupCache/scriptCache.bin',
    '.npm/_cacache/content-v2/sha512/aa',
    'src/app/node_modules/.cache/babel/x',
    'node_modules/.cache',
    'src/tool/__pycache__/mod.cpython-311.pyc',
    '__pycache__',
  ]) {
    t.true(defaults.isExcluded(p), p);
  }
});

test('the defaults keep what users care about', (t) => {
  for (const p of [
    '.cache',
    '.thumbnails',
    '.local/share/Trash',
    '.config/chromium',
    '.config/chromium/Default',
    '.config/chromium/Default/History',
    '.config/chromium/Default/Bookmarks',
    '.config/chromium/Default/Cookies',
    '.config/google-chrome/Default/Preferences',
    '.config/Code/User/settings.json',
    '.mozilla/firefox/abc.default/places.sqlite',
    '.mozilla/firefox/profiles.ini',
    'Documents/Cache/notes.txt',
    'Documents/report.pdf',
    '.npm/_logs/x.log',
    'src/app/node_modules/left-pad/index.js',
    'src/tool/mod.py',
    '.bashrc',
    '.config/monitors.xml',
  ]) {
    t.false(defaults.isExcluded(p), p);
  }
});

test('DIR/** excludes the contents and keeps DIR; DIR excludes DIR itself; matchesOwn ignores ancestors', (t) => {
  const e = new Exclusions(['a/**', 'b', 'c/*/tmp']);
  t.false(e.isExcluded('a'));
  t.true(e.isExcluded('a/x'));
  t.true(e.isExcluded('a/x/y/z'));
  t.true(e.isExcluded('b'));
  t.true(e.isExcluded('b/x'));
  t.false(e.isExcluded('bb'));
  t.true(e.isExcluded('c/1/tmp/x'));
  t.false(e.isExcluded('c/1/2/tmp'));
  t.true(e.matchesOwn('a/x'));
  t.false(e.matchesOwn('a/x/y'), 'below a match: the overlay inherits the flag from the parent');
  t.false(e.matchesOwn(''), 'never the root');
  t.false(Exclusions.NONE.isExcluded('.cache/x'));
});

test('a leading slash is the home directory; negation, "..", and the whole home are refused', (t) => {
  t.true(new Exclusions(['/Downloads/**']).isExcluded('Downloads/x'));
  for (const bad of ['', '**', '!x', 'a/../b']) t.throws(() => new Exclusions([bad]), { message: /exclusion pattern/ }, bad);
});

test('admins add and remove patterns; removing an unknown one is an error', (t) => {
  const list = effectiveExcludes({ defaults: true, add: ['Downloads/**', '.cache/**'], remove: ['.local/share/Trash/**'] });
  t.true(list.includes('Downloads/**'));
  t.is(list.filter((p) => p === '.cache/**').length, 1, 'no duplicates');
  t.false(list.includes('.local/share/Trash/**'));
  t.false(new Exclusions(list).isExcluded('.local/share/Trash/files/x'));
  t.deepEqual(effectiveExcludes({ defaults: false, add: ['x'], remove: [] }), ['x']);
  t.throws(() => effectiveExcludes({ defaults: true, add: [], remove: ['.cache'] }), { message: /excludeRemove: ".cache" is not an exclusion pattern/ });
});
