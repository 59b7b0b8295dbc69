#!/usr/bin/env node
/**
 * gen-profile: deterministic generator of a realistic synthetic Linux desktop
 * home directory ("profile") for the README demo, tests and benchmarks.
 *
 *   node dist/scripts/gen-profile.js OUTDIR [--seed N] [--size 2GiB] [--files 50000]
 *                                           [--big-files on|off] [--now ISO-DATE]
 *
 * Same seed + size + files + big-files + now  =>  byte-identical tree (file
 * list, sizes, modes, mtimes, contents, symlink targets), with two exceptions
 * that are produced by external tools:
 *   - src/project/.git internals (made by `git init` + 2 commits; commit
 *     hashes are stable because author/committer/dates are fixed, but
 *     .git/index holds inode/ctime data);
 *   - SQLite databases (*.sqlite and chromium's "History", written by the
 *     sqlite3 CLI; identical for the same sqlite3 version).
 *
 * Mtimes are spread over the 2 years before a fixed anchor (DEFAULT_NOW,
 * overridable), NOT before the wall clock, so that the output is reproducible.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { parseArgs, promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ByteStream, Rng, hashString } from './lib/rng.js';

const execFileP = promisify(execFile);

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

export const DEFAULT_SEED = 1;
export const DEFAULT_SIZE = 2 * GiB;
export const DEFAULT_FILES = 50_000;
/** Anchor for "now": mtimes are spread over the two years before it. */
export const DEFAULT_NOW = Date.UTC(2025, 5, 1, 12, 0, 0);

/** Fake account the profile belongs to (used inside file contents only). */
const USER = 'alex';
const HOME = `/home/${USER}`;

// ---------------------------------------------------------------------------
// Public API types
// ---------------------------------------------------------------------------

export interface GenerateProgress {
  phase: 'write' | 'sqlite' | 'git' | 'finish';
  /** Regular files written so far (planned files; excludes .git internals). */
  files: number;
  bytes: number;
  totalFiles: number;
  totalBytes: number;
}

export interface GenerateOptions {
  seed?: number;
  /** Target total size of regular files, in bytes (default 2 GiB). */
  sizeBytes?: number;
  /** Target number of regular files (default 50,000). */
  files?: number;
  /** Include a few large files (10-500 MiB, scaled down for small sizes). Default true. */
  bigFiles?: boolean;
  /** Anchor time (ms since epoch or Date) for mtimes. Default DEFAULT_NOW. */
  now?: number | Date;
  /** Path of the sqlite3 binary (default: $SQLITE3 or "sqlite3" from PATH). */
  sqlite3?: string;
  onProgress?: (p: GenerateProgress) => void;
}

export interface GenerateResult {
  /** Regular files in the tree (including .git internals and sqlite DBs). */
  files: number;
  /** Directories in the tree, not counting the root. */
  dirs: number;
  symlinks: number;
  /** Sum of regular file sizes. */
  bytes: number;
}

// ---------------------------------------------------------------------------
// Plan model
// ---------------------------------------------------------------------------

type TextStyle =
  | 'prose'
  | 'md'
  | 'ini'
  | 'conf'
  | 'json'
  | 'xml'
  | 'js'
  | 'py'
  | 'sh'
  | 'c'
  | 'log'
  | 'csv'
  | 'hist'
  | 'prefs';

type DbKind = 'places' | 'cookies' | 'formhistory' | 'chromium-history';

type Content =
  | { t: 'lit'; data: Buffer }
  | { t: 'bin'; magic?: Buffer | undefined }
  | { t: 'text'; style: TextStyle }
  | { t: 'sqlite'; db: DbKind; rows: number };

interface FileSpec {
  path: string;
  size: number;
  mode: number;
  mtime: number;
  content: Content;
  /** Content stream key (defaults to the file's index; duplicates share one). */
  key: number;
  /** 1 = written after the first commit of the git project (second commit). */
  phase: 0 | 1;
}

interface LinkSpec {
  path: string;
  target: string;
  mtime: number;
}

interface Plan {
  files: FileSpec[];
  links: LinkSpec[];
  /** All directories (relative, '' = root) with mode and computed mtime. */
  dirs: Map<string, { mode: number; mtime: number }>;
  gitProject: string;
  gitDates: [number, number];
  profileDir: string;
  totalBytes: number;
}

// ---------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------

const WORDS = (
  'the of and to in is for on that with as it by from at be this are or an was not have which you all can ' +
  'more has one will their about if but there other new some time these out also so would what up into only ' +
  'when very its then them than two first been may could any over after most way many just where through work ' +
  'system file data user value page line group name state set order report level point process program result ' +
  'world support control project test number problem service part change case example code power version server ' +
  'client memory table window network device driver option account build error update config cache profile ' +
  'session desktop folder backup photo music video document invoice budget meeting notes draft final review ' +
  'summary plan research garden travel kitchen recipe weekend family school holiday invoice contract letter ' +
  'market river mountain coffee bicycle station library theory signal vector matrix kernel module package ' +
  'stream buffer socket thread queue index schema query token secret cluster node volume mount export import'
).split(' ');

const UNICODE_WORDS = ['café', 'naïve', 'Grüße', 'señor', 'Müller', 'façade', 'smörgåsbord', '日本語', 'メモ', 'Привет', 'Ελλάδα', 'Zürich', 'ça va', '😀', '🚀', '✓'];

const DOMAINS = [
  'github.com', 'stackoverflow.com', 'en.wikipedia.org', 'news.ycombinator.com', 'www.youtube.com', 'docs.python.org',
  'developer.mozilla.org', 'mail.google.com', 'www.reddit.com', 'www.amazon.de', 'www.bbc.co.uk', 'nodejs.org',
  'archlinux.org', 'askubuntu.com', 'www.nytimes.com', 'duckduckgo.com', 'www.google.com', 'calendar.google.com',
  'drive.google.com', 'docs.rs', 'crates.io', 'www.npmjs.com', 'pypi.org', 'gitlab.com', 'bugzilla.mozilla.org',
  'lwn.net', 'www.heise.de', 'arstechnica.com', 'www.theguardian.com', 'maps.google.com', 'www.openstreetmap.org',
  'login.microsoftonline.com', 'outlook.office.com', 'app.slack.com', 'meet.jit.si', 'www.spiegel.de',
];

const DOC_FOLDERS = [
  'Work', 'Personal', 'Finance', 'Taxes 2023', 'Taxes 2024', 'Projects', 'Reports', 'Receipts', 'Letters', 'Notes',
  'Travel', 'Archive/2022', 'Archive/2023', 'School', 'Recipes', 'Manuals', 'Contracts', 'private', 'Work/Meetings',
  'Work/Proposals', 'Fotos für Oma', 'Projects/Thesis', 'Projects/Thesis/figures',
];

const ARTISTS = [
  'The Midnight Owls', 'Aurora Fields', 'Sigur Rós', 'Björk', 'Motörhead', 'Mötley Crüe', '坂本龍一', 'Beyoncé',
  'Low Tide Radio', 'Paper Satellites', 'Velvet Static', 'Nils Frahm', 'Daft Punk', 'Röyksopp', 'Café Tacvba',
  'The Glass Orchard', 'Kalimba Kids', 'Orchestra of the Tenth Floor', 'Ólafur Arnalds', 'Sophie Hunger',
];

const CONFIG_APPS: { dir: string; styles: [string, TextStyle][]; subdirs: string[]; w: number }[] = [
  { dir: 'Code/User', styles: [['json', 'json']], subdirs: ['', 'snippets', 'globalStorage', 'workspaceStorage'], w: 3 },
  { dir: 'libreoffice/4/user', styles: [['xcu', 'xml'], ['xml', 'xml'], ['dat', 'conf']], subdirs: ['', 'config', 'basic/Standard', 'autocorr', 'extensions'], w: 3 },
  { dir: 'JetBrains/IntelliJIdea2024.1', styles: [['xml', 'xml'], ['txt', 'conf'], ['vmoptions', 'conf']], subdirs: ['options', 'codestyles', 'keymaps', 'tasks', 'jdbc-drivers'], w: 3 },
  { dir: 'evolution', styles: [['ini', 'ini'], ['xml', 'xml'], ['source', 'ini']], subdirs: ['', 'sources', 'mail', 'calendar'], w: 2 },
  { dir: 'nvim', styles: [['lua', 'js'], ['vim', 'conf']], subdirs: ['', 'lua', 'lua/plugins', 'after/ftplugin'], w: 2 },
  { dir: 'gtk-4.0', styles: [['ini', 'ini'], ['css', 'conf']], subdirs: [''], w: 1 },
  { dir: 'htop', styles: [['rc', 'conf']], subdirs: [''], w: 1 },
  { dir: 'git', styles: [['conf', 'conf']], subdirs: [''], w: 1 },
  { dir: 'fish', styles: [['fish', 'sh']], subdirs: ['', 'functions', 'conf.d', 'completions'], w: 2 },
  { dir: 'systemd/user', styles: [['service', 'ini'], ['timer', 'ini']], subdirs: [''], w: 1 },
  { dir: 'ibus', styles: [['conf', 'conf']], subdirs: ['bus'], w: 1 },
  { dir: 'goa-1.0', styles: [['conf', 'ini']], subdirs: [''], w: 1 },
  { dir: 'vlc', styles: [['rc', 'ini'], ['conf', 'conf']], subdirs: [''], w: 1 },
  { dir: 'gnome-session', styles: [['session', 'ini']], subdirs: ['saved-session'], w: 1 },
  { dir: 'obs-studio', styles: [['json', 'json'], ['ini', 'ini']], subdirs: ['basic/profiles/Untitled', 'basic/scenes', 'logs'], w: 2 },
  { dir: 'inkscape', styles: [['xml', 'xml']], subdirs: ['', 'templates', 'palettes'], w: 1 },
  { dir: 'GIMP/2.10', styles: [['rc', 'conf'], ['gpl', 'csv']], subdirs: ['', 'tool-options', 'palettes', 'curves'], w: 2 },
  { dir: 'blender/4.1/config', styles: [['py', 'py']], subdirs: ['', 'scripts'], w: 1 },
  { dir: 'Slack', styles: [['json', 'json']], subdirs: ['', 'storage', 'Local Storage/leveldb'], w: 2 },
  { dir: 'keepassxc', styles: [['ini', 'ini']], subdirs: [''], w: 1 },
  { dir: 'menus', styles: [['menu', 'xml']], subdirs: [''], w: 1 },
  { dir: 'procps', styles: [['rc', 'conf']], subdirs: [''], w: 1 },
  { dir: 'Nextcloud', styles: [['cfg', 'ini'], ['log', 'log']], subdirs: ['', 'logs'], w: 1 },
  { dir: 'syncthing', styles: [['xml', 'xml'], ['pem', 'conf']], subdirs: [''], w: 1 },
  { dir: 'kdeconnect', styles: [['conf', 'ini']], subdirs: ['', 'trusted_devices'], w: 1 },
];

const LOCALSHARE_APPS: { dir: string; ext: string; text?: TextStyle; subdirs: string[]; w: number }[] = [
  { dir: 'gnome-shell/extensions', ext: 'js', text: 'js', subdirs: ['appindicatorsupport@rgcjonas.gmail.com', 'dash-to-dock@micxgx.gmail.com', 'gsconnect@andyholmes.github.io/service', 'caffeine@patapon.info'], w: 3 },
  { dir: 'applications', ext: 'desktop', text: 'ini', subdirs: [''], w: 2 },
  { dir: 'icons/hicolor', ext: 'png', subdirs: ['16x16/apps', '32x32/apps', '48x48/apps', '256x256/apps'], w: 3 },
  { dir: 'fonts', ext: 'ttf', subdirs: ['', 'JetBrainsMono', 'Noto'], w: 1 },
  { dir: 'gvfs-metadata', ext: '', subdirs: [''], w: 1 },
  { dir: 'nautilus', ext: 'xml', text: 'xml', subdirs: ['tags'], w: 1 },
  { dir: 'evolution/mail/local', ext: '', text: 'prose', subdirs: ['cur', 'new', 'tmp'], w: 3 },
  { dir: 'flatpak/exports/share/applications', ext: 'desktop', text: 'ini', subdirs: [''], w: 1 },
  { dir: 'tracker3/files', ext: 'db-wal', subdirs: [''], w: 1 },
  { dir: 'zeitgeist', ext: 'log', text: 'log', subdirs: [''], w: 1 },
  { dir: 'gnome-boxes/sources', ext: 'conf', text: 'ini', subdirs: [''], w: 1 },
  { dir: 'Steam/config', ext: 'vdf', text: 'conf', subdirs: ['', 'htmlcache'], w: 2 },
  { dir: 'TelegramDesktop/tdata', ext: '', subdirs: ['user_data/media_cache', 'user_data/cache', 'emoji'], w: 2 },
];

// ---------------------------------------------------------------------------
// Binary magic headers
// ---------------------------------------------------------------------------

const MAGIC: Record<string, Buffer> = {
  png: Buffer.from('89504e470d0a1a0a0000000d49484452', 'hex'),
  jpg: Buffer.from('ffd8ffe000104a46494600010101004800480000', 'hex'),
  pdf: Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1'),
  zip: Buffer.from('504b03041400000008000000', 'hex'),
  odt: Buffer.concat([Buffer.from('504b0304140000080000', 'hex'), Buffer.from('mimetypeapplication/vnd.oasis.opendocument.text')]),
  mp3: Buffer.from('494433040000000000', 'hex'),
  flac: Buffer.from('fLaC\x00\x00\x00\x22', 'latin1'),
  ogg: Buffer.from('OggS\x00\x02', 'latin1'),
  mp4: Buffer.from('000000206674797069736f6d0000020069736f6d69736f32617663316d703431', 'hex'),
  mkv: Buffer.from('1a45dfa3a34286810142f7810142f2810442f381084282887765626d', 'hex'),
  gz: Buffer.from('1f8b080000000000000003', 'hex'),
  qcow2: Buffer.from('514649fb00000003', 'hex'),
  deb: Buffer.from('!<arch>\ndebian-binary   ', 'latin1'),
  elf: Buffer.from('7f454c4602010100', 'hex'),
  mozlz4: Buffer.from('mozLz40\x00', 'latin1'),
  gvariant: Buffer.from('GVariant', 'latin1'),
  keyring: Buffer.from('GnomeKeyring\n\r\x00\n', 'latin1'),
  ttf: Buffer.from('0001000000120100000400', 'hex'),
  kbx: Buffer.concat([Buffer.from('0000002001010000', 'hex'), Buffer.from('KBXf', 'latin1')]),
};

