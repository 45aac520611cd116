import { Command, Option } from 'commander';
import { resolve, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { openStorage } from '../storage/open-storage.js';
import { FileStorage } from '../storage/file/file-storage.js';
import { createLogger, type LogLevel, type Logger } from '../log.js';
import { getPriority, setPriority } from 'node:os';
import { readdirSync, readFileSync } from 'node:fs';
import { DEFAULT_SNAPSHOT_WAL_MIN_BYTES, DEFAULT_SNAPSHOT_WAL_RATIO, DEFAULT_WAL_RESET_BYTES } from '../replicate/defaults.js';
import { checkDatabasePath, checkReplicas, defaultStateDir, ensureFileReplica, lockState } from '../replicate/preflight.js';
import type { StateLock } from '../replicate/state-lock.js';
import type { ReplicaLease } from '../replicate/lease.js';
import { durationArg, niceArg, nonNegativeNumberArg, positiveIntArg, reportError, sizeArg } from './cli-util.js';

interface ReplicateFlags {
  syncInterval: number;
  snapshotInterval: number;
  snapshotWalRatio: number;
  snapshotWalMin: number;
  retention: number;
  retentionCheckInterval: number;
  stateDir?: string;
  checkpointFrames: number;
  walResetSize: number;
  spoolMaxSize: number;
  listen?: string;
  maxLag?: number;
  heartbeatInterval: number;
  verifyInterval: number;
  enableWal?: boolean;
  shutdownTimeout: number;
  logFormat?: 'json' | 'pretty';
  logLevel: LogLevel;
  nice: number;
  takeover?: boolean;
  leasePeriod?: number;
}

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
  return new Command('replicate')
    .summary('continuously replicate a SQLite database to one or more replicas')
    .description(
      "Run next to the app: capture every committed transaction from DB's WAL, keep it in a local spool, " +
        'and ship it with periodic snapshots to each REPLICA. Runs until SIGINT/SIGTERM, then captures and ' +
        'uploads everything committed so far and exits 0.\n\n' +
        'REPLICA is a directory (a path, or file:///abs/path) or s3://bucket/prefix[?endpoint=..&region=..]. ' +
        'With no REPLICA, pitr replicates to the directory DB-replica next to the database. The spool and ' +
        'position live in --state-dir.\n\n' +
        'If DB does not exist yet, pitr waits for the app to create it. DB must be in WAL mode ' +
        '(PRAGMA journal_mode=WAL), or pass --enable-wal to switch it once.',
    )
    .argument('<db>', 'path of the SQLite database file')
    .argument('[replicas...]', 'replica URLs (default: DB-replica directory next to DB)')
    .addOption(new Option('--sync-interval <duration>', 'minimum spacing of uploads under sustained writes; the first commit after a quiet period ships at once; 0 ships every capture').default(1000, '1s').argParser(durationArg('--sync-interval')))
    .addOption(new Option('--snapshot-interval <duration>', 'take a full snapshot this often (0 = only at generation start)').default(86_400_000, '24h').argParser(durationArg('--snapshot-interval')))
    .addOption(new Option('--snapshot-wal-ratio <n>', 'also take a snapshot once the WAL captured since the last one exceeds N times the database size (and --snapshot-wal-min), so restoring the latest state replays at most that much WAL; costs one more snapshot upload per N database sizes written (0 = by --snapshot-interval only)').default(DEFAULT_SNAPSHOT_WAL_RATIO).argParser(nonNegativeNumberArg))
    .addOption(new Option('--snapshot-wal-min <size>', 'least WAL since the last snapshot before --snapshot-wal-ratio takes one: replaying this much takes well under a second, and a small, busy database would otherwise upload a snapshot every few seconds').default(DEFAULT_SNAPSHOT_WAL_MIN_BYTES, '256MiB').argParser(sizeArg('--snapshot-wal-min')))
    .addOption(new Option('--retention <duration>', 'keep what is needed to restore any point this far back (0 = keep everything)').default(7 * 86_400_000, '7d').argParser(durationArg('--retention')))
    .addOption(new Option('--retention-check-interval <duration>', 'how often retention runs (it LISTs each replica)').default(3_600_000, '1h').argParser(durationArg('--retention-check-interval')))
    .option('--state-dir <dir>', 'where the spool and position are kept, on a local disk (default: DB-pitr next to DB)')
    .addOption(new Option('--checkpoint-frames <n>', 'PASSIVE-checkpoint the WAL once it holds this many frames, all spooled').default(1000).argParser(positiveIntArg))
    .addOption(new Option('--wal-reset-size <size>', 'while the app writes without pausing, SQLite cannot restart the WAL on its own; past this size pitr holds the write lock for a moment (catch up, checkpoint) so the app\'s next commit restarts it; the app needs a busy_timeout (0 = never)').default(DEFAULT_WAL_RESET_BYTES, '64MiB').argParser(sizeArg('--wal-reset-size')))
    .addOption(new Option('--spool-max-size <size>', 'when an unreachable replica makes the spool grow past this, drop what only it needs; it resumes from a fresh snapshot (0 = no cap)').default(1024 ** 3, '1GiB').argParser(sizeArg('--spool-max-size')))
    .option('--listen <addr>', 'serve Prometheus /metrics and /healthz on HOST:PORT (a bare PORT binds 127.0.0.1)')
    .addOption(new Option('--max-lag <duration>', 'RPO objective: /healthz answers 503 while a replica lags more than this, and the log says when it crosses').argParser(durationArg('--max-lag')))
    .addOption(new Option('--heartbeat-interval <duration>', 'write a heartbeat to each idle, caught-up replica this often, so `pitr status` can judge freshness from the replica alone (0 = never)').default(60_000, '1m').argParser(durationArg('--heartbeat-interval')))
    .addOption(new Option('--verify-interval <duration>', 'run `pitr verify` (every checksum, a restore, integrity_check, live comparison) against each replica this often; downloads the whole replica (0 = never)').default(0, '0').argParser(durationArg('--verify-interval')))
    .option('--takeover', 'take the replicas over even when another agent holds their lease (it stops writing to them within one lease period); use when that agent is really gone, or to move replication to this host')
    .addOption(new Option('--lease-period <duration>', 'lease period (tests)').argParser(durationArg('--lease-period')).hideHelp())
    .option('--enable-wal', 'switch a rollback-journal database to WAL mode (a one-time header change)')
    .addOption(new Option('--shutdown-timeout <duration>', 'on SIGINT/SIGTERM, how long to keep trying to upload').default(30_000, '30s').argParser(durationArg('--shutdown-timeout')))
    .addOption(new Option('--nice <n>', 'lower the agent\'s CPU priority by this much (0-19), so an app competing for the CPU wins and pitr catches up after; 0 leaves it as started').default(10).argParser(niceArg))
    .addOption(new Option('--log-format <format>', 'log format (default: pretty on a terminal, json otherwise)').choices(['json', 'pretty']))
    .addOption(new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']).default('info'))
    .addHelpText(
      'after',
      '\nExamples:\n' +
        '  pitr replicate /data/app.db                          # replica in /data/app.db-replica\n' +
        '  pitr replicate /data/app.db /backups/app             # a directory replica\n' +
        '  pitr replicate /data/app.db file:///mnt/nas/app --sync-interval 0\n' +
        "  pitr replicate /data/app.db /backups/app 's3://bucket/app?region=eu-west-1'\n",
    )
    .action(async (db: string, replicaArgs: string[], flags: ReplicateFlags) => {
      const dbPath = resolve(db);
      const log = createLogger({ level: flags.logLevel, ...(flags.logFormat ? { format: flags.logFormat } : {}) });
      if (flags.nice > 0) yieldCpu(flags.nice, log);
      const locks: StateLock[] = [];
      let leases: ReplicaLease[] = [];
      try {
        await checkDatabasePath(dbPath);
        const stateDir = resolve(flags.stateDir ?? defaultStateDir(dbPath));
        const urls = replicaArgs.length > 0 ? replicaArgs : [pathToFileURL(`${dbPath}-replica`).href];
        const parsed = await checkReplicas(urls, dbPath, stateDir);
        // Locked before anything in the state directory or a replica is touched: a second agent
        // stops here, naming the first, instead of fighting it over the spool.
        locks.push(...(await lockState({ dbPath, stateDir, version: pitrVersion() }, log)));
        for (const r of parsed) if (r.scheme === 'file') await ensureFileReplica(r.path, log);
        for (const l of locks) await l.recordReplicas(parsed.map((r) => r.url));
        if (replicaArgs.length === 0) log.info('no replica given; using the default local directory replica', { replica: `${dbPath}-replica` });
        const opened = [];
        for (const u of urls) opened.push(await openStorage(u));
        const { acquireReplicaLeases } = await import('../replicate/replica-leases.js');
        const { checkReplicaIdentity } = await import('../replicate/identity.js');
        // Single writer: a second agent on a replica stops here, naming the one that holds it.
        // Each replica serves one database: another one's agent is refused (unless --takeover).
        leases = await acquireReplicaLeases(opened, {
          stateDir,
          takeover: flags.takeover ?? false,
          log,
          ...(flags.leasePeriod !== undefined && { periodMs: flags.leasePeriod }),
          onTaken: (r) => checkReplicaIdentity(r, { dbPath, stateDir, takeover: flags.takeover ?? false, log }),
        });
        const replicas = leases.map((l) => l.storage);
        // The spool lives next to the database unless --state-dir says otherwise: a local disk.
        const spoolDir = join(stateDir, 'spool');
        const spoolStore = new FileStorage(spoolDir, pathToFileURL(spoolDir).href, { localDisk: true });
        const controller = new AbortController();
        let signals = 0;
        const onSignal = (sig: NodeJS.Signals): void => {
          signals++;
          if (signals > 1) {
            log.error('second signal: exiting without finishing uploads (they stay in the spool)', { signal: sig });
            process.exit(130);
          }
          log.info('stopping: capturing and uploading what is committed', { signal: sig });
          controller.abort();
        };
        process.on('SIGINT', onSignal);
        process.on('SIGTERM', onSignal);
        // Loaded here, not at the top: the agent pulls in the watcher and metrics, which every
        // other command (restore above all) would otherwise pay for at startup.
        const { Agent } = await import('../replicate/agent.js');
        const agent = new Agent({
          dbPath,
          replicas,
          spoolStore,
          stateDir,
          syncIntervalMs: flags.syncInterval,
          snapshotIntervalMs: flags.snapshotInterval,
          snapshotWalRatio: flags.snapshotWalRatio,
          snapshotWalMinBytes: flags.snapshotWalMin,
          retentionMs: flags.retention,
          retentionCheckMs: flags.retentionCheckInterval,
          checkpointFrames: flags.checkpointFrames,
          walResetBytes: flags.walResetSize,
          spoolMaxBytes: flags.spoolMaxSize,
          ...(flags.listen ? { listen: flags.listen } : {}),
          ...(flags.maxLag !== undefined ? { maxLagMs: flags.maxLag } : {}),
          heartbeatIntervalMs: flags.heartbeatInterval,
          verifyIntervalMs: flags.verifyInterval,
          version: pitrVersion(),
          enableWal: flags.enableWal ?? false,
          shutdownTimeoutMs: flags.shutdownTimeout,
          leases,
          log,
        });
        const result = await agent.run(controller.signal);
        await Promise.all(leases.map((l) => l.release()));
        leases = [];
        for (const r of replicas) await r.close();
        process.exitCode = result.clean ? 0 : 1;
      } catch (err) {
        await Promise.all(leases.map((l) => l.release()));
        process.exitCode = reportError(err);
      } finally {
        for (const l of locks) l.release();
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
