/**
 * When --snapshot-wal-ratio asks for another snapshot: shared by the agent and the benchmarks, which
 * must agree on it. A module of its own so that neither loads the other.
 */

/** WAL since the last snapshot at which --snapshot-wal-ratio takes another (Infinity when off). */
export function snapshotWalLimit(ratio: number, minBytes: number, dbBytes: number): number {
  return ratio > 0 ? Math.max(ratio * dbBytes, minBytes) : Infinity;
}
