/**
 * Defaults of `pitr replicate` that the agent, the CLI and the benchmarks must agree on. A module of
 * its own so that the CLI can read them without loading the agent.
 */

/** See AgentOptions.walResetBytes and Capture.resetWal. */
export const DEFAULT_WAL_RESET_BYTES = 64 << 20;
/** See AgentOptions.snapshotWalRatio. */
export const DEFAULT_SNAPSHOT_WAL_RATIO = 1;
/** See AgentOptions.snapshotWalMinBytes. */
export const DEFAULT_SNAPSHOT_WAL_MIN_BYTES = 256 << 20;

/** WAL since the last snapshot at which --snapshot-wal-ratio takes another (Infinity when off). */
export function snapshotWalLimit(ratio: number, minBytes: number, dbBytes: number): number {
  return ratio > 0 ? Math.max(ratio * dbBytes, minBytes) : Infinity;
}
