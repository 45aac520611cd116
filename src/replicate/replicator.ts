import { mkdir } from 'node:fs/promises';
import { PitrError } from '../errors.js';
import { SourceDb } from '../db/source-db.js';
import { Capture, QUIET_MS } from './capture/capture.js';
import { Spool } from './spool.js';
import { Shipper } from './shipper.js';
import { loadPositionOrWarn } from './capture/position.js';
import { progressLogger, writeSnapshotToSpool } from './snapshotter.js';
import type { Logger } from '../log.js';
import type { MetricsSource } from '../monitor/metrics.js';
import { healthReport, type HealthReport } from '../monitor/health.js';
import { formatDuration } from '../util/duration.js';
import { RpoCrossings } from '../monitor/rpo-crossings.js';
import { SpoolKeeper } from './spool-keeper.js';
import { waitForDb } from './wait-for-db.js';
import { warnIfRemote } from './preflight.js';
import { DEFAULT_WAL_RESET_BYTES } from '../config/defaults.js';
import { ReplicaWorker, type WorkerContext } from './replica-worker.js';
import { PassScheduler } from './pass-scheduler.js';
import { SnapshotPolicy } from './snapshot-policy.js';
import { FilesSettle, SETTLE_MS } from './files-settle.js';
import { logCatchUp } from './fingerprint/catch-up-log.js';

import type { ReplicatorOptions, ReplicatorResult } from './replicator-options.js';
export type { ReplicaRun, ReplicatorOptions, ReplicatorResult } from './replicator-options.js';

/**
 * One database: waits for it, opens the capture chain (continuing or starting a generation),
 * captures on every WAL change, snapshots on schedule, hands what it spools to one worker per
 * replica, and on stop captures one last time and flushes before returning. Has no timer of its
 * own beyond the passes: the supervisor's tick drives the periodic work.
 */
export class Replicator {
  private readonly log: Logger;
  private db: SourceDb | undefined;
  private capture: Capture | undefined;
  private readonly spool: Spool;
  private workers: ReplicaWorker[] = [];
  private lock: Promise<unknown> = Promise.resolve();
  private snapshotRunning: Promise<void> | undefined;
  private readonly policy: SnapshotPolicy;
  private readonly passes: PassScheduler;
  private stopping = false;
  private isRunning = false;
  private isWaiting = false;
  /** Set when the files changed under the agent (what changed): the chain is reopened once they settle. */
  private reopenPending: string | undefined;
  /** While reopenPending: waits until the files have stopped changing. */
  private readonly settle: FilesSettle;
  private readonly crossings: RpoCrossings;
  private readonly keeper: SpoolKeeper;

  constructor(private readonly opts: ReplicatorOptions) {
    this.log = opts.log.child({ db: opts.dbPath });
    this.spool = new Spool(opts.spoolStore);
    const s = opts.settings;
    this.policy = new SnapshotPolicy({ intervalMs: s.snapshotIntervalMs, walRatio: s.snapshotWalRatio, walMinBytes: s.snapshotWalMinBytes });
    this.settle = new FilesSettle(opts.dbPath);
    this.crossings = new RpoCrossings(s.maxLagMs, this.log);
    this.keeper = new SpoolKeeper(this.spool, () => this.workers.map((w) => w.shipper), s.spoolMaxBytes, this.log);
    this.passes = new PassScheduler(`${opts.dbPath}-wal`, opts.dbPath, () => this.runPass(), (fn) => this.withLock(fn), this.log, opts.pollIntervalMs, opts.pollBesideWatcherMs);
  }

  /** Capturing: the chain is open and passes run. */
  get running(): boolean {
    return this.isRunning && !this.stopping;
  }

  /** Waiting for the app to create the database (or write its first page). */
  get waiting(): boolean {
    return this.isWaiting;
  }

  /** Generation and newest captured txid ('' and 0 before the chain is open). */
  get position(): { generation: string; txid: number } {
    return { generation: this.capture?.state.generation ?? '', txid: this.capture?.state.lastTxid ?? 0 };
  }

