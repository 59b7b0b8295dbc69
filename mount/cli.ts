/**
 * The roamfs CLI (dist/bundle/cli.js, run by bin/roamfs.js through mount/launch.cts; `roamfs
 * mount` itself mostly bypasses it, see there).
 */
import { registerRepoCommands } from './commands/repo.js';
import { registerSessionCommands } from './commands/session.js';
import { createProgram, errorReport } from './program.js';

const program = createProgram();
registerRepoCommands(program);
registerSessionCommands(program);

// A promise chain, not a top-level await: the bundle (dist/bundle, CommonJS) cannot have one.
program.parseAsync(process.argv).catch((err: unknown) => {
  const r = errorReport(err);
  if (r.message !== null) console.error(`roamfs: ${r.message}`);
  process.exitCode = r.exit;
});
