import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** What the agent reports at scrape time (pulled, so idle agents do no work between scrapes). */
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
  /** Include Node's process metrics (CPU, memory, event loop) as pitr_process_*. */
  processMetrics?: boolean;
}

/**
 * The agent's Prometheus metrics, on their own registry (so embedding pitr as a library never
 * collides with the host's metrics). Counters are incremented at the event; gauges are read from
 * the agent when scraped.
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
  private readonly verifyOk: Gauge<'db' | 'replica'>;
  private readonly verifyLast: Gauge<'db' | 'replica'>;
  private readonly verifyLastSuccess: Gauge<'db' | 'replica'>;
  private readonly verifySeconds: Gauge<'db' | 'replica'>;

  constructor(private readonly source: MetricsSource) {
    const r = this.registry;
    const db = source.db;
    if (source.processMetrics ?? true) collectDefaultMetrics({ register: r, prefix: 'pitr_process_' });
    const gauge = <L extends string>(name: string, help: string, labelNames: L[], collect: (g: Gauge<L>) => void): Gauge<L> =>
      new Gauge<L>({
        name,
        help,
        labelNames,
        registers: [r],
        collect() {
          collect(this);
        },
      });
    gauge('pitr_replication_lag_seconds', 'RPO: age of the oldest committed transaction not yet durable in the replica (0 when caught up)', ['db', 'replica'], (g) => {
      g.reset();
      for (const x of source.replicas()) g.set({ db, replica: x.url }, x.lagSeconds);
    });
    gauge('pitr_replica_last_txid', 'Last txid durable in the replica', ['db', 'replica'], (g) => {
      g.reset();
      for (const x of source.replicas()) g.set({ db, replica: x.url }, x.lastTxid);
    });
    gauge('pitr_replica_last_commit_timestamp_seconds', 'Commit time of the last txid durable in the replica', ['db', 'replica'], (g) => {
      g.reset();
      for (const x of source.replicas()) if (x.lastCommitTime > 0) g.set({ db, replica: x.url }, x.lastCommitTime / 1000);
    });
    gauge('pitr_replica_healthy', '1 while the replica is within --max-lag', ['db', 'replica'], (g) => {
      g.reset();
      for (const x of source.replicas()) g.set({ db, replica: x.url }, x.healthy ? 1 : 0);
    });
    gauge('pitr_captured_txid', 'Last txid captured into the spool', ['db'], (g) => g.set({ db }, source.capturedTxid()));
    gauge('pitr_captured_commit_timestamp_seconds', 'Commit time of the last captured txid', ['db'], (g) => g.set({ db }, source.capturedCommitTime() / 1000));
    gauge('pitr_wal_size_bytes', 'Size of the database WAL file', ['db'], (g) => g.set({ db }, source.walBytes()));
    gauge('pitr_spool_bytes', 'Bytes waiting in the local spool', ['db'], (g) => g.set({ db }, source.spoolBytes()));
    gauge('pitr_snapshot_age_seconds', 'Seconds since the last snapshot was taken', ['db'], (g) => {
      const at = source.lastSnapshotAt();
      if (at > 0) g.set({ db }, (Date.now() - at) / 1000);
    });
    gauge('pitr_wal_since_snapshot_bytes', 'Uncompressed WAL captured since the newest snapshot: what a restore of the latest state replays on top of it', ['db'], (g) => g.set({ db }, source.walSinceSnapshot()));
    gauge('pitr_generation_info', 'The generation being captured (value 1)', ['db', 'generation'], (g) => {
      g.reset();
      g.set({ db, generation: source.generation() }, 1);
    });
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
    this.verifyOk = new Gauge({ name: 'pitr_verify_ok', help: '1 if the last scheduled verification passed', labelNames: ['db', 'replica'], registers: [r] });
    this.verifyLast = new Gauge({ name: 'pitr_verify_last_run_timestamp_seconds', help: 'When the last scheduled verification ended', labelNames: ['db', 'replica'], registers: [r] });
    this.verifyLastSuccess = new Gauge({ name: 'pitr_verify_last_success_timestamp_seconds', help: 'When a scheduled verification last passed', labelNames: ['db', 'replica'], registers: [r] });
    this.verifySeconds = new Gauge({ name: 'pitr_verify_duration_seconds', help: 'Duration of the last scheduled verification', labelNames: ['db', 'replica'], registers: [r] });
  }

  uploaded(replica: string, kind: 'segment' | 'snapshot' | 'heartbeat', bytes: number): void {
    const labels = { db: this.source.db, replica, kind };
    this.shippedBytes.inc(labels, bytes);
    this.shippedObjects.inc(labels);
  }

  uploadFailed(replica: string): void {
    this.uploadErrors.inc({ db: this.source.db, replica });
  }

  checkpointed(mode: string, busy: boolean, seconds: number): void {
    this.checkpoints.inc({ db: this.source.db, mode, result: busy ? 'busy' : 'ok' });
    this.checkpointSeconds.observe({ db: this.source.db, mode }, seconds);
  }

  capturedTransactions(n: number): void {
    this.captured.inc({ db: this.source.db }, n);
  }

  snapshotTaken(): void {
    this.snapshots.inc({ db: this.source.db });
  }

  verified(replica: string, ok: boolean, seconds: number): void {
    const labels = { db: this.source.db, replica };
    const now = Date.now() / 1000;
    this.verifyOk.set(labels, ok ? 1 : 0);
    this.verifyLast.set(labels, now);
    this.verifySeconds.set(labels, seconds);
    if (ok) this.verifyLastSuccess.set(labels, now);
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
