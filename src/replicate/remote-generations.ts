import type { Catalog, SegmentEntry, SnapshotEntry } from '../catalog/catalog.js';
import type { Spool } from './spool.js';

/** What the replica holds of one generation, as far as this agent knows (no LIST per sync). */
export interface RemoteGeneration {
  /** Txid of the snapshot the replica's chain starts from; undefined = no base yet. */
  baseTxid: number | undefined;
  /** End of the unbroken chain in the replica, and its commit time. */
  chainEnd: number;
  chainEndTime: number;
  snapshots: Set<number>;
}

/**
 * One replica's shipper's record of what that replica holds, per generation, set against what the
 * spool holds: what is still to ship, what the spool may drop, how far behind the replica is, and
 * what its marker may claim.
 */
export class RemoteGenerations {
  private readonly remote = new Map<string, RemoteGeneration>();
  private readonly skipped = new Set<string>();
  /** Spooled transactions up to this txid were given up for this replica (spool cap). */
  private abandonedThrough = 0;
  /**
   * Per generation, the newest txid this replica is proven to hold: uploads that completed, and
   * what the marker said when init read it. The marker names these (the current generation's, and
   * earlier ones' as `ends`), so a reader can tell a lost object from one never written.
   */
  private readonly provenBy = new Map<string, { txid: number; commitTime: number }>();

  constructor(private readonly spool: Spool) {}

  /** Per generation, the newest txid this replica is proven to hold (see provenBy). */
  get proven(): ReadonlyMap<string, { txid: number; commitTime: number }> {
    return this.provenBy;
  }

  get(generation: string): RemoteGeneration | undefined {
    return this.remote.get(generation);
  }

  /** What one LIST of the replica found: its chains and snapshots, replacing what was known. */
  load(catalog: Catalog): void {
    this.remote.clear();
    for (const g of catalog.generations) {
      const last = g.windows[g.windows.length - 1];
      this.remote.set(g.id, {
        baseTxid: last?.firstTxid,
        chainEnd: last?.lastTxid ?? 0,
        chainEndTime: last?.lastTime ?? 0,
        snapshots: new Set(g.snapshots.map((s) => s.txid)),
      });
    }
  }

  /** `base` reached the replica, the first object of `gen` there: the chain starts from it. */
  startChain(gen: string, base: SnapshotEntry): void {
    const r = { baseTxid: base.txid, chainEnd: base.txid, chainEndTime: base.commitTime, snapshots: new Set([base.txid]) };
    this.remote.set(gen, r);
    this.prove(gen, base.txid, base.commitTime);
  }

  /** `rebase` reached the replica: the chain `r` of `gen` starts again from it. */
  rebase(gen: string, r: RemoteGeneration, rebase: SnapshotEntry): void {
    r.snapshots.add(rebase.txid);
    r.baseTxid = rebase.txid;
    r.chainEnd = rebase.txid;
    r.chainEndTime = rebase.commitTime;
    this.prove(gen, rebase.txid, rebase.commitTime);
  }

  /** The segments of `gen` up to `last` reached the replica. */
  extendChain(gen: string, last: SegmentEntry): void {
    const r = this.remote.get(gen) as RemoteGeneration;
    r.chainEnd = last.lastTxid;
    r.chainEndTime = last.lastTime;
    this.prove(gen, last.lastTxid, last.lastTime);
  }

  isSkipped(gen: string): boolean {
    return this.skipped.has(gen);
  }

  skip(gen: string): void {
    this.skipped.add(gen);
  }

  /** True when this replica no longer needs the spool entry. */
  doneWith(entry: SegmentEntry | SnapshotEntry): boolean {
    if (this.skipped.has(entry.generation)) return true;
    if (('lastTxid' in entry ? entry.lastTxid : entry.txid) <= this.abandonedThrough) return true;
    const r = this.remote.get(entry.generation);
    if (!r || r.baseTxid === undefined) return false;
    if ('firstTxid' in entry) return r.chainEnd >= entry.lastTxid;
    return r.snapshots.has(entry.txid) || entry.txid < r.baseTxid;
  }

  /** The newest transaction durable in this replica for `generation` (txid 0 when none). */
  durable(generation: string): { txid: number; commitTime: number } {
    const r = this.remote.get(generation);
    return r && r.baseTxid !== undefined ? { txid: r.chainEnd, commitTime: r.chainEndTime } : { txid: 0, commitTime: 0 };
  }

  /** Age in ms of the oldest spooled commit not yet in this replica (0 when caught up). */
  lagMs(now = Date.now()): number {
    let oldest = Infinity;
    for (const gen of this.spool.generations()) {
      if (this.skipped.has(gen)) continue;
      const end = this.remote.get(gen)?.chainEnd ?? 0;
      for (const s of this.spool.segmentsOf(gen)) {
        if (s.lastTxid > end) {
          oldest = Math.min(oldest, s.firstTime);
          break;
        }
      }
    }
    return oldest === Infinity ? 0 : Math.max(0, now - oldest);
  }

  /**
   * The spool is dropping what this (unreachable) replica still needs: stop claiming spooled
   * transactions up to `txid` and every generation but `current`. When the replica is back, its
   * chain ends before what the spool holds, so it rebases on a fresh snapshot (see Shipper.shipOnce):
   * its history has a gap, which restore refuses to guess across.
   */
  abandonThrough(txid: number, current: string): void {
    this.abandonedThrough = Math.max(this.abandonedThrough, txid);
    for (const gen of this.spool.generations()) if (gen !== current) this.skipped.add(gen);
  }

  /** Forget a generation's remote state after retention deleted objects of it. */
  noteDeleted(keys: readonly SnapshotEntry[]): void {
    for (const s of keys) this.remote.get(s.generation)?.snapshots.delete(s.txid);
  }

  prove(generation: string, txid: number, commitTime: number): void {
    const p = this.provenBy.get(generation);
    if (!p || txid > p.txid) this.provenBy.set(generation, { txid, commitTime });
  }

  /**
   * The newest txid of `generation` known durable here: uploads, the marker read at init, and the
   * chain the init LIST found (a replica written before markers existed has only that).
   */
  newestDurable(generation: string): { txid: number; commitTime: number } | undefined {
    const p = this.provenBy.get(generation);
    const r = this.remote.get(generation);
    const listed = r && r.baseTxid !== undefined ? { txid: r.chainEnd, commitTime: r.chainEndTime } : undefined;
    if (!p) return listed;
    return listed && listed.txid > p.txid ? listed : p;
  }

  hasPending(): boolean {
    for (const gen of this.spool.generations()) {
      if (this.skipped.has(gen)) continue;
      const r = this.remote.get(gen);
      const segs = this.spool.segmentsOf(gen);
      const snaps = this.spool.snapshotsOf(gen);
      if (!r || r.baseTxid === undefined) {
        if (snaps.length > 0 || segs.length > 0) return true;
        continue;
      }
      if (segs.some((s) => s.lastTxid > r.chainEnd)) return true;
      if (snaps.some((s) => !r.snapshots.has(s.txid) && s.txid >= (r.baseTxid as number))) return true;
    }
    return false;
  }
}
