import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { DbSettings, ReplicaSettings } from '../config/config-types.js';
import type { Logger } from '../log.js';
import type { DbMetrics } from '../monitor/metrics.js';
import type { StorageClient } from '../storage/storage-client.js';
import { openStorage } from '../storage/open-storage.js';
import { openLocalStore } from '../storage/local-store.js';
import { checkDatabasePath, checkReplicas, ensureFileReplica, lockState } from './preflight.js';
import type { StateLock } from './state-lock.js';
import type { ReplicaLease } from './lease.js';
import { acquireReplicaLeases } from './replica-leases.js';
import { checkReplicaIdentity } from './identity.js';
import { Replicator, type ReplicatorOptions } from './replicator.js';

export interface DatabaseSpec {
  dbPath: string;
  stateDir: string;
  /** Replica URLs (templates already filled) with their settings; empty = `<db>-replica`. */
  replicas: { url: string; settings: ReplicaSettings }[];
  settings: DbSettings;
  /** Lease period for this database's replicas (ms); undefined = the lease's default. */
  leasePeriodMs: number | undefined;
}

export interface OpenedDatabase {
  replicator: Replicator;
  /** Give back the leases, close the replicas and unlock the state directory. */
  release(): Promise<void>;
}

/**
 * Everything one database needs before its replicator runs, in the order that keeps mistakes
 * harmless: check the paths and replicas (nothing written), lock the state directory (a second
 * agent stops here, naming the first, instead of fighting it over the spool), take each replica's
 * lease and check it serves this database, then build the replicator. On any failure what was
 * taken is given back and the error is rethrown.
 */
export async function openDatabase(
  spec: DatabaseSpec,
  shared: Pick<ReplicatorOptions, 'version' | 'verify' | 'snapshotSlot' | 'pollIntervalMs' | 'pollBesideWatcherMs'> & { metrics: DbMetrics; log: Logger },
): Promise<OpenedDatabase> {
  const { dbPath, stateDir, settings } = spec;
  const log = shared.log;
  await checkDatabasePath(dbPath);
  const wanted = spec.replicas.length > 0 ? spec.replicas : [{ url: pathToFileURL(`${dbPath}-replica`).href, settings }];
  const parsed = await checkReplicas(wanted.map((r) => r.url), dbPath, stateDir);
  const locks: StateLock[] = await lockState({ dbPath, stateDir, version: shared.version }, log);
  const opened: StorageClient[] = [];
  let leases: ReplicaLease[] = [];
  try {
    for (const r of parsed) if (r.scheme === 'file') await ensureFileReplica(r.path, log);
    for (const l of locks) await l.recordReplicas(parsed.map((r) => r.url));
    if (spec.replicas.length === 0) log.info('no replica given; using the default local directory replica', { replica: `${dbPath}-replica` });
    for (const r of wanted) opened.push(await openStorage(r.url));
    // Single writer: a second agent on a replica stops here, naming the one that holds it.
    // Each replica serves one database: another one's agent is refused (unless takeover).
    leases = await acquireReplicaLeases(opened, {
      stateDir,
      takeover: settings.takeover,
      log,
      ...(spec.leasePeriodMs !== undefined && { periodMs: spec.leasePeriodMs }),
      onTaken: (r) => checkReplicaIdentity(r, { dbPath, stateDir, takeover: settings.takeover, log }),
    });
  } catch (err) {
    await Promise.all(leases.map((l) => l.release()));
    await Promise.all(opened.map((s) => s.close().catch(() => {})));
    for (const l of locks) l.release();
    throw err;
  }
  const spoolDir = join(stateDir, 'spool');
  const replicator = new Replicator({
    dbPath,
    stateDir,
    spoolStore: openLocalStore(spoolDir),
    replicas: leases.map((l, i) => ({ storage: l.storage, settings: wanted[i]?.settings ?? settings, lease: l })),
    settings,
    version: shared.version,
    metrics: shared.metrics,
    ...(shared.verify && { verify: shared.verify }),
    ...(shared.snapshotSlot && { snapshotSlot: shared.snapshotSlot }),
    ...(shared.pollIntervalMs !== undefined && { pollIntervalMs: shared.pollIntervalMs }),
    ...(shared.pollBesideWatcherMs !== undefined && { pollBesideWatcherMs: shared.pollBesideWatcherMs }),
    log,
  });
  return {
    replicator,
    release: async () => {
      await Promise.all(leases.map((l) => l.release()));
      for (const l of leases) await l.storage.close().catch(() => {});
      for (const l of locks) l.release();
    },
  };
}
