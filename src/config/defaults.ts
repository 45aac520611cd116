/**
 * Every default of the agent, the only place they are written down: the settings table (and so the
 * CLI's help and the YAML loader), the agent and the benchmarks read them from here. It imports
 * types only, so that any of them can read it without loading the others.
 */
import type { DbSettings } from './config-types.js';

/** Least spacing of uploads to one replica under sustained writes. */
export const DEFAULT_SYNC_INTERVAL_MS = 1000;
/** A full snapshot this often (besides the one that starts a generation). */
export const DEFAULT_SNAPSHOT_INTERVAL_MS = 24 * 3_600_000;
/** See AgentOptions.snapshotWalRatio. */
export const DEFAULT_SNAPSHOT_WAL_RATIO = 1;
/** See AgentOptions.snapshotWalMinBytes. */
export const DEFAULT_SNAPSHOT_WAL_MIN_BYTES = 256 << 20;
/** Keep what restores any point this far back. */
export const DEFAULT_RETENTION_MS = 7 * 86_400_000;
/** Retention LISTs each replica this often. */
export const DEFAULT_RETENTION_CHECK_MS = 3_600_000;
/** PASSIVE checkpoint once the WAL holds this many frames, all spooled. */
export const DEFAULT_CHECKPOINT_FRAMES = 1000;
/** See AgentOptions.walResetBytes and Capture.resetWal. */
export const DEFAULT_WAL_RESET_BYTES = 64 << 20;
/** Spool cap before what only an unreachable replica needs is dropped. */
export const DEFAULT_SPOOL_MAX_BYTES = 1024 ** 3;
/** Heartbeat to an idle, caught-up replica. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 60_000;
/** Scheduled verify: off, since it downloads the whole replica. */
export const DEFAULT_VERIFY_INTERVAL_MS = 0;
/** On SIGINT/SIGTERM, keep trying to upload this long. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 30_000;
/** The replica lease's period (the lease module's default; hidden setting, for tests). */
export const DEFAULT_LEASE_PERIOD_MS = 30_000;
/** CPU priority lowered by this much: the app wins when both want the CPU. */
export const DEFAULT_NICE = 10;
export const DEFAULT_LOG_LEVEL = 'info';
/** Glob of a `dir` entry's databases. */
export const DEFAULT_DIR_PATTERN = '*.db';

/** A `path` entry's state directory when none is given. */
export function defaultPathStateDir(dbPath: string): string {
  return `${dbPath}-pitr`;
}

/** A `dir` entry's state directory template when none is given: one directory per database. */
export function defaultDirStateDir(dir: string): string {
  return `${dir}/.pitr/{name}`;
}

/** The settings of a database entry that sets none, nor any global. */
export function defaultDbSettings(): DbSettings {
  return {
    syncIntervalMs: DEFAULT_SYNC_INTERVAL_MS,
    retentionMs: DEFAULT_RETENTION_MS,
    retentionCheckMs: DEFAULT_RETENTION_CHECK_MS,
    heartbeatIntervalMs: DEFAULT_HEARTBEAT_INTERVAL_MS,
    verifyIntervalMs: DEFAULT_VERIFY_INTERVAL_MS,
    snapshotIntervalMs: DEFAULT_SNAPSHOT_INTERVAL_MS,
    snapshotWalRatio: DEFAULT_SNAPSHOT_WAL_RATIO,
    snapshotWalMinBytes: DEFAULT_SNAPSHOT_WAL_MIN_BYTES,
    checkpointFrames: DEFAULT_CHECKPOINT_FRAMES,
    walResetBytes: DEFAULT_WAL_RESET_BYTES,
    spoolMaxBytes: DEFAULT_SPOOL_MAX_BYTES,
    maxLagMs: undefined,
    enableWal: false,
    shutdownTimeoutMs: DEFAULT_SHUTDOWN_TIMEOUT_MS,
    takeover: false,
    leasePeriodMs: undefined,
  };
}
