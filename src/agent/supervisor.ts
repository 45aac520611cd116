import type { Server } from 'node:http';
import { PitrError, errorText } from '../errors.js';
import type { AgentConfig, DbSpec, DirDbSpec } from '../config/config-types.js';
import type { Logger } from '../log.js';
import { AgentMetrics } from '../monitor/metrics.js';
import { agentHealthReport } from '../monitor/health.js';
import { startMonitorServer } from '../monitor/http-server.js';
import { openDatabase, type DatabaseSpec } from '../replicate/open-database.js';
import { databaseSpec, safetyPollMs } from './database-spec.js';
import type { Replicator } from '../replicate/replicator.js';
import { Semaphore } from '../util/bounded.js';
import { formatDuration } from '../util/duration.js';
import { DirDiscovery, findDatabases } from './dir-discovery.js';
import { FDS_PER_DATABASE, databaseCapacity, openFilesLimit } from './fd-budget.js';
import { restoreDirEntry, restorePathEntry } from './restore-missing.js';
import { startControlServer } from './control-socket.js';
import { checkExecCommand, startExecChild, exitCodeOf } from './exec-child.js';
import type { AgentStatus, ControlHandlers, SnapshotResult, SyncResult } from './control-protocol.js';
import { verifyInWorker } from '../verify/verify-worker.js';

/** How often a `dir` entry is rescanned: new databases are picked up within about this long. */
const DISCOVERY_MS = 2000;
/** How long a database that failed to start waits before the next try (dir entries only). */
const RETRY_START_MS = 30_000;
/** Databases opened at once at start-up (paths, locks, leases, replica identity: requests to each replica). */
const STARTS_AT_ONCE = 8;
/** Snapshots taken at once across the agent: each reads a whole database. */
const SNAPSHOTS_AT_ONCE = 2;
/** One database the agent runs (or tries to). */
interface Running {
  dbPath: string;
  spec: DbSpec;
  controller: AbortController;
  replicator?: Replicator;
  done: Promise<boolean>;
  /** Set when the database could not start: why, for /healthz and `pitr agent status`. */
  error?: string;
  /** Being let go (its file was removed): a file that comes back starts it again once it is gone. */
  leaving?: boolean;
}

export interface SupervisorOptions {
  config: AgentConfig;
  version: string;
  log: Logger;
}

/**
 * The agent process: loads nothing itself (it is handed the config), and owns what the databases
 * share: the HTTP server and one metrics registry, the global limits (starts and snapshots at
 * once), the control socket, the `dir` discovery, and the exec child. Each database gets a
 * replicator (capture, spool, snapshots) with one worker per replica; one timer ticks them all.
 */
export class Supervisor {
  private readonly dbs = new Map<string, Running>();
  private readonly metrics: AgentMetrics;
  private readonly starts = new Semaphore(STARTS_AT_ONCE);
  private readonly snapshots = new Semaphore(SNAPSHOTS_AT_ONCE);
  private readonly discoveries: DirDiscovery[] = [];
  private readonly log: Logger;
  private server: Server | undefined;
  private control: { path: string; close(): Promise<void> } | undefined;
  private tickTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private child: ReturnType<typeof startExecChild> | undefined;
  private readonly startedAt = new Date().toISOString();
  private readonly stopController = new AbortController();
  /** Replicas the config held at start (databases a `dir` entry had then, times their replicas). */
  private expectedReplicas = 0;
  private expectedDatabases = 0;
  /** How many databases fit under the open-files limit (see fd-budget.ts). */
  private readonly capacity = databaseCapacity();

  constructor(private readonly opts: SupervisorOptions) {
    this.log = opts.log;
    this.metrics = new AgentMetrics(() => this.sources(), { processMetrics: opts.config.listen !== undefined });
  }

