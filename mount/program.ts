/**
 * The commander program of the `roamfs` CLI and the one-line form of every error it reports.
 * Shared by the CLI (mount/cli.ts) and by the daemon, which parses `roamfs mount`'s arguments
 * itself on the fast login path (mount/daemon-main.ts): both must say exactly the same things.
 */
import { Command, CommanderError } from 'commander';
import { RoamfsError } from '../src/core/errors.js';

export const VERSION = '0.1.0';

/**
 * The program with its name, version and error conventions; the commands are registered by the
 * caller. `writeErr` receives commander's own messages (usage errors), already in the form
 * "roamfs: missing required argument 'dir'\n".
 */
export function createProgram(writeErr: (line: string) => void = (s) => process.stderr.write(s)): Command {
  return new Command()
    .name('roamfs')
    .description('roaming Linux home directories for virtual desktops, streamed over FUSE')
    .version(VERSION)
    .exitOverride()
    .showSuggestionAfterError(false)
    // Usage errors as one line, like every other error: "roamfs: missing required argument 'dir'".
    .configureOutput({ outputError: (str) => writeErr(`roamfs: ${str.replace(/^error: /, '')}`) });
}

export interface ErrorReport {
  /** The process exit code: 0 (help, version), 2 usage, 1 operating error, 70 a bug. */
  exit: number;
  /** What to print on stderr after "roamfs: " (null: commander printed it already). */
  message: string | null;
}

/** One line for operating errors; a stack trace only for bugs. */
export function errorReport(err: unknown): ErrorReport {
  if (err instanceof CommanderError) return { exit: err.exitCode === 0 ? 0 : 2, message: null };
  if (err instanceof RoamfsError) return { exit: 1, message: `${err.message}${err.hint ? ` (${err.hint})` : ''}` };
  return { exit: 70, message: `internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}` };
}
