/**
 * A small parser of the Prometheus text exposition format (version 0.0.4), strict enough to
 * catch malformed output: every sample must belong to a family announced by # HELP and
 * # TYPE lines before it, label sets must be well-formed, values must be numbers.
 */
export interface Sample {
  /** The sample's own name (with _bucket / _sum / _count / _total suffixes as written). */
  name: string;
  labels: Record<string, string>;
  value: number;
}

export interface Family {
  name: string;
  help: string;
  type: 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
  samples: Sample[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

function parseValue(s: string, line: string): number {
  if (s === '+Inf') return Infinity;
  if (s === '-Inf') return -Infinity;
  if (s === 'NaN') return NaN;
  const v = Number(s);
  if (s === '' || Number.isNaN(v)) throw new Error(`bad sample value ${JSON.stringify(s)} in: ${line}`);
  return v;
}

/** Parse `{a="x",b="y"}` starting at text[i] === '{'; returns the labels and the index after '}'. */
function parseLabels(text: string, i: number, line: string): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  i++; // '{'
  while (text[i] !== '}') {
    const eq = text.indexOf('=', i);
    if (eq < 0) throw new Error(`bad label set in: ${line}`);
    const key = text.slice(i, eq).trim();
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(key)) throw new Error(`bad label name ${JSON.stringify(key)} in: ${line}`);
    if (text[eq + 1] !== '"') throw new Error(`label value not quoted in: ${line}`);
    let j = eq + 2;
    let v = '';
    for (;;) {
      const c = text[j];
      if (c === undefined) throw new Error(`unterminated label value in: ${line}`);
      if (c === '\\') {
        const n = text[j + 1];
        v += n === 'n' ? '\n' : (n ?? '');
        j += 2;
      } else if (c === '"') {
        j++;
        break;
      } else {
        v += c;
        j++;
      }
    }
    if (key in labels) throw new Error(`duplicate label ${key} in: ${line}`);
    labels[key] = v;
    if (text[j] === ',') j++;
    else if (text[j] !== '}') throw new Error(`expected , or } after a label in: ${line}`);
    i = j;
  }
  return [labels, i + 1];
}

const SUFFIXES: Record<Family['type'], string[]> = {
  counter: [''],
  gauge: [''],
  untyped: [''],
  histogram: ['_bucket', '_sum', '_count'],
  summary: ['', '_sum', '_count'],
};

export function parsePrometheusText(text: string): Map<string, Family> {
  const families = new Map<string, Family>();
  const pending = new Map<string, { help?: string; type?: Family['type'] }>();
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) {
      const p = pending.get(name);
      if (p?.help === undefined || p.type === undefined) throw new Error(`family ${name} has samples before its # HELP and # TYPE lines`);
      f = { name, help: p.help, type: p.type, samples: [] };
      families.set(name, f);
    }
    return f;
  };
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) continue; // a comment
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
      const p = pending.get(name) ?? {};
      if (kind === 'HELP') p.help = rest.replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      else {
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) throw new Error(`bad type in: ${line}`);
        p.type = rest as Family['type'];
      }
      pending.set(name, p);
      if (p.help !== undefined && p.type !== undefined) {
        if (families.has(name)) throw new Error(`family ${name} announced twice`);
        family(name); // a family may have no samples yet (a labelled counter never incremented)
      }
      continue;
    }
    const nameEnd = line.search(/[{ ]/);
    if (nameEnd <= 0) throw new Error(`bad sample line: ${line}`);
    const name = line.slice(0, nameEnd);
    if (!NAME.test(name)) throw new Error(`bad metric name in: ${line}`);
    let labels: Record<string, string> = {};
    let i = nameEnd;
    if (line[i] === '{') [labels, i] = parseLabels(line, i, line);
    const parts = line.slice(i).trim().split(/\s+/);
    if (parts.length < 1 || parts.length > 2) throw new Error(`bad sample line: ${line}`);
    const value = parseValue(parts[0]!, line);
    // The family: the longest announced name this sample name is, or extends by a suffix.
    let owner: string | undefined;
    for (const n of pending.keys()) {
      const t = pending.get(n)!.type ?? 'untyped';
      if (SUFFIXES[t].some((s) => n + s === name) && (!owner || n.length > owner.length)) owner = n;
    }
    if (!owner) throw new Error(`sample ${name} belongs to no announced family`);
    family(owner).samples.push({ name, labels, value });
  }
  return families;
}

/** The value of the one sample of `name` whose labels include `match`; undefined when none. */
export function sampleValue(families: Map<string, Family>, name: string, match: Record<string, string> = {}): number | undefined {
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name === name && Object.entries(match).every(([k, v]) => s.labels[k] === v)) return s.value;
    }
  }
  return undefined;
}
