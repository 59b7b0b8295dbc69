import picomatch from 'picomatch';
import { RoamfsError } from './errors.js';

/**
 * Exclusions: paths of a profile that are local-only. They work normally during a session (in
 * the overlay, on the local cache disk) but are never snapshotted, committed or uploaded, and
 * they start empty at each login: whatever an older commit (an import, an older roamfs) holds
 * at an excluded path is hidden when the profile is mounted.
 *
 * Patterns are globs (picomatch, dot files included) relative to the home directory, matched
 * against profile-relative paths ("a/b/c", no leading slash):
 * - a pattern excludes every path it matches and everything below it;
 * - `DIR/**` excludes DIR's contents but keeps DIR itself (an empty directory at each login),
 *   `DIR` excludes the directory itself (it is absent at each login);
 * - `*` matches within one path component, `**` any number of components, `{a,b}` either.
 *
 * The defaults are caches that programs regenerate (browsers, Electron apps, thumbnails,
 * package managers, the XDG cache directory) and the trash: things that cost upload and
 * repository space at every login and that nobody expects to roam.
 */
export const DEFAULT_EXCLUDES: readonly string[] = [
  // XDG cache directory: thumbnails, fontconfig, mesa shaders, pip, Firefox's cache2, ...
  '.cache/**',
  '.thumbnails/**',
  '.local/share/Trash/**',
  // Chromium-based browsers (one directory per browser profile: Default, Profile 1, ...)
  '.config/{chromium,google-chrome,google-chrome-beta,google-chrome-unstable,microsoft-edge,vivaldi,BraveSoftware/Brave-Browser}/*/{Cache,Code Cache,GPUCache,DawnCache,DawnGraphiteCache,DawnWebGPUCache,Service Worker/CacheStorage,Service Worker/ScriptCache}',
  '.config/{chromium,google-chrome,google-chrome-beta,google-chrome-unstable,microsoft-edge,vivaldi,BraveSoftware/Brave-Browser}/{ShaderCache,GrShaderCache,GraphiteDawnCache}',
  // Electron apps (VS Code and friends)
  '.config/{Code,Code - OSS,VSCodium,Slack,discord,Element,Signal}/{Cache,CachedData,Code Cache,GPUCache,DawnCache,DawnGraphiteCache,DawnWebGPUCache,Service Worker/CacheStorage,Service Worker/ScriptCache}',
  // Firefox / Thunderbird profiles (their disk cache usually lives under .cache/mozilla)
  '.mozilla/firefox/*/{cache2,startupCache,shader-cache}',
  '.thunderbird/*/{cache2,startupCache}',
  // package managers and language tooling
  '.npm/_cacache',
  '**/node_modules/.cache',
  '**/__pycache__',
];

/** A pattern as configured: relative, not negated, not empty. */
export function checkPattern(p: string): string {
  const s = p.trim().replace(/^\/+/, '');
  if (s === '' || s === '**') throw new RoamfsError('INVALID_ARGUMENT', `exclusion pattern ${JSON.stringify(p)} would exclude the whole home`);
  if (s.startsWith('!')) throw new RoamfsError('INVALID_ARGUMENT', `exclusion pattern ${JSON.stringify(p)}: negation is not supported (remove a pattern with excludeRemove / --exclude-remove)`);
  if (s.split('/').includes('..')) throw new RoamfsError('INVALID_ARGUMENT', `exclusion pattern ${JSON.stringify(p)}: ".." is not allowed`);
  return s;
}

/**
 * The effective pattern list: the defaults (unless switched off), plus `add`, minus `remove`.
 * A pattern in `remove` that is not in the list is an error (a typo would otherwise silently
 * keep excluding what the admin meant to roam).
 */
export function effectiveExcludes(o: { defaults: boolean; add: readonly string[]; remove: readonly string[] }): string[] {
  const list: string[] = [];
  for (const p of [...(o.defaults ? DEFAULT_EXCLUDES : []), ...o.add.map(checkPattern)]) if (!list.includes(p)) list.push(p);
  for (const r of o.remove) {
    const p = r.trim().replace(/^\/+/, '');
    const i = list.indexOf(p);
    if (i < 0) throw new RoamfsError('INVALID_ARGUMENT', `excludeRemove: ${JSON.stringify(r)} is not an exclusion pattern (see the list with: roamfs config --print)`);
    list.splice(i, 1);
  }
  return list;
}

/** Compiled exclusion patterns. */
export class Exclusions {
  static readonly NONE = new Exclusions([]);

  private readonly match: (path: string) => boolean;

  constructor(readonly patterns: readonly string[]) {
    // "DIR/**" matches DIR itself in picomatch; here it means "DIR's contents". Since everything
    // below an excluded path is excluded anyway, "DIR/**" is the same as "DIR/*".
    const compiled = patterns.map((p) => checkPattern(p).replace(/\/\*\*$/, '/*'));
    this.match = compiled.length === 0 ? () => false : picomatch(compiled, { dot: true });
  }

  get empty(): boolean {
    return this.patterns.length === 0;
  }

  /**
   * Does a pattern match this path itself (its ancestors not considered)? The overlay keeps an
   * `excluded` flag per node and inherits it from the parent, so it only asks this.
   */
  matchesOwn(path: string): boolean {
    return path !== '' && this.match(path);
  }

  /** Is this profile-relative path excluded (it, or one of its ancestors, matches)? */
  isExcluded(path: string): boolean {
    if (this.empty || path === '') return false;
    const parts = path.split('/');
    for (let i = 1; i <= parts.length; i++) if (this.match(parts.slice(0, i).join('/'))) return true;
    return false;
  }
}
