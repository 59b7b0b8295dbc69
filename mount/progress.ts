import cliProgress from 'cli-progress';

/** A progress bar on stderr when it is a terminal; silent otherwise (logs and pipes stay clean). */
export function progressBar(label: string, unit: 'bytes' | 'items') {
  if (!process.stderr.isTTY) return { start() {}, update() {}, stop() {} };
  const fmtValue = (v: number) => (unit === 'bytes' ? formatBytes(v) : String(v));
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% {v}/{t} {eta_formatted}`,
      hideCursor: true,
      clearOnComplete: true,
    },
    cliProgress.Presets.shades_classic,
  );
  return {
    start(total: number) {
      bar.start(Math.max(total, 1), 0, { v: fmtValue(0), t: fmtValue(total) });
    },
    update(value: number, total?: number) {
      if (total !== undefined) bar.setTotal(Math.max(total, 1));
      bar.update(value, { v: fmtValue(value), t: fmtValue(total ?? bar.getTotal()) });
    },
    stop() {
      bar.stop();
    },
  };
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/**
 * A one-off progress bar for a report (`roamfs status`): drawn with cli-progress's bar
 * formatter and its classic shades preset when stdout is a terminal, as "[52%]" otherwise.
 */
export function staticBar(fraction: number, width = 24, tty = !!process.stdout.isTTY): string {
  const f = Math.max(0, Math.min(1, Number.isFinite(fraction) ? fraction : 0));
  const pct = `${Math.floor(f * 100)}%`;
  if (!tty) return `[${pct}]`;
  const preset = cliProgress.Presets.shades_classic;
  const complete = preset.barCompleteChar ?? '#';
  const incomplete = preset.barIncompleteChar ?? '-';
  const bar = cliProgress.Format.BarFormat(f, {
    barsize: width,
    barCompleteString: complete.repeat(width),
    barIncompleteString: incomplete.repeat(width),
    barGlue: '',
  } as Parameters<typeof cliProgress.Format.BarFormat>[1]);
  return `[${bar}] ${pct}`;
}
