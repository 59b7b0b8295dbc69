/**
 * The second half of `npm run build` (after tsc): bundle the CLI and the daemon, each into one
 * CommonJS file, with esbuild, from tsc's output in dist/:
 *
 *   dist/bundle/cli.js           mount/cli.ts and everything it imports   (bin/roamfs.js)
 *   dist/bundle/daemon-main.js   mount/daemon-main.ts and what it imports (the daemon)
 *
 * One file instead of some 300 modules, and one V8 code cache for it (mount/bundle-loader.cts):
 * start-up is what a login waits for. Native addons stay outside (they are found from
 * node_modules at run time); `import.meta.url` becomes the bundle's own URL, so paths computed
 * from it must be right from dist/bundle/ as well as from dist/<dir>/ (both two levels below the
 * checkout). Each file is written under a temporary name and renamed, so a daemon starting
 * during a build reads either the old bundle or the new one. The build ends with a smoke test
 * of both bundles and fails loudly: nothing falls back to the unbundled code.
 *
 * Usage: node dist/scripts/build-bundles.js   (from the checkout; `npm run build` does it)
 */
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const DIST = path.join(ROOT, 'dist');
const OUT = path.join(DIST, 'bundle');
const ENTRIES = { cli: 'mount/cli.js', 'daemon-main': 'mount/daemon-main.js' } as const;
/** Packages loaded from node_modules at run time: native addons that are not worth the trouble. */
const EXTERNAL = ['fuse-native', 'fs-ext'];
/**
 * Packages bundled but for their native addon, which they find with node-gyp-build from their
 * own directory (`__dirname`): that module gets the package's directory in node_modules instead,
 * found at run time from the bundle. Saves some 30 module loads (classic-level, abstract-level,
 * ...) at every daemon start. File (relative to the package) -> package.
 */
const ADDON_LOCATORS: Record<string, string> = {
  'classic-level/binding.js': 'classic-level',
  'msgpackr-extract/index.js': 'msgpackr-extract',
};

const addonLocators: esbuild.Plugin = {
  name: 'addon-locators',
  setup(b) {
    b.onLoad({ filter: /[\\/]node_modules[\\/].*\.js$/ }, (args) => {
      const rel = Object.keys(ADDON_LOCATORS).find((f) => args.path.endsWith(path.join('node_modules', f)));
      if (!rel) return undefined;
      const text = fs.readFileSync(args.path, 'utf8');
      if ((text.match(/\(__dirname\)/g) ?? []).length !== 1) fail(`${rel} changed: expected one node-gyp-build(__dirname) call`);
      const dir = `require("node:path").dirname(require.resolve(${JSON.stringify(`${ADDON_LOCATORS[rel]}/package.json`)}))`;
      return { contents: text.replace('(__dirname)', `(${dir})`), loader: 'js' };
    });
  },
};

function fail(msg: string): never {
  console.error(`build-bundles: ${msg}`);
  process.exit(1);
}

async function main(): Promise<void> {
  for (const rel of Object.values(ENTRIES)) if (!fs.existsSync(path.join(DIST, rel))) fail(`dist/${rel} is missing: run tsc first`);
  const req = createRequire(path.join(OUT, 'x.js'));
  for (const x of [...EXTERNAL, ...Object.values(ADDON_LOCATORS)]) {
    try {
      req.resolve(x);
    } catch {
      fail(`${x} cannot be found from dist/bundle (npm ci not run?)`);
    }
  }
  const tmp = fs.mkdtempSync(path.join(DIST, '.bundle-'));
  try {
    const result = await esbuild.build({
      entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([name, rel]) => [name, path.join(DIST, rel)])),
      outdir: tmp,
      bundle: true,
      platform: 'node',
      format: 'cjs',
      target: 'node20',
      // ...and the package.json files the addon locators resolve.
      external: [...EXTERNAL, ...Object.values(ADDON_LOCATORS).map((p) => `${p}/package.json`)],
      plugins: [addonLocators],
      // import.meta.url of every bundled module: the bundle's own file.
      define: { 'import.meta.url': '__roamfs_import_meta_url' },
      banner: { js: 'var __roamfs_import_meta_url = require("node:url").pathToFileURL(__filename).href;' },
      // import() becomes a require() in a promise: a script compiled from a V8 code cache has no
      // working dynamic import (mount/bundle-loader.cts).
      supported: { 'dynamic-import': false },
      charset: 'ascii',
      // Fewer bytes to read, hash and parse at every start (some 20 ms of a daemon's CPU here).
      // Names are kept, so a stack trace still names the functions; its positions map back to
      // the .ts files through the source map (chained through tsc's), e.g. with
      // `node --enable-source-maps`.
      minifyWhitespace: true,
      minifySyntax: true,
      sourcemap: 'linked',
      logLevel: 'warning',
      metafile: true,
    });
    if (result.errors.length > 0) fail('esbuild failed');
    for (const f of Object.keys(result.metafile.outputs).filter((o) => o.endsWith('.js'))) {
      const text = fs.readFileSync(path.resolve(f), 'utf8');
      // On the whole text, comments and strings included: a false alarm fails loudly, a miss would not.
      if (/\bimport\.meta\b/.test(text)) fail(`${path.basename(f)} still uses import.meta`);
      if (/(^|[^.\w$])import\s*\(/.test(text)) fail(`${path.basename(f)} still has a dynamic import()`);
    }
    fs.mkdirSync(OUT, { recursive: true });
    fs.writeFileSync(path.join(tmp, 'package.json'), '{ "type": "commonjs" }\n');
    // Maps first, so that a bundle is never newer than its map.
    const names = fs.readdirSync(tmp).sort((a, b) => Number(b.endsWith('.map')) - Number(a.endsWith('.map')));
    for (const n of names) fs.renameSync(path.join(tmp, n), path.join(OUT, n));
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  // Code caches of earlier bundles: their hash no longer matches (they would be remade), just clutter.
  for (const n of fs.readdirSync(OUT)) if (n.endsWith('.v8cache') || n.endsWith('.tmp')) fs.rmSync(path.join(OUT, n), { force: true });
  await checkAddons();
  smokeTest();
  const sizes = Object.keys(ENTRIES).map((n) => `${n}.js ${(fs.statSync(path.join(OUT, `${n}.js`)).size / 1024).toFixed(0)} KiB`);
  console.log(`build-bundles: dist/bundle: ${sizes.join(', ')}`);
}