  /**
   * Replicate until `signal` aborts, then capture and flush; `started` runs once capture is live,
   * or once it waits for the app to create the database.
   */
  async run(signal: AbortSignal, started?: () => void): Promise<ReplicatorResult> {
    await waitForDb(this.opts.dbPath, signal, this.log, () => {
      this.isWaiting = true;
      started?.();
    });
    this.isWaiting = false;
    if (signal.aborted) return { clean: true };
    // Open (and validate: WAL mode, a real SQLite file) before creating any state next to it.
    this.db = await SourceDb.open(this.opts.dbPath, { enableWal: this.opts.settings.enableWal });
    await mkdir(this.opts.stateDir, { recursive: true });
    await warnIfRemote(this.opts.dbPath, this.opts.stateDir, this.log);
    await this.spool.load();
    const ctx: WorkerContext = {
      dbPath: this.opts.dbPath,
      stateDir: this.opts.stateDir,
      spool: this.spool,
      log: this.log,
      metrics: this.opts.metrics,
      version: this.opts.version,
      currentGeneration: () => this.capture?.state.generation ?? '',
      requestSnapshot: (why) => this.requestSnapshot(why),
      spoolMayShrink: () => void this.trimSpool(),
      ...(this.opts.verify && { verify: this.opts.verify }),
    };
    this.workers = this.opts.replicas.map((r) => new ReplicaWorker(r.storage, r.settings, ctx, r.lease));
    let knownMax = this.spool.maxTxid();
    for (const w of this.workers) {
      try {
        knownMax = Math.max(knownMax, Shipper.maxTxidOf(await w.shipper.init()));
      } catch (err) {
        this.log.warn('replica unreachable at startup; capture starts anyway and uploads will be retried', { replica: w.url, err });
      }
    }
    await this.openChain(knownMax);
    this.policy.started(Date.now());
    this.passes.start();
    this.isRunning = true;
    this.log.info('replicating', {
      generation: this.capture?.state.generation,
      txid: this.capture?.state.lastTxid,
      replicas: this.workers.map((w) => w.url),
      syncInterval: formatDuration(this.opts.settings.syncIntervalMs),
    });
    started?.();
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    return this.shutdown();
  }

  /**
   * The periodic work, driven by the supervisor's one timer: the WAL's safety-net stat, the
   * snapshot interval, the RPO crossings, and each replica's retention, verification and heartbeat.
   */
  tick(now: number): void {
    if (!this.isRunning || this.stopping) return;
    this.passes.poll(now);
    const due = this.policy.dueByInterval(now);
    if (due) this.requestSnapshot(due);
    if (this.opts.settings.maxLagMs !== undefined) this.health();
    const idle = this.passes.changeSeenAt === 0 && this.capture !== undefined;
    for (const w of this.workers) w.tick(now, idle, this.capture?.state.generation);
  }

  /** How often tick() must run for this database's promises (the WAL poll, the 1 s RPO check, heartbeats). */
  tickEvery(): number {
    let every = this.passes.pollEvery();
    if (this.opts.settings.maxLagMs !== undefined) every = Math.min(every, 1000);
    for (const w of this.workers) {
      const hb = w.settings.heartbeatIntervalMs;
      if (hb > 0) every = Math.min(every, Math.max(1000, hb / 4));
    }
    return every;
  }

  /**
   * Open (or, after the files changed under the agent, reopen) the database and the chain; takes
   * the first snapshot of a new generation, and one after a catch-up step that changed most pages.
   */
  private async openChain(knownMax: number, changed?: string, inPass = false): Promise<void> {
    if (changed !== undefined || !this.db) {
      this.db?.close();
      this.db = await SourceDb.open(this.opts.dbPath, { enableWal: this.opts.settings.enableWal });
    }
    const position = await loadPositionOrWarn(this.opts.stateDir, this.log);
    const s = this.opts.settings;
    const opts = { dbPath: this.opts.dbPath, stateDir: this.opts.stateDir, checkpointFrames: s.checkpointFrames, truncateBytes: 64 << 20, resetBytes: s.walResetBytes ?? DEFAULT_WAL_RESET_BYTES, log: this.log };
    const started = await Capture.start(this.db, this.spool, opts, position, knownMax, changed);
    const { capture, reason } = started;
    this.capture = capture;
    // Called at startup or from a pass: either way no pass can run meanwhile, so no lock here.
    if (started.newGeneration) {
      this.log.info('starting a new generation', { generation: capture.state.generation, reason, txid: capture.state.lastTxid });
      const base = capture.firstSnapshotPages();
      await this.snapshot(true, inPass, base.onPage);
      await base.finish();
      await capture.persist();
    } else {
      logCatchUp(this.log, started);
      const r = started.catchUp;
      if (r?.kind === 'step') this.opts.metrics.catchUpStep();
      this.log.info('continuing generation', { generation: capture.state.generation, txid: capture.state.lastTxid });
      // A step that rewrote most pages is about a snapshot's size: restores after it should not
      // have to replay everything before it and then it.
      if (r?.kind === 'step' && r.changed * 2 > r.pages) {
        this.log.info('taking a snapshot', { reason: 'the catch-up step changed most pages' });
        await this.snapshot(true, inPass);
      }
    }
    this.notifyShippers();
  }

