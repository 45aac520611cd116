import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What one database's replicator reports at scrape time (pulled: idle agents do no work between scrapes). */
export interface MetricsSource {
  db: string;
  generation(): string;
  capturedTxid(): number;
  capturedCommitTime(): number;
  walBytes(): number;
  spoolBytes(): number;
  lastSnapshotAt(): number;
  /** Uncompressed WAL captured since the state of the newest snapshot (what a latest restore replays). */
  walSinceSnapshot(): number;
  replicas(): { url: string; lagSeconds: number; lastTxid: number; lastCommitTime: number; healthy: boolean }[];
}

/** The event side of the metrics, bound to one database's label. */
export interface DbMetrics {
  uploaded(replica: string, kind: 'segment' | 'snapshot' | 'heartbeat', bytes: number): void;
  uploadFailed(replica: string): void;
  checkpointed(mode: string, busy: boolean, seconds: number): void;
  capturedTransactions(n: number): void;
  snapshotTaken(): void;
  /** A start shipped what changed while the agent was not capturing as one catch-up step. */
  catchUpStep(): void;
  verified(replica: string, ok: boolean, seconds: number): void;
}

/**
 * The agent's Prometheus metrics: one registry for the process (so embedding pitr as a library
 * never collides with the host's metrics), every series labelled by database. Counters are
 * incremented at the event; gauges are read from the sources when scraped, so a thousand idle
 * databases cost nothing between scrapes.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly shippedBytes: Counter<'db' | 'replica' | 'kind'>;
  private readonly shippedObjects: Counter<'db' | 'replica' | 'kind'>;
  private readonly uploadErrors: Counter<'db' | 'replica'>;
  private readonly checkpoints: Counter<'db' | 'mode' | 'result'>;
  private readonly checkpointSeconds: Histogram<'db' | 'mode'>;
  private readonly captured: Counter<'db'>;
  private readonly snapshots: Counter<'db'>;
  private readonly catchUps: Counter<'db'>;
  private readonly verifyOk: Gauge<'db' | 'replica'>;
  private readonly verifyLast: Gauge<'db' | 'replica'>;
  private readonly verifyLastSuccess: Gauge<'db' | 'replica'>;
  private readonly verifySeconds: Gauge<'db' | 'replica'>;

  /**
   * `sources` is read at every scrape. `processMetrics`: include Node's process metrics (CPU,
   * memory, event loop) as pitr_process_*; their event-loop monitor wakes the process ~190 times a
   * second, so only pay for it when someone scrapes.
   */
  constructor(sources: () => Iterable<MetricsSource>, opts: { processMetrics: boolean }) {
    const r = this.registry;
    if (opts.processMetrics) collectDefaultMetrics({ register: r, prefix: 'pitr_process_' });
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], collect: (g: Gauge<L>, s: MetricsSource) => void): Gauge<L> =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers: [r],
        collect() {
          this.reset();
          for (const s of sources()) collect(this, s);
        },
      });
    gauge('pitr_replication_lag_seconds', 'RPO: age of the oldest committed transaction not yet durable in the replica (0 when caught up)', ['db', 'replica'], (g, s) => {
      for (const x of s.replicas()) g.set({ db: s.db, replica: x.url }, x.lagSeconds);
    });
    gauge('pitr_replica_last_txid', 'Last txid durable in the replica', ['db', 'replica'], (g, s) => {
      for (const x of s.replicas()) g.set({ db: s.db, replica: x.url }, x.lastTxid);
    });
    gauge('pitr_replica_last_commit_timestamp_seconds', 'Commit time of the last txid durable in the replica', ['db', 'replica'], (g, s) => {
      for (const x of s.replicas()) if (x.lastCommitTime > 0) g.set({ db: s.db, replica: x.url }, x.lastCommitTime / 1000);
    });
    gauge('pitr_replica_healthy', '1 while the replica is within --max-lag', ['db', 'replica'], (g, s) => {
      for (const x of s.replicas()) g.set({ db: s.db, replica: x.url }, x.healthy ? 1 : 0);
    });
    gauge('pitr_captured_txid', 'Last txid captured into the spool', ['db'], (g, s) => g.set({ db: s.db }, s.capturedTxid()));
    gauge('pitr_captured_commit_timestamp_seconds', 'Commit time of the last captured txid', ['db'], (g, s) => g.set({ db: s.db }, s.capturedCommitTime() / 1000));
    gauge('pitr_wal_size_bytes', 'Size of the database WAL file', ['db'], (g, s) => g.set({ db: s.db }, s.walBytes()));
    gauge('pitr_spool_bytes', 'Bytes waiting in the local spool', ['db'], (g, s) => g.set({ db: s.db }, s.spoolBytes()));
    gauge('pitr_snapshot_age_seconds', 'Seconds since the last snapshot was taken', ['db'], (g, s) => {
      const at = s.lastSnapshotAt();
      if (at > 0) g.set({ db: s.db }, (Date.now() - at) / 1000);
    });
    gauge('pitr_wal_since_snapshot_bytes', 'Uncompressed WAL captured since the newest snapshot: what a restore of the latest state replays on top of it', ['db'], (g, s) => g.set({ db: s.db }, s.walSinceSnapshot()));
    gauge('pitr_generation_info', 'The generation being captured (value 1)', ['db', 'generation'], (g, s) => g.set({ db: s.db, generation: s.generation() }, 1));
    this.shippedBytes = new Counter({ name: 'pitr_shipped_bytes_total', help: 'Bytes uploaded to the replica', labelNames: ['db', 'replica', 'kind'], registers: [r] });
    this.shippedObjects = new Counter({ name: 'pitr_shipped_objects_total', help: 'Objects uploaded to the replica', labelNames: ['db', 'replica', 'kind'], registers: [r] });
    this.uploadErrors = new Counter({ name: 'pitr_upload_errors_total', help: 'Failed uploads to the replica (each retry counts)', labelNames: ['db', 'replica'], registers: [r] });
    this.checkpoints = new Counter({ name: 'pitr_checkpoints_total', help: 'Checkpoints run by the agent', labelNames: ['db', 'mode', 'result'], registers: [r] });
    this.checkpointSeconds = new Histogram({
      name: 'pitr_checkpoint_duration_seconds',
      help: 'Duration of the agent checkpoints',
      labelNames: ['db', 'mode'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
      registers: [r],
    });
    this.captured = new Counter({ name: 'pitr_captured_transactions_total', help: 'Transactions captured from the WAL', labelNames: ['db'], registers: [r] });
    this.snapshots = new Counter({ name: 'pitr_snapshots_total', help: 'Snapshots taken', labelNames: ['db'], registers: [r] });
    this.catchUps = new Counter({ name: 'pitr_catch_up_steps_total', help: 'Catch-up steps shipped at a start (changes made while the agent was not capturing)', labelNames: ['db'], registers: [r] });
    this.verifyOk = new Gauge({ name: 'pitr_verify_ok', help: '1 if the last scheduled verification passed', labelNames: ['db', 'replica'], registers: [r] });
    this.verifyLast = new Gauge({ name: 'pitr_verify_last_run_timestamp_seconds', help: 'When the last scheduled verification ended', labelNames: ['db', 'replica'], registers: [r] });
    this.verifyLastSuccess = new Gauge({ name: 'pitr_verify_last_success_timestamp_seconds', help: 'When a scheduled verification last passed', labelNames: ['db', 'replica'], registers: [r] });
    this.verifySeconds = new Gauge({ name: 'pitr_verify_duration_seconds', help: 'Duration of the last scheduled verification', labelNames: ['db', 'replica'], registers: [r] });
  }

  /** The event side for one database. */
  forDb(db: string): DbMetrics {
    return {
      uploaded: (replica, kind, bytes) => {
        const labels = { db, replica, kind };
        this.shippedBytes.inc(labels, bytes);
        this.shippedObjects.inc(labels);
      },
      uploadFailed: (replica) => this.uploadErrors.inc({ db, replica }),
      checkpointed: (mode, busy, seconds) => {
        this.checkpoints.inc({ db, mode, result: busy ? 'busy' : 'ok' });
        this.checkpointSeconds.observe({ db, mode }, seconds);
      },
      capturedTransactions: (n) => this.captured.inc({ db }, n),
      snapshotTaken: () => this.snapshots.inc({ db }),
      catchUpStep: () => this.catchUps.inc({ db }),
      verified: (replica, ok, seconds) => {
        const labels = { db, replica };
        const now = Date.now() / 1000;
        this.verifyOk.set(labels, ok ? 1 : 0);
        this.verifyLast.set(labels, now);
        this.verifySeconds.set(labels, seconds);
        if (ok) this.verifyLastSuccess.set(labels, now);
      },
    };
  }

  /**
   * Drop a database's series once it is let go (a tenant's file removed): its counters would
   * otherwise be exported forever, and a directory of churning tenants grows without bound.
   */
  async forget(db: string): Promise<void> {
    const all = [this.shippedBytes, this.shippedObjects, this.uploadErrors, this.checkpoints, this.captured, this.snapshots, this.verifyOk, this.verifyLast, this.verifyLastSuccess, this.verifySeconds] as unknown as Gauge<string>[];
    for (const m of all) {
      for (const v of (await m.get()).values) if (v.labels['db'] === db) m.remove(v.labels as never);
    }
    const h = this.checkpointSeconds as unknown as Histogram<string>;
    for (const v of (await h.get()).values) {
      // A histogram's buckets come back as separate values of one series: remove the series once.
      if (v.labels['db'] === db && v.labels['le'] === undefined && v.metricName?.endsWith('_count')) {
        h.remove({ db, mode: v.labels['mode'] } as never);
      }
    }
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