const EXT_MAGIC: Record<string, string> = {
  png: 'png', jpg: 'jpg', jpeg: 'jpg', pdf: 'pdf', zip: 'zip', docx: 'zip', xlsx: 'zip', pptx: 'zip', whl: 'zip',
  jar: 'zip', odt: 'odt', ods: 'odt', mp3: 'mp3', flac: 'flac', ogg: 'ogg', mp4: 'mp4', mkv: 'mkv', webm: 'mkv',
  gz: 'gz', tgz: 'gz', qcow2: 'qcow2', deb: 'deb', AppImage: 'elf', jsonlz4: 'mozlz4', mozlz4: 'mozlz4', ttf: 'ttf',
};

const EXT_TEXT: Record<string, TextStyle> = {
  txt: 'prose', md: 'md', json: 'json', xml: 'xml', svg: 'xml', xcu: 'xml', ini: 'ini', conf: 'conf', cfg: 'ini',
  js: 'js', mjs: 'js', cjs: 'js', ts: 'js', tsx: 'js', lua: 'js', css: 'conf', py: 'py', sh: 'sh', fish: 'sh',
  c: 'c', h: 'c', go: 'c', rs: 'c', log: 'log', csv: 'csv', desktop: 'ini', yml: 'conf', yaml: 'conf', toml: 'ini',
  html: 'xml', tex: 'prose', vim: 'conf', rc: 'conf', service: 'ini', 'd.ts': 'js', map: 'json', trashinfo: 'ini',
};

function extOf(p: string): string {
  const base = p.slice(p.lastIndexOf('/') + 1);
  if (base.endsWith('.d.ts')) return 'd.ts';
  const i = base.lastIndexOf('.');
  return i > 0 ? base.slice(i + 1) : '';
}

function contentFor(p: string): Content {
  const ext = extOf(p);
  const style = EXT_TEXT[ext];
  if (style) return { t: 'text', style };
  const m = EXT_MAGIC[ext];
  return { t: 'bin', magic: m ? MAGIC[m] : undefined };
}

function bin(magic?: string): Content {
  return { t: 'bin', magic: magic ? MAGIC[magic] : undefined };
}

function text(style: TextStyle): Content {
  return { t: 'text', style };
}

function lit(s: string | Buffer): Content {
  return { t: 'lit', data: typeof s === 'string' ? Buffer.from(s, 'utf8') : s };
}

// ---------------------------------------------------------------------------
// Text generation (exact byte sizes, valid UTF-8)
// ---------------------------------------------------------------------------

class TextGen {
  private depth = 0;
  private clock: number;
  constructor(private r: Rng, baseTime: number) {
    this.clock = baseTime;
  }

  w(): string {
    return WORDS[this.r.u32() % WORDS.length]!;
  }
  cap(s: string): string {
    return s.charAt(0).toUpperCase() + s.slice(1);
  }
  ident(): string {
    const n = 1 + (this.r.u32() % 3);
    let s = this.w();
    for (let i = 1; i < n; i++) s += this.cap(this.w());
    return s;
  }
  words(n: number): string {
    let s = this.w();
    for (let i = 1; i < n; i++) s += ' ' + this.w();
    return s;
  }
  sentence(): string {
    const n = 4 + (this.r.u32() % 12);
    let s = this.cap(this.w());
    for (let i = 1; i < n; i++) {
      s += (this.r.u32() % 40 === 0 ? ' ' + UNICODE_WORDS[this.r.u32() % UNICODE_WORDS.length] : ' ' + this.w());
      if (i < n - 2 && this.r.u32() % 17 === 0) s += ',';
    }
    return s + (this.r.u32() % 9 === 0 ? '?' : '.');
  }
  paragraph(): string {
    const n = 1 + (this.r.u32() % 5);
    let s = this.sentence();
    for (let i = 1; i < n; i++) s += ' ' + this.sentence();
    return s;
  }
  value(): string {
    switch (this.r.u32() % 6) {
      case 0:
        return String(this.r.u32() % 10000);
      case 1:
        return this.r.u32() % 2 ? 'true' : 'false';
      case 2:
        return `${HOME}/${this.w()}/${this.ident()}`;
      case 3:
        return this.words(1 + (this.r.u32() % 4));
      case 4:
        return (this.r.float() * 100).toFixed(3);
      default:
        return this.ident();
    }
  }
  timestamp(): string {
    this.clock += this.r.u32() % 5000;
    return new Date(this.clock).toISOString();
  }

  header(style: TextStyle): string {
    switch (style) {
      case 'md':
        return `# ${this.cap(this.words(2 + (this.r.u32() % 4)))}\n\n`;
      case 'xml':
        return `<?xml version="1.0" encoding="UTF-8"?>\n<${this.w()}Config version="${1 + (this.r.u32() % 9)}">\n`;
      case 'sh':
        return '#!/bin/sh\nset -eu\n\n';
      case 'py':
        return `#!/usr/bin/env python3\n"""${this.sentence()}"""\nimport os\nimport sys\n\n`;
      case 'csv':
        return `id,${this.w()},${this.w()},amount,date\n`;
      case 'prefs':
        return '// Mozilla User Preferences\n\n// DO NOT EDIT THIS FILE.\n//\n// If you make changes to this file while the application is running,\n// the changes will be overwritten when the application exits.\n//\n// To change a preference value, you can either:\n// - modify it via the UI (e.g. via about:config in the browser); or\n// - set it within a user.js file in your profile.\n\n';
      case 'c':
        return `#include <stdio.h>\n#include <stdlib.h>\n#include "${this.w()}.h"\n\n`;
      default:
        return '';
    }
  }

  line(style: TextStyle): string {
    const r = this.r;
    switch (style) {
      case 'prose':
        return r.u32() % 5 === 0 ? '' : this.paragraph();
      case 'md': {
        const k = r.u32() % 20;
        if (k < 2) return `\n## ${this.cap(this.words(2 + (r.u32() % 3)))}\n`;
        if (k < 6) return `- ${this.sentence()}`;
        if (k < 7) return `1. ${this.sentence()}`;
        if (k < 8) return `\`${this.ident()}\` — ${this.sentence()}`;
        if (k < 9) return '';
        return this.paragraph() + '\n';
      }
      case 'ini':
        return r.u32() % 10 === 0 ? `\n[${this.cap(this.w())}${r.u32() % 3 === 0 ? ' ' + this.cap(this.w()) : ''}]` : `${this.ident()}=${this.value()}`;
      case 'conf': {
        const k = r.u32() % 10;
        if (k === 0) return `# ${this.sentence()}`;
        if (k === 1) return '';
        return `${this.ident()} ${this.value()}`;
      }
      case 'xml':
        return r.u32() % 7 === 0
          ? `  <!-- ${this.words(3 + (r.u32() % 6))} -->`
          : `  <${this.w()} name="${this.ident()}" value="${this.value()}"/>`;
      case 'log':
        return `${this.timestamp()} ${['INFO', 'INFO', 'INFO', 'DEBUG', 'WARN', 'ERROR'][r.u32() % 6]} ${this.w()}[${1000 + (r.u32() % 60000)}]: ${this.sentence()}`;
      case 'csv':
        return `${r.u32() % 100000},${this.w()},${this.ident()},${(r.float() * 1000).toFixed(2)},2024-${String(1 + (r.u32() % 12)).padStart(2, '0')}-${String(1 + (r.u32() % 28)).padStart(2, '0')}`;
      case 'hist':
        return this.command();
      case 'prefs':
        return `user_pref("${this.w()}.${this.w()}.${this.ident()}", ${r.u32() % 3 === 0 ? '"' + this.value() + '"' : r.u32() % 2 ? String(r.u32() % 100000) : r.u32() % 2 ? 'true' : 'false'});`;
      case 'js':
      case 'py':
      case 'sh':
      case 'c':
        return this.codeLine(style);
      case 'json':
        return `"${this.ident()}": ${JSON.stringify(this.value())}`;
    }
  }

  command(): string {
    const r = this.r;
    const cmds = [
      () => `cd ~/src/${this.w()}`,
      () => 'ls -la',
      () => 'git status',
      () => `git commit -am "${this.words(3)}"`,
      () => 'git pull --rebase',
      () => `git checkout -b ${this.w()}-${this.w()}`,
      () => 'npm run build',
      () => 'npm test',
      () => 'sudo apt update && sudo apt upgrade',
      () => `ssh ${this.w()}.example.org`,
      () => `vim ${this.ident()}.${['ts', 'py', 'md', 'conf'][r.u32() % 4]}`,
      () => 'docker ps -a',
      () => `grep -rn ${this.ident()} .`,
      () => `python3 ${this.ident()}.py --${this.w()} ${r.u32() % 100}`,
      () => 'htop',
      () => 'make -j4',
      () => `find . -name '*.${['log', 'tmp', 'bak'][r.u32() % 3]}' -delete`,
      () => `du -sh ~/${['Downloads', 'Videos', '.cache', 'src'][r.u32() % 4]}`,
      () => `journalctl --user -u ${this.w()} -f`,
      () => `man ${this.w()}`,
    ];
    return cmds[r.u32() % cmds.length]!();
  }

  codeLine(style: 'js' | 'py' | 'sh' | 'c'): string {
    const r = this.r;
    const k = r.u32() % 20;
    const ind = (d: number) => (style === 'py' ? '    ' : '  ').repeat(d);
    if (k < 3 && this.depth < 4) {
      const d = this.depth++;
      switch (style) {
        case 'js':
          return d === 0
            ? `export function ${this.ident()}(${this.ident()}, ${this.ident()}) {`
            : `${ind(d)}if (${this.ident()} && ${this.ident()}.${this.w()}) {`;
        case 'py':
          return `${ind(d)}${d === 0 ? 'def' : 'if'} ${this.ident()}${d === 0 ? '(' + this.ident() + ', ' + this.ident() + ')' : ' > ' + (r.u32() % 100)}:`;
        case 'sh':
          return `${ind(d)}${d === 0 ? this.ident() + '() {' : 'if [ -n "$' + this.w() + '" ]; then'}`;
        case 'c':
          return `${ind(d)}${d === 0 ? 'static int ' + this.ident() + '(int ' + this.w() + ', char *' + this.w() + ')' : 'if (' + this.ident() + ' > ' + (r.u32() % 100) + ')'} {`;
      }
    }
    if (k < 6 && this.depth > 0) {
      const d = --this.depth;
      switch (style) {
        case 'py':
          return '';
        case 'sh':
          return ind(d) + (d === 0 ? '}' : 'fi');
        default:
          return ind(d) + '}';
      }
    }
    const d = this.depth;
    if (k < 8) return `${ind(d)}${style === 'py' || style === 'sh' ? '#' : '//'} ${this.sentence()}`;
    if (k < 9) return '';
    switch (style) {
      case 'js':
        return `${ind(d)}const ${this.ident()} = ${this.ident()}(${this.ident()}, ${r.u32() % 1000});`;
      case 'py':
        return `${ind(d)}${this.ident()} = ${this.ident()}.${this.w()}(${r.u32() % 1000})`;
      case 'sh':
        return `${ind(d)}${this.w()}_${this.w()}="$(${['grep', 'sed', 'awk', 'cut', 'find'][r.u32() % 5]} ${this.w()} "$${this.w()}")"`;
      case 'c':
        return `${ind(d)}${this.ident()} = ${this.ident()}(${this.w()}, ${r.u32() % 1000});`;
    }
  }
}

/** Generate exactly `size` bytes of text in `style` (valid UTF-8, ends in a newline when it can). */
function genText(style: TextStyle, size: number, r: Rng, baseTime: number): Buffer {
  const buf = Buffer.allocUnsafe(size);
  if (size === 0) return buf;
  const g = new TextGen(r, baseTime);
  let pos = 0;
  const put = (s: string): boolean => {
    if (pos >= size) return false;
    const n = buf.write(s, pos, 'utf8');
    pos += n;
    return n > 0 || s.length === 0;
  };
  if (style === 'json') {
    // Always valid JSON: entries while they fit, then whitespace padding and the closing brace.
    if (size < 3) {
      buf.fill(0x20);
      buf[size - 1] = 0x0a;
      return buf;
    }
    put('{');
    let first = true;
    for (;;) {
      const entry = (first ? '\n  ' : ',\n  ') + g.line('json');
      if (pos + Buffer.byteLength(entry) + 3 > size) break;
      put(entry);
      first = false;
    }
    buf.fill(0x20, pos, size - 2);
    buf[size - 2] = 0x7d; // }
    buf[size - 1] = 0x0a;
    return buf;
  }
  put(g.header(style));
  while (pos < size) {
    if (!put(g.line(style) + '\n')) break;
  }
  if (pos < size) buf.fill(0x0a, pos, size);
  if (buf[size - 1]! < 0x80) buf[size - 1] = 0x0a;
  return buf;
}

// ---------------------------------------------------------------------------
// Planner
// ---------------------------------------------------------------------------

class Planner {
  readonly files: FileSpec[] = [];
  readonly links: LinkSpec[] = [];
  readonly dirModes = new Map<string, number>();
  readonly emptyDirTimes = new Map<string, number>();
  private readonly taken = new Set<string>();

  constructor(
    readonly r: Rng,
    /** Anchor time in seconds. */
    readonly now: number,
  ) {}

  /** A timestamp up to maxAgeDays before now; skew > 1 favours recent times. */
  time(maxAgeDays: number, skew = 1, minAgeDays = 0): number {
    const age = (minAgeDays + Math.pow(this.r.float(), skew) * (maxAgeDays - minAgeDays)) * 86400;
    const sec = Math.floor(this.now - age - 1);
    return sec + this.r.int(0, 999_999_999) / 1e9;
  }

  dir(p: string, mode = 0o755): void {
    this.ensureParents(p + '/x');
    this.dirModes.set(p, mode);
    this.taken.add(p);
  }

  emptyDir(p: string, mode = 0o755, maxAgeDays = 700): void {
    this.dir(p, mode);
    this.emptyDirTimes.set(p, this.time(maxAgeDays));
  }

