/**
 * What an agent runs, once loaded and checked: the shape both `pitr replicate DB [REPLICA...]`
 * (flags) and `pitr replicate --config FILE` (YAML) produce, and the supervisor consumes. Every
 * value is resolved: defaults applied, globals inherited, durations and sizes in ms and bytes.
 * Templates ({name}) are left in place for `dir` entries; the supervisor fills them per database.
 */

/** Settings a replica may override (a `replicas:` item), inherited from its database, then global. */
export interface ReplicaSettings {
  /** Least spacing of uploads under sustained writes (ms); 0 ships every capture. */
  syncIntervalMs: number;
  /** Keep what restores any point this far back (ms); 0 keeps everything. */
  retentionMs: number;
  /** How often retention LISTs the replica (ms). */
  retentionCheckMs: number;
  /** Heartbeat to an idle, caught-up replica this often (ms); 0 = never. */
  heartbeatIntervalMs: number;
  /** Scheduled `pitr verify` of the replica (ms); 0 = never. */
  verifyIntervalMs: number;
}

/** Settings a database entry may override, inherited from the global keys. */
export interface DbSettings extends ReplicaSettings {
  snapshotIntervalMs: number;
  snapshotWalRatio: number;
  snapshotWalMinBytes: number;
  checkpointFrames: number;
  walResetBytes: number;
  spoolMaxBytes: number;
  /** RPO objective (ms): /healthz is 503 while a replica lags more; undefined = none. */
  maxLagMs: number | undefined;
  enableWal: boolean;
  shutdownTimeoutMs: number;
  takeover: boolean;
  /** Lease period (ms); undefined = the lease module's default. Hidden (tests). */
  leasePeriodMs: number | undefined;
}

export interface ReplicaSpec {
  /** A path, file:// or s3:// URL; may hold {name} in a `dir` entry. */
  url: string;
  settings: ReplicaSettings;
}

interface DbSpecBase {
  /**
   * Where the spool and position live. A `path` entry: default `<path>-pitr`. A `dir` entry: a
   * template with {name}, default `<dir>/.pitr/{name}`.
   */
  stateDir: string | undefined;
  /** Empty = the default local directory replica `<db>-replica`. */
  replicas: ReplicaSpec[];
  settings: DbSettings;
  /** Where the entry is in the config file (1-based line), for messages; 0 for flags. */
  line: number;
}

export interface PathDbSpec extends DbSpecBase {
  kind: 'path';
  /** Absolute path of the database file. */
  path: string;
}

export interface DirDbSpec extends DbSpecBase {
  kind: 'dir';
  /** Absolute path of the directory watched for databases. */
  dir: string;
  /** Glob on the file name (`*`, `?`, `[...]`), default "*.db". */
  pattern: string;
  /** Also look in subdirectories; {name} is then the path under `dir`, without the extension. */
  recursive: boolean;
}

export type DbSpec = PathDbSpec | DirDbSpec;

export interface AgentConfig {
  /** The config file's absolute path, or undefined when built from flags. */
  source: string | undefined;
  /** Serve /metrics and /healthz on HOST:PORT. */
  listen: string | undefined;
  /** Control socket path; undefined = the default (see src/agent/control-socket.ts). */
  socket: string | undefined;
  /** Command to start once replication runs: a string goes through /bin/sh, a list is argv. */
  exec: string | string[] | undefined;
  /** Restore a missing database from its first replica before replicating it. */
  restoreIfMissing: boolean;
  logFormat: 'json' | 'pretty' | undefined;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Lower the CPU priority by this much (0-19). */
  nice: number;
  dbs: DbSpec[];
}
