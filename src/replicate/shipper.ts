import type { StorageClient } from '../storage/storage-client.js';
import { buildCatalog, maxTxid, type Catalog, type SegmentEntry, type SnapshotEntry } from '../catalog/catalog.js';
import { segmentKey } from '../segment/object-names.js';
import { decodeSegment, encodeSegment, joinSegments, readStoredSegment, type StoredSegment } from '../segment/index.js';
import type { Spool } from './spool.js';
import type { Logger } from '../log.js';
import { formatDuration } from '../util/duration.js';
import { HEARTBEAT_KEY, MAX_HEARTBEAT_ENDS, encodeHeartbeat, readHeartbeat, type Heartbeat } from '../monitor/heartbeat.js';
import { isPitrError } from '../errors.js';
import { backoffMs } from '../util/backoff.js';

/**
 * Least spacing of marker writes after uploads. Each costs one small PUT, so under sustained writes
 * (one upload a second at the default --sync-interval) the marker adds at most one PUT per 10 s
 * (8,640 a day, +10%); the price is that uploads of the last 10 s are not yet proven complete
 * (a reader cannot tell the newest of them missing). See docs/FORMAT.md, "Completeness".
 */
export const MARKER_INTERVAL_MS = 10_000;

/** What the replica holds of one generation, as far as this agent knows (no LIST per sync). */
interface RemoteGeneration {
  /** Txid of the snapshot the replica's chain starts from; undefined = no base yet. */
  baseTxid: number | undefined;
  /** End of the unbroken chain in the replica, and its commit time. */
  chainEnd: number;
  chainEndTime: number;
  snapshots: Set<number>;
}