  private ensureParents(p: string): void {
    let i = p.indexOf('/');
    while (i !== -1) {
      const d = p.slice(0, i);
      if (!this.dirModes.has(d)) {
        if (this.taken.has(d)) throw new Error(`gen-profile: ${d} is both a file and a directory`);
        this.dirModes.set(d, 0o755);
        this.taken.add(d);
      }
      i = p.indexOf('/', i + 1);
    }
  }

  /** Make p unique by adding " (n)" (documents) or "-n" before the extension. */
  unique(p: string): string {
    if (!this.taken.has(p) && !this.dirModes.has(p)) return p;
    const slash = p.lastIndexOf('/');
    const base = p.slice(slash + 1);
    const dot = base.lastIndexOf('.');
    const stem = dot > 0 ? base.slice(0, dot) : base;
    const ext = dot > 0 ? base.slice(dot) : '';
    const spaced = base.includes(' ');
    for (let n = 2; ; n++) {
      const q = p.slice(0, slash + 1) + stem + (spaced ? ` (${n})` : `-${n}`) + ext;
      if (!this.taken.has(q) && !this.dirModes.has(q)) return q;
    }
  }

  file(p: string, size: number, content: Content, opts: { mode?: number; mtime?: number; phase?: 0 | 1; key?: number } = {}): FileSpec {
    p = this.unique(p);
    this.ensureParents(p);
    this.taken.add(p);
    if (content.t === 'lit') size = content.data.length;
    const spec: FileSpec = {
      path: p,
      size: Math.max(0, Math.floor(size)),
      mode: opts.mode ?? 0o644,
      mtime: opts.mtime ?? this.time(730),
      content,
      key: opts.key ?? this.files.length,
      phase: opts.phase ?? 0,
    };
    this.files.push(spec);
    return spec;
  }

  link(p: string, target: string, mtime?: number): void {
    if (this.taken.has(p)) throw new Error(`gen-profile: duplicate path ${p}`);
    this.ensureParents(p);
    this.taken.add(p);
    this.links.push({ path: p, target, mtime: mtime ?? this.time(700) });
  }

  has(p: string): boolean {
    return this.taken.has(p);
  }

  /** Directory mtimes: newest entry (file, link or subdirectory) in the directory. */
  dirTimes(exclude: Set<string>): Map<string, { mode: number; mtime: number }> {
    const newest = new Map<string, number>();
    const bump = (p: string, t: number) => {
      const i = p.lastIndexOf('/');
      const parent = i < 0 ? '' : p.slice(0, i);
      const cur = newest.get(parent);
      if (cur === undefined || t > cur) newest.set(parent, t);
    };
    for (const f of this.files) bump(f.path, f.mtime);
    for (const l of this.links) bump(l.path, l.mtime);
    const all = [...this.dirModes.keys()].filter((d) => !exclude.has(d));
    all.sort((a, b) => depth(b) - depth(a) || (a < b ? -1 : a > b ? 1 : 0));
    const out = new Map<string, { mode: number; mtime: number }>();
    for (const d of all) {
      const t = newest.get(d) ?? this.emptyDirTimes.get(d) ?? this.time(700);
      out.set(d, { mode: this.dirModes.get(d)!, mtime: t });
      bump(d, t);
    }
    out.set('', { mode: -1, mtime: newest.get('') ?? this.now - 1 });
    return out;
  }
}

function depth(p: string): number {
  let n = 0;
  for (let i = 0; i < p.length; i++) if (p.charCodeAt(i) === 47) n++;
  return n;
}

function clamp(x: number, lo: number, hi: number): number {
  return x < lo ? lo : x > hi ? hi : x;
}

function lognormal(r: Rng, median: number, sigma: number, lo: number, hi: number): number {
  return Math.round(clamp(median * Math.exp(sigma * r.normal()), lo, hi));
}

const pad2 = (n: number) => String(n).padStart(2, '0');

function ymd(t: number, sep = '-'): string {
  const d = new Date(t * 1000);
  return `${d.getUTCFullYear()}${sep}${pad2(d.getUTCMonth() + 1)}${sep}${pad2(d.getUTCDate())}`;
}

function hms(t: number, sep = ''): string {
  const d = new Date(t * 1000);
  return `${pad2(d.getUTCHours())}${sep}${pad2(d.getUTCMinutes())}${sep}${pad2(d.getUTCSeconds())}`;
}

function base64(r: Rng, bytes: number): string {
  const b = Buffer.allocUnsafe(bytes);
  new ByteStream(r.u32(), r.u32()).fill(b);
  return b.toString('base64');
}

function wrap(s: string, width: number): string {
  const lines: string[] = [];
  for (let i = 0; i < s.length; i += width) lines.push(s.slice(i, i + width));
  return lines.join('\n');
}

// ---------------------------------------------------------------------------
// Fixed part of the profile: dotfiles, browser profiles, ssh, git project ...
// ---------------------------------------------------------------------------

interface Ctx {
  seed: number;
  size: number;
  files: number;
  bigFiles: boolean;
  prof: string;
  ffProfile: string;
  /** Scale for the larger "fixed" binaries (session store, pdf, photo...). */
  scale: number;
}

const BASHRC = `# ~/.bashrc: executed by bash(1) for non-login shells.
# see /usr/share/doc/bash/examples/startup-files (in the package bash-doc)
# for examples

# If not running interactively, don't do anything
case $- in
    *i*) ;;
      *) return;;
esac

# don't put duplicate lines or lines starting with space in the history.
# See bash(1) for more options
HISTCONTROL=ignoreboth

# append to the history file, don't overwrite it
shopt -s histappend

# for setting history length see HISTSIZE and HISTFILESIZE in bash(1)
HISTSIZE=10000
HISTFILESIZE=20000

# check the window size after each command and, if necessary,
# update the values of LINES and COLUMNS.
shopt -s checkwinsize

# make less more friendly for non-text input files, see lesspipe(1)
[ -x /usr/bin/lesspipe ] && eval "$(SHELL=/bin/sh lesspipe)"

# set a fancy prompt (non-color, unless we know we "want" color)
case "$TERM" in
    xterm-color|*-256color) color_prompt=yes;;
esac

if [ "$color_prompt" = yes ]; then
    PS1='\${debian_chroot:+($debian_chroot)}\\[\\033[01;32m\\]\\u@\\h\\[\\033[00m\\]:\\[\\033[01;34m\\]\\w\\[\\033[00m\\]\\$ '
else
    PS1='\${debian_chroot:+($debian_chroot)}\\u@\\h:\\w\\$ '
fi
unset color_prompt force_color_prompt

# enable color support of ls and also add handy aliases
if [ -x /usr/bin/dircolors ]; then
    test -r ~/.dircolors && eval "$(dircolors -b ~/.dircolors)" || eval "$(dircolors -b)"
    alias ls='ls --color=auto'
    alias grep='grep --color=auto'
fi

# some more ls aliases
alias ll='ls -alF'
alias la='ls -A'
alias l='ls -CF'
alias gs='git status'
alias gd='git diff'

# Alias definitions.
if [ -f ~/.bash_aliases ]; then
    . ~/.bash_aliases
fi

# enable programmable completion features
if ! shopt -oq posix; then
  if [ -f /usr/share/bash-completion/bash_completion ]; then
    . /usr/share/bash-completion/bash_completion
  elif [ -f /etc/bash_completion ]; then
    . /etc/bash_completion
  fi
fi

export EDITOR=nvim
export PATH="$HOME/.local/bin:$HOME/bin:$PATH"
export NVM_DIR="$HOME/.nvm"
[ -s "$NVM_DIR/nvm.sh" ] && \\. "$NVM_DIR/nvm.sh"
`;

const PROFILE = `# ~/.profile: executed by the command interpreter for login shells.
# This file is not read by bash(1), if ~/.bash_profile or ~/.bash_login
# exists.

# the default umask is set in /etc/profile; for setting the umask
# for ssh logins, install and configure the libpam-umask package.
#umask 022

# if running bash
if [ -n "$BASH_VERSION" ]; then
    # include .bashrc if it exists
    if [ -f "$HOME/.bashrc" ]; then
\t. "$HOME/.bashrc"
    fi
fi

# set PATH so it includes user's private bin if it exists
if [ -d "$HOME/bin" ] ; then
    PATH="$HOME/bin:$PATH"
fi

# set PATH so it includes user's private bin if it exists
if [ -d "$HOME/.local/bin" ] ; then
    PATH="$HOME/.local/bin:$PATH"
fi
`;

const BASH_LOGOUT = `# ~/.bash_logout: executed by bash(1) when login shell exits.

# when leaving the console clear the screen to increase privacy

if [ "$SHLVL" = 1 ]; then
    [ -x /usr/bin/clear_console ] && /usr/bin/clear_console -q
fi
`;

const USER_DIRS = `# This file is written by xdg-user-dirs-update
# If you want to change or add directories, just edit the line you're
# interested in. All local changes will be retained on the next run.
# Format is XDG_xxx_DIR="$HOME/yyy", where yyy is a shell-escaped
# homedir-relative path, or XDG_xxx_DIR="/yyy", where /yyy is an
# absolute path. No other format is supported.
#
XDG_DESKTOP_DIR="$HOME/Desktop"
XDG_DOWNLOAD_DIR="$HOME/Downloads"
XDG_TEMPLATES_DIR="$HOME/Templates"
XDG_PUBLICSHARE_DIR="$HOME/Public"
XDG_DOCUMENTS_DIR="$HOME/Documents"
XDG_MUSIC_DIR="$HOME/Music"
XDG_PICTURES_DIR="$HOME/Pictures"
XDG_VIDEOS_DIR="$HOME/Videos"
`;

const MIMEAPPS = `[Default Applications]
text/html=firefox.desktop
x-scheme-handler/http=firefox.desktop
x-scheme-handler/https=firefox.desktop
x-scheme-handler/about=firefox.desktop
x-scheme-handler/unknown=firefox.desktop
x-scheme-handler/mailto=org.gnome.Evolution.desktop
application/pdf=org.gnome.Evince.desktop
image/jpeg=org.gnome.eog.desktop
image/png=org.gnome.eog.desktop
video/mp4=vlc.desktop
audio/mpeg=org.gnome.Rhythmbox3.desktop
text/plain=org.gnome.TextEditor.desktop
application/vnd.oasis.opendocument.text=libreoffice-writer.desktop
inode/directory=org.gnome.Nautilus.desktop

[Added Associations]
text/plain=org.gnome.TextEditor.desktop;code.desktop;nvim.desktop;
application/pdf=org.gnome.Evince.desktop;firefox.desktop;
image/png=org.gnome.eog.desktop;gimp.desktop;
text/markdown=code.desktop;
`;

const FONTS_CONF = `<?xml version="1.0"?>
<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">
<fontconfig>
  <dir>~/.local/share/fonts</dir>
  <match target="font">
    <edit name="antialias" mode="assign"><bool>true</bool></edit>
    <edit name="hinting" mode="assign"><bool>true</bool></edit>
    <edit name="hintstyle" mode="assign"><const>hintslight</const></edit>
    <edit name="rgba" mode="assign"><const>rgb</const></edit>
  </match>
  <alias>
    <family>monospace</family>
    <prefer><family>JetBrains Mono</family></prefer>
  </alias>
</fontconfig>
`;

const MONITORS = `<monitors version="2">
  <configuration>
    <logicalmonitor>
      <x>0</x>
      <y>0</y>
      <scale>1</scale>
      <primary>yes</primary>
      <monitor>
        <monitorspec>
          <connector>Virtual-1</connector>
          <vendor>unknown</vendor>
          <product>unknown</product>
          <serial>unknown</serial>
        </monitorspec>
        <mode>
          <width>1920</width>
          <height>1080</height>
          <rate>60.000</rate>
        </mode>
      </monitor>
    </logicalmonitor>
  </configuration>
</monitors>
`;

const MIT = `MIT License

Copyright (c) 2024 Alex Doe

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT.
`;

/** The files a desktop session (GNOME + Firefox) typically reads first. */
const STARTUP_FILES = [
  '.profile',
  '.bashrc',
  '.config/user-dirs.dirs',
  '.config/dconf/user',
  '.config/monitors.xml',
  '.config/mimeapps.list',
  '.config/gtk-3.0/settings.ini',
  '.config/gtk-3.0/bookmarks',
  '.config/fontconfig/fonts.conf',
  '.config/pulse/cookie',
  '.Xauthority',
  '.local/share/keyrings/login.keyring',
  '.local/share/recently-used.xbel',
  '.mozilla/firefox/profiles.ini',
  '{ff}/prefs.js',
  '{ff}/extensions.json',
  '{ff}/xulstore.json',
  '{ff}/sessionstore.jsonlz4',
  '{ff}/places.sqlite',
  '{ff}/cookies.sqlite',
];

