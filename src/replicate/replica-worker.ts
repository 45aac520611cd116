import { hostname } from 'node:os';
import type { StorageClient } from '../storage/storage-client.js';
import type { ReplicaSettings } from '../config/config-types.js';
import type { Logger } from '../log.js';
import type { DbMetrics } from '../monitor/metrics.js';
import { buildCatalog } from '../catalog/catalog.js';
import { nextRetentionKeepFrom, planRetention } from './retention.js';
import { Shipper } from './shipper.js';
import type { Spool } from './spool.js';
import type { ReplicaLease } from './lease.js';

/** What a replica worker needs from its database's replicator. */
export interface WorkerContext {
  dbPath: string;
  stateDir: string;
  spool: Spool;
  log: Logger;
  metrics: DbMetrics;
  version: string;
  /** The generation capture is writing now ('' before the first). */
  currentGeneration(): string;
  requestSnapshot(why: string): void;
  /** Called after each upload, and when this replica stops needing the spool (lease lost). */
  spoolMayShrink(): void;
  /** Scheduled verification, off the main thread (see src/verify). */
  verify?: (req: { url: string; dbPath: string; stateDir: string }) => Promise<{ ok: boolean; txid?: number; objectsChecked?: number; content?: unknown; problems: { check: string; object?: string; message: string }[] }>;
}

/** One replica's standing, for /healthz, metrics and the control socket. */
export interface WorkerHealth {
  url: string;
  lagSeconds: number;
  lastTxid: number;
  lastCommitTime: number;
  leaseLost: boolean;
}

/**
 * Everything one replica of one database needs besides capture: its shipper (uploads, retries,
 * marker), its lease, its retention and its scheduled verification. Driven by the replicator's
 * tick (no timer of its own), so an idle replica costs nothing between ticks.
 */
export class ReplicaWorker {
  readonly shipper: Shipper;
  /** Set once another agent took the lease: when, and the lag the replica had then. */
  private lost: { at: number; lagMs: number } | undefined;
  /**
   * What the last retention check saw: how many objects had been shipped then, and when something
   * in that listing becomes old enough to delete. Until one of the two changes, a check would find
   * nothing, so an idle replica sends no LIST.
   */
  private retentionSeen: { shipped: number; dueAt: number | undefined } | undefined;
  private nextRetentionAt: number;
  private nextVerifyAt: number;
  private busy = new Set<'retention' | 'verify' | 'heartbeat'>();

  constructor(
    readonly storage: StorageClient,
    readonly settings: ReplicaSettings,
    private readonly ctx: WorkerContext,
    lease: ReplicaLease | undefined,
  ) {
    const now = Date.now();
    // Soon after start: an agent that was down may find a backlog of expired objects.
    this.nextRetentionAt = now + Math.min(settings.retentionCheckMs, 10_000);
    this.nextVerifyAt = settings.verifyIntervalMs > 0 ? now + settings.verifyIntervalMs : Infinity;
    this.shipper = new Shipper(storage, ctx.spool, {
      syncIntervalMs: settings.syncIntervalMs,
      log: ctx.log,
      currentGeneration: () => ctx.currentGeneration(),
      requestSnapshot: () => ctx.requestSnapshot('a replica has no snapshot of the current generation'),
      onShipped: () => ctx.spoolMayShrink(),
      agent: { host: hostname(), pid: process.pid, version: ctx.version },
      events: {
        uploaded: (kind, bytes) => ctx.metrics.uploaded(storage.url, kind, bytes),
        failed: () => ctx.metrics.uploadFailed(storage.url),
      },
    });
    lease?.onLost(() => this.leaseLost());
  }

  get url(): string {
    return this.storage.url;
  }

  /** True once another agent holds this replica's lease: nothing more is written to it. */
  get isLost(): boolean {
    return this.lost !== undefined;
  }

  /**
   * Periodic work that is due: retention, verification, and a heartbeat when the database is idle
   * (`idle`: capture has nothing unread). Each runs at most once at a time.
   */
  tick(now: number, idle: boolean, protectGeneration: string | undefined): void {
    if (this.lost) return;
    if (this.settings.retentionMs > 0 && now >= this.nextRetentionAt) {
      this.nextRetentionAt = now + this.settings.retentionCheckMs;
      this.once('retention', () => this.enforceRetention(protectGeneration));
    }
    if (now >= this.nextVerifyAt) {
      this.nextVerifyAt = now + this.settings.verifyIntervalMs;
      this.once('verify', () => this.verify());
    }
    const hb = this.settings.heartbeatIntervalMs;
    if (hb > 0 && idle && this.shipper.heartbeatDue(hb) && this.shipper.durable(this.ctx.currentGeneration()).txid > 0) {
      this.once('heartbeat', () => this.shipper.heartbeat(hb));
    }
  }

