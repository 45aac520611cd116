import type { SegmentEntry, SnapshotEntry } from '../catalog/catalog.js';
import type { Logger } from '../log.js';
import type { Spool } from './spool.js';
import type { Shipper } from './shipper.js';

/**
 * Keeps one database's spool small: deletes what every replica is done with, and past the cap
 * gives up what only a failing replica still needs. Never deletes what a replica that is merely
 * behind (one sync interval, a slow upload) still needs.
 */
export class SpoolKeeper {
  private trimming = false;

  constructor(
    private readonly spool: Spool,
    private readonly shippers: () => readonly Shipper[],
    private readonly capBytes: number,
    private readonly log: Logger,
  ) {}

  /** Over the cap now (worth a trim before the next upload ends). */
  overCap(): boolean {
    return this.capBytes > 0 && this.spool.totalBytes() > this.capBytes;
  }

  /** Delete spool entries every replica is done with; `position`: where capture is (for the cap). */
  async trim(position: { generation: string; txid: number } | undefined, stopping: boolean): Promise<void> {
    if (this.trimming) return;
    this.trimming = true;
    try {
      await this.spool.remove(this.entriesEveryReplicaIsDoneWith());
      if (position && !stopping) await this.enforceCap(position);
    } catch (err) {
      this.log.warn('spool cleanup failed; will retry', { err });
    } finally {
      this.trimming = false;
    }
  }

  /**
   * A replica down for long must not fill the disk. Past the cap, each failing replica gives up
   * the spooled transactions it still needs; the entries only it needed are deleted. Capture and
   * the healthy replicas are not affected. When the replica is back it rebases on a fresh
   * snapshot: its history has a gap, which restore refuses to guess across.
   */
  private async enforceCap(position: { generation: string; txid: number }): Promise<void> {
    if (!this.overCap()) return;
    // Only replicas that are failing: one merely a sync interval behind is not lagging.
    const lagging = this.shippers().filter((s) => s.isFailing() && s.hasPending());
    if (lagging.length === 0) return;
    const before = this.spool.totalBytes();
    for (const s of lagging) {
      s.abandonThrough(position.txid, position.generation);
      this.log.warn('spool is over its cap while a replica is unreachable: dropping what only that replica still needs; when it is back it resumes from a new snapshot, with a gap in its history', {
        replica: s.replica.url,
        spoolBytes: before,
        cap: this.capBytes,
        droppedThroughTxid: position.txid,
      });
    }
    await this.spool.remove(this.entriesEveryReplicaIsDoneWith());
  }

  private entriesEveryReplicaIsDoneWith(): (SegmentEntry | SnapshotEntry)[] {
    const shippers = this.shippers();
    const done: (SegmentEntry | SnapshotEntry)[] = [];
    for (const gen of this.spool.generations()) {
      for (const e of [...this.spool.segmentsOf(gen), ...this.spool.snapshotsOf(gen)]) {
        if (shippers.every((s) => s.doneWith(e))) done.push(e);
      }
    }
    return done;
  }
}
