import { formatBytes } from '../util/duration.js';
import { snapshotWalLimit } from './snapshot-wal-limit.js';

/**
 * Least time between a failed snapshot and the next one --snapshot-wal-ratio asks for: it asks
 * after every capture pass, and each try reads the whole database.
 */
const WAL_SNAPSHOT_RETRY_MS = 10_000;
/**
 * A snapshot pins a read transaction for its whole duration, and while it does the WAL cannot be
 * reset (Capture.resetWal). --snapshot-wal-ratio waits this many times the last snapshot's
 * duration after it, so its snapshots pin at most ~1/(1 + this) of the time: behind a writer that
 * fills --snapshot-wal-min in about a second, they otherwise ran back to back (4 in 20 s on the
 * bench's flat-out writer, each 1-3 s) and the WAL grew without a reset the whole time.
 */
const WAL_SNAPSHOT_SPACING = 9;

/**
 * When one database needs a new snapshot: on its interval, and when the WAL captured since the
 * newest one outgrows the database (a restore of the latest state reads the newest snapshot and
 * replays every segment after it, so its time grows with that WAL, not with the database). Pure
 * bookkeeping: the replicator takes the snapshots and tells this what happened.
 */
export class SnapshotPolicy {
  lastSnapshotAt = 0;
  /** How long the last snapshot took to spool (ms). */
  private lastTookMs = 0;
  /** When the last snapshot failed (0 = none has). */
  private failedAt = 0;
  /**
   * Bytes of segment body (page images and commit records) captured since the state the newest
   * snapshot holds; counted from the agent's start when it continues a generation.
   */
  walSinceSnapshot = 0;

  constructor(private readonly opts: { intervalMs: number; walRatio: number; walMinBytes: number }) {}

  /** Capture is running: the interval counts from now. */
  started(now: number): void {
    this.lastSnapshotAt = now;
  }

  captured(bytes: number): void {
    this.walSinceSnapshot += bytes;
  }

  /** A snapshot was taken: `walBefore` is what walSinceSnapshot said when its state was pinned. */
  taken(started: number, now: number, walBefore: number): void {
    // What was captured while the snapshot was written comes after its state: it still counts.
    this.walSinceSnapshot = Math.max(0, this.walSinceSnapshot - walBefore);
    this.lastSnapshotAt = now;
    this.lastTookMs = now - started;
  }

  failed(now: number): void {
    this.failedAt = now;
  }

  /** The reason a snapshot is due by interval, or undefined. */
  dueByInterval(now: number): string | undefined {
    const every = this.opts.intervalMs;
    return every > 0 && now - this.lastSnapshotAt >= every ? 'snapshot interval' : undefined;
  }

  /**
   * The reason a snapshot is due by WAL volume, or undefined: once the WAL since the newest
   * snapshot outgrows walRatio x the database, a new one bounds what a restore replays to about
   * (1 + ratio) database sizes, whatever the write rate and the interval.
   */
  dueByWal(now: number, dbBytes: number): string | undefined {
    if (now - this.failedAt < WAL_SNAPSHOT_RETRY_MS) return undefined;
    if (now - this.lastSnapshotAt < WAL_SNAPSHOT_SPACING * this.lastTookMs) return undefined;
    if (this.walSinceSnapshot < snapshotWalLimit(this.opts.walRatio, this.opts.walMinBytes, dbBytes)) return undefined;
    return `${formatBytes(this.walSinceSnapshot)} of WAL since the last snapshot, over ${this.opts.walRatio} x the ${formatBytes(dbBytes)} database`;
  }
}