/**
 * The addon locators work: a bundle built like the daemon's, beside it, finds msgpackr's native
 * extractor (without it msgpackr silently decodes in JavaScript) and opens a LevelDB.
 */
async function checkAddons(): Promise<void> {
  const check = path.join(OUT, `.check-${process.pid}.js`);
  const db = fs.mkdtempSync(path.join(DIST, '.check-db-'));
  try {
    await esbuild.build({
      stdin: {
        contents: `import { isNativeAccelerationEnabled } from 'msgpackr';
import { ClassicLevel } from 'classic-level';
const db = new ClassicLevel(process.argv[2]);
await db.put('k', 'v');
const v = await db.get('k');
await db.close();
console.log(JSON.stringify({ msgpackr: isNativeAccelerationEnabled, level: v }));`,
        resolveDir: ROOT,
        loader: 'js',
      },
      outfile: check,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      external: [...EXTERNAL, ...Object.values(ADDON_LOCATORS).map((p) => `${p}/package.json`)],
      banner: { js: 'import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);' },
      plugins: [addonLocators],
      logLevel: 'warning',
    });
    fs.renameSync(check, `${check.slice(0, -3)}.mjs`);
    const out = execFileSync(process.execPath, [`${check.slice(0, -3)}.mjs`, db], { encoding: 'utf8' }).trim();
    if (out !== JSON.stringify({ msgpackr: true, level: 'v' })) fail(`native addons from the bundle: ${out}`);
  } finally {
    fs.rmSync(check, { force: true });
    fs.rmSync(`${check.slice(0, -3)}.mjs`, { force: true });
    fs.rmSync(db, { recursive: true, force: true });
  }
}

/**
 * Both bundles load completely (every module evaluated, externals found) and parse arguments.
 * Without a code cache: the first real run makes it (a smoke test's cache would miss the code a
 * login runs).
 */
function smokeTest(): void {
  const env: NodeJS.ProcessEnv = { ...process.env, ROAMFS_CODE_CACHE: 'off', ROAMFS_CONFIG: '/dev/null' };
  delete env.ROAMFS_READY_FD;
  const version = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const out = execFileSync(process.execPath, [path.join(ROOT, 'bin', 'roamfs.js'), '--version'], { env, encoding: 'utf8' }).trim();
  if (out !== version) fail(`bin/roamfs.js --version printed ${JSON.stringify(out)}, expected ${version}`);
  // The daemon's own parse of `mount` with a missing argument: a usage error, exit 2.
  let r: { status: number | null; stderr: string };
  try {
    execFileSync(process.execPath, [path.join(DIST, 'mount', 'bundle-loader.cjs'), path.join(OUT, 'daemon-main.js'), 'mount'], { env, encoding: 'utf8', stdio: 'pipe' });
    r = { status: 0, stderr: '' };
  } catch (err) {
    r = err as { status: number | null; stderr: string };
  }
  if (r.status !== 2 || !/^roamfs: missing required argument/.test(r.stderr)) fail(`the daemon bundle did not start: exit ${r.status}: ${r.stderr}`);
}

main().catch((err: unknown) => fail(err instanceof Error ? (err.stack ?? err.message) : String(err)));
