#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { readFileSync } from 'node:fs';
import { replicateCommand } from './replicate-command.js';
import { restoreCommand } from './restore-command.js';
import { listCommand } from './list-command.js';
import { statusCommand } from './status-command.js';
import { verifyCommand } from './verify-command.js';
import { syncCommand } from './sync-command.js';
import { snapshotCommand } from './snapshot-command.js';
import { agentCommand } from './agent-command.js';
import { configCommand } from './config-command.js';
import { reportError } from './cli-util.js';

// The AWS SDK prints a nine-line banner on stderr (its releases after January 2027 need Node 22):
// a packaging matter for pitr, not for its user, and it pushed pitr's one-line error off the
// first line of stderr. Any other warning of a dependency gets one line, not a banner.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] = 'true';
process.removeAllListeners('warning');
process.on('warning', (w: Error) => {
  const first = `${w.name}: ${w.message}`.split('\n')[0];
  process.stderr.write(process.env['PITR_DEBUG'] ? `pitr: warning: ${String(w.stack)}\n` : `pitr: warning: ${first}\n`);
});

// `pitr list ... | head` closes the pipe early: that is not an error worth a stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('pitr')
  .description('Continuous SQLite replication with exact point-in-time restore.\n\nQuick start:\n  pitr replicate app.db                 # replicate to ./app.db-replica\n  pitr list app.db-replica              # what can be restored\n  pitr restore app.db-replica -o restored.db --to 2026-11-22T10:15:00Z')
  .version(pkg.version)
  .showHelpAfterError('  hint: run with --help for usage')
  .configureOutput({
    outputError: (str, write) => write(`pitr: ${str.trim()} [USAGE]\n`),
  })
  .exitOverride();

for (const cmd of [
  replicateCommand(),
  restoreCommand(),
  listCommand(),
  statusCommand(),
  verifyCommand(),
  syncCommand(),
  snapshotCommand(),
  agentCommand(),
  configCommand(),
]) {
  program.addCommand(cmd.exitOverride().configureOutput({ outputError: (str, write) => write(`pitr: ${str.trim()} [USAGE]\n`) }).showHelpAfterError('  hint: run with --help for usage'));
}

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) {
    // Help and version end here with code 0; usage errors were already printed by commander.
    process.exitCode = err.exitCode;
  } else {
    process.exitCode = reportError(err);
  }
}
