import { Command, CommanderError } from 'commander';
import { RoamfsError } from '../src/core/errors.js';
import { registerRepoCommands } from './commands/repo.js';
import { registerSessionCommands } from './commands/session.js';

const program = new Command();
program
  .name('roamfs')
  .description('roaming Linux home directories for virtual desktops, streamed over FUSE')
  .version('0.1.0')
  .exitOverride()
  .showSuggestionAfterError(false)
  // Usage errors as one line, like every other error: "roamfs: missing required argument 'dir'".
  .configureOutput({ outputError: (str, write) => write(`roamfs: ${str.replace(/^error: /, '')}`) });

registerRepoCommands(program);
registerSessionCommands(program);

/** One line on stderr for operating errors; a stack trace only for bugs. */
function report(err: unknown): number {
  if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
  if (err instanceof RoamfsError) {
    console.error(`roamfs: ${err.message}${err.hint ? ` (${err.hint})` : ''}`);
    return 1;
  }
  console.error('roamfs: internal error:', err);
  return 70;
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  process.exitCode = report(err);
}
