import type { StorageClient } from '../storage/storage-client.js';
import type { Logger } from '../log.js';
import { HEARTBEAT_KEY, MAX_HEARTBEAT_ENDS, encodeHeartbeat } from '../monitor/heartbeat.js';
import type { RemoteGenerations } from './remote-generations.js';
import type { ShipperOptions } from './shipper-options.js';

/**
 * Least spacing of marker writes after uploads. Each costs one small PUT, so under sustained writes
 * (one upload a second at the default --sync-interval) the marker adds at most one PUT per 10 s
 * (8,640 a day, +10%); the price is that uploads of the last 10 s are not yet proven complete
 * (a reader cannot tell the newest of them missing). See docs/FORMAT.md, "Completeness".
 */
export const MARKER_INTERVAL_MS = 10_000;

export type MarkerOptions = Pick<ShipperOptions, 'currentGeneration' | 'agent' | 'markerIntervalMs' | 'events'>;

/**
 * The replica's marker (heartbeat.json): names the newest txid durable in the replica per
 * generation, written only after what it names is durable, so a reader can tell a lost object from
 * one never written; refreshed while idle as the heartbeat `pitr status` measures age from.
 */
export class ReplicaMarker {
  /** What the marker in the replica says now (as last written or read), to skip rewriting it. */
  private says: { generation: string; txid: number } | undefined;
  private lastMarkerAt = 0;
  private timer: NodeJS.Timeout | undefined;
  /** Marker writes, one at a time, so an older body never lands after a newer one. */
  private chain: Promise<unknown> = Promise.resolve();
  private lastHeartbeatAt = 0;
  private stopped = false;

  constructor(
    private readonly replica: StorageClient,
    private readonly remote: RemoteGenerations,
    private readonly opts: MarkerOptions,
    private readonly log: Logger,
  ) {}

  /** What init read in the replica's marker. */
  said(generation: string, txid: number): void {
    this.says = { generation, txid };
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Refresh the marker when nothing was uploaded (`lastUploadAt`) nor written here for
   * `intervalMs` (see Shipper.heartbeat). Returns true when one was written.
   */
  /** True when `intervalMs` has passed since the last upload and the last heartbeat. */
  heartbeatDue(intervalMs: number, lastUploadAt: number, now = Date.now()): boolean {
    return now - Math.max(lastUploadAt, this.lastHeartbeatAt) >= intervalMs;
  }

  async heartbeat(intervalMs: number, lastUploadAt: number): Promise<boolean> {
    const now = Date.now();
    if (now - Math.max(lastUploadAt, this.lastHeartbeatAt) < intervalMs) return false;
    this.lastHeartbeatAt = now;
    return this.write(true);
  }

  /**
   * The marker as it should read now: the current generation's newest durable txid, and where the
   * earlier generations this agent knows of ended. Undefined until the current generation has a
   * base in this replica (until then the marker keeps naming the previous one).
   */
  private body(now: number): Uint8Array | undefined {
    const agent = this.opts.agent;
    const gen = this.opts.currentGeneration();
    const cur = this.remote.newestDurable(gen);
    if (!agent || !cur) return undefined;
    const ends = [...this.remote.proven.entries()]
      .filter(([g]) => g !== gen)
      .sort(([a], [b]) => (a < b ? 1 : a > b ? -1 : 0))
      .slice(0, MAX_HEARTBEAT_ENDS)
      .map(([generation, p]) => ({ generation, txid: p.txid, commitTime: p.commitTime }));
    return encodeHeartbeat({ version: 1, time: now, generation: gen, txid: cur.txid, commitTime: cur.commitTime, agent, ...(ends.length > 0 ? { ends } : {}) });
  }

  /** True when the marker in the replica does not name the current generation's newest durable txid. */
  private stale(): boolean {
    const gen = this.opts.currentGeneration();
    const cur = this.remote.newestDurable(gen);
    return cur !== undefined && (this.says?.generation !== gen || this.says.txid !== cur.txid);
  }

  /**
   * After uploads: rewrite the marker now, or once MARKER_INTERVAL_MS has passed since the last
   * one (a timer), so a busy replica gets one marker PUT per interval and the last uploads before
   * a pause are proven within the interval.
   */
  schedule(): void {
    if (this.stopped || !this.opts.agent || this.timer || !this.stale()) return;
    const wait = Math.max(0, this.lastMarkerAt + (this.opts.markerIntervalMs ?? MARKER_INTERVAL_MS) - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.write(false);
    }, wait);
    this.timer.unref();
  }

  /**
   * PUT the marker (serialized). `always`: even when it already says the newest (a heartbeat
   * refreshes its time). A failure is logged and counted; the next upload or heartbeat retries.
   */
  write(always: boolean): Promise<boolean> {
    const run = async (): Promise<boolean> => {
      if (!always && !this.stale()) return false;
      const now = Date.now();
      const bytes = this.body(now);
      if (!bytes) return false;
      const gen = this.opts.currentGeneration();
      const txid = (this.remote.newestDurable(gen) as { txid: number }).txid;
      this.lastMarkerAt = now;
      this.lastHeartbeatAt = now;
      try {
        await this.replica.put(HEARTBEAT_KEY, bytes);
        this.says = { generation: gen, txid };
        this.opts.events?.uploaded('heartbeat', bytes.length);
        return true;
      } catch (err) {
        this.opts.events?.failed();
        this.log.debug('marker upload failed', { err });
        return false;
      }
    };
    const p = this.chain.then(run, run);
    this.chain = p.catch(() => {});
    return p;
  }
}
