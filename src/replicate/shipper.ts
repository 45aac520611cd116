import type { StorageClient } from '../storage/storage-client.js';
import { buildCatalog, maxTxid, type Catalog, type SegmentEntry, type SnapshotEntry } from '../catalog/catalog.js';
import type { Spool } from './spool.js';
import type { Logger } from '../log.js';
import { formatDuration } from '../util/duration.js';
import { readHeartbeat, type Heartbeat } from '../monitor/heartbeat.js';
import { isPitrError } from '../errors.js';
import { backoffMs } from '../util/backoff.js';
import { refuseOverlap } from './overlap-refusal.js';
import { RemoteGenerations, type RemoteGeneration } from './remote-generations.js';
import { ReplicaMarker } from './replica-marker.js';
import { uploadMergedSegment } from './segment-upload.js';

import type { ShipperOptions } from './shipper-options.js';
export type { ShipperOptions } from './shipper-options.js';

export interface ShipperStats {
  bytesShipped: number;
  objectsShipped: number;
  uploadErrors: number;
  lastShippedTxid: number;
  lastShippedTime: number;
}

/**
 * Ships spool entries to one replica, in txid order, with its own position, pacing and retries.
 * A failing replica only delays itself: capture and other shippers never wait for it.
 */
export class Shipper {
  readonly replica: StorageClient;
  readonly stats: ShipperStats = { bytesShipped: 0, objectsShipped: 0, uploadErrors: 0, lastShippedTxid: 0, lastShippedTime: 0 };
  /** What the replica holds, per generation, set against the spool. */
  private readonly remote: RemoteGenerations;
  /** The replica's marker (heartbeat.json): proves uploads complete. */
  private readonly marker: ReplicaMarker;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private dirty = false;
  private stopped = false;
  /**
   * Set when this replica, unreachable at the agent's start, turned out to hold txids the agent's
   * generations reuse: it is never written again by this agent (see refuseOverlap).
   */
  private overlap: string | undefined;
  private lastUploadAt = 0;
  private failures = 0;
  private failingSince = 0;
  private readonly log: Logger;
  private initialized = false;
  /**
   * A snapshot the chain does not depend on (a later one, by interval or WAL volume) uploading in
   * the background, and when one may be tried again after a failure. See shipOnce.
   */
  private laterSnapshot: Promise<void> | undefined;
  private laterSnapshotFailures = 0;
  private laterSnapshotRetryAt = 0;

  constructor(
    replica: StorageClient,
    private readonly spool: Spool,
    private readonly opts: ShipperOptions,
  ) {
    this.replica = replica;
    this.log = opts.log.child({ replica: replica.url });
    this.remote = new RemoteGenerations(spool);
    this.marker = new ReplicaMarker(replica, this.remote, opts, this.log);
  }

  /**
   * Read the marker, then one LIST of the replica: learn what it holds. Returns its catalog (with
   * the marker, so its maxTxid counts what the marker proves as well as what is listed).
   */
  async init(): Promise<Catalog> {
    let marker: Heartbeat | null = null;
    try {
      marker = await readHeartbeat(this.replica);
    } catch (err) {
      if (!isPitrError(err, 'OBJECT_CORRUPT')) throw err;
      this.log.warn('the replica\'s marker is unreadable; it will be rewritten after the next upload', { err });
    }
    const catalog = buildCatalog(await this.replica.list('generations/'), { marker });
    if (marker) {
      for (const e of marker.ends ?? []) this.remote.prove(e.generation, e.txid, e.commitTime);
      this.remote.prove(marker.generation, marker.txid, marker.commitTime);
      this.marker.said(marker.generation, marker.txid);
    }
    this.remote.load(catalog);
    this.initialized = true;
    return catalog;
  }

  static maxTxidOf(catalog: Catalog): number {
    return maxTxid(catalog);
  }