function planFixed(pl: Planner, ctx: Ctx): { gitProject: string; gitDates: [number, number]; gitFiles: number; gitBytes: number } {
  const r = pl.r;
  const ff = ctx.ffProfile;
  const sc = ctx.scale;
  const recent = (days = 30) => pl.time(days, 1.5);

  // XDG user dirs.
  for (const d of ['Desktop', 'Documents', 'Downloads', 'Music', 'Pictures', 'Videos']) pl.dir(d);
  pl.emptyDir('Public');
  pl.emptyDir('Templates');

  // Shell dotfiles.
  const old = pl.time(730, 0.5, 400);
  pl.file('.bashrc', 0, lit(BASHRC), { mtime: pl.time(500) });
  pl.file('.profile', 0, lit(PROFILE), { mtime: old });
  pl.file('.bash_logout', 0, lit(BASH_LOGOUT), { mtime: old });
  pl.file('.bash_history', r.int(8 * KiB, 40 * KiB), text('hist'), { mode: 0o600, mtime: recent(2) });
  pl.file('.python_history', r.int(1 * KiB, 4 * KiB), text('py'), { mode: 0o600, mtime: recent(60) });
  pl.file('.gitconfig', 0, lit(`[user]\n\tname = Alex Doe\n\temail = alex@example.org\n[init]\n\tdefaultBranch = main\n[pull]\n\trebase = true\n[core]\n\teditor = nvim\n[alias]\n\tlg = log --graph --oneline --decorate\n\tst = status -sb\n`));
  pl.file('.viminfo', r.int(3 * KiB, 12 * KiB), text('conf'), { mode: 0o600, mtime: recent(10) });
  pl.file('.lesshst', 0, lit('.less-history-file:\n.search\n"error\n"TODO\n'), { mode: 0o600 });
  pl.file('.wget-hsts', 0, lit('# HSTS 1.0 Known Hosts database for GNU Wget.\n# Edit at your own risk.\n# <hostname>\t<port>\t<incl. subdomains>\t<created>\t<max-age>\ngithub.com\t0\t1\t1712345678\t31536000\n'));
  pl.file('.sudo_as_admin_successful', 0, lit(''), { mtime: old });
  pl.file('.selected_editor', 0, lit('# Generated by /usr/bin/select-editor\nSELECTED_EDITOR="/usr/bin/vim.basic"\n'), { mtime: old });
  pl.file('.xsession-errors', Math.round(r.int(20 * KiB, 200 * KiB) * Math.max(sc, 0.2)), text('log'), { mode: 0o600, mtime: recent(1) });
  pl.file('.Xauthority', r.int(100, 200), bin(), { mode: 0o600, mtime: recent(1) });
  pl.file('.ICEauthority', r.int(400, 900), bin(), { mode: 0o600, mtime: recent(1) });
  pl.file('.face', r.int(8 * KiB, 40 * KiB), bin('png'));
  pl.link('.face.icon', '.face');

  // ssh and gpg.
  pl.dir('.ssh', 0o700);
  pl.file('.ssh/config', 0, lit(`Host *\n    ServerAliveInterval 60\n    AddKeysToAgent yes\n\nHost build\n    HostName build.internal.example.org\n    User ${USER}\n    IdentityFile ~/.ssh/id_ed25519\n\nHost gitlab\n    HostName gitlab.example.org\n    User git\n`), { mode: 0o600 });
  const ed = `-----BEGIN OPENSSH PRIVATE KEY-----\n${wrap(base64(r, 300), 70)}\n-----END OPENSSH PRIVATE KEY-----\n`;
  const edPub = `ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${base64(r, 32).slice(0, 43)} ${USER}@desktop\n`;
  pl.file('.ssh/id_ed25519', 0, lit(ed), { mode: 0o600, mtime: old });
  pl.file('.ssh/id_ed25519.pub', 0, lit(edPub), { mtime: old });
  const rsa = `-----BEGIN OPENSSH PRIVATE KEY-----\n${wrap(base64(r, 1800), 70)}\n-----END OPENSSH PRIVATE KEY-----\n`;
  pl.file('.ssh/id_rsa', 0, lit(rsa), { mode: 0o600, mtime: old });
  pl.file('.ssh/id_rsa.pub', 0, lit(`ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABgQ${base64(r, 380)} ${USER}@desktop\n`), { mtime: old });
  pl.file('.ssh/authorized_keys', 0, lit(edPub), { mode: 0o600, mtime: old });
  let kh = '';
  const nHosts = r.int(5, 30);
  for (let i = 0; i < nHosts; i++) kh += `|1|${base64(r, 20)}|${base64(r, 20)} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI${base64(r, 32).slice(0, 43)}\n`;
  pl.file('.ssh/known_hosts', 0, lit(kh), { mtime: recent(20) });
  pl.dir('.gnupg', 0o700);
  pl.emptyDir('.gnupg/private-keys-v1.d', 0o700);
  pl.file('.gnupg/pubring.kbx', r.int(1 * KiB, 8 * KiB), bin('kbx'));
  pl.file('.gnupg/trustdb.gpg', 1200, bin(), { mode: 0o600 });
  pl.file('.gnupg/gpg-agent.conf', 0, lit('default-cache-ttl 3600\nmax-cache-ttl 86400\npinentry-program /usr/bin/pinentry-gnome3\n'), { mode: 0o600 });

  // Desktop session configuration.
  pl.file('.config/user-dirs.dirs', 0, lit(USER_DIRS), { mtime: old });
  pl.file('.config/user-dirs.locale', 0, lit('en_US\n'), { mtime: old });
  pl.file('.config/mimeapps.list', 0, lit(MIMEAPPS));
  pl.file('.config/monitors.xml', 0, lit(MONITORS));
  pl.file('.config/dconf/user', r.int(12 * KiB, 60 * KiB), bin('gvariant'), { mtime: recent(1) });
  pl.file('.config/gtk-3.0/settings.ini', 0, lit('[Settings]\ngtk-application-prefer-dark-theme=1\ngtk-theme-name=Adwaita-dark\ngtk-icon-theme-name=Adwaita\ngtk-font-name=Cantarell 11\n'));
  let bm = '';
  for (const d of ['Documents', 'Downloads', 'src/project', 'Pictures/Screenshots', 'Documents/Work']) bm += `file://${HOME}/${d.replace(/ /g, '%20')} ${d.split('/').pop()}\n`;
  bm += 'sftp://build.internal.example.org/srv/builds builds\n';
  pl.file('.config/gtk-3.0/bookmarks', 0, lit(bm));
  pl.file('.config/fontconfig/fonts.conf', 0, lit(FONTS_CONF), { mtime: old });
  pl.dir('.config/pulse', 0o700);
  pl.file('.config/pulse/cookie', 256, bin(), { mode: 0o600, mtime: old });
  const machineId = r.hex(32);
  pl.file(`.config/pulse/${machineId}-default-sink`, 0, lit('alsa_output.pci-0000_00_1f.3.analog-stereo\n'));
  pl.file(`.config/pulse/${machineId}-default-source`, 0, lit('alsa_input.pci-0000_00_1f.3.analog-stereo\n'));
  pl.file('.config/autostart/nextcloud.desktop', 0, lit('[Desktop Entry]\nName=Nextcloud\nExec=/usr/bin/nextcloud --background\nTerminal=false\nType=Application\nX-GNOME-Autostart-Delay=10\n'));
  pl.link('.config/systemd/user/default.target.wants/syncthing.service', '/usr/lib/systemd/user/syncthing.service');
  pl.file('.config/Code/User/settings.json', r.int(600, 3000), text('json'), { mtime: recent(40) });
  pl.file('.config/Code/User/keybindings.json', 0, lit('// Place your key bindings in this file to override the defaults\n[\n  { "key": "ctrl+shift+t", "command": "workbench.action.terminal.new" }\n]\n'));
  pl.file('.config/htop/htoprc', r.int(800, 1600), text('conf'));

  // Keyrings, recently-used, applications.
  pl.dir('.local/share/keyrings', 0o700);
  pl.file('.local/share/keyrings/login.keyring', r.int(2 * KiB, 8 * KiB), bin('keyring'), { mode: 0o600, mtime: recent(5) });
  pl.file('.local/share/keyrings/user.keystore', r.int(200, 600), bin(), { mode: 0o600, mtime: old });
  pl.file('.local/share/recently-used.xbel', r.int(10 * KiB, 80 * KiB), text('xml'), { mtime: recent(1) });
  pl.link('.local/share/applications/firefox.desktop', '/usr/share/applications/firefox.desktop');
  pl.emptyDir('.local/share/Trash/expunged', 0o700);
  pl.dir('.local/share/Trash', 0o700);
  pl.emptyDir('.local/share/nautilus/scripts');
  pl.emptyDir('.local/state/wireplumber');

  // Firefox profile.
  pl.dir('.mozilla/firefox/Crash Reports', 0o755);
  pl.file('.mozilla/firefox/Crash Reports/InstallTime20240520122424', 0, lit('1716300000'), { mtime: old });
  const installHash = r.hex(16).toUpperCase();
  pl.file('.mozilla/firefox/profiles.ini', 0, lit(`[Install${installHash}]\nDefault=${ctx.prof}\nLocked=1\n\n[Profile0]\nName=default-release\nIsRelative=1\nPath=${ctx.prof}\nDefault=1\n\n[General]\nStartWithLastProfile=1\nVersion=2\n`), { mtime: old });
  pl.file('.mozilla/firefox/installs.ini', 0, lit(`[${installHash}]\nDefault=${ctx.prof}\nLocked=1\n`), { mtime: old });
  pl.dir(ff, 0o700);
  pl.file(`${ff}/prefs.js`, r.int(8 * KiB, 30 * KiB), text('prefs'), { mode: 0o600, mtime: recent(1) });
  pl.file(`${ff}/extensions.json`, r.int(20 * KiB, 60 * KiB), text('json'), { mode: 0o600, mtime: recent(3) });
  pl.file(`${ff}/xulstore.json`, r.int(300, 2000), text('json'), { mode: 0o600, mtime: recent(1) });
  pl.file(`${ff}/sessionstore.jsonlz4`, Math.round(r.int(100 * KiB, 600 * KiB) * Math.max(sc, 0.1)), bin('mozlz4'), { mode: 0o600, mtime: recent(1) });
  pl.file(`${ff}/search.json.mozlz4`, r.int(2 * KiB, 8 * KiB), bin('mozlz4'), { mode: 0o600 });
  pl.file(`${ff}/compatibility.ini`, 0, lit('[Compatibility]\nLastVersion=126.0.1_20240526221752/20240526221752\nLastOSABI=Linux_x86_64-gcc3\nLastPlatformDir=/usr/lib/firefox\nLastAppDir=/usr/lib/firefox/browser\n'), { mode: 0o600, mtime: recent(3) });
  pl.file(`${ff}/times.json`, 0, lit('{\n"created": 1684146000000,\n"firstUse": null\n}'), { mode: 0o600, mtime: old });
  pl.file(`${ff}/containers.json`, r.int(800, 1500), text('json'), { mode: 0o600 });
  pl.file(`${ff}/handlers.json`, r.int(500, 1200), text('json'), { mode: 0o600 });
  pl.emptyDir(`.cache/mozilla/firefox/${ctx.prof}/cache2/doomed`);
  pl.link(`${ff}/lock`, '10.0.2.15:+2417', recent(1));
  // Real SQLite databases (sizes are estimates; written by sqlite3).
  const places = clamp(Math.round(ctx.files / 15), 300, 5000);
  pl.file(`${ff}/places.sqlite`, estimateDb('places', places), { t: 'sqlite', db: 'places', rows: places }, { mode: 0o644, mtime: recent(1) });
  const cookies = clamp(Math.round(ctx.files / 60), 100, 1500);
  pl.file(`${ff}/cookies.sqlite`, estimateDb('cookies', cookies), { t: 'sqlite', db: 'cookies', rows: cookies }, { mode: 0o644, mtime: recent(1) });
  const forms = clamp(Math.round(ctx.files / 250), 30, 300);
  pl.file(`${ff}/formhistory.sqlite`, estimateDb('formhistory', forms), { t: 'sqlite', db: 'formhistory', rows: forms }, { mode: 0o644, mtime: recent(5) });

  // Chromium profile.
  const cr = '.config/chromium';
  pl.file(`${cr}/Local State`, r.int(3 * KiB, 12 * KiB), text('json'), { mode: 0o600, mtime: recent(4) });
  pl.file(`${cr}/Default/Preferences`, r.int(10 * KiB, 40 * KiB), text('json'), { mode: 0o600, mtime: recent(4) });
  pl.file(`${cr}/Default/Bookmarks`, r.int(2 * KiB, 20 * KiB), text('json'), { mode: 0o600, mtime: recent(30) });
  const crUrls = clamp(Math.round(ctx.files / 40), 100, 2000);
  pl.file(`${cr}/Default/History`, estimateDb('chromium-history', crUrls), { t: 'sqlite', db: 'chromium-history', rows: crUrls }, { mode: 0o600, mtime: recent(4) });
  const ls = `${cr}/Default/Local Storage/leveldb`;
  pl.file(`${ls}/CURRENT`, 0, lit('MANIFEST-000001\n'));
  pl.file(`${ls}/LOCK`, 0, lit(''));
  pl.file(`${ls}/LOG`, r.int(200, 600), text('log'));
  pl.file(`${ls}/MANIFEST-000001`, r.int(40, 300), bin());
  pl.file(`${ls}/000003.log`, r.int(20 * KiB, 200 * KiB), bin());
  pl.link(`${cr}/SingletonLock`, `desktop-${r.int(1, 99)}-${r.int(1000, 99999)}`, recent(4));
  pl.link(`${cr}/SingletonCookie`, String(r.u32() % 1e9 | 0), recent(4));
  pl.link(`${cr}/SingletonSocket`, `/tmp/.org.chromium.Chromium.${base64(r, 6).replace(/[+/=]/g, 'x')}/SingletonSocket`, recent(4));

  // bin/ scripts and ~/.local/bin links, dotfiles repo.
  const scripts: [string, TextStyle][] = [['backup.sh', 'sh'], ['sync-photos.sh', 'sh'], ['mkthumbs.py', 'py'], ['vpn-up', 'sh'], ['git-cleanup', 'sh']];
  for (const [name, style] of scripts) pl.file(`bin/${name}`, r.int(300, 4 * KiB), text(style), { mode: 0o755 });
  pl.link('.local/bin/backup', '../../bin/backup.sh');
  pl.link('.local/bin/mkthumbs', '../../bin/mkthumbs.py');
  pl.file('.local/bin/code-insiders', r.int(500, 2000), text('sh'), { mode: 0o755 });
  pl.file('src/dotfiles/vimrc', r.int(2 * KiB, 8 * KiB), text('conf'));
  pl.file('src/dotfiles/tmux.conf', r.int(500, 3 * KiB), text('conf'));
  pl.file('src/dotfiles/zshrc', r.int(1 * KiB, 6 * KiB), text('sh'));
  pl.file('src/dotfiles/install.sh', r.int(500, 2 * KiB), text('sh'), { mode: 0o755 });
  pl.link('.vimrc', 'src/dotfiles/vimrc');
  pl.link('.tmux.conf', 'src/dotfiles/tmux.conf');

  // Desktop.
  pl.file('Desktop/firefox.desktop', 0, lit('[Desktop Entry]\nVersion=1.0\nName=Firefox Web Browser\nExec=firefox %u\nIcon=firefox\nTerminal=false\nType=Application\nCategories=GNOME;GTK;Network;WebBrowser;\n'), { mode: 0o755 });
  pl.link('Desktop/project', '../src/project');

  // Unicode names, and a document symlink.
  pl.file('Documents/Résumé.txt', r.int(2 * KiB, 6 * KiB), text('prose'));
  pl.file('Documents/日本語メモ.md', r.int(1 * KiB, 4 * KiB), text('md'));
  pl.file('Documents/Cafe\u0301 menu (NFD).txt', r.int(300, 2 * KiB), text('prose'));
  pl.file('Documents/📎 Attachments/todo ✅.txt', r.int(200, 1 * KiB), text('md'));
  pl.file('Documents/Ünïcödé – Entwurf (v2).odt', r.int(20 * KiB, 60 * KiB), bin('odt'));
  pl.file('Documents/Reports/annual-report-2024.pdf', Math.round(r.int(300 * KiB, 900 * KiB) * Math.max(sc, 0.05)), bin('pdf'));
  pl.link('Documents/latest-report.pdf', 'Reports/annual-report-2024.pdf');
  pl.file('Pictures/🎉 Party 2024/IMG_20240614_203311.jpg', Math.round(r.int(1 * MiB, 3 * MiB) * Math.max(sc, 0.03)), bin('jpg'));
  pl.file('Music/Sigur Rós/Ágætis byrjun/01 Intro.mp3', Math.round(r.int(1 * MiB, 3 * MiB) * Math.max(sc, 0.03)), bin('mp3'));
  pl.emptyDir('Videos/Webcam');

  // Git project (proportional to the file count). Written before `git add`.
  const proj = 'src/project';
  const g = clamp(Math.round(ctx.files * 0.004), 12, 400);
  const t1 = pl.time(120, 1, 10);
  const t2 = t1 + 86400 * r.int(1, 9) + r.int(0, 86399);
  const gm = () => t1 - r.float() * 86400 * 30;
  let gitBytes = 0;
  const treeDirs = new Set<string>(['']);
  const gfile = (rel: string, size: number, c: Content, mode = 0o644) => {
    const f = pl.file(`${proj}/${rel}`, size, c, { mode, mtime: gm() });
    gitBytes += Math.round(f.size * 0.45) + 30;
    const dn = rel.includes('/') ? rel.slice(0, rel.lastIndexOf('/')) : '';
    for (let d = dn; ; d = d.includes('/') ? d.slice(0, d.lastIndexOf('/')) : '') {
      treeDirs.add(d);
      if (d === '') break;
    }
  };
  gfile('README.md', r.int(2 * KiB, 8 * KiB), text('md'));
  gfile('LICENSE', 0, lit(MIT));
  gfile('.gitignore', 0, lit('node_modules/\ndist/\n*.log\n.env\n'));
  gfile('package.json', r.int(600, 1500), text('json'));
  gfile('tsconfig.json', r.int(300, 800), text('json'));
  gfile('assets/logo.png', r.int(4 * KiB, 30 * KiB), bin('png'));
  gfile('scripts/release.sh', r.int(500, 3 * KiB), text('sh'), 0o755);
  const srcDirs = ['src', 'src/core', 'src/util', 'src/api', 'src/ui/components', 'src/ui/pages', 'test', 'test/fixtures', 'docs', 'scripts'];
  for (let i = 7; i < g; i++) {
    const d = srcDirs[r.u32() % srcDirs.length]!;
    const ext = d === 'docs' ? 'md' : d === 'scripts' ? 'sh' : d === 'test/fixtures' ? 'json' : d.startsWith('test') ? 'test.ts' : 'ts';
    const tg = new TextGen(r, 0);
    gfile(`${d}/${tg.ident()}.${ext}`, lognormal(r, 3 * KiB, 0.9, 120, 40 * KiB), contentFor(`x.${ext === 'test.ts' ? 'ts' : ext}`), ext === 'sh' ? 0o755 : 0o644);
  }
  // Second commit adds a changelog.
  const ch = pl.file(`${proj}/CHANGELOG.md`, r.int(1 * KiB, 4 * KiB), text('md'), { mtime: t2 - r.int(60, 3600), phase: 1 });
  gitBytes += Math.round(ch.size * 0.45) + 30;
  // Loose objects: blobs + trees (+1 new root tree) + 2 commits; plus 6 metadata files.
  const blobs = g + 1;
  const gitFiles = blobs + treeDirs.size + 1 + 2 + 6;
  gitBytes += (treeDirs.size + 1) * 400 + 2 * 200 + 3 * KiB + g * 100;
  return { gitProject: proj, gitDates: [t1, t2], gitFiles, gitBytes };
}

