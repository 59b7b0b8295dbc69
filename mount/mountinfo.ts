import { readFile } from 'node:fs/promises';
import * as path from 'node:path';

/** Unescape a /proc/self/mountinfo field (octal escapes for space, tab, newline, backslash). */
function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
}

export async function mounts(): Promise<MountEntry[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const [left, right] = line.split(' - ');
    const f = left!.split(' ');
    const r = (right ?? '').split(' ');
    out.push({ mountpoint: unescape(f[4]!), fstype: r[0] ?? '', source: unescape(r[1] ?? '') });
  }
  return out;
}

/** The mount at exactly this path (the topmost, if stacked), or undefined. */
export async function mountAt(p: string): Promise<MountEntry | undefined> {
  const abs = path.resolve(p);
  return (await mounts()).filter((m) => m.mountpoint === abs).pop();
}
