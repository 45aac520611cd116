import { mkdir, stat } from 'node:fs/promises';
import { statSync } from 'node:fs';
import { PitrError, errnoCode, isPitrError } from '../errors.js';
import type { StorageClient } from '../storage/storage-client.js';
import type { FileStorage } from '../storage/file/file-storage.js';
import { SourceDb } from '../db/source-db.js';
import { Capture, QUIET_MS } from './capture/capture.js';
import { Spool } from './spool.js';
import { Shipper } from './shipper.js';
import { loadPosition } from './capture/position.js';
import { nextRetentionKeepFrom, planRetention } from './retention.js';
import { writeSnapshotToSpool } from './snapshotter.js';
import { DbWatcher } from './db-watcher.js';
import { buildCatalog, type SegmentEntry, type SnapshotEntry } from '../catalog/catalog.js';
import type { Logger } from '../log.js';
import { hostname } from 'node:os';
import type { Server } from 'node:http';
import { AgentMetrics } from '../monitor/metrics.js';
import { healthReport, type HealthReport } from '../monitor/health.js';
import { startMonitorServer } from '../monitor/http-server.js';
import { verifyReplica } from '../verify/verify-replica.js';
import { formatBytes, formatDuration } from '../util/duration.js';
import { remoteFsOf } from '../util/remote-fs.js';
import type { ReplicaLease } from './lease.js';
import { dirname } from 'node:path';
import { DEFAULT_SNAPSHOT_WAL_MIN_BYTES, DEFAULT_SNAPSHOT_WAL_RATIO, DEFAULT_WAL_RESET_BYTES } from '../config/defaults.js';
import { snapshotWalLimit } from './snapshot-wal-limit.js';

/**
 * Least time between the starts of two capture passes. Adds at most this much to the lag under
 * sustained writes; measured at 1,000 commits/s and flat out in bench/ (lag and overhead suites).
 */
const MIN_PASS_GAP_MS = 25;
/**
 * How long the database's files must stay unchanged after they changed under the agent before it
 * opens them again: an operator's restore is several commands, and a snapshot of a file still being
 * copied would be dropped anyway (Spool.addSnapshot's check).
 */
const SETTLE_MS = 1000;
/** Safety-net stat of the WAL (schedulePoll): without a working watcher, and beside one. */
const POLL_MS = 1000;
const POLL_BESIDE_WATCHER_MS = 5000;

/**
 * Least time between a failed snapshot and the next one --snapshot-wal-ratio asks for: it asks
 * after every capture pass, and each try reads the whole database.
 */
const WAL_SNAPSHOT_RETRY_MS = 10_000;
/**
 * A snapshot pins a read transaction for its whole duration, and while it does the WAL cannot be
 * reset (Capture.resetWal). --snapshot-wal-ratio waits this many times the last snapshot's
 * duration after it, so its snapshots pin at most ~1/(1 + this) of the time: behind a writer that
 * fills --snapshot-wal-min in about a second, they otherwise ran back to back (4 in 20 s on the
 * bench's flat-out writer, each 1-3 s) and the WAL grew without a reset the whole time.
 */
const WAL_SNAPSHOT_SPACING = 9;

/** Why a pass is scheduled for later: at most one timer per reason, all cleared on shutdown. */
type PassDelay = 'pace' | 'quiet' | 'retry';