  private async runPass(): Promise<void> {
    const capture = this.capture;
    if (!capture) return;
    try {
      if (this.reopenPending !== undefined) {
        if (this.stopping) return;
        // The files changed under the agent: start over once they have stopped changing (an
        // operator's restore is several steps: rm, cp, start the app). Each change retries.
        const wait = this.settle.remainingMs();
        if (wait > 0) {
          this.passes.later('retry', wait);
          return;
        }
        await this.openChain(Math.max(this.spool.maxTxid(), capture.state.lastTxid), this.reopenPending, true);
        this.reopenPending = undefined;
        this.settle.clear();
        return;
      }
      const r = await capture.pass();
      if (r.broken) {
        // Let go of every connection at once, writing nothing: they may no longer use the files at
        // the database's paths, and any checkpoint through them could damage the new file.
        this.db?.close();
        this.db = undefined;
        this.reopenPending = `the files changed under the agent: ${r.broken}`;
        this.settle.restart();
        this.log.warn(`continuity lost: ${r.broken}; pitr let go of the database and compares it with what it captured once its files have been unchanged for ${formatDuration(SETTLE_MS)}`, {
          generation: capture.state.generation,
          txid: capture.state.lastTxid,
        });
        this.notifyShippers();
        this.passes.later('retry', SETTLE_MS);
        return;
      }
      if (r.checkpoint) this.opts.metrics.checkpointed(r.checkpoint.mode, r.checkpoint.busy, r.checkpoint.durationMs / 1000);
      if (r.transactions > 0) {
        this.opts.metrics.capturedTransactions(r.transactions);
        this.log.debug('captured', { transactions: r.transactions, bytes: r.bytes, txid: capture.state.lastTxid });
        this.policy.captured(r.bytes);
        this.snapshotIfWalOutgrew(capture);
        this.notifyShippers();
        // Not awaited: it may start a generation, which needs the lock this pass holds.
        if (this.keeper.overCap()) void this.trimSpool();
        // One more pass once writes pause, for the checkpoints that wait for a quiet moment.
        this.passes.later('quiet', QUIET_MS + 50);
      }
      if (r.checkpoint) this.log.debug('checkpoint', { ...r.checkpoint });
    } catch (err) {
      // Committed frames may be waiting in the WAL; an idle app would never trigger another pass.
      this.log.error('capture pass failed; retrying in 1s', { err });
      // What the pass spooled before it failed (the spool's disk full, say) is durable: ship it,
      // which is also what frees the spool.
      this.notifyShippers();
      this.passes.later('retry', 1000);
    }
  }

  private notifyShippers(): void {
    for (const w of this.workers) w.shipper.notify();
  }

  private requestSnapshot(why: string): void {
    if (this.snapshotRunning || this.stopping) return;
    this.log.info('taking a snapshot', { reason: why });
    this.snapshotRunning = this.snapshot()
      .then(() => {})
      .catch((err) => {
        this.policy.failed(Date.now());
        this.log.error('snapshot failed; it will be retried', { err });
      })
      .finally(() => {
        this.snapshotRunning = undefined;
      });
  }

  private snapshotIfWalOutgrew(capture: Capture): void {
    if (this.snapshotRunning || !this.db) return;
    const why = this.policy.dueByWal(Date.now(), capture.state.dbSizePages * this.db.info.pageSize);
    if (why) this.requestSnapshot(why);
  }

  /**
   * Pin the current state under the lock, then stream pages outside it so capture keeps going.
   * Returns the snapshot's key ('' when there was nothing to snapshot: no chain open).
   */
  private async snapshot(callerHoldsLock = false, inPass = false, onPage?: (pgno: number, data: Uint8Array) => void): Promise<string> {
    // Taken before the state is pinned (waiting must not hold a read mark); none in a pass, which
    // holds this database's lock: a requested snapshot may hold a slot while it waits for that lock.
    const slot = inPass ? <T>(fn: () => Promise<T>) => fn() : (this.opts.snapshotSlot ?? (<T>(fn: () => Promise<T>) => fn()));
    return slot(async () => {
      const capture = this.capture;
      const db = this.db;
      if (!capture || !db) return '';
      const take = async (): Promise<{ pin: ReturnType<SourceDb['pinRead']>; view: ReturnType<Capture['snapshotView']>; walBefore: number }> => ({
        pin: db.pinRead(),
        view: capture.snapshotView(),
        walBefore: this.policy.walSinceSnapshot,
      });
      const { view, pin, walBefore } = callerHoldsLock ? await take() : await this.withLock(take);
      const started = Date.now();
      const entry = await writeSnapshotToSpool({
        dbPath: this.opts.dbPath,
        view,
        pin,
        spool: this.spool,
        onPages: progressLogger(view.dbSizePages, started, this.log),
        ...(onPage && { onPage }),
        check: () => capture.assertFiles(),
      });
      this.policy.taken(started, Date.now(), walBefore);
      this.opts.metrics.snapshotTaken();
      this.log.info('snapshot spooled', { key: entry.key, bytes: entry.size, pages: view.dbSizePages, took: formatDuration(Date.now() - started) });
      this.notifyShippers();
      return entry.key;
    });
  }