  /**
   * Run until stop() (a signal) or, with `exec`, until the child exits; then capture and ship
   * everything and resolve with the exit code: the child's with `exec`, else 0 when every database
   * ended clean and 1 otherwise. Errors before replication runs (a missing bucket, a locked state
   * directory of a `path` entry) reject.
   */
  async run(): Promise<number> {
    const cfg = this.opts.config;
    // A command that cannot start is refused before anything else runs.
    if (cfg.exec !== undefined) checkExecCommand(cfg.exec);
    try {
      if (cfg.listen) {
        const started = await startMonitorServer(cfg.listen, {
          metrics: () => this.metrics.render(),
          health: () => {
            const h = this.health();
            return { ok: h.status === 'ok', body: h };
          },
        });
        this.server = started.server;
        this.log.info('serving metrics and health', { metrics: `${started.url}/metrics`, health: `${started.url}/healthz` });
      }
      // After the health server is up: a restore of a large database takes minutes, and a
      // container's health check failing meanwhile would have the orchestrator kill the restore.
      if (cfg.restoreIfMissing) {
        this.restoring = true;
        for (const spec of cfg.dbs) {
          if (spec.kind === 'path') await restorePathEntry(spec, this.log);
          else await restoreDirEntry(spec, this.log);
        }
        this.restoring = false;
      }
      // Idle costs are set per database when it starts: count what the config holds now, so that the
      // first databases of a large directory do not keep the intervals of a small agent.
      const counts = cfg.dbs.map((spec) => (spec.kind === 'path' ? 1 : findDatabases(spec.dir, spec.pattern, spec.recursive).length));
      this.expectedDatabases = counts.reduce((a, b) => a + b, 0);
      this.expectedReplicas = cfg.dbs.reduce((n, spec, i) => n + Math.max(1, spec.replicas.length) * (counts[i] ?? 0), 0);
      // `path` entries must start: a mistake there is the operator's to fix now (exit 1).
      const first: Promise<void>[] = [];
      for (const spec of cfg.dbs) {
        if (spec.kind === 'path') first.push(this.startDb(spec.path, spec, true));
      }
      await Promise.all(first);
      // The databases a `dir` entry holds now are replicating (or failed, or wait for their file)
      // before the exec child starts, like `path` entries.
      const found: Promise<void>[] = [];
      for (const spec of cfg.dbs) if (spec.kind === 'dir') this.watchDir(spec, found);
      await Promise.all(found);
      this.control = await startControlServer(cfg.socket, this.controlHandlers(), this.log);
      this.scheduleTick();
      if (cfg.exec !== undefined && !this.stopping) this.startChild(cfg.exec);
      await new Promise<void>((resolve) => {
        if (this.stopController.signal.aborted) resolve();
        else this.stopController.signal.addEventListener('abort', () => resolve(), { once: true });
      });
    } catch (err) {
      await this.shutdown();
      throw err;
    }
    const clean = await this.shutdown();
    if (this.child) {
      const code = exitCodeOf(await this.child.exited);
      // The app's code, unless the app ended well and its last commits did not all reach the
      // replicas: a 0 then would say "all safe" about data that is only in the spool.
      if (code === 0 && !clean) {
        this.log.error('the exec child exited 0, but not everything reached the replicas: exiting 1 (the rest stays in the spool and ships on the next start)');
        return 1;
      }
      return code;
    }
    return clean ? 0 : 1;
  }

  /**
   * SIGINT/SIGTERM: with an exec child, forward it and stop once the child has exited (the app
   * finishes its last writes first, and they are shipped); without one, stop now.
   */
  signal(sig: NodeJS.Signals): 'forwarded' | 'stopping' {
    if (this.child && !this.childExited) {
      // The child shares the agent's process group: a terminal's Ctrl-C has reached it already,
      // and many apps take a second SIGINT as "quit now".
      const fromTerminal = sig === 'SIGINT' && !this.sawInt && process.stdin.isTTY === true;
      if (sig === 'SIGINT') this.sawInt = true;
      this.log.info('forwarding the signal to the exec child; stopping once it has exited', { signal: sig, pid: this.child.pid, ...(fromTerminal && { note: 'from the terminal: the child has it already' }) });
      if (!fromTerminal) this.child.kill(sig);
      return 'forwarded';
    }
    this.stop();
    return 'stopping';
  }

  private sawInt = false;

  stop(): void {
    this.stopController.abort();
  }

  private childExited = false;

  private startChild(cmd: string | string[]): void {
    this.child = startExecChild(cmd, this.log);
    this.child.exited.then(
      (r) => {
        this.childExited = true;
        this.log.info('the exec child exited: shipping everything, then exiting with its code', { code: r.code, signal: r.signal });
        this.stop();
      },
      (err: unknown) => {
        this.childExited = true;
        this.log.error('the exec child could not run: shipping everything, then exiting', { err });
        this.stop();
      },
    );
  }

  /** Watch a `dir` entry; the starts of what its first scan finds go into `found`. */
  private watchDir(spec: DirDbSpec, found: Promise<void>[]): void {
    let first = true;
    const d = new DirDiscovery(
      spec.dir,
      spec.pattern,
      spec.recursive,
      (p) => {
        const started = this.startDb(p, spec, false);
        if (first) found.push(started);
      },
      (p) => void this.letGo(p, 'its file was removed'),
    );
    this.discoveries.push(d);
    d.start(DISCOVERY_MS);
    first = false;
  }