/** Rough size of the generated SQLite databases (only used for budgeting). */
function estimateDb(db: DbKind, rows: number): number {
  switch (db) {
    case 'places':
      return 32 * KiB * 8 + rows * 520;
    case 'cookies':
      return 32 * KiB * 3 + rows * 300;
    case 'formhistory':
      return 4 * KiB * 4 + rows * 90;
    case 'chromium-history':
      return 4 * KiB * 8 + rows * 330;
  }
}

// ---------------------------------------------------------------------------
// Bulk part: many small files, some medium ones, a few big ones
// ---------------------------------------------------------------------------

interface SmallDraw {
  area: number;
  size: number;
}

interface SmallArea {
  w: number;
  median: number;
  sigma: number;
  min: number;
  max: number;
  gen: (r: Rng) => { path: string; content?: Content; mode?: number; mtime: number; link?: [string, string] };
}

const MEAN_MEDIUM = (5 * MiB - 100 * KiB) / Math.log((5 * MiB) / (100 * KiB));

function planBulk(pl: Planner, ctx: Ctx, fixedFiles: number, fixedBytes: number): void {
  const r = pl.r;
  const prof = ctx.prof;
  const ff = ctx.ffProfile;
  const words = (n: number) => new TextGen(r, 0).words(n);
  const ident = () => new TextGen(r, 0).ident();
  const cap = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

  // Pools used by several areas.
  const domains = DOMAINS;
  const nodePkgs: { name: string; n: number; bin: boolean }[] = [];
  const nPkgs = Math.max(8, Math.round(ctx.files / 250));
  for (let i = 0; i < nPkgs; i++) {
    const k = r.u32() % 4;
    const name = k === 0 ? `@${WORDS[r.u32() % WORDS.length]}/${WORDS[r.u32() % WORDS.length]}` : k === 1 ? `${WORDS[r.u32() % WORDS.length]}-${WORDS[r.u32() % WORDS.length]}` : `${WORDS[r.u32() % WORDS.length]}${r.u32() % 3 === 0 ? 'js' : ''}`;
    if (!nodePkgs.some((p) => p.name === name)) nodePkgs.push({ name, n: 0, bin: r.chance(0.1) });
  }
  const vsExts: string[] = [];
  for (let i = 0, n = clamp(Math.round(ctx.files / 2500), 3, 40); i < n; i++) vsExts.push(`${WORDS[r.u32() % WORDS.length]}.${WORDS[r.u32() % WORDS.length]}-${r.int(0, 3)}.${r.int(0, 40)}.${r.int(0, 20)}`);
  const scratchRepos = ['scratch', 'aoc-2023', 'homelab', 'thesis-code', 'dotnet-playground', 'rust-learning'];
  const trashNames: string[] = [];
  const eApps = ['Slack', 'discord', 'Signal', 'Code', 'Element'];
  // Pools of directory names, so that the number of directories grows like a
  // real home's (roughly one directory per 10-20 files), not one per file.
  const pools = new Map<string, string[]>();
  const fromPool = (name: string, size: number, make: () => string): string => {
    let p = pools.get(name);
    if (!p) {
      p = [];
      pools.set(name, p);
    }
    if (p.length < size && (p.length === 0 || r.chance(0.5))) {
      const v = make();
      p.push(v);
      return v;
    }
    return p[r.u32() % p.length]!;
  };
  const scaled = (per: number, lo: number, hi: number) => clamp(Math.round(ctx.files / per), lo, hi);

  const small: SmallArea[] = [
    {
      // Firefox HTTP cache entries (flat directory, 40 hex upper-case names).
      w: 18, median: 4 * KiB, sigma: 1.2, min: 150, max: 64 * KiB,
      gen: () => ({ path: `.cache/mozilla/firefox/${prof}/cache2/entries/${r.hex(40).toUpperCase()}`, content: bin(), mtime: pl.time(60, 1.5) }),
    },
    {
      w: 7, median: 3 * KiB, sigma: 1.2, min: 100, max: 64 * KiB,
      gen: () => ({ path: `.cache/chromium/Default/Cache/Cache_Data/${r.hex(16)}_0`, content: bin(), mtime: pl.time(60, 1.5), mode: 0o600 }),
    },
    {
      w: 5, median: 12 * KiB, sigma: 0.6, min: 1 * KiB, max: 64 * KiB,
      gen: () => {
        const size = r.weighted(['normal', 'large', 'x-large'], [6, 3, 1]);
        pl.dir('.cache/thumbnails', 0o700);
        pl.dir(`.cache/thumbnails/${size}`, 0o700);
        return { path: `.cache/thumbnails/${size}/${r.hex(32)}.png`, content: bin('png'), mode: 0o600, mtime: pl.time(400, 1.3) };
      },
    },
    {
      w: 5, median: 4 * KiB, sigma: 1.3, min: 100, max: 128 * KiB,
      gen: () => {
        const k = r.u32() % 5;
        const t = pl.time(200, 1.5);
        if (k === 0) return { path: `.cache/mesa_shader_cache/${fromPool('mesa', scaled(400, 2, 256), () => r.hex(2))}/${r.hex(38)}`, content: bin(), mtime: t };
        if (k === 1) return { path: `.cache/fontconfig/${r.hex(32)}-le64.cache-9`, content: bin(), mtime: t };
        if (k === 2) return { path: `.cache/pip/http-v2/${fromPool('pip', scaled(1000, 2, 200), () => r.hex(5).split('').join('/'))}/${r.hex(56)}`, content: bin(), mode: 0o600, mtime: t };
        if (k === 3) return { path: `.cache/go-build/${fromPool('gob', scaled(400, 2, 256), () => r.hex(2))}/${r.hex(64)}-d`, content: bin(), mtime: t };
        return { path: `.cache/gnome-software/icons/${r.hex(40)}-${ident()}.png`, content: bin('png'), mtime: t };
      },
    },
    {
      w: 5, median: 4 * KiB, sigma: 1.2, min: 200, max: 128 * KiB,
      gen: () => {
        const h = fromPool('npm', scaled(150, 4, 20000), () => r.hex(4));
        return { path: `.npm/_cacache/content-v2/sha512/${h.slice(0, 2)}/${h.slice(2, 4)}/${r.hex(124)}`, content: bin('gz'), mode: 0o644, mtime: pl.time(300, 1.2) };
      },
    },
    {
      // ~/.config/<app>/...
      w: 9, median: 800, sigma: 1.1, min: 20, max: 48 * KiB,
      gen: () => {
        const app = r.weighted(CONFIG_APPS, CONFIG_APPS.map((a) => a.w));
        const sub = r.pick(app.subdirs);
        const [ext, style] = r.pick(app.styles);
        return { path: `.config/${app.dir}/${sub ? sub + '/' : ''}${ident()}.${ext}`, content: text(style), mtime: pl.time(730, 1.6) };
      },
    },
    {
      // ~/.local/share/<app>/...
      w: 7, median: 2500, sigma: 1.2, min: 50, max: 96 * KiB,
      gen: () => {
        const app = r.weighted(LOCALSHARE_APPS, LOCALSHARE_APPS.map((a) => a.w));
        const sub = r.pick(app.subdirs);
        const name = app.dir.startsWith('evolution') ? `${Math.floor(pl.now) - r.int(0, 6e7)}.${r.int(1000, 99999)}_${r.int(1, 99)}.desktop:2,S` : app.ext === '' ? r.hex(16) : `${ident()}.${app.ext}`;
        const content: Content = app.text ? text(app.text) : contentFor(name);
        return { path: `.local/share/${app.dir}/${sub ? sub + '/' : ''}${name}`, content, mtime: pl.time(730, 1.3) };
      },
    },
    {
      // node_modules of the git project (ignored by its .gitignore).
      w: 14, median: 2 * KiB, sigma: 1.1, min: 60, max: 96 * KiB,
      gen: () => {
        const pkg = nodePkgs[r.u32() % nodePkgs.length]!;
        const base = `src/project/node_modules/${pkg.name}`;
        const t = pl.time(200, 1, 30);
        const n = pkg.n++;
        if (n === 0) return { path: `${base}/package.json`, content: text('json'), mtime: t };
        if (n === 1) return { path: `${base}/README.md`, content: text('md'), mtime: t };
        if (n === 2 && pkg.bin) {
          const bn = pkg.name.replace(/^@.*\//, '');
          return { path: `${base}/bin/cli.js`, content: text('js'), mode: 0o755, mtime: t, link: [`src/project/node_modules/.bin/${bn}`, `../${pkg.name}/bin/cli.js`] };
        }
        if (n === 3) return { path: `${base}/LICENSE`, content: lit(MIT), mtime: t };
        const d = r.pick(['lib', 'dist', 'dist/esm', 'dist/cjs', 'src', 'lib/utils', 'types']);
        const ext = d === 'types' ? 'd.ts' : r.pick(['js', 'js', 'js', 'mjs', 'd.ts', 'map']);
        return { path: `${base}/${d}/${ident()}.${ext === 'map' ? 'js.map' : ext}`, content: ext === 'map' ? text('json') : text('js'), mtime: t };
      },
    },
    {
      w: 6, median: 2500, sigma: 1.2, min: 80, max: 128 * KiB,
      gen: () => {
        const e = r.pick(vsExts);
        const d = r.pick(['out', 'dist', 'syntaxes', 'resources', 'node_modules/vscode-languageclient/lib', 'l10n']);
        const ext = d === 'syntaxes' || d === 'l10n' ? 'json' : d === 'resources' ? r.pick(['png', 'svg']) : 'js';
        return { path: `.vscode/extensions/${e}/${d}/${ident()}.${ext}`, content: contentFor(`x.${ext}`), mtime: pl.time(300, 1.2) };
      },
    },
    {
      // Firefox site storage (IndexedDB, cache API).
      w: 5, median: 4 * KiB, sigma: 1.3, min: 100, max: 128 * KiB,
      gen: () => {
        const origin = `https+++${fromPool('origins', scaled(600, 3, domains.length), () => r.pick(domains))}`;
        const k = r.u32() % 3;
        const t = pl.time(200, 1.4);
        if (k === 0) return { path: `${ff}/storage/default/${origin}/cache/morgue/${fromPool('morgue', scaled(800, 2, 255), () => String(r.int(1, 255)))}/{${uuid(r)}}.final`, content: bin(), mode: 0o644, mtime: t };
        if (k === 1) return { path: `${ff}/storage/default/${origin}/idb/${(hashString(origin) >>> 0).toString(10)}${origin.length}.files/${r.int(1, 99999)}`, content: bin(), mtime: t };
        return { path: `${ff}/storage/default/${origin}/cache/${r.hex(2)}-${r.hex(30)}.tmp`, content: bin(), mtime: t };
      },
    },
    {
      // Electron apps: lots of cache files.
      w: 4, median: 3 * KiB, sigma: 1.3, min: 100, max: 128 * KiB,
      gen: () => {
        const app = r.pick(eApps);
        const k = r.u32() % 3;
        const t = pl.time(90, 1.5);
        if (k === 0) return { path: `.config/${app}/Cache/Cache_Data/${r.hex(16)}_0`, content: bin(), mode: 0o600, mtime: t };
        if (k === 1) return { path: `.config/${app}/Code Cache/js/${r.hex(16)}_0`, content: bin(), mode: 0o600, mtime: t };
        return { path: `.config/${app}/Service Worker/CacheStorage/${fromPool('sw' + app, scaled(2000, 1, 20), () => r.hex(40))}/${uuid(r)}`, content: bin(), mode: 0o600, mtime: t };
      },
    },
    {
      w: 5, median: 4 * KiB, sigma: 1.1, min: 100, max: 64 * KiB,
      gen: () => {
        const folder = r.pick(DOC_FOLDERS);
        if (folder === 'private') pl.dir('Documents/private', 0o700);
        const ext = r.weighted(['txt', 'md', 'odt', 'pdf', 'docx', 'csv', 'xlsx', 'tex'], [5, 4, 2, 3, 2, 1, 1, 1]);
        const name = r.chance(0.08) ? `${r.pick(UNICODE_WORDS)} ${words(2)}` : r.chance(0.5) ? `${cap(words(r.int(1, 4)))}` : `${words(2).replace(/ /g, '-')}-${r.int(2019, 2025)}`;
        const mode = folder.startsWith('Archive') && r.chance(0.3) ? 0o444 : folder === 'private' ? 0o600 : 0o644;
        return { path: `Documents/${folder}/${name}.${ext}`, mode, mtime: pl.time(730, 1) };
      },
    },
    {
      w: 4, median: 2500, sigma: 1.1, min: 60, max: 64 * KiB,
      gen: () => {
        const repo = r.pick(scratchRepos);
        const ext = r.weighted(['py', 'c', 'h', 'go', 'rs', 'sh', 'md', 'txt', 'json'], [4, 2, 1, 2, 2, 1, 1, 1, 1]);
        const d = r.pick(['', 'src', 'src/lib', 'tests', 'notes', 'data']);
        return { path: `src/${repo}/${d ? d + '/' : ''}${ident()}.${ext}`, mode: ext === 'sh' ? 0o755 : 0o644, mtime: pl.time(730, 1) };
      },
    },
    {
      w: 2, median: 6 * KiB, sigma: 1.3, min: 100, max: 128 * KiB,
      gen: () => {
        // Trash: files/<name> and matching info/<name>.trashinfo.
        if (trashNames.length > 0 && r.chance(0.5)) {
          const n = trashNames.pop()!;
          return { path: `.local/share/Trash/info/${n}.trashinfo`, content: lit(`[Trash Info]\nPath=${HOME}/Documents/${encodeURI(n)}\nDeletionDate=${ymd(pl.now - r.int(0, 3e7))}T${hms(pl.now, ':')}\n`), mtime: pl.time(300) };
        }
        const n = `${words(r.int(1, 3)).replace(/ /g, '_')}${r.int(1, 999)}.${r.pick(['txt', 'pdf', 'png', 'jpg', 'log'])}`;
        if (pl.has(`.local/share/Trash/files/${n}`)) return { path: `.local/share/Trash/files/x${r.hex(6)}-${n}`, mtime: pl.time(600) };
        trashNames.push(n);
        return { path: `.local/share/Trash/files/${n}`, mtime: pl.time(600) };
      },
    },
    {
      w: 2, median: 12 * KiB, sigma: 1.3, min: 100, max: 128 * KiB,
      gen: () => {
        const app = r.pick(['gnome-shell', 'wireplumber', 'nvim', 'evolution', 'tracker3', 'syncthing']);
        return { path: `.local/state/${app}/${ident()}.log`, content: text('log'), mtime: pl.time(60, 1.5) };
      },
    },
    {
      w: 2, median: 8 * KiB, sigma: 1.0, min: 300, max: 64 * KiB,
      gen: () => (r.chance(0.5)
        ? { path: `Pictures/Icons/${ident()}.svg`, content: text('xml'), mtime: pl.time(730) }
        : { path: `Pictures/Stickers/${ident()}.png`, content: bin('png'), mtime: pl.time(730) }),
    },
  ];

  // --- Budgeting -----------------------------------------------------------
  const N = ctx.files;
  const S = ctx.size;
  const sr = r.fork(1); // size stream, independent of path generation
  const draws: SmallDraw[] = [];
  const weights = small.map((a) => a.w);
  const idxs = small.map((_, i) => i);
  let M = Math.max(0, N - fixedFiles);
  let smallSum = 0;
  for (let i = 0; i < M; i++) {
    const area = sr.weighted(idxs, weights);
    const a = small[area]!;
    const size = lognormal(sr, a.median, a.sigma, a.min, a.max);
    draws.push({ area, size });
    smallSum += size;
  }
  const meanSmall = M > 0 ? smallSum / M : 0;

  // Big files.
  const big: { path: string; magic?: string; mib?: boolean; mode?: number }[] = [
    { path: 'Videos/2024-07-14 Family holiday.mp4', magic: 'mp4' },
    { path: 'VMs/win11-dev/disk.img', mib: true },
    { path: 'Downloads/ubuntu-24.04.1-desktop-amd64.iso' },
    { path: 'Videos/Screencasts/demo-recording.webm', magic: 'mkv' },
    { path: '.local/share/gnome-boxes/images/fedora40', magic: 'qcow2', mib: true },
    { path: 'Videos/Movies/Big Buck Bunny (2008).mkv', magic: 'mkv' },
    { path: 'Downloads/backup-2024-11.tar.gz', magic: 'gz' },
    { path: 'VMs/archlinux.qcow2', magic: 'qcow2', mib: true },
  ];
  let bigBudget = 0;
  // Large files take ~45% of the size, but leave some room for medium files in small profiles.
  if (ctx.bigFiles) bigBudget = Math.max(0, Math.min(0.45 * S, 0.7 * (S - fixedBytes - meanSmall * M)));
  let k = 0;
  if (bigBudget >= 256 * KiB) {
    k = bigBudget > 8 * 450 * MiB ? Math.ceil(bigBudget / (450 * MiB)) : clamp(Math.round(bigBudget / (150 * MiB)), 2, 8);
  }
  k = Math.min(k, Math.max(0, N - fixedFiles));
  let bigBytes = 0;
  if (k > 0) {
    const w: number[] = [];
    for (let i = 0; i < k; i++) w.push(0.4 + 1.2 * sr.float());
    const wsum = w.reduce((a, b) => a + b, 0);
    for (let i = 0; i < k; i++) {
      const b = big[i] ?? { path: `Videos/Clips/clip-${String(i).padStart(3, '0')}.mp4`, magic: 'mp4' };
      let size = Math.min(500 * MiB, Math.floor((bigBudget * w[i]!) / wsum));
      size = b.mib && size >= MiB ? Math.floor(size / MiB) * MiB : Math.floor(size / 4096) * 4096;
      bigBytes += size;
      pl.file(b.path, size, bin(b.magic), { mtime: pl.time(730, 1), mode: b.mode ?? 0o644 });
    }
  }
  M = Math.max(0, N - fixedFiles - k);
  draws.length = Math.min(draws.length, M);

  // Medium files fill what the small ones leave.
  const R = S - fixedBytes - bigBytes;
  const sumFirst = (m: number) => {
    let s = 0;
    for (let i = 0; i < m; i++) s += draws[i]!.size;
    return s;
  };
  let nMed = 0;
  if (M > 0 && MEAN_MEDIUM > meanSmall) {
    nMed = clamp(Math.round((R - M * meanSmall) / (MEAN_MEDIUM - meanSmall)), 0, Math.floor(M * 0.25));
  }
  const nSmall = M - nMed;
  const sSmall = sumFirst(nSmall);
  const B = R - sSmall;
  let smallScale = 1;
  if (B <= 0 || nMed === 0) {
    // Not enough room (or no medium files): scale the small files to fit.
    if (nMed > 0) nMed = 0;
    smallScale = sSmall > 0 ? Math.max(0, R) / sumFirst(M) : 1;
  }
  const nSmallFinal = M - nMed;

  // Small files.
  const smallSpecs: FileSpec[] = [];
  for (let i = 0; i < nSmallFinal; i++) {
    const d = draws[i]!;
    const a = small[d.area]!;
    const g = a.gen(r);
    const size = Math.floor(d.size * smallScale);
    const spec = pl.file(g.path, size, g.content ?? contentFor(g.path), { mode: g.mode ?? 0o644, mtime: g.mtime });
    smallSpecs.push(spec);
    if (g.link && !pl.has(g.link[0])) pl.link(g.link[0], g.link[1], g.mtime);
  }

  // Medium files.
  const medSpecs: FileSpec[] = [];
  const dupSpecs = new Set<FileSpec>();
  if (nMed > 0) {
    const artists = ARTISTS;
    const albums = new Map<string, string[]>();
    const medium: { w: number; gen: () => { path: string; mode?: number; mtime: number; dup?: boolean } }[] = [
      {
        w: 34,
        gen: () => {
          const t = pl.time(730, 1);
          return { path: `Pictures/${new Date(t * 1000).getUTCFullYear()}/${pad2(new Date(t * 1000).getUTCMonth() + 1)}/IMG_${ymd(t, '')}_${hms(t)}.jpg`, mtime: t };
        },
      },
      {
        w: 16,
        gen: () => {
          const artist = r.pick(artists);
          let al = albums.get(artist);
          if (!al) {
            al = [];
            albums.set(artist, al);
            const n = r.int(1, 4);
            for (let i = 0; i < n; i++) al.push(cap(words(r.int(1, 3))));
          }
          const album = r.pick(al);
          return { path: `Music/${artist}/${album}/${pad2(r.int(1, 16))} ${cap(words(r.int(1, 4)))}.${r.weighted(['mp3', 'flac', 'ogg'], [6, 3, 1])}`, mtime: pl.time(730, 0.7) };
        },
      },
      {
        w: 12,
        gen: () => {
          const ext = r.weighted(['pdf', 'zip', 'deb', 'tar.gz', 'AppImage', 'docx', 'xlsx', 'jpg'], [4, 2, 2, 1, 1, 1, 1, 1]);
          return { path: `Downloads/${words(r.int(1, 3)).replace(/ /g, r.pick(['-', '_', ' ']))}${r.chance(0.3) ? '-' + r.int(1, 20) + '.' + r.int(0, 9) : ''}.${ext}`, mode: ext === 'AppImage' ? 0o755 : 0o644, mtime: pl.time(400, 1.2), dup: r.chance(0.05) };
        },
      },
      {
        w: 10,
        gen: () => {
          const folder = r.pick(DOC_FOLDERS);
          return { path: `Documents/${folder}/${cap(words(r.int(1, 4)))}.${r.weighted(['pdf', 'odt', 'docx', 'pptx', 'ods'], [5, 2, 2, 1, 1])}`, mode: folder === 'private' ? 0o600 : 0o644, mtime: pl.time(730, 1) };
        },
      },
      { w: 8, gen: () => ({ path: `.cache/mozilla/firefox/${prof}/cache2/entries/${r.hex(40).toUpperCase()}`, mtime: pl.time(60, 1.5) }) },
      {
        w: 8,
        gen: () => {
          const t = pl.time(500, 1.2);
          return { path: `Pictures/Screenshots/Screenshot from ${ymd(t)} ${hms(t, '-')}.png`, mtime: t };
        },
      },
      {
        w: 6,
        gen: () => (r.chance(0.5)
          ? { path: `.cache/pip/wheels/${r.hex(2)}/${r.hex(2)}/${r.hex(56)}/${ident()}-${r.int(0, 9)}.${r.int(0, 30)}-py3-none-any.whl`, mtime: pl.time(300) }
          : { path: `.local/share/fonts/${cap(ident())}-${r.pick(['Regular', 'Bold', 'Italic'])}.ttf`, mtime: pl.time(730) }),
      },
      {
        w: 6,
        gen: () => {
          const t = pl.time(730, 1);
          return { path: `Videos/Clips/VID_${ymd(t, '')}_${hms(t)}.mp4`, mtime: t };
        },
      },
    ];
    const mw = medium.map((m) => m.w);
    let msum = 0;
    const mr = r.fork(2);
    const sizes: number[] = [];
    for (let i = 0; i < nMed; i++) {
      const s = mr.logUniform(100 * KiB, 5 * MiB);
      sizes.push(s);
      msum += s;
    }
    const f = B / msum;
    for (let i = 0; i < nMed; i++) {
      const m = r.weighted(medium, mw);
      const g = m.gen();
      let size = Math.floor(sizes[i]! * f);
      let key: number | undefined;
      // A few exact duplicates ("(1)" copies in Downloads): same bytes as an earlier medium file.
      if (g.dup && medSpecs.length > 0) {
        const orig = medSpecs[r.u32() % medSpecs.length]!;
        if (orig.content.t === 'bin' && orig.path.endsWith(extOf(g.path))) {
          size = orig.size;
          key = orig.key;
          dupSpecs.add(orig);
        }
      }
      const c = contentFor(g.path);
      const spec = pl.file(g.path, size, c.t === 'bin' ? c : bin(), { mode: g.mode ?? 0o644, mtime: g.mtime, ...(key !== undefined ? { key } : {}) });
      medSpecs.push(spec);
      if (key !== undefined) dupSpecs.add(spec);
    }
  }

  // Make the planned total exact: adjust the largest non-duplicate bulk file.
  let planned = fixedBytes + bigBytes;
  for (const s of smallSpecs) planned += s.size;
  for (const s of medSpecs) planned += s.size;
  let diff = S - planned;
  const adjustable = [...medSpecs, ...smallSpecs].filter((s) => s.content.t !== 'lit' && !dupSpecs.has(s));
  adjustable.sort((a, b) => b.size - a.size);
  for (const s of adjustable) {
    if (diff === 0) break;
    const n = Math.max(0, s.size + diff);
    diff -= n - s.size;
    s.size = n;
  }
}

function uuid(r: Rng): string {
  const h = r.hex(32);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function firefoxProfileName(r: Rng): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  for (let i = 0; i < 8; i++) s += alphabet[r.u32() % alphabet.length];
  return `${s}.default-release`;
}

function makePlan(o: Required<Pick<GenerateOptions, 'seed' | 'sizeBytes' | 'files' | 'bigFiles'>> & { nowMs: number }): Plan {
  const r = new Rng(o.seed, 0x9f0f11e);
  const pl = new Planner(r, Math.floor(o.nowMs / 1000));
  const prof = firefoxProfileName(r);
  const ctx: Ctx = {
    seed: o.seed,
    size: o.sizeBytes,
    files: o.files,
    bigFiles: o.bigFiles,
    prof,
    ffProfile: `.mozilla/firefox/${prof}`,
    scale: clamp(o.sizeBytes / (2 * GiB), 0, 1),
  };
  const git = planFixed(pl, ctx);
  const fixedFiles = pl.files.length + git.gitFiles;
  let fixedBytes = git.gitBytes;
  for (const f of pl.files) fixedBytes += f.size;
  planBulk(pl, ctx, fixedFiles, fixedBytes);
  const dirs = pl.dirTimes(new Set());
  let totalBytes = 0;
  for (const f of pl.files) totalBytes += f.size;
  return { files: pl.files, links: pl.links, dirs, gitProject: git.gitProject, gitDates: git.gitDates, profileDir: ctx.ffProfile, totalBytes };
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

const CHUNK = 4 * MiB;
/** Files of up to this size are rendered in memory and written with concurrent async I/O. */
const SMALL_MAX = CHUNK;
/** In-flight small-file writes (metadata syscalls are slow in VMs; overlapping them helps a lot). */
const CONCURRENCY = 16;

const pcb = <T>(fn: (cb: (err: NodeJS.ErrnoException | null, v: T) => void) => void): Promise<T> =>
  new Promise((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));

/** Bounded set of in-flight promises; remembers the first error. */
class InFlight {
  private readonly set = new Set<Promise<void>>();
  private error: unknown = null;
  private failed = false;

  add(p: Promise<void>): void {
    const q: Promise<void> = p.then(
      () => {
        this.set.delete(q);
      },
      (e: unknown) => {
        this.set.delete(q);
        if (!this.failed) {
          this.failed = true;
          this.error = e;
        }
      },
    );
    this.set.add(q);
  }

  async throttle(limit: number): Promise<void> {
    while (this.set.size >= limit) await Promise.race(this.set);
    if (this.failed) throw this.error;
  }

  async drain(): Promise<void> {
    await Promise.all(this.set);
    if (this.failed) throw this.error;
  }
}

class Writer {
  private readonly made = new Set<string>(['']);
  private readonly bufA = Buffer.allocUnsafeSlow(CHUNK);
  private readonly bufB = Buffer.allocUnsafeSlow(CHUNK);
  private readonly umask: number;
  readonly inflight = new InFlight();

  constructor(
    private readonly root: string,
    private readonly seed: number,
    private readonly nowMs: number,
  ) {
    // Read the umask without changing it (process.umask() without argument is deprecated).
    const old = process.umask(0o022);
    process.umask(old);
    this.umask = old;
  }

  mkdirs(rel: string): void {
    if (this.made.has(rel)) return;
    fs.mkdirSync(path.join(this.root, rel), { recursive: true });
    for (let d = rel; d !== '' && !this.made.has(d); d = d.includes('/') ? d.slice(0, d.lastIndexOf('/')) : '') this.made.add(d);
  }

  parentOf(rel: string): string {
    const i = rel.lastIndexOf('/');
    return i < 0 ? '' : rel.slice(0, i);
  }

  /** Bytes of a file of at most SMALL_MAX bytes. */
  render(f: FileSpec): Buffer {
    const c = f.content;
    if (c.t === 'lit') return c.data;
    if (c.t === 'text') return genText(c.style, f.size, new Rng(this.seed, 0x7e47, f.key), this.nowMs - 30 * 86400e3);
    if (c.t !== 'bin') throw new Error(`gen-profile: cannot render ${f.path}`);
    const b = Buffer.allocUnsafeSlow(f.size);
    new ByteStream(this.seed, 0xb17e5, f.key).fill(b);
    if (c.magic) c.magic.copy(b, 0, 0, Math.min(c.magic.length, f.size));
    return b;
  }

  /** Write a file; small files are queued (call inflight.drain() to wait), large ones awaited. */
  async writeFile(f: FileSpec): Promise<void> {
    this.mkdirs(this.parentOf(f.path));
    const full = path.join(this.root, f.path);
    if (f.size <= SMALL_MAX || f.content.t !== 'bin') {
      const data = this.render(f);
      await this.inflight.throttle(CONCURRENCY);
      this.inflight.add(this.writeSmall(full, f, data));
      return;
    }
    await this.inflight.drain();
    const fd = fs.openSync(full, 'w', f.mode);
    try {
      await this.writeLarge(fd, f.size, new ByteStream(this.seed, 0xb17e5, f.key), f.content.magic);
      if ((f.mode & ~this.umask) !== f.mode) fs.fchmodSync(fd, f.mode);
      fs.futimesSync(fd, f.mtime, f.mtime);
    } finally {
      fs.closeSync(fd);
    }
  }

  private async writeSmall(full: string, f: FileSpec, data: Buffer): Promise<void> {
    const fd = await pcb<number>((cb) => fs.open(full, 'w', f.mode, cb));
    try {
      let off = 0;
      while (off < data.length) off += await pcb<number>((cb) => fs.write(fd, data, off, data.length - off, null, cb));
      if ((f.mode & ~this.umask) !== f.mode) await pcb<void>((cb) => fs.fchmod(fd, f.mode, (e) => cb(e, undefined)));
      await pcb<void>((cb) => fs.futimes(fd, f.mtime, f.mtime, (e) => cb(e, undefined)));
    } finally {
      await pcb<void>((cb) => fs.close(fd, (e) => cb(e, undefined)));
    }
  }

  /** Random content, double-buffered: generate the next chunk while the previous one is written. */
  private async writeLarge(fd: number, size: number, s: ByteStream, magic?: Buffer): Promise<void> {
    const bufs = [this.bufA, this.bufB];
    let pending: Promise<void> | null = null;
    let off = 0;
    let which = 0;
    while (off < size) {
      const n = Math.min(CHUNK, size - off);
      const b = bufs[which]!;
      s.fill(b, 0, n);
      if (off === 0 && magic) magic.copy(b, 0, 0, Math.min(magic.length, n));
      if (pending) await pending;
      pending = writeAllAsync(fd, b, n, off);
      off += n;
      which ^= 1;
    }
    if (pending) await pending;
  }
}

function writeAllAsync(fd: number, buf: Buffer, len: number, position: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let off = 0;
    const step = () => {
      fs.write(fd, buf, off, len - off, position + off, (err, n) => {
        if (err) return reject(err);
        off += n;
        if (off < len) step();
        else resolve();
      });
    };
    step();
  });
}

