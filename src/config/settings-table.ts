import type { AgentConfig, DbSettings } from './config-types.js';
import * as D from './defaults.js';
import type { SettingKind } from './setting-kinds.js';

/**
 * Where a setting may be written in a config file:
 * - agent: top level only (the process's own settings);
 * - db: top level (a global every entry inherits) and in a `dbs:` entry;
 * - replica: top level, in a `dbs:` entry, and in a `replicas:` item;
 * - entry: in a `dbs:` entry only (it names one database's own place);
 * - cli: never in a file (how the file itself is read).
 */
export type SettingScope = 'agent' | 'db' | 'replica' | 'entry' | 'cli';

export interface Setting {
  /** The YAML key, kebab-case: the long flag without its dashes (and without `no-`). */
  key: string;
  /** commander's flags string: `--sync-interval <duration>`, `--takeover`, `--no-expand-env`. */
  flag: string;
  kind: SettingKind;
  scope: SettingScope;
  /** The field it fills: in DbSettings/ReplicaSettings (db, replica), AgentConfig (agent), DbSpec (entry). */
  field: keyof DbSettings | keyof AgentConfig | 'stateDir' | 'config' | 'expandEnv';
  /** The value when nothing sets it; absent = none (undefined, or false for a bool). */
  default?: unknown;
  /** How help shows the default, in the form the setting accepts ('1s', '256MiB'); a test parses it back. */
  defaultText?: string;
  help: string;
  choices?: readonly string[];
  range?: readonly [number, number];
  /** Left out of --help (tests only). */
  hidden?: boolean;
}

/**
 * Every setting of `pitr replicate`, once: the CLI's options (src/cli/replicate-options.ts) and the
 * config file's validator (load-config.ts) are both made from it, so a flag and its key cannot drift
 * apart. The order is --help's.
 */
