import { Command } from 'commander';
import { getPriority, setPriority } from 'node:os';
import { readdirSync, readFileSync } from 'node:fs';
import { createLogger, type Logger } from '../log.js';
import { agentConfigFrom } from '../config/config-from-flags.js';
import { givenFlags, replicateOptions } from './replicate-options.js';
import { reportError } from './cli-util.js';

/**
 * Lower this process's CPU priority. A backup sidecar should lose to the app when both want the CPU
 * (measured with an app committing flat out on 2 cores: its commit rate with the agent running went
 * from 0.78-0.85 of its rate alone to 0.95-0.99 at nice 10); pitr's lag grows instead, and it
 * catches up when the app pauses. Without contention nothing changes.
 */
function yieldCpu(by: number, log: Logger): void {
  try {
    const target = Math.min(19, getPriority() + by);
    let tids: string[] = [];
    try {
      // Linux keeps the nice value per thread, and Node has started its threads (libuv's pool,
      // V8's helpers) by now: lower every one of them.
      tids = readdirSync('/proc/self/task');
    } catch {
      // Not Linux: the value is per process.
    }
    if (tids.length === 0) setPriority(target);
    for (const tid of tids) setPriority(Number(tid), target);
  } catch (err) {
    log.warn('could not lower the CPU priority; running at the current one', { err });
  }
}

export function replicateCommand(): Command {
  const cmd = new Command('replicate')
    .summary('continuously replicate SQLite databases to one or more replicas')
    .description(
      "Run next to the app: capture every committed transaction from each database's WAL, keep it in a " +
        'local spool, and ship it with periodic snapshots to each replica. Runs until SIGINT/SIGTERM, then ' +
        'captures and uploads everything committed so far and exits 0.\n\n' +
        'One database: pitr replicate DB [REPLICA...]. REPLICA is a directory (a path, or file:///abs/path) or ' +
        's3://bucket/prefix[?endpoint=..&region=..]; with none, pitr replicates to the directory DB-replica ' +
        'next to the database. Many databases: pitr replicate --config pitr.yml (or PITR_CONFIG), where every ' +
        'flag below has a key of the same name; check a file with `pitr config check`.\n\n' +
        'If DB does not exist yet, pitr waits for the app to create it. DB must be in WAL mode ' +
        '(PRAGMA journal_mode=WAL), or pass --enable-wal to switch it once.',
    )
    .argument('[db]', 'path of the SQLite database file (or use --config)')
    .argument('[replicas...]', 'replica URLs (default: DB-replica directory next to DB)');
  for (const o of replicateOptions()) cmd.addOption(o);
  return cmd
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  pitr replicate /data/app.db                          # replica in /data/app.db-replica\n' +
        '  pitr replicate /data/app.db /backups/app             # a directory replica\n' +
        "  pitr replicate /data/app.db /backups/app 's3://bucket/app?region=eu-west-1'\n" +
        '  pitr replicate --config /etc/pitr.yml                # many databases, see `pitr config check`\n' +
        "  pitr replicate /data/app.db s3://bucket/app --restore-if-missing --exec 'node server.js'\n",
    )
    .action(async (db: string | undefined, replicas: string[], flags: Record<string, unknown>, command: Command) => {
      let log = createLogger({ level: 'info' });
      try {
        const config = agentConfigFrom({ db, replicas, flags, env: process.env, given: givenFlags(command) });
        log = createLogger({ level: config.logLevel, ...(config.logFormat ? { format: config.logFormat } : {}) });
        if (config.nice > 0) yieldCpu(config.nice, log);
        // Loaded here, not at the top: the agent pulls in the watcher, metrics and SQLite, which
        // every other command (restore above all) would otherwise pay for at startup.
        const { Supervisor } = await import('../agent/supervisor.js');
        const supervisor = new Supervisor({ config, version: pitrVersion(), log });
        let stops = 0;
        const onSignal = (sig: NodeJS.Signals): void => {
          // With an exec child, signals go to it; the agent stops once it has exited.
          if (stops === 0 && supervisor.signal(sig) === 'forwarded') return;
          stops++;
          if (stops > 1) {
            log.error('second signal: exiting without finishing uploads (they stay in the spool)', { signal: sig });
            process.exit(130);
          }
          log.info('stopping: capturing and uploading what is committed', { signal: sig });
        };
        // SIGHUP too (a closed terminal, some service managers): a clean stop, not a kill.
        for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, onSignal);
        process.exitCode = await supervisor.run();
      } catch (err) {
        process.exitCode = reportError(err);
      }
    });
}

function pitrVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}