  private once(what: 'retention' | 'verify' | 'heartbeat', fn: () => Promise<unknown>): void {
    if (this.busy.has(what)) return;
    this.busy.add(what);
    void fn()
      .catch((err: unknown) => this.ctx.log.warn(`${what} failed; will retry`, { replica: this.url, err }))
      .finally(() => this.busy.delete(what));
  }

  health(now: number, captureLagMs: number): WorkerHealth {
    const d = this.shipper.durable(this.ctx.currentGeneration());
    const lagMs = this.lost ? this.lost.lagMs + (now - this.lost.at) : Math.max(this.shipper.lagMs(now), captureLagMs);
    return { url: this.url, lagSeconds: lagMs / 1000, lastTxid: d.txid, lastCommitTime: d.commitTime, leaseLost: this.lost !== undefined };
  }

  /** Ship what is spooled; on shutdown a replica another agent took is not ours to catch up. */
  async flush(deadline: number): Promise<boolean> {
    if (this.lost) return true;
    return this.shipper.flush(deadline);
  }

  private async enforceRetention(protect: string | undefined): Promise<void> {
    const s = this.shipper;
    const now = Date.now();
    const seen = this.retentionSeen;
    if (seen && seen.shipped === s.stats.objectsShipped && (seen.dueAt === undefined || now < seen.dueAt)) return;
    // Counted before the LIST: anything shipped meanwhile makes the next check list again.
    const shipped = s.stats.objectsShipped;
    const retentionMs = this.settings.retentionMs;
    try {
      const objects = await this.storage.list('generations/');
      const plan = planRetention(buildCatalog(objects), now - retentionMs, protect);
      const keys = [...plan.snapshots, ...plan.segments].map((e) => e.key);
      if (keys.length > 0) {
        await this.storage.delete(keys);
        s.noteDeleted(plan.snapshots);
        this.ctx.log.info('retention: removed objects older than the window', { replica: this.url, objects: keys.length });
      }
      const gone = new Set(keys);
      const next = nextRetentionKeepFrom(buildCatalog(objects.filter((o) => !gone.has(o.key))), protect);
      this.retentionSeen = { shipped, dueAt: next === undefined ? undefined : next + retentionMs };
    } catch (err) {
      this.retentionSeen = undefined;
      throw err;
    }
  }

  /** Scheduled verification: every object's checksum, a restore, integrity_check, live comparison. */
  private async verify(): Promise<void> {
    const run = this.ctx.verify;
    if (!run) return;
    const started = Date.now();
    try {
      const r = await run({ url: this.url, dbPath: this.ctx.dbPath, stateDir: this.ctx.stateDir });
      this.ctx.metrics.verified(this.url, r.ok, (Date.now() - started) / 1000);
      if (r.ok) this.ctx.log.info('verification passed', { replica: this.url, txid: r.txid, objects: r.objectsChecked, content: r.content });
      else this.ctx.log.error('verification FAILED', { replica: this.url, problems: r.problems.map((p) => `${p.check}${p.object ? ` ${p.object}` : ''}: ${p.message}`) });
    } catch (err) {
      this.ctx.metrics.verified(this.url, false, (Date.now() - started) / 1000);
      this.ctx.log.error('verification could not run', { replica: this.url, err });
    }
  }

  /**
   * Another agent took the lease on this replica: stop uploading to it and stop holding spool
   * entries for it. Its lag grows from here (nothing this agent captures reaches it), so
   * /healthz turns unhealthy; the log has said why.
   */
  private leaseLost(): void {
    if (this.lost) return;
    this.lost = { at: Date.now(), lagMs: this.shipper.lagMs() };
    this.shipper.stop();
    this.shipper.abandonThrough(Number.MAX_SAFE_INTEGER, '');
    this.ctx.metrics.uploadFailed(this.url);
    this.ctx.spoolMayShrink();
  }
}