  /** Lag of every replica: what the spool still holds for it, or a change capture has not read yet. */
  health(): HealthReport {
    const now = Date.now();
    const captureLag = this.passes.changeSeenAt > 0 ? now - this.passes.changeSeenAt : 0;
    const rows = this.workers.map((w) => w.health(now, captureLag));
    let report = healthReport(this.opts.dbPath, this.opts.settings.maxLagMs, rows.map(({ leaseLost: _lost, ...r }) => r));
    if (rows.some((r) => r.leaseLost)) {
      // A replica this agent lost the lease on is unhealthy whatever --max-lag says: /healthz says why.
      const lost = new Set(rows.filter((r) => r.leaseLost).map((r) => r.url));
      report = { ...report, status: 'lagging', replicas: report.replicas.map((r) => (lost.has(r.url) ? { ...r, healthy: false, leaseLost: true } : r)) };
    }
    this.crossings.note(report);
    return report;
  }

  /** What the metrics read at scrape time. */
  metricsSource(): MetricsSource {
    return {
      db: this.opts.dbPath,
      generation: () => this.capture?.state.generation ?? '',
      capturedTxid: () => this.capture?.state.lastTxid ?? 0,
      capturedCommitTime: () => this.capture?.state.lastTime ?? 0,
      walBytes: () => this.passes.walBytes,
      spoolBytes: () => this.spool.totalBytes(),
      lastSnapshotAt: () => this.policy.lastSnapshotAt,
      walSinceSnapshot: () => this.policy.walSinceSnapshot,
      replicas: () => this.health().replicas,
    };
  }

  /**
   * Capture what is committed now and ship it to every replica, waiting until each holds it or
   * `deadline` passes (`pitr sync`). Returns per replica the txid it holds and whether that is all.
   */
  async syncNow(deadline: number): Promise<{ txid: number; replicas: { url: string; txid: number; ok: boolean }[] }> {
    if (!this.isRunning || this.stopping) throw new PitrError('CONTROL_FAILED', `${this.opts.dbPath} is not replicating yet (or is stopping)`, 'wait until the agent logs "replicating" for it, then ask again');
    await this.withLock(() => this.runPass());
    const txid = this.capture?.state.lastTxid ?? 0;
    const gen = this.capture?.state.generation ?? '';
    const flushed = await Promise.all(this.workers.map((w) => w.flush(deadline)));
    return {
      txid,
      replicas: this.workers.map((w, i) => ({ url: w.url, txid: w.shipper.durable(gen).txid, ok: (flushed[i] ?? false) && !w.isLost && w.shipper.durable(gen).txid >= txid })),
    };
  }

  /** Take a snapshot now and ship it (`pitr snapshot`). */
  async snapshotNow(deadline: number): Promise<{ txid: number; key: string; shipped: boolean }> {
    if (!this.isRunning || this.stopping) throw new PitrError('CONTROL_FAILED', `${this.opts.dbPath} is not replicating yet (or is stopping)`, 'wait until the agent logs "replicating" for it, then ask again');
    if (this.snapshotRunning) await this.snapshotRunning;
    await this.withLock(() => this.runPass());
    const txid = this.capture?.state.lastTxid ?? 0;
    this.log.info('taking a snapshot', { reason: 'asked for on the control socket' });
    const key = await this.snapshot();
    const flushed = await Promise.all(this.workers.map((w) => w.flush(deadline)));
    return { txid, key, shipped: flushed.every(Boolean) };
  }

  private async shutdown(): Promise<ReplicatorResult> {
    this.stopping = true;
    this.passes.stop();
    // Capture what the app committed up to now, then ship it all.
    await this.withLock(() => this.runPass());
    if (this.snapshotRunning) await this.snapshotRunning;
    const deadline = Date.now() + this.opts.settings.shutdownTimeoutMs;
    const results = await Promise.all(this.workers.map((w) => w.flush(deadline)));
    for (const w of this.workers) w.shipper.stop();
    await this.trimSpool();
    this.db?.close();
    const clean = results.every(Boolean);
    const lost = this.workers.filter((w) => w.isLost).map((w) => w.url);
    if (clean && lost.length > 0) {
      this.log.warn('stopped; every captured transaction is in every replica this agent still holds the lease on', { txid: this.capture?.state.lastTxid, lostReplicas: lost });
    } else if (clean) this.log.info('stopped; every captured transaction is in every replica', { txid: this.capture?.state.lastTxid });
    else this.log.error('stopped with transactions not yet uploaded; they stay in the spool and ship on the next start', { txid: this.capture?.state.lastTxid });
    return { clean };
  }

  private trimSpool(): Promise<void> {
    return this.keeper.trim(this.capture && { generation: this.capture.state.generation, txid: this.capture.state.lastTxid }, this.stopping);
  }

  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => {});
    return next;
  }
}