// ---------------------------------------------------------------------------
// SQLite databases
// ---------------------------------------------------------------------------

function sq(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

function dbSql(db: DbKind, rows: number, r: Rng, nowSec: number): string {
  const g = new TextGen(r, 0);
  const out: string[] = [];
  const usec = (ageDays: number) => Math.floor((nowSec - r.float() * ageDays * 86400) * 1e6);
  const url = () => {
    const d = r.pick(DOMAINS);
    return `https://${d}/${g.w()}/${g.ident()}${r.chance(0.3) ? '?q=' + g.w() + '&page=' + r.int(1, 20) : ''}`;
  };
  const batch = (table: string, values: string[]) => {
    for (let i = 0; i < values.length; i += 200) out.push(`INSERT INTO ${table} VALUES\n${values.slice(i, i + 200).join(',\n')};`);
  };
  switch (db) {
    case 'places': {
      out.push('PRAGMA page_size=32768;', 'PRAGMA user_version=77;', 'BEGIN;');
      out.push(
        'CREATE TABLE moz_origins ( id INTEGER PRIMARY KEY, prefix TEXT NOT NULL, host TEXT NOT NULL, frecency INTEGER NOT NULL, UNIQUE (prefix, host) );',
        'CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url LONGVARCHAR, title LONGVARCHAR, rev_host LONGVARCHAR, visit_count INTEGER DEFAULT 0, hidden INTEGER DEFAULT 0 NOT NULL, typed INTEGER DEFAULT 0 NOT NULL, frecency INTEGER DEFAULT -1 NOT NULL, last_visit_date INTEGER , guid TEXT, foreign_count INTEGER DEFAULT 0 NOT NULL, url_hash INTEGER DEFAULT 0 NOT NULL , description TEXT, preview_image_url TEXT, site_name TEXT, origin_id INTEGER REFERENCES moz_origins(id));',
        'CREATE TABLE moz_historyvisits (id INTEGER PRIMARY KEY, from_visit INTEGER, place_id INTEGER, visit_date INTEGER, visit_type INTEGER, session INTEGER, source INTEGER DEFAULT 0 NOT NULL, triggeringPlaceId INTEGER);',
        'CREATE TABLE moz_bookmarks (id INTEGER PRIMARY KEY, type INTEGER, fk INTEGER DEFAULT NULL, parent INTEGER, position INTEGER, title LONGVARCHAR, keyword_id INTEGER, folder_type TEXT, dateAdded INTEGER, lastModified INTEGER, guid TEXT, syncStatus INTEGER NOT NULL DEFAULT 0, syncChangeCounter INTEGER NOT NULL DEFAULT 1);',
        'CREATE INDEX moz_places_url_hashindex ON moz_places (url_hash);',
        'CREATE INDEX moz_places_hostindex ON moz_places (rev_host);',
        'CREATE INDEX moz_places_lastvisitdateindex ON moz_places (last_visit_date);',
        'CREATE UNIQUE INDEX moz_places_guid_uniqueindex ON moz_places (guid);',
        'CREATE INDEX moz_historyvisits_placedateindex ON moz_historyvisits (place_id, visit_date);',
        'CREATE INDEX moz_historyvisits_dateindex ON moz_historyvisits (visit_date);',
      );
      batch('moz_origins', DOMAINS.map((d, i) => `(${i + 1}, 'https://', ${sq(d)}, ${r.int(100, 5000)})`));
      const places: string[] = [];
      for (let i = 1; i <= rows; i++) {
        const u = url();
        const host = u.split('/')[2]!;
        places.push(`(${i}, ${sq(u)}, ${sq(g.cap(g.words(r.int(2, 9))))}, ${sq(host.split('').reverse().join('') + '.')}, ${r.int(1, 40)}, 0, ${r.int(0, 1)}, ${r.int(50, 20000)}, ${usec(730)}, ${sq(base64(r, 9).replace(/[+/]/g, '_'))}, 0, ${r.u32() * 65536 + r.int(0, 65535)}, NULL, NULL, NULL, ${1 + DOMAINS.indexOf(host)})`);
      }
      batch('moz_places', places);
      const visits: string[] = [];
      for (let i = 1; i <= rows * 2; i++) visits.push(`(${i}, 0, ${r.int(1, rows)}, ${usec(730)}, ${r.int(1, 9)}, 0, 0, 0)`);
      batch('moz_historyvisits', visits);
      const bms: string[] = [];
      const nb = Math.max(10, Math.floor(rows / 20));
      for (let i = 1; i <= nb; i++) bms.push(`(${i}, 1, ${r.int(1, rows)}, 3, ${i - 1}, ${sq(g.cap(g.words(r.int(1, 6))))}, NULL, NULL, ${usec(730)}, ${usec(100)}, ${sq(base64(r, 9).replace(/[+/]/g, '_'))}, 1, 0)`);
      batch('moz_bookmarks', bms);
      break;
    }
    case 'cookies': {
      out.push('PRAGMA page_size=32768;', 'PRAGMA user_version=12;', 'BEGIN;');
      out.push("CREATE TABLE moz_cookies (id INTEGER PRIMARY KEY, originAttributes TEXT NOT NULL DEFAULT '', name TEXT, value TEXT, host TEXT, path TEXT, expiry INTEGER, lastAccessed INTEGER, creationTime INTEGER, isSecure INTEGER, isHttpOnly INTEGER, inBrowserElement INTEGER DEFAULT 0, sameSite INTEGER DEFAULT 0, rawSameSite INTEGER DEFAULT 0, schemeMap INTEGER DEFAULT 0, CONSTRAINT moz_uniqueid UNIQUE (name, host, path, originAttributes));");
      const vals: string[] = [];
      for (let i = 1; i <= rows; i++) vals.push(`(${i}, '', ${sq(g.ident() + '_' + i)}, ${sq(base64(r, r.int(8, 120)))}, ${sq('.' + r.pick(DOMAINS))}, '/', ${Math.floor(nowSec) + r.int(86400, 3e7)}, ${usec(30)}, ${usec(400)}, 1, ${r.int(0, 1)}, 0, ${r.int(0, 2)}, ${r.int(0, 2)}, 2)`);
      batch('moz_cookies', vals);
      break;
    }
    case 'formhistory': {
      out.push('PRAGMA user_version=5;', 'BEGIN;');
      out.push('CREATE TABLE moz_formhistory (id INTEGER PRIMARY KEY, fieldname TEXT NOT NULL, value TEXT NOT NULL, timesUsed INTEGER, firstUsed INTEGER, lastUsed INTEGER, guid TEXT);', 'CREATE INDEX moz_formhistory_index ON moz_formhistory (fieldname);');
      const vals: string[] = [];
      for (let i = 1; i <= rows; i++) vals.push(`(${i}, ${sq(r.pick(['searchbar-history', 'q', 'email', 'name', 'city', 'zip']))}, ${sq(g.words(r.int(1, 4)))}, ${r.int(1, 30)}, ${usec(730)}, ${usec(60)}, ${sq(base64(r, 9))})`);
      batch('moz_formhistory', vals);
      break;
    }
    case 'chromium-history': {
      out.push('BEGIN;');
      out.push(
        'CREATE TABLE meta(key LONGVARCHAR NOT NULL UNIQUE PRIMARY KEY, value LONGVARCHAR);',
        'CREATE TABLE urls(id INTEGER PRIMARY KEY AUTOINCREMENT,url LONGVARCHAR,title LONGVARCHAR,visit_count INTEGER DEFAULT 0 NOT NULL,typed_count INTEGER DEFAULT 0 NOT NULL,last_visit_time INTEGER NOT NULL,hidden INTEGER DEFAULT 0 NOT NULL);',
        'CREATE TABLE visits(id INTEGER PRIMARY KEY,url INTEGER NOT NULL,visit_time INTEGER NOT NULL,from_visit INTEGER,transition INTEGER DEFAULT 0 NOT NULL,segment_id INTEGER,visit_duration INTEGER DEFAULT 0 NOT NULL);',
        'CREATE INDEX urls_url_index ON urls (url);',
        'CREATE INDEX visits_url_index ON visits (url);',
        "INSERT INTO meta VALUES ('version', '67'), ('last_compatible_version', '16'), ('mmap_status', '-1');",
      );
      const ch = (t: number) => t + 11644473600 * 1e6; // Windows epoch in microseconds
      const urls: string[] = [];
      for (let i = 1; i <= rows; i++) urls.push(`(${i}, ${sq(url())}, ${sq(g.cap(g.words(r.int(2, 9))))}, ${r.int(1, 40)}, ${r.int(0, 3)}, ${ch(usec(700))}, 0)`);
      batch('urls', urls);
      const visits: string[] = [];
      for (let i = 1; i <= rows * 2; i++) visits.push(`(${i}, ${r.int(1, rows)}, ${ch(usec(700))}, 0, ${r.pick([805306368, 805306369, 268435457, 838860801])}, 0, ${r.int(0, 6e8)})`);
      batch('visits', visits);
      break;
    }
  }
  out.push('COMMIT;');
  return out.join('\n') + '\n';
}

async function writeSqlite(root: string, f: FileSpec, seed: number, nowSec: number, sqlite3: string): Promise<void> {
  if (f.content.t !== 'sqlite') return;
  const full = path.join(root, f.path);
  const sql = dbSql(f.content.db, f.content.rows, new Rng(seed, 0x5e1, f.key), nowSec);
  const p = execFileP(sqlite3, ['-batch', '-bail', full], { maxBuffer: 16 * MiB });
  p.child.stdin!.end(sql);
  try {
    await p;
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new Error(`gen-profile: the sqlite3 CLI (${sqlite3}) is required to create ${f.path}`);
    throw new Error(`gen-profile: sqlite3 failed for ${f.path}: ${err.stderr ?? err.message}`);
  }
  fs.chmodSync(full, f.mode);
  fs.utimesSync(full, f.mtime, f.mtime);
}

// ---------------------------------------------------------------------------
// Git project
// ---------------------------------------------------------------------------

async function git(cwd: string, args: string[], date: number): Promise<void> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('GIT_')) env[k] = v;
  const d = `@${Math.floor(date)} +0000`;
  Object.assign(env, {
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_GLOBAL: '/dev/null',
    GIT_AUTHOR_NAME: 'Alex Doe',
    GIT_AUTHOR_EMAIL: 'alex@example.org',
    GIT_COMMITTER_NAME: 'Alex Doe',
    GIT_COMMITTER_EMAIL: 'alex@example.org',
    GIT_AUTHOR_DATE: d,
    GIT_COMMITTER_DATE: d,
    LC_ALL: 'C',
  });
  try {
    await execFileP('git', ['-c', 'gc.auto=0', '-c', 'commit.gpgsign=false', '-c', 'core.autocrlf=false', ...args], { cwd, env, maxBuffer: 16 * MiB });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === 'ENOENT') throw new Error('gen-profile: git is required to create src/project/.git');
    throw new Error(`gen-profile: git ${args.join(' ')} failed: ${err.stderr ?? err.message}`);
  }
}

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/**
 * Generate a synthetic home directory in `dir` (created if missing; must be empty).
 * Deterministic for a given (seed, sizeBytes, files, bigFiles, now).
 */