  /** New spool entries exist: upload now, or at the next sync-interval boundary. */
  notify(): void {
    if (this.stopped) return;
    if (this.running) {
      this.dirty = true;
      return;
    }
    if (this.timer) return;
    const wait = this.failures > 0 ? this.retryDelay() : Math.max(0, this.lastUploadAt + this.opts.syncIntervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.kick();
    }, wait);
  }

  /** Upload everything pending now, ignoring the sync interval; resolves when done or on deadline. */
  async flush(deadline: number): Promise<boolean> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    while (Date.now() < deadline) {
      if (this.running) await this.running;
      if (!this.hasPending()) break;
      this.kick();
      await this.running;
      if (this.hasPending()) {
        // Failing, or waiting for a snapshot the agent is taking: do not spin.
        const pause = this.failures > 0 ? this.retryDelay() : 50;
        await sleep(Math.min(pause, Math.max(0, deadline - Date.now())));
      }
    }
    const done = !this.hasPending();
    // Stopping: prove the last uploads now rather than after the marker interval (but never wait
    // past the deadline for it: the data is uploaded, the marker is only its proof).
    if (done) await beforeDeadline(this.marker.write(false), deadline);
    return done;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.marker.stop();
  }

  /** True when this replica no longer needs the spool entry. */
  doneWith(entry: SegmentEntry | SnapshotEntry): boolean {
    return this.remote.doneWith(entry);
  }

  /** The newest transaction durable in this replica for `generation` (txid 0 when none). */
  durable(generation: string): { txid: number; commitTime: number } {
    return this.remote.durable(generation);
  }

  /** Age in ms of the oldest spooled commit not yet in this replica (0 when caught up). */
  lagMs(now = Date.now()): number {
    return this.remote.lagMs(now);
  }

  /** The spool is dropping what this (unreachable) replica still needs (see RemoteGenerations.abandonThrough). */
  abandonThrough(txid: number, current: string): void {
    this.remote.abandonThrough(txid, current);
  }

  /** Forget a generation's remote state after retention deleted objects of it. */
  noteDeleted(keys: readonly SnapshotEntry[]): void {
    this.remote.noteDeleted(keys);
  }

  /**
   * Write the heartbeat (the marker, refreshed) when this replica is caught up and nothing was
   * uploaded to it for `intervalMs`, so `pitr status` can tell "idle and current" from "agent gone"
   * using the replica alone. The caller knows capture is caught up too. Returns true when one was
   * written. Failures count as upload failures.
   */
  /**
   * Whether heartbeat(intervalMs) would write now: a synchronous look, so that a thousand idle
   * replicas checked on every tick cost no promise each.
   */
  heartbeatDue(intervalMs: number): boolean {
    if (this.stopped || !this.initialized || this.failures > 0 || this.running) return false;
    return this.marker.heartbeatDue(intervalMs, this.lastUploadAt) && !this.hasPending();
  }

  async heartbeat(intervalMs: number): Promise<boolean> {
    if (this.stopped || !this.initialized || this.failures > 0 || this.running || this.hasPending()) return false;
    return this.marker.heartbeat(intervalMs, this.lastUploadAt);
  }

  /** True while uploads to this replica fail (between the first failure and the next success). */
  isFailing(): boolean {
    return this.failures > 0 || this.overlap !== undefined;
  }

  hasPending(): boolean {
    return this.remote.hasPending();
  }

  private kick(): void {
    if (this.running || this.stopped) return;
    this.running = this.run().finally(() => {
      this.running = undefined;
      if (this.dirty || (this.failures > 0 && this.hasPending())) {
        this.dirty = false;
        this.notify();
      }
    });
  }

  private async run(): Promise<void> {
    const startedAt = Date.now();
    try {
      while (!this.stopped && (await this.shipOnce())) {
        // keep going while there is work
      }
      if (this.failures > 0) {
        this.log.info('replica reachable again; caught up', { downFor: formatDuration(Date.now() - this.failingSince) });
        this.failures = 0;
      }
      if (!this.hasPending()) this.marker.schedule();
    } catch (err) {
      this.stats.uploadErrors++;
      this.opts.events?.failed();
      if (this.failures === 0) {
        // The storage client retried before giving up: the outage began when this run did.
        this.failingSince = startedAt;
        // Once per outage, not once per retry: the retries are logged at debug level.
        this.log.warn('upload to replica failed; capture continues and uploads will be retried', { err });
      } else {
        this.log.debug('upload retry failed', { err, attempt: this.failures + 1 });
      }
      this.failures++;
    }
  }

  private retryDelay(): number {
    return retryAfterMs(this.failures, CHAIN_RETRY_MAX_MS);
  }

  /** Upload one object (snapshot or merged segment). Returns false when nothing is pending. */
  private async shipOnce(): Promise<boolean> {
    // A replica unreachable at startup learns its state on the first successful call.
    if (!this.initialized) this.overlap = refuseOverlap(await this.init(), this.spool, this.log, this.opts.events);
    if (this.overlap !== undefined) return false;
    for (const gen of this.spool.generations()) {
      if (this.remote.isSkipped(gen)) continue;
      const snaps = this.spool.snapshotsOf(gen);
      const segs = this.spool.segmentsOf(gen);
      const r = this.remote.get(gen);
      if (!r || r.baseTxid === undefined) {
        const base = snaps[snaps.length - 1];
        if (!base) {
          if (segs.length === 0) continue;
          if (gen === this.opts.currentGeneration()) {
            this.opts.requestSnapshot();
            return false; // resumes when the snapshot lands in the spool
          }
          this.skipGeneration(gen, 'it has no snapshot to start from');
          continue;
        }
        await this.uploadSnapshot(base);
        this.remote.startChain(gen, base);
        return true;
      }
      const pending = segs.filter((s) => s.lastTxid > r.chainEnd);
      if (pending.length > 0 && (pending[0] as SegmentEntry).firstTxid > r.chainEnd + 1) {
        // The replica's chain ends before what the spool still has (e.g. the replica was reset).
        const rebase = [...snaps].reverse().find((s) => s.txid >= (pending[0] as SegmentEntry).firstTxid - 1);
        if (rebase) {
          await this.uploadSnapshot(rebase);
          this.remote.rebase(gen, r, rebase);
          return true;
        }
        if (gen === this.opts.currentGeneration()) {
          // Resumes when the snapshot lands in the spool (the agent notifies us).
          this.log.warn('replica is missing transactions the spool no longer has; it resumes from a new snapshot', { generation: gen, chainEnd: r.chainEnd });
          this.opts.requestSnapshot();
          return false;
        }
        this.skipGeneration(gen, 'its older transactions are no longer in the spool');
        continue;
      }
      if (pending.length > 0) {
        await this.uploadSegments(gen, pending);
        return true;
      }
      // A later snapshot only shortens restores; the chain does not wait for it. Uploaded in line,
      // a big one (minutes for a database of many GB) would hold every segment behind it and the
      // RPO with them, so it goes up in the background, one at a time, while segments keep going.
      const snap = snaps.find((s) => !r.snapshots.has(s.txid) && s.txid >= (r.baseTxid as number));
      if (snap && !this.laterSnapshot && Date.now() >= this.laterSnapshotRetryAt) this.uploadLaterSnapshot(snap, r);
    }
    return false;
  }

  private uploadLaterSnapshot(snap: SnapshotEntry, r: RemoteGeneration): void {
    this.laterSnapshot = this.uploadSnapshot(snap)
      .then(
        () => {
          r.snapshots.add(snap.txid);
          this.laterSnapshotFailures = 0;
        },
        (err: unknown) => {
          this.stats.uploadErrors++;
          this.opts.events?.failed();
          this.laterSnapshotFailures++;
          const delay = retryAfterMs(this.laterSnapshotFailures, LATER_SNAPSHOT_RETRY_MAX_MS);
          this.laterSnapshotRetryAt = Date.now() + delay;
          this.log.warn('snapshot upload failed; segments keep shipping and it will be retried', { key: snap.key, err, retryIn: formatDuration(delay) });
          setTimeout(() => this.notify(), delay).unref();
        },
      )
      .finally(() => {
        this.laterSnapshot = undefined;
        this.notify();
      });
  }

  private skipGeneration(gen: string, why: string): void {
    this.remote.skip(gen);
    this.log.warn(`generation ${gen} will not be shipped to this replica: ${why}`, { generation: gen });
  }

  private async uploadSnapshot(s: SnapshotEntry): Promise<void> {
    this.lastUploadAt = Date.now();
    await this.replica.put(s.key, this.spool.readSnapshot(s), { size: s.size });
    this.stats.bytesShipped += s.size;
    this.stats.objectsShipped++;
    if (s.txid > this.stats.lastShippedTxid) {
      this.stats.lastShippedTxid = s.txid;
      this.stats.lastShippedTime = s.commitTime;
    }
    this.opts.events?.uploaded('snapshot', s.size);
    this.log.info('snapshot uploaded', { key: s.key, bytes: s.size });
    this.opts.onShipped();
  }

  private async uploadSegments(gen: string, pending: readonly SegmentEntry[]): Promise<void> {
    this.lastUploadAt = Date.now();
    const { last, bytes } = await uploadMergedSegment(this.replica, this.spool, gen, pending, this.opts.maxSegmentBytes);
    this.shipped(gen, last, bytes);
  }

  /** Bookkeeping after the segments of `gen` up to `last` reached the replica as one object of `bytes`. */
  private shipped(gen: string, last: SegmentEntry, bytes: number): void {
    this.remote.extendChain(gen, last);
    this.stats.bytesShipped += bytes;
    this.stats.objectsShipped++;
    this.stats.lastShippedTxid = last.lastTxid;
    this.stats.lastShippedTime = last.lastTime;
    this.opts.events?.uploaded('segment', bytes);
    this.opts.onShipped();
  }
}

/**
 * Longest wait before the chain is shipped again to a failing replica. Short on purpose: the
 * storage client has already retried with a backoff of its own before it gave up (S3: 6 attempts,
 * a dead connection found in seconds), so this wait spares the store little; what it sets is how
 * long a replica that is back goes unnoticed. With the former 30 s, a replica whose outage outlasted
 * a few put attempts caught up as much as 30 s after it recovered.
 */
const CHAIN_RETRY_MAX_MS = 3_000;
/** A later snapshot holds nothing back and every try reads it again from the spool: it may wait longer. */
const LATER_SNAPSHOT_RETRY_MAX_MS = 30_000;

/** Wait after `failures` failures in a row: 250 ms doubling up to `maxMs`, times 0.5-1. */
function retryAfterMs(failures: number, maxMs: number): number {
  return backoffMs(failures + 1, { baseMs: 250, maxMs, jitter: 'half' });
}

/** Wait for `p`, or until `deadline` (ms since the epoch), whichever comes first. */
async function beforeDeadline(p: Promise<unknown>, deadline: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((r) => (timer = setTimeout(r, Math.max(0, deadline - Date.now()))));
  try {
    await Promise.race([p.then(() => undefined, () => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
