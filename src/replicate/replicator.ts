import { mkdir, stat } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { dirname } from 'node:path';
import { PitrError, errnoCode, isPitrError } from '../errors.js';
import type { StorageClient } from '../storage/storage-client.js';
import type { DbSettings, ReplicaSettings } from '../config/config-types.js';
import { SourceDb } from '../db/source-db.js';
import { Capture, QUIET_MS } from './capture/capture.js';
import { Spool } from './spool.js';
import type { LocalStore } from '../storage/local-store.js';
import { Shipper } from './shipper.js';
import { loadPosition } from './capture/position.js';
import { writeSnapshotToSpool } from './snapshotter.js';
import type { SegmentEntry, SnapshotEntry } from '../catalog/catalog.js';
import type { Logger } from '../log.js';
import type { DbMetrics, MetricsSource } from '../monitor/metrics.js';
import { healthReport, type HealthReport } from '../monitor/health.js';
import { formatDuration } from '../util/duration.js';
import { remoteFsOf } from '../util/remote-fs.js';
import type { ReplicaLease } from './lease.js';
import { DEFAULT_WAL_RESET_BYTES } from '../config/defaults.js';
import { ReplicaWorker, type WorkerContext } from './replica-worker.js';
import { PassScheduler } from './pass-scheduler.js';
import { SnapshotPolicy } from './snapshot-policy.js';

/**
 * How long the database's files must stay unchanged after they changed under the agent before it
 * opens them again: an operator's restore is several commands, and a snapshot of a file still being
 * copied would be dropped anyway (Spool.addSnapshot's check).
 */
const SETTLE_MS = 1000;
/** How often a long snapshot logs its progress. */
const SNAPSHOT_PROGRESS_LOG_MS = 30_000;

export interface ReplicaRun {
  storage: StorageClient;
  settings: ReplicaSettings;
  /** The lease held on it; when another agent takes it, this replica's worker stops. */
  lease?: ReplicaLease;
}

export interface ReplicatorOptions {
  dbPath: string;
  stateDir: string;
  /** Local, durable storage for the spool (a directory store under the state dir). */
  spoolStore: LocalStore;
  replicas: ReplicaRun[];
  settings: DbSettings;
  /** Fallback stat of the WAL, in case a file-system event is missed (default: see PassScheduler). */
  pollIntervalMs?: number;
  /** pitr's version, for the replicas' markers. */
  version: string;
  metrics: DbMetrics;
  /** Scheduled verification (src/verify, off the main thread); none = never verify. */
  verify?: WorkerContext['verify'];
  /** Bounds how many snapshots the whole agent takes at once (a thousand first snapshots at start). */
  snapshotSlot?: <T>(fn: () => Promise<T>) => Promise<T>;
  log: Logger;
}