export async function generateProfile(dir: string, opts: GenerateOptions = {}): Promise<GenerateResult> {
  const seed = (opts.seed ?? DEFAULT_SEED) >>> 0;
  const sizeBytes = Math.floor(opts.sizeBytes ?? DEFAULT_SIZE);
  const files = Math.floor(opts.files ?? DEFAULT_FILES);
  const bigFiles = opts.bigFiles ?? true;
  const nowMs = opts.now === undefined ? DEFAULT_NOW : typeof opts.now === 'number' ? opts.now : opts.now.getTime();
  const sqlite3 = opts.sqlite3 ?? process.env['SQLITE3'] ?? 'sqlite3';
  if (!Number.isFinite(sizeBytes) || sizeBytes < 0) throw new RangeError('sizeBytes must be a non-negative number');
  if (!Number.isFinite(files) || files < 0) throw new RangeError('files must be a non-negative number');
  if (!Number.isFinite(nowMs)) throw new RangeError('invalid now');

  fs.mkdirSync(dir, { recursive: true });
  if (fs.readdirSync(dir).length > 0) throw new Error(`gen-profile: ${dir} is not empty`);

  const plan = makePlan({ seed, sizeBytes, files, bigFiles, nowMs });
  const nowSec = nowMs / 1000;
  const w = new Writer(dir, seed, nowMs);
  const prog: GenerateProgress = { phase: 'write', files: 0, bytes: 0, totalFiles: plan.files.length, totalBytes: plan.totalBytes };
  const report = () => opts.onProgress?.({ ...prog });

  // 1. SQLite databases (child processes, in the background), then the
  //    regular files of the first git commit: small ones first with concurrent
  //    I/O, large ones last (their writeback then does not slow the rest down).
  const deferred: FileSpec[] = [];
  const dbs: FileSpec[] = [];
  const small: FileSpec[] = [];
  const large: FileSpec[] = [];
  for (const f of plan.files) {
    if (f.phase === 1) deferred.push(f);
    else if (f.content.t === 'sqlite') dbs.push(f);
    else if (f.content.t === 'bin' && f.size > SMALL_MAX) large.push(f);
    else small.push(f);
  }
  for (const f of dbs) w.mkdirs(w.parentOf(f.path));
  const dbDone = (async () => {
    for (const f of dbs) await writeSqlite(dir, f, seed, nowSec, sqlite3);
  })();
  dbDone.catch(() => undefined); // awaited below; avoid an unhandled rejection meanwhile
  for (const f of [...small, ...large]) {
    await w.writeFile(f);
    prog.files++;
    prog.bytes += f.size;
    if (prog.files % 256 === 0 || f.size > MiB) report();
  }
  await w.inflight.drain();
  prog.phase = 'sqlite';
  report();
  await dbDone;
  for (const f of dbs) {
    prog.files++;
    prog.bytes += f.size;
  }

  // 2. Git project: init + commit, then the second commit with the deferred files.
  prog.phase = 'git';
  report();
  const proj = path.join(dir, plan.gitProject);
  await git(proj, ['init', '-q', '--template=', '-b', 'main', '.'], plan.gitDates[0]);
  await git(proj, ['add', '-A'], plan.gitDates[0]);
  await git(proj, ['commit', '-q', '-m', 'Initial import'], plan.gitDates[0]);
  for (const f of deferred) {
    await w.writeFile(f);
    prog.files++;
    prog.bytes += f.size;
  }
  await w.inflight.drain();
  await git(proj, ['add', '-A'], plan.gitDates[1]);
  await git(proj, ['commit', '-q', '-m', 'Add changelog'], plan.gitDates[1]);

  // 3. Symlinks, directory modes and mtimes (after all their children exist).
  prog.phase = 'finish';
  report();
  for (const l of plan.links) {
    w.mkdirs(w.parentOf(l.path));
    const full = path.join(dir, l.path);
    fs.symlinkSync(l.target, full);
    fs.lutimesSync(full, l.mtime, l.mtime);
  }
  for (const [d] of plan.dirs) if (d !== '') w.mkdirs(d);
  for (const [d, { mode, mtime }] of plan.dirs) {
    const full = d === '' ? dir : path.join(dir, d);
    if (mode >= 0) fs.chmodSync(full, mode);
    fs.utimesSync(full, mtime, mtime);
  }

  const result = countTree(dir);
  report();
  return result;
}

