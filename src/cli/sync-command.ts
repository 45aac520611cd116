import { Command, Option } from 'commander';
import type { SyncResult } from '../agent/control-protocol.js';
import { DEFAULT_CONTROL_TIMEOUT_MS } from '../agent/control-socket.js';
import { absoluteDb, askAgent, socketOption } from './agent-command.js';
import { durationArg, reportError } from './cli-util.js';

export function syncCommand(): Command {
  return new Command('sync')
    .summary('make the running agent capture and ship now, and wait until the replicas hold it')
    .description(
      'Ask the running agent (`pitr replicate`) to capture what the database holds now and ship it to every ' +
        'replica, and wait until each replica holds it (or --timeout passes). Prints, per database and replica, ' +
        'the txid reached. Without DB, every database of the agent.\n\n' +
        'Exit 0 when every replica reached the captured txid, 1 otherwise (or on an error). Use it before a ' +
        'deploy, a host migration or a risky change: when it exits 0, the replicas hold everything committed ' +
        'before it started.',
    )
    .argument('[db]', 'the database to sync (default: all the agent replicates)')
    .addOption(socketOption())
    .addOption(new Option('--timeout <duration>', 'how long to wait for the replicas').default(DEFAULT_CONTROL_TIMEOUT_MS, '60s').argParser(durationArg('--timeout')))
    .option('--json', 'print one JSON object on stdout')
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  pitr sync                          # every database of the one running agent\n' +
        '  pitr sync app.db --timeout 5m\n' +
        '  pitr sync app.db --json && deploy.sh\n' +
        '  pitr sync --socket /run/pitr/app.sock\n',
    )
    .action(async (db: string | undefined, flags: { socket?: string; timeout: number; json?: boolean }) => {
      try {
        const abs = absoluteDb(db);
        const { socket, result } = await askAgent<SyncResult[]>(flags.socket, abs, { op: 'sync', ...(abs === undefined ? {} : { db: abs }), timeoutMs: flags.timeout }, flags.timeout);
        const ok = result.every((d) => d.error === undefined && d.replicas.every((r) => r.ok));
        process.stdout.write(flags.json ? JSON.stringify({ socket, ok, dbs: result }) + '\n' : human(result));
        if (!ok) {
          for (const d of result) if (d.error !== undefined) process.stderr.write(`pitr: ${d.db} is not replicating: ${d.error}\n`);
          if (result.some((d) => d.error === undefined && !d.replicas.every((r) => r.ok))) {
            process.stderr.write('pitr: not every replica reached the captured txid within the timeout\n  hint: see `pitr agent status` for its lag and health; a longer --timeout may help\n');
          }
        }
        process.exitCode = ok ? 0 : 1;
      } catch (err) {
        process.exitCode = reportError(err);
      }
    });
}

function human(results: SyncResult[]): string {
  if (results.length === 0) return 'the agent replicates no database\n';
  const out: string[] = [];
  for (const d of results) {
    out.push(d.error !== undefined ? `${d.db}  NOT REPLICATING: ${d.error}` : d.note !== undefined ? `${d.db}  (${d.note}: nothing to ship)` : `${d.db}  txid ${d.txid}`);
    for (const r of d.replicas) out.push(`  ${r.url}  txid ${r.txid}  ${r.ok ? 'ok' : `BEHIND (${d.txid - r.txid} txids)`}`);
  }
  return out.join('\n') + '\n';
}
