import type { DbSettings, ReplicaSettings } from '../config/config-types.js';
import type { Logger } from '../log.js';
import type { DbMetrics } from '../monitor/metrics.js';
import type { LocalStore } from '../storage/local-store.js';
import type { StorageClient } from '../storage/storage-client.js';
import type { ReplicaLease } from './lease.js';
import type { WorkerContext } from './replica-worker.js';

/** What a Replicator (one database) is given, and what it answers when it stops. */

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
  /**
   * The safety-net stat's interval while the watcher works (default 5 s): an agent with a thousand
   * databases stretches it, since each stat is a wakeup's worth of work and events are the real signal.
   */
  pollBesideWatcherMs?: number;
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