/** Count regular files, directories (not the root), symlinks and bytes under dir. */
export function countTree(dir: string): GenerateResult {
  const res: GenerateResult = { files: 0, dirs: 0, symlinks: 0, bytes: 0 };
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop()!;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) {
        res.dirs++;
        stack.push(full);
      } else if (e.isSymbolicLink()) {
        res.symlinks++;
      } else if (e.isFile()) {
        res.files++;
        res.bytes += fs.lstatSync(full).size;
      }
    }
  }
  return res;
}

/**
 * The (up to) 20 files a desktop session reads first (shell init, GNOME session
 * settings, keyring, then Firefox startup), relative to `dir`, in read order,
 * restricted to those that exist in `dir`.
 */
export async function startupFiles(dir: string): Promise<string[]> {
  return startupFilesSync(dir);
}

export function startupFilesSync(dir: string): string[] {
  const ff = firefoxProfileDir(dir);
  const out: string[] = [];
  for (const p of STARTUP_FILES) {
    if (p.startsWith('{ff}') && !ff) continue;
    const rel = p.replace('{ff}', ff ?? '');
    try {
      fs.lstatSync(path.join(dir, rel));
      out.push(rel);
    } catch {
      // missing: skip
    }
  }
  return out;
}

function firefoxProfileDir(dir: string): string | null {
  try {
    const ini = fs.readFileSync(path.join(dir, '.mozilla/firefox/profiles.ini'), 'utf8');
    const m = /^Path=(.+)$/m.exec(ini);
    if (m) return `.mozilla/firefox/${m[1]!.trim()}`;
  } catch {
    // fall through
  }
  try {
    const e = fs.readdirSync(path.join(dir, '.mozilla/firefox')).find((n) => n.endsWith('.default-release'));
    return e ? `.mozilla/firefox/${e}` : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------

/** Parse "2GiB", "500M", "1.5G", "20MB" (decimal), "123456" (bytes). K/M/G/T without "B" are binary. */
export function parseSize(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)(b?)\s*$/i.exec(s);
  if (!m) throw new Error(`invalid size: ${s}`);
  const n = Number(m[1]);
  const unit = m[2]!.toLowerCase();
  const decimal = m[3] === '' && m[4] !== '' && unit !== '';
  const base = decimal ? 1000 : 1024;
  const pow = { '': 0, k: 1, m: 2, g: 3, t: 4 }[unit] ?? 0;
  return Math.round(n * Math.pow(base, pow));
}

/** Parse "50000", "50k", "1.5m". */
export function parseCount(s: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([km]?)\s*$/i.exec(s);
  if (!m) throw new Error(`invalid count: ${s}`);
  const mult = { '': 1, k: 1000, m: 1_000_000 }[m[2]!.toLowerCase()] ?? 1;
  return Math.round(Number(m[1]) * mult);
}

function fmtBytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  return `${(n / KiB).toFixed(1)} KiB`;
}

const USAGE = `usage: gen-profile OUTDIR [--seed N] [--size 2GiB] [--files 50000] [--big-files on|off] [--now ISO-DATE]

Generate a deterministic synthetic Linux desktop home directory in OUTDIR
(created if missing, must be empty).

  --seed N           PRNG seed (default ${DEFAULT_SEED})
  --size SIZE        total bytes of regular files, e.g. 2GiB, 500MiB, 20M (default 2GiB)
  --files N          number of regular files, e.g. 50000 or 50k (default 50000)
  --big-files on|off include a few large files (videos, VM images, ISOs) (default on)
  --now DATE         anchor for mtimes, which span the 2 years before it
                     (default ${new Date(DEFAULT_NOW).toISOString()})
  -q, --quiet        no summary line
`;

export async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        seed: { type: 'string' },
        size: { type: 'string' },
        files: { type: 'string' },
        'big-files': { type: 'string' },
        now: { type: 'string' },
        quiet: { type: 'boolean', short: 'q' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values: v, positionals } = parsed;
  if (v.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    process.stderr.write(USAGE);
    return 2;
  }
  const out = positionals[0]!;
  let opts: GenerateOptions;
  try {
    const bf = (v['big-files'] ?? 'on').toLowerCase();
    if (!['on', 'off', 'true', 'false', 'yes', 'no', '1', '0'].includes(bf)) throw new Error(`invalid --big-files: ${bf}`);
    const seed = v.seed === undefined ? DEFAULT_SEED : Number(v.seed);
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`invalid --seed: ${v.seed}`);
    const now = v.now === undefined ? DEFAULT_NOW : /^\d+$/.test(v.now) ? Number(v.now) * 1000 : Date.parse(v.now);
    if (!Number.isFinite(now)) throw new Error(`invalid --now: ${v.now}`);
    opts = {
      seed,
      sizeBytes: v.size === undefined ? DEFAULT_SIZE : parseSize(v.size),
      files: v.files === undefined ? DEFAULT_FILES : parseCount(v.files),
      bigFiles: ['on', 'true', 'yes', '1'].includes(bf),
      now,
    };
  } catch (e) {
    process.stderr.write(`gen-profile: ${(e as Error).message}\n`);
    return 2;
  }
  const t0 = Date.now();
  if (process.stderr.isTTY) {
    let last = 0;
    opts.onProgress = (p) => {
      const t = Date.now();
      if (t - last < 2000) return;
      last = t;
      process.stderr.write(`gen-profile: ${p.phase} ${p.files}/${p.totalFiles} files, ${fmtBytes(p.bytes)}/${fmtBytes(p.totalBytes)} (${((t - t0) / 1000).toFixed(0)}s)\n`);
    };
  }
  try {
    const res = await generateProfile(out, opts);
    if (!v.quiet) {
      process.stdout.write(`gen-profile: ${out}: ${res.files} files, ${res.dirs} dirs, ${res.symlinks} symlinks, ${fmtBytes(res.bytes)} (${res.bytes} bytes) in ${((Date.now() - t0) / 1000).toFixed(1)}s\n`);
    }
    return 0;
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    return 1;
  }
}

const invokedDirectly = (() => {
  try {
    return !!process.argv[1] && fs.realpathSync(process.argv[1]) === fs.realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
})();

if (invokedDirectly) {
  // More libuv threads for the many small-file syscalls (must be set before the pool starts).
  if (!process.env['UV_THREADPOOL_SIZE']) process.env['UV_THREADPOOL_SIZE'] = '8';
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