  /**
   * Start replicating one database. `must` (a `path` entry at start): a failure is rethrown (the
   * agent exits 1); otherwise it is logged, shown in /healthz and `pitr agent status`, and the
   * database is tried again after RETRY_START_MS, whether it failed to start or later. Resolves
   * once capture is live (or waits for the app to create the file), or the start failed.
   */
  private async startDb(dbPath: string, spec: DbSpec, must: boolean): Promise<void> {
    // Removed and back (rm + cp) while being let go: start once the old run has let go.
    const previous = this.dbs.get(dbPath);
    if (previous?.leaving) await previous.done.then(() => this.dbs.get(dbPath) === previous && this.dbs.delete(dbPath));
    if (this.stopping || this.dbs.has(dbPath)) return;
    const controller = new AbortController();
    let ready!: (ok: boolean) => void;
    const run: Running = { dbPath, spec, controller, done: new Promise((r) => (ready = r)) };
    this.dbs.set(dbPath, run);
    const log = this.log.child({ db: dbPath });
    try {
      // Out of file descriptors mid-capture, SQLite and the spool fail in ways that help nobody:
      // refuse the database now, naming the limit (retried like any start that failed).
      const held = [...this.dbs.values()].filter((r) => r.error === undefined && r !== run).length;
      if (held >= this.capacity) {
        throw new PitrError('TOO_MANY_OPEN_FILES', `no file descriptors left to replicate ${dbPath}: each database needs about ${FDS_PER_DATABASE}, and the limit on open files is ${openFilesLimit()}`, `raise the limit (ulimit -n, or LimitNOFILE= in the systemd unit) to at least ${FDS_PER_DATABASE} x the number of databases + 256`);
      }
      const opened = await this.starts.run(() => openDatabase(this.databaseSpec(dbPath, spec), {
        version: this.opts.version,
        metrics: this.metrics.forDb(dbPath),
        log,
        verify: (req) => verifyInWorker(req),
        snapshotSlot: (fn) => this.snapshots.run(fn),
        pollBesideWatcherMs: safetyPollMs(Math.max(this.dbs.size, this.expectedDatabases)),
      }));
      run.replicator = opened.replicator;
      if (controller.signal.aborted) {
        await opened.release();
        ready(true);
        return;
      }
      let started!: () => void;
      const live = new Promise<void>((r) => (started = r));
      const result = opened.replicator.run(controller.signal, started).finally(() => opened.release());
      result.then(
        (r) => ready(r.clean),
        (err: unknown) => {
          run.error = errorText(err);
          ready(false);
          if (!must) this.retryLater(run, log, 'replication of this database stopped on an error', err);
        },
      );
      await Promise.race([live, result.then(() => {})]);
    } catch (err) {
      run.error = errorText(err);
      ready(false);
      if (must) throw err;
      this.retryLater(run, log, 'could not start replicating this database', err);
    }
    this.scheduleTick();
  }

  /** Log why a database is not replicating, and start it again after RETRY_START_MS. */
  private retryLater(run: Running, log: Logger, what: string, err: unknown): void {
    log.error(`${what}; retrying in ${formatDuration(RETRY_START_MS)}`, { err });
    const t = setTimeout(() => {
      if (this.stopping || this.dbs.get(run.dbPath) !== run) return;
      this.dbs.delete(run.dbPath);
      void this.startDb(run.dbPath, run.spec, false);
    }, RETRY_START_MS);
    t.unref();
  }

  /** Stop replicating one database (its file is gone): ship what was captured, then let go. */
  private async letGo(dbPath: string, why: string): Promise<void> {
    const run = this.dbs.get(dbPath);
    if (!run) return;
    this.log.info(`letting go of a database: ${why}`, { db: dbPath });
    run.leaving = true;
    run.controller.abort();
    await run.done;
    if (this.dbs.get(dbPath) !== run) return; // back already, and started again
    this.dbs.delete(dbPath);
    await this.metrics.forget(dbPath);
  }

  /** The settings of one database, with idle costs scaled to the agent's size (see database-spec.ts). */
  private databaseSpec(dbPath: string, spec: DbSpec): DatabaseSpec {
    const running = [...this.dbs.values()].reduce((n, r) => n + Math.max(1, r.spec.replicas.length), 0);
    return databaseSpec(dbPath, spec, Math.max(1, running, this.expectedReplicas));
  }