export interface ShipperOptions {
  /** Minimum spacing of uploads under sustained writes; 0 = upload every capture. */
  syncIntervalMs: number;
  /** Most uncompressed bytes merged into one uploaded segment (restore holds a body in memory). */
  maxSegmentBytes?: number;
  log: Logger;
  /** The generation capture is writing now. */
  currentGeneration: () => string;
  /** Ask the agent for a fresh snapshot of the current generation (this replica has no base). */
  requestSnapshot: () => void;
  /** Called after each successful upload (the agent trims the spool). */
  onShipped: () => void;
  /** Who writes the replica's marker (heartbeat.json); without it no marker is written. */
  agent?: { host: string; pid: number; version: string };
  /** Least spacing of marker writes after uploads (default MARKER_INTERVAL_MS); 0 = after every upload. */
  markerIntervalMs?: number;
  /** Upload accounting, for metrics. */
  events?: {
    uploaded(kind: 'segment' | 'snapshot' | 'heartbeat', bytes: number): void;
    failed(): void;
  };
}

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
  private readonly remote = new Map<string, RemoteGeneration>();
  private readonly skipped = new Set<string>();
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
  private lastHeartbeatAt = 0;
  private failures = 0;
  private failingSince = 0;
  private readonly log: Logger;
  private initialized = false;
  /** Spooled transactions up to this txid were given up for this replica (spool cap). */
  private abandonedThrough = 0;
  /**
   * A snapshot the chain does not depend on (a later one, by interval or WAL volume) uploading in
   * the background, and when one may be tried again after a failure. See shipOnce.
   */
  private laterSnapshot: Promise<void> | undefined;
  private laterSnapshotFailures = 0;
  private laterSnapshotRetryAt = 0;
  /**
   * Per generation, the newest txid this replica is proven to hold: uploads that completed, and
   * what the marker said when init read it. The marker names these (the current generation's, and
   * earlier ones' as `ends`), so a reader can tell a lost object from one never written.
   */
  private readonly proven = new Map<string, { txid: number; commitTime: number }>();
  /** What the marker in the replica says now (as last written or read), to skip rewriting it. */
  private markerSays: { generation: string; txid: number } | undefined;
  private lastMarkerAt = 0;
  private markerTimer: NodeJS.Timeout | undefined;
  /** Marker writes, one at a time, so an older body never lands after a newer one. */
  private markerChain: Promise<unknown> = Promise.resolve();

  constructor(
    replica: StorageClient,
    private readonly spool: Spool,
    private readonly opts: ShipperOptions,
  ) {
    this.replica = replica;
    this.log = opts.log.child({ replica: replica.url });
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
      for (const e of marker.ends ?? []) this.prove(e.generation, e.txid, e.commitTime);
      this.prove(marker.generation, marker.txid, marker.commitTime);
      this.markerSays = { generation: marker.generation, txid: marker.txid };
    }
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
    this.initialized = true;
    return catalog;
  }

  /**
   * A txid names one transaction in a replica. The agent numbers a new generation above what the
   * spool and the replicas it could LIST at start hold; a replica it could not reach then may hold
   * more (another agent's history). Shipping there would give two transactions one txid, so such a
   * replica is refused, loudly, until the agent restarts while it is reachable.
   */
  private refuseOverlap(catalog: Catalog): void {
    for (const gen of this.spool.generations()) {
      if (catalog.generations.some((g) => g.id === gen)) continue;
      const ours = [...this.spool.snapshotsOf(gen).map((e) => e.txid), ...this.spool.segmentsOf(gen).map((e) => e.firstTxid)];
      if (ours.length === 0) continue;
      const first = Math.min(...ours);
      const theirs = catalog.generations.filter((g) => g.id !== gen && g.newestTxid >= first);
      if (theirs.length === 0) continue;
      this.overlap = `it holds txids up to ${Math.max(...theirs.map((g) => g.newestTxid))} (generation ${theirs.map((g) => g.id).join(', ')}), and this agent's generation ${gen} starts at txid ${first}`;
      this.log.error('replica refused: it was unreachable when the agent started and holds txids this agent reuses; nothing will be written to it', {
        problem: this.overlap,
        hint: 'restart the agent while this replica is reachable: its new generation then starts above every txid the replica holds',
      });
      this.opts.events?.failed();
      return;
    }
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
    if (done) await beforeDeadline(this.writeMarker(false), deadline);
    return done;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.markerTimer) clearTimeout(this.markerTimer);
    this.markerTimer = undefined;
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
   * chain ends before what the spool holds, so it rebases on a fresh snapshot (see shipOnce):
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

  /**
   * Write the heartbeat (the marker, refreshed) when this replica is caught up and nothing was
   * uploaded to it for `intervalMs`, so `pitr status` can tell "idle and current" from "agent gone"
   * using the replica alone. The caller knows capture is caught up too. Returns true when one was
   * written. Failures count as upload failures.
   */
  async heartbeat(intervalMs: number): Promise<boolean> {
    if (this.stopped || !this.initialized || this.failures > 0 || this.running || this.hasPending()) return false;
    const now = Date.now();
    if (now - Math.max(this.lastUploadAt, this.lastHeartbeatAt) < intervalMs) return false;
    this.lastHeartbeatAt = now;
    return this.writeMarker(true);
  }

  private prove(generation: string, txid: number, commitTime: number): void {
    const p = this.proven.get(generation);
    if (!p || txid > p.txid) this.proven.set(generation, { txid, commitTime });
  }

  /**
   * The marker as it should read now: the current generation's newest durable txid, and where the
   * earlier generations this agent knows of ended. Undefined until the current generation has a
   * base in this replica (until then the marker keeps naming the previous one).
   */
  private markerBody(now: number): Uint8Array | undefined {
    const agent = this.opts.agent;
    const gen = this.opts.currentGeneration();
    const cur = this.newestDurable(gen);
    if (!agent || !cur) return undefined;
    const ends = [...this.proven.entries()]
      .filter(([g]) => g !== gen)
      .sort(([a], [b]) => (a < b ? 1 : a > b ? -1 : 0))
      .slice(0, MAX_HEARTBEAT_ENDS)
      .map(([generation, p]) => ({ generation, txid: p.txid, commitTime: p.commitTime }));
    return encodeHeartbeat({ version: 1, time: now, generation: gen, txid: cur.txid, commitTime: cur.commitTime, agent, ...(ends.length > 0 ? { ends } : {}) });
  }

  /** True when the marker in the replica does not name the current generation's newest durable txid. */
  private markerStale(): boolean {
    const gen = this.opts.currentGeneration();
    const cur = this.newestDurable(gen);
    return cur !== undefined && (this.markerSays?.generation !== gen || this.markerSays.txid !== cur.txid);
  }

  /**
   * The newest txid of `generation` known durable here: uploads, the marker read at init, and the
   * chain the init LIST found (a replica written before markers existed has only that).
   */
  private newestDurable(generation: string): { txid: number; commitTime: number } | undefined {
    const p = this.proven.get(generation);
    const r = this.remote.get(generation);
    const listed = r && r.baseTxid !== undefined ? { txid: r.chainEnd, commitTime: r.chainEndTime } : undefined;
    if (!p) return listed;
    return listed && listed.txid > p.txid ? listed : p;
  }

  /**
   * After uploads: rewrite the marker now, or once MARKER_INTERVAL_MS has passed since the last
   * one (a timer), so a busy replica gets one marker PUT per interval and the last uploads before
   * a pause are proven within the interval.
   */
  private scheduleMarker(): void {
    if (this.stopped || !this.opts.agent || this.markerTimer || !this.markerStale()) return;
    const wait = Math.max(0, this.lastMarkerAt + (this.opts.markerIntervalMs ?? MARKER_INTERVAL_MS) - Date.now());
    this.markerTimer = setTimeout(() => {
      this.markerTimer = undefined;
      void this.writeMarker(false);
    }, wait);
    this.markerTimer.unref();
  }

  /**
   * PUT the marker (serialized). `always`: even when it already says the newest (a heartbeat
   * refreshes its time). A failure is logged and counted; the next upload or heartbeat retries.
   */
  private writeMarker(always: boolean): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      if (!always && !this.markerStale()) return false;
      const now = Date.now();
      const bytes = this.markerBody(now);
      if (!bytes) return false;
      const gen = this.opts.currentGeneration();
      const txid = (this.newestDurable(gen) as { txid: number }).txid;
      this.lastMarkerAt = now;
      this.lastHeartbeatAt = now;
      try {
        await this.replica.put(HEARTBEAT_KEY, bytes);
        this.markerSays = { generation: gen, txid };
        this.opts.events?.uploaded('heartbeat', bytes.length);
        return true;
      } catch (err) {
        this.opts.events?.failed();
        this.log.debug('marker upload failed', { err });
        return false;
      }
    };
    const p = this.markerChain.then(run, run);
    this.markerChain = p.catch(() => {});
    return p;
  }

  /** True while uploads to this replica fail (between the first failure and the next success). */
  isFailing(): boolean {
    return this.failures > 0 || this.overlap !== undefined;
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
      if (!this.hasPending()) this.scheduleMarker();
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
    if (!this.initialized) this.refuseOverlap(await this.init());
    if (this.overlap !== undefined) return false;
    for (const gen of this.spool.generations()) {
      if (this.skipped.has(gen)) continue;
      const snaps = this.spool.snapshotsOf(gen);
      const segs = this.spool.segmentsOf(gen);
      let r = this.remote.get(gen);
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
        r = { baseTxid: base.txid, chainEnd: base.txid, chainEndTime: base.commitTime, snapshots: new Set([base.txid]) };
        this.remote.set(gen, r);
        this.prove(gen, base.txid, base.commitTime);
        return true;
      }
      const pending = segs.filter((s) => s.lastTxid > r.chainEnd);
      if (pending.length > 0 && (pending[0] as SegmentEntry).firstTxid > r.chainEnd + 1) {
        // The replica's chain ends before what the spool still has (e.g. the replica was reset).
        const rebase = [...snaps].reverse().find((s) => s.txid >= (pending[0] as SegmentEntry).firstTxid - 1);
        if (rebase) {
          await this.uploadSnapshot(rebase);
          r.snapshots.add(rebase.txid);
          r.baseTxid = rebase.txid;
          r.chainEnd = rebase.txid;
          r.chainEndTime = rebase.commitTime;
          this.prove(gen, rebase.txid, rebase.commitTime);
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
    this.skipped.add(gen);
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
    const max = this.opts.maxSegmentBytes ?? 64 << 20;
    const head = pending[0] as SegmentEntry;
    // An entry stored larger than a merged upload may be can only come from one huge transaction
    // and goes up alone anyway: as it is in the spool, streamed and verified on the way. Read
    // whole and joined, it cost the agent its size once more (a 300 MB transaction: 303 MB).
    if (head.size > max && (await this.spool.readSegmentHeader(head)).compression === 'zstd') {
      await this.replica.put(segmentKey(gen, head.firstTxid, head.lastTxid, head.firstTime, head.lastTime), this.spool.streamStored(head), { size: head.size });
      this.shipped(gen, head, head.size);
      return;
    }
    const parts: StoredSegment[] = [];
    const entries: SegmentEntry[] = [];
    let bodyBytes = 0;
    for (const e of pending) {
      if (entries.length > 0 && e.firstTxid !== (entries[entries.length - 1] as SegmentEntry).lastTxid + 1) break;
      const part = await this.spool.readStored(e);
      if (entries.length > 0 && bodyBytes + part.header.bodyLength > max) break;
      parts.push(part);
      entries.push(e);
      bodyBytes += part.header.bodyLength;
    }
    const first = entries[0] as SegmentEntry;
    const last = entries[entries.length - 1] as SegmentEntry;
    for (let i = 0; i < parts.length; i++) parts[i] = await joinablePart(parts[i] as StoredSegment, entries[i] as SegmentEntry);
    const bytes = await joinSegments(parts);
    await this.replica.put(segmentKey(gen, first.firstTxid, last.lastTxid, first.firstTime, last.lastTime), bytes);
    this.shipped(gen, last, bytes.length);
  }

  /** Bookkeeping after the segments of `gen` up to `last` reached the replica as one object of `bytes`. */
  private shipped(gen: string, last: SegmentEntry, bytes: number): void {
    const r = this.remote.get(gen) as RemoteGeneration;
    r.chainEnd = last.lastTxid;
    r.chainEndTime = last.lastTime;
    this.prove(gen, last.lastTxid, last.lastTime);
    this.stats.bytesShipped += bytes;
    this.stats.objectsShipped++;
    this.stats.lastShippedTxid = last.lastTxid;
    this.stats.lastShippedTime = last.lastTime;
    this.opts.events?.uploaded('segment', bytes);
    this.opts.onShipped();
  }
}

/**
 * A spool entry as joinSegments needs it: as is when the spool compressed it (zstd, the usual
 * case), else (stored raw under a WAL reset's write lock, or deflated by an earlier pitr)
 * decompressed and compressed the way the spool compresses, so only that entry is compressed here
 * and the rest of the batch is joined.
 */
async function joinablePart(part: StoredSegment, entry: SegmentEntry): Promise<StoredSegment> {
  if (part.header.compression === 'zstd') return part;
  const { header, body } = await decodeSegment(part.bytes, `spool ${entry.key}`);
  const { generation, pageSize, firstTxid, lastTxid, firstTime, lastTime } = header;
  return readStoredSegment(await encodeSegment({ generation, pageSize, firstTxid, lastTxid, firstTime, lastTime, compression: 'zstd' }, body));
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