export const SETTINGS: readonly Setting[] = [
  { key: 'config', flag: '--config <file>', kind: 'string', scope: 'cli', field: 'config', help: 'read the databases and settings from this YAML file instead of DB and REPLICA (default: $PITR_CONFIG, when no DB is given); check one with `pitr config check FILE`' },
  { key: 'expand-env', flag: '--no-expand-env', kind: 'bool', scope: 'cli', field: 'expandEnv', default: true, help: 'take ${VAR} and $VAR in the config file literally instead of expanding them from the environment' },
  { key: 'sync-interval', flag: '--sync-interval <duration>', kind: 'duration', scope: 'replica', field: 'syncIntervalMs', default: D.DEFAULT_SYNC_INTERVAL_MS, defaultText: '1s', help: 'minimum spacing of uploads under sustained writes; the first commit after a quiet period ships at once; 0 ships every capture' },
  { key: 'snapshot-interval', flag: '--snapshot-interval <duration>', kind: 'duration', scope: 'db', field: 'snapshotIntervalMs', default: D.DEFAULT_SNAPSHOT_INTERVAL_MS, defaultText: '24h', help: 'take a full snapshot this often (0 = only at generation start)' },
  { key: 'snapshot-wal-ratio', flag: '--snapshot-wal-ratio <n>', kind: 'non-negative-number', scope: 'db', field: 'snapshotWalRatio', default: D.DEFAULT_SNAPSHOT_WAL_RATIO, help: 'also take a snapshot once the WAL captured since the last one exceeds N times the database size (and --snapshot-wal-min), so restoring the latest state replays at most that much WAL; costs one more snapshot upload per N database sizes written (0 = by --snapshot-interval only)' },
  { key: 'snapshot-wal-min', flag: '--snapshot-wal-min <size>', kind: 'size', scope: 'db', field: 'snapshotWalMinBytes', default: D.DEFAULT_SNAPSHOT_WAL_MIN_BYTES, defaultText: '256MiB', help: 'least WAL since the last snapshot before --snapshot-wal-ratio takes one: replaying this much takes well under a second, and a small, busy database would otherwise upload a snapshot every few seconds' },
  { key: 'retention', flag: '--retention <duration>', kind: 'duration', scope: 'replica', field: 'retentionMs', default: D.DEFAULT_RETENTION_MS, defaultText: '7d', help: 'keep what is needed to restore any point this far back (0 = keep everything)' },
  { key: 'retention-check-interval', flag: '--retention-check-interval <duration>', kind: 'duration', scope: 'replica', field: 'retentionCheckMs', default: D.DEFAULT_RETENTION_CHECK_MS, defaultText: '1h', help: 'how often retention runs (it LISTs each replica)' },
  { key: 'state-dir', flag: '--state-dir <dir>', kind: 'string', scope: 'entry', field: 'stateDir', help: 'where the spool and position are kept, on a local disk (default: DB-pitr next to DB)' },
  { key: 'checkpoint-frames', flag: '--checkpoint-frames <n>', kind: 'positive-int', scope: 'db', field: 'checkpointFrames', default: D.DEFAULT_CHECKPOINT_FRAMES, help: 'PASSIVE-checkpoint the WAL once it holds this many frames, all spooled' },
  { key: 'wal-reset-size', flag: '--wal-reset-size <size>', kind: 'size', scope: 'db', field: 'walResetBytes', default: D.DEFAULT_WAL_RESET_BYTES, defaultText: '64MiB', help: "while the app writes without pausing, SQLite cannot restart the WAL on its own; past this size pitr holds the write lock for a moment (catch up, checkpoint) so the app's next commit restarts it; the app needs a busy_timeout (0 = never)" },
  { key: 'spool-max-size', flag: '--spool-max-size <size>', kind: 'size', scope: 'db', field: 'spoolMaxBytes', default: D.DEFAULT_SPOOL_MAX_BYTES, defaultText: '1GiB', help: 'when an unreachable replica makes the spool grow past this, drop what only it needs; it resumes from a fresh snapshot (0 = no cap)' },
  { key: 'listen', flag: '--listen <addr>', kind: 'string', scope: 'agent', field: 'listen', help: 'serve Prometheus /metrics and /healthz on HOST:PORT (a bare PORT binds 127.0.0.1)' },
  { key: 'socket', flag: '--socket <path>', kind: 'string', scope: 'agent', field: 'socket', help: 'serve the control socket (`pitr sync`, `pitr snapshot`, `pitr agent status`) at this path instead of the default' },
  { key: 'max-lag', flag: '--max-lag <duration>', kind: 'duration', scope: 'db', field: 'maxLagMs', help: 'RPO objective: /healthz answers 503 while a replica lags more than this, and the log says when it crosses' },
  { key: 'heartbeat-interval', flag: '--heartbeat-interval <duration>', kind: 'duration', scope: 'replica', field: 'heartbeatIntervalMs', default: D.DEFAULT_HEARTBEAT_INTERVAL_MS, defaultText: '1m', help: 'write a heartbeat to each idle, caught-up replica this often, so `pitr status` can judge freshness from the replica alone (0 = never)' },
  { key: 'verify-interval', flag: '--verify-interval <duration>', kind: 'duration', scope: 'replica', field: 'verifyIntervalMs', default: D.DEFAULT_VERIFY_INTERVAL_MS, defaultText: '0', help: 'run `pitr verify` (every checksum, a restore, integrity_check, live comparison) against each replica this often; downloads the whole replica (0 = never)' },
  { key: 'takeover', flag: '--takeover', kind: 'bool', scope: 'db', field: 'takeover', help: 'take the replicas over even when another agent holds their lease (it stops writing to them within one lease period); use when that agent is really gone, or to move replication to this host' },
  { key: 'lease-period', flag: '--lease-period <duration>', kind: 'duration', scope: 'db', field: 'leasePeriodMs', help: 'lease period (tests)', hidden: true },
  { key: 'enable-wal', flag: '--enable-wal', kind: 'bool', scope: 'db', field: 'enableWal', help: 'switch a rollback-journal database to WAL mode (a one-time header change)' },
  { key: 'shutdown-timeout', flag: '--shutdown-timeout <duration>', kind: 'duration', scope: 'db', field: 'shutdownTimeoutMs', default: D.DEFAULT_SHUTDOWN_TIMEOUT_MS, defaultText: '30s', help: 'on SIGINT/SIGTERM, how long to keep trying to upload' },
  { key: 'restore-if-missing', flag: '--restore-if-missing', kind: 'bool', scope: 'agent', field: 'restoreIfMissing', help: 'restore a database that does not exist from its first replica (latest state) before replicating it' },
  { key: 'exec', flag: '--exec <cmd>', kind: 'command', scope: 'agent', field: 'exec', help: 'once replication runs, start this command (through /bin/sh), typically the app itself' },
  { key: 'nice', flag: '--nice <n>', kind: 'int', range: [0, 19], scope: 'agent', field: 'nice', default: D.DEFAULT_NICE, help: "lower the agent's CPU priority by this much (0-19), so an app competing for the CPU wins and pitr catches up after; 0 leaves it as started" },
  { key: 'log-format', flag: '--log-format <format>', kind: 'enum', choices: ['json', 'pretty'], scope: 'agent', field: 'logFormat', help: 'log format (default: pretty on a terminal, json otherwise)' },
  { key: 'log-level', flag: '--log-level <level>', kind: 'enum', choices: ['debug', 'info', 'warn', 'error'], scope: 'agent', field: 'logLevel', default: D.DEFAULT_LOG_LEVEL, help: 'log level' },
];

/** The settings a config file accepts at `level`. */
export function settingsAt(level: 'top' | 'db' | 'replica'): Setting[] {
  const scopes: Record<typeof level, SettingScope[]> = {
    top: ['agent', 'db', 'replica'],
    db: ['db', 'replica', 'entry'],
    replica: ['replica'],
  };
  return SETTINGS.filter((s) => scopes[level].includes(s.scope));
}

/** Keys a `dbs:` entry or a `replicas:` item holds besides settings. */
export const ENTRY_KEYS = ['path', 'dir', 'pattern', 'recursive', 'replicas'] as const;
export const REPLICA_KEYS = ['url'] as const;

/** The property commander gives the flag's value: `--snapshot-wal-min` -> snapshotWalMin, `--no-expand-env` -> expandEnv. */
export function flagAttr(s: Setting): string {
  return s.key.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}