  /** One timer for every database: as often as the most demanding one asks (1-10 s). */
  private scheduleTick(): void {
    if (this.stopping) return;
    clearTimeout(this.tickTimer);
    let every = 10_000;
    for (const r of this.dbs.values()) if (r.replicator) every = Math.min(every, r.replicator.tickEvery());
    this.tickTimer = setTimeout(() => {
      const now = Date.now();
      for (const r of this.dbs.values()) r.replicator?.tick(now);
      this.scheduleTick();
    }, Math.max(250, every));
  }

  private *sources(): Iterable<ReturnType<Replicator['metricsSource']>> {
    for (const r of this.dbs.values()) if (r.replicator) yield r.replicator.metricsSource();
  }

  /** True while --restore-if-missing restores, before any database starts. */
  private restoring = false;

  health(): ReturnType<typeof agentHealthReport> {
    if (this.restoring) return { ...agentHealthReport([]), phase: 'restoring' };
    // Still opening (a thousand take minutes) is not unhealthy; failed is, with its error.
    const reports = [...this.dbs.values()].map((r) =>
      r.error !== undefined
        ? { status: 'lagging' as const, db: r.dbPath, maxLagSeconds: null, replicas: [], error: r.error }
        : (r.replicator?.health() ?? { status: 'ok' as const, db: r.dbPath, maxLagSeconds: null, replicas: [] }),
    );
    return agentHealthReport(reports);
  }

  private find(db: string): Replicator {
    const run = this.dbs.get(db) ?? this.missing(db);
    if (!run.replicator || run.error !== undefined) {
      throw new PitrError('CONTROL_FAILED', `${db} is not replicating: ${run.error ?? 'it is starting'}`, 'see the agent\'s log, or `pitr agent status`');
    }
    return run.replicator;
  }

  private missing(db: string): never {
    throw new PitrError('CONTROL_FAILED', `this agent does not replicate ${db}`, 'run `pitr agent status` to see the databases it replicates');
  }

  private controlHandlers(): ControlHandlers {
    return {
      has: (db) => this.dbs.has(db),
      status: (): AgentStatus => ({
        pid: process.pid,
        version: this.opts.version,
        startedAt: this.startedAt,
        config: this.opts.config.source,
        dbs: [...this.dbs.values()].map((r) => {
          const h = r.replicator?.health();
          return {
            db: r.dbPath,
            generation: r.replicator?.position.generation ?? '',
            txid: r.replicator?.position.txid ?? 0,
            replicas: (h?.replicas ?? []).map((x) => ({ url: x.url, txid: x.lastTxid, lagSeconds: x.lagSeconds, healthy: x.healthy })),
            ...(r.error !== undefined && { error: r.error }),
          };
        }),
      }),
      sync: async (db, timeoutMs): Promise<SyncResult[]> => {
        const deadline = Date.now() + timeoutMs;
        const runs = db === undefined ? [...this.dbs.values()] : [this.dbs.get(db) ?? this.missing(db)];
        return Promise.all(
          runs.map(async (r): Promise<SyncResult> => {
            // A database that could not start has nothing to ship: say so rather than fail them all.
            if (r.error !== undefined) return { db: r.dbPath, txid: 0, replicas: [], error: r.error };
            // Waiting for the app to create it, or still opening: nothing committed to ship yet.
            if (!r.replicator?.running) return { db: r.dbPath, txid: 0, replicas: [], note: r.replicator?.waiting ? 'waiting for the database file' : 'starting' };
            try {
              return { db: r.dbPath, ...(await r.replicator.syncNow(deadline)) };
            } catch (err) {
              return { db: r.dbPath, txid: 0, replicas: [], error: errorText(err) };
            }
          }),
        );
      },
      snapshot: async (db, timeoutMs): Promise<SnapshotResult> => {
        const r = await this.find(db).snapshotNow(Date.now() + timeoutMs);
        return { db, txid: r.txid, key: r.key, shipped: r.shipped };
      },
    };
  }

  /** Stop every database (each captures and ships what is committed), close the servers. */
  private async shutdown(): Promise<boolean> {
    this.stopping = true;
    clearTimeout(this.tickTimer);
    for (const d of this.discoveries) d.stop();
    const runs = [...this.dbs.values()];
    for (const r of runs) r.controller.abort();
    const results = await Promise.all(runs.map((r) => r.done));
    await this.control?.close().catch(() => {});
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    return results.every(Boolean);
  }
}

