import { Command, Option } from 'commander';
import type { SnapshotResult } from '../agent/control-protocol.js';
import { DEFAULT_CONTROL_TIMEOUT_MS } from '../agent/control-socket.js';
import { absoluteDb, askAgent, socketOption } from './agent-command.js';
import { durationArg, reportError } from './cli-util.js';

export function snapshotCommand(): Command {
  return new Command('snapshot')
    .summary('make the running agent take a snapshot of a database now')
    .description(
      'Ask the running agent (`pitr replicate`) to take a snapshot (a full page image) of DB now, and wait ' +
        'until it is shipped to the replicas (or --timeout passes). A fresh snapshot shortens the restores ' +
        'that start from it, e.g. before a large migration.\n\n' +
        'Exit 0 when the snapshot was shipped, 1 otherwise (or on an error).',
    )
    .argument('<db>', 'the database to snapshot')
    .addOption(socketOption())
    .addOption(new Option('--timeout <duration>', 'how long to wait for the snapshot to be shipped').default(DEFAULT_CONTROL_TIMEOUT_MS, '60s').argParser(durationArg('--timeout')))
    .option('--json', 'print one JSON object on stdout')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  pitr snapshot app.db\n' +
        '  pitr snapshot /srv/app/app.db --timeout 10m --json\n',
    )
    .action(async (db: string, flags: { socket?: string; timeout: number; json?: boolean }) => {
      try {
        const abs = absoluteDb(db) as string;
        const { socket, result } = await askAgent<SnapshotResult>(flags.socket, abs, { op: 'snapshot', db: abs, timeoutMs: flags.timeout }, flags.timeout);
        if (flags.json) {
          process.stdout.write(JSON.stringify({ socket, ...result }) + '\n');
        } else {
          process.stdout.write(`${result.db}  snapshot at txid ${result.txid}  ${result.key}  ${result.shipped ? 'shipped' : 'NOT SHIPPED yet'}\n`);
        }
        if (!result.shipped) {
          process.stderr.write('pitr: the snapshot was taken but not shipped within the timeout; the agent keeps shipping it\n  hint: see `pitr agent status` for the replicas\' health\n');
        }
        process.exitCode = result.shipped ? 0 : 1;
      } catch (err) {
        process.exitCode = reportError(err);
      }
    });
}
