/**
 * The logging port: the shape of a pino logger, so the core can log structured lines without
 * depending on pino (the daemon passes a real pino logger; tests pass nullLogger or a recorder).
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

export const nullLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child: () => nullLogger,
};

/** A logger that keeps lines in memory (tests). */
export function memoryLogger(lines: Array<{ level: string; msg?: string } & Record<string, unknown>> = []): Logger & { lines: typeof lines } {
  const make = (bindings: Record<string, unknown>): Logger & { lines: typeof lines } => ({
    lines,
    debug: (o, msg) => lines.push({ level: 'debug', ...bindings, ...o, msg }),
    info: (o, msg) => lines.push({ level: 'info', ...bindings, ...o, msg }),
    warn: (o, msg) => lines.push({ level: 'warn', ...bindings, ...o, msg }),
    error: (o, msg) => lines.push({ level: 'error', ...bindings, ...o, msg }),
    child: (b) => make({ ...bindings, ...b }),
  });
  return make({});
}

export function errorFields(err: unknown): { err: { code?: string; message: string } } {
  const e = err as { code?: string; message?: string };
  return { err: { code: e?.code, message: e?.message ?? String(err) } };
}