export interface AgentOptions {
  dbPath: string;
  replicas: StorageClient[];
  /** Local, durable storage for the spool (a directory store under the state dir). */
  spoolStore: FileStorage;
  stateDir: string;
  syncIntervalMs: number;
  snapshotIntervalMs: number;
  /**
   * Also snapshot once the WAL captured since the last snapshot exceeds this many times the
   * database size (and snapshotWalMinBytes); 0 = never. Bounds how much WAL a restore of the
   * latest state replays. Default 1.
   */
  snapshotWalRatio?: number;
  /** Least WAL since the last snapshot before snapshotWalRatio applies. Default 256 MiB. */
  snapshotWalMinBytes?: number;
  retentionMs: number;
  /** How often retention runs (it LISTs each replica). */
  retentionCheckMs?: number;
  checkpointFrames?: number;
  /** Spool size above which entries only unreachable replicas need are dropped (0 = no cap). */
  spoolMaxBytes?: number;
  /** TRUNCATE-checkpoint the WAL once its file is this large (0 = never). */
  truncateBytes?: number;
  /** Reset the WAL under a brief write lock once it holds this much and writes never pause (0 = never). */
  walResetBytes?: number;
  /** Fallback stat of the WAL, in case a file-system event is missed (default: see schedulePoll). */
  pollIntervalMs?: number;
  enableWal?: boolean;
  shutdownTimeoutMs?: number;
  /** Serve /metrics and /healthz here (e.g. 127.0.0.1:9090). */
  listen?: string;
  /** RPO objective: /healthz answers 503 while a replica lags more than this. */
  maxLagMs?: number;
  /** Heartbeat to each idle, caught-up replica this often (0 = never). */
  heartbeatIntervalMs?: number;
  /** Run `pitr verify` against each replica this often (0 = never), exported as metrics. */
  verifyIntervalMs?: number;
  /** pitr's version, for the heartbeat. */
  version?: string;
  /**
   * The leases held on the replicas (their `storage` is the replica in `replicas`). When one is
   * lost to another agent, that replica's shipper stops; capture and the other replicas go on.
   */
  leases?: readonly ReplicaLease[];
  log: Logger;
}

export interface AgentResult {
  /** True when every captured transaction reached every replica before exit. */
  clean: boolean;
}

/** How often a long snapshot logs its progress. */
const SNAPSHOT_PROGRESS_LOG_MS = 30_000;

/**
 * The sidecar: waits for the database, opens the capture chain (continuing or starting a
 * generation), captures on every WAL change, snapshots on schedule, ships to every replica,
 * enforces retention, and on abort captures one last time and flushes before returning.
 */
export class Agent {
  private readonly log: Logger;
  private db: SourceDb | undefined;
  private capture: Capture | undefined;
  private spool: Spool;
  private shippers: Shipper[] = [];
  private lock: Promise<unknown> = Promise.resolve();
  private passQueued = false;
  private passRunning = false;
  private snapshotRunning: Promise<void> | undefined;
  private lastSnapshotAt = 0;
  /** How long the last snapshot took to spool (ms). */
  private lastSnapshotTookMs = 0;
  /** When the last snapshot failed (0 = none has). */
  private snapshotFailedAt = 0;
  /**
   * Bytes of segment body (page images and commit records) captured since the state the newest
   * snapshot holds; counted from the agent's start when it continues a generation.
   */
  private walSinceSnapshot = 0;
  private watcher: DbWatcher | undefined;
  private timers: NodeJS.Timeout[] = [];
  private pollTimer: NodeJS.Timeout | undefined;
  /**
   * Per replica, what the last retention check saw: how many objects the shipper had shipped
   * then, and when something in that listing becomes old enough to delete. Until one of the two
   * changes, a check would find nothing, so an idle agent sends no LIST.
   */
  private retentionSeen = new Map<Shipper, { shipped: number; dueAt: number | undefined }>();
  /** Replicas whose lease another agent took: when, and the lag they had then. */
  private lostShippers = new Map<Shipper, { at: number; lagMs: number }>();
  private lastWalStat = '';
  private walBytes = 0;
  private stopping = false;
  private reopenPending = false;
  /** When the last capture pass started (see schedulePass). */
  private lastPassAt = 0;
  private passTimers = new Map<PassDelay, NodeJS.Timeout>();
  private metrics: AgentMetrics | undefined;
  private server: Server | undefined;
  /** When a WAL change was first seen that no finished pass has covered yet (0 = none). */
  private changeSeenAt = 0;
  private readonly lagging = new Set<string>();
  /** While reopenPending: the files' signature and since when it has not changed. */
  private settle: { sig: string; since: number } | undefined;