export interface ReplicatorResult {
  /** True when every captured transaction reached every replica before exit. */
  clean: boolean;
}

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
  private running = false;
  private reopenPending = false;
  /** While reopenPending: the files' signature and since when it has not changed. */
  private settle: { sig: string; since: number } | undefined;
  private readonly lagging = new Set<string>();
  private trimming = false;

  constructor(private readonly opts: ReplicatorOptions) {
    this.log = opts.log.child({ db: opts.dbPath });
    this.spool = new Spool(opts.spoolStore);
    const s = opts.settings;
    this.policy = new SnapshotPolicy({ intervalMs: s.snapshotIntervalMs, walRatio: s.snapshotWalRatio, walMinBytes: s.snapshotWalMinBytes });
    this.passes = new PassScheduler(`${opts.dbPath}-wal`, opts.dbPath, () => this.runPass(), (fn) => this.withLock(fn), this.log, opts.pollIntervalMs);
  }

  get dbPath(): string {
    return this.opts.dbPath;
  }

  /** Generation and newest captured txid ('' and 0 before the chain is open). */
  get position(): { generation: string; txid: number } {
    return { generation: this.capture?.state.generation ?? '', txid: this.capture?.state.lastTxid ?? 0 };
  }

  /**
   * A database or state directory on a network or FUSE mount works until it does not (see
   * remote-fs.ts): say so at start, once, rather than refuse a setup that may be deliberate.
   */
  private async warnIfRemote(): Promise<void> {
    const dbFs = await remoteFsOf(dirname(this.opts.dbPath));
    if (dbFs !== undefined) {
      this.log.warn(`the database is on a ${dbFs} file system: SQLite's WAL mode needs every connection on the same host as the file, and its shared-memory index does not work across a network mount`, {
        fs: dbFs,
        hint: 'keep the database, its -wal and -shm files on a local disk',
      });
    }
    const stateFs = await remoteFsOf(this.opts.stateDir);
    if (stateFs !== undefined) {
      this.log.warn(`the state directory ${this.opts.stateDir} is on a ${stateFs} file system: the agent writes its spool and position there with synchronous calls, so a mount that hangs stops the agent`, {
        fs: stateFs,
        hint: 'point --state-dir at a local disk',
      });
    }
  }

  /**
   * Replicate until `signal` aborts, then capture and flush; `started` runs once capture is live,
   * or once it waits for the app to create the database.
   */
  async run(signal: AbortSignal, started?: () => void): Promise<ReplicatorResult> {
    await this.waitForDb(signal, started);
    if (signal.aborted) return { clean: true };
    // Open (and validate: WAL mode, a real SQLite file) before creating any state next to it.
    this.db = await SourceDb.open(this.opts.dbPath, { enableWal: this.opts.settings.enableWal });
    await mkdir(this.opts.stateDir, { recursive: true });
    await this.warnIfRemote();
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
    await this.openChain(knownMax, false);
    this.policy.started(Date.now());
    this.passes.start();
    this.running = true;
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
    if (!this.running || this.stopping) return;
    this.passes.poll(now);
    const due = this.policy.dueByInterval(now);
    if (due) this.requestSnapshot(due);
    if (this.opts.settings.maxLagMs !== undefined) this.health();
    const idle = this.passes.changeSeenAt === 0 && this.capture !== undefined;
    for (const w of this.workers) w.tick(now, idle, this.capture?.state.generation);
  }

  /** How often tick() must run for this database's promises (the WAL poll, the 1 s RPO check). */
  tickEvery(): number {
    return Math.min(this.passes.pollEvery(), this.opts.settings.maxLagMs !== undefined ? 1000 : Infinity);
  }

  /** Open (or reopen) the database and the chain; takes the first snapshot of a new generation. */
  private async openChain(knownMax: number, forceNew: boolean): Promise<void> {
    if (forceNew || !this.db) {
      this.db?.close();
      this.db = await SourceDb.open(this.opts.dbPath, { enableWal: this.opts.settings.enableWal });
    }
    let position = null;
    if (!forceNew) {
      try {
        position = await loadPosition(this.opts.stateDir);
      } catch (err) {
        this.log.warn('saved position unreadable; starting a new generation', { err });
      }
    }
    const s = this.opts.settings;
    const { capture, newGeneration, reason } = await Capture.start(
      this.db,
      this.spool,
      {
        dbPath: this.opts.dbPath,
        stateDir: this.opts.stateDir,
        checkpointFrames: s.checkpointFrames,
        truncateBytes: 64 << 20,
        resetBytes: s.walResetBytes ?? DEFAULT_WAL_RESET_BYTES,
        log: this.log,
      },
      position,
      knownMax,
    );
    this.capture = capture;
    if (newGeneration) {
      this.log.info('starting a new generation', { generation: capture.state.generation, reason, txid: capture.state.lastTxid });
      // Called at startup or from a pass: either way no pass can run meanwhile, so no lock here.
      await this.snapshot(true);
      await capture.persist();
    } else {
      this.log.info('continuing generation', { generation: capture.state.generation, txid: capture.state.lastTxid });
    }
    this.notifyShippers();
  }

  /** Until the database exists and is not empty; `waiting` is told once when it has to wait. */
  private async waitForDb(signal: AbortSignal, waiting?: () => void): Promise<void> {
    let told = false;
    while (!signal.aborted) {
      let empty = false;
      try {
        const st = await stat(this.opts.dbPath);
        empty = true;
        if (st.isDirectory()) {
          throw new PitrError('DB_IS_DIRECTORY', `database path ${this.opts.dbPath} is a directory`, 'pass the path of the SQLite database file, e.g. /data/app.db');
        }
        if (st.size > 0) return;
      } catch (err) {
        if (isPitrError(err) || errnoCode(err) !== 'ENOENT') throw err;
      }
      if (!told) {
        // An app's new database is an empty file until its first transaction writes page 1.
        this.log.info(empty ? 'the database file is empty (0 bytes): waiting for the app\'s first write' : 'waiting for the database to be created', { path: this.opts.dbPath });
        told = true;
        // The app (an exec child) may be what creates it: do not hold it back for this.
        waiting?.();
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** The database's, -wal's and -shm's identities, sizes and mtimes, as one comparable string. */
  private filesSignature(): string {
    return ['', '-wal', '-shm']
      .map((suffix) => {
        const st = statSync(`${this.opts.dbPath}${suffix}`, { throwIfNoEntry: false });
        return st ? `${st.ino}:${st.size}:${st.mtimeMs}` : 'missing';
      })
      .join('/');
  }

  private async runPass(): Promise<void> {
    const capture = this.capture;
    if (!capture) return;
    try {
      if (this.reopenPending) {
        if (this.stopping) return;
        // The files changed under the agent: start over once they have stopped changing (an
        // operator's restore is several steps: rm, cp, start the app). Each change retries.
        const sig = this.filesSignature();
        if (this.settle === undefined || sig !== this.settle.sig) this.settle = { sig, since: Date.now() };
        const wait = this.settle.since + SETTLE_MS - Date.now();
        if (wait > 0) {
          this.passes.later('retry', wait);
          return;
        }
        await this.openChain(Math.max(this.spool.maxTxid(), capture.state.lastTxid), true);
        this.reopenPending = false;
        this.settle = undefined;
        return;
      }
      const r = await capture.pass();
      if (r.broken) {
        // Let go of every connection at once, writing nothing: they may no longer use the files at
        // the database's paths, and any checkpoint through them could damage the new file.
        this.db?.close();
        this.db = undefined;
        this.reopenPending = true;
        this.settle = { sig: this.filesSignature(), since: Date.now() };
        this.log.warn(`continuity lost: ${r.broken}; pitr let go of the database and starts a new generation once its files have been unchanged for ${formatDuration(SETTLE_MS)}`, {
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
        if (this.opts.settings.spoolMaxBytes > 0 && this.spool.totalBytes() > this.opts.settings.spoolMaxBytes) void this.trimSpool();
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

  /** Pin the current state under the lock, then stream pages outside it so capture keeps going. */
  private async snapshot(callerHoldsLock = false): Promise<void> {
    const slot = this.opts.snapshotSlot ?? (<T>(fn: () => Promise<T>) => fn());
    // The slot is taken before the state is pinned: waiting for one must not hold a read mark.
    await slot(async () => {
      const capture = this.capture;
      const db = this.db;
      if (!capture || !db) return;
      const take = async (): Promise<{ pin: ReturnType<SourceDb['pinRead']>; view: ReturnType<Capture['snapshotView']>; walBefore: number }> => ({
        pin: db.pinRead(),
        view: capture.snapshotView(),
        walBefore: this.policy.walSinceSnapshot,
      });
      const { view, pin, walBefore } = callerHoldsLock ? await take() : await this.withLock(take);
      const started = Date.now();
      // A snapshot of a large database takes minutes: say how far it is now and then.
      let loggedAt = started;
      const onPages = (done: number): void => {
        const now = Date.now();
        if (now - loggedAt < SNAPSHOT_PROGRESS_LOG_MS) return;
        loggedAt = now;
        this.log.info('snapshot in progress', {
          pages: done,
          of: view.dbSizePages,
          done: `${Math.floor((100 * done) / view.dbSizePages)}%`,
          elapsed: formatDuration(now - started),
        });
      };
      const entry = await writeSnapshotToSpool({ dbPath: this.opts.dbPath, view, pin, spool: this.spool, onPages, check: () => capture.assertFiles() });
      this.policy.taken(started, Date.now(), walBefore);
      this.opts.metrics.snapshotTaken();
      this.log.info('snapshot spooled', { key: entry.key, bytes: entry.size, pages: view.dbSizePages, took: formatDuration(Date.now() - started) });
      this.notifyShippers();
    });
  }

  /** Delete spool entries every replica is done with. */
  private async trimSpool(): Promise<void> {
    if (this.trimming) return;
    this.trimming = true;
    try {
      await this.spool.remove(this.entriesEveryReplicaIsDoneWith());
      await this.enforceSpoolCap();
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
  private async enforceSpoolCap(): Promise<void> {
    const cap = this.opts.settings.spoolMaxBytes;
    const capture = this.capture;
    if (cap <= 0 || !capture || this.stopping || this.spool.totalBytes() <= cap) return;
    // Only replicas that are failing: one merely a sync interval behind is not lagging.
    const lagging = this.workers.map((w) => w.shipper).filter((s) => s.isFailing() && s.hasPending());
    if (lagging.length === 0) return;
    const before = this.spool.totalBytes();
    for (const s of lagging) {
      s.abandonThrough(capture.state.lastTxid, capture.state.generation);
      this.log.warn('spool is over its cap while a replica is unreachable: dropping what only that replica still needs; when it is back it resumes from a new snapshot, with a gap in its history', {
        replica: s.replica.url,
        spoolBytes: before,
        cap,
        droppedThroughTxid: capture.state.lastTxid,
      });
    }
    await this.spool.remove(this.entriesEveryReplicaIsDoneWith());
  }

  private entriesEveryReplicaIsDoneWith(): (SegmentEntry | SnapshotEntry)[] {
    const done: (SegmentEntry | SnapshotEntry)[] = [];
    for (const gen of this.spool.generations()) {
      for (const e of [...this.spool.segmentsOf(gen), ...this.spool.snapshotsOf(gen)]) {
        if (this.workers.every((w) => w.shipper.doneWith(e))) done.push(e);
      }
    }
    return done;
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
    this.noteCrossings(report);
    return report;
  }

  /**
   * Log when a replica crosses --max-lag, either way, once per crossing. Runs on every tick and on
   * every health evaluation, so a scrape never sees a 503 the log does not mention.
   */
  private noteCrossings(report: HealthReport): void {
    const max = this.opts.settings.maxLagMs;
    if (max === undefined) return;
    for (const r of report.replicas) {
      const was = this.lagging.has(r.url);
      if (!r.healthy && !was) {
        this.lagging.add(r.url);
        this.log.warn('replica is behind the RPO objective (--max-lag)', { replica: r.url, lagSeconds: r.lagSeconds, maxLagSeconds: max / 1000 });
      } else if (r.healthy && was) {
        this.lagging.delete(r.url);
        this.log.info('replica is back within the RPO objective (--max-lag)', { replica: r.url, lagSeconds: r.lagSeconds, maxLagSeconds: max / 1000 });
      }
    }
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
    if (!this.running || this.stopping) throw new PitrError('CONTROL_FAILED', `${this.opts.dbPath} is not replicating yet (or is stopping)`, 'wait until the agent logs "replicating" for it, then ask again');
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
  async snapshotNow(deadline: number): Promise<{ txid: number; shipped: boolean }> {
    if (!this.running || this.stopping) throw new PitrError('CONTROL_FAILED', `${this.opts.dbPath} is not replicating yet (or is stopping)`, 'wait until the agent logs "replicating" for it, then ask again');
    if (this.snapshotRunning) await this.snapshotRunning;
    await this.withLock(() => this.runPass());
    const txid = this.capture?.state.lastTxid ?? 0;
    this.log.info('taking a snapshot', { reason: 'asked for on the control socket' });
    await this.snapshot();
    const flushed = await Promise.all(this.workers.map((w) => w.flush(deadline)));
    return { txid, shipped: flushed.every(Boolean) };
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

  private withLock<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.lock.then(fn, fn);
    this.lock = next.catch(() => {});
    return next;
  }
}
