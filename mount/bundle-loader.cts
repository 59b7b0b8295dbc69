/**
 * Runs a bundled entry point (dist/bundle/*.js, CommonJS, made by scripts/build-bundles.ts) with
 * a V8 code cache, so that a process start compiles next to nothing: login time is mostly
 * process start-up (docs/architecture.md, "Login").
 *
 * The cache is `BUNDLE.v8cache` beside the bundle: a header (magic, SHA-1 of the bundle's bytes)
 * followed by V8's cached data. V8 itself checks its version and flags (it rejects data made by
 * another Node.js) but only the *length* of the source, so the header's hash is what ties the
 * cache to this exact bundle. A missing, stale or rejected cache is remade by the process that
 * noticed it, once it has run its start-up code (`saveCodeCache`; the CLI at exit), written to a
 * temporary name and renamed. The cache only ever makes start-up faster: any problem reading or
 * writing it (a read-only checkout, a non-root user, a full disk) is ignored.
 * ROAMFS_CODE_CACHE=off: neither read nor write it (measurements, the build's smoke test).
 *
 * CommonJS (.cts) on purpose: bin/roamfs.js and the daemon's start load it with a plain require,
 * without starting the ES module loader.
 */
import { readFileSync, writeFileSync, renameSync, unlinkSync } from 'node:fs';
import { isAscii } from 'node:buffer';
import { createHash } from 'node:crypto';
import * as path from 'node:path';
import * as vm from 'node:vm';
import Module = require('node:module');

const MAGIC = Buffer.from('roamfs-v8-code-cache-1\n');
const HASH_BYTES = 20;

/** Set while a bundle that was started without a usable cache runs; see saveCodeCache. */
let pending: (() => void) | null = null;

/**
 * Write the code cache of the running bundle now, if it had none that V8 accepted (otherwise a
 * no-op). Never throws. The bundle reaches it as `globalThis[Symbol.for('roamfs.saveCodeCache')]`
 * (a bundle holds its own copies of the modules it imports, so not through an import): the
 * daemon calls it right after it answered "ready", so the cache holds everything a login compiles.
 */
export function saveCodeCache(): void {
  const save = pending;
  pending = null;
  save?.();
}
(globalThis as Record<symbol, unknown>)[Symbol.for('roamfs.saveCodeCache')] = saveCodeCache;

/**
 * Run the bundle `file` as the main program with `args` as its arguments (process.argv becomes
 * [node, file, ...args]). Throws only when the bundle itself cannot be read or throws.
 */
export function runBundle(file: string, args: string[]): void {
  const bytes = readFileSync(file);
  // esbuild writes ASCII (charset ascii): latin1 decoding is exact and cheaper than UTF-8.
  const source = isAscii(bytes) ? bytes.toString('latin1') : bytes.toString('utf8');
  // Not for security (whoever can write the cache can write the bundle): only "is it this bundle".
  const hash = createHash('sha1').update(bytes).digest();
  const cacheFile = `${file}.v8cache`;
  const useCache = process.env.ROAMFS_CODE_CACHE !== 'off';
  let cachedData: Buffer | undefined;
  if (useCache) try {
    const c = readFileSync(cacheFile);
    const head = MAGIC.length + HASH_BYTES;
    if (c.length > head && c.subarray(0, MAGIC.length).equals(MAGIC) && c.subarray(MAGIC.length, head).equals(hash)) cachedData = c.subarray(head);
  } catch {
    // no cache yet
  }
  // No importModuleDynamically: it does not survive a code cache (and is experimental in Node 20);
  // the build turns every import() of a bundle into a require() (scripts/build-bundles.ts).
  const script = new vm.Script(Module.wrap(source), { filename: file, cachedData });
  if (useCache && (cachedData === undefined || script.cachedDataRejected)) {
    pending = () => {
      const tmp = `${cacheFile}.${process.pid}.tmp`;
      try {
        writeFileSync(tmp, Buffer.concat([MAGIC, hash, script.createCachedData()]), { mode: 0o644 });
        renameSync(tmp, cacheFile);
      } catch {
        try {
          unlinkSync(tmp);
        } catch {
          // nothing was written
        }
      }
    };
    // Short-lived commands: at exit (a long-running daemon calls saveCodeCache after start-up).
    process.once('exit', saveCodeCache);
  }
  const mod = new Module(file);
  mod.filename = file;
  mod.paths = (Module as unknown as { _nodeModulePaths(dir: string): string[] })._nodeModulePaths(path.dirname(file));
  process.argv = [process.argv[0]!, file, ...args];
  const fn = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: Module, filename: string, dirname: string) => void;
  fn.call(mod.exports, mod.exports, Module.createRequire(file), mod, file, path.dirname(file));
  mod.loaded = true;
}

// `node bundle-loader.cjs BUNDLE ARGS...`: how mount/launch.cts starts the daemon.
if (require.main === module) runBundle(path.resolve(process.argv[2]!), process.argv.slice(3));