  constructor(private readonly opts: AgentOptions) {
    this.log = opts.log.child({ db: opts.dbPath });
    this.spool = new Spool(opts.spoolStore);
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

  async run(signal: AbortSignal): Promise<AgentResult> {
    await this.waitForDb(signal);
    if (signal.aborted) return { clean: true };
    // Open (and validate: WAL mode, a real SQLite file) before creating any state next to it.
    this.db = await SourceDb.open(this.opts.dbPath, { enableWal: this.opts.enableWal ?? false });
    await mkdir(this.opts.stateDir, { recursive: true });
    await this.warnIfRemote();
    await this.spool.load();
    this.shippers = this.opts.replicas.map(
      (replica) =>
        new Shipper(replica, this.spool, {
          syncIntervalMs: this.opts.syncIntervalMs,
          log: this.log,
          currentGeneration: () => this.capture?.state.generation ?? '',
          requestSnapshot: () => this.requestSnapshot('a replica has no snapshot of the current generation'),
          onShipped: () => void this.trimSpool(),
          agent: { host: hostname(), pid: process.pid, version: this.opts.version ?? 'unknown' },
          events: {
            uploaded: (kind, bytes) => this.metrics?.uploaded(replica.url, kind, bytes),
            failed: () => this.metrics?.uploadFailed(replica.url),
          },
        }),
    );
    for (const s of this.shippers) {
      this.opts.leases?.find((l) => l.storage === s.replica)?.onLost(() => this.replicaLost(s));
    }
    this.metrics = new AgentMetrics({
      db: this.opts.dbPath,
      generation: () => this.capture?.state.generation ?? '',
      capturedTxid: () => this.capture?.state.lastTxid ?? 0,
      capturedCommitTime: () => this.capture?.state.lastTime ?? 0,
      walBytes: () => this.walBytes,
      spoolBytes: () => this.spool.totalBytes(),
      lastSnapshotAt: () => this.lastSnapshotAt,
      walSinceSnapshot: () => this.walSinceSnapshot,
      replicas: () => this.health().replicas,
      // The process collector's event-loop monitor wakes the agent ~190 times a second: only
      // pay for it when someone scrapes.
      processMetrics: this.opts.listen !== undefined,
    });
    if (this.opts.listen) {
      const started = await startMonitorServer(this.opts.listen, {
        metrics: () => this.metrics?.render() ?? Promise.resolve({ contentType: 'text/plain', body: '' }),
        health: () => {
          const h = this.health();
          return { ok: h.status === 'ok', body: h };
        },
      });
      this.server = started.server;
      this.log.info('serving metrics and health', { metrics: `${started.url}/metrics`, health: `${started.url}/healthz` });
    }
    let knownMax = this.spool.maxTxid();
    for (const s of this.shippers) {
      try {
        knownMax = Math.max(knownMax, Shipper.maxTxidOf(await s.init()));
      } catch (err) {
        this.log.warn('replica unreachable at startup; capture starts anyway and uploads will be retried', { replica: s.replica.url, err });
      }
    }
    await this.openChain(knownMax, false);
    this.startWatching();
    this.log.info('replicating', {
      generation: this.capture?.state.generation,
      txid: this.capture?.state.lastTxid,
      replicas: this.opts.replicas.map((r) => r.url),
      syncInterval: formatDuration(this.opts.syncIntervalMs),
    });
    await new Promise<void>((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
    return this.shutdown();
  }

  /** Open (or reopen) the database and the chain; takes the first snapshot of a new generation. */
  private async openChain(knownMax: number, forceNew: boolean): Promise<void> {
    if (forceNew || !this.db) {
      this.db?.close();
      this.db = await SourceDb.open(this.opts.dbPath, { enableWal: this.opts.enableWal ?? false });
    }
    let position = null;
    if (!forceNew) {
      try {
        position = await loadPosition(this.opts.stateDir);
      } catch (err) {
        this.log.warn('saved position unreadable; starting a new generation', { err });
      }
    }
    const { capture, newGeneration, reason } = await Capture.start(
      this.db,
      this.spool,
      {
        dbPath: this.opts.dbPath,
        stateDir: this.opts.stateDir,
        checkpointFrames: this.opts.checkpointFrames ?? 1000,
        truncateBytes: this.opts.truncateBytes ?? 64 << 20,
        resetBytes: this.opts.walResetBytes ?? DEFAULT_WAL_RESET_BYTES,
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

  private async waitForDb(signal: AbortSignal): Promise<void> {
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
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  private startWatching(): void {
    this.watcher = new DbWatcher(
      this.opts.dbPath,
      () => this.schedulePass(),
      (err) => this.log.warn('file watcher error; falling back to polling every second', { err }),
    );
    this.watcher.arm();
    // What the app committed between the chain's opening scan and this arming raised no event for
    // the watcher: look now rather than at the first safety-net poll.
    this.pollWal();
    this.schedulePoll();
    const snapEvery = this.opts.snapshotIntervalMs;
    if (snapEvery > 0) {
      this.lastSnapshotAt = Date.now();
      this.timers.push(
        setInterval(() => {
          if (Date.now() - this.lastSnapshotAt >= snapEvery) this.requestSnapshot('snapshot interval');
        }, Math.min(snapEvery, 60_000)),
      );
    }
    const heartbeatEvery = this.opts.heartbeatIntervalMs ?? 60_000;
    if (heartbeatEvery > 0) {
      this.timers.push(setInterval(() => void this.heartbeats(heartbeatEvery), Math.max(1000, Math.min(heartbeatEvery / 4, 15_000))));
    }
    if (this.opts.maxLagMs !== undefined) {
      this.timers.push(setInterval(() => this.health(), 1000));
    }
    const verifyEvery = this.opts.verifyIntervalMs ?? 0;
    if (verifyEvery > 0) this.timers.push(setInterval(() => void this.verifyAll(), verifyEvery));
    const retentionEvery = this.opts.retentionCheckMs ?? 3_600_000;
    if (this.opts.retentionMs > 0) {
      this.timers.push(setInterval(() => void this.enforceRetention(), retentionEvery));
      // Soon after start too: an agent that was down may find a backlog of expired objects.
      this.timers.push(setTimeout(() => void this.enforceRetention(), Math.min(retentionEvery, 10_000)));
    }
  }

  private walPath(): string {
    return `${this.opts.dbPath}-wal`;
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

  /**
   * The WAL's identity, size and mtime, as one comparable string ('missing' when absent).
   * Synchronous: a stat of a local file takes microseconds, and the thread-pool round trip of the
   * async one (a pool thread woken, the loop woken back) cost an idle agent more CPU than the stat
   * itself, once a second (idle agent 0.17-0.20% of a core on a VM with costly wakeups).
   */
  private walSignature(): string {
    try {
      const st = statSync(this.walPath());
      this.walBytes = st.size;
      return `${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch {
      return 'missing'; // a missing WAL is a state like any other
    }
  }

  /**
   * The next safety-net stat of the WAL, for an event the watcher missed: every second without a
   * working watcher, every 5 s beside one. An idle agent does nothing else, and on a VM where a
   * wakeup is costly the once-a-second timer alone was ~0.05-0.08% of a core; with the watcher, a
   * change is seen at once and the poll only bounds how late a lost event can make a pass.
   */
  private schedulePoll(): void {
    if (this.stopping) return;
    const ms = this.opts.pollIntervalMs ?? (this.watcher?.healthy ? POLL_BESIDE_WATCHER_MS : POLL_MS);
    this.pollTimer = setTimeout(() => {
      try {
        this.pollWal();
      } finally {
        this.schedulePoll();
      }
    }, ms);
  }

  /**
   * A pass when the WAL changed since the last look: on the safety-net poll (schedulePoll) and
   * when the watcher is re-armed after a pass (for changes made while it was disarmed).
   */
  private pollWal(): void {
    const sig = this.walSignature();
    if (sig !== this.lastWalStat) {
      this.lastWalStat = sig;
      this.schedulePass();
    }
  }

  /** Run a capture pass soon; passes never overlap, and a burst of events makes one more pass. */
  private schedulePass(fromChange = true): void {
    if (this.stopping) return;
    if (fromChange && this.changeSeenAt === 0) this.changeSeenAt = Date.now();
    if (this.passRunning) {
      this.passQueued = true;
      return;
    }
    // Under sustained writes every WAL event would start a pass as soon as the last one ended,
    // each with its own spool fsync: the agent would take a core from the app to ship the same
    // commits in smaller pieces. Passes start at most every MIN_PASS_GAP_MS; the first change
    // after a quiet spell still starts one at once.
    const wait = this.lastPassAt + MIN_PASS_GAP_MS - Date.now();
    if (wait > 0) {
      if (!this.passTimers.has('pace')) this.passLater('pace', wait);
      return;
    }
    this.lastPassAt = Date.now();
    this.passRunning = true;
    const seen = this.changeSeenAt;
    void this.withLock(async () => {
      // Taken before the pass reads the WAL: whatever changes after it shows as a difference.
      this.lastWalStat = this.walSignature();
      await this.runPass();
    }).finally(() => {
      // Changes noticed after this pass started are still pending for the next one.
      if (this.changeSeenAt === seen) this.changeSeenAt = 0;
      this.passRunning = false;
      if (this.passQueued) {
        this.passQueued = false;
        this.schedulePass();
      }
      if (!this.stopping) {
        this.watcher?.arm();
        this.pollWal();
      }
    });
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
          this.passLater('retry', wait);
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
        this.passLater('retry', SETTLE_MS);
        return;
      }
      if (r.checkpoint) this.metrics?.checkpointed(r.checkpoint.mode, r.checkpoint.busy, r.checkpoint.durationMs / 1000);
      if (r.transactions > 0) {
        this.metrics?.capturedTransactions(r.transactions);
        this.log.debug('captured', { transactions: r.transactions, bytes: r.bytes, txid: capture.state.lastTxid });
        this.walSinceSnapshot += r.bytes;
        this.snapshotIfWalOutgrew(capture);
        this.notifyShippers();
        // Not awaited: it may start a generation, which needs the lock this pass holds.
        const cap = this.opts.spoolMaxBytes ?? 0;
        if (cap > 0 && this.spool.totalBytes() > cap) void this.trimSpool();
        // One more pass once writes pause, for the checkpoints that wait for a quiet moment.
        this.passLater('quiet', QUIET_MS + 50);
      }
      if (r.checkpoint) this.log.debug('checkpoint', { ...r.checkpoint });
    } catch (err) {
      // Committed frames may be waiting in the WAL; an idle app would never trigger another pass.
      this.log.error('capture pass failed; retrying in 1s', { err });
      // What the pass spooled before it failed (the spool's disk full, say) is durable: ship it,
      // which is also what frees the spool.
      this.notifyShippers();
      this.passLater('retry', 1000);
    }
  }

  /** A pass in `ms`, replacing any pending one for the same reason. */
  private passLater(why: PassDelay, ms: number): void {
    if (this.stopping) return;
    clearTimeout(this.passTimers.get(why));
    this.passTimers.set(
      why,
      setTimeout(() => {
        this.passTimers.delete(why);
        this.schedulePass(false);
      }, ms),
    );
  }

  private notifyShippers(): void {
    for (const s of this.shippers) s.notify();
  }

  private requestSnapshot(why: string): void {
    if (this.snapshotRunning || this.stopping) return;
    this.log.info('taking a snapshot', { reason: why });
    this.snapshotRunning = this.snapshot()
      .catch((err) => {
        this.snapshotFailedAt = Date.now();
        this.log.error('snapshot failed; it will be retried', { err });
      })
      .finally(() => {
        this.snapshotRunning = undefined;
      });
  }

  /**
   * A restore of the latest state reads the newest snapshot and replays every segment after it, so
   * its time grows with the WAL written since that snapshot, not with the database. Once that WAL
   * outgrows snapshotWalRatio x the database, a new snapshot bounds it again: restore then reads
   * at most about (1 + ratio) database sizes, whatever the write rate and --snapshot-interval.
   */
  private snapshotIfWalOutgrew(capture: Capture): void {
    const ratio = this.opts.snapshotWalRatio ?? DEFAULT_SNAPSHOT_WAL_RATIO;
    if (this.snapshotRunning || !this.db || Date.now() - this.snapshotFailedAt < WAL_SNAPSHOT_RETRY_MS) return;
    if (Date.now() - this.lastSnapshotAt < WAL_SNAPSHOT_SPACING * this.lastSnapshotTookMs) return;
    const dbBytes = capture.state.dbSizePages * this.db.info.pageSize;
    if (this.walSinceSnapshot < snapshotWalLimit(ratio, this.opts.snapshotWalMinBytes ?? DEFAULT_SNAPSHOT_WAL_MIN_BYTES, dbBytes)) return;
    this.requestSnapshot(`${formatBytes(this.walSinceSnapshot)} of WAL since the last snapshot, over ${ratio} x the ${formatBytes(dbBytes)} database`);
  }

  /** Pin the current state under the lock, then stream pages outside it so capture keeps going. */
  private async snapshot(callerHoldsLock = false): Promise<void> {
    const capture = this.capture;
    const db = this.db;
    if (!capture || !db) return;
    const take = async (): Promise<{ pin: ReturnType<SourceDb['pinRead']>; view: ReturnType<Capture['snapshotView']>; walBefore: number }> => ({
      pin: db.pinRead(),
      view: capture.snapshotView(),
      walBefore: this.walSinceSnapshot,
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
    // What was captured while the snapshot was written comes after its state: it still counts.
    this.walSinceSnapshot = Math.max(0, this.walSinceSnapshot - walBefore);
    this.lastSnapshotAt = Date.now();
    this.lastSnapshotTookMs = this.lastSnapshotAt - started;
    this.metrics?.snapshotTaken();
    this.log.info('snapshot spooled', { key: entry.key, bytes: entry.size, pages: view.dbSizePages, took: formatDuration(Date.now() - started) });
    this.notifyShippers();
  }

  private trimming = false;
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
   * snapshot: its history has a gap there, which restore refuses to guess across.
   */
  private async enforceSpoolCap(): Promise<void> {
    const cap = this.opts.spoolMaxBytes ?? 0;
    const capture = this.capture;
    if (cap <= 0 || !capture || this.stopping || this.spool.totalBytes() <= cap) return;
    // Only replicas that are failing: one merely a sync interval behind is not lagging.
    const lagging = this.shippers.filter((s) => s.isFailing() && s.hasPending());
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
        if (this.shippers.every((s) => s.doneWith(e))) done.push(e);
      }
    }
    return done;
  }

  private async enforceRetention(): Promise<void> {
    const now = Date.now();
    const keepFrom = now - this.opts.retentionMs;
    for (const s of this.shippers) {
      // Not ours to prune any more: another agent holds its lease.
      if (this.lostShippers.has(s)) continue;
      const seen = this.retentionSeen.get(s);
      if (seen && seen.shipped === s.stats.objectsShipped && (seen.dueAt === undefined || now < seen.dueAt)) continue;
      // Counted before the LIST: anything shipped meanwhile makes the next check list again.
      const shipped = s.stats.objectsShipped;
      try {
        const objects = await s.replica.list('generations/');
        const protect = this.capture?.state.generation;
        const plan = planRetention(buildCatalog(objects), keepFrom, protect);
        const keys = [...plan.snapshots, ...plan.segments].map((e) => e.key);
        if (keys.length > 0) {
          await s.replica.delete(keys);
          s.noteDeleted(plan.snapshots);
          this.log.info('retention: removed objects older than the window', { replica: s.replica.url, objects: keys.length });
        }
        const gone = new Set(keys);
        const next = nextRetentionKeepFrom(buildCatalog(objects.filter((o) => !gone.has(o.key))), protect);
        this.retentionSeen.set(s, { shipped, dueAt: next === undefined ? undefined : next + this.opts.retentionMs });
      } catch (err) {
        this.retentionSeen.delete(s);
        this.log.warn('retention check failed; will retry', { replica: s.replica.url, err });
      }
    }
  }

  /**
   * Another agent took the lease on this replica: stop uploading to it and stop holding spool
   * entries for it. Its lag grows from here (nothing this agent captures reaches it), so
   * /healthz turns unhealthy under --max-lag; the log has said why.
   */
  private replicaLost(s: Shipper): void {
    if (this.lostShippers.has(s)) return;
    this.lostShippers.set(s, { at: Date.now(), lagMs: s.lagMs() });
    s.stop();
    s.abandonThrough(Number.MAX_SAFE_INTEGER, '');
    this.metrics?.uploadFailed(s.replica.url);
    void this.trimSpool();
  }

  /** Lag of every replica: what the spool still holds for it, or a change capture has not read yet. */
  health(): HealthReport {
    const report = this.computeHealth();
    this.noteCrossings(report);
    return report;
  }

  private computeHealth(): HealthReport {
    const now = Date.now();
    const captureLag = this.changeSeenAt > 0 ? now - this.changeSeenAt : 0;
    const gen = this.capture?.state.generation ?? '';
    const report = healthReport(
      this.opts.dbPath,
      this.opts.maxLagMs,
      this.shippers.map((s) => {
        const d = s.durable(gen);
        const lost = this.lostShippers.get(s);
        const lagMs = lost !== undefined ? lost.lagMs + (now - lost.at) : Math.max(s.lagMs(now), captureLag);
        return { url: s.replica.url, lagSeconds: lagMs / 1000, lastTxid: d.txid, lastCommitTime: d.commitTime };
      }),
    );
    if (this.lostShippers.size === 0) return report;
    // A replica this agent lost the lease on is unhealthy whatever --max-lag says: /healthz says why.
    const lostUrls = new Set([...this.lostShippers.keys()].map((s) => s.replica.url));
    const replicas = report.replicas.map((r) => (lostUrls.has(r.url) ? { ...r, healthy: false, leaseLost: true } : r));
    return { ...report, status: 'lagging', replicas };
  }

  /**
   * Log when a replica crosses --max-lag, either way, once per crossing. Runs on a 1 s timer and
   * on every health evaluation, so a scrape never sees a 503 the log does not mention.
   */
  private noteCrossings(report: HealthReport): void {
    const max = this.opts.maxLagMs;
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

  private verifying = false;
  /** Scheduled verification: every object's checksum, a restore, integrity_check, live comparison. */
  private async verifyAll(): Promise<void> {
    if (this.verifying || this.stopping) return;
    this.verifying = true;
    try {
      for (const s of this.shippers) {
        const started = Date.now();
        try {
          const r = await verifyReplica({ storage: s.replica, dbPath: this.opts.dbPath, stateDir: this.opts.stateDir });
          this.metrics?.verified(s.replica.url, r.ok, (Date.now() - started) / 1000);
          if (r.ok) this.log.info('verification passed', { replica: s.replica.url, txid: r.txid, objects: r.objectsChecked, content: r.content });
          else this.log.error('verification FAILED', { replica: s.replica.url, problems: r.problems.map((p) => `${p.check}${p.object ? ` ${p.object}` : ''}: ${p.message}`) });
        } catch (err) {
          this.metrics?.verified(s.replica.url, false, (Date.now() - started) / 1000);
          this.log.error('verification could not run', { replica: s.replica.url, err });
        }
      }
    } finally {
      this.verifying = false;
    }
  }

  private async heartbeats(intervalMs: number): Promise<void> {
    const capture = this.capture;
    if (!capture || this.stopping || this.changeSeenAt > 0) return;
    const gen = capture.state.generation;
    for (const s of this.shippers) {
      if (s.durable(gen).txid === 0) continue;
      await s.heartbeat(intervalMs);
    }
  }

  private async shutdown(): Promise<AgentResult> {
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    clearTimeout(this.pollTimer);
    for (const t of this.passTimers.values()) clearTimeout(t);
    this.passTimers.clear();
    this.watcher?.close();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    // Capture what the app committed up to now, then ship it all.
    await this.withLock(() => this.runPass());
    if (this.snapshotRunning) await this.snapshotRunning;
    const deadline = Date.now() + (this.opts.shutdownTimeoutMs ?? 30_000);
    // A replica whose lease another agent took is no longer ours to catch up.
    const results = await Promise.all(this.shippers.filter((s) => !this.lostShippers.has(s)).map((s) => s.flush(deadline)));
    for (const s of this.shippers) s.stop();
    await this.trimSpool();
    this.db?.close();
    const clean = results.every(Boolean);
    if (clean && this.lostShippers.size > 0) {
      this.log.warn('stopped; every captured transaction is in every replica this agent still holds the lease on', {
        txid: this.capture?.state.lastTxid,
        lostReplicas: [...this.lostShippers.keys()].map((s) => s.replica.url),
      });
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
